"""Tests for xenpy.core.pagetable: the PV64 walk, Xen's guest-access checks, copy helpers and the builder."""

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenpy.abi.errno import XenErrno
from xenpy.abi.x86 import PAGE_GLOBAL, PAGE_GUEST_KERNEL
from xenpy.core.memory import PAGE_SIZE, DomainMemory, MachineMemory, PageType
from xenpy.core.pagetable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_USER,
    HYPERVISOR_VIRT_END,
    HYPERVISOR_VIRT_START,
    L2_PROT,
    PTE_PFN_MASK,
    GuestFault,
    PageTableBuilder,
    access_ok,
    array_access_ok,
    clear_guest,
    copy_from_guest,
    copy_to_guest,
    copy_to_guest_or_fault,
    guest_handle_okay,
    gva_ok,
    is_canonical,
    translate,
)

LOW_GVA = 0x0040_0000  # 16 pages mapped from pfn 0
KERNEL_GVA = 0xFFFF_FFFF_8000_0000  # 4 pages mapped from pfn 16
TABLE_PFNS = range(100, 128)


@dataclass
class Guest:
    machine: MachineMemory
    domain: DomainMemory
    other: DomainMemory
    builder: PageTableBuilder

    @property
    def cr3(self) -> int:
        return self.builder.cr3

    def translate(self, gva: int, *, write: bool = False) -> int:
        return translate(self.machine, self.cr3, gva, write=write, domid=self.domain.domid)

    def copy_from(self, gva: int, nbytes: int) -> bytes:
        return copy_from_guest(self.machine, self.cr3, gva, nbytes, domid=self.domain.domid)

    def copy_to(self, gva: int, data: bytes) -> int:
        return copy_to_guest(self.machine, self.cr3, gva, data, domid=self.domain.domid)

    def pfn_bytes(self, pfn: int, offset: int, nbytes: int) -> bytes:
        return self.domain.read_pfn(pfn, offset, nbytes)


@pytest.fixture
def guest() -> Guest:
    machine = MachineMemory(512, seed=1)
    domain = DomainMemory(machine, 1, 128)
    other = DomainMemory(machine, 2, 16)
    builder = PageTableBuilder(domain, TABLE_PFNS)
    builder.map_range(LOW_GVA, 0, 16)
    builder.map_range(KERNEL_GVA, 16, 4)
    return Guest(machine, domain, other, builder)


def fault_of(guest: Guest, gva: int, *, write: bool = False) -> GuestFault:
    with pytest.raises(GuestFault) as excinfo:
        guest.translate(gva, write=write)
    return excinfo.value


# ------------------------------------------------------------------------------------------ translate


def test_translate_mapped_pages_through_the_p2m(guest):
    for i in range(16):
        gva = LOW_GVA + i * PAGE_SIZE + 0x123
        assert guest.translate(gva) == (guest.domain.mfn_of(i) << 12) | 0x123
        assert guest.translate(gva, write=True) == (guest.domain.mfn_of(i) << 12) | 0x123
    assert guest.translate(KERNEL_GVA + 3 * PAGE_SIZE + 7) == (guest.domain.mfn_of(19) << 12) | 7


@pytest.mark.parametrize(
    ("gva", "reason", "level"),
    [
        (LOW_GVA + 16 * PAGE_SIZE, "L1 entry not present", 1),  # same L1 table, unmapped slot
        (LOW_GVA + (1 << 21), "L2 entry not present", 2),  # no L1 table there
        (1 << 30, "L3 entry not present", 3),  # no L2 table there
        (1 << 39, "L4 entry not present", 4),  # no L3 table there
        (HYPERVISOR_VIRT_END, "L4 entry not present", 4),  # first guest-usable upper-half address
    ],
)
def test_translate_unmapped_addresses_fault(guest, gva, reason, level):
    fault = fault_of(guest, gva)
    assert fault.reason == reason
    assert fault.level == level
    assert fault.gva == gva and fault.write is False
    assert fault.errno == XenErrno.EFAULT


