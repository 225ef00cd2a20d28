"""PV memory hypercalls a minimal kernel needs, through the hypervisor's Python API: mmu_update,
update_va_mapping, mmuext_op, memory_op, grant_table_op, multicall, stack_switch (``xen/arch/x86/mm.c``,
``xen/common/memory.c``, ``xen/common/grant_table.c``, ``xen/common/multicall.c``; spec 5.9, 6.1, 7.2)."""

from __future__ import annotations

import struct

import pytest

from xenpy.abi.generated.hypercalls import GnttabOp, Hypercall, MmuextCmd, XenMem
from xenpy.abi.x86 import PAGE_GUEST_KERNEL
from xenpy.abi.xen import DOMID_SELF, MMU_MACHPHYS_UPDATE
from xenpy.core.memory import OutOfMachineMemory, PageType
from xenpy.hypercall.context import PREEMPT_ENTRIES
from xenpy.hypercall.handlers.mmu_update import MMU_UPDATE_PREEMPTED
from xenpy.hypervisor import GUEST_VIRT_BASE, DomainConfig, Hypervisor

EINVAL, EBUSY, EPERM, ESRCH, ENOSYS, EACCES, EOPNOTSUPP, ENOMEM = -22, -16, -1, -3, -38, -13, -95, -12
P, RW, USER, ACCESSED, DIRTY, PCD = 1, 2, 4, 0x20, 0x40, 0x10


@pytest.fixture
def env():
    hv = Hypervisor(memory_mib=16)
    dom = hv.create_domain(DomainConfig(memory_mib=2))
    dom.unpause()
    return hv, dom, dom.vcpus[0]


def call(hv, v, nr, *args):
    return hv.hypercall(v, nr, *args)


def l1_entry_maddr(dom, gva):
    return dom.pagetables.entry_maddr(gva, 1)


def test_update_va_mapping_maps_shared_info(env):
    """update_va_mapping writes the L1 entry of ``va`` (USER forced, the old frame's writable reference
    dropped) and the mapping is used at once (spec 7.2: the guest maps shared_info itself)."""
    hv, dom, v = env
    va = dom.alloc_guest_page()
    old_mfn = dom.gva_to_mfn(va)
    assert hv.machine.type_count(old_mfn) == 1
    pte = (dom.shared_info_mfn << 12) | P | RW | ACCESSED
    assert call(hv, v, Hypercall.update_va_mapping, va, pte, 2) == 0  # UVMF_INVLPG
    assert hv.machine.read_u64(l1_entry_maddr(dom, va)) == pte | USER | PAGE_GUEST_KERNEL
    assert dom.read_guest(va, 2) == b"\x00\x01"  # vcpu_info[0]: pending 0, mask 1
    assert hv.machine.type_count(old_mfn) == 0
    assert hv.machine.page_type(dom.shared_info_mfn) == PageType.writable


def test_update_va_mapping_refusals(env):
    """-EINVAL: no L1 maps ``va`` or a disallowed flag (PCD); -EBUSY: another domain's frame, or a writable
    mapping of a page table; -EPERM: a frame outside RAM. A refused update changes nothing."""
    hv, dom, v = env
    other = hv.create_domain(DomainConfig(memory_mib=1))
    va = dom.alloc_guest_page()
    before = hv.machine.read_u64(l1_entry_maddr(dom, va))
    mfn = dom.memory.mfn_of(3)
    assert call(hv, v, Hypercall.update_va_mapping, 0x1000, (mfn << 12) | P, 0) == EINVAL
    assert call(hv, v, Hypercall.update_va_mapping, va, (mfn << 12) | P | PCD, 0) == EINVAL
    assert call(hv, v, Hypercall.update_va_mapping, va, (other.memory.mfn_of(0) << 12) | P, 0) == EBUSY
    assert call(hv, v, Hypercall.update_va_mapping, va, (dom.pagetables.l4_mfn << 12) | P | RW, 0) == EBUSY
    assert call(hv, v, Hypercall.update_va_mapping, va, ((hv.machine.nr_frames + 5) << 12) | P, 0) == EPERM
    assert hv.machine.read_u64(l1_entry_maddr(dom, va)) == before
    # Read-only mappings of page tables are fine.
    assert call(hv, v, Hypercall.update_va_mapping, va, (dom.pagetables.l4_mfn << 12) | P, 0) == 0


