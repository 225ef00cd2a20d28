"""HYPERVISOR_callback_op and HYPERVISOR_set_callbacks (spec 4.2, 5.9, 6.6;
``xen/arch/x86/pv/callback.c:do_callback_op``, ``register_guest_callback``, ``do_set_callbacks``)."""

from __future__ import annotations

import pytest

from xenpy.abi.arch_x86 import FLAT_KERNEL_CS, VGCF_failsafe_disables_events, VGCF_syscall_disables_events
from xenpy.abi.callback import CALLBACKTYPE, CALLBACKF_mask_events
from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import CallbackOp, Hypercall
from xenpy.hypervisor import Hypervisor

from .conftest import HOLE_GVA, UNMAPPED_GVA, Guest

EFAULT = -XenErrno.EFAULT
EINVAL = -XenErrno.EINVAL
ENOSYS = -XenErrno.ENOSYS
REGISTER = CallbackOp.CALLBACKOP_register
UNREGISTER = CallbackOp.CALLBACKOP_unregister
EVENT = CALLBACKTYPE.CALLBACKTYPE_event
FAILSAFE = CALLBACKTYPE.CALLBACKTYPE_failsafe
SYSCALL = CALLBACKTYPE.CALLBACKTYPE_syscall
SYSENTER = CALLBACKTYPE.CALLBACKTYPE_sysenter
SYSCALL32 = CALLBACKTYPE.CALLBACKTYPE_syscall32
NMI = CALLBACKTYPE.CALLBACKTYPE_nmi
KERNEL_VA = 0xFFFF_FFFF_8000_1000
NON_CANONICAL = 0x0000_8000_0000_0000
MASK = int(CALLBACKF_mask_events)


def callback_op(g: Guest, cmd: int, arg: int, *, vcpu: int = 0) -> int:
    return g.call(Hypercall.callback_op, cmd, arg, vcpu=vcpu)


def register(g: Guest, cb_type: int, address: int, flags: int = 0, *, vcpu: int = 0) -> int:
    arg = g.put("callback_register", type=cb_type, flags=flags, address=address)
    return callback_op(g, REGISTER, arg, vcpu=vcpu)


def unregister(g: Guest, cb_type: int, *, vcpu: int = 0) -> int:
    return callback_op(g, UNREGISTER, g.put("callback_unregister", type=cb_type, _unused=0), vcpu=vcpu)


def callbacks(g: Guest, vcpu: int = 0) -> tuple:
    """Every piece of callback state of a vCPU."""
    a = g.v[vcpu].arch
    return (
        a.event_callback_eip,
        a.failsafe_callback_eip,
        a.syscall_callback_eip,
        a.syscall32_callback_eip,
        a.syscall32_disables_events,
        a.sysenter_callback_eip,
        a.sysenter_disables_events,
        a.vgc_flags,
        tuple(a.trap_ctxt),
        a.nmi_pending,
    )


def set_nmi_reason(g: Guest, value: int) -> None:
    d = g.dom
    d.system.machine.write_u64(d.shared_info_maddr + d.abi.shared_info.offset_of("arch.nmi_reason"), value)


# ------------------------------------------------------------------------------------------ register


def test_register_event_callback(guest: Guest):
    """spec 4.2 / ``register_guest_callback``: CALLBACKTYPE_event sets event_callback_eip; flags ignored."""
    flags_before = guest.v[0].arch.vgc_flags
    assert register(guest, EVENT, KERNEL_VA, MASK) == 0
    assert guest.v[0].arch.event_callback_eip == KERNEL_VA
    assert guest.v[0].arch.vgc_flags == flags_before