@pytest.mark.parametrize("gva", [1 << 47, 0x8000_0000_1000, 0xFFFF_7FFF_FFFF_FFFF, 0x1234_0000_0000_0000])
def test_translate_non_canonical_faults(guest, gva):
    fault = fault_of(guest, gva, write=True)
    assert fault.reason == "non-canonical"
    assert fault.write is True and fault.level is None


@pytest.mark.parametrize("gva", [HYPERVISOR_VIRT_START, 0xFFFF_8040_0000_0000, HYPERVISOR_VIRT_END - 1])
def test_translate_hypervisor_hole_faults(guest, gva):
    """Xen's reserved range is never reachable from a guest pointer (spec 6.9)."""
    # Even a guest L4 entry for that slot is ignored.
    slot_maddr = (guest.builder.l4_mfn << 12) | (((gva >> 39) & 511) << 3)
    guest.machine.write_u64(slot_maddr, guest.machine.read_u64(guest.builder.entry_maddr(KERNEL_GVA, 4)))
    assert fault_of(guest, gva).reason == "hypervisor hole"


def test_read_only_l1_mapping_faults_only_on_write(guest):
    gva = LOW_GVA + 2 * PAGE_SIZE
    guest.builder.set_writable(gva, False)
    assert guest.translate(gva + 8) == (guest.domain.mfn_of(2) << 12) | 8
    fault = fault_of(guest, gva + 8, write=True)
    assert fault.reason == "read-only mapping at L1" and fault.write is True
    guest.builder.set_writable(gva, True)
    assert guest.translate(gva, write=True) == guest.domain.mfn_of(2) << 12


@pytest.mark.parametrize("level", [4, 3, 2])
def test_read_only_upper_level_entry_blocks_writes(guest, level):
    """Xen runs with CR0.WP=1: RW must be set at every level for a write."""
    entry_maddr = guest.builder.entry_maddr(LOW_GVA, level)
    guest.machine.write_u64(entry_maddr, guest.machine.read_u64(entry_maddr) & ~_PAGE_RW)
    assert guest.translate(LOW_GVA) == guest.domain.mfn_of(0) << 12
    assert fault_of(guest, LOW_GVA, write=True).reason == f"read-only mapping at L{level}"


@pytest.mark.parametrize(("level", "reason"), [(3, "superpage at L3"), (2, "superpage at L2")])
def test_superpage_entries_fault(guest, level, reason):
    """PV guests here use 4 KiB pages only: a PSE entry is a fault, never a 2 MiB/1 GiB mapping."""
    entry_maddr = guest.builder.entry_maddr(LOW_GVA, level)
    guest.machine.write_u64(entry_maddr, guest.machine.read_u64(entry_maddr) | _PAGE_PSE)
    assert fault_of(guest, LOW_GVA).reason == reason


def test_pse_bit_in_l4_entry_is_reserved(guest):
    entry_maddr = guest.builder.entry_maddr(LOW_GVA, 4)
    guest.machine.write_u64(entry_maddr, guest.machine.read_u64(entry_maddr) | _PAGE_PSE)
    assert fault_of(guest, LOW_GVA).reason == "reserved bit set in L4 entry"


def test_bit7_of_an_l1_entry_is_pat_not_a_fault(guest):
    entry_maddr = guest.builder.entry_maddr(LOW_GVA, 1)
    guest.machine.write_u64(entry_maddr, guest.machine.read_u64(entry_maddr) | _PAGE_PSE)
    assert guest.translate(LOW_GVA) == guest.domain.mfn_of(0) << 12


def test_l1_entry_pointing_at_another_domains_frame_faults(guest):
    entry_maddr = guest.builder.entry_maddr(LOW_GVA, 1)
    foreign_mfn = guest.other.mfn_of(0)
    guest.machine.write_u64(entry_maddr, (foreign_mfn << 12) | _PAGE_PRESENT | _PAGE_RW)
    fault = fault_of(guest, LOW_GVA)
    assert fault.reason == f"frame mfn {foreign_mfn:#x} not owned by domain"
    assert fault.level == 0