def _mmu(hv, dom, v, reqs, foreigndom=DOMID_SELF):
    buf = dom.alloc_guest(16 * len(reqs) + 8, 16)
    dom.write_guest(buf, b"".join(struct.pack("<QQ", p, val) for p, val in reqs))
    pdone = buf + 16 * len(reqs)
    rc = call(hv, v, Hypercall.mmu_update, buf, len(reqs), pdone, foreigndom)
    return rc, struct.unpack("<I", dom.read_guest(pdone, 4))[0]


def test_mmu_update(env):
    """MMU_NORMAL_PT_UPDATE writes a validated entry; MMU_MACHPHYS_UPDATE sets the m2p; the batch stops at the
    first error (Xen's L4 slots: -EINVAL; an unknown command: -ENOSYS) and ``pdone`` counts what was done."""
    hv, dom, v = env
    va = dom.alloc_guest_page()
    target = dom.memory.mfn_of(7)
    entry = l1_entry_maddr(dom, va)
    rc, done = _mmu(hv, dom, v, [(entry, (target << 12) | P | RW), (target << 12 | 1, 0x1234)])
    assert (rc, done) == (0, 2)
    assert dom.gva_to_mfn(va) == target
    assert hv.machine.m2p[target] == 0x1234
    l4_slot_260 = (dom.pagetables.l4_mfn << 12) + 260 * 8
    rc, done = _mmu(hv, dom, v, [(entry, (target << 12) | P), (l4_slot_260, 0), (entry | 4, 0)])
    assert (rc, done) == (EINVAL, 1)
    rc, done = _mmu(hv, dom, v, [(entry | 4, 0)])
    assert (rc, done) == (ENOSYS, 0)
    assert _mmu(hv, dom, v, [(entry, 0)], foreigndom=dom.domid)[0] == ESRCH


def test_pin_unpin_and_base_pointers(env):
    """MMUEXT_PIN_L1_TABLE validates and pins (a frame mapped writable cannot be a table: -EINVAL; pinning
    twice: -EINVAL); UNPIN drops the pin; NEW_BASEPTR / NEW_USER_BASEPTR install roots; flushes bump the
    domain's mm generation."""
    hv, dom, v = env
    ops = dom.alloc_guest(24 * 4, 8)
    page_va = dom.alloc_guest_page()
    mfn = dom.gva_to_mfn(page_va)

    def mmuext(cmd, arg1=0, arg2=0):
        dom.write_guest(ops, struct.pack("<I4xQQ", cmd, arg1, arg2))
        return call(hv, v, Hypercall.mmuext_op, ops, 1, 0, DOMID_SELF)

    assert mmuext(MmuextCmd.MMUEXT_PIN_L1_TABLE, mfn) == EINVAL  # still mapped writable
    assert call(hv, v, Hypercall.update_va_mapping, page_va, (mfn << 12) | P | ACCESSED, 0) == 0
    assert mmuext(MmuextCmd.MMUEXT_PIN_L1_TABLE, mfn) == 0
    assert hv.machine.page_type(mfn) == PageType.l1
    assert mmuext(MmuextCmd.MMUEXT_PIN_L1_TABLE, mfn) == EINVAL
    assert mmuext(MmuextCmd.MMUEXT_UNPIN_TABLE, mfn) == 0
    assert hv.machine.type_count(mfn) == 0
    assert mmuext(MmuextCmd.MMUEXT_UNPIN_TABLE, mfn) == EINVAL
    l4 = dom.pagetables.l4_mfn
    gen = dom.mm_generation
    assert mmuext(MmuextCmd.MMUEXT_NEW_BASEPTR, l4) == 0 and dom.mm_generation > gen
    assert mmuext(MmuextCmd.MMUEXT_NEW_USER_BASEPTR, l4) == 0
    assert v.arch.ctrlreg[1] == l4 << 12
    writable_mfn = dom.gva_to_mfn(dom.alloc_guest_page())
    assert mmuext(MmuextCmd.MMUEXT_NEW_BASEPTR, writable_mfn) == EINVAL  # mapped writable: cannot be an L4
    assert v.arch.ctrlreg[3] == l4 << 12
    assert mmuext(MmuextCmd.MMUEXT_TLB_FLUSH_ALL) == 0
    assert mmuext(MmuextCmd.MMUEXT_SET_LDT, 0x1001, 1) == EINVAL
    assert mmuext(MmuextCmd.MMUEXT_FLUSH_CACHE) == EACCES
    assert mmuext(MmuextCmd.MMUEXT_MARK_SUPER, mfn) == EOPNOTSUPP
    assert mmuext(14) == ENOSYS


