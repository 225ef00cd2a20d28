"""HYPERVISOR_sched_op and sched_op_compat (spec 3.4, 8.6)."""

from __future__ import annotations

import pytest

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import EvtchnOp, Hypercall, SchedOp
from xenpy.abi.sched import SHUTDOWN_crash, SHUTDOWN_poweroff, SHUTDOWN_reboot
from xenpy.abi.xen import VIRQ_DOM_EXC
from xenpy.core import DomainState
from xenpy.core.domain import PauseFlags
from xenpy.core.runstate import RUNSTATE_blocked, RUNSTATE_offline, RUNSTATE_running

from .conftest import ALL_PROFILES, HOLE_GVA, UNMAPPED_GVA, Guest

EINVAL = -XenErrno.EINVAL
EFAULT = -XenErrno.EFAULT
MS = 1_000_000


def shutdown(g: Guest, reason: int, *, vcpu: int = 0) -> int:
    return g.sched_op(SchedOp.SCHEDOP_shutdown, g.put("sched_shutdown", reason=reason), vcpu=vcpu)


def poll(
    g: Guest,
    ports: list[int],
    timeout: int = 0,
    *,
    nr_ports: int | None = None,
    vcpu: int = 0,
    ports_gva: int | None = None,
) -> int:
    if ports_gva is None:
        ports_gva = g.dom.alloc_guest(max(4, 4 * len(ports)), 8)
        g.dom.write_guest(ports_gva, b"".join(p.to_bytes(4, "little") for p in ports) or bytes(4))
    arg = g.put("sched_poll", ports=ports_gva, nr_ports=len(ports) if nr_ports is None else nr_ports, timeout=timeout)
    return g.sched_op(SchedOp.SCHEDOP_poll, arg, vcpu=vcpu)


def ipi_port(g: Guest, vcpu: int) -> int:
    arg = g.put("evtchn_bind_ipi", vcpu=vcpu, port=0)
    assert g.evtchn_op(EvtchnOp.EVTCHNOP_bind_ipi, arg) == 0
    return g.get("evtchn_bind_ipi", arg).port


def send(g: Guest, port: int, *, vcpu: int = 0) -> int:
    return g.evtchn_op(EvtchnOp.EVTCHNOP_send, g.put("evtchn_send", port=port), vcpu=vcpu)


