"""HYPERVISOR_nmi_op (spec 4.2; ``xen/arch/x86/pv/callback.c:do_nmi_op``)."""

from __future__ import annotations

import pytest

from xenpy.abi.arch_x86 import FLAT_KERNEL_CS
from xenpy.abi.callback import CALLBACKTYPE
from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import CallbackOp, Hypercall, NmiOp

from .conftest import HOLE_GVA, UNMAPPED_GVA, Guest

EFAULT = -XenErrno.EFAULT
EINVAL = -XenErrno.EINVAL
ENOSYS = -XenErrno.ENOSYS
REGISTER = NmiOp.XENNMI_register_callback
UNREGISTER = NmiOp.XENNMI_unregister_callback
HANDLER = 0xFFFF_FFFF_8000_2000
NMI_ENTRY = (2, 4, int(FLAT_KERNEL_CS), HANDLER)


def nmi_op(g: Guest, cmd: int, arg: int = 0, *, vcpu: int = 0) -> int:
    return g.call(Hypercall.nmi_op, cmd, arg, vcpu=vcpu)


def register(g: Guest, address: int, pad: int = 0, *, vcpu: int = 0) -> int:
    return nmi_op(g, REGISTER, g.put("xennmi_callback", handler_address=address, pad=pad), vcpu=vcpu)


def set_nmi_reason(g: Guest, value: int) -> None:
    d = g.dom
    d.system.machine.write_u64(d.shared_info_maddr + d.abi.shared_info.offset_of("arch.nmi_reason"), value)


def test_register_installs_trap_entry_2(guest: Guest):
    """spec 4.2 (c): XENNMI_register_callback sets trap_ctxt[2] = {2, flags 4, FLAT_KERNEL_CS, address}."""
    before = list(guest.v[0].arch.trap_ctxt)
    assert register(guest, HANDLER, pad=0xDEAD) == 0  # pad is ignored
    after = guest.v[0].arch.trap_ctxt
    assert after[2] == NMI_ENTRY
    assert after[:2] == before[:2] and after[3:] == before[3:]


def test_register_matches_callback_op_nmi(make_guest):
    """spec 4.2 (b) and (c) do the same thing."""
    a = make_guest()
    b = make_guest()
    assert register(a, HANDLER) == 0
    arg = b.put("callback_register", type=CALLBACKTYPE.CALLBACKTYPE_nmi, flags=0, address=HANDLER)
    assert b.call(Hypercall.callback_op, CallbackOp.CALLBACKOP_register, arg) == 0
    assert a.v[0].arch.trap_ctxt == b.v[0].arch.trap_ctxt


@pytest.mark.parametrize("address", [0x0000_8000_0000_0000, 0xFFFF_0000_0000_0000, 0x8000_0000_0000_0000])
def test_non_canonical_handler_is_einval(guest: Guest, address):
    """spec 4.2: a non-canonical handler address -> -EINVAL; trap_ctxt[2] is unchanged."""
    assert register(guest, HANDLER) == 0
    assert register(guest, address) == EINVAL
    assert guest.v[0].arch.trap_ctxt[2] == NMI_ENTRY


@pytest.mark.parametrize("bad", [UNMAPPED_GVA, HOLE_GVA, 0])
def test_unreadable_argument_is_efault(guest: Guest, bad):
    """``do_nmi_op``: copy_from_guest fails -> -EFAULT; nothing changes."""
    before = list(guest.v[0].arch.trap_ctxt)
    assert nmi_op(guest, REGISTER, bad) == EFAULT
    assert guest.v[0].arch.trap_ctxt == before


def test_register_reasserts_pending_nmi_on_vcpu0_only(guest: Guest):
    """spec 4.2 (b, c): with nmi_reason != 0, registering on vCPU 0 sets nmi_pending; on vCPU 1 it does not."""
    guest.bring_up(1)
    assert register(guest, HANDLER) == 0
    assert guest.v[0].arch.nmi_pending is False  # nmi_reason is 0
    set_nmi_reason(guest, 2)
    assert register(guest, HANDLER, vcpu=1) == 0
    assert guest.v[1].arch.nmi_pending is False
    assert register(guest, HANDLER) == 0
    assert guest.v[0].arch.nmi_pending is True


def test_unregister_zeroes_entry_2_without_reading_arg(guest: Guest):
    """spec 4.2: XENNMI_unregister_callback zeroes trap_ctxt[2]; arg is not used."""
    assert register(guest, HANDLER) == 0
    assert nmi_op(guest, UNREGISTER, UNMAPPED_GVA) == 0
    assert guest.v[0].arch.trap_ctxt[2] == (0, 0, 0, 0)
    assert nmi_op(guest, UNREGISTER) == 0


def test_unregister_removes_a_handler_from_the_trap_table(guest: Guest):
    """spec 4.2: a vector-2 entry installed by set_trap_table is the NMI handler; unregister removes it."""
    table = guest.dom.alloc_guest(32, 8)
    guest.dom.write_guest(
        table, guest.dom.abi.trap_info.build({"vector": 2, "flags": 0, "cs": 0xE033, "address": HANDLER}) + bytes(16)
    )
    assert guest.call(Hypercall.set_trap_table, table) == 0
    assert guest.v[0].arch.trap_ctxt[2] == (2, 0, 0xE033, HANDLER)
    assert nmi_op(guest, UNREGISTER) == 0
    assert guest.v[0].arch.trap_ctxt[2] == (0, 0, 0, 0)


def test_nmi_handler_is_per_vcpu(guest: Guest):
    """spec 4.2: the handler belongs to the calling vCPU's trap table."""
    guest.bring_up(1)
    vcpu0_entry = guest.v[0].arch.trap_ctxt[2]
    assert register(guest, HANDLER, vcpu=1) == 0
    assert guest.v[1].arch.trap_ctxt[2] == NMI_ENTRY
    assert guest.v[0].arch.trap_ctxt[2] == vcpu0_entry


@pytest.mark.parametrize("cmd", [2, 3, 0xFFFF_FFFF])
def test_unknown_cmd_is_enosys(guest: Guest, cmd):
    """``do_nmi_op``: unknown cmd -> -ENOSYS."""
    assert nmi_op(guest, cmd, UNMAPPED_GVA) == ENOSYS


def test_cmd_is_an_unsigned_int(guest: Guest):
    """``do_nmi_op(unsigned int cmd, ...)``: the upper half of rdi is ignored."""
    assert register(guest, HANDLER) == 0
    assert nmi_op(guest, (1 << 32) | UNREGISTER) == 0
    assert guest.v[0].arch.trap_ctxt[2] == (0, 0, 0, 0)
