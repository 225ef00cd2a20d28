"""PV page-table reference counting and validation: the parts of Xen's ``xen/arch/x86/mm.c`` a PV64 guest sees.

A PV guest writes its page tables only through hypercalls (``mmu_update``, ``update_va_mapping``,
``mmuext_op``); Xen validates every entry and keeps type references so that a guest can never map one of its
page tables writable nor reach a frame it does not own. This module is that bookkeeping, over the frame types
of :class:`~xenpy.core.memory.MachineMemory`:

* a frame typed ``l1``..``l4`` with a non-zero type count is a validated table. It is validated when it takes
  its first type reference (``alloc_lN_table``): every present entry (for an L4 only the guest slots, 0-255 and
  272-511) takes a reference on what it points to, or validation fails and nothing is kept;
* every present entry of a validated L2-L4 holds one type reference on the next-level table; a present L1
  entry with RW holds one ``writable`` type reference on its frame (a read-only mapping holds none: xenpy does
  not count general page references). The last type reference of a table releases everything its entries hold
  (``free_lN_table``);
* a pinned table (``MMUEXT_PIN_Ln_TABLE``) holds one more reference, recorded in ``Domain.pinned_tables``; the
  domain builder's L4 counts as pinned (the toolstack pins it, spec 7.2);
* each vCPU's kernel and user root tables (``ctrlreg[3]``, ``ctrlreg[1]``) hold one L4 reference each, kept in
  ``arch.page_refs`` as :func:`~xenpy.core.vcpu_context.arch_set_info_guest` takes them.

Entries are adjusted as Xen adjusts a PV64 guest's entries: _PAGE_USER is set at every level (the guest kernel
runs in ring 3), and an L1 entry is marked as a kernel or a user mapping (:func:`adjust_guest_l1e`). Entry flags
Xen refuses for a domU: at L1 PWT, PCD, PAT and bit 62 (``L1_DISALLOW_MASK``); at L2-L4 PWT, PCD, GLOBAL and
PSE (no superpages). Bits 52-62 are otherwise the guest's.

Linear page tables (``get_lN_linear_pagetable``, allowed as with Xen's default ``pv-linear-pt``): an L2-L4
entry that points at a table of its own level instead of the next one is accepted when it is read-only. An
entry mapping its own table holds nothing; one mapping another table needs that table validated at the same
level, takes a type reference on it, and counts in ``MachineMemory.linear_pt_count``: positive for a table
holding that many such entries, negative for a table mapped that many times so; a table cannot be both (one
level of recursion only).

Every change to a page-table entry, and every flush a guest asks for, bumps ``Domain.mm_generation``
(:func:`note_pagetable_change`): CPU engines cache translations and compare the generation before they run
guest code again, flushing what they cached when it moved.

Errors are Xen's: -EINVAL for a bad flag, a frame that is not the domain's, a table of the wrong type or one
that fails validation; -EBUSY (``could_not_pin``) for an L1 entry whose frame belongs to another domain or
cannot be made writable; -EPERM for a frame outside RAM (MMIO) and for updates of Xen's L4 slots... (L4
Xen-slot updates give -EINVAL as in ``mod_l4_entry``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xenpy.abi import x86
from xenpy.abi.arch_x86 import HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START
from xenpy.abi.errno import XenErrno
from xenpy.core.memory import PAGE_SHIFT, MachineMemory, PageType
from xenpy.core.pagetable import adjust_guest_l1e, is_canonical

if TYPE_CHECKING:
    from xenpy.core.domain import Domain, Vcpu

_P = x86.PAGE_PRESENT
_RW = x86.PAGE_RW
_USER = x86.PAGE_USER
_PWT = x86.PAGE_PWT
_PCD = x86.PAGE_PCD
_ACCESSED = x86.PAGE_ACCESSED
_DIRTY = x86.PAGE_DIRTY
_PSE = x86.PAGE_PSE
_PAT = x86.PAGE_PAT
_GLOBAL = x86.PAGE_GLOBAL
_NX = x86.PAGE_NX
_AVAIL_HIGH = x86.PTE_AVAIL_HIGH
_GUEST_KERNEL = x86.PAGE_GUEST_KERNEL
#: The frame bits of an entry (bits 12-51).
PTE_MFN_MASK = x86.PTE_PFN_MASK
L1_DISALLOW_MASK = _PWT | _PCD | _PAT | x86.PAGE_GNTTAB
#: L2-L4 (``BASE_DISALLOW_MASK``): GLOBAL and PSE instead of PAT and bit 62.
LN_DISALLOW_MASK = _PWT | _PCD | _PSE | _GLOBAL
#: Flags that can change without re-validating an entry (``FASTPATH_FLAG_WHITELIST``).
FASTPATH_FLAG_WHITELIST = _NX | _GLOBAL | _DIRTY | _ACCESSED | _USER | (0x7 << 9) | _AVAIL_HIGH
XEN_L4_SLOTS = x86.XEN_L4_SLOTS

_EINVAL = -int(XenErrno.EINVAL)
_EBUSY = -int(XenErrno.EBUSY)
_EPERM = -int(XenErrno.EPERM)
_LEVEL_TYPES = {1: PageType.l1, 2: PageType.l2, 3: PageType.l3, 4: PageType.l4}
_U64 = (1 << 64) - 1


def pte_mfn(entry: int) -> int:
    """The frame number in a page-table entry."""
    return (entry & PTE_MFN_MASK) >> PAGE_SHIFT


def is_guest_l4_slot(slot: int) -> bool:
    """A PV64 guest's own L4 slots: everything but Xen's (:data:`~xenpy.abi.x86.XEN_L4_SLOTS`)."""
    return slot not in XEN_L4_SLOTS


def adjust_guest_entry(entry: int, level: int) -> int:
    """The entry of a level-``level`` table as Xen stores it once validated (``adjust_guest_lNe``)."""
    if level == 1:
        return adjust_guest_l1e(entry)
    return entry | _USER if entry & _P else entry


def note_pagetable_change(d: Domain) -> None:
    """Tell CPU engines that ``d``'s translations changed (they flush before running it again)."""
    d.mm_generation += 1


