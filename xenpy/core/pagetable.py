"""x86-64 4-level page-table walk, Xen's PV guest-access checks and copy helpers, and a page-table builder.

What each part implements:

* ``translate``: the hardware walk that Xen's own accesses to guest memory go through when it runs on the
  guest's page tables with CR0.WP=1 (cf. ``xen/arch/x86/mm/guest_walk.c:guest_walk_tables``), plus the PV
  rules a validated PV64 page table guarantees: no superpages (PV guests here use 4 KiB pages only), every
  table and frame owned by the domain (``get_page_from_l*e``), nothing reachable in Xen's reserved hole
  ``HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END`` (spec 6.9).
* ``gva_ok`` / ``access_ok`` / ``array_access_ok`` / ``guest_handle_okay``: Xen's PV64 range checks
  (``__addr_ok``, ``access_ok``, ``array_access_ok`` in ``xen/arch/x86/include/asm/x86_64/uaccess.h`` and
  ``guest_handle_okay`` in ``xen/arch/x86/include/asm/guest_access.h``; spec 1.2 cmd 5).
* ``copy_from_guest`` / ``copy_to_guest`` / ``clear_guest``: ``copy_{from,to}_guest_pv`` and
  ``clear_guest_pv`` (``xen/arch/x86/usercopy.c``): ``access_ok`` on the start address, then a copy that
  proceeds page by page and stops at the first fault. These are the only way handlers touch guest memory; a
  bad guest pointer becomes ``GuestFault`` (the handler returns ``-EFAULT``) or a count of bytes not copied,
  never any other exception.
* ``PageTableBuilder``: the hypervisor's (and the domain builder's) way to create a PV64 guest's page tables
  with the flags of spec 7.2, typing each table frame (``PageType.l1``..``l4``) and each writably mapped frame
  (``PageType.writable``) in ``MachineMemory``.

Address spaces: ``gva`` is a guest virtual address, ``maddr`` a machine address, ``mfn``/``pfn`` machine and
pseudo-physical frame numbers. PV guests are not translated: page-table entries and cr3 hold mfns.

Invariants: guest virtual addresses are 64-bit and wrap modulo 2**64 as the hardware's do; the walk never
touches memory outside ``MachineMemory`` and never reads a frame the domain does not own; there is no
translation cache, so a page-table change is seen by the very next access.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from xenpy.abi import x86
from xenpy.abi.arch_x86 import HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START
from xenpy.abi.errno import XenErrno
from xenpy.core.memory import PAGE_SHIFT, PAGE_SIZE, BytesLike, DomainMemory, MachineMemory, PageType

# --------------------------------------------------------------------------------------------- constants

# Page-table entry bits and masks: xenpy.abi.x86 (the module-private names are what this module reads).
_PAGE_PRESENT = x86.PAGE_PRESENT
_PAGE_RW = x86.PAGE_RW
_PAGE_USER = x86.PAGE_USER
_PAGE_GLOBAL = x86.PAGE_GLOBAL
_PAGE_GUEST_KERNEL = x86.PAGE_GUEST_KERNEL
_PAGE_PWT = x86.PAGE_PWT
_PAGE_PCD = x86.PAGE_PCD
_PAGE_ACCESSED = x86.PAGE_ACCESSED
_PAGE_DIRTY = x86.PAGE_DIRTY
_PAGE_PSE = x86.PAGE_PSE
_PAGE_PAT = x86.PAGE_PAT
_PAGE_GLOBAL = x86.PAGE_GLOBAL
_PAGE_NX = x86.PAGE_NX
PAGE_OFFSET_MASK = x86.PAGE_OFFSET_MASK
PAGE_MASK = x86.PAGE_MASK
PADDR_BITS = x86.PADDR_BITS
PADDR_MASK = x86.PADDR_MASK
PTE_PFN_MASK = x86.PTE_PFN_MASK
PTE_FLAGS_MASK = x86.PTE_FLAGS_MASK

L1_PAGETABLE_SHIFT = 12
L2_PAGETABLE_SHIFT = 21
L3_PAGETABLE_SHIFT = 30
L4_PAGETABLE_SHIFT = 39
PAGETABLE_ORDER = 9
L1_PAGETABLE_ENTRIES = 1 << PAGETABLE_ORDER
L2_PAGETABLE_ENTRIES = L1_PAGETABLE_ENTRIES
L3_PAGETABLE_ENTRIES = L1_PAGETABLE_ENTRIES
L4_PAGETABLE_ENTRIES = L1_PAGETABLE_ENTRIES

# Entry flags written by the PV domain builder (``xg_dom_x86.c``; spec 7.2). Xen adds _PAGE_USER to a PV64
# guest's L1 entries when it validates them (the guest kernel runs at CPL3), which ``PageTableBuilder`` does.
L1_PROT = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED
L2_PROT = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_USER
L3_PROT = L2_PROT
L4_PROT = L2_PROT

_U64 = 0xFFFF_FFFF_FFFF_FFFF
_LOWER_HALF_END = 1 << 47
_UPPER_HALF_TOP = 0x1FFFF  # gva >> 47 of a canonical upper-half address


def l1_table_offset(gva: int) -> int:
    """Index of ``gva`` in its L1 table."""
    return (gva >> L1_PAGETABLE_SHIFT) & (L1_PAGETABLE_ENTRIES - 1)


def l2_table_offset(gva: int) -> int:
    """Index of ``gva`` in its L2 table."""
    return (gva >> L2_PAGETABLE_SHIFT) & (L2_PAGETABLE_ENTRIES - 1)


def l3_table_offset(gva: int) -> int:
    """Index of ``gva`` in its L3 table."""
    return (gva >> L3_PAGETABLE_SHIFT) & (L3_PAGETABLE_ENTRIES - 1)


def l4_table_offset(gva: int) -> int:
    """Index of ``gva`` in its L4 table."""
    return (gva >> L4_PAGETABLE_SHIFT) & (L4_PAGETABLE_ENTRIES - 1)


_LEVEL_SHIFTS = {4: L4_PAGETABLE_SHIFT, 3: L3_PAGETABLE_SHIFT, 2: L2_PAGETABLE_SHIFT, 1: L1_PAGETABLE_SHIFT}


def adjust_guest_l1e(entry: int) -> int:
    """``adjust_guest_l1e`` for a PV64 guest: a present entry without _PAGE_USER is a kernel mapping and gets
    _PAGE_USER and ``PAGE_GUEST_KERNEL`` (bit 52); one that is not marked as a kernel mapping gets _PAGE_GLOBAL (and
    _PAGE_USER)."""
    if entry & _PAGE_PRESENT:
        if not entry & _PAGE_USER:
            entry |= _PAGE_GUEST_KERNEL | _PAGE_USER
        if not entry & _PAGE_GUEST_KERNEL:
            entry |= _PAGE_GLOBAL | _PAGE_USER
    return entry


def is_canonical(gva: int) -> bool:
    """True if ``gva`` (taken modulo 2**64) is a canonical 48-bit address."""
    top = (gva & _U64) >> 47
    return top == 0 or top == _UPPER_HALF_TOP


# --------------------------------------------------------------------------------------------- faults


class GuestFault(Exception):  # noqa: N818 (a fault, as the hardware names it)
    """A guest virtual address could not be accessed. Handlers turn it into ``-EFAULT`` (``errno``).

    Attributes:
        gva: the faulting guest virtual address (the first byte that could not be accessed).
        write: whether the access was a write.
        reason: short description, e.g. ``"L3 entry not present"``, ``"read-only mapping at L1"``,
            ``"non-canonical"``, ``"hypervisor hole"``.
        level: the page-table level (4..1) where the walk stopped, 0 for the final frame, ``None`` if no walk
            took place (address checks).
        errno: always ``XenErrno.EFAULT``.
    """

    errno = XenErrno.EFAULT

    def __init__(self, gva: int, reason: str, *, write: bool = False, level: int | None = None) -> None:
        kind = "write" if write else "read"
        super().__init__(f"guest {kind} fault at gva {gva:#018x}: {reason}")
        self.gva = gva
        self.write = write
        self.reason = reason
        self.level = level


def _entry_fault(gva: int, write: bool, level: int, entry: int) -> GuestFault:
    if not entry & _PAGE_PRESENT:
        reason = f"L{level} entry not present"
    elif level > 1 and entry & _PAGE_PSE:
        reason = f"superpage at L{level}" if level in (2, 3) else "reserved bit set in L4 entry"
    else:
        reason = f"read-only mapping at L{level}"
    return GuestFault(gva, reason, write=write, level=level)


def _frame_fault(machine: MachineMemory, gva: int, write: bool, level: int, mfn: int) -> GuestFault:
    what = f"L{level} table" if level else "frame"
    if mfn >= machine.nr_frames:
        reason = f"{what} mfn {mfn:#x} outside machine memory"
    else:
        reason = f"{what} mfn {mfn:#x} not owned by domain"
    return GuestFault(gva, reason, write=write, level=level)


def _address_fault(gva: int, write: bool) -> GuestFault:
    if is_canonical(gva):
        return GuestFault(gva, "hypervisor hole", write=write)
    return GuestFault(gva, "non-canonical", write=write)


# --------------------------------------------------------------------------------------------- walk


def translate(machine: MachineMemory, cr3: int, gva: int, *, write: bool, domid: int) -> int:
    """Translate a guest virtual address through a PV64 guest's 4-level page tables.

    Checks, in order: ``gva`` canonical (else ``"non-canonical"``) and outside Xen's hole (else
    ``"hypervisor hole"``); then at L4, L3, L2, L1: the table's mfn is inside machine memory and owned by
    ``domid``, the entry is present, has no PSE bit (a superpage at L3/L2, a reserved bit at L4), and for a
    write has RW set (Xen runs with CR0.WP=1, so RW must be set at every level); finally the frame's mfn is
    inside machine memory and owned by ``domid``. _PAGE_USER and NX are not checked: Xen's accesses are
    supervisor data accesses.

    On success the walk sets _PAGE_ACCESSED in every entry used and, for a write, _PAGE_DIRTY in the L1
    entry, as the hardware walker does (only when a bit is missing, so the common case writes nothing).

    Args:
        machine: machine memory holding the tables.
        cr3: the guest's cr3 (``l4_mfn << 12``; low flag bits are ignored).
        gva: guest virtual address (taken modulo 2**64).
        write: True for a write access.
        domid: the domain that must own every table and the frame.

    Returns:
        The machine address of ``gva``.

    Raises:
        GuestFault: the access would fault.
    """
    gva &= _U64
    top = gva >> 47
    if top and (top != _UPPER_HALF_TOP or gva < HYPERVISOR_VIRT_END):
        raise _address_fault(gva, write)
    table = machine.mv_u64
    owner = machine.mv_owner
    nr_frames = machine.nr_frames
    if write:
        mask = _PAGE_PRESENT | _PAGE_RW | _PAGE_PSE
        want = _PAGE_PRESENT | _PAGE_RW
        l1_mask = _PAGE_PRESENT | _PAGE_RW
    else:
        mask = _PAGE_PRESENT | _PAGE_PSE
        want = l1_mask = _PAGE_PRESENT

    mfn = (cr3 & PTE_PFN_MASK) >> PAGE_SHIFT
    if mfn >= nr_frames or owner[mfn] != domid:
        raise _frame_fault(machine, gva, write, 4, mfn)
    i4 = (mfn << PAGETABLE_ORDER) | ((gva >> L4_PAGETABLE_SHIFT) & 511)
    e4 = table[i4]
    if e4 & mask != want:
        raise _entry_fault(gva, write, 4, e4)

    mfn = (e4 & PTE_PFN_MASK) >> PAGE_SHIFT
    if mfn >= nr_frames or owner[mfn] != domid:
        raise _frame_fault(machine, gva, write, 3, mfn)
    i3 = (mfn << PAGETABLE_ORDER) | ((gva >> L3_PAGETABLE_SHIFT) & 511)
    e3 = table[i3]
    if e3 & mask != want:
        raise _entry_fault(gva, write, 3, e3)

    mfn = (e3 & PTE_PFN_MASK) >> PAGE_SHIFT
    if mfn >= nr_frames or owner[mfn] != domid:
        raise _frame_fault(machine, gva, write, 2, mfn)
    i2 = (mfn << PAGETABLE_ORDER) | ((gva >> L2_PAGETABLE_SHIFT) & 511)
    e2 = table[i2]
    if e2 & mask != want:
        raise _entry_fault(gva, write, 2, e2)

    mfn = (e2 & PTE_PFN_MASK) >> PAGE_SHIFT
    if mfn >= nr_frames or owner[mfn] != domid:
        raise _frame_fault(machine, gva, write, 1, mfn)
    i1 = (mfn << PAGETABLE_ORDER) | ((gva >> L1_PAGETABLE_SHIFT) & 511)
    e1 = table[i1]
    if e1 & l1_mask != want:
        raise _entry_fault(gva, write, 1, e1)

    mfn = (e1 & PTE_PFN_MASK) >> PAGE_SHIFT
    if mfn >= nr_frames or owner[mfn] != domid:
        raise _frame_fault(machine, gva, write, 0, mfn)

    if not e4 & e3 & e2 & e1 & _PAGE_ACCESSED or (write and not e1 & _PAGE_DIRTY):
        table[i4] = e4 | _PAGE_ACCESSED
        table[i3] = e3 | _PAGE_ACCESSED
        table[i2] = e2 | _PAGE_ACCESSED
        table[i1] = e1 | (_PAGE_ACCESSED | _PAGE_DIRTY if write else _PAGE_ACCESSED)
    return (mfn << PAGE_SHIFT) | (gva & PAGE_OFFSET_MASK)


# --------------------------------------------------------------------------------------------- range checks


def gva_ok(gva: int) -> bool:
    """Xen's PV64 ``__addr_ok``: ``gva < 2**47`` or ``gva >= HYPERVISOR_VIRT_END`` (``gva`` modulo 2**64).

    Checking the start address is enough for a whole range: sequential accesses from an accepted start reach
    a non-canonical address (and fault) before they could reach Xen's hole.
    """
    gva &= _U64
    return gva < _LOWER_HALF_END or gva >= HYPERVISOR_VIRT_END


def access_ok(gva: int, nr_bytes: int) -> bool:
    """Xen's PV64 ``access_ok(addr, size)``: ``gva_ok(gva)``; ``nr_bytes`` is not examined.

    Xen also accepts its compat argument-translation area, which only 32-bit PV and HVM guests use; a PV64
    guest's pointers never satisfy that clause, so it is not modelled.
    """
    del nr_bytes
    return gva_ok(gva)


def array_access_ok(gva: int, count: int, elem_size: int) -> bool:
    """Xen's ``array_access_ok``: ``count < ~0UL / elem_size`` (unsigned 64-bit) and ``access_ok(gva, ...)``.

    Raises:
        ValueError: ``elem_size`` is not positive (a hypervisor bug, never a guest error).
    """
    if elem_size <= 0:
        raise ValueError(f"elem_size must be positive, got {elem_size}")
    count &= _U64
    return count < _U64 // elem_size and access_ok(gva, count * elem_size)


def guest_handle_okay(gva: int, nr: int, elem_size: int = 1) -> bool:
    """Xen's PV ``guest_handle_okay(hnd, nr)``: a handle to ``nr`` elements of ``elem_size`` bytes at ``gva``.

    Only the start address is range-checked (``gva_ok``), plus the overflow check of ``array_access_ok``:
    ``nr`` (unsigned 64-bit) must be below ``(2**64 - 1) // elem_size``. A range that runs past 2**47 or wraps
    past 2**64 is accepted; the copy itself faults where the mapping ends (spec 1.2 cmd 5).
    """
    return array_access_ok(gva, nr, elem_size)


# --------------------------------------------------------------------------------------------- copy helpers


def _as_bytes(data: BytesLike) -> bytes | bytearray | memoryview:
    if isinstance(data, (bytes, bytearray)):
        return data
    return memoryview(data).cast("B")


def copy_from_guest(machine: MachineMemory, cr3: int, gva: int, nbytes: int, *, domid: int) -> bytes:
    """Read ``nbytes`` of guest virtual memory (Xen's ``copy_from_guest`` for a PV64 guest).

    The start address must pass ``access_ok``; each page of the range is then translated separately (a
    range may cross pages whose frames are far apart in machine memory). A zero-length copy never faults.

    Args:
        machine: machine memory.
        cr3: the guest's cr3.
        gva: start address (modulo 2**64; the range wraps like the hardware's).
        nbytes: number of bytes.
        domid: the guest domain (must own every table and frame).

    Returns:
        The bytes read.

    Raises:
        GuestFault: any byte of the range cannot be read; the handler returns ``-EFAULT``.
        ValueError: negative ``nbytes`` (a hypervisor bug).
    """
    gva &= _U64
    offset = gva & PAGE_OFFSET_MASK
    if 0 < nbytes <= PAGE_SIZE - offset:
        # Common case: one page. translate() applies the same start checks as access_ok().
        maddr = translate(machine, cr3, gva, write=False, domid=domid)
        return machine.mv_u8[maddr : maddr + nbytes].tobytes()
    if nbytes == 0:
        return b""
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")
    if not gva_ok(gva):
        raise _address_fault(gva, False)
    chunks = []
    mv = machine.mv_u8
    left = nbytes
    while left:
        chunk = min(left, PAGE_SIZE - (gva & PAGE_OFFSET_MASK))
        maddr = translate(machine, cr3, gva, write=False, domid=domid)
        chunks.append(mv[maddr : maddr + chunk].tobytes())
        left -= chunk
        gva = (gva + chunk) & _U64
    return b"".join(chunks)


def copy_to_guest(machine: MachineMemory, cr3: int, gva: int, data: BytesLike, *, domid: int) -> int:
    """Write ``data`` to guest virtual memory (Xen's ``copy_to_guest`` for a PV64 guest).

    If the start address fails ``access_ok`` nothing is written. Otherwise the range is written page by page;
    the first page that cannot be written (not present, read-only at any level, not owned, non-canonical)
    stops the copy, and everything before it stays written.

    Args:
        machine: machine memory.
        cr3: the guest's cr3.
        gva: start address (modulo 2**64; the range wraps like the hardware's).
        data: bytes to write.
        domid: the guest domain (must own every table and frame).

    Returns:
        The number of bytes NOT copied: 0 on success (the handler returns ``-EFAULT`` when it is not 0).
    """
    src = _as_bytes(data)
    nbytes = len(src)
    gva &= _U64
    offset = gva & PAGE_OFFSET_MASK
    if 0 < nbytes <= PAGE_SIZE - offset:
        try:
            maddr = translate(machine, cr3, gva, write=True, domid=domid)
        except GuestFault:
            return nbytes
        machine.mv_u8[maddr : maddr + nbytes] = src
        return 0
    if nbytes == 0:
        return 0
    if not gva_ok(gva):
        return nbytes
    mv = machine.mv_u8
    done = 0
    while done < nbytes:
        chunk = min(nbytes - done, PAGE_SIZE - (gva & PAGE_OFFSET_MASK))
        try:
            maddr = translate(machine, cr3, gva, write=True, domid=domid)
        except GuestFault:
            return nbytes - done
        mv[maddr : maddr + chunk] = src[done : done + chunk]
        done += chunk
        gva = (gva + chunk) & _U64
    return 0


def copy_to_guest_or_fault(
    machine: MachineMemory,
    cr3: int,
    gva: int,
    data: BytesLike,
    *,
    domid: int,
) -> None:
    """Like ``copy_to_guest`` but raise on a partial copy (the bytes before the fault stay written).

    Raises:
        GuestFault: some byte could not be written; ``gva`` is the first byte not written.
    """
    src = _as_bytes(data)
    not_copied = copy_to_guest(machine, cr3, gva, src, domid=domid)
    if not_copied:
        # Walk the first byte not written again to raise the fault that stopped the copy.
        translate(machine, cr3, (gva + len(src) - not_copied) & _U64, write=True, domid=domid)
        raise AssertionError("copy_to_guest stopped on a writable page")  # unreachable


def clear_guest(machine: MachineMemory, cr3: int, gva: int, nbytes: int, *, domid: int) -> int:
    """Zero ``nbytes`` of guest virtual memory (Xen's ``clear_guest``); returns the bytes NOT cleared."""
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")
    return copy_to_guest(machine, cr3, gva, bytes(nbytes), domid=domid)


# --------------------------------------------------------------------------------------------- builder


class PageTableBuilder:
    """Builds a PV64 guest's 4-level page tables in the guest's own frames (spec 7.2).

    Table frames are taken, in order, from ``table_pfns`` when first needed (the L4 immediately). Each table
    frame is zeroed and typed (``PageType.l4``..``l1``, one type reference held while the builder lives).
    Upper-level entries are ``L2_PROT`` (PRESENT|RW|ACCESSED|DIRTY|USER); L1 entries are
    PRESENT|ACCESSED, plus RW when writable, as Xen leaves them once validated (:func:`adjust_guest_l1e`): a
    kernel mapping (the default) with USER and ``PAGE_GUEST_KERNEL``, a ``user`` mapping with USER and GLOBAL. A
    writable mapping holds a ``PageType.writable`` reference on its frame, so a page-table frame can only be mapped
    read-only and a frame mapped writable cannot become a page table: both raise ``ValueError``, as Xen would refuse
    them.

    All gvas must be page-aligned, canonical and outside Xen's hole; pfns must belong to the domain.

    Args:
        domain: the domain whose memory holds the tables and the mapped frames.
        table_pfns: pfns available for table frames, consumed in order.

    Raises:
        ValueError: no pfn for the L4, or it cannot be typed as a page table.
    """

    def __init__(self, domain: DomainMemory, table_pfns: Iterable[int]) -> None:
        self.domain = domain
        self.machine = domain.machine
        self._table_pfns: Iterator[int] = iter(table_pfns)
        self._tables: dict[int, int] = {}  # table mfn -> level
        self._table_pfns_by_level: dict[int, list[int]] = {4: [], 3: [], 2: [], 1: []}
        self.l4_mfn = self._new_table(4)

    # ------------------------------------------------------------ properties

    @property
    def cr3(self) -> int:
        """The value to load in cr3: ``l4_mfn << 12``."""
        return self.l4_mfn << PAGE_SHIFT

    @property
    def nr_table_frames(self) -> int:
        """Number of table frames in use (all levels)."""
        return len(self._tables)

    def table_pfns(self, level: int | None = None) -> list[int]:
        """pfns of the table frames of ``level`` (4..1), or of all levels L4 first, in creation order."""
        if level is not None:
            return list(self._table_pfns_by_level[level])
        return [pfn for lvl in (4, 3, 2, 1) for pfn in self._table_pfns_by_level[lvl]]

    # ------------------------------------------------------------ internals

    def _new_table(self, level: int) -> int:
        try:
            pfn = next(self._table_pfns)
        except StopIteration:
            raise ValueError("no pfn left for a page-table frame") from None
        mfn = self.domain.mfn_of(pfn)
        if not self.machine.get_page_type(mfn, PageType(level)):
            typed = self.machine.page_type(mfn).name
            raise ValueError(f"pfn {pfn:#x} cannot be an L{level} table: it is typed {typed}")
        self.machine.zero_frame(mfn)
        self._tables[mfn] = level
        self._table_pfns_by_level[level].append(pfn)
        return mfn

    @staticmethod
    def _check_gva(gva: int) -> None:
        if not 0 <= gva <= _U64 or gva & PAGE_OFFSET_MASK:
            raise ValueError(f"gva {gva:#x} is not a page-aligned 64-bit address")
        if not is_canonical(gva):
            raise ValueError(f"gva {gva:#x} is not canonical")
        if HYPERVISOR_VIRT_START <= gva < HYPERVISOR_VIRT_END:
            raise ValueError(f"gva {gva:#x} is in Xen's reserved hole")

    def _entry_maddr(self, table_mfn: int, level: int, gva: int) -> int:
        index = (gva >> _LEVEL_SHIFTS[level]) & (L1_PAGETABLE_ENTRIES - 1)
        return (table_mfn << PAGE_SHIFT) | (index << 3)

    def _child_table(self, entry_maddr: int, level: int) -> int | None:
        entry = self.machine.read_u64(entry_maddr)
        if not entry & _PAGE_PRESENT:
            return None
        mfn = (entry & PTE_PFN_MASK) >> PAGE_SHIFT
        if self._tables.get(mfn) != level:
            raise ValueError(f"entry at maddr {entry_maddr:#x} is not a builder L{level} table ({mfn:#x})")
        return mfn

    def _l1_entry_maddr(self, gva: int, *, create: bool) -> int | None:
        table_mfn = self.l4_mfn
        for level in (4, 3, 2):
            entry_maddr = self._entry_maddr(table_mfn, level, gva)
            child = self._child_table(entry_maddr, level - 1)
            if child is None:
                if not create:
                    return None
                child = self._new_table(level - 1)
                self.machine.write_u64(entry_maddr, (child << PAGE_SHIFT) | L2_PROT)
            table_mfn = child
        return self._entry_maddr(table_mfn, 1, gva)

    def _drop_l1_entry(self, entry_maddr: int) -> int:
        entry = self.machine.read_u64(entry_maddr)
        if entry & _PAGE_PRESENT and entry & _PAGE_RW:
            self.machine.put_page_type((entry & PTE_PFN_MASK) >> PAGE_SHIFT)
        return entry

    # ------------------------------------------------------------ public operations

    def ensure_tables(self, first_gva: int, nr_pages: int) -> None:
        """Create every table needed to map ``[first_gva, first_gva + nr_pages * 4096)``, level by level.

        All missing L3 tables are created first, then the L2s, then the L1s, in address order: the layout of
        libxenguest's page-table segment (L4, L3s, L2s, L1s; spec 7.2). Existing tables are kept.
        """
        if nr_pages <= 0:
            return
        self._check_gva(first_gva)
        last_gva = first_gva + (nr_pages - 1) * PAGE_SIZE
        self._check_gva(last_gva)  # also rejects a range running into the non-canonical gap
        for level in (4, 3, 2):
            shift = _LEVEL_SHIFTS[level]  # one entry at `level` spans 1 << shift bytes
            for slot in range(first_gva >> shift, (last_gva >> shift) + 1):
                gva = slot << shift
                table_mfn = self._table_at(gva, level)
                entry_maddr = self._entry_maddr(table_mfn, level, gva)
                if self._child_table(entry_maddr, level - 1) is None:
                    child = self._new_table(level - 1)
                    self.machine.write_u64(entry_maddr, (child << PAGE_SHIFT) | L2_PROT)

    def _table_at(self, gva: int, level: int) -> int:
        """The existing table of ``level`` covering ``gva`` (its ancestors must exist)."""
        table_mfn = self.l4_mfn
        for upper in range(4, level, -1):
            child = self._child_table(self._entry_maddr(table_mfn, upper, gva), upper - 1)
            assert child is not None
            table_mfn = child
        return table_mfn

    def map_page(self, gva: int, pfn: int, *, writable: bool = True, user: bool = False) -> None:
        """Map the page at ``gva`` to the frame of ``pfn``, creating tables as needed; replaces a mapping.

        Raises:
            ValueError: bad gva or pfn; a writable mapping of a frame typed other than writable (e.g. a
                page-table frame); no pfn left for a new table.
        """
        self._check_gva(gva)
        mfn = self.domain.mfn_of(pfn)
        if writable and not self.machine.get_page_type(mfn, PageType.writable):
            raise ValueError(
                f"pfn {pfn:#x} is typed {self.machine.page_type(mfn).name}; it can only be mapped read-only"
            )
        try:
            entry_maddr = self._l1_entry_maddr(gva, create=True)
        except ValueError:
            if writable:
                self.machine.put_page_type(mfn)
            raise
        assert entry_maddr is not None
        self._drop_l1_entry(entry_maddr)
        flags = _PAGE_PRESENT | _PAGE_ACCESSED | (_PAGE_RW if writable else 0) | (_PAGE_USER if user else 0)
        self.machine.write_u64(entry_maddr, adjust_guest_l1e((mfn << PAGE_SHIFT) | flags))

    def map_range(
        self,
        gva: int,
        first_pfn: int,
        nr_pages: int,
        *,
        writable: bool = True,
        user: bool = False,
    ) -> None:
        """Map ``nr_pages`` consecutive pages from ``gva`` to pfns ``first_pfn..first_pfn+nr_pages-1``.

        Tables are created first for the whole range (``ensure_tables``), then the pages are mapped.
        """
        self.ensure_tables(gva, nr_pages)
        self.map_pages(gva, range(first_pfn, first_pfn + nr_pages), writable=writable, user=user)

    def map_pages(self, gva: int, pfns: Iterable[int], *, writable: bool | Iterable[bool] = True,
                  user: bool = False) -> None:  # fmt: skip
        """``map_page`` of each of ``pfns`` at consecutive pages from ``gva`` (``writable`` per page, or for all):
        the same entries, types and errors as that loop, in one step where every L1 table exists and no page is
        mapped yet."""
        pfns = np.asarray(list(pfns) if not isinstance(pfns, range) else pfns, dtype=np.int64)
        rw = np.broadcast_to(np.asarray(list(writable) if not isinstance(writable, bool) else writable, bool),
                             pfns.shape)
        if not self._map_pages_at_once(gva, pfns, rw, user):
            for i, (pfn, w) in enumerate(zip(pfns.tolist(), rw.tolist(), strict=True)):
                self.map_page(gva + i * PAGE_SIZE, pfn, writable=w, user=user)

    def _map_pages_at_once(self, gva: int, pfns: np.ndarray, rw: np.ndarray, user: bool) -> bool:
        """The fast path of :meth:`map_pages`; False (nothing done) where the loop must decide."""
        nr_pages = len(pfns)
        if nr_pages == 0:
            return True
        last = gva + (nr_pages - 1) * PAGE_SIZE
        if not (0 <= gva and last <= _U64 and not gva & PAGE_OFFSET_MASK and is_canonical(gva)
                and is_canonical(last) and (last < HYPERVISOR_VIRT_START or gva >= HYPERVISOR_VIRT_END)):
            return False
        p2m = self.domain.p2m.mfns
        if pfns.min() < 0 or pfns.max() >= len(p2m):
            return False
        # The L1 slots of the range, one L1 table per 2 MiB; each slot still empty.
        slots: list[np.ndarray] = []
        page = 0
        while page < nr_pages:
            entry_maddr = self._l1_entry_maddr(gva + page * PAGE_SIZE, create=False)
            if entry_maddr is None:
                return False
            first = (entry_maddr & PAGE_OFFSET_MASK) >> 3
            count = min(L1_PAGETABLE_ENTRIES - first, nr_pages - page)
            table = self.machine.frames[entry_maddr >> PAGE_SHIFT].view("<u8")[first : first + count]
            if np.any(table):
                return False
            slots.append(table)
            page += count
        mfns = p2m[pfns]
        if not self.machine.get_page_types(mfns[rw], PageType.writable):
            return False
        base = _PAGE_PRESENT | _PAGE_ACCESSED | (_PAGE_USER if user else 0)
        ro_flags = adjust_guest_l1e(base) & ~PTE_PFN_MASK
        rw_flags = adjust_guest_l1e(base | _PAGE_RW) & ~PTE_PFN_MASK
        entries = (mfns << PAGE_SHIFT).astype(np.uint64) | np.where(rw, np.uint64(rw_flags), np.uint64(ro_flags))
        page = 0
        for table in slots:
            table[:] = entries[page : page + len(table)]
            page += len(table)
        return True

    def unmap(self, gva: int) -> bool:
        """Remove the mapping of the page at ``gva`` (tables are kept). Returns True if one existed."""
        self._check_gva(gva)
        entry_maddr = self._l1_entry_maddr(gva, create=False)
        if entry_maddr is None:
            return False
        entry = self._drop_l1_entry(entry_maddr)
        self.machine.write_u64(entry_maddr, 0)
        return bool(entry & _PAGE_PRESENT)

    def set_writable(self, gva: int, writable: bool) -> None:
        """Set or clear _PAGE_RW in the L1 entry mapping ``gva`` (adjusting the frame's writable type).

        Raises:
            ValueError: ``gva`` is not mapped, or making it writable is refused (see ``map_page``).
        """
        self._check_gva(gva)
        entry_maddr = self._l1_entry_maddr(gva, create=False)
        entry = 0 if entry_maddr is None else self.machine.read_u64(entry_maddr)
        if not entry & _PAGE_PRESENT:
            raise ValueError(f"gva {gva:#x} is not mapped")
        assert entry_maddr is not None
        mfn = (entry & PTE_PFN_MASK) >> PAGE_SHIFT
        if writable == bool(entry & _PAGE_RW):
            return
        if writable:
            if not self.machine.get_page_type(mfn, PageType.writable):
                typed = self.machine.page_type(mfn).name
                raise ValueError(f"mfn {mfn:#x} is typed {typed}; it stays read-only")
            entry |= _PAGE_RW
        else:
            self.machine.put_page_type(mfn)
            entry &= ~_PAGE_RW
        self.machine.write_u64(entry_maddr, entry)

    def l1_entry(self, gva: int) -> int | None:
        """The raw L1 entry mapping ``gva`` (present or not), or None if no L1 table covers it."""
        self._check_gva(gva)
        entry_maddr = self._l1_entry_maddr(gva, create=False)
        return None if entry_maddr is None else self.machine.read_u64(entry_maddr)

    def entry_maddr(self, gva: int, level: int) -> int | None:
        """Machine address of the level-``level`` (4..1) entry covering ``gva``; None if that table is absent.

        Lets tests and the hypervisor inspect or patch one entry with ``MachineMemory.read_u64``/``write_u64``
        (e.g. to clear an upper-level RW bit).
        """
        self._check_gva(gva)
        if level not in _LEVEL_SHIFTS:
            raise ValueError(f"level must be 1..4, got {level}")
        table_mfn = self.l4_mfn
        for upper in range(4, level, -1):
            child = self._child_table(self._entry_maddr(table_mfn, upper, gva), upper - 1)
            if child is None:
                return None
            table_mfn = child
        return self._entry_maddr(table_mfn, level, gva)