def test_table_in_another_domains_frame_faults(guest):
    entry_maddr = guest.builder.entry_maddr(LOW_GVA, 2)
    foreign_mfn = guest.other.mfn_of(1)
    guest.machine.write_u64(entry_maddr, (foreign_mfn << 12) | L2_PROT)
    fault = fault_of(guest, LOW_GVA)
    assert fault.reason == f"L1 table mfn {foreign_mfn:#x} not owned by domain"
    assert fault.level == 1


def test_cr3_of_another_domain_or_outside_memory_faults(guest):
    with pytest.raises(GuestFault, match="L4 table mfn 0x0 not owned"):
        translate(guest.machine, 0, LOW_GVA, write=False, domid=1)
    # Our own tables walked on behalf of another domain are refused too.
    with pytest.raises(GuestFault, match="not owned"):
        translate(guest.machine, guest.cr3, LOW_GVA, write=False, domid=2)


def test_frame_outside_machine_memory_faults(guest):
    entry_maddr = guest.builder.entry_maddr(LOW_GVA, 1)
    guest.machine.write_u64(entry_maddr, (512 << 12) | _PAGE_PRESENT)
    assert fault_of(guest, LOW_GVA).reason == "frame mfn 0x200 outside machine memory"
    guest.machine.write_u64(entry_maddr, PTE_PFN_MASK | _PAGE_PRESENT)
    assert "outside machine memory" in fault_of(guest, LOW_GVA).reason


def test_translate_sets_accessed_and_dirty_like_the_hardware(guest):
    l1_maddr = guest.builder.entry_maddr(LOW_GVA, 1)
    l2_maddr = guest.builder.entry_maddr(LOW_GVA, 2)
    entry = guest.machine.read_u64(l1_maddr)
    assert entry & _PAGE_ACCESSED and not entry & _PAGE_DIRTY
    guest.machine.write_u64(l1_maddr, entry & ~_PAGE_ACCESSED)
    guest.machine.write_u64(l2_maddr, guest.machine.read_u64(l2_maddr) & ~_PAGE_ACCESSED)
    guest.translate(LOW_GVA)
    assert guest.machine.read_u64(l1_maddr) == entry
    assert guest.machine.read_u64(l2_maddr) & _PAGE_ACCESSED
    guest.translate(LOW_GVA, write=True)
    assert guest.machine.read_u64(l1_maddr) == entry | _PAGE_DIRTY
    # A faulting write sets nothing.
    guest.builder.set_writable(LOW_GVA + PAGE_SIZE, False)
    ro_maddr = guest.builder.entry_maddr(LOW_GVA + PAGE_SIZE, 1)
    before = guest.machine.read_u64(ro_maddr)
    fault_of(guest, LOW_GVA + PAGE_SIZE, write=True)
    assert guest.machine.read_u64(ro_maddr) == before


def test_page_table_changes_are_seen_immediately(guest):
    guest.translate(LOW_GVA + 5 * PAGE_SIZE)
    assert guest.builder.unmap(LOW_GVA + 5 * PAGE_SIZE)
    assert fault_of(guest, LOW_GVA + 5 * PAGE_SIZE).reason == "L1 entry not present"
    assert not guest.builder.unmap(LOW_GVA + 5 * PAGE_SIZE)
    assert not guest.builder.unmap(1 << 40)  # no tables at all there


def test_is_canonical():
    assert is_canonical(0) and is_canonical((1 << 47) - 1)
    assert not is_canonical(1 << 47) and not is_canonical(0xFFFF_7FFF_FFFF_FFFF)
    assert is_canonical(0xFFFF_8000_0000_0000) and is_canonical(0xFFFF_FFFF_FFFF_FFFF)
    assert is_canonical(-1)  # taken modulo 2**64


# ------------------------------------------------------------------------------------------ range checks


