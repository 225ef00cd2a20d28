"""Runstate accounting, VCPUOP_get_runstate_info and the registered runstate areas (spec 2, 1.2 cmds 4/5/14)."""

from __future__ import annotations

import pytest

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import SchedOp, VcpuOp
from xenpy.abi.xen import VMASST_TYPE_runstate_update_flag
from xenpy.core import runstate as runstate_mod
from xenpy.core.runstate import (
    XEN_RUNSTATE_UPDATE,
    RUNSTATE_blocked,
    RUNSTATE_offline,
    RUNSTATE_runnable,
    RUNSTATE_running,
)

from .conftest import ALL_PROFILES, HOLE_GVA, UNMAPPED_GVA, Guest

EFAULT = -XenErrno.EFAULT
MS = 1_000_000


def get_info(g: Guest, vcpuid: int, *, by: int = 0) -> tuple[int, int, list[int]]:
    buf = g.dom.alloc_guest(48, 8)
    assert g.vcpu_op(VcpuOp.VCPUOP_get_runstate_info, vcpuid, buf, vcpu=by) == 0
    info = g.get("vcpu_runstate_info", buf)
    return info.state, info.state_entry_time, list(info.time)


def register_area(g: Guest, vcpuid: int, *, by: int = 0) -> int:
    area = g.dom.alloc_guest(48, 8)
    arg = g.put("vcpu_register_runstate_memory_area", addr={"p": area})
    assert g.vcpu_op(VcpuOp.VCPUOP_register_runstate_memory_area, vcpuid, arg, vcpu=by) == 0
    return area


def read_area(g: Guest, area: int) -> tuple[int, int, list[int]]:
    info = g.get("vcpu_runstate_info", area)
    return info.state, info.state_entry_time, list(info.time)


# ------------------------------------------------------------------------------------------ 2.1 creation


def test_creation_state_is_offline(make_guest, hv):
    """spec 2.1: a new vCPU is offline since creation, with zero times."""
    hv.run_for(5 * MS)
    g = make_guest(running=False)
    for v in g.v:
        assert v.runstate.as_tuple() == (RUNSTATE_offline, hv.now_ns(), 0, 0, 0, 0)
        assert v.creation_ns == hv.now_ns()


# ------------------------------------------------------------------------------------------ 2.3 get


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_get_runstate_info_adds_now_delta(make_guest, hv, profile):
    """spec 2.3: get adds NOW - state_entry_time to the current state and leaves state_entry_time unchanged."""
    g = make_guest(profile)
    start = hv.now_ns()
    hv.run_for(7 * MS)
    state, entry, times = get_info(g, 1)
    assert state == RUNSTATE_offline
    assert entry == start
    assert times == [0, 0, 0, 7 * MS]
    assert sum(times) == hv.now_ns() - g.v[1].creation_ns


def test_get_runstate_info_of_current_is_running(guest: Guest, hv):
    """spec 2.3: for v == current the state is always running."""
    hv.run_for(3 * MS)
    state, _entry, times = get_info(guest, 0)
    assert state == RUNSTATE_running
    assert times[RUNSTATE_running] == 3 * MS
    assert sum(times) == hv.now_ns() - guest.v[0].creation_ns


