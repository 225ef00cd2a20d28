"""Grant mappings of the version-1 grant table: Xen's ``map_grant_ref`` and ``unmap_common`` for PV domains
(``xen/common/grant_table.c``, ``xen/arch/x86/pv/grant_table.c``).

A domain's grant table is a list of frames it shares with Xen (``Domain.grant_frames``), read as 8-byte
``grant_entry_v1 {u16 flags; domid_t domid; u32 frame}`` entries, 512 to a frame. A mapping of another domain's
(or its own) grant goes through three records, as in Xen:

* the granting domain's *active entry* of the ref (:class:`ActiveGrant`): the mapping domain, the frame, and
  pin counts of host/device, read/write mappings; while pinned, the shared entry carries GTF_reading (and
  GTF_writing while there are writable mappings);
* the mapping domain's *maptrack* entry (:class:`MaptrackEntry`), whose index is the handle returned;
* references on the frame: each writable mapping (host or device) holds one ``writable`` type reference, so a
  frame mapped through a grant can no more become a page table than one mapped writable by its owner.

A host mapping (GNTMAP_host_map, without GNTMAP_contains_pte) replaces the L1 entry of ``host_addr`` in the
mapping vCPU's current page tables; the entry it replaces gives up its reference. Not modelled:
GNTMAP_contains_pte and GNTMAP_application_map (GNTST_general_error), version 2 tables, transitive and
sub-page grants, grant copies and transfers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from xenpy.abi import x86
from xenpy.core.memory import PAGE_SHIFT, PageType
from xenpy.core.mm import map_guest_l1e, note_pagetable_change, pte_mfn, put_page_from_l1e
from xenpy.core.pagetable import adjust_guest_l1e

if TYPE_CHECKING:
    from xenpy.core.domain import Domain, Vcpu

# Grant status codes (``GNTST_*``).
GNTST_okay = 0
GNTST_general_error = -1
GNTST_bad_domain = -2
GNTST_bad_gntref = -3
GNTST_bad_handle = -4
GNTST_bad_virt_addr = -5
GNTST_bad_dev_addr = -6
GNTST_no_device_space = -7
GNTST_permission_denied = -8

# ``GNTMAP_*`` flags of map/unmap.
GNTMAP_device_map = 1 << 0
GNTMAP_host_map = 1 << 1
GNTMAP_readonly = 1 << 2
GNTMAP_application_map = 1 << 3
GNTMAP_contains_pte = 1 << 4

# ``GTF_*`` flags of a shared entry.
GTF_permit_access = 1
GTF_type_mask = 3
GTF_readonly = 1 << 2
GTF_reading = 1 << 3
GTF_writing = 1 << 4

#: Entries of a version-1 grant frame.
ENTRIES_PER_FRAME_V1 = 4096 // 8
#: The maptrack entries a domain may use (Xen's default ``max_maptrack_frames`` of 1024, 8-byte entries).
MAX_MAPTRACK = 1024 * 4096 // 8

#: PTE flags of a host mapping (``grant_to_pte_flags``): present, accessed, dirty, no-execute, Xen's grant bit
#: (62); RW unless read-only. The entry is then adjusted as a kernel mapping (``adjust_guest_l1e``).
_PTE_FLAGS = x86.PAGE_PRESENT | x86.PAGE_ACCESSED | x86.PAGE_DIRTY | x86.PAGE_NX | x86.PAGE_GNTTAB
_U64 = (1 << 64) - 1


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


def nr_grant_entries(d: Domain) -> int:
    """Entries of ``d``'s (version 1) table."""
    return len(d.grant_frames) * ENTRIES_PER_FRAME_V1


def _entry_maddr(d: Domain, ref: int) -> int:
    return (d.grant_frames[ref // ENTRIES_PER_FRAME_V1] << PAGE_SHIFT) + (ref % ENTRIES_PER_FRAME_V1) * 8


def _read_entry(d: Domain, ref: int) -> tuple[int, int, int]:
    machine = d.system.machine
    raw = machine.read(_entry_maddr(d, ref), 8)
    return int.from_bytes(raw[0:2], "little"), int.from_bytes(raw[2:4], "little"), int.from_bytes(raw[4:8], "little")


def _set_entry_flags(d: Domain, ref: int, set_bits: int, clear_bits: int = 0) -> None:
    machine = d.system.machine
    maddr = _entry_maddr(d, ref)
    flags = machine.read_u16(maddr)
    machine.write_u16(maddr, (flags | set_bits) & ~clear_bits & 0xFFFF)


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
    GNTST_no_device_space (no maptrack entry), GNTST_bad_gntref (``ref`` past the table), GNTST_general_error
    (pinned by another domain; the entry does not permit access to this domain, or is read-only and a writable
    mapping is asked; the frame is not ``rd``'s or cannot be typed writable; no L1 entry maps ``host_addr``;
    a PTE or application mapping was asked). On failure nothing is left changed.
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

    if ref >= nr_grant_entries(rd):
        return fail(GNTST_bad_gntref)
    readonly = bool(flags & GNTMAP_readonly)
    act = rd.grant_active.get(ref)
    if act is not None and act.pinned and act.domid != ld.domid:
        return fail(GNTST_general_error)
    sflags, sdomid, sframe = _read_entry(rd, ref)
    fresh = act is None or not act.pinned
    if fresh or (not readonly and not act.writers):
        if fresh and ((sflags & GTF_type_mask) != GTF_permit_access or sdomid != ld.domid):
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
    _set_entry_flags(rd, ref, GTF_reading | (0 if readonly else GTF_writing))
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

    Returns the status: GNTST_bad_handle (no such mapping), GNTST_bad_dev_addr (``dev_bus_addr`` is not the
    granted frame's), GNTST_general_error (no L1 entry maps ``host_addr`` or ``new_addr``; the entry at
    ``host_addr`` does not map the frame, or with another RW flag than the mapping's).
    With ``new_addr`` the L1 entry of ``new_addr`` moves to ``host_addr`` and ``new_addr`` is left unmapped
    (``replace_grant_pv_mapping``). The last unmap of a ref releases its active entry and clears GTF_reading and
    GTF_writing in the shared entry (GTF_writing already when the last writable mapping goes).
    """
    ld = v.domain
    maptrack = ld.maptrack
    entry = maptrack[handle] if 0 <= handle < len(maptrack) else None
    if entry is None or not entry.flags & (GNTMAP_device_map | GNTMAP_host_map):
        return GNTST_bad_handle
    rd = ld.system.domains.get(entry.domid)
    act = rd.grant_active.get(entry.ref) if rd is not None else None
    if rd is None or act is None:
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
    if not act.writers:
        _set_entry_flags(rd, entry.ref, 0, GTF_writing)
    if not act.pinned:
        _set_entry_flags(rd, entry.ref, 0, GTF_reading)
        del rd.grant_active[entry.ref]
    return GNTST_okay