@pytest.mark.parametrize(
    ("cb_type", "attr", "vgcf"),
    [
        (FAILSAFE, "failsafe_callback_eip", VGCF_failsafe_disables_events),
        (SYSCALL, "syscall_callback_eip", VGCF_syscall_disables_events),
    ],
)
def test_register_with_mask_events_sets_vgcf(guest: Guest, cb_type, attr, vgcf):
    """``register_guest_callback``: CALLBACKF_mask_events sets VGCF_*_disables_events; without it, clears."""
    arch = guest.v[0].arch
    assert register(guest, cb_type, KERNEL_VA, MASK) == 0
    assert getattr(arch, attr) == KERNEL_VA
    assert arch.vgc_flags & vgcf
    assert register(guest, cb_type, KERNEL_VA + 0x10, 0) == 0
    assert getattr(arch, attr) == KERNEL_VA + 0x10
    assert not arch.vgc_flags & vgcf


@pytest.mark.parametrize(
    ("cb_type", "eip", "flag"),
    [
        (SYSCALL32, "syscall32_callback_eip", "syscall32_disables_events"),
        (SYSENTER, "sysenter_callback_eip", "sysenter_disables_events"),
    ],
)
def test_register_syscall32_and_sysenter(guest: Guest, cb_type, eip, flag):
    """``register_guest_callback``: syscall32 / sysenter keep their own address and mask-events flag."""
    arch = guest.v[0].arch
    assert register(guest, cb_type, 0x4000, MASK) == 0
    assert (getattr(arch, eip), getattr(arch, flag)) == (0x4000, True)
    assert register(guest, cb_type, 0x5000, 0) == 0
    assert (getattr(arch, eip), getattr(arch, flag)) == (0x5000, False)


@pytest.mark.parametrize("cb_type", [EVENT, FAILSAFE, SYSCALL, SYSCALL32, SYSENTER, NMI, 3, 6, 99])
def test_non_canonical_address_is_einval_before_the_type(guest: Guest, cb_type):
    """spec 4.2 / ``register_guest_callback``: a non-canonical address -> -EINVAL (checked first); no change."""
    before = callbacks(guest)
    assert register(guest, cb_type, NON_CANONICAL, MASK) == EINVAL
    assert register(guest, cb_type, 0xFFFF_7FFF_FFFF_F000, MASK) == EINVAL
    assert callbacks(guest) == before


@pytest.mark.parametrize("cb_type", [CALLBACKTYPE.CALLBACKTYPE_sysenter_deprecated, 6, 8, 0xFFFF])
def test_register_unknown_type_is_enosys(guest: Guest, cb_type):
    """``register_guest_callback``: a type PV64 does not know -> -ENOSYS; no change."""
    before = callbacks(guest)
    assert register(guest, cb_type, KERNEL_VA, MASK) == ENOSYS
    assert callbacks(guest) == before


def test_canonical_lower_half_and_zero_are_accepted(guest: Guest):
    """spec 4.2: only canonicality is checked: a user address or 0 is accepted."""
    assert register(guest, EVENT, 0x0000_7FFF_FFFF_F000) == 0
    assert guest.v[0].arch.event_callback_eip == 0x0000_7FFF_FFFF_F000
    assert register(guest, EVENT, 0) == 0
    assert guest.v[0].arch.event_callback_eip == 0


@pytest.mark.parametrize("bad", [UNMAPPED_GVA, HOLE_GVA, 0])
def test_unreadable_argument_is_efault(guest: Guest, bad):
    """``do_callback_op``: copy_from_guest fails -> -EFAULT; nothing changes."""
    before = callbacks(guest)
    assert callback_op(guest, REGISTER, bad) == EFAULT
    assert callback_op(guest, UNREGISTER, bad) == EFAULT
    assert callbacks(guest) == before


@pytest.mark.parametrize("cmd", [2, 100, -1])
def test_unknown_cmd_is_enosys(guest: Guest, cmd):
    """spec 6.6 / ``do_callback_op``: unknown cmd -> -ENOSYS (the argument is not read)."""
    assert callback_op(guest, cmd, UNMAPPED_GVA) == ENOSYS