@pytest.mark.parametrize(
    ("gva", "ok"),
    [
        (0, True),
        ((1 << 47) - 1, True),
        (1 << 47, False),
        (0x0000_FFFF_FFFF_FFFF, False),
        (HYPERVISOR_VIRT_START - 1, False),
        (HYPERVISOR_VIRT_START, False),
        (0xFFFF_87FF_FFFF_FFFF, False),
        (0xFFFF_8800_0000_0000, True),
        (0xFFFF_FFFF_FFFF_FFFF, True),
    ],
)
def test_guest_handle_okay_checks_the_start_address(gva, ok):
    """PV64 ``__addr_ok``: start < 2**47 or >= 0xFFFF880000000000 (spec 1.2 cmd 5)."""
    assert gva_ok(gva) is ok
    assert access_ok(gva, 8) is ok
    assert guest_handle_okay(gva, 1) is ok
    assert guest_handle_okay(gva, 1, 48) is ok


def test_guest_handle_okay_accepts_ranges_that_run_off_or_wrap():
    """Only the start is checked: a range crossing 2**47 or wrapping past 2**64 is accepted (spec 1.2 cmd 5).

    The copy itself then faults where the mapping ends.
    """
    assert guest_handle_okay((1 << 47) - 1, 4096)
    assert guest_handle_okay((1 << 47) - 8, 1 << 40)
    assert guest_handle_okay(0xFFFF_FFFF_FFFF_FFF0, 32)
    assert guest_handle_okay(0xFFFF_8800_0000_0000, 1 << 60)
    assert not guest_handle_okay(0xFFFF_87FF_FFFF_FFF0, 1)


