"""VCPUOP_register_vcpu_info and the vcpu_time_info areas (spec 4.1, 1.4, 3.6, 1.2 cmds 10/13/15, 8.9)."""

from __future__ import annotations

import pytest

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import EvtchnOp, SchedOp, VcpuOp
from xenpy.cli.main import build_parser
from xenpy.core.runstate import RUNSTATE_blocked, RUNSTATE_offline, RUNSTATE_running

from .conftest import HOLE_GVA, UNMAPPED_GVA, Guest

EINVAL = -XenErrno.EINVAL
EFAULT = -XenErrno.EFAULT
ENXIO = -XenErrno.ENXIO
EBUSY = -XenErrno.EBUSY
EACCES = -XenErrno.EACCES
MS = 1_000_000
ALL_ONES = 2**64 - 1


def register(g: Guest, vcpuid: int, mfn: int, offset: int, *, by: int = 0) -> int:
    arg = g.put("vcpu_register_vcpu_info", mfn=mfn, offset=offset, rsvd=0xDEAD)
    return g.vcpu_op(VcpuOp.VCPUOP_register_vcpu_info, vcpuid, arg, vcpu=by)


def page_table_mfn(g: Guest) -> int:
    return g.dom.memory.mfn_of(g.dom.pagetables.table_pfns(1)[0])


# ------------------------------------------------------------------------------------------ HEAD checks


def test_register_bad_arg(guest: Guest):
    """spec 4.1 check 1: the argument cannot be read -> -EFAULT."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_register_vcpu_info, 0, UNMAPPED_GVA) == EFAULT


@pytest.mark.parametrize(
    ("mfn", "offset"),
    [(2**52, 0), (2**63, 0), (1, 4096), (1, 0xFFFF_FFFF), (2**52 - 1, 0xFFF)],
    ids=["mfn-too-large", "mfn-huge", "offset-4096", "offset-max", "gaddr-all-ones"],
)
def test_register_gaddr_checks(guest: Guest, mfn, offset):
    """spec 4.1 check 2: gaddr == ~0 or (gaddr >> 12) != mfn -> -EINVAL."""
    assert register(guest, 0, mfn, offset) == EINVAL


def test_register_twice_is_ebusy_before_layout_checks(guest: Guest):
    """spec 4.1 check 3, 1.4 (>= 4.18): already registered -> -EBUSY, before -ENXIO; never undone."""
    mfn = guest.mfn_of(guest.page())
    assert register(guest, 0, mfn, 0) == 0
    assert register(guest, 0, mfn, 4) == EBUSY
    assert register(guest, 0, guest.mfn_of(guest.page()), 0) == EBUSY


@pytest.mark.parametrize("offset", [4040, 4048, 4088])
def test_register_crossing_page_is_enxio(guest: Guest, offset):
    """spec 4.1 check 4, 8.9: offset > 4032 (the 64 bytes cross the page; 8-aligned) -> -ENXIO."""
    assert register(guest, 0, guest.mfn_of(guest.page()), offset) == ENXIO


@pytest.mark.parametrize("offset", [1, 4, 12, 4031])
def test_register_misaligned_is_enxio(guest: Guest, offset):
    """spec 4.1 check 4, 8.9: not 8-aligned (PV64) -> -ENXIO."""
    assert register(guest, 0, guest.mfn_of(guest.page()), offset) == ENXIO


def test_register_foreign_or_missing_page_is_einval(make_guest):
    """spec 4.1 check 4: no page, or another domain's frame -> -EINVAL."""
    a = make_guest()
    b = make_guest()
    assert register(a, 0, 0, 0) == EINVAL
    assert register(a, 0, b.mfn_of(b.page()), 0) == EINVAL
    assert register(a, 0, a.hv.machine.nr_frames + 5, 0) == EINVAL


def test_register_page_table_is_eacces(guest: Guest):
    """spec 4.1 check 4, 1.4 (>= 4.18): a page that is not writable-typeable (a page table) -> -EACCES."""
    assert register(guest, 0, page_table_mfn(guest), 0) == EACCES
    assert guest.v[0].vcpu_info_maddr == guest.dom.shared_info_maddr


def test_register_offset_4032_ok(guest: Guest):
    """spec 4.1: offset 4032 is the last one that fits."""
    assert register(guest, 0, guest.mfn_of(guest.page()), 4032) == 0


# ------------------------------------------------------------------------------------------ HEAD effects