def test_memory_op_reservation_and_balloon(env):
    """XENMEM_current/maximum_reservation report the domain's pages; decrease_reservation gives frames back
    (tot_pages drops, the frames cannot be mapped any more), increase_reservation takes them again up to
    max_pages and writes their mfns; maximum_ram_page is the machine's frame count."""
    hv, dom, v = env
    domid = dom.alloc_guest(8, 8)
    dom.write_guest(domid, struct.pack("<H", DOMID_SELF))
    nr_pages = dom.memory.nr_pages
    assert call(hv, v, Hypercall.memory_op, XenMem.XENMEM_current_reservation, domid) == nr_pages
    assert call(hv, v, Hypercall.memory_op, XenMem.XENMEM_maximum_reservation, domid) == nr_pages
    assert call(hv, v, Hypercall.memory_op, XenMem.XENMEM_maximum_ram_page, 0) == hv.machine.nr_frames
    frames = [dom.memory.mfn_of(100), dom.memory.mfn_of(101)]
    extents = dom.alloc_guest(8 * 3, 8)
    dom.write_guest(extents, struct.pack("<3Q", *frames, 0))
    reservation = dom.alloc_guest(32, 8)
    dom.write_guest(reservation, struct.pack("<QQIIH6x", extents, 2, 0, 0, DOMID_SELF))
    # The frames are mapped writable in the builder's tables: unmap them first, as a balloon driver does.
    for pfn in (100, 101):
        assert call(hv, v, Hypercall.update_va_mapping, GUEST_VIRT_BASE + pfn * 4096, 0, 0) == 0
    assert call(hv, v, Hypercall.memory_op, XenMem.XENMEM_decrease_reservation, reservation) == 2
    assert call(hv, v, Hypercall.memory_op, XenMem.XENMEM_current_reservation, domid) == nr_pages - 2
    assert (
        call(hv, v, Hypercall.update_va_mapping, GUEST_VIRT_BASE + 100 * 4096, (frames[0] << 12) | P, 0)
        == EBUSY
    )
    dom.write_guest(reservation, struct.pack("<QQIIH6x", extents, 3, 0, 0, DOMID_SELF))
    assert call(hv, v, Hypercall.memory_op, XenMem.XENMEM_increase_reservation, reservation) == 2  # max_pages
    assert call(hv, v, Hypercall.memory_op, XenMem.XENMEM_current_reservation, domid) == nr_pages
    assert sorted(struct.unpack("<2Q", dom.read_guest(extents, 16))) == sorted(frames)
    dom.write_guest(domid, struct.pack("<H", 0x7000))
    assert call(hv, v, Hypercall.memory_op, XenMem.XENMEM_current_reservation, domid) == ESRCH
    assert call(hv, v, Hypercall.memory_op, 30, 0) == ENOSYS


def test_grant_table_starts_with_one_frame(env):
    """Every grant table has INITIAL_NR_GRANT_FRAMES (1) frame from the start (grant_table_init grows it to
    gnttab_grow_table's minimum): query_size before any setup_table reports nr_frames 1, as real Xen does."""
    hv, dom, v = env
    query = dom.alloc_guest(16, 8)
    dom.write_guest(query, struct.pack("<HxxIIhxx", DOMID_SELF, 0, 0, 0x55))
    assert call(hv, v, Hypercall.grant_table_op, GnttabOp.GNTTABOP_query_size, query, 1) == 0
    assert struct.unpack("<HxxIIhxx", dom.read_guest(query, 16))[1:] == (1, 64, 0)
    assert len(dom.grant_frames) == 1 and hv.machine.owner_of(dom.grant_frames[0]) == dom.domid