def test_array_access_ok_rejects_overflowing_counts():
    """``array_access_ok``: ``count < ~0UL / size`` (unsigned), so ``count * size`` cannot overflow."""
    u64 = (1 << 64) - 1
    assert guest_handle_okay(0x1000, 0)
    assert guest_handle_okay(0x1000, u64 - 1)
    assert not guest_handle_okay(0x1000, u64)  # ~0UL / 1 == ~0UL, strict <
    assert array_access_ok(0x1000, u64 // 8 - 1, 8)
    assert not array_access_ok(0x1000, u64 // 8, 8)
    assert not array_access_ok(0x1000, -1, 48)  # a negative count is a huge unsigned one
    with pytest.raises(ValueError):
        array_access_ok(0x1000, 1, 0)


# ------------------------------------------------------------------------------------------ copies


def test_copy_round_trip_across_pages(guest):
    data = bytes(range(256)) * 40  # 10240 bytes: three pages touched
    gva = LOW_GVA + PAGE_SIZE - 100
    assert guest.copy_to(gva, data) == 0
    assert guest.copy_from(gva, len(data)) == data
    # The bytes landed in the scattered frames of pfns 0..3.
    assert guest.pfn_bytes(0, PAGE_SIZE - 100, 100) == data[:100]
    assert guest.pfn_bytes(1, 0, PAGE_SIZE) == data[100 : 100 + PAGE_SIZE]
    assert guest.pfn_bytes(3, 0, 48) == data[100 + 2 * PAGE_SIZE : 148 + 2 * PAGE_SIZE]


def test_copy_accepts_any_buffer(guest):
    assert guest.copy_to(LOW_GVA, bytearray(b"abc")) == 0
    assert guest.copy_to(LOW_GVA + 3, memoryview(b"def")) == 0
    assert guest.copy_from(LOW_GVA, 6) == b"abcdef"


def test_copy_with_unmapped_second_page(guest):
    """copy_from faults, copy_to copies up to the fault and returns the bytes not copied (spec 1.2)."""
    boundary = LOW_GVA + 16 * PAGE_SIZE  # pfn 15 mapped, the next page not
    gva = boundary - 20
    with pytest.raises(GuestFault) as excinfo:
        guest.copy_from(gva, 48)
    assert excinfo.value.gva == boundary
    assert excinfo.value.reason == "L1 entry not present"

    data = bytes(range(1, 49))
    assert guest.copy_to(gva, data) == 28
    assert guest.pfn_bytes(15, PAGE_SIZE - 20, 20) == data[:20]
    assert guest.copy_from(gva, 20) == data[:20]

    with pytest.raises(GuestFault) as excinfo:
        copy_to_guest_or_fault(guest.machine, guest.cr3, gva, data, domid=1)
    assert excinfo.value.gva == boundary and excinfo.value.write is True


def test_copy_to_read_only_page_writes_nothing(guest):
    guest.builder.set_writable(LOW_GVA + PAGE_SIZE, False)
    assert guest.copy_to(LOW_GVA + PAGE_SIZE + 8, b"x" * 48) == 48
    assert guest.pfn_bytes(1, 8, 48) == bytes(48)
    # Partial: the writable first page is written, the read-only second is not.
    assert guest.copy_to(LOW_GVA + PAGE_SIZE - 8, b"y" * 16) == 8
    assert guest.pfn_bytes(0, PAGE_SIZE - 8, 8) == b"y" * 8
    # Reads are fine.
    assert guest.copy_from(LOW_GVA + PAGE_SIZE - 8, 16) == b"y" * 8 + bytes(8)


def test_copy_stops_at_the_non_canonical_boundary(guest):
    top_page = (1 << 47) - PAGE_SIZE
    guest.builder.map_page(top_page, 40)
    assert guest.copy_to((1 << 47) - 8, b"z" * 16) == 8
    assert guest.pfn_bytes(40, PAGE_SIZE - 8, 8) == b"z" * 8
    with pytest.raises(GuestFault) as excinfo:
        guest.copy_from((1 << 47) - 8, 16)
    assert excinfo.value.gva == 1 << 47 and excinfo.value.reason == "non-canonical"


@pytest.mark.parametrize(
    ("gva", "reason"),
    [(HYPERVISOR_VIRT_START + 0x1000, "hypervisor hole"), (1 << 50, "non-canonical")],
)
def test_copy_from_a_bad_start_address(guest, gva, reason):
    """A start that fails ``access_ok`` copies nothing (spec 1.2 cmd 5)."""
    for nbytes in (8, 3 * PAGE_SIZE):
        with pytest.raises(GuestFault) as excinfo:
            guest.copy_from(gva, nbytes)
        assert excinfo.value.reason == reason and excinfo.value.gva == gva
        assert guest.copy_to(gva, bytes(nbytes)) == nbytes


def test_zero_length_copies_never_fault(guest):
    for gva in (0, 1 << 47, HYPERVISOR_VIRT_START, LOW_GVA):
        assert guest.copy_from(gva, 0) == b""
        assert guest.copy_to(gva, b"") == 0
    copy_to_guest_or_fault(guest.machine, guest.cr3, 1 << 47, b"", domid=1)


def test_copy_wraps_at_2_64_like_the_hardware(guest):
    guest.builder.map_page(0xFFFF_FFFF_FFFF_F000, 41)
    guest.builder.map_page(0, 42)
    data = bytes(range(16))
    assert guest.copy_to(0xFFFF_FFFF_FFFF_FFF8, data) == 0
    assert guest.pfn_bytes(41, PAGE_SIZE - 8, 8) == data[:8]
    assert guest.pfn_bytes(42, 0, 8) == data[8:]
    assert guest.copy_from(-8, 16) == data  # a negative pointer is taken modulo 2**64


def test_clear_guest(guest):
    guest.copy_to(LOW_GVA + 10, b"\xff" * 100)
    assert clear_guest(guest.machine, guest.cr3, LOW_GVA + 20, 50, domid=1) == 0
    assert guest.copy_from(LOW_GVA + 10, 100) == b"\xff" * 10 + bytes(50) + b"\xff" * 40
    boundary = LOW_GVA + 16 * PAGE_SIZE
    assert clear_guest(guest.machine, guest.cr3, boundary - 4, 10, domid=1) == 6
    with pytest.raises(ValueError):
        clear_guest(guest.machine, guest.cr3, LOW_GVA, -1, domid=1)


def test_copy_from_rejects_a_negative_length(guest):
    with pytest.raises(ValueError):
        guest.copy_from(LOW_GVA, -1)


def test_copy_checks_ownership_of_every_page(guest):
    """A guest cannot reach another domain's frame through its page tables."""
    entry_maddr = guest.builder.entry_maddr(LOW_GVA + PAGE_SIZE, 1)
    guest.machine.write_u64(entry_maddr, (guest.other.mfn_of(0) << 12) | _PAGE_PRESENT | _PAGE_RW)
    assert guest.copy_to(LOW_GVA + PAGE_SIZE - 4, b"q" * 8) == 4
    assert guest.other.read_pfn(0, 0, 8) == bytes(8)
    with pytest.raises(GuestFault, match="not owned"):
        guest.copy_from(LOW_GVA + PAGE_SIZE, 1)


REGION_PAGES = 6
REGION_BYTES = REGION_PAGES * PAGE_SIZE


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, REGION_BYTES - 1), st.binary(min_size=1, max_size=3 * PAGE_SIZE)),
        min_size=1,
        max_size=8,
    )
)
def test_random_writes_read_back(writes):
    """copy_to_guest then copy_from_guest return what a flat model of the region holds."""
    machine = MachineMemory(64, seed=3)
    domain = DomainMemory(machine, 5, 32)
    builder = PageTableBuilder(domain, range(24, 32))
    gva0 = 0xFFFF_FFFF_8000_0000 - 2 * PAGE_SIZE  # crosses a 1 GiB boundary: two L2 and two L1 tables
    builder.map_range(gva0, 3, REGION_PAGES)
    model = bytearray(REGION_PAGES * PAGE_SIZE)
    for offset, data in writes:
        data = data[: len(model) - offset]
        assert copy_to_guest(machine, builder.cr3, gva0 + offset, data, domid=5) == 0
        model[offset : offset + len(data)] = data
    assert copy_from_guest(machine, builder.cr3, gva0, len(model), domid=5) == bytes(model)
    for offset, data in writes:
        length = min(len(data), len(model) - offset)
        got = copy_from_guest(machine, builder.cr3, gva0 + offset, length, domid=5)
        assert got == bytes(model[offset : offset + length])
    for pfn in range(REGION_PAGES):
        assert domain.read_pfn(3 + pfn) == bytes(model[pfn * PAGE_SIZE : (pfn + 1) * PAGE_SIZE])