def test_register_copies_old_contents_and_raises_spurious_event(guest: Guest):
    """spec 4.1 effects 1-3, 8.9: 64 bytes copied from the shared_info slot, then pending_sel = ~0,
    upcall_pending = 1 and the time record refreshed; the old slot goes stale."""
    slot = guest.dom.shared_info_maddr
    machine = guest.hv.machine
    machine.write(slot + 16, (0x1122334455667788).to_bytes(8, "little"))  # arch.cr2
    machine.write_u8(slot + 1, 1)
    old = machine.read(slot, 64)
    page = guest.page()
    assert register(guest, 0, guest.mfn_of(page), 128) == 0
    new = guest.dom.read_guest(page + 128, 64)
    assert new[1] == 1  # upcall_mask copied
    assert new[16:24] == old[16:24]  # arch.cr2 copied
    assert int.from_bytes(new[8:16], "little") == ALL_ONES
    assert new[0] == 1
    version = int.from_bytes(new[32:36], "little")
    assert version % 2 == 0 and version == int.from_bytes(old[32:36], "little") + 2
    assert machine.read(slot, 64) == old  # stale, not cleared
    info = guest.v[0].vcpu_info()
    assert info.evtchn_pending_sel == ALL_ONES and info.arch.cr2 == 0x1122334455667788


def test_events_go_to_the_new_location(guest: Guest):
    """spec 4.1 effect 2: from now on Xen reads and writes only the new location."""
    page = guest.page()
    assert register(guest, 0, guest.mfn_of(page), 0) == 0
    guest.dom.write_guest(page, bytes(16))  # guest acks the spurious event
    arg = guest.put("evtchn_bind_ipi", vcpu=0, port=0)
    assert guest.evtchn_op(EvtchnOp.EVTCHNOP_bind_ipi, arg) == 0
    slot_before = guest.hv.machine.read(guest.dom.shared_info_maddr, 64)
    assert guest.evtchn_op(EvtchnOp.EVTCHNOP_send, guest.put("evtchn_send", port=1)) == 0
    assert guest.dom.read_guest(page, 1) == b"\x01"
    assert int.from_bytes(guest.dom.read_guest(page + 8, 8), "little") == 1
    assert guest.hv.machine.read(guest.dom.shared_info_maddr, 64) == slot_before


def test_register_from_dummy_zeroes_and_masks(make_guest):
    """spec 4.1 effect 1: for a vCPU >= 32 the new area starts zeroed with evtchn_upcall_mask = 1."""
    g = make_guest(max_vcpus=40)
    page = g.page()
    g.dom.write_guest(page, b"\xff" * 64)
    assert register(g, 35, g.mfn_of(page), 0) == 0
    data = g.dom.read_guest(page, 64)
    assert data[0] == 1 and data[1] == 1
    assert int.from_bytes(data[8:16], "little") == ALL_ONES
    assert data[16:32] == bytes(16)
    assert g.v[35].vcpu_info_registered


def test_register_remote_running_target_is_paused(guest: Guest, hv):
    """spec 4.1 check 5, 1.4 (>= 4.18): a remote target that is up is allowed and paused for the duration."""
    guest.bring_up(1)
    seen = []
    hv.runstate_hooks.append(lambda v, old, new, t: seen.append((v.vcpu_id, new)))
    assert register(guest, 1, guest.mfn_of(guest.page()), 0) == 0
    assert (1, RUNSTATE_offline) in seen
    assert guest.v[1].pause_count == 0
    assert guest.v[1].runstate.state == RUNSTATE_running


def test_register_kicks_blocked_remote_target(guest: Guest):
    """spec 4.1 effect 3: vcpu_mark_events_pending kicks on a 0->1 upcall_pending change: a blocked target wakes."""
    guest.bring_up(1)
    guest.v[1].vcpu_info_mv[0] = 0
    assert guest.sched_op(SchedOp.SCHEDOP_block, vcpu=1) == 0
    assert guest.v[1].runstate.state == RUNSTATE_blocked
    assert register(guest, 1, guest.mfn_of(guest.page()), 0) == 0
    assert guest.v[1].runstate.state == RUNSTATE_running


def test_register_same_page_for_two_vcpus(guest: Guest):
    """spec 4.1: one page can hold several vcpu_info areas (the page is typed writable, not exclusive)."""
    mfn = guest.mfn_of(guest.page())
    assert register(guest, 0, mfn, 0) == 0
    assert register(guest, 1, mfn, 64) == 0