def pinned_tables(d: Domain) -> set[int]:
    """``d``'s pinned tables (the builder's L4 among them, see :meth:`Domain.set_address_space`)."""
    return d.pinned_tables


# ------------------------------------------------------------------------------------------ references


def _owned(machine: MachineMemory, mfn: int, d: Domain) -> bool:
    return 0 <= mfn < machine.nr_frames and machine.mv_owner[mfn] == d.domid and mfn not in d.ballooned_mfns


def get_page_from_l1e(entry: int, l1e_owner: Domain, pg_owner: Domain) -> int:
    """``get_page_from_l1e``: the reference a present L1 entry holds; 0 or ``-errno``.

    -EINVAL: a flag of ``L1_DISALLOW_MASK``; -EPERM: the frame is not RAM (a domU may not map MMIO);
    -EBUSY: the frame is not ``pg_owner``'s, or (RW) it cannot be typed writable (it is a page table or a
    descriptor page).
    """
    machine = l1e_owner.system.machine
    if entry & L1_DISALLOW_MASK:
        return _EINVAL
    mfn = pte_mfn(entry)
    if mfn >= machine.nr_frames:
        return _EPERM
    if machine.mv_owner[mfn] != pg_owner.domid or mfn in pg_owner.ballooned_mfns:
        return _EBUSY
    if entry & _RW and not machine.get_page_type(mfn, PageType.writable):
        return _EBUSY
    return 0