def test_get_runstate_info_bad_pointer(guest: Guest):
    """spec 1.2 cmd 4: a failing copy_to_guest gives -EFAULT."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_get_runstate_info, 0, UNMAPPED_GVA) == EFAULT
    assert guest.vcpu_op(VcpuOp.VCPUOP_get_runstate_info, 0, HOLE_GVA) == EFAULT


def test_get_runstate_info_read_only_page(guest: Guest):
    """spec 1.2 cmd 4: a read-only destination (a page-table page) gives -EFAULT."""
    pt_gva = guest.dom.virt_base + guest.dom.pagetables.table_pfns(1)[0] * 4096
    assert guest.vcpu_op(VcpuOp.VCPUOP_get_runstate_info, 0, pt_gva) == EFAULT


def test_get_runstate_info_any_vcpu(guest: Guest, hv):
    """spec 1.2 cmd 4: the target may be any vCPU of the domain, including a running remote one."""
    guest.bring_up(1)
    hv.run_for(2 * MS)
    state, _, times = get_info(guest, 1)
    assert state == RUNSTATE_running
    assert times[RUNSTATE_running] == 2 * MS


# ------------------------------------------------------------------------------------------ 2.4 area


def test_register_copies_raw_runstate_for_current(guest: Guest, hv):
    """spec 1.2 cmd 5: for v == current the raw runstate is copied (times as of the last change)."""
    hv.run_for(4 * MS)
    area = register_area(guest, 0)
    state, entry, times = read_area(guest, area)
    assert state == RUNSTATE_running
    assert times == [0, 0, 0, 0]
    assert entry == guest.v[0].runstate.state_entry_time


def test_register_copies_runstate_get_for_other(guest: Guest, hv):
    """spec 1.2 cmd 5: for another vCPU vcpu_runstate_get is copied (NOW delta added)."""
    hv.run_for(4 * MS)
    area = register_area(guest, 2)
    state, _, times = read_area(guest, area)
    assert state == RUNSTATE_offline
    assert times[RUNSTATE_offline] == 4 * MS


def test_register_bad_arg_and_handle(guest: Guest):
    """spec 1.2 cmd 5: unreadable arg -> -EFAULT; an area start outside __addr_ok -> -EFAULT."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_register_runstate_memory_area, 0, UNMAPPED_GVA) == EFAULT
    arg = guest.put_u64(HOLE_GVA)
    assert guest.vcpu_op(VcpuOp.VCPUOP_register_runstate_memory_area, 0, arg) == EFAULT
    assert guest.v[0].runstate_guest_gva == 0


def test_register_fault_during_copy_is_ignored(guest: Guest):
    """spec 1.2 cmd 5: an acceptable but unmapped area is registered; the failing first copy is ignored."""
    arg = guest.put_u64(UNMAPPED_GVA)
    assert guest.vcpu_op(VcpuOp.VCPUOP_register_runstate_memory_area, 0, arg) == 0
    assert guest.v[0].runstate_guest_gva == UNMAPPED_GVA


def test_register_null_disables_updates(guest: Guest, hv):
    """spec 1.2 cmd 5, 2.4: NULL is accepted and stops area updates."""
    area = register_area(guest, 1)
    guest.dom.write_guest(area, bytes(48))
    arg = guest.put_u64(0)
    assert guest.vcpu_op(VcpuOp.VCPUOP_register_runstate_memory_area, 1, arg) == 0
    guest.bring_up(1)
    assert guest.dom.read_guest(area, 48) == bytes(48)


def test_area_not_written_without_context_switch(guest: Guest, hv):
    """spec 2.4: a state change without a context switch (wake of a non-running vCPU) does not write the area."""
    guest.bring_up(1)
    guest.bring_up(2)  # both pCPUs busy: vCPU 2 waits runnable
    area = register_area(guest, 2)
    assert read_area(guest, area)[0] == RUNSTATE_runnable
    hv.run_for(1 * MS)
    assert guest.vcpu_op(VcpuOp.VCPUOP_down, 2) == 0
    assert guest.v[2].runstate.state == RUNSTATE_offline
    assert read_area(guest, area)[0] == RUNSTATE_runnable


def test_area_written_at_context_switch(guest1: Guest):
    """spec 2.4: at a switch the prev area shows its new state, the next area running since the switch."""
    area0 = register_area(guest1, 0)
    guest1.bring_up(1)
    area1 = register_area(guest1, 1)
    guest1.hv.run_for(30 * MS)  # the slice of vCPU 0 ends: vCPU 1 takes the pCPU
    t_switch = 30 * MS
    assert guest1.v[1].runstate.state == RUNSTATE_running
    state0, entry0, times0 = read_area(guest1, area0)
    assert (state0, entry0) == (RUNSTATE_runnable, t_switch)
    assert times0[RUNSTATE_running] == t_switch
    state1, entry1, times1 = read_area(guest1, area1)
    assert (state1, entry1) == (RUNSTATE_running, t_switch)
    assert times1[RUNSTATE_runnable] == t_switch - guest1.v[1].creation_ns - times1[RUNSTATE_offline]


