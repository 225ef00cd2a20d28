"""HYPERVISOR_grant_table_op and grant table version 2 (spec 6.1 numbers the hypercall; the behaviour is Xen's
``xen/common/grant_table.c``: ``do_grant_table_op``, ``gnttab_set_version``, ``gnttab_get_status_frames``,
``gnttab_get_version``, ``gnttab_grow_table``, ``gnttab_populate_status_frames``,
``gnttab_unpopulate_status_frames``, ``map_grant_ref`` / ``_set_status_v2``, ``unmap_common``, and
``xen/arch/x86/mm.c:share_xen_page_with_guest``). The in-guest test ``guest/tests/grant`` runs the same paths
and agrees with Xen 4.20 and 4.17.7; XTF's XSA-255 test checks the status-frame refcount."""

from __future__ import annotations

import struct

import pytest

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import GnttabOp, Hypercall, MmuextCmd, XenMem
from xenpy.abi.grant_table import (
    GNTMAP_host_map,
    GNTMAP_readonly,
    GNTST_bad_domain,
    GNTST_bad_gntref,
    GNTST_bad_virt_addr,
    GNTST_general_error,
    GNTST_okay,
    GNTST_permission_denied,
    GTF_accept_transfer,
    GTF_permit_access,
    GTF_reading,
    GTF_readonly,
    GTF_sub_page,
    GTF_transitive,
    GTF_writing,
)
from xenpy.abi.xen import DOMID_SELF
from xenpy.core.grant_table import grant_to_status_frames
from xenpy.core.memory import INVALID_M2P_ENTRY, PageType

from .conftest import ALL_PROFILES, HOLE_GVA, Guest

EINVAL, EFAULT, EBUSY, ERANGE, ESRCH, EPERM = (-XenErrno.EINVAL, -XenErrno.EFAULT, -XenErrno.EBUSY,
                                              -XenErrno.ERANGE, -XenErrno.ESRCH, -XenErrno.EPERM)
P, RW, ACCESSED = 1, 2, 0x20
V1_ENTRY = "<HHI"
V2_ENTRY = "<HHIQ"  # full_page: hdr.flags, hdr.domid, pad0, frame
MAP = "<QIIHhIQ"
UNMAP = "<QQIh2x"


def gnttab(g: Guest, cmd: int, uop: int, count: int = 1) -> int:
    return g.call(Hypercall.grant_table_op, cmd, uop, count)


def set_version(g: Guest, version: int) -> tuple[int, int]:
    """GNTTABOP_set_version: the result and the version written back."""
    op = g.put("gnttab_set_version", version=version)
    return gnttab(g, GnttabOp.GNTTABOP_set_version, op), g.get("gnttab_set_version", op).version


def get_version(g: Guest, count: int = 1) -> int:
    op = g.put("gnttab_get_version", dom=DOMID_SELF, pad=0, version=0x55)
    rc = gnttab(g, GnttabOp.GNTTABOP_get_version, op, count)
    return rc if rc else g.get("gnttab_get_version", op).version


def status_frames(g: Guest, nr_frames: int, dom: int = DOMID_SELF, frame_list: int | None = None) -> tuple[int, int,
                                                                                                           list[int]]:
    """GNTTABOP_get_status_frames: the result, the status and the frame list (``nr_frames`` entries)."""
    frames = g.dom.alloc_guest(8 * max(nr_frames, 1), 8) if frame_list is None else frame_list
    op = g.put("gnttab_get_status_frames", nr_frames=nr_frames, dom=dom, status=0x55, frame_list=frames)
    rc = gnttab(g, GnttabOp.GNTTABOP_get_status_frames, op)
    listed = [] if frame_list is not None else list(struct.unpack(f"<{nr_frames}Q", g.dom.read_guest(frames,
                                                                                                        8 * nr_frames)))
    return rc, g.get("gnttab_get_status_frames", op).status, listed


def setup_table(g: Guest, nr_frames: int) -> tuple[int, list[int]]:
    frames = g.dom.alloc_guest(8 * nr_frames, 8)
    op = g.put("gnttab_setup_table", dom=DOMID_SELF, nr_frames=nr_frames, status=0x55, frame_list=frames)
    assert gnttab(g, GnttabOp.GNTTABOP_setup_table, op) == 0
    return g.get("gnttab_setup_table", op).status, list(struct.unpack(f"<{nr_frames}Q",
                                                                      g.dom.read_guest(frames, 8 * nr_frames)))


