"""Hypercall dispatch: the registry, -ENOSYS, errors, GuestFault, hypervisor bugs, hooks (xenpy.hypercall)."""

from __future__ import annotations

import pytest

from xenpy.abi.errno import HypercallError, XenErrno
from xenpy.abi.generated.hypercalls import HYPERCALLS, Hypercall, VcpuOp
from xenpy.abi.sched import SHUTDOWN_crash
from xenpy.core import DomainState
from xenpy.core.pagetable import GuestFault
from xenpy.core.runstate import RUNSTATE_offline
from xenpy.hypercall.handlers import handled_hypercalls, vcpu_op
from xenpy.hypercall.registry import (
    NR_HYPERCALLS,
    Effect,
    c_int,
    c_long,
    c_uint,
    compat_handler,
    decode,
    hypercall_handler,
    registered_handlers,
)
from xenpy.hypervisor import Hypervisor, VcpuNotRunnable


@pytest.fixture
def hv():
    return Hypervisor(nr_pcpus=2, memory_mib=32)


@pytest.fixture
def dom(hv):
    d = hv.create_domain(max_vcpus=2, memory_mib=2)
    d.unpause()
    return d


@pytest.mark.parametrize("nr", [11, 38, 47, 50, 63, 64, 1000, -1, 2**64 - 1])
def test_unhandled_numbers_return_enosys(hv, dom, nr):
    """spec 6.1: any number without a handler returns -ENOSYS."""
    assert hv.hypercall(dom.vcpus[0], nr) == -XenErrno.ENOSYS


def test_every_table_number_without_handler_is_enosys(hv, dom):
    """spec 6.1: numbers of the generated table that have no handler yet return -ENOSYS."""
    for nr, _, handled in handled_hypercalls():
        if not handled:
            assert hv.hypercall(dom.vcpus[0], nr, 1, 2, 3, 4, 5) == -XenErrno.ENOSYS


def test_handled_hypercalls_lists_the_core_families():
    rows = {nr: handled for nr, _, handled in handled_hypercalls()}
    assert set(rows) == set(HYPERCALLS)
    for nr in (
        Hypercall.sched_op_compat,
        Hypercall.set_timer_op,
        Hypercall.event_channel_op_compat,
        Hypercall.vcpu_op,
        Hypercall.sched_op,
        Hypercall.event_channel_op,
    ):
        assert rows[nr]
    assert not rows[11]


def test_registry_rejects_duplicates_and_out_of_range():
    with pytest.raises(ValueError):
        hypercall_handler(NR_HYPERCALLS, effects=Effect.NONE)
    with pytest.raises(ValueError):
        hypercall_handler(Hypercall.vcpu_op, effects=Effect.NONE)(lambda *a: 0)
    assert registered_handlers()[Hypercall.vcpu_op] is vcpu_op.do_vcpu_op


def test_handler_without_table_entry_receives_unsigned_registers(hv, dom):
    seen = []
    hv.dispatcher.set_handler(50, lambda ctx, *args: seen.append((ctx.vcpu, args)) or 7)
    assert hv.hypercall(dom.vcpus[0], 50, -1, 2**64 + 5, 3, 4, 5) == 7
    assert seen == [(dom.vcpus[0], (2**64 - 1, 5, 3, 4, 5))]


def test_hypercall_error_becomes_negative_errno(hv, dom):
    def handler(ctx, *args):
        raise HypercallError(XenErrno.EXDEV, "deep inside")

    hv.dispatcher.set_handler(11, handler)
    assert hv.hypercall(dom.vcpus[0], 11) == -XenErrno.EXDEV
    assert dom.state is DomainState.RUNNING


def test_guest_fault_becomes_efault(hv, dom):
    def handler(ctx, *args):
        raise GuestFault(0x1000, "L4 entry not present")

    hv.dispatcher.set_handler(11, handler)
    assert hv.hypercall(dom.vcpus[0], 11) == -XenErrno.EFAULT
    assert dom.state is DomainState.RUNNING


def test_handler_bug_crashes_only_that_domain(hv, dom, monkeypatch):
    """A bug inside a handler crashes only the calling domain, with the exception reported."""
    other = hv.create_domain(max_vcpus=1, memory_mib=2)
    other.unpause()

    def broken(current, v, arg):
        raise ZeroDivisionError("injected")

    monkeypatch.setitem(vcpu_op._SUBOPS, VcpuOp.VCPUOP_is_up, broken)
    rc = hv.hypercall(dom.vcpus[0], Hypercall.vcpu_op, VcpuOp.VCPUOP_is_up, 0)
    assert rc == -XenErrno.EFAULT
    assert dom.state is DomainState.CRASHED
    assert dom.shutdown_reason == SHUTDOWN_crash
    assert isinstance(dom.crash_exception, ZeroDivisionError)
    assert "ZeroDivisionError: injected" in dom.crash_reason
    assert dom.vcpus[0].runstate.state == RUNSTATE_offline
    assert other.state is DomainState.RUNNING
    monkeypatch.undo()
    assert hv.hypercall(other.vcpus[0], Hypercall.vcpu_op, VcpuOp.VCPUOP_is_up, 0) == 1
    with pytest.raises(VcpuNotRunnable):
        hv.hypercall(dom.vcpus[0], Hypercall.vcpu_op, VcpuOp.VCPUOP_is_up, 0)


