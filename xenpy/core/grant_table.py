"""A domain's grant table, versions 1 and 2, and grant mappings: Xen's ``xen/common/grant_table.c``
(``gnttab_grow_table``, ``gnttab_set_version``, ``gnttab_populate_status_frames``,
``gnttab_unpopulate_status_frames``, ``map_grant_ref``, ``unmap_common``) and ``xen/arch/x86/pv/grant_table.c``
for PV domains.

A domain's grant table is a list of frames it shares with Xen (``Domain.grant_frames``), read in the format of
the table's version (``Domain.grant_version``, changed by GNTTABOP_set_version):

* version 1: 8-byte ``grant_entry_v1 {u16 flags; domid_t domid; u32 frame}``, 512 to a frame. While a grant is
  mapped, Xen keeps GTF_reading (and GTF_writing while there are writable mappings) in its ``flags``;
* version 2: 16-byte ``grant_entry_v2``, 256 to a frame: the header ``{u16 flags; domid_t domid}``, then
  ``full_page {u32 pad0; u64 frame}``, ``sub_page {u16 page_off; u16 length; u64 frame}`` or ``transitive
  {domid_t trans_domid; u16 pad0; grant_ref_t gref}``. GTF_reading / GTF_writing are kept apart, in one
  ``grant_status_t`` (u16) per entry, 2048 to a *status frame* (``Domain.grant_status_frames``; one per four
  shared frames, rounded up: ``grant_to_status_frames``). Only full-page GTF_permit_access grants can be
  mapped (GTF_sub_page and GTF_transitive grants are for copies, which xenpy does not have).

Shared and status frames are Xen-heap pages shared read-write with the domain (``share_xen_page_with_guest``
with SHARE_rw): owned by the domain but not counted in its reservation, without an m2p entry, and holding one
``writable`` type reference while they are shared, so that they never become page tables. The guest maps them
itself, read-only or writable, from the mfns GNTTABOP_setup_table and GNTTABOP_get_status_frames return
(update_va_mapping, mmu_update). The table has ``INITIAL_NR_GRANT_FRAMES`` frames from the start (xenpy creates
them at the domain's first grant-table operation, the first time a guest can tell, or at the first mapping of
one of its grants) and grows, zeroed, up to ``MAX_GRANT_FRAMES``.

A mapping of another domain's (or its own) grant goes through three records, as in Xen:

* the granting domain's *active entry* of the ref (:class:`ActiveGrant`): the mapping domain, the frame, and
  pin counts of host/device, read/write mappings; active entries do not depend on the version;
* the mapping domain's *maptrack* entry (:class:`MaptrackEntry`), whose index is the handle returned;
* references on the frame: each writable mapping (host or device) holds one ``writable`` type reference, so a
  frame mapped through a grant can no more become a page table than one mapped writable by its owner.

A host mapping (GNTMAP_host_map, without GNTMAP_contains_pte) replaces the L1 entry of ``host_addr`` in the
mapping vCPU's current page tables; the entry it replaces gives up its reference. Not modelled:
GNTMAP_contains_pte and GNTMAP_application_map (GNTST_general_error), grant copies and transfers (and so the
in-flight version-2 operations that make a version change -EAGAIN), a domain limited to version 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from xenpy.abi import x86
from xenpy.abi.errno import XenErrno
from xenpy.abi.grant_table import (
    GNTTAB_NR_RESERVED_ENTRIES,
    GNTMAP_application_map,
    GNTMAP_contains_pte,
    GNTMAP_device_map,
    GNTMAP_host_map,
    GNTMAP_readonly,
    GNTST_bad_dev_addr,
    GNTST_bad_domain,
    GNTST_bad_gntref,
    GNTST_bad_handle,
    GNTST_general_error,
    GNTST_no_device_space,
    GNTST_okay,
    GTF_permit_access,
    GTF_reading,
    GTF_readonly,
    GTF_sub_page,
    GTF_transitive,
    GTF_type_mask,
    GTF_writing,
)
from xenpy.core.memory import PAGE_SHIFT, PAGE_SIZE, OutOfMachineMemory, PageType
from xenpy.core.mm import map_guest_l1e, mapped_by_l1, note_pagetable_change, pte_mfn, put_page_from_l1e
from xenpy.core.pagetable import adjust_guest_l1e

if TYPE_CHECKING:
    from xenpy.core.domain import Domain, Vcpu
    from xenpy.core.memory import MachineMemory

#: Entries of a shared frame, by version (``SHGNT_PER_PAGE_V1`` / ``_V2``).
ENTRIES_PER_FRAME = {1: PAGE_SIZE // 8, 2: PAGE_SIZE // 16}
#: ``grant_status_t`` words of a status frame (``STGNT_PER_PAGE``).
STATUS_PER_FRAME = PAGE_SIZE // 2
#: ``max_grant_frames`` of a domain (Xen's default ``opt_max_grant_frames``; libxl's default for a domU).
MAX_GRANT_FRAMES = 64
#: Frames every grant table has (``INITIAL_NR_GRANT_FRAMES`` on x86, ``gnttab_grow_table``'s minimum).
INITIAL_NR_GRANT_FRAMES = 1
#: The maptrack entries a domain may use (Xen's default ``max_maptrack_frames`` of 1024, 8-byte entries).
MAX_MAPTRACK = 1024 * 4096 // 8

#: PTE flags of a host mapping (``grant_to_pte_flags``): present, accessed, dirty, no-execute, Xen's grant bit
#: (62); RW unless read-only. The entry is then adjusted as a kernel mapping (``adjust_guest_l1e``).
_PTE_FLAGS = x86.PAGE_PRESENT | x86.PAGE_ACCESSED | x86.PAGE_DIRTY | x86.PAGE_NX | x86.PAGE_GNTTAB
_ACCESS = GTF_reading | GTF_writing
_EINVAL = -int(XenErrno.EINVAL)
_EBUSY = -int(XenErrno.EBUSY)
_ENOMEM = -int(XenErrno.ENOMEM)
_ERANGE = -int(XenErrno.ERANGE)


@dataclass
class ActiveGrant:
    """The granting domain's active entry of one ref (``struct active_grant_entry``)."""

    domid: int
    frame: int
    host_read: int = 0
    host_write: int = 0
    dev_read: int = 0
    dev_write: int = 0

    @property
    def pinned(self) -> bool:
        return bool(self.host_read or self.host_write or self.dev_read or self.dev_write)

    @property
    def writers(self) -> int:
        return self.host_write + self.dev_write