def test_yield_alone_continues_without_area_write(guest: Guest, hv):
    """spec 2.5, 2.4: a yield where the scheduler re-picks the same vCPU changes nothing and writes nothing."""
    area = register_area(guest, 0)
    guest.dom.write_guest(area, b"\xaa" * 48)
    before = guest.v[0].runstate.as_tuple()
    assert guest.sched_op(SchedOp.SCHEDOP_yield) == 0
    assert guest.v[0].runstate.as_tuple() == before
    assert guest.dom.read_guest(area, 48) == b"\xaa" * 48


def _record_writes(monkeypatch, v):
    writes = []
    original = v.copy_to_guest

    def recording(gva, data):
        writes.append((gva, bytes(data)))
        return original(gva, data)

    monkeypatch.setattr(v, "copy_to_guest", recording)
    return writes


def test_update_flag_protocol_with_vmassist(guest1: Guest, monkeypatch):
    """spec 2.4: with VMASST 5 the MSB byte of state_entry_time (offset +15) is written alone with the flag, then
    the struct with the flag, then the byte without it."""
    guest1.bring_up(1)
    area = register_area(guest1, 0)
    guest1.dom.vm_assist |= 1 << VMASST_TYPE_runstate_update_flag
    writes = _record_writes(monkeypatch, guest1.v[0])
    guest1.hv.run_for(30 * MS)
    assert [(gva - area, len(data)) for gva, data in writes] == [(15, 1), (0, 48), (15, 1)]
    assert writes[0][1][0] & 0x80
    flagged = int.from_bytes(writes[1][1][8:16], "little")
    assert flagged & XEN_RUNSTATE_UPDATE
    assert not writes[2][1][0] & 0x80
    _, entry, _ = read_area(guest1, area)
    assert entry == 30 * MS
    assert not entry & XEN_RUNSTATE_UPDATE


def test_no_update_flag_without_vmassist(guest1: Guest, monkeypatch):
    """spec 2.4: without the VM assist the struct is written once, without the flag."""
    guest1.bring_up(1)
    area = register_area(guest1, 0)
    writes = _record_writes(monkeypatch, guest1.v[0])
    guest1.hv.run_for(30 * MS)
    assert [(gva - area, len(data)) for gva, data in writes] == [(0, 48)]
    assert not int.from_bytes(writes[0][1][8:16], "little") & XEN_RUNSTATE_UPDATE


def test_retry_when_copy_fails_outside_kernel_mode(guest1: Guest):
    """spec 2.4 Retry: a complete VA copy failure while in guest user mode sets need_update_runstate_area; the
    copy is redone on the next switch into kernel mode."""
    guest1.bring_up(1)
    area = guest1.dom.alloc_guest(48, 8)
    arg = guest1.put_u64(area)
    assert guest1.vcpu_op(VcpuOp.VCPUOP_register_runstate_memory_area, 0, arg) == 0
    guest1.dom.pagetables.unmap(area & ~0xFFF)
    guest1.v[0].arch.kernel_mode = False
    guest1.hv.run_for(30 * MS)
    assert guest1.v[0].need_update_runstate_area
    guest1.dom.pagetables.map_page(area & ~0xFFF, (area - guest1.dom.virt_base) >> 12)
    guest1.v[0].toggle_guest_mode(True)
    assert not guest1.v[0].need_update_runstate_area
    assert read_area(guest1, area)[0] == RUNSTATE_runnable


def test_no_retry_in_kernel_mode(guest1: Guest):
    """spec 2.4 Retry: in kernel mode a failed copy is not retried."""
    guest1.bring_up(1)
    arg = guest1.put_u64(UNMAPPED_GVA)
    assert guest1.vcpu_op(VcpuOp.VCPUOP_register_runstate_memory_area, 0, arg) == 0
    guest1.hv.run_for(30 * MS)
    assert not guest1.v[0].need_update_runstate_area