def mask(g: Guest, port: int) -> None:
    w = g.dom.bits_per_evtchn_word
    g.dom.evtchn_mask_words[port // w] |= 1 << (port % w)


# ------------------------------------------------------------------------------------------ yield / block


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_unknown_cmd_is_enosys(make_guest, profile):
    """spec 3.4: other commands -> -ENOSYS."""
    g = make_guest(profile)
    for cmd in (8, 100, -1):
        assert g.sched_op(cmd) == -XenErrno.ENOSYS


def test_yield_returns_zero(guest: Guest):
    """spec 3.4: SCHEDOP_yield returns 0."""
    assert guest.sched_op(SchedOp.SCHEDOP_yield) == 0
    assert guest.v[0].runstate.state == RUNSTATE_running


def test_block_clears_mask_and_blocks(guest: Guest):
    """spec 3.4, 8.6: SCHEDOP_block sets evtchn_upcall_mask = 0 first, then blocks."""
    assert guest.v[0].evtchn_upcall_mask == 1
    assert guest.block() == 0
    assert guest.v[0].evtchn_upcall_mask == 0
    assert guest.v[0].pause_flags & PauseFlags.VPF_blocked
    assert guest.v[0].runstate.state == RUNSTATE_blocked


def test_block_with_upcall_pending_returns_at_once(guest: Guest):
    """spec 3.4, 8.6: with upcall_pending set (mask now 0) block returns at once; the mask stays 0."""
    guest.v[0].vcpu_info_mv[0] = 1
    assert guest.block() == 0
    assert not guest.v[0].pause_flags & PauseFlags.VPF_blocked
    assert guest.v[0].runstate.state == RUNSTATE_running
    assert guest.v[0].evtchn_upcall_mask == 0


def test_block_looks_only_at_pending_byte(guest: Guest):
    """spec 3.4, 8.6: pending ports in the bitmaps without upcall_pending do not prevent blocking."""
    guest.dom.evtchn_pending_words[0] = 0xFF
    guest.v[0].vcpu_info_sel[0] = 1
    assert guest.block() == 0
    assert guest.v[0].runstate.state == RUNSTATE_blocked


def test_block_woken_by_event(guest: Guest):
    """spec 3.3-3.4: an event on an unmasked port kicks the blocked vCPU awake."""
    guest.bring_up(1)
    port = ipi_port(guest, 0)
    assert guest.block() == 0
    assert send(guest, port, vcpu=1) == 0
    assert guest.v[0].runstate.state == RUNSTATE_running
    assert guest.v[0].evtchn_upcall_pending == 1


# ------------------------------------------------------------------------------------------ shutdown


@pytest.mark.parametrize("profile", ALL_PROFILES)
@pytest.mark.parametrize("reason", [SHUTDOWN_poweroff, SHUTDOWN_reboot, SHUTDOWN_crash, 6, 200, 0x1_03])
def test_shutdown_reason_not_validated(make_guest, profile, reason):
    """spec 3.4: SCHEDOP_shutdown latches (u8)reason without validating it; every vCPU is paused."""
    g = make_guest(profile)
    assert shutdown(g, reason) == 0
    assert g.dom.shutdown_reason == reason & 0xFF
    assert g.dom.state is (DomainState.CRASHED if reason & 0xFF == SHUTDOWN_crash else DomainState.SHUTDOWN)
    assert all(v.pause_count == 1 for v in g.v)
    assert g.v[0].runstate.state == RUNSTATE_offline


def test_shutdown_first_reason_kept(guest: Guest):
    """spec 3.4: only the first reason is kept."""
    guest.bring_up(1)
    assert shutdown(guest, SHUTDOWN_reboot, vcpu=1) == 0
    guest.dom.shutdown(SHUTDOWN_poweroff)
    guest.dom.crash("later")
    assert guest.dom.shutdown_reason == SHUTDOWN_reboot
    assert guest.dom.state is DomainState.SHUTDOWN


def test_shutdown_bad_pointer(guest: Guest):
    """spec 3.4: the argument cannot be read -> -EFAULT, nothing happens."""
    assert guest.sched_op(SchedOp.SCHEDOP_shutdown, UNMAPPED_GVA) == EFAULT
    assert guest.dom.state is DomainState.RUNNING


def test_shutdown_code_latches_first(guest: Guest):
    """spec 3.4: SCHEDOP_shutdown_code latches a reason if none is; a later shutdown uses it."""
    assert guest.sched_op(SchedOp.SCHEDOP_shutdown_code, UNMAPPED_GVA) == -XenErrno.EFAULT
    assert guest.sched_op(SchedOp.SCHEDOP_shutdown_code, guest.put("sched_shutdown", reason=SHUTDOWN_reboot)) == 0
    assert guest.sched_op(SchedOp.SCHEDOP_shutdown_code, guest.put("sched_shutdown", reason=SHUTDOWN_crash)) == 0
    assert guest.dom.state is DomainState.RUNNING
    assert shutdown(guest, SHUTDOWN_poweroff) == 0
    assert guest.dom.shutdown_reason == SHUTDOWN_reboot


def test_shutdown_sends_dom_exc_to_hardware_domain(make_guest):
    """spec 3.4: VIRQ_DOM_EXC goes to the global handler once every vCPU is paused."""
    dom0 = make_guest(hardware_domain=True)
    port = dom0.bind_virq(VIRQ_DOM_EXC)
    domu = make_guest()
    assert shutdown(domu, SHUTDOWN_poweroff) == 0
    assert dom0.dom.evtchn.is_pending(port)


def test_remote_shutdown(make_guest):
    """spec 3.4 SCHEDOP_remote_shutdown: -EFAULT, -ESRCH (no domain, DOMID_SELF), -EPERM (unprivileged)."""
    dom0 = make_guest(hardware_domain=True)
    domu = make_guest()
    other = domu.dom.domid
    assert domu.sched_op(SchedOp.SCHEDOP_remote_shutdown, UNMAPPED_GVA) == EFAULT
    arg = domu.put("sched_remote_shutdown", domain_id=999, reason=0)
    assert domu.sched_op(SchedOp.SCHEDOP_remote_shutdown, arg) == -XenErrno.ESRCH
    arg = domu.put("sched_remote_shutdown", domain_id=0x7FF0, reason=0)
    assert domu.sched_op(SchedOp.SCHEDOP_remote_shutdown, arg) == -XenErrno.ESRCH
    arg = domu.put("sched_remote_shutdown", domain_id=dom0.dom.domid, reason=0)
    assert domu.sched_op(SchedOp.SCHEDOP_remote_shutdown, arg) == -XenErrno.EPERM
    assert dom0.dom.state is DomainState.RUNNING
    arg = dom0.put("sched_remote_shutdown", domain_id=other, reason=SHUTDOWN_reboot)
    assert dom0.sched_op(SchedOp.SCHEDOP_remote_shutdown, arg) == 0
    assert domu.dom.shutdown_reason == SHUTDOWN_reboot


# ------------------------------------------------------------------------------------------ poll


def test_poll_too_many_ports(guest: Guest):
    """spec 3.4 poll (2): nr_ports > 128 -> -EINVAL, before the handle check."""
    assert poll(guest, [], nr_ports=129, ports_gva=HOLE_GVA) == EINVAL
    assert not guest.v[0].pause_flags & PauseFlags.VPF_blocked


def test_poll_bad_handle(guest: Guest):
    """spec 3.4 poll (1, 3): unreadable arg -> -EFAULT; ports outside __addr_ok -> -EFAULT."""
    assert guest.sched_op(SchedOp.SCHEDOP_poll, UNMAPPED_GVA) == EFAULT
    assert poll(guest, [], nr_ports=1, ports_gva=HOLE_GVA) == EFAULT


def test_poll_port_unreadable_is_efault_and_undone(guest: Guest):
    """spec 3.4 poll (6): a port copy fault -> -EFAULT and the blocked state is undone."""
    assert poll(guest, [], nr_ports=1, ports_gva=UNMAPPED_GVA) == EFAULT
    assert not guest.v[0].pause_flags & PauseFlags.VPF_blocked
    assert guest.dom.poll_mask == 0
    assert guest.v[0].poll_evtchn == 0


@pytest.mark.parametrize("bad_port", [0, 5, 4096, 2**32 - 1])
def test_poll_invalid_or_free_port(guest: Guest, bad_port):
    """spec 3.4 poll (6): a port invalid or FREE/RESERVED -> -EINVAL."""
    assert poll(guest, [bad_port]) == EINVAL
    assert guest.v[0].runstate.state == RUNSTATE_running


def test_poll_pending_port_returns_at_once(guest: Guest):
    """spec 3.4 poll (6): a pending listed port -> 0 at once, not blocked."""
    port = ipi_port(guest, 1)
    assert send(guest, port) == 0
    assert poll(guest, [port]) == 0
    assert guest.v[0].runstate.state == RUNSTATE_running


def test_poll_with_events_needing_delivery_returns(guest: Guest):
    """spec 3.4 poll (5): upcall_pending && !mask -> 0 at once."""
    port = ipi_port(guest, 1)
    guest.v[0].vcpu_info_mv[0] = 1
    guest.v[0].vcpu_info_mv[1] = 0
    assert poll(guest, [port]) == 0
    assert guest.v[0].runstate.state == RUNSTATE_running


def test_poll_does_not_touch_mask(guest: Guest):
    """spec 3.4 poll, 8.6: poll leaves evtchn_upcall_mask alone (here 1, so pending does not stop it)."""
    port = ipi_port(guest, 1)
    guest.v[0].vcpu_info_mv[0] = 1
    assert poll(guest, [port]) == 0
    assert guest.v[0].evtchn_upcall_mask == 1
    assert guest.v[0].runstate.state == RUNSTATE_blocked


def test_poll_one_port_woken_only_by_that_port(guest: Guest):
    """spec 3.4 poll (7): with one port, only that port (or a kick) wakes the poller; masked ports too."""
    guest.bring_up(1)
    p1 = ipi_port(guest, 0)
    p2 = ipi_port(guest, 0)
    mask(guest, p1)
    mask(guest, p2)
    assert poll(guest, [p1]) == 0
    assert guest.v[0].poll_evtchn == p1
    assert send(guest, p2, vcpu=1) == 0
    assert guest.v[0].runstate.state == RUNSTATE_blocked
    assert send(guest, p1, vcpu=1) == 0
    assert guest.v[0].runstate.state == RUNSTATE_running
    assert guest.dom.poll_mask == 0


@pytest.mark.parametrize("nports", [0, 2])
def test_poll_many_ports_woken_by_any_port(guest: Guest, nports):
    """spec 3.4 poll (7): with 0 or several ports any port of the domain wakes the poller, even masked."""
    guest.bring_up(1)
    listed = [ipi_port(guest, 0) for _ in range(nports)]
    other = ipi_port(guest, 0)
    mask(guest, other)
    assert poll(guest, listed) == 0
    assert guest.v[0].poll_evtchn == -1
    assert send(guest, other, vcpu=1) == 0
    assert guest.v[0].runstate.state == RUNSTATE_running


def test_poll_timeout_is_absolute(guest: Guest):
    """spec 3.4 poll (8, 9): the timeout is absolute system time; the return value is 0 on timeout."""
    port = ipi_port(guest, 1)
    guest.hv.run_for(10 * MS)
    assert poll(guest, [port], timeout=15 * MS) == 0
    guest.hv.run_for(5 * MS)
    assert guest.v[0].runstate.state == RUNSTATE_blocked
    guest.hv.run_for(1)
    assert guest.v[0].runstate.state == RUNSTATE_running
    assert guest.dom.poll_mask == 0


def test_poll_timeout_stays_armed_after_an_early_wake(guest: Guest):
    """spec 3.4 poll (8): nothing stops the poll timer when an event ends the poll early, so it wakes a later
    poll without a timeout at the first poll's timeout (as real Xen 4.17.7 and 4.20 do: conformance test
    timers, poll-timer-left-armed)."""
    guest.bring_up(1)
    port = ipi_port(guest, 0)
    mask(guest, port)
    other = ipi_port(guest, 0)
    assert poll(guest, [port], timeout=40 * MS) == 0
    guest.hv.run_for(5 * MS)
    assert send(guest, other, vcpu=1) == 0  # unmasked: the upcall kick ends the poll
    assert guest.v[0].runstate.state == RUNSTATE_running
    assert guest.v[0].poll_timer.active
    guest.dom.evtchn.clear_pending(guest.dom.evtchn.ports[other])
    guest.v[0].vcpu_info_mv[0] = 0
    assert poll(guest, [port]) == 0
    guest.hv.run_for(40 * MS - guest.hv.now_ns())
    assert guest.v[0].runstate.state == RUNSTATE_blocked
    guest.hv.run_for(1)
    assert guest.v[0].runstate.state == RUNSTATE_running
    assert guest.dom.poll_mask == 0


def test_poll_without_timeout_sleeps(guest: Guest):
    """spec 3.4 poll (8): timeout 0 sets no timer."""
    port = ipi_port(guest, 1)
    assert poll(guest, [port]) == 0
    assert not guest.v[0].poll_timer.active
    guest.hv.run_for(1000 * MS)
    assert guest.v[0].runstate.state == RUNSTATE_blocked


# ------------------------------------------------------------------------------------------ pin_override


def test_pin_override_domu_eperm_before_copy(guest: Guest):
    """spec 3.4: a domain that is not the hardware domain gets -EPERM (before the copy)."""
    assert guest.sched_op(SchedOp.SCHEDOP_pin_override, UNMAPPED_GVA) == -XenErrno.EPERM


def test_pin_override_hardware_domain(make_guest):
    """spec 3.4: hardware domain: -EFAULT; pcpu >= NR_CPUS -> -EINVAL; pins, then unpins with pcpu < 0."""
    g = make_guest(hardware_domain=True)
    assert g.sched_op(SchedOp.SCHEDOP_pin_override, UNMAPPED_GVA) == EFAULT
    assert g.sched_op(SchedOp.SCHEDOP_pin_override, g.put("sched_pin_override", pcpu=256)) == EINVAL
    assert g.sched_op(SchedOp.SCHEDOP_pin_override, g.put("sched_pin_override", pcpu=1)) == 0
    assert g.v[0].hard_affinity == 1
    assert g.v[0].pcpu is not None and g.v[0].pcpu.cpu_id == 1
    assert g.sched_op(SchedOp.SCHEDOP_pin_override, g.put("sched_pin_override", pcpu=0)) == -XenErrno.EBUSY
    assert g.sched_op(SchedOp.SCHEDOP_pin_override, g.put("sched_pin_override", pcpu=-1)) == 0
    assert g.v[0].hard_affinity is None
    assert g.sched_op(SchedOp.SCHEDOP_pin_override, g.put("sched_pin_override", pcpu=-1)) == EINVAL


# ------------------------------------------------------------------------------------------ sched_op_compat


def test_sched_op_compat(make_guest):
    """spec 3.4 sched_op_compat: yield and block as sched_op; shutdown takes the reason in arg; others -ENOSYS."""
    g = make_guest()
    assert g.call(Hypercall.sched_op_compat, SchedOp.SCHEDOP_yield) == 0
    assert g.call(Hypercall.sched_op_compat, SchedOp.SCHEDOP_poll, UNMAPPED_GVA) == -XenErrno.ENOSYS
    assert g.call(Hypercall.sched_op_compat, SchedOp.SCHEDOP_watchdog) == -XenErrno.ENOSYS
    g.bring_up(1)
    assert g.call(Hypercall.sched_op_compat, SchedOp.SCHEDOP_block, vcpu=1) == 0
    assert g.v[1].runstate.state == RUNSTATE_blocked
    assert g.v[1].evtchn_upcall_mask == 0
    assert g.call(Hypercall.sched_op_compat, SchedOp.SCHEDOP_shutdown, 0x101) == 0
    assert g.dom.shutdown_reason == SHUTDOWN_reboot