def test_pre_hook_replaces_result_and_skips_handler(hv, dom):
    calls = []
    remove = hv.add_hypercall_hook(
        pre=lambda v, nr, args: -XenErrno.EIO if nr == Hypercall.vcpu_op else None,
        post=lambda v, nr, args, rc: calls.append((nr, args[0], rc)),
    )
    assert hv.hypercall(dom.vcpus[0], Hypercall.vcpu_op, VcpuOp.VCPUOP_down, 1) == -XenErrno.EIO
    assert calls == [(Hypercall.vcpu_op, VcpuOp.VCPUOP_down, -XenErrno.EIO)]
    remove()
    assert hv.hypercall(dom.vcpus[0], Hypercall.vcpu_op, VcpuOp.VCPUOP_is_up, 0) == 1
    assert len(calls) == 1


def test_post_hook_replaces_result(hv, dom):
    hv.add_hypercall_hook(post=lambda v, nr, args, rc: rc + 100)
    assert hv.hypercall(dom.vcpus[0], Hypercall.vcpu_op, VcpuOp.VCPUOP_is_up, 0) == 101


def test_hook_exception_crashes_domain(hv, dom):
    hv.add_hypercall_hook(pre=lambda v, nr, args: 1 // 0)
    assert hv.hypercall(dom.vcpus[0], Hypercall.vcpu_op, VcpuOp.VCPUOP_is_up, 0) == -XenErrno.EFAULT
    assert dom.state is DomainState.CRASHED


def test_current_is_set_only_during_the_call(hv, dom):
    seen = []
    hv.add_hypercall_hook(pre=lambda v, nr, args: seen.append(hv.current) and None)
    hv.hypercall(dom.vcpus[0], Hypercall.vcpu_op, VcpuOp.VCPUOP_is_up, 0)
    assert seen == [dom.vcpus[0]]
    assert hv.current is None


def test_c_conversions():
    assert c_int(0xFFFF_FFFF) == -1
    assert c_int(0x1_0000_0005) == 5
    assert c_uint(-1) == 0xFFFF_FFFF
    assert c_long(2**64 - 2) == -2


def test_pv32_caller_gets_the_compat_form_with_32_bit_arguments():
    """A PV32 caller of a hypercall with ``compat_args`` (hypercall-defs.c's compat column) reaches the
    registered PV32 form, its arguments decoded as 32-bit values: ``compat_set_timer_op(uint32_t lo,
    int32_t hi)`` arms the timer for ``hi << 32 | lo``; the upper halves of the registers are ignored."""
    hv = Hypervisor(nr_pcpus=1, memory_mib=16)
    d = hv.create_domain(width=32, memory_mib=2)
    v = d.vcpus[0]
    ctx = hv.dispatcher.context(v)
    deadline = hv.now_ns() + 5_000_000
    lo, hi = deadline & 0xFFFF_FFFF, deadline >> 32
    assert hv.dispatcher.dispatch(ctx, Hypercall.set_timer_op, (0xDEAD << 32) | lo, (0xBEEF << 32) | hi) == 0
    assert v.singleshot_timer.expires == deadline
    # hi = -1 (int32_t): a negative deadline, which set_timer_op turns into NOW() + 100 ms
    assert hv.dispatcher.dispatch(ctx, Hypercall.set_timer_op, 1, 0xFFFF_FFFF) == 0
    assert v.singleshot_timer.expires == hv.now_ns() + 100_000_000


def test_compat_widths_of_c_types():
    """PV32: long, unsigned long and pointers are 32 bits; fixed-width types keep their width."""
    assert decode("unsigned long", 2**64 - 1, compat=True) == 0xFFFF_FFFF
    assert decode("long", 0x1_FFFF_FFFF, compat=True) == -1
    assert decode("void *", 0x1234_5678_9ABC, compat=True) == 0x5678_9ABC
    assert decode("int32_t", 0xFFFF_FFFF, compat=True) == -1
    assert decode("unsigned long", 2**64 - 1) == 2**64 - 1


def test_compat_form_needs_compat_args_and_a_handler():
    with pytest.raises(ValueError, match="compat_args"):
        compat_handler(Hypercall.vcpu_op)


@pytest.mark.parametrize("value", [0, 1, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 2**63, 2**64 - 1, -1, -(2**63)])
def test_fast_conversions_agree_with_the_table_decoder(value):
    assert c_int(value) == decode("int", value)
    assert c_long(value) == decode("long", value)