@dataclass
class MaptrackEntry:
    """One mapping of the mapping domain (``struct grant_mapping``): the granting domain, the ref, the
    GNTMAP_device_map / GNTMAP_host_map / GNTMAP_readonly flags still mapped, and the host address mapped."""

    domid: int
    ref: int
    flags: int
    host_addr: int = 0


@dataclass(frozen=True)
class MapResult:
    """What ``map_grant_ref`` writes back: the status, and on success the handle and the device address."""

    status: int
    handle: int = 0
    dev_bus_addr: int = 0


# ------------------------------------------------------------------------------------------ the table


def grant_to_status_frames(nr_grant_frames: int) -> int:
    """Status frames of a version-2 table of ``nr_grant_frames`` shared frames (``grant_to_status_frames``)."""
    return -(-nr_grant_frames * ENTRIES_PER_FRAME[2] // STATUS_PER_FRAME)


def nr_grant_entries(d: Domain) -> int:
    """Entries of ``d``'s table in its current version."""
    return len(d.grant_frames) * ENTRIES_PER_FRAME[d.grant_version]


def _share_new_frames(machine: MachineMemory, d: Domain, nr_frames: int) -> list[int] | None:
    """``alloc_xenheap_page`` + ``share_xen_page_with_guest(SHARE_rw)`` of ``nr_frames`` zeroed frames."""
    try:
        mfns = [int(m) for m in machine.alloc_domain_frames(d.domid, nr_frames)]
    except OutOfMachineMemory:
        return None
    for mfn in mfns:
        machine.get_page_type(mfn, PageType.writable)  # the type count that pins a shared page writable
    return mfns


def grow_table(d: Domain, nr_frames: int) -> bool:
    """``gnttab_grow_table``: give ``d`` at least ``nr_frames`` (and ``INITIAL_NR_GRANT_FRAMES``) shared frames
    and, in version 2, their status frames; False (nothing changed) if memory runs out."""
    machine = d.system.machine
    nr_frames = max(nr_frames, INITIAL_NR_GRANT_FRAMES, len(d.grant_frames))
    missing = nr_frames - len(d.grant_frames)
    missing_status = grant_to_status_frames(nr_frames) - len(d.grant_status_frames) if d.grant_version == 2 else 0
    if missing <= 0 and missing_status <= 0:
        return True
    shared = _share_new_frames(machine, d, missing)
    if shared is None:
        return False
    status = _share_new_frames(machine, d, missing_status)
    if status is None:
        machine.free_frames(d.domid, shared)
        return False
    d.grant_frames.extend(shared)
    d.grant_status_frames.extend(status)
    return True


def ensure_table(d: Domain) -> bool:
    """Create ``d``'s table (``grant_table_init``) if it has none yet; False if memory runs out."""
    return bool(d.grant_frames) or grow_table(d, INITIAL_NR_GRANT_FRAMES)


def _entry_maddr(d: Domain, ref: int) -> int:
    per_frame = ENTRIES_PER_FRAME[d.grant_version]
    return (d.grant_frames[ref // per_frame] << PAGE_SHIFT) + (ref % per_frame) * (PAGE_SIZE // per_frame)


def _status_maddr(d: Domain, ref: int) -> int:
    """Where GTF_reading / GTF_writing of ``ref`` live: the entry's flags (v1) or its status word (v2)."""
    if d.grant_version == 1:
        return _entry_maddr(d, ref)
    return (d.grant_status_frames[ref // STATUS_PER_FRAME] << PAGE_SHIFT) + (ref % STATUS_PER_FRAME) * 2


def _read_entry(d: Domain, ref: int) -> tuple[int, int, int]:
    """``(flags, domid, frame)`` of ``ref``: ``frame`` is v1's u32 or v2's ``full_page.frame`` (u64)."""
    machine = d.system.machine
    maddr = _entry_maddr(d, ref)
    flags, domid = machine.read_u16(maddr), machine.read_u16(maddr + 2)
    frame = machine.read_u32(maddr + 4) if d.grant_version == 1 else machine.read_u64(maddr + 8)
    return flags, domid, frame


def _update_status(d: Domain, ref: int, set_bits: int = 0, clear_bits: int = 0) -> None:
    machine = d.system.machine
    maddr = _status_maddr(d, ref)
    machine.write_u16(maddr, (machine.read_u16(maddr) | set_bits) & ~clear_bits & 0xFFFF)


def _status_frames_in_use(machine: MachineMemory, mfns: list[int]) -> bool:
    """A reference on a status frame beyond the one sharing keeps: a writable type reference (a writable
    mapping, a vcpu_info) or a mapping by an L1 entry (``gnttab_unpopulate_status_frames``' count check)."""
    return any(machine.type_count(mfn) > 1 or mapped_by_l1(machine, mfn) for mfn in mfns)


def _reserved_entries(d: Domain) -> list[tuple[int, int, int]]:
    """The reserved entries as version-1 ``(flags, domid, frame)``, GTF_reading / GTF_writing included (from
    the status words in version 2, where only GTF_permit_access entries are kept: the others read as zero)."""
    machine = d.system.machine
    entries = []
    for ref in range(GNTTAB_NR_RESERVED_ENTRIES):
        flags, domid, frame = _read_entry(d, ref)
        if d.grant_version == 2:
            if flags & GTF_type_mask == GTF_permit_access:
                flags, frame = flags | machine.read_u16(_status_maddr(d, ref)), frame & 0xFFFF_FFFF
            else:
                flags = domid = frame = 0
        entries.append((flags, domid, frame))
    return entries


def _write_reserved_entries(d: Domain, entries: list[tuple[int, int, int]]) -> None:
    machine = d.system.machine
    for ref, (flags, domid, frame) in enumerate(entries):
        maddr = _entry_maddr(d, ref)
        if d.grant_version == 1:
            machine.write_u16(maddr, flags)
            machine.write_u32(maddr + 4, frame)
        else:
            machine.write_u16(_status_maddr(d, ref), flags & _ACCESS)
            machine.write_u16(maddr, flags & ~_ACCESS & 0xFFFF)
            machine.write_u64(maddr + 8, frame)
        machine.write_u16(maddr + 2, domid)


def set_version(d: Domain, version: int) -> int:
    """``gnttab_set_version`` of ``d``'s table to ``version``; 0 or ``-errno``, ``d.grant_version`` unchanged on
    an error. Checks, in Xen's order:

    * -EINVAL: ``version`` is neither 1 nor 2; the same version is 0 at once;
    * -EBUSY: an entry past the reserved ones is in use (its active entry pinned by a mapping);
    * 1 -> 2: -ENOMEM if the status frames (``grant_to_status_frames``) cannot be allocated;
    * 2 -> 1: -ERANGE if a reserved GTF_permit_access entry's frame needs more than 32 bits or a reserved entry
      is GTF_transitive; -EBUSY if a status frame is still referenced (mapped, read-only too: XSA-255).

    Then every shared frame is cleared but for the reserved entries, which are converted: v1 -> v2 moves
    GTF_reading / GTF_writing to the status words and the frame to ``full_page.frame``; v2 -> v1 merges them
    back, and zeroes a reserved entry that is not GTF_permit_access. The status frames are freed (v2 -> v1).
    """
    if version not in (1, 2):
        return _EINVAL
    if not ensure_table(d):
        return _ENOMEM
    if version == d.grant_version:
        return 0
    nr_entries = nr_grant_entries(d)
    if any(act.pinned and GNTTAB_NR_RESERVED_ENTRIES <= ref < nr_entries for ref, act in d.grant_active.items()):
        return _EBUSY
    machine = d.system.machine
    new_status: list[int] = []
    if d.grant_version == 1:
        status = _share_new_frames(machine, d, grant_to_status_frames(len(d.grant_frames)))
        if status is None:
            return _ENOMEM
        new_status = status
    else:
        for ref in range(GNTTAB_NR_RESERVED_ENTRIES):
            flags, _domid, frame = _read_entry(d, ref)
            kind = flags & GTF_type_mask
            if kind == GTF_transitive or (kind == GTF_permit_access and frame >> 32):
                return _ERANGE
    reserved = _reserved_entries(d)
    if d.grant_version == 2:
        if _status_frames_in_use(machine, d.grant_status_frames):
            return _EBUSY
        machine.free_frames(d.domid, d.grant_status_frames)
        d.grant_status_frames = []
    for mfn in d.grant_frames:
        machine.zero_frame(mfn)
    d.grant_version = version
    d.grant_status_frames.extend(new_status)
    _write_reserved_entries(d, reserved)
    return 0


# ------------------------------------------------------------------------------------------ mappings


def _new_handle(ld: Domain, entry: MaptrackEntry) -> int | None:
    maptrack = ld.maptrack
    for handle, used in enumerate(maptrack):
        if used is None:
            maptrack[handle] = entry
            return handle
    if len(maptrack) >= MAX_MAPTRACK:
        return None
    maptrack.append(entry)
    return len(maptrack) - 1


def map_grant_ref(v: Vcpu, rd: Domain | None, ref: int, flags: int, host_addr: int) -> MapResult:
    """``map_grant_ref`` of ``rd``'s grant ``ref`` for the calling vCPU ``v`` (GNTTABOP_map_grant_ref).

    Statuses, in Xen's order: GNTST_bad_gntref (neither host nor device map), GNTST_bad_domain (no ``rd``),
    GNTST_no_device_space (no maptrack entry), GNTST_bad_gntref (``ref`` past the table in its version),
    GNTST_general_error (pinned by another domain; the entry is not a full-page GTF_permit_access grant to this
    domain (GTF_sub_page set, or GTF_transitive), or is read-only and a writable mapping is asked; the frame is
    not ``rd``'s or cannot be typed writable; no L1 entry maps ``host_addr``; a PTE or application mapping was
    asked). The first pin, and the first writable one, set GTF_reading (and GTF_writing) in the entry's flags
    (version 1) or in its status word (version 2). On failure nothing is left changed.
    """
    ld = v.domain
    if not flags & (GNTMAP_device_map | GNTMAP_host_map):
        return MapResult(GNTST_bad_gntref)
    if rd is None:
        return MapResult(GNTST_bad_domain)
    handle = _new_handle(ld, MaptrackEntry(rd.domid, ref, 0))
    if handle is None:
        return MapResult(GNTST_no_device_space)

    def fail(status: int) -> MapResult:
        ld.maptrack[handle] = None
        return MapResult(status)

    if not ensure_table(rd):
        return fail(GNTST_general_error)
    if ref >= nr_grant_entries(rd):
        return fail(GNTST_bad_gntref)
    readonly = bool(flags & GNTMAP_readonly)
    act = rd.grant_active.get(ref)
    if act is not None and act.pinned and act.domid != ld.domid:
        return fail(GNTST_general_error)
    sflags, sdomid, sframe = _read_entry(rd, ref)
    fresh = act is None or not act.pinned
    set_status = fresh or (not readonly and not act.writers)  # type: ignore[union-attr]
    if set_status:  # _set_status(), with GTF_sub_page in the type mask of a mapping
        if fresh and ((sflags & (GTF_type_mask | GTF_sub_page)) != GTF_permit_access or sdomid != ld.domid):
            return fail(GNTST_general_error)
        if not readonly and sflags & GTF_readonly:
            return fail(GNTST_general_error)
    if flags & (GNTMAP_contains_pte | GNTMAP_application_map):
        return fail(GNTST_general_error)
    frame = sframe if fresh else act.frame  # type: ignore[union-attr]
    machine = ld.system.machine
    if not (0 < frame < machine.nr_frames and machine.owner_of(frame) == rd.domid):
        return fail(GNTST_general_error)
    l1e_maddr = None
    if flags & GNTMAP_host_map:
        l1e_maddr = map_guest_l1e(v, host_addr)
        if l1e_maddr is None:
            return fail(GNTST_general_error)
    typed = 0
    if not readonly:
        for _ in range(bool(flags & GNTMAP_device_map) + bool(flags & GNTMAP_host_map)):
            if not machine.get_page_type(frame, PageType.writable):
                for _ in range(typed):
                    machine.put_page_type(frame)
                return fail(GNTST_general_error)
            typed += 1

    if fresh:
        act = rd.grant_active[ref] = ActiveGrant(ld.domid, frame)
    assert act is not None
    if flags & GNTMAP_host_map:
        if readonly:
            act.host_read += 1
        else:
            act.host_write += 1
    if flags & GNTMAP_device_map:
        if readonly:
            act.dev_read += 1
        else:
            act.dev_write += 1
    if set_status:
        _update_status(rd, ref, GTF_reading | (0 if readonly else GTF_writing))
    if l1e_maddr is not None:
        table = machine.mv_u64
        old = table[l1e_maddr >> 3]
        table[l1e_maddr >> 3] = adjust_guest_l1e((frame << PAGE_SHIFT) | _PTE_FLAGS | (0 if readonly else x86.PAGE_RW))
        put_page_from_l1e(old, ld)
        note_pagetable_change(ld)
    ld.maptrack[handle] = MaptrackEntry(rd.domid, ref, flags & (GNTMAP_device_map | GNTMAP_host_map |
                                                                 GNTMAP_readonly), host_addr)
    return MapResult(GNTST_okay, handle, frame << PAGE_SHIFT if flags & GNTMAP_device_map else 0)


def unmap_grant_ref(v: Vcpu, handle: int, host_addr: int, dev_bus_addr: int, new_addr: int = 0) -> int:
    """``unmap_common`` (GNTTABOP_unmap_grant_ref, and GNTTABOP_unmap_and_replace with ``new_addr``): undo the
    host mapping (if ``host_addr``) and/or the device mapping (if ``dev_bus_addr``) of ``handle``.

    Returns the status: GNTST_bad_handle (no such mapping, or its ref is past the granting table), GNTST_bad_dev_addr
    (``dev_bus_addr`` is not the granted frame's), GNTST_general_error (no L1 entry maps ``host_addr`` or
    ``new_addr``; the entry at ``host_addr`` does not map the frame, or with another RW flag than the mapping's).
    With ``new_addr`` the L1 entry of ``new_addr`` moves to ``host_addr`` and ``new_addr`` is left unmapped
    (``replace_grant_pv_mapping``). Then ``reduce_status_for_pin``: the last unmap of a ref releases its active
    entry and clears GTF_reading, the last writable one GTF_writing (in the entry's flags, or its status word).
    """
    ld = v.domain
    maptrack = ld.maptrack
    entry = maptrack[handle] if 0 <= handle < len(maptrack) else None
    if entry is None or not entry.flags & (GNTMAP_device_map | GNTMAP_host_map):
        return GNTST_bad_handle
    rd = ld.system.domains.get(entry.domid)
    act = rd.grant_active.get(entry.ref) if rd is not None else None
    if rd is None or act is None or entry.ref >= nr_grant_entries(rd):
        return GNTST_bad_handle
    machine = ld.system.machine
    readonly = bool(entry.flags & GNTMAP_readonly)
    frame = act.frame
    undo_device = bool(dev_bus_addr) and bool(entry.flags & GNTMAP_device_map)
    if undo_device and dev_bus_addr != frame << PAGE_SHIFT:
        return GNTST_bad_dev_addr
    undo_host = bool(host_addr) and bool(entry.flags & GNTMAP_host_map)
    if undo_host:
        l1e_maddr = map_guest_l1e(v, host_addr)
        if l1e_maddr is None:
            return GNTST_general_error
        pte = machine.mv_u64[l1e_maddr >> 3]
        if pte_mfn(pte) != frame or bool(pte & x86.PAGE_RW) == readonly:  # XSA-234: the flags must match too
            return GNTST_general_error
        replacement = 0
        if new_addr:
            new_maddr = map_guest_l1e(v, new_addr)
            if new_maddr is None:
                return GNTST_general_error
            replacement = machine.mv_u64[new_maddr >> 3]
            machine.mv_u64[new_maddr >> 3] = 0
        machine.mv_u64[l1e_maddr >> 3] = replacement
        note_pagetable_change(ld)
        entry.flags &= ~GNTMAP_host_map
        if readonly:
            act.host_read -= 1
        else:
            act.host_write -= 1
            machine.put_page_type(frame)
    if undo_device:
        entry.flags &= ~GNTMAP_device_map
        if readonly:
            act.dev_read -= 1
        else:
            act.dev_write -= 1
            machine.put_page_type(frame)
    if not entry.flags & (GNTMAP_device_map | GNTMAP_host_map):
        maptrack[handle] = None
    if undo_host or undo_device:
        clear = 0 if act.pinned else GTF_reading
        if not readonly and not act.writers:
            clear |= GTF_writing
        _update_status(rd, entry.ref, clear_bits=clear)
        if not act.pinned:
            del rd.grant_active[entry.ref]
    return GNTST_okay
