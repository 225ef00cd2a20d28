"""Tests for xenpy.core.memory: machine frames, ownership, page types, m2p and p2m."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xenpy.core.memory import (
    INVALID_M2P_ENTRY,
    P2M,
    PAGE_SIZE,
    DomainMemory,
    MachineMemory,
    OutOfMachineMemory,
    PageType,
    _scramble_p2m,
)

# ------------------------------------------------------------------------------------------ the buffer


def test_buffer_is_one_contiguous_page_aligned_array():
    machine = MachineMemory(64)
    assert machine.frames.shape == (64, PAGE_SIZE)
    assert machine.frames.dtype == np.uint8
    assert machine.frames.flags.c_contiguous
    assert machine.buffer_address == machine.frames.ctypes.data
    assert machine.buffer_address % PAGE_SIZE == 0
    assert machine.nr_bytes == 64 * PAGE_SIZE
    # One buffer: frame n starts exactly n pages after frame 0.
    assert machine.frames[5].ctypes.data == machine.buffer_address + 5 * PAGE_SIZE
    assert machine.frames.base is not None  # a view of the over-allocated backing array


def test_buffer_is_never_reallocated():
    machine = MachineMemory(32)
    address = machine.buffer_address
    frames = machine.frames
    for domid in range(3):
        machine.alloc_domain_frames(domid, 5)
    machine.free_domain_frames(1)
    machine.alloc_domain_frames(7, 10)
    assert machine.buffer_address == address
    assert machine.frames is frames
    assert machine.frames.ctypes.data == address


def test_frames_start_zeroed_and_views_share_the_buffer():
    machine = MachineMemory(8)
    assert not machine.frames.any()
    machine.frames[3, 10] = 0xAB
    assert machine.read_u8(3 * PAGE_SIZE + 10) == 0xAB
    assert machine.mv_u8[3 * PAGE_SIZE + 10] == 0xAB
    machine.write_u64(2 * PAGE_SIZE, 0x1122334455667788)
    assert machine.mv_u64[2 * PAGE_SIZE // 8] == 0x1122334455667788
    assert machine.frame(2)[0] == 0x88


# ------------------------------------------------------------------------------------------ machine access


def test_machine_accessors_round_trip_and_span_frames():
    machine = MachineMemory(4)
    maddr = 2 * PAGE_SIZE - 3  # straddles frames 1 and 2
    machine.write(maddr, b"abcdef")
    assert machine.read(maddr, 6) == b"abcdef"
    assert bytes(machine.frames[1, -3:]) == b"abc"
    assert bytes(machine.frames[2, :3]) == b"def"
    machine.write_u8(0, 0xFF)
    machine.write_u16(2, 0xBEEF)
    machine.write_u32(4, 0xDEADBEEF)
    machine.write_u64(8, 0xFFFF_FFFF_FFFF_FFFF)
    assert machine.read(0, 16) == bytes.fromhex("ff00efbeefbeadde") + b"\xff" * 8
    assert machine.read_u8(0) == 0xFF
    assert machine.read_u16(2) == 0xBEEF
    assert machine.read_u32(4) == 0xDEADBEEF
    assert machine.read_u64(8) == 0xFFFF_FFFF_FFFF_FFFF
    machine.write(100, np.arange(4, dtype=np.uint8))
    assert machine.read(100, 4) == b"\x00\x01\x02\x03"


@pytest.mark.parametrize(
    ("maddr", "nbytes"),
    [(-1, 1), (4 * PAGE_SIZE, 1), (4 * PAGE_SIZE - 4, 8), (0, -1), (4 * PAGE_SIZE - 7, 8)],
)
def test_machine_accessors_reject_out_of_range(maddr, nbytes):
    machine = MachineMemory(4)
    with pytest.raises(ValueError):
        machine.read(maddr, nbytes)
    if nbytes >= 0:
        with pytest.raises(ValueError):
            machine.write(maddr, bytes(nbytes))
    if nbytes == 8:
        with pytest.raises(ValueError):
            machine.read_u64(maddr)
        with pytest.raises(ValueError):
            machine.write_u64(maddr, 0)


def test_machine_accessors_accept_the_last_byte_and_reject_oversized_values():
    machine = MachineMemory(4)
    machine.write_u64(4 * PAGE_SIZE - 8, 7)
    assert machine.read_u64(4 * PAGE_SIZE - 8) == 7
    with pytest.raises(ValueError):
        machine.write_u8(0, 256)
    with pytest.raises(ValueError):
        machine.write_u32(0, -1)
    with pytest.raises(ValueError):
        machine.frame(4)
    with pytest.raises(ValueError):
        machine.owner_of(-1)


# ------------------------------------------------------------------------------------------ allocation


def test_allocation_is_scrambled_and_deterministic():
    first = MachineMemory(1024, seed=5).alloc_domain_frames(1, 200)
    again = MachineMemory(1024, seed=5).alloc_domain_frames(1, 200)
    other = MachineMemory(1024, seed=6).alloc_domain_frames(1, 200)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    steps = np.diff(first)
    assert (steps > 0).any() and (steps < 0).any()  # not monotonic
    assert len(np.unique(first)) == 200


def test_mfn_zero_is_never_handed_out():
    machine = MachineMemory(16)
    mfns = machine.alloc_domain_frames(3, 15)
    assert sorted(mfns.tolist()) == list(range(1, 16))
    assert machine.owner_of(0) is None
    assert machine.nr_free_frames == 0


def test_out_of_machine_memory_allocates_nothing():
    machine = MachineMemory(10)
    machine.alloc_domain_frames(1, 4)
    with pytest.raises(OutOfMachineMemory) as excinfo:
        machine.alloc_domain_frames(2, 6)
    assert isinstance(excinfo.value, MemoryError)
    assert excinfo.value.nr_pages == 6 and excinfo.value.nr_free_frames == 5
    assert machine.nr_free_frames == 5
    assert len(machine.domain_frames(2)) == 0
    assert len(machine.alloc_domain_frames(2, 5)) == 5


def test_alloc_rejects_bad_arguments():
    machine = MachineMemory(10)
    with pytest.raises(ValueError):
        machine.alloc_domain_frames(-1, 1)
    with pytest.raises(ValueError):
        machine.alloc_domain_frames(1 << 16, 1)
    with pytest.raises(ValueError):
        machine.alloc_domain_frames(1, -1)
    with pytest.raises(ValueError):
        MachineMemory(1)


def test_ownership_and_free():
    machine = MachineMemory(64)
    dom1 = machine.alloc_domain_frames(1, 10)
    dom2 = machine.alloc_domain_frames(2, 5)
    assert all(machine.owner_of(mfn) == 1 for mfn in dom1)
    assert all(machine.owner_of(mfn) == 2 for mfn in dom2)
    assert np.array_equal(machine.domain_frames(1), dom1)
    machine.frames[dom1] = 0x5A
    machine.m2p[dom1] = np.arange(10)
    assert machine.get_page_type(int(dom1[0]), PageType.l1)

    assert machine.free_domain_frames(1) == 10
    assert machine.free_domain_frames(1) == 0
    assert all(machine.owner_of(mfn) is None for mfn in dom1)
    assert not machine.frames[dom1].any()  # scrubbed
    assert (machine.m2p[dom1] == INVALID_M2P_ENTRY).all()
    assert machine.page_type(int(dom1[0])) == PageType.none
    assert machine.type_count(int(dom1[0])) == 0
    assert all(machine.owner_of(mfn) == 2 for mfn in dom2)  # untouched
    assert machine.nr_free_frames == 63 - 5
    # Freed frames are reusable.
    again = machine.alloc_domain_frames(3, 58)
    assert set(dom1.tolist()) <= set(again.tolist())


# ------------------------------------------------------------------------------------------ page types


def test_page_type_references_follow_xen_rules():
    """A frame holds one type at a time and changes it only at count zero (spec 4.1, spec 7.2)."""
    machine = MachineMemory(8)
    mfn = int(machine.alloc_domain_frames(1, 1)[0])
    assert machine.page_type(mfn) == PageType.none
    assert machine.get_page_type(mfn, PageType.l1)
    assert machine.get_page_type(mfn, PageType.l1)
    assert machine.type_count(mfn) == 2
    assert not machine.get_page_type(mfn, PageType.writable)  # a page table is not writable-typeable
    assert machine.page_type(mfn) == PageType.l1 and machine.type_count(mfn) == 2
    machine.put_page_type(mfn)
    machine.put_page_type(mfn)
    assert machine.page_type(mfn) == PageType.none
    assert machine.get_page_type(mfn, PageType.writable)
    assert machine.page_type(mfn) == PageType.writable
    with pytest.raises(ValueError):
        machine.get_page_type(mfn, PageType.none)
    machine.put_page_type(mfn)
    with pytest.raises(ValueError):
        machine.put_page_type(mfn)


def test_page_type_values_and_classification():
    assert [int(t) for t in PageType] == [0, 1, 2, 3, 4, 5, 7]
    assert [t for t in PageType if t.is_page_table] == [PageType.l1, PageType.l2, PageType.l3, PageType.l4]


# ------------------------------------------------------------------------------------------ p2m


@pytest.mark.parametrize("seed", range(8))
def test_p2m_is_never_the_identity_and_not_monotonic(seed):
    machine = MachineMemory(300, seed=seed)
    domain = DomainMemory(machine, 1, 256)
    mfns = domain.p2m.mfns
    assert not (mfns == np.arange(256)).any()
    steps = np.diff(mfns)
    assert (steps > 0).any() and (steps < 0).any()


def test_p2m_and_m2p_agree():
    machine = MachineMemory(200)
    dom1 = DomainMemory(machine, 1, 50)
    dom2 = DomainMemory(machine, 2, 30)
    for domain in (dom1, dom2):
        for pfn in range(domain.nr_pages):
            mfn = domain.mfn_of(pfn)
            assert machine.m2p[mfn] == pfn
            assert domain.pfn_of(mfn) == pfn
            assert domain.owns(mfn)
            assert machine.owner_of(mfn) == domain.domid
    foreign = dom2.mfn_of(0)
    assert not dom1.owns(foreign)
    assert not dom1.mfn_valid_for(foreign)
    with pytest.raises(ValueError):
        dom1.pfn_of(foreign)
    with pytest.raises(ValueError):
        dom1.mfn_of(50)
    with pytest.raises(ValueError):
        dom1.mfn_of(-1)
    assert not dom1.owns(0) and not dom1.owns(200) and not dom1.owns(-1)
    # Unused frames have no m2p entry.
    used = set(dom1.p2m.mfns.tolist()) | set(dom2.p2m.mfns.tolist())
    unused = [mfn for mfn in range(200) if mfn not in used]
    assert (machine.m2p[unused] == INVALID_M2P_ENTRY).all()


def test_p2m_array_is_read_only_and_guest_list_is_little_endian_u64():
    machine = MachineMemory(40)
    domain = DomainMemory(machine, 4, 8)
    with pytest.raises(ValueError):
        domain.p2m.mfns[0] = 1
    mfn_list = domain.p2m.guest_mfn_list()
    assert len(mfn_list) == 8 * 8
    entries = [int.from_bytes(mfn_list[i : i + 8], "little") for i in range(0, 64, 8)]
    assert entries == domain.p2m.mfns.tolist()


def test_p2m_rejects_frames_it_may_not_use():
    machine = MachineMemory(40)
    mine = machine.alloc_domain_frames(1, 4)
    theirs = machine.alloc_domain_frames(2, 1)
    with pytest.raises(ValueError, match="not owned"):
        P2M(machine, 1, np.concatenate([mine[:2], theirs]))
    with pytest.raises(ValueError, match="repeated"):
        P2M(machine, 1, np.array([mine[0], mine[0]]))
    with pytest.raises(ValueError, match="outside"):
        P2M(machine, 1, np.array([40]))
    P2M(machine, 1, mine[:2])
    with pytest.raises(ValueError, match="m2p"):
        P2M(machine, 1, mine[1:3])


def test_p2m_goes_stale_when_the_domain_is_freed():
    machine = MachineMemory(40)
    domain = DomainMemory(machine, 1, 8)
    mfn = domain.mfn_of(3)
    assert domain.release() == 8
    assert not domain.owns(mfn)
    assert not domain.mfn_valid_for(mfn)


@given(st.permutations(list(range(0, 12))), st.integers(min_value=2, max_value=12), st.integers(0, 3))
def test_scramble_removes_fixed_points_and_monotonic_order(values, nr_pages, shift):
    """Whatever order the free pool yields (even adversarial: identity, sorted), the p2m is scrambled."""
    mfns = np.array(sorted(values[:nr_pages]) if shift == 0 else values[:nr_pages], dtype=np.int64)
    if shift == 1:
        mfns = np.arange(nr_pages, dtype=np.int64)  # the identity
    elif shift == 2:
        mfns = np.arange(1, nr_pages + 1, dtype=np.int64)  # ascending, no fixed points
    before = sorted(mfns.tolist())
    out = _scramble_p2m(mfns)
    assert sorted(out.tolist()) == before
    assert not (out == np.arange(nr_pages)).any()
    if nr_pages >= 3:
        steps = np.diff(out)
        assert (steps > 0).any() and (steps < 0).any()


# ------------------------------------------------------------------------------------------ domain memory


def test_domain_frame_accessors():
    machine = MachineMemory(64)
    domain = DomainMemory(machine, 1, 16)
    domain.write_pfn(3, b"hello", offset=100)
    mfn = domain.mfn_of(3)
    assert machine.read((mfn << 12) + 100, 5) == b"hello"
    assert domain.read_pfn(3, 100, 5) == b"hello"
    assert domain.read_mfn(mfn, 100, 5) == b"hello"
    assert bytes(domain.frame_of_pfn(3)[100:105]) == b"hello"
    assert domain.frame_of_mfn(mfn).ctypes.data == machine.buffer_address + mfn * PAGE_SIZE
    assert domain.maddr_of_pfn(3, 100) == (mfn << 12) + 100
    domain.write_mfn(mfn, b"\x01" * PAGE_SIZE)
    assert domain.read_pfn(3) == b"\x01" * PAGE_SIZE
    domain.zero_pfn(3)
    assert domain.read_pfn(3) == bytes(PAGE_SIZE)
    with pytest.raises(ValueError):
        domain.read_pfn(3, 4090, 8)  # leaves the page
    with pytest.raises(ValueError):
        domain.write_pfn(16, b"x")
    with pytest.raises(ValueError):
        domain.maddr_of_pfn(0, PAGE_SIZE)


def test_domain_mfn_access_requires_ownership_but_not_a_p2m_slot():
    machine = MachineMemory(64)
    dom1 = DomainMemory(machine, 1, 8)
    dom2 = DomainMemory(machine, 2, 8)
    extra = int(machine.alloc_domain_frames(1, 1)[0])  # e.g. a shared_info frame: owned, not in the p2m
    assert dom1.mfn_valid_for(extra)
    assert not dom1.owns(extra)
    dom1.write_mfn(extra, b"ok")
    assert dom1.read_mfn(extra, 0, 2) == b"ok"
    with pytest.raises(ValueError, match="not owned"):
        dom1.read_mfn(dom2.mfn_of(0))
    with pytest.raises(ValueError, match="not owned"):
        dom1.write_mfn(0, b"x")
    assert not dom1.mfn_valid_for(64)


# ------------------------------------------------------------------------------------------ host memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


@pytest.mark.parametrize("nr_frames", [2, 3, 511, 512, 513, 1030, 5000])
@pytest.mark.parametrize("seed", [0, 7])
def test_allocation_order_hands_out_every_frame_once_however_it_is_asked(nr_frames, seed):
    """The order computed as frames are handed out is a permutation of 1..nr_frames-1, the same in one request
    or in many."""
    whole = MachineMemory(nr_frames, seed=seed).alloc_domain_frames(1, nr_frames - 1)
    assert sorted(whole.tolist()) == list(range(1, nr_frames))
    machine, parts, left = MachineMemory(nr_frames, seed=seed), [], nr_frames - 1
    for size in (1, 7, 300, 600, left):
        size = min(size, left)
        parts.append(machine.alloc_domain_frames(2, size))
        left -= size
    assert np.array_equal(np.concatenate(parts), whole)
    assert machine.nr_free_frames == 0


def test_freed_frames_come_back_zeroed_after_the_fresh_ones():
    machine = MachineMemory(2000, seed=3)
    big = machine.alloc_domain_frames(1, 700)  # released through the host (runs), not written
    small = machine.alloc_domain_frames(2, 10)
    machine.frames[big] = 0x5A
    machine.frames[small] = 0xA5
    machine.free_domain_frames(1)
    machine.free_domain_frames(2)
    assert not machine.frames[big].any() and not machine.frames[small].any()
    rest = machine.alloc_domain_frames(3, 2000 - 1 - 710)  # the never-allocated frames first
    assert not set(rest.tolist()) & set(big.tolist() + small.tolist())
    assert np.array_equal(machine.alloc_domain_frames(4, 710), np.concatenate([big, small]))


def test_a_repeated_mfn_is_refused_without_an_m2p_entry_left():
    machine = MachineMemory(64)
    mfns = machine.alloc_domain_frames(1, 5)
    with pytest.raises(ValueError, match="repeated"):
        P2M(machine, 1, np.array([mfns[0], mfns[1], mfns[0]]))
    assert (machine.m2p == INVALID_M2P_ENTRY).all()
    assert P2M(machine, 1, mfns).pfn_of(int(mfns[3])) == 3


def test_get_page_types_is_all_or_nothing():
    machine = MachineMemory(16)
    mfns = machine.alloc_domain_frames(1, 4)
    assert machine.get_page_type(int(mfns[2]), PageType.l1)
    assert not machine.get_page_types(mfns, PageType.writable)
    assert machine.type_counts[mfns].tolist() == [0, 0, 1, 0]
    assert machine.get_page_types(np.concatenate([mfns[:2], mfns[:1]]), PageType.writable)
    assert machine.type_counts[mfns].tolist() == [2, 1, 1, 0]
    assert machine.page_type(int(mfns[1])) == PageType.writable


def test_a_large_domain_costs_the_host_what_it_touches():
    """4 GiB of guest: the host spends the m2p, owner and p2m (about 20 bytes a frame), not the frames; the
    frames a guest writes cost a page each, and its release gives them back."""
    before = _rss_bytes()
    machine = MachineMemory((4096 + 8) * 256)
    domain = DomainMemory(machine, 1, 4096 * 256)
    assert _rss_bytes() - before < 48 << 20
    touched = domain.p2m.mfns[:4096]
    machine.frames[touched] = 1
    grown = _rss_bytes()
    assert grown - before >= 4096 * PAGE_SIZE
    domain.release()
    assert _rss_bytes() < grown - 4000 * PAGE_SIZE
    assert not machine.frames[touched].any()


@pytest.mark.slow
def test_a_16_gib_domain_can_be_created():
    machine = MachineMemory((16384 + 8) * 256)
    domain = DomainMemory(machine, 1, 16384 * 256)
    assert domain.nr_pages == 1 << 22 and machine.nr_free_frames == 8 * 256 - 1
    assert domain.pfn_of(domain.mfn_of((1 << 22) - 1)) == (1 << 22) - 1