# ------------------------------------------------------------------------------------------ <= 4.17


@pytest.mark.parametrize(
    ("profile", "offset", "rc"),
    [
        ("4.17", 4040, ENXIO),
        ("4.17", 4096, ENXIO),
        ("4.10", 4040, EINVAL),
        ("4.10", 4096, EINVAL),
        ("4.17", 4, ENXIO),
        ("4.10", 4, 0),
    ],
)
def test_legacy_offset_checks(make_guest, profile, offset, rc):
    """spec 1.4, 4.1 (<= 4.17): offset > 4032 -> -ENXIO (4.16+) or -EINVAL; misaligned -> -ENXIO in 4.17,
    accepted in 4.10.0."""
    g = make_guest(profile)
    assert register(g, 0, g.mfn_of(g.page()), offset) == rc


@pytest.mark.parametrize("profile", ["4.17", "4.17.3", "4.10"])
def test_legacy_errors_are_einval(make_guest, profile):
    """spec 1.4, 4.1 (<= 4.17): already registered, remote target up, no page, page not writable -> -EINVAL."""
    g = make_guest(profile)
    g.bring_up(1)
    assert register(g, 1, g.mfn_of(g.page()), 0) == EINVAL  # remote and up
    assert register(g, 0, 2**52, 0) == EINVAL
    assert register(g, 0, page_table_mfn(g), 0) == EINVAL
    assert register(g, 0, g.mfn_of(g.page()), 0) == 0
    assert register(g, 0, g.mfn_of(g.page()), 0) == EINVAL
    assert register(g, 2, g.mfn_of(g.page()), 0) == 0  # remote but down


def test_legacy_order_offset_before_already_registered(make_guest):
    """spec 4.1 (<= 4.17 order): offset and alignment are checked before 'already registered'."""
    g = make_guest("4.17")
    mfn = g.mfn_of(g.page())
    assert register(g, 0, mfn, 0) == 0
    assert register(g, 0, mfn, 4040) == ENXIO
    assert register(g, 0, mfn, 8) == EINVAL


@pytest.mark.parametrize(("profile", "refreshed"), [("4.17", True), ("4.10", False)])
def test_legacy_time_refresh(make_guest, profile, refreshed):
    """spec 1.4: register_vcpu_info refreshes vcpu_info.time since 4.16 only."""
    g = make_guest(profile)
    old = g.hv.machine.read(g.dom.shared_info_maddr + 32, 32)
    page = g.page()
    assert register(g, 0, g.mfn_of(page), 0) == 0
    new = g.dom.read_guest(page + 32, 32)
    assert (new != old) == refreshed
    assert g.dom.read_guest(page, 1) == b"\x01"
    assert int.from_bytes(g.dom.read_guest(page + 8, 8), "little") == ALL_ONES


# ------------------------------------------------------------------------------------------ time areas (3.6)


def test_vcpu_time_info_written_at_switch_in(guest: Guest, hv):
    """spec 3.6: the record is refreshed with the version protocol when the vCPU is scheduled in."""
    info = guest.v[0].vcpu_info().time
    assert info.version % 2 == 0 and info.version > 0
    mul, shift = hv.tsc_scale
    assert (info.tsc_to_system_mul, info.tsc_shift) == (mul, shift)
    assert info.system_time == 0


def test_time_skipped_unless_changed(guest1: Guest):
    """spec 3.6: unless forced, nothing is written when only the version would change."""
    g = guest1
    g.bring_up(1)
    before = g.v[0].vcpu_info().time.version
    g.hv.run_for(30 * MS)  # vCPU 1 in
    g.hv.run_for(30 * MS)  # vCPU 0 back in, same calibration second
    assert g.v[0].vcpu_info().time.version == before
    g.hv.run_for(1_000 * MS)
    assert g.v[0].vcpu_info().time.version > before
    assert g.v[0].vcpu_info().time.system_time == 1_000 * MS


def test_time_refreshed_at_calibration_while_running(guest: Guest):
    """spec 3.6: time calibration (once a second) rewrites the running vCPU's record with the new stamp, with
    no context switch; a descheduled vCPU keeps its record until it is next switched in."""
    running, down = guest.v[0], guest.v[1]
    assert running.is_running
    entry = running.runstate.state_entry_time
    before = running.vcpu_info().time
    guest.hv.run_for(999 * MS)
    assert running.vcpu_info().time.version == before.version
    guest.hv.run_for(1 * MS + 1)
    after = running.vcpu_info().time
    assert (after.version, after.system_time) == (before.version + 2, 1_000 * MS)
    assert running.runstate.state_entry_time == entry
    assert down.vcpu_info().time.system_time == 0