# ------------------------------------------------------------------------------------------ builder


def test_builder_entry_flags(guest):
    """L1: PRESENT|RW|ACCESSED, as Xen validates a kernel mapping (+USER and bit 52, _PAGE_GUEST_KERNEL) or a user
    mapping (+GLOBAL); upper: PRESENT|RW|ACCESSED|DIRTY|USER (spec 7.2)."""
    l1 = guest.builder.l1_entry(LOW_GVA)
    kernel = _PAGE_USER | PAGE_GUEST_KERNEL
    assert l1 == (guest.domain.mfn_of(0) << 12) | _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | kernel
    for level in (4, 3, 2):
        entry = guest.machine.read_u64(guest.builder.entry_maddr(LOW_GVA, level))
        assert entry & ~PTE_PFN_MASK == _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_USER
    guest.builder.map_page(LOW_GVA + 20 * PAGE_SIZE, 30, writable=False)
    ro = guest.builder.l1_entry(LOW_GVA + 20 * PAGE_SIZE)
    assert ro == (guest.domain.mfn_of(30) << 12) | _PAGE_PRESENT | _PAGE_ACCESSED | kernel
    guest.builder.map_page(LOW_GVA + 21 * PAGE_SIZE, 31, writable=False, user=True)
    user = guest.builder.l1_entry(LOW_GVA + 21 * PAGE_SIZE)
    assert user == (guest.domain.mfn_of(31) << 12) | _PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_USER | PAGE_GLOBAL
    assert guest.builder.l1_entry(1 << 40) is None


def test_builder_cr3_and_table_types(guest):
    builder = guest.builder
    assert builder.cr3 == guest.domain.mfn_of(TABLE_PFNS[0]) << 12
    assert builder.table_pfns(4) == [TABLE_PFNS[0]]
    # Two disjoint regions: each has its own L3, L2 and L1.
    assert builder.nr_table_frames == 1 + 2 + 2 + 2
    for level, page_type in ((4, PageType.l4), (3, PageType.l3), (2, PageType.l2), (1, PageType.l1)):
        for pfn in builder.table_pfns(level):
            assert guest.machine.page_type(guest.domain.mfn_of(pfn)) == page_type
    assert guest.machine.page_type(guest.domain.mfn_of(0)) == PageType.writable
    assert guest.machine.page_type(guest.domain.mfn_of(50)) == PageType.none