def test_grant_table_setup(env):
    """GNTTABOP_setup_table grows the grant table and returns its frames (status GNTST_okay); more than
    max_grant_frames gives GNTST_general_error; count != 1 is -EINVAL; query_size reports the size."""
    hv, dom, v = env
    frame_list = dom.alloc_guest(8 * 2, 8)
    setup = dom.alloc_guest(24, 8)
    dom.write_guest(setup, struct.pack("<HxxIh6xQ", DOMID_SELF, 2, 0x55, frame_list))
    assert call(hv, v, Hypercall.grant_table_op, GnttabOp.GNTTABOP_setup_table, setup, 1) == 0
    assert struct.unpack_from("<h", dom.read_guest(setup + 8, 2))[0] == 0
    mfns = struct.unpack("<2Q", dom.read_guest(frame_list, 16))
    assert list(mfns) == dom.grant_frames and all(hv.machine.owner_of(m) == dom.domid for m in mfns)
    dom.write_guest(setup, struct.pack("<HxxIh6xQ", DOMID_SELF, 65, 0, frame_list))
    assert call(hv, v, Hypercall.grant_table_op, GnttabOp.GNTTABOP_setup_table, setup, 1) == 0
    assert struct.unpack_from("<h", dom.read_guest(setup + 8, 2))[0] == -1
    assert call(hv, v, Hypercall.grant_table_op, GnttabOp.GNTTABOP_setup_table, setup, 2) == EINVAL
    query = dom.alloc_guest(16, 8)
    dom.write_guest(query, struct.pack("<HxxIIhxx", DOMID_SELF, 0, 0, 0))
    assert call(hv, v, Hypercall.grant_table_op, GnttabOp.GNTTABOP_query_size, query, 1) == 0
    assert struct.unpack("<HxxIIhxx", dom.read_guest(query, 16))[1:] == (2, 64, 0)


def test_multicall_and_stack_switch(env):
    """multicall issues each entry and writes its result; a nested multicall entry gets -EINVAL;
    stack_switch stores kernel_ss (RPL raised to 3) and kernel_sp."""
    hv, dom, v = env
    calls = dom.alloc_guest(64 * 3, 8)
    entries = [
        (Hypercall.xen_version, 0, 0, 0),
        (Hypercall.stack_switch, 0, 0xE028, 0xFFFF_FFFF_8000_9000),
        (Hypercall.multicall, 0, calls, 1),
    ]
    dom.write_guest(
        calls, b"".join(struct.pack("<8Q", op, res, a, b, 0, 0, 0, 0) for op, res, a, b in entries)
    )
    assert call(hv, v, Hypercall.multicall, calls, 3) == 0
    results = [struct.unpack_from("<q", dom.read_guest(calls + 64 * i + 8, 8))[0] for i in range(3)]
    assert results == [(4 << 16) | 23, 0, EINVAL]
    assert (v.arch.kernel_ss, v.arch.kernel_sp) == (0xE02B, 0xFFFF_FFFF_8000_9000)


def test_long_multicall_continues_until_done(env):
    """do_multicall preempts a long batch with a continuation (call_list advanced, nr_calls reduced) after
    PREEMPT_ENTRIES entries; Hypervisor.hypercall issues it again until it completes: every entry
    has its result, in invocations of at most that many entries."""
    hv, dom, v = env
    nr = 2 * PREEMPT_ENTRIES + 5
    calls = dom.alloc_guest(64 * nr, 8)
    dom.write_guest(calls, struct.pack("<8Q", Hypercall.xen_version, 0xDEAD, 0, 0, 0, 0, 0, 0) * nr)
    seen: list[tuple[int, int]] = []

    def note(_vcpu, n, args):
        if n == Hypercall.multicall:
            seen.append(args[:2])

    remove = hv.add_hypercall_hook(pre=note)
    try:
        assert call(hv, v, Hypercall.multicall, calls, nr) == 0
    finally:
        remove()
    results = [struct.unpack_from("<q", dom.read_guest(calls + 64 * i + 8, 8))[0] for i in range(nr)]
    assert results == [(4 << 16) | 23] * nr
    step = 64 * PREEMPT_ENTRIES
    assert seen == [(calls, nr), (calls + step, nr - PREEMPT_ENTRIES),
                    (calls + 2 * step, nr - 2 * PREEMPT_ENTRIES)]  # fmt: skip