# ------------------------------------------------------------------------------------------ phys area (cmd 14)


def test_phys_area_always_uses_update_protocol(guest1: Guest, monkeypatch):
    """spec 1.2 cmd 14, 2.4: phys-area updates use 8-byte state_entry_time writes around the struct, always."""
    guest1.bring_up(1)
    page = guest1.page()
    maddr = guest1.mfn_of(page) << 12
    arg = guest1.put_u64(maddr + 64)
    assert guest1.vcpu_op(VcpuOp.VCPUOP_register_runstate_phys_area, 0, arg) == 0
    writes = []
    original = runstate_mod.write_phys

    def recording(mv, where, data):
        writes.append((where - maddr - 64, bytes(data)))
        original(mv, where, data)

    monkeypatch.setattr(runstate_mod, "write_phys", recording)
    guest1.hv.run_for(30 * MS)
    assert [(off, len(data)) for off, data in writes] == [(8, 8), (0, 48), (8, 8)]
    assert int.from_bytes(writes[0][1], "little") == 30 * MS | XEN_RUNSTATE_UPDATE
    assert int.from_bytes(writes[2][1], "little") == 30 * MS
    info = guest1.get("vcpu_runstate_info", page + 64)
    assert (info.state, info.state_entry_time) == (RUNSTATE_runnable, 30 * MS)


def test_phys_area_populate_only_for_current(guest: Guest):
    """spec 1.2 cmd 14: populate writes v->runstate only when v == current."""
    page = guest.page()
    guest.dom.write_guest(page, b"\x55" * 96)
    maddr = guest.mfn_of(page) << 12
    assert guest.vcpu_op(VcpuOp.VCPUOP_register_runstate_phys_area, 1, guest.put_u64(maddr)) == 0
    assert guest.dom.read_guest(page, 48) == b"\x55" * 48
    assert guest.vcpu_op(VcpuOp.VCPUOP_register_runstate_phys_area, 0, guest.put_u64(maddr + 48)) == 0
    assert guest.get("vcpu_runstate_info", page + 48).state == RUNSTATE_running


def test_phys_area_suppresses_va_area(guest: Guest, hv):
    """spec 1.2 cmd 14: while a phys area is registered the VA area is not updated; ~0 unregisters."""
    guest.bring_up(1)
    guest.bring_up(2)
    va_area = register_area(guest, 0)
    guest.dom.write_guest(va_area, bytes(48))
    page = guest.page()
    assert guest.vcpu_op(VcpuOp.VCPUOP_register_runstate_phys_area, 0, guest.put_u64(guest.mfn_of(page) << 12)) == 0
    hv.run_for(30 * MS)
    assert guest.dom.read_guest(va_area, 48) == bytes(48)
    assert guest.vcpu_op(VcpuOp.VCPUOP_register_runstate_phys_area, 0, guest.put_u64(2**64 - 1)) == 0
    assert guest.v[0].runstate_phys_maddr is None
    hv.run_for(30 * MS)
    assert read_area(guest, va_area)[1] == 60 * MS


@pytest.mark.parametrize(
    ("offset_fn", "errno"),
    [
        (lambda maddr: maddr + 4096 - 40, XenErrno.ENXIO),  # crosses a page
        (lambda maddr: maddr + 4, XenErrno.ENXIO),  # misaligned
        (lambda maddr: 0, XenErrno.EINVAL),  # mfn 0: not the domain's
    ],
)
def test_phys_area_errors(guest: Guest, offset_fn, errno):
    """spec 1.2 cmd 14, 4.1 map_guest_area: -ENXIO (crossing, misaligned), -EINVAL (no page)."""
    maddr = guest.mfn_of(guest.page()) << 12
    arg = guest.put_u64(offset_fn(maddr))
    assert guest.vcpu_op(VcpuOp.VCPUOP_register_runstate_phys_area, 0, arg) == -errno
    assert guest.v[0].runstate_phys_maddr is None