def entry_maddr(g: Guest, ref: int, size: int) -> int:
    return (g.dom.grant_frames[0] << 12) + ref * size


def write_v1(g: Guest, ref: int, flags: int, domid: int, frame: int) -> None:
    g.hv.machine.write(entry_maddr(g, ref, 8), struct.pack(V1_ENTRY, flags, domid, frame))


def read_v1(g: Guest, ref: int) -> tuple[int, int, int]:
    return struct.unpack(V1_ENTRY, g.hv.machine.read(entry_maddr(g, ref, 8), 8))


def write_v2(g: Guest, ref: int, flags: int, domid: int, frame: int, pad0: int = 0) -> None:
    g.hv.machine.write(entry_maddr(g, ref, 16), struct.pack(V2_ENTRY, flags, domid, pad0, frame))


def read_v2(g: Guest, ref: int) -> tuple[int, int, int, int]:
    return struct.unpack(V2_ENTRY, g.hv.machine.read(entry_maddr(g, ref, 16), 16))


def status_word(g: Guest, ref: int) -> int:
    return g.hv.machine.read_u16((g.dom.grant_status_frames[ref // 2048] << 12) + (ref % 2048) * 2)


def map_grant(g: Guest, ref: int, flags: int, host: int) -> tuple[int, int]:
    op = g.dom.alloc_guest(32, 8)
    g.dom.write_guest(op, struct.pack(MAP, host, flags, ref, g.dom.domid, 0x55, 0, 0))
    assert gnttab(g, GnttabOp.GNTTABOP_map_grant_ref, op) == 0
    _, _, _, _, status, handle, _ = struct.unpack(MAP, g.dom.read_guest(op, 32))
    return status, handle


def unmap_grant(g: Guest, handle: int, host: int) -> int:
    op = g.dom.alloc_guest(24, 8)
    g.dom.write_guest(op, struct.pack(UNMAP, host, 0, handle, 0x55))
    assert gnttab(g, GnttabOp.GNTTABOP_unmap_grant_ref, op) == 0
    return struct.unpack(UNMAP, g.dom.read_guest(op, 24))[3]


def update_va_mapping(g: Guest, gva: int, pte: int) -> int:
    return g.call(Hypercall.update_va_mapping, gva, pte, 2)  # UVMF_INVLPG


def granted_page(g: Guest) -> tuple[int, int]:
    """A page of the guest to grant, and a host page to map it at (unmapped, as a guest would leave it)."""
    page, host = g.page(), g.page()
    assert update_va_mapping(g, host, 0) == 0
    return g.mfn_of(page), host


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_set_version_and_get_version(make_guest, profile):
    """gnttab_set_version: -EINVAL for a version other than 1 and 2, the version in force written back; the
    same version is 0; 1 -> 2 allocates ``grant_to_status_frames`` status frames. gnttab_get_version reports
    it, ignoring ``count`` (do_grant_table_op passes it no count)."""
    g = make_guest(profile)
    for version in (0, 3, 0xFFFF_FFFF):
        assert set_version(g, version) == (EINVAL, 1)
    assert set_version(g, 1) == (0, 1)
    assert get_version(g) == 1 and not g.dom.grant_status_frames
    assert set_version(g, 2) == (0, 2)
    assert get_version(g) == 2 and get_version(g, count=0) == 2
    assert len(g.dom.grant_status_frames) == grant_to_status_frames(1) == 1
    assert set_version(g, 2) == (0, 2)
    assert set_version(g, 1) == (0, 1)
    assert get_version(g) == 1 and not g.dom.grant_status_frames


def test_set_version_argument_faults(guest: Guest):
    """gnttab_set_version: -EFAULT if the argument cannot be read; if it cannot be written back the change is
    made and the result is -EFAULT (``__copy_to_guest`` after the switch)."""
    assert gnttab(guest, GnttabOp.GNTTABOP_set_version, HOLE_GVA) == EFAULT
    assert guest.dom.grant_version == 1
    op = guest.put("gnttab_set_version", version=2)
    assert guest.call(Hypercall.update_va_mapping, op & ~0xFFF, (guest.mfn_of(op) << 12) | P | ACCESSED, 2) == 0
    assert gnttab(guest, GnttabOp.GNTTABOP_set_version, op) == EFAULT
    assert guest.dom.grant_version == 2


def test_status_and_shared_frames_are_shared_xen_pages(guest: Guest):
    """share_xen_page_with_guest(SHARE_rw): the status and shared frames are the domain's, have no m2p entry, hold
    a writable type reference (so they can never be pinned as a page table: -EINVAL) and can be mapped by the
    guest read-only or writable; setup_table in version 2 grows the status frames with the table
    (gnttab_grow_table -> gnttab_populate_status_frames)."""
    assert set_version(guest, 2) == (0, 2)
    machine = guest.hv.machine
    status, frames = setup_table(guest, 9)
    assert status == GNTST_okay and frames == guest.dom.grant_frames
    assert len(guest.dom.grant_status_frames) == grant_to_status_frames(9) == 2
    ops = guest.dom.alloc_guest(24, 8)
    for mfn in [*guest.dom.grant_frames, *guest.dom.grant_status_frames]:
        assert machine.owner_of(mfn) == guest.dom.domid and machine.m2p[mfn] == INVALID_M2P_ENTRY
        assert (machine.page_type(mfn), machine.type_count(mfn)) == (PageType.writable, 1)
        guest.dom.write_guest(ops, struct.pack("<I4xQQ", MmuextCmd.MMUEXT_PIN_L1_TABLE, mfn, 0))
        assert guest.call(Hypercall.mmuext_op, ops, 1, 0, DOMID_SELF) == EINVAL
    va = guest.page()
    sframe = guest.dom.grant_status_frames[1]
    assert update_va_mapping(guest, va, (sframe << 12) | P | ACCESSED) == 0
    assert update_va_mapping(guest, va, (sframe << 12) | P | RW | ACCESSED) == 0
    assert machine.type_count(sframe) == 2
    assert update_va_mapping(guest, va, 0) == 0 and machine.type_count(sframe) == 1


def test_get_status_frames(make_guest):
    """gnttab_get_status_frames: -EINVAL for count != 1, -EFAULT for an unreadable struct or a bad frame_list
    handle; status GNTST_general_error for more frames than the table has (any in version 1: real Xen returns 0
    then, not -EINVAL), GNTST_bad_domain / GNTST_permission_denied for an unknown / another domain,
    GNTST_bad_virt_addr when the list cannot be written; the frames are the status frames' mfns."""
    g = make_guest()
    other = make_guest()
    assert status_frames(g, 1)[:2] == (0, GNTST_general_error)
    assert status_frames(g, 0)[:2] == (0, GNTST_okay)
    assert set_version(g, 2) == (0, 2)
    assert status_frames(g, 1) == (0, GNTST_okay, g.dom.grant_status_frames)
    assert status_frames(g, 2)[:2] == (0, GNTST_general_error)
    assert status_frames(g, 1, dom=0x7000)[:2] == (0, GNTST_bad_domain)
    assert status_frames(g, 1, dom=other.dom.domid)[:2] == (0, GNTST_permission_denied)
    assert status_frames(g, 1, frame_list=HOLE_GVA)[0] == EFAULT
    edge, hole = g.page(), g.page()
    assert update_va_mapping(g, hole, 0) == 0
    assert status_frames(g, 1, frame_list=edge + 4096 - 4)[:2] == (0, GNTST_bad_virt_addr)
    op = g.put("gnttab_get_status_frames", nr_frames=1, dom=DOMID_SELF, status=0, frame_list=edge)
    assert gnttab(g, GnttabOp.GNTTABOP_get_status_frames, op, 2) == EINVAL
    assert gnttab(g, GnttabOp.GNTTABOP_get_status_frames, HOLE_GVA) == EFAULT


def test_version_change_converts_the_reserved_entries(guest: Guest):
    """gnttab_set_version keeps the first GNTTAB_NR_RESERVED_ENTRIES (8) entries and clears the rest of the
    shared frames. 1 -> 2: flags without GTF_reading/GTF_writing in the header, those two in the status word,
    the frame in full_page.frame. 2 -> 1: flags | status word back, and a reserved entry that is not
    GTF_permit_access becomes zero."""
    d = guest.dom.domid
    assert setup_table(guest, 1)[0] == GNTST_okay
    write_v1(guest, 2, GTF_permit_access | GTF_readonly | GTF_reading, 0x1234, 0xABCDE)
    write_v1(guest, 3, GTF_accept_transfer, 0x4321, 0x777)
    write_v1(guest, 20, GTF_permit_access, d, 0x999)
    assert set_version(guest, 2) == (0, 2)
    assert read_v2(guest, 2) == (GTF_permit_access | GTF_readonly, 0x1234, 0, 0xABCDE)
    assert status_word(guest, 2) == GTF_reading
    assert read_v2(guest, 3) == (GTF_accept_transfer, 0x4321, 0, 0x777)
    assert read_v2(guest, 10) == (0, 0, 0, 0)  # v1 refs 20 and 21 were here
    write_v2(guest, 8, GTF_permit_access, d, 0x555)
    assert set_version(guest, 1) == (0, 1)
    assert read_v1(guest, 2) == (GTF_permit_access | GTF_readonly | GTF_reading, 0x1234, 0xABCDE)
    assert read_v1(guest, 3) == (0, 0, 0)
    assert read_v1(guest, 16) == (0, 0, 0)  # v2 ref 8 was here


def test_unrepresentable_reserved_entries_are_erange(guest: Guest):
    """gnttab_set_version 2 -> 1: -ERANGE for a reserved GTF_permit_access entry whose frame needs more than 32
    bits, or a reserved GTF_transitive one; nothing changes. Past the reserved entries anything goes."""
    assert set_version(guest, 2) == (0, 2)
    write_v2(guest, 5, GTF_permit_access, guest.dom.domid, 1 << 32)
    write_v2(guest, 9, GTF_permit_access, guest.dom.domid, 1 << 40)
    assert set_version(guest, 1) == (ERANGE, 2)
    assert read_v2(guest, 5)[3] == 1 << 32 and len(guest.dom.grant_status_frames) == 1
    write_v2(guest, 5, GTF_transitive, guest.dom.domid, 0)
    assert set_version(guest, 1) == (ERANGE, 2)
    write_v2(guest, 5, GTF_permit_access, guest.dom.domid, 0xFFFF_FFFF)
    assert set_version(guest, 1) == (0, 1)
    assert read_v1(guest, 5) == (GTF_permit_access, guest.dom.domid, 0xFFFF_FFFF)


def test_map_of_version_2_grants(guest: Guest):
    """map_grant_ref of a version-2 table: 256 entries a frame (ref 256 of one frame is GNTST_bad_gntref); the
    frame is full_page.frame; GTF_sub_page and GTF_transitive grants cannot be mapped (GNTST_general_error);
    _set_status_v2 puts GTF_reading (| GTF_writing) in the status word and leaves the header's flags alone;
    the last unmap clears the status word (reduce_status_for_pin)."""
    d = guest.dom.domid
    assert set_version(guest, 2) == (0, 2)
    frame, host = granted_page(guest)
    write_v2(guest, 8, GTF_permit_access, d, frame)
    write_v2(guest, 9, GTF_permit_access | GTF_sub_page, d, frame)
    write_v2(guest, 10, GTF_transitive, d, 8)
    write_v2(guest, 11, GTF_permit_access | GTF_readonly, d, frame)
    assert map_grant(guest, 256, GNTMAP_host_map, host)[0] == GNTST_bad_gntref
    assert map_grant(guest, 9, GNTMAP_host_map, host)[0] == GNTST_general_error
    assert map_grant(guest, 10, GNTMAP_host_map, host)[0] == GNTST_general_error
    assert map_grant(guest, 11, GNTMAP_host_map, host)[0] == GNTST_general_error  # read-only grant
    status, handle = map_grant(guest, 8, GNTMAP_host_map, host)
    assert status == GNTST_okay and guest.mfn_of(host) == frame
    assert status_word(guest, 8) == GTF_reading | GTF_writing and read_v2(guest, 8)[0] == GTF_permit_access
    assert unmap_grant(guest, handle, host) == GNTST_okay
    assert status_word(guest, 8) == 0 and not guest.dom.grant_active
    status, handle = map_grant(guest, 11, GNTMAP_host_map | GNTMAP_readonly, host)
    assert status == GNTST_okay and status_word(guest, 11) == GTF_reading
    assert unmap_grant(guest, handle, host) == GNTST_okay and status_word(guest, 11) == 0


def test_set_version_is_ebusy_while_a_grant_is_mapped(guest: Guest):
    """gnttab_set_version: -EBUSY while an entry at or past GNTTAB_NR_RESERVED_ENTRIES is pinned; a pinned
    reserved entry does not stop it, and keeps its active entry across the change (its GTF_reading/GTF_writing
    move to the status word, and its unmap then clears them there)."""
    d = guest.dom.domid
    frame, host = granted_page(guest)
    _, host3 = granted_page(guest)
    assert setup_table(guest, 1)[0] == GNTST_okay
    write_v1(guest, 8, GTF_permit_access, d, frame)
    write_v1(guest, 3, GTF_permit_access, d, frame)
    status, handle = map_grant(guest, 8, GNTMAP_host_map, host)
    assert status == GNTST_okay
    assert set_version(guest, 2) == (EBUSY, 1) and not guest.dom.grant_status_frames
    assert unmap_grant(guest, handle, host) == GNTST_okay
    status, handle3 = map_grant(guest, 3, GNTMAP_host_map, host3)
    assert status == GNTST_okay
    assert set_version(guest, 2) == (0, 2)
    assert status_word(guest, 3) == GTF_reading | GTF_writing and read_v2(guest, 3)[0] == GTF_permit_access
    assert unmap_grant(guest, handle3, host3) == GNTST_okay
    assert status_word(guest, 3) == 0 and not guest.dom.grant_active


@pytest.mark.parametrize("pte_flags", [P | ACCESSED, P | RW | ACCESSED])
def test_set_version_1_is_ebusy_while_a_status_frame_is_mapped(guest: Guest, pte_flags: int):
    """XSA-255 (gnttab_unpopulate_status_frames): 2 -> 1 is -EBUSY while the guest maps a status frame, read-only
    as well as writable, and nothing changes; once unmapped the switch frees the status frames."""
    assert set_version(guest, 2) == (0, 2)
    sframe = guest.dom.grant_status_frames[0]
    va = guest.page()
    assert update_va_mapping(guest, va, (sframe << 12) | pte_flags) == 0
    assert set_version(guest, 1) == (EBUSY, 2)
    assert guest.dom.grant_status_frames == [sframe] and guest.hv.machine.owner_of(sframe) == guest.dom.domid
    assert update_va_mapping(guest, va, 0) == 0
    assert set_version(guest, 1) == (0, 1)
    assert not guest.dom.grant_status_frames and guest.hv.machine.owner_of(sframe) is None


def test_status_frames_are_not_given_back_by_decrease_reservation(guest: Guest):
    """A status frame is a Xen-heap page, not one of the domain's reservation: XENMEM_decrease_reservation does
    not take it (no extent done)."""
    assert set_version(guest, 2) == (0, 2)
    extents = guest.put_u64(guest.dom.grant_status_frames[0])
    reservation = guest.dom.alloc_guest(32, 8)
    guest.dom.write_guest(reservation, struct.pack("<QQIIH6x", extents, 1, 0, 0, DOMID_SELF))
    assert guest.call(Hypercall.memory_op, XenMem.XENMEM_decrease_reservation, reservation) == 0


def test_checks_before_any_command(guest: Guest):
    """do_grant_table_op: -EINVAL for a count that is negative as an int, and for bits above the 12-bit command
    (GNTTABOP_CMD_MASK) of any command but GNTTABOP_cache_flush; get_version takes any other count."""
    op = guest.put("gnttab_get_version", dom=DOMID_SELF, pad=0, version=0)
    assert gnttab(guest, GnttabOp.GNTTABOP_get_version, op, 0x8000_0000) == EINVAL
    assert gnttab(guest, GnttabOp.GNTTABOP_get_version | 0x1000, op) == EINVAL
    assert gnttab(guest, GnttabOp.GNTTABOP_get_version, op, 7) == 0
    assert gnttab(guest, GnttabOp.GNTTABOP_map_grant_ref, HOLE_GVA, 1) == EFAULT
    assert get_version(guest, count=0x7FFF_FFFF) == 1


def test_get_version_of_another_domain(make_guest):
    """gnttab_get_version: -ESRCH for an unknown domain, -EPERM (XSM) for another one of a domU."""
    g, other = make_guest(), make_guest()
    op = g.put("gnttab_get_version", dom=0x7000, pad=0, version=0)
    assert gnttab(g, GnttabOp.GNTTABOP_get_version, op) == ESRCH
    op = g.put("gnttab_get_version", dom=other.dom.domid, pad=0, version=0)
    assert gnttab(g, GnttabOp.GNTTABOP_get_version, op) == EPERM