def put_page_from_l1e(entry: int, d: Domain) -> None:
    """``put_page_from_l1e``: drop what a present L1 entry held."""
    if not entry & _P or not entry & _RW:
        return
    machine = d.system.machine
    mfn = pte_mfn(entry)
    if mfn < machine.nr_frames and machine.type_count(mfn) and machine.page_type(mfn) == PageType.writable:
        machine.put_page_type(mfn)


def mapped_by_l1(machine: MachineMemory, mfn: int) -> bool:
    """True if a present entry of a validated L1 table maps ``mfn``: the general page reference such an entry
    holds in Xen (a read-only one included), which xenpy does not count but finds in the tables."""
    tables = machine.typed_frames(PageType.l1)
    if not len(tables):
        return False
    entries = machine.frames[tables].view(np.uint64)
    present = (entries & np.uint64(_P)) != 0
    frames = (entries & np.uint64(PTE_MFN_MASK)) >> np.uint64(PAGE_SHIFT)
    return bool(np.any(present & (frames == np.uint64(mfn))))


def get_page_and_type(d: Domain, mfn: int, level: int) -> int:
    """Take a type reference of table level ``level`` on ``mfn`` (validating it on first use); 0 or -EINVAL."""
    machine = d.system.machine
    if not _owned(machine, mfn, d):
        return _EINVAL
    page_type = _LEVEL_TYPES[level]
    if machine.type_count(mfn) == 0:
        rc = _alloc_table(d, mfn, level)
        if rc:
            return rc
        if not machine.get_page_type(mfn, page_type):
            _free_table(d, mfn, level)
            return _EINVAL
        return 0
    return 0 if machine.get_page_type(mfn, page_type) else _EINVAL


def put_page_and_type(d: Domain, mfn: int) -> None:
    """Drop one type reference of a table; the last one releases what its entries hold (``free_lN_table``)."""
    machine = d.system.machine
    page_type = machine.page_type(mfn)
    if not machine.type_count(mfn):
        return
    last = machine.type_count(mfn) == 1
    machine.put_page_type(mfn)
    if last and page_type.is_page_table:
        _free_table(d, mfn, int(page_type))


def _table_slots(level: int) -> range | list[int]:
    return [s for s in range(512) if is_guest_l4_slot(s)] if level == 4 else range(512)


def _get_linear_pagetable(d: Domain, entry: int, table_mfn: int, level: int) -> bool:
    """``get_lN_linear_pagetable``: accept ``entry`` of the level-``level`` table ``table_mfn`` as a linear
    mapping of a table of the same level (see the module docstring); True if accepted (its reference taken)."""
    if entry & _RW:
        return False
    target = pte_mfn(entry)
    if target == table_mfn:
        return True
    machine = d.system.machine
    counts = machine.linear_pt_count
    if not _owned(machine, target, d) or counts[table_mfn] < 0 or counts[target] > 0:
        return False
    if machine.type_count(target) == 0 or int(machine.page_type(target)) != level:
        return False
    if not machine.get_page_type(target, _LEVEL_TYPES[level]):
        return False
    counts[table_mfn] += 1
    counts[target] -= 1
    return True


def _get_table_ref(d: Domain, entry: int, table_mfn: int, level: int) -> int:
    """The reference a present entry of a level-``level`` table (2-4) holds: the next-level table, or a linear
    mapping."""
    target = pte_mfn(entry)
    if target == table_mfn:  # only ever a linear self-mapping (the table is not of the next level)
        return 0 if _get_linear_pagetable(d, entry, table_mfn, level) else _EINVAL
    rc = get_page_and_type(d, target, level - 1)
    if rc == _EINVAL and _get_linear_pagetable(d, entry, table_mfn, level):
        return 0
    return rc


def _get_entry_ref(d: Domain, entry: int, table_mfn: int, level: int) -> int:
    if level == 1:
        return get_page_from_l1e(entry, d, d)
    if entry & LN_DISALLOW_MASK:
        return _EINVAL
    return _get_table_ref(d, entry, table_mfn, level)


