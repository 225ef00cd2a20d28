"""Fixtures for the conformance tests: a hypervisor and running guests seen through their hypercalls."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import HYPERCALLS, EvtchnOp, Hypercall, SchedOp, VcpuOp
from xenpy.abi.generated.hypercalls import PROFILES as TABLE_PROFILES
from xenpy.core import Domain, Vcpu
from xenpy.core.profiles import PROFILES
from xenpy.hypervisor import DomainConfig, Hypervisor

ALL_PROFILES = tuple(PROFILES)
#: Profiles with HEAD's register_vcpu_info / phys-area behaviour (>= 4.18), as the profile table says.
MODERN = tuple(name for name, p in PROFILES.items() if p.vcpu_info_map_guest_area and p.phys_areas)
#: An address Xen rejects at the ``__addr_ok`` check (inside the PV64 hypervisor hole).
HOLE_GVA = 0xFFFF_8000_0000_1000
#: A canonical lower-half address that is not mapped in any test guest.
UNMAPPED_GVA = 0x0000_4000_0000_0000


class Guest:
    """A running domain and helpers to issue hypercalls from its vCPUs with arguments in its memory."""

    def __init__(self, hv: Hypervisor, dom: Domain) -> None:
        self.hv = hv
        self.dom = dom

    @property
    def v(self) -> list[Vcpu]:
        return self.dom.vcpus

    def call(self, nr: int, *args: int, vcpu: int = 0) -> int:
        return self.hv.hypercall(self.dom.vcpus[vcpu], nr, *args)

    def vcpu_op(self, cmd: int, vcpuid: int, arg: int = 0, *, vcpu: int = 0) -> int:
        return self.call(Hypercall.vcpu_op, cmd, vcpuid, arg, vcpu=vcpu)

    def sched_op(self, cmd: int, arg: int = 0, *, vcpu: int = 0) -> int:
        return self.call(Hypercall.sched_op, cmd, arg, vcpu=vcpu)

    def evtchn_op(self, cmd: int, arg: int = 0, *, vcpu: int = 0) -> int:
        return self.call(Hypercall.event_channel_op, cmd, arg, vcpu=vcpu)

    def put(self, struct_name: str, **fields: Any) -> int:
        return self.dom.put_struct(struct_name, **fields)

    def get(self, struct_name: str, gva: int) -> Any:
        return self.dom.get_struct(struct_name, gva)

    def put_u64(self, value: int) -> int:
        gva = self.dom.alloc_guest(8, 8)
        self.dom.write_guest(gva, value.to_bytes(8, "little"))
        return gva

    def page(self) -> int:
        """A fresh, zeroed, writable guest page (its gva)."""
        return self.dom.alloc_guest_page()

    def mfn_of(self, gva: int) -> int:
        return self.dom.gva_to_mfn(gva)

    def context(self, **fields: int) -> int:
        """A valid PV64 ``vcpu_guest_context`` in guest memory (kernel mode, the domain's page tables)."""
        return self.dom.put_vcpu_context(fields)

    def bring_up(self, vcpu_id: int, *, by: int = 0) -> None:
        """VCPUOP_initialise + VCPUOP_up of ``vcpu_id`` from vCPU ``by``; asserts both succeed."""
        assert self.vcpu_op(VcpuOp.VCPUOP_initialise, vcpu_id, self.context(), vcpu=by) == 0
        assert self.vcpu_op(VcpuOp.VCPUOP_up, vcpu_id, vcpu=by) == 0

    def bind_virq(self, virq: int, vcpu: int = 0, *, by: int = 0) -> int:
        arg = self.put("evtchn_bind_virq", virq=virq, vcpu=vcpu, port=0)
        assert self.evtchn_op(EvtchnOp.EVTCHNOP_bind_virq, arg, vcpu=by) == 0
        return self.get("evtchn_bind_virq", arg).port

    def block(self, vcpu: int = 0) -> int:
        return self.sched_op(SchedOp.SCHEDOP_block, vcpu=vcpu)

    def runstate_of(self, vcpu: int) -> tuple[int, int, int, int, int, int]:
        """The runstate as VCPUOP_get_runstate_info returns it (read by the hypervisor API, no hypercall)."""
        return self.hv.runstate(self.dom.vcpus[vcpu])


@pytest.fixture
def hv() -> Hypervisor:
    """Two pCPUs, round-robin (as :func:`guest1`)."""
    return Hypervisor(nr_pcpus=2, memory_mib=64, sched="fifo")


#: Families whose errors are cross-checked against the generated table's per-profile errno lists.
CHECKED_FAMILIES = (Hypercall.vcpu_op, Hypercall.sched_op, Hypercall.event_channel_op, Hypercall.grant_table_op)


def errno_table_violations(calls: list[tuple[str, int, int, int]]) -> list[str]:
    """Errors returned by ``calls`` ((profile, nr, cmd, rc)) that ``hypercalls/`` does not list for that profile.

    Every call counts: a call from a domain whose profile has no column in the table (a profile of a test's own,
    made with ``dataclasses.replace`` under a new name) is a violation too, whatever it returned.
    """
    bad = []
    for profile, nr, cmd, rc in calls:
        if profile not in TABLE_PROFILES:
            bad.append(f"{HYPERCALLS[nr].name} cmd {cmd}: profile {profile!r} is not in hypercalls/profiles.toml "
                       f"({', '.join(TABLE_PROFILES)}): its errors cannot be checked")
            continue
        if rc >= 0:
            continue
        defn = HYPERCALLS[nr]
        name = XenErrno(-rc).name
        subop = next((so for so in defn.subops if so.value == cmd), None)
        if subop is None:  # the errors checked before any command (errors_before_dispatch) are allowed too
            before = {Hypercall.vcpu_op: "ENOENT", Hypercall.grant_table_op: "EINVAL"}.get(Hypercall(nr))
            allowed = {defn.unknown_subop_errno, before}
        else:
            allowed = set(subop.errors[profile])
        if name not in allowed:
            listed = sorted(a for a in allowed if a)
            bad.append(f"{defn.name} cmd {cmd} ({profile}) returned -{name}, not in {listed}")
    return bad


@pytest.fixture
def make_guest(hv: Hypervisor) -> Iterator[Callable[..., Guest]]:
    """``make_guest(profile="head", max_vcpus=4, memory_mib=2, running=True, **config)`` -> :class:`Guest`.

    Every error that the guests' vcpu_op, sched_op, event_channel_op and grant_table_op calls return during the
    test must be listed for the domain's profile in the generated hypercall table (``SubOp.errors``); checked
    afterwards.
    """
    calls: list[tuple[str, int, int, int]] = []

    def record(v: Vcpu, nr: int, args: tuple[int, ...], rc: int) -> None:
        if nr in CHECKED_FAMILIES:
            cmd = args[0] & 0xFFFF_FFFF
            calls.append((v.domain.profile.name, nr, cmd - (1 << 32) if cmd >> 31 else cmd, rc))

    hv.add_hypercall_hook(post=record)

    def make(
        profile: str = "head", max_vcpus: int = 4, memory_mib: int = 2, running: bool = True, **config: Any
    ) -> Guest:
        dom = hv.create_domain(DomainConfig(profile=profile, max_vcpus=max_vcpus, memory_mib=memory_mib, **config))
        if running:
            dom.unpause()
        return Guest(hv, dom)

    yield make
    assert errno_table_violations(calls) == []


@pytest.fixture
def guest(make_guest: Callable[..., Guest]) -> Guest:
    return make_guest()


@pytest.fixture
def guest1() -> Guest:
    """A running head guest with 4 vCPUs on a hypervisor with a single pCPU.

    The round-robin policy: its 30 ms slices put the context switches the runstate tests look at where they
    expect them (the credit2 policy has tests of its own, tests/core/test_credit2.py).
    """
    hv = Hypervisor(nr_pcpus=1, memory_mib=16, sched="fifo")
    dom = hv.create_domain(DomainConfig(max_vcpus=4, memory_mib=2))
    dom.unpause()
    return Guest(hv, dom)