def test_builder_allocates_tables_level_by_level():
    """Like libxenguest's page-table segment: L4, then the L3s, then the L2s, then the L1s (spec 7.2)."""
    machine = MachineMemory(128)
    domain = DomainMemory(machine, 1, 64)
    builder = PageTableBuilder(domain, range(40, 64))
    # 2 GiB - 4 MiB .. 2 GiB + 4 MiB: two L3 entries (two L2 tables), four L1 tables.
    gva = (1 << 31) - (4 << 20)
    builder.ensure_tables(gva, (8 << 20) // PAGE_SIZE)
    assert builder.table_pfns() == list(range(40, 40 + 1 + 1 + 2 + 4))
    assert builder.table_pfns(3) == [41]
    assert builder.table_pfns(2) == [42, 43]
    assert builder.table_pfns(1) == [44, 45, 46, 47]
    before = builder.nr_table_frames
    builder.map_range(gva, 0, (8 << 20) // PAGE_SIZE // 512)  # tables exist already
    assert builder.nr_table_frames == before


def test_page_table_frames_can_only_be_mapped_read_only(guest):
    """A page-table frame is not writable-typeable (spec 4.1 -EACCES rule, spec 7.2 read-only tables)."""
    table_pfn = TABLE_PFNS[0]
    with pytest.raises(ValueError, match="read-only"):
        guest.builder.map_page(LOW_GVA + 40 * PAGE_SIZE, table_pfn)
    guest.builder.map_page(LOW_GVA + 40 * PAGE_SIZE, table_pfn, writable=False)
    assert guest.copy_from(LOW_GVA + 40 * PAGE_SIZE, 8) == guest.machine.read(guest.builder.cr3, 8)
    assert guest.copy_to(LOW_GVA + 40 * PAGE_SIZE, b"x") == 1
    with pytest.raises(ValueError, match="stays read-only"):
        guest.builder.set_writable(LOW_GVA + 40 * PAGE_SIZE, True)


def test_a_writably_mapped_frame_cannot_become_a_table():
    machine = MachineMemory(64)
    domain = DomainMemory(machine, 1, 16)
    builder = PageTableBuilder(domain, [15, 1, 8, 7, 2, 14])
    builder.map_page(0x1000, 9)  # tables in pfns 1, 8, 7
    builder.map_page(0x2000, 2)  # pfn 2 is now typed writable
    assert machine.page_type(domain.mfn_of(2)) == PageType.writable
    with pytest.raises(ValueError, match="cannot be an L3 table"):
        builder.map_page(1 << 39, 3)
    assert machine.page_type(domain.mfn_of(3)) == PageType.none  # the failed mapping left no reference


def test_writable_type_references_follow_the_mappings(guest):
    mfn = guest.domain.mfn_of(50)
    guest.builder.map_page(LOW_GVA + 50 * PAGE_SIZE, 50)
    guest.builder.map_page(LOW_GVA + 51 * PAGE_SIZE, 50)  # an alias
    assert guest.machine.type_count(mfn) == 2
    guest.builder.set_writable(LOW_GVA + 50 * PAGE_SIZE, False)
    assert guest.machine.type_count(mfn) == 1
    guest.builder.set_writable(LOW_GVA + 50 * PAGE_SIZE, False)  # no change
    assert guest.machine.type_count(mfn) == 1
    guest.builder.map_page(LOW_GVA + 51 * PAGE_SIZE, 51)  # replacing the alias drops its reference
    assert guest.machine.type_count(mfn) == 0
    assert guest.machine.page_type(mfn) == PageType.none
    guest.builder.unmap(LOW_GVA + 51 * PAGE_SIZE)
    assert guest.machine.type_count(guest.domain.mfn_of(51)) == 0


def test_builder_rejects_bad_arguments(guest):
    builder = guest.builder
    hole_top = HYPERVISOR_VIRT_END - PAGE_SIZE
    bad_gvas = (LOW_GVA + 1, 1 << 47, HYPERVISOR_VIRT_START, hole_top, -PAGE_SIZE, 1 << 64)
    for gva in bad_gvas:
        with pytest.raises(ValueError):
            builder.map_page(gva, 0)
    with pytest.raises(ValueError):
        builder.map_page(LOW_GVA, 128)  # pfn outside the domain
    with pytest.raises(ValueError):
        builder.map_range((1 << 47) - PAGE_SIZE, 0, 2)  # runs into the non-canonical gap
    with pytest.raises(ValueError, match="not mapped"):
        builder.set_writable(LOW_GVA + 100 * PAGE_SIZE, False)
    with pytest.raises(ValueError):
        builder.entry_maddr(LOW_GVA, 5)
    small = PageTableBuilder(guest.other, [0])
    with pytest.raises(ValueError, match="no pfn left"):
        small.map_page(0x1000, 1)
    with pytest.raises(ValueError, match="no pfn left"):
        PageTableBuilder(guest.other, [])


def test_builder_refuses_entries_it_did_not_create(guest):
    entry_maddr = guest.builder.entry_maddr(LOW_GVA, 2)
    guest.machine.write_u64(entry_maddr, (guest.domain.mfn_of(60) << 12) | L2_PROT)
    with pytest.raises(ValueError, match="not a builder L1 table"):
        guest.builder.map_page(LOW_GVA, 0)


# ------------------------------------------------------------------------------------------ bulk mapping


def _two_builders(nr_pages: int = 1200) -> tuple[PageTableBuilder, PageTableBuilder]:
    made = []
    for _ in range(2):
        domain = DomainMemory(MachineMemory(nr_pages + 64, seed=4), 1, nr_pages)
        made.append(PageTableBuilder(domain, range(nr_pages - 1, nr_pages - 40, -1)))
    return made[0], made[1]


def _state(builder: PageTableBuilder) -> tuple[bytes, list[int], list[int]]:
    machine = builder.machine
    mfns = builder.domain.p2m.mfns
    return (machine.frames[mfns].tobytes(), machine.type_counts[mfns].tolist(), machine.page_types(mfns).tolist())


@pytest.mark.parametrize("user", [False, True])
def test_map_pages_makes_what_the_map_page_loop_makes(user, monkeypatch):
    """One step across L1 tables (a 2 MiB boundary inside the range), read-only and writable pages mixed."""
    gva = 0x4000_0000 + 500 * PAGE_SIZE
    loop, bulk = _two_builders()
    writable = [pfn % 7 != 3 for pfn in range(1100)]
    for builder in (loop, bulk):
        builder.ensure_tables(gva, 1100)
    for pfn in range(1100):
        loop.map_page(gva + pfn * PAGE_SIZE, pfn, writable=writable[pfn], user=user)
    monkeypatch.setattr(bulk, "map_page", None)  # in one step, not page by page
    bulk.map_pages(gva, range(1100), writable=writable, user=user)
    assert _state(bulk) == _state(loop)


def test_map_pages_falls_back_to_the_loop_for_existing_mappings_and_errors():
    gva = 0x4000_0000
    loop, bulk = _two_builders()
    for builder in (loop, bulk):
        builder.map_range(gva, 0, 600)  # creates the tables, then maps in one step
        builder.map_page(gva, 700)  # replaces a mapping
    bulk.map_pages(gva + 10 * PAGE_SIZE, range(800, 900))  # pages mapped already: the loop replaces them
    for pfn in range(800, 900):
        loop.map_page(gva + (pfn - 790) * PAGE_SIZE, pfn)
    assert _state(bulk) == _state(loop)
    table_pfn = bulk.table_pfns(1)[0]
    with pytest.raises(ValueError, match="only be mapped read-only"):
        bulk.map_pages(gva + 2000 * PAGE_SIZE, [1000, table_pfn])  # a page table mapped writable
    assert bulk.machine.type_count(bulk.domain.mfn_of(1000)) == 1  # mapped, as by map_page before the error