def _put_entry_ref(d: Domain, entry: int, table_mfn: int, level: int) -> None:
    if not entry & _P:
        return
    if level == 1:
        put_page_from_l1e(entry, d)
        return
    target = pte_mfn(entry)
    if target == table_mfn:
        return
    machine = d.system.machine
    if target < machine.nr_frames and int(machine.page_type(target)) == level:  # a linear mapping
        machine.linear_pt_count[table_mfn] -= 1
        machine.linear_pt_count[target] += 1
    put_page_and_type(d, target)


def _alloc_table(d: Domain, mfn: int, level: int) -> int:
    """``alloc_lN_table``: take every present entry's reference and adjust it; undo all on a failure."""
    table = d.system.machine.mv_u64
    base = mfn << 9
    done: list[int] = []
    for slot in _table_slots(level):
        entry = table[base + slot]
        if not entry & _P:
            continue
        rc = _get_entry_ref(d, entry, mfn, level)
        if rc:
            for prev in reversed(done):
                _put_entry_ref(d, table[base + prev], mfn, level)
            return rc
        table[base + slot] = adjust_guest_entry(entry, level)
        done.append(slot)
    if level == 4:
        for slot in XEN_L4_SLOTS:
            table[base + slot] = 0
    return 0


def _free_table(d: Domain, mfn: int, level: int) -> None:
    table = d.system.machine.mv_u64
    base = mfn << 9
    for slot in _table_slots(level):
        _put_entry_ref(d, table[base + slot], mfn, level)


# ------------------------------------------------------------------------------------------ entry updates


def mod_entry(
    v: Vcpu, table_mfn: int, slot: int, new: int, pg_owner: Domain, *, preserve_ad: bool = False
) -> int:
    """``mod_lN_entry``: replace entry ``slot`` of the validated table ``table_mfn``; 0 or ``-errno``.

    The table's type decides the level. A present new entry is checked and its reference taken (unless only
    flags of ``FASTPATH_FLAG_WHITELIST`` change), it is adjusted (:func:`adjust_guest_entry`), and the old
    entry's reference is dropped.
    With ``preserve_ad`` the old accessed/dirty bits are kept (MMU_PT_UPDATE_PRESERVE_AD).

    Errors: -EINVAL for an L4 update in Xen's slots, a bad flag, or a wrong/failed reference (see the module
    docstring); -EBUSY/-EPERM from :func:`get_page_from_l1e`.
    """
    d = v.domain
    machine = d.system.machine
    level = int(machine.page_type(table_mfn))
    if level == 4 and not is_guest_l4_slot(slot):
        return _EINVAL
    table = machine.mv_u64
    index = (table_mfn << 9) | slot
    old = table[index]
    if preserve_ad:
        new |= old & (_ACCESSED | _DIRTY)
    if new & _P:
        if new & (L1_DISALLOW_MASK if level == 1 else LN_DISALLOW_MASK):
            return _EINVAL
        if old & _P and not (old ^ new) & ~FASTPATH_FLAG_WHITELIST & _U64:
            table[index] = adjust_guest_entry(new, level)
            note_pagetable_change(d)
            return 0
        if level == 1:
            rc = get_page_from_l1e(new, d, pg_owner)
        elif pg_owner is not d:
            return _EINVAL
        else:
            rc = _get_table_ref(d, new, table_mfn, level)
        if rc:
            return rc
        new = adjust_guest_entry(new, level)
    table[index] = new & _U64
    _put_entry_ref(d, old, table_mfn, level)
    note_pagetable_change(d)
    return 0