def test_long_mmu_update_continues_with_its_progress_in_pdone(env):
    """do_mmu_update: a continuation after PREEMPT_ENTRIES requests carries the rest of ``count`` with
    MMU_UPDATE_PREEMPTED and the work done so far in ``*pdone``, which the continued call adds to; a count of
    exactly MMU_UPDATE_PREEMPTED with NULL requests returns ``(int)foreigndom``."""
    hv, dom, v = env
    nr = PREEMPT_ENTRIES + 10
    mfn = dom.memory.mfn_of(7)
    reqs = dom.alloc_guest(16 * nr, 16)
    dom.write_guest(reqs, struct.pack("<QQ", (mfn << 12) | MMU_MACHPHYS_UPDATE, 7) * nr)
    pdone = dom.alloc_guest(4, 4)
    seen: list[tuple[int, ...]] = []

    def note(_vcpu, n, args):
        if n == Hypercall.mmu_update:
            seen.append(args[:3])

    remove = hv.add_hypercall_hook(pre=note)
    try:
        assert call(hv, v, Hypercall.mmu_update, reqs, nr, pdone, DOMID_SELF) == 0
    finally:
        remove()
    assert struct.unpack("<I", dom.read_guest(pdone, 4))[0] == nr
    assert seen == [(reqs, nr, pdone), (reqs + 16 * PREEMPT_ENTRIES, 10 | MMU_UPDATE_PREEMPTED, pdone)]
    assert call(hv, v, Hypercall.mmu_update, 0, MMU_UPDATE_PREEMPTED, 0, DOMID_SELF) == DOMID_SELF


def test_long_grant_unmap_continues_between_its_groups(env):
    """gnttab_unmap_grant_ref: a long batch ends with a continuation (uop advanced, count reduced) between
    groups of GNTTAB_UNMAP_BATCH_SIZE once PREEMPT_ENTRIES elements have run; every element gets its status
    (here GNTST_bad_handle: no such mapping)."""
    hv, dom, v = env
    nr = PREEMPT_ENTRIES + 40
    ops = dom.alloc_guest(24 * nr, 8)
    dom.write_guest(ops, struct.pack("<QQIi", 0, 0, 0xFFFF, 0x55) * nr)
    seen: list[tuple[int, ...]] = []

    def note(_vcpu, n, args):
        if n == Hypercall.grant_table_op:
            seen.append(args[:3])

    remove = hv.add_hypercall_hook(pre=note)
    try:
        assert call(hv, v, Hypercall.grant_table_op, GnttabOp.GNTTABOP_unmap_grant_ref, ops, nr) == 0
    finally:
        remove()
    statuses = [struct.unpack_from("<h", dom.read_guest(ops + 24 * i + 20, 2))[0] for i in range(nr)]
    assert statuses == [-4] * nr  # GNTST_bad_handle
    cmd = GnttabOp.GNTTABOP_unmap_grant_ref
    assert seen == [(cmd, ops, nr), (cmd, ops + 24 * PREEMPT_ENTRIES, 40)]


def test_long_decrease_reservation_continues_with_the_extent_in_cmd(env):
    """XENMEM_decrease_reservation of more than PREEMPT_ENTRIES extents: a continuation whose ``cmd`` carries the
    extents done above MEMOP_EXTENT_SHIFT (Xen's ``op | (nr_done << MEMOP_EXTENT_SHIFT)``); the guest sees the
    whole count."""
    hv, dom, v = env
    nr = PREEMPT_ENTRIES + 10
    last = dom.memory.nr_pages - 1
    mfns = [dom.memory.mfn_of(last - i) for i in range(nr)]  # the top of memory: nothing of the builder's
    frames = dom.alloc_guest(8 * nr, 8)
    dom.write_guest(frames, struct.pack(f"<{nr}Q", *mfns))
    arg = dom.alloc_guest(32, 8)
    dom.write_guest(arg, struct.pack("<QQIIH6x", frames, nr, 0, 0, DOMID_SELF))
    seen: list[int] = []

    def note(_vcpu, n, args):
        if n == Hypercall.memory_op:
            seen.append(args[0])

    remove = hv.add_hypercall_hook(pre=note)
    try:
        assert call(hv, v, Hypercall.memory_op, XenMem.XENMEM_decrease_reservation, arg) == nr
    finally:
        remove()
    assert seen == [XenMem.XENMEM_decrease_reservation, XenMem.XENMEM_decrease_reservation | PREEMPT_ENTRIES << 6]
    assert all(m in dom.ballooned_mfns for m in mfns)