def test_cmd_is_a_c_int(guest: Guest):
    """``do_callback_op(int cmd, ...)``: only the low 32 bits of rdi count."""
    arg = guest.put("callback_register", type=EVENT, flags=0, address=KERNEL_VA)
    assert callback_op(guest, (3 << 32) | REGISTER, arg) == 0
    assert guest.v[0].arch.event_callback_eip == KERNEL_VA


def test_callbacks_are_per_vcpu(guest: Guest):
    """spec 4.2: callbacks belong to the calling vCPU only."""
    guest.bring_up(1)
    assert register(guest, EVENT, KERNEL_VA, vcpu=1) == 0
    assert register(guest, SYSCALL, KERNEL_VA + 8, MASK, vcpu=1) == 0
    assert guest.v[1].arch.event_callback_eip == KERNEL_VA
    assert guest.v[1].arch.syscall_callback_eip == KERNEL_VA + 8
    assert guest.v[0].arch.event_callback_eip == 0
    assert guest.v[0].arch.syscall_callback_eip == 0
    assert not guest.v[0].arch.vgc_flags & VGCF_syscall_disables_events


# ------------------------------------------------------------------------------------------ NMI


def test_register_nmi_sets_trap_entry_2(guest: Guest):
    """spec 4.2 (b): trap_ctxt[2] = {vector 2, flags 4 (events masked), FLAT_KERNEL_CS, address}."""
    before = list(guest.v[0].arch.trap_ctxt)
    assert register(guest, NMI, KERNEL_VA, 0) == 0
    after = guest.v[0].arch.trap_ctxt
    assert after[2] == (2, 4, int(FLAT_KERNEL_CS), KERNEL_VA)
    assert guest.v[0].arch.nmi_pending is False
    assert after[:2] == before[:2] and after[3:] == before[3:]


def test_register_nmi_reasserts_pending_on_vcpu0(guest: Guest):
    """spec 4.2 (b): on vCPU 0 with shared_info.arch.nmi_reason != 0, nmi_pending is set again."""
    set_nmi_reason(guest, 1)
    assert register(guest, NMI, KERNEL_VA) == 0
    assert guest.v[0].arch.nmi_pending is True


def test_register_nmi_does_not_reassert_on_other_vcpus(guest: Guest):
    """spec 4.2 (b): only vCPU 0 re-asserts the lost NMI edge."""
    guest.bring_up(1)
    set_nmi_reason(guest, 1)
    vcpu0_entry = guest.v[0].arch.trap_ctxt[2]
    assert register(guest, NMI, KERNEL_VA, vcpu=1) == 0
    assert guest.v[1].arch.trap_ctxt[2] == (2, 4, int(FLAT_KERNEL_CS), KERNEL_VA)
    assert guest.v[1].arch.nmi_pending is False
    assert guest.v[0].arch.nmi_pending is False
    assert guest.v[0].arch.trap_ctxt[2] == vcpu0_entry


def test_unregister_nmi_zeroes_trap_entry_2(guest: Guest):
    """spec 4.2: CALLBACKOP_unregister of the NMI callback zeroes trap_ctxt[2] and nothing else."""
    assert register(guest, NMI, KERNEL_VA) == 0
    assert register(guest, EVENT, KERNEL_VA + 0x40) == 0
    assert unregister(guest, NMI) == 0
    assert guest.v[0].arch.trap_ctxt[2] == (0, 0, 0, 0)
    assert guest.v[0].arch.event_callback_eip == KERNEL_VA + 0x40
    assert unregister(guest, NMI) == 0


@pytest.mark.parametrize("cb_type", [EVENT, FAILSAFE, SYSCALL, SYSCALL32, SYSENTER])
def test_unregister_other_types_is_einval(guest: Guest, cb_type):
    """spec 4.2: unregistering any known callback but nmi -> -EINVAL; it stays registered."""
    assert register(guest, cb_type, KERNEL_VA) == 0
    before = callbacks(guest)
    assert unregister(guest, cb_type) == EINVAL
    assert callbacks(guest) == before