def map_guest_l1e(v: Vcpu, gva: int) -> int | None:
    """``map_guest_l1e``: machine address of the L1 entry mapping ``gva`` in the vCPU's current tables.

    None when ``gva`` is not a guest address, or an L4/L3/L2 entry on the way is not present or is a
    superpage.
    """
    gva &= _U64
    if not is_canonical(gva) or HYPERVISOR_VIRT_START <= gva < HYPERVISOR_VIRT_END:
        return None
    machine = v.domain.system.machine
    table = machine.mv_u64
    mfn = (v.cr3 & PTE_MFN_MASK) >> PAGE_SHIFT
    for shift in (39, 30, 21):
        if mfn >= machine.nr_frames:
            return None
        entry = table[(mfn << 9) | ((gva >> shift) & 511)]
        if not entry & _P or entry & _PSE:
            return None
        mfn = pte_mfn(entry)
    if mfn >= machine.nr_frames:
        return None
    return (mfn << PAGE_SHIFT) | (((gva >> 12) & 511) << 3)


# ------------------------------------------------------------------------------------------ base pointers, pins


def _replace_root_ref(v: Vcpu, old_mfn: int, new_mfn: int) -> None:
    arch = v.arch
    refs: list[int] = getattr(arch, "page_refs", [])
    arch.page_refs = refs
    refs.append(new_mfn)
    if old_mfn and old_mfn in refs:
        refs.remove(old_mfn)
        put_page_and_type(v.domain, old_mfn)


def new_guest_cr3(v: Vcpu, mfn: int) -> int:
    """``new_guest_cr3`` (MMUEXT_NEW_BASEPTR, ``mov %cr3``): switch the kernel page table; 0 or -EINVAL.

    The new root takes an L4 reference (validated if it was not a table yet); the old one drops its reference.
    Loading the current root again only flushes.
    """
    arch = v.arch
    old_mfn = arch.ctrlreg[3] >> PAGE_SHIFT
    d = v.domain
    if old_mfn == mfn:
        note_pagetable_change(d)
        return 0
    rc = get_page_and_type(d, mfn, 4)
    if rc:
        return rc
    arch.ctrlreg[3] = mfn << PAGE_SHIFT
    _replace_root_ref(v, old_mfn, mfn)
    note_pagetable_change(d)
    return 0


def new_user_baseptr(v: Vcpu, mfn: int) -> int:
    """MMUEXT_NEW_USER_BASEPTR: set the user-mode root (``ctrlreg[1]``; 0 clears it); 0 or -EINVAL."""
    arch = v.arch
    old_mfn = arch.ctrlreg[1] >> PAGE_SHIFT
    if old_mfn == mfn:
        return 0
    d = v.domain
    if mfn:
        rc = get_page_and_type(d, mfn, 4)
        if rc:
            return rc
    arch.ctrlreg[1] = mfn << PAGE_SHIFT
    refs: list[int] = getattr(arch, "page_refs", [])
    arch.page_refs = refs
    if mfn:
        refs.append(mfn)
    if old_mfn and old_mfn in refs:
        refs.remove(old_mfn)
        put_page_and_type(d, old_mfn)
    note_pagetable_change(d)
    return 0


def pin_table(d: Domain, mfn: int, level: int) -> int:
    """MMUEXT_PIN_Ln_TABLE: take (and validate) a type reference kept until unpinned; 0 or -EINVAL.

    -EINVAL: not the domain's frame, validation fails, another type, or already pinned.
    """
    machine = d.system.machine
    if not _owned(machine, mfn, d):
        return _EINVAL
    rc = get_page_and_type(d, mfn, level)
    if rc:
        return rc
    pinned = pinned_tables(d)
    if mfn in pinned:
        put_page_and_type(d, mfn)
        return _EINVAL
    pinned.add(mfn)
    return 0


def unpin_table(d: Domain, mfn: int) -> int:
    """MMUEXT_UNPIN_TABLE: drop the pin's reference; -EINVAL if ``mfn`` is not the domain's or not pinned."""
    machine = d.system.machine
    pinned = pinned_tables(d)
    if not _owned(machine, mfn, d) or mfn not in pinned:
        return _EINVAL
    pinned.discard(mfn)
    put_page_and_type(d, mfn)
    note_pagetable_change(d)
    return 0