def test_register_time_memory_area(guest: Guest, hv):
    """spec 1.2 cmd 13, 3.6: -EFAULT (arg, handle); the secondary copy is written at once (even version)."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_register_vcpu_time_memory_area, 0, UNMAPPED_GVA) == EFAULT
    assert guest.vcpu_op(VcpuOp.VCPUOP_register_vcpu_time_memory_area, 0, guest.put_u64(HOLE_GVA)) == EFAULT
    area = guest.dom.alloc_guest(32, 8)
    assert guest.vcpu_op(VcpuOp.VCPUOP_register_vcpu_time_memory_area, 0, guest.put_u64(area)) == 0
    copy = guest.get("vcpu_time_info", area)
    assert copy.version % 2 == 0
    main = guest.v[0].vcpu_info().time
    assert (copy.system_time, copy.tsc_to_system_mul) == (main.system_time, main.tsc_to_system_mul)
    assert guest.vcpu_op(VcpuOp.VCPUOP_register_vcpu_time_memory_area, 0, guest.put_u64(UNMAPPED_GVA)) == 0


def test_register_time_phys_area(guest: Guest):
    """spec 1.2 cmd 15: map_guest_area errors with a 32-byte size; populate leaves version 0."""
    page = guest.page()
    maddr = guest.mfn_of(page) << 12
    cmd = VcpuOp.VCPUOP_register_vcpu_time_phys_area
    assert guest.vcpu_op(cmd, 0, guest.put_u64(maddr + 4072)) == ENXIO
    assert guest.vcpu_op(cmd, 0, guest.put_u64(maddr + 4)) == ENXIO
    assert guest.vcpu_op(cmd, 0, guest.put_u64(page_table_mfn(guest) << 12)) == EACCES
    assert guest.vcpu_op(cmd, 0, guest.put_u64(maddr + 4064)) == 0
    copy = guest.get("vcpu_time_info", page + 4064)
    assert copy.version == 0
    assert copy.tsc_to_system_mul == guest.hv.tsc_scale[0]
    assert guest.vcpu_op(cmd, 0, guest.put_u64(ALL_ONES)) == 0
    assert guest.v[0].time_phys_maddr is None


# ------------------------------------------------------------------------------------------ vCPUs >= 32


@pytest.mark.parametrize(("vcpus", "accepted"), [(32, True), (33, True), (8192, True), (8193, False)])
def test_run_accepts_vcpus_beyond_the_shared_info_slots(capsys, vcpus, accepted):
    """spec 1.2 cmd 0 (1), 4.1: a PV domain may have more vCPUs than the 32 vcpu_info slots of shared_info
    (those use the dummy vcpu_info until one is registered); x86 Xen allows MAX_VIRT_CPUS = 8192
    (``GDT_LDT_MBYTES << (20 - GDT_LDT_VCPU_VA_SHIFT)``), and so does ``xenpy run --vcpus``."""
    parser = build_parser()
    argv = ["run", "img", "--vcpus", str(vcpus)]
    if accepted:
        assert parser.parse_args(argv).vcpus == vcpus
    else:
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        assert "between 1 and 8192" in capsys.readouterr().err


def test_vcpu_32_of_a_33_vcpu_domain_needs_a_registered_vcpu_info(make_guest):
    """spec 1.2 cmd 0 (1), 4.1 populate: in a 33-vCPU domain vCPU 32 cannot be initialised (-EINVAL, before
    the context is read) until its vcpu_info is registered; registering it while it is down is allowed in
    every profile (as on Xen 4.20 and 4.17.7: guest test vcpu-info-32)."""
    for profile in ("head", "4.17.7"):
        g = make_guest(max_vcpus=33, profile=profile)
        assert g.vcpu_op(VcpuOp.VCPUOP_initialise, 32, UNMAPPED_GVA) == EINVAL
        assert g.vcpu_op(VcpuOp.VCPUOP_initialise, 31, UNMAPPED_GVA) == EFAULT
        mfn = g.mfn_of(g.page())
        assert register(g, 32, mfn, 0) == 0
        assert g.vcpu_op(VcpuOp.VCPUOP_initialise, 32, UNMAPPED_GVA) == EFAULT
        assert g.vcpu_op(VcpuOp.VCPUOP_is_up, 32) == 0