def _hole_after(hv, dom, v):
    """A mapped page followed by an unmapped one: returns the mapped page's address (the hole is + 4096)."""
    edge, hole = dom.alloc_guest_page(), dom.alloc_guest_page()
    assert hole == edge + 4096
    assert call(hv, v, Hypercall.update_va_mapping, hole, 0, 0) == 0
    return edge


def test_pdone_that_cannot_be_written_is_ignored(env):
    """mmu_update and mmuext_op do their work and return 0 when ``*pdone`` cannot be written (Xen ignores
    that copy); a ``pdone`` straddling into an unmapped page keeps the bytes before the fault."""
    hv, dom, v = env
    edge = _hole_after(hv, dom, v)
    va = dom.alloc_guest_page()
    target = dom.memory.mfn_of(7)
    reqs = dom.alloc_guest(16, 16)
    dom.write_guest(reqs, struct.pack("<QQ", l1_entry_maddr(dom, va), (target << 12) | P | RW))
    dom.write_guest(edge + 4094, b"\xff\xff")
    assert call(hv, v, Hypercall.mmu_update, reqs, 1, edge + 4094, DOMID_SELF) == 0
    assert dom.gva_to_mfn(va) == target
    assert dom.read_guest(edge + 4094, 2) == b"\x01\x00"
    ops = dom.alloc_guest(24, 8)
    dom.write_guest(ops, struct.pack("<I4xQQ", MmuextCmd.MMUEXT_TLB_FLUSH_LOCAL, 0, 0))
    assert call(hv, v, Hypercall.mmuext_op, ops, 1, edge + 4096, DOMID_SELF) == 0


def test_mmuext_set_ldt_and_multi_flush_read_their_union_members(env):
    """SET_LDT reads ``arg2.nr_ents`` (the unsigned int, not the bytes above it) and ``arg1.linear_addr``; a
    multi-vCPU flush reads the bitmap at ``arg2.vcpumask`` (-EINVAL when it cannot be read)."""
    hv, dom, v = env
    edge = _hole_after(hv, dom, v)
    ops = dom.alloc_guest(24, 8)

    def mmuext(cmd, arg1=0, arg2=0):
        dom.write_guest(ops, struct.pack("<I4xQQ", cmd, arg1, arg2))
        return call(hv, v, Hypercall.mmuext_op, ops, 1, 0, DOMID_SELF)

    assert mmuext(MmuextCmd.MMUEXT_SET_LDT, 0x10000, (7 << 32) | 5) == 0
    assert (v.arch.ldt_base, v.arch.ldt_ents) == (0x10000, 5)
    assert mmuext(MmuextCmd.MMUEXT_SET_LDT, 0x10000, 8193) == EINVAL
    assert mmuext(MmuextCmd.MMUEXT_SET_LDT, 0x10001, 0) == 0  # no entries: the base is ignored
    assert (v.arch.ldt_base, v.arch.ldt_ents) == (0, 0)
    assert mmuext(MmuextCmd.MMUEXT_TLB_FLUSH_MULTI, 0, edge) == 0
    assert mmuext(MmuextCmd.MMUEXT_INVLPG_MULTI, 0, edge + 4096) == EINVAL


def test_grant_get_version_and_unwritable_frame_list(env):
    """get_version writes version 1 and keeps ``pad``; -ESRCH for an unknown domain. A frame list running
    into an unmapped page gives GNTST_bad_virt_addr, the frame numbers before the fault written."""
    hv, dom, v = env
    other = hv.create_domain(DomainConfig(memory_mib=1))
    version = dom.alloc_guest(8, 8)
    dom.write_guest(version, struct.pack("<HHI", DOMID_SELF, 0xABCD, 9))
    assert call(hv, v, Hypercall.grant_table_op, GnttabOp.GNTTABOP_get_version, version, 1) == 0
    assert struct.unpack("<HHI", dom.read_guest(version, 8)) == (DOMID_SELF, 0xABCD, 1)
    dom.write_guest(version, struct.pack("<HHI", 0x7000, 0, 0))
    assert call(hv, v, Hypercall.grant_table_op, GnttabOp.GNTTABOP_get_version, version, 1) == ESRCH
    dom.write_guest(version, struct.pack("<HHI", other.domid, 0, 0))
    assert call(hv, v, Hypercall.grant_table_op, GnttabOp.GNTTABOP_get_version, version, 1) == EPERM
    edge = _hole_after(hv, dom, v)
    setup = dom.alloc_guest(24, 8)
    dom.write_guest(setup, struct.pack("<HxxIh6xQ", DOMID_SELF, 3, 0, edge + 4096 - 12))
    assert call(hv, v, Hypercall.grant_table_op, GnttabOp.GNTTABOP_setup_table, setup, 1) == 0
    assert struct.unpack_from("<h", dom.read_guest(setup + 8, 2))[0] == -5  # GNTST_bad_virt_addr
    first, second_low = struct.unpack("<QI", dom.read_guest(edge + 4096 - 12, 12))
    assert (first, second_low) == (dom.grant_frames[0], dom.grant_frames[1] & 0xFFFF_FFFF)