@pytest.mark.parametrize("cb_type", [CALLBACKTYPE.CALLBACKTYPE_sysenter_deprecated, 6, 8, 0xFFFF])
def test_unregister_unknown_type_is_enosys(guest: Guest, cb_type):
    """``unregister_guest_callback``: a type it does not know -> -ENOSYS."""
    assert unregister(guest, cb_type) == ENOSYS


# ------------------------------------------------------------------------------------------ set_callbacks


def set_callbacks(g: Guest, event: int, failsafe: int, syscall: int, *, vcpu: int = 0) -> int:
    return g.call(Hypercall.set_callbacks, event, failsafe, syscall, vcpu=vcpu)


def test_set_callbacks_sets_all_three(guest: Guest):
    """``do_set_callbacks``: rdi/rsi/rdx = event, failsafe, syscall addresses; returns 0."""
    assert set_callbacks(guest, KERNEL_VA, KERNEL_VA + 0x100, KERNEL_VA + 0x200) == 0
    arch = guest.v[0].arch
    assert (arch.event_callback_eip, arch.failsafe_callback_eip, arch.syscall_callback_eip) == (
        KERNEL_VA,
        KERNEL_VA + 0x100,
        KERNEL_VA + 0x200,
    )


def test_set_callbacks_clears_the_mask_events_flags(guest: Guest):
    """``do_set_callbacks`` registers with flags 0: VGCF_failsafe/syscall_disables_events are cleared."""
    assert register(guest, FAILSAFE, KERNEL_VA, MASK) == 0
    assert register(guest, SYSCALL, KERNEL_VA, MASK) == 0
    assert set_callbacks(guest, KERNEL_VA, KERNEL_VA, KERNEL_VA) == 0
    assert not guest.v[0].arch.vgc_flags & (VGCF_failsafe_disables_events | VGCF_syscall_disables_events)


def test_set_callbacks_skips_non_canonical_addresses(guest: Guest):
    """``do_set_callbacks`` ignores each registration's result: a bad address is skipped, the call returns 0."""
    assert register(guest, FAILSAFE, KERNEL_VA, MASK) == 0
    assert set_callbacks(guest, KERNEL_VA + 8, NON_CANONICAL, KERNEL_VA + 16) == 0
    arch = guest.v[0].arch
    assert arch.event_callback_eip == KERNEL_VA + 8
    assert arch.failsafe_callback_eip == KERNEL_VA
    assert arch.vgc_flags & VGCF_failsafe_disables_events  # untouched: the registration was refused
    assert arch.syscall_callback_eip == KERNEL_VA + 16


def test_set_callbacks_is_per_vcpu(guest: Guest):
    """``do_set_callbacks``: only the calling vCPU changes."""
    guest.bring_up(1)
    assert set_callbacks(guest, 1, 2, 3, vcpu=1) == 0
    assert guest.v[1].arch.event_callback_eip == 1
    assert guest.v[0].arch.event_callback_eip == 0


def test_compat_set_callbacks_and_unknown_cmd():
    """PV32 (``compat_set_callbacks``, ``compat_callback_op``): cs:eip pairs with the RPL raised to 1; an
    unknown callback_op cmd is -EINVAL there."""
    hv = Hypervisor(nr_pcpus=1, memory_mib=16)
    dom = hv.create_domain(width=32, memory_mib=2)
    v = dom.vcpus[0]
    ctx = hv.dispatcher.context(v)
    # a PV32 domain has no address space in xenpy yet: call through the dispatcher, register arguments only
    assert hv.dispatcher.dispatch(ctx, Hypercall.set_callbacks, 0xE018, 0xC0001000, 0xE01B, 0xC0002000) == 0
    arch = v.arch
    assert (arch.event_callback_cs, arch.event_callback_eip) == (0xE019, 0xC0001000)
    assert (arch.failsafe_callback_cs, arch.failsafe_callback_eip) == (0xE01B, 0xC0002000)
    assert hv.dispatcher.dispatch(ctx, Hypercall.callback_op, 2, 0) == EINVAL