def test_phys_area_page_table_is_eacces(guest: Guest):
    """spec 4.1 map_guest_area: a page that cannot be typed writable (a page table) -> -EACCES."""
    l1_mfn = guest.dom.memory.mfn_of(guest.dom.pagetables.table_pfns(1)[0])
    arg = guest.put_u64(l1_mfn << 12)
    assert guest.vcpu_op(VcpuOp.VCPUOP_register_runstate_phys_area, 0, arg) == -XenErrno.EACCES


def test_phys_area_bad_arg(guest: Guest):
    """spec 1.2 cmd 14: the 8-byte address cannot be read -> -EFAULT."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_register_runstate_phys_area, 0, UNMAPPED_GVA) == EFAULT


# ------------------------------------------------------------------------------------------ 2.5 transitions


def test_block_and_wake_transitions(guest: Guest, hv):
    """spec 2.5: block -> blocked; an event wake -> runnable -> running once scheduled."""
    guest.bring_up(1)
    port = guest.bind_virq(0, 1, by=1)
    assert port > 0
    assert guest.block(vcpu=1) == 0
    assert guest.v[1].runstate.state == RUNSTATE_blocked
    hv.run_for(5 * MS)
    guest.dom.evtchn.send_guest_vcpu_virq(guest.v[1], 0)
    hv.do_softirqs()
    assert guest.v[1].runstate.state == RUNSTATE_running
    _, _, times = get_info(guest, 1)
    assert times[RUNSTATE_blocked] == 5 * MS


def test_blocked_wins_over_offline(guest: Guest, hv):
    """spec 2.1, 2.5: a blocked vCPU that is also paused or down reports blocked; a wake while it cannot run
    moves it to offline."""
    guest.bring_up(1)
    assert guest.block(vcpu=1) == 0
    assert guest.vcpu_op(VcpuOp.VCPUOP_down, 1) == 0
    assert guest.v[1].runstate.state == RUNSTATE_blocked
    guest.dom.pause()
    assert guest.v[1].runstate.state == RUNSTATE_blocked
    assert guest.v[0].runstate.state == RUNSTATE_offline
    guest.dom.unpause()
    guest.hv.scheduler.vcpu_kick(guest.v[1])
    assert guest.v[1].runstate.state == RUNSTATE_offline


def test_domain_paused_wake_goes_offline(guest: Guest):
    """spec 2.5: a wake from block while the domain is paused gives blocked -> offline."""
    guest.bring_up(1)
    assert guest.block(vcpu=1) == 0
    guest.dom.pause()
    guest.hv.scheduler.vcpu_kick(guest.v[1])
    assert guest.v[1].runstate.state == RUNSTATE_offline
    guest.dom.unpause()
    assert guest.v[1].runstate.state == RUNSTATE_running


def test_preemption_and_steal_time(guest: Guest, hv):
    """spec 2.5, 2.2: three vCPUs on two pCPUs: slices rotate, waiting time accumulates as runnable, and the
    accounting is exact."""
    guest.bring_up(1)
    guest.bring_up(2)
    hv.run_for(300 * MS)
    total = {s: 0 for s in range(4)}
    for vid in range(3):
        _, _, times = get_info(guest, vid)
        assert sum(times) == hv.now_ns() - guest.v[vid].creation_ns
        assert times[RUNSTATE_runnable] > 0
        for s in range(4):
            total[s] += times[s]
    assert total[RUNSTATE_running] == 2 * 300 * MS  # two busy pCPUs
    assert total[RUNSTATE_runnable] == 300 * MS


def test_yield_with_other_runnable(guest: Guest, hv):
    """spec 2.5: yield with another runnable vCPU: running -> runnable, the other runs."""
    guest.bring_up(1)
    guest.bring_up(2)
    assert guest.sched_op(SchedOp.SCHEDOP_yield) == 0
    assert guest.v[0].runstate.state == RUNSTATE_runnable
    assert guest.v[2].runstate.state == RUNSTATE_running