@pytest.mark.parametrize("hardware_domain", [False, True])
def test_machphys_mapping(hardware_domain):
    """spec 6.9, 7.2: XENMEM_machphys_mapping names the read-only M2P range; max_mfn is the range's last entry,
    or for the hardware domain the machine's last frame. An unwritable argument is -EFAULT; a start extent in
    cmd makes it an unknown op."""
    hv = Hypervisor(memory_mib=16)
    dom = hv.create_domain(DomainConfig(memory_mib=2, hardware_domain=hardware_domain))
    dom.unpause()
    v = dom.vcpus[0]
    gva = dom.alloc_guest(24, 8)
    assert call(hv, v, Hypercall.memory_op, XenMem.XENMEM_machphys_mapping, gva) == 0
    v_start, v_end, max_mfn = struct.unpack("<3Q", dom.read_guest(gva, 24))
    assert (v_start, v_end) == (0xFFFF_8000_0000_0000, 0xFFFF_8040_0000_0000)
    assert max_mfn == (hv.machine.nr_frames - 1 if hardware_domain else (v_end - v_start) // 8 - 1)
    assert call(hv, v, Hypercall.memory_op, XenMem.XENMEM_machphys_mapping, 0x4000_0000_0000) == -14
    assert call(hv, v, Hypercall.memory_op, XenMem.XENMEM_machphys_mapping | (1 << 6), gva) == ENOSYS


def test_linear_page_tables(env):
    """Linear page tables (Xen's default pv-linear-pt, XTF's XSA-182 test): an L4 entry may map its own L4
    read-only (holding nothing) but not writable; one may map another validated L4 read-only, taking a type
    reference, and a table so mapped cannot itself hold linear entries."""
    hv, dom, v = env
    machine = hv.machine
    l4 = dom.pagetables.l4_mfn
    slot = lambda table, i: (table << 12) + i * 8  # noqa: E731
    count = machine.type_count(l4)
    assert _mmu(hv, dom, v, [(slot(l4, 300), (l4 << 12) | P | ACCESSED)]) == (0, 1)
    assert machine.type_count(l4) == count and machine.linear_pt_count[l4] == 0
    self_map = 0xFFFF_0000_0000_0000 | (300 << 39) | (300 << 30) | (300 << 21) | (300 << 12)
    assert dom.read_guest(self_map + 300 * 8, 8) == machine.read(slot(l4, 300), 8)
    assert _mmu(hv, dom, v, [(slot(l4, 300), (l4 << 12) | P | RW | ACCESSED)]) == (EINVAL, 0)
    assert _mmu(hv, dom, v, [(slot(l4, 300), 0)]) == (0, 1)

    other_va = dom.alloc_guest_page()
    other = dom.gva_to_mfn(other_va)
    assert call(hv, v, Hypercall.update_va_mapping, other_va, (other << 12) | P | ACCESSED, 0) == 0
    ops = dom.alloc_guest(24, 8)
    dom.write_guest(ops, struct.pack("<I4xQQ", MmuextCmd.MMUEXT_PIN_L4_TABLE, other, 0))
    assert call(hv, v, Hypercall.mmuext_op, ops, 1, 0, DOMID_SELF) == 0
    assert _mmu(hv, dom, v, [(slot(l4, 301), (other << 12) | P | RW)]) == (EINVAL, 0)
    assert _mmu(hv, dom, v, [(slot(l4, 301), (other << 12) | P)]) == (0, 1)
    assert machine.type_count(other) == 2
    assert (machine.linear_pt_count[l4], machine.linear_pt_count[other]) == (1, -1)
    assert _mmu(hv, dom, v, [(slot(other, 5), (l4 << 12) | P)]) == (EINVAL, 0)  # a target holds none
    assert _mmu(hv, dom, v, [(slot(l4, 301), 0)]) == (0, 1)
    assert machine.type_count(other) == 1
    assert (machine.linear_pt_count[l4], machine.linear_pt_count[other]) == (0, 0)


def test_physdev_set_iopl(env):
    """PHYSDEVOP_set_iopl sets the calling vCPU's virtual IOPL (EFLAGS.IOPL position); iopl > 3 is -EINVAL,
    an unreadable argument -EFAULT; other physdev commands are -ENOSYS (xenpy has no devices)."""
    hv, dom, v = env
    arg = dom.alloc_guest(4, 4)
    for iopl in (3, 1, 0):
        dom.write_guest(arg, struct.pack("<I", iopl))
        assert call(hv, v, Hypercall.physdev_op, 6, arg) == 0
        assert v.arch.iopl == iopl << 12
    dom.write_guest(arg, struct.pack("<I", 4))
    assert call(hv, v, Hypercall.physdev_op, 6, arg) == EINVAL and v.arch.iopl == 0
    assert call(hv, v, Hypercall.physdev_op, 6, 0x4000_0000_0000) == -14
    assert call(hv, v, Hypercall.physdev_op, 12, arg) == ENOSYS


def test_claim_pages_stakes_free_memory_for_a_domain() -> None:
    """XENMEM_claim_pages (``domain_set_outstanding_pages``): only the hardware domain may claim; the claim is the
    pages above tot_pages, refused past max_pages, twice, or beyond the free frames; it shrinks as the domain's
    pages grow and keeps the frames from other domains until then; 0 cancels it."""
    hv = Hypervisor(memory_mib=16)
    dom0 = hv.create_domain(DomainConfig(memory_mib=2, hardware_domain=True))
    domu = hv.create_domain(DomainConfig(memory_mib=2))
    dom0.unpause()
    domu.unpause()
    v0, vu = dom0.vcpus[0], domu.vcpus[0]

    def claim(v, dom, pages, *, domid=None, extent_start=0, order=0, flags=0):
        arg = dom.alloc_guest(32, 8)
        dom.write_guest(arg, struct.pack("<QQIIH6x", extent_start, pages, order, flags,
                                         domu.domid if domid is None else domid))  # fmt: skip
        return call(hv, v, Hypercall.memory_op, XenMem.XENMEM_claim_pages, arg)

    free = hv.machine.nr_free_frames
    domu.max_pages = domu.tot_pages + free + 10
    assert claim(vu, domu, domu.tot_pages + 5) == EPERM
    assert claim(v0, dom0, domu.tot_pages + 5, domid=0x7000) == EINVAL
    assert claim(v0, dom0, domu.tot_pages + 5, extent_start=8) == EINVAL
    assert claim(v0, dom0, domu.tot_pages + 5, order=1) == EINVAL
    assert claim(v0, dom0, domu.tot_pages + 5, flags=1) == EINVAL
    assert claim(v0, dom0, domu.tot_pages) == EINVAL  # not above tot_pages
    assert claim(v0, dom0, domu.max_pages + 1) == EINVAL
    assert claim(v0, dom0, domu.tot_pages + free + 1) == ENOMEM
    assert claim(v0, dom0, domu.tot_pages + free - 10) == 0
    assert domu.outstanding_pages == free - 10
    assert claim(v0, dom0, domu.tot_pages + 1) == EINVAL  # one claim at a time
    with pytest.raises(OutOfMachineMemory):  # what is left unclaimed is too little for a new 1 MiB domain
        hv.create_domain(DomainConfig(memory_mib=1))
    # The claimant's new frames come out of its claim.
    extents = domu.alloc_guest(8, 8)
    reservation = domu.alloc_guest(32, 8)
    domu.write_guest(reservation, struct.pack("<QQIIH6x", extents, 1, 0, 0, DOMID_SELF))
    assert call(hv, vu, Hypercall.memory_op, XenMem.XENMEM_increase_reservation, reservation) == 1
    assert domu.outstanding_pages == free - 11
    assert claim(v0, dom0, 0) == 0
    assert domu.outstanding_pages == 0
    hv.create_domain(DomainConfig(memory_mib=1))
