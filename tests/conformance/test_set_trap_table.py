"""HYPERVISOR_set_trap_table (spec 4.2, 5.7; ``xen/arch/x86/pv/callback.c:do_set_trap_table``)."""

from __future__ import annotations

import pytest

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall

from .conftest import HOLE_GVA, UNMAPPED_GVA, Guest

EFAULT = -XenErrno.EFAULT
EINVAL = -XenErrno.EINVAL
KERNEL_VA = 0xFFFF_FFFF_8010_0000
NON_CANONICAL = 0x0000_8000_0000_0000
ENTRY_SIZE = 16

Entry = tuple[int, int, int, int]


def pack(g: Guest, entries: list[Entry]) -> bytes:
    """trap_info entries ``(vector, flags, cs, address)`` as guest bytes."""
    build = g.dom.abi.trap_info.build
    return b"".join(build({"vector": v, "flags": f, "cs": cs, "address": a}) for v, f, cs, a in entries)


def put_table(g: Guest, entries: list[Entry], *, terminate: bool = True) -> int:
    data = pack(g, entries + ([(0, 0, 0, 0)] if terminate else []))
    gva = g.dom.alloc_guest(len(data), 8)
    g.dom.write_guest(gva, data)
    return gva


def set_trap_table(g: Guest, traps: int, *, vcpu: int = 0) -> int:
    return g.call(Hypercall.set_trap_table, traps, vcpu=vcpu)


def trap_ctxt(g: Guest, vcpu: int = 0) -> list[Entry]:
    return list(g.v[vcpu].arch.trap_ctxt)


def test_installs_entries_by_vector(guest: Guest):
    """spec 5.7: each entry goes to trap_ctxt[vector], as given (cs already at RPL 3)."""
    before = trap_ctxt(guest)
    entries = [(14, 0, 0xE033, KERNEL_VA), (3, 3, 0xE033, KERNEL_VA + 0x10), (0x80, 7, 0xE033, KERNEL_VA + 0x20)]
    assert set_trap_table(guest, put_table(guest, entries)) == 0
    after = trap_ctxt(guest)
    for entry in entries:
        assert after[entry[0]] == entry
    untouched = set(range(256)) - {14, 3, 0x80}
    assert all(after[i] == before[i] for i in untouched)


def test_stops_at_the_first_zero_address(guest: Guest):
    """spec 5.7: the table ends at the first entry whose address is 0; that entry and later ones are ignored."""
    data = pack(guest, [(1, 0, 0xE033, KERNEL_VA), (2, 0, 0xE033, 0), (4, 0, 0xE033, KERNEL_VA + 8)])
    gva = guest.dom.alloc_guest(len(data), 8)
    guest.dom.write_guest(gva, data)
    before = trap_ctxt(guest)
    assert set_trap_table(guest, gva) == 0
    after = trap_ctxt(guest)
    assert after[1] == (1, 0, 0xE033, KERNEL_VA)
    assert after[2] == before[2]
    assert after[4] == before[4]


def test_empty_table_changes_nothing(guest: Guest):
    """spec 5.7: a first entry with address 0 installs nothing and returns 0."""
    assert set_trap_table(guest, put_table(guest, [(14, 0, 0xE033, KERNEL_VA)])) == 0
    before = trap_ctxt(guest)
    assert set_trap_table(guest, put_table(guest, [])) == 0
    assert trap_ctxt(guest) == before


@pytest.mark.parametrize(
    ("cs", "stored"), [(0xE030, 0xE033), (0xE031, 0xE033), (0xE032, 0xE033), (0xE033, 0xE033), (0x0010, 0x0013), (0, 3)]
)
def test_code_selector_rpl_is_raised_to_3(guest: Guest, cs, stored):
    """``do_set_trap_table`` -> ``fixup_guest_code_selector``: a PV64 kernel runs in ring 3."""
    assert set_trap_table(guest, put_table(guest, [(13, 0, cs, KERNEL_VA)])) == 0
    assert guest.v[0].arch.trap_ctxt[13] == (13, 0, stored, KERNEL_VA)


def test_flags_are_stored_as_given(guest: Guest):
    """spec 5.7: flags (DPL bits 0-1, bit 2 mask events) are stored unmodified, even unknown bits."""
    assert set_trap_table(guest, put_table(guest, [(6, 0xFF, 0xE033, KERNEL_VA)])) == 0
    assert guest.v[0].arch.trap_ctxt[6] == (6, 0xFF, 0xE033, KERNEL_VA)


def test_later_entry_for_the_same_vector_wins(guest: Guest):
    """``do_set_trap_table``: entries are copied in order into slot ``vector``."""
    entries = [(8, 0, 0xE033, KERNEL_VA), (8, 4, 0xE033, KERNEL_VA + 0x40)]
    assert set_trap_table(guest, put_table(guest, entries)) == 0
    assert guest.v[0].arch.trap_ctxt[8] == (8, 4, 0xE033, KERNEL_VA + 0x40)


def test_null_pointer_clears_the_whole_table(guest: Guest):
    """``do_set_trap_table``: a NULL handle zeroes all 256 entries."""
    assert set_trap_table(guest, put_table(guest, [(v, 0, 0xE033, KERNEL_VA + v) for v in range(0, 256, 5)])) == 0
    assert set_trap_table(guest, 0) == 0
    assert trap_ctxt(guest) == [(0, 0, 0, 0)] * 256


def test_vector_2_installs_the_nmi_handler(guest: Guest):
    """spec 4.2 (a): an entry with vector 2 is the NMI handler."""
    assert set_trap_table(guest, put_table(guest, [(2, 4, 0xE033, KERNEL_VA)])) == 0
    assert guest.v[0].arch.trap_ctxt[2] == (2, 4, 0xE033, KERNEL_VA)


def test_non_canonical_address_is_einval_after_the_earlier_entries(guest: Guest):
    """``do_set_trap_table``: a non-canonical address -> -EINVAL; entries before it stay installed, that
    entry and the ones after it are not."""
    before = trap_ctxt(guest)
    entries = [(1, 0, 0xE033, KERNEL_VA), (5, 0, 0xE033, NON_CANONICAL), (7, 0, 0xE033, KERNEL_VA)]
    assert set_trap_table(guest, put_table(guest, entries)) == EINVAL
    after = trap_ctxt(guest)
    assert after[1] == (1, 0, 0xE033, KERNEL_VA)
    assert after[5] == before[5]
    assert after[7] == before[7]


@pytest.mark.parametrize("bad", [UNMAPPED_GVA, HOLE_GVA, 0xFFFF_FFFF_FFFF_FFF8])
def test_unreadable_table_is_efault(guest: Guest, bad):
    """``do_set_trap_table``: the first entry cannot be read -> -EFAULT; nothing changes."""
    before = trap_ctxt(guest)
    assert set_trap_table(guest, bad) == EFAULT
    assert trap_ctxt(guest) == before


def two_pages_second_unmapped(g: Guest) -> int:
    first = g.page()
    second = g.page()
    assert second == first + 4096
    g.dom.pagetables.unmap(second)
    return second


def test_unterminated_table_running_into_an_unmapped_page(guest: Guest):
    """``do_set_trap_table``: entries read before the fault stay installed; -EFAULT."""
    boundary = two_pages_second_unmapped(guest)
    entries = [(v, 0, 0xE033, KERNEL_VA + v) for v in (10, 11, 12)]
    guest.dom.write_guest(boundary - 3 * ENTRY_SIZE, pack(guest, entries))
    assert set_trap_table(guest, boundary - 3 * ENTRY_SIZE) == EFAULT
    for entry in entries:
        assert guest.v[0].arch.trap_ctxt[entry[0]] == entry


def test_entry_straddling_into_an_unmapped_page_is_efault(guest: Guest):
    """``do_set_trap_table``: an entry that is only partly readable is not installed."""
    boundary = two_pages_second_unmapped(guest)
    start = boundary - ENTRY_SIZE - 8
    guest.dom.write_guest(start, pack(guest, [(20, 0, 0xE033, KERNEL_VA)]) + pack(guest, [(21, 0, 0xE033, 1)])[:8])
    before = trap_ctxt(guest)
    assert set_trap_table(guest, start) == EFAULT
    assert guest.v[0].arch.trap_ctxt[20] == (20, 0, 0xE033, KERNEL_VA)
    assert guest.v[0].arch.trap_ctxt[21] == before[21]


def test_misaligned_table_across_mapped_pages(guest: Guest):
    """spec 5.7: a table may start anywhere and cross pages; entries are read one by one."""
    first = guest.page()
    second = guest.page()
    assert second == first + 4096
    entries = [(v, 0, 0xE033, KERNEL_VA + 16 * v) for v in range(32, 64)]
    start = second - 5 * ENTRY_SIZE - 3
    guest.dom.write_guest(start, pack(guest, [*entries, (0, 0, 0, 0)]))
    assert set_trap_table(guest, start) == 0
    for entry in entries:
        assert guest.v[0].arch.trap_ctxt[entry[0]] == entry


def test_full_table_of_256_entries(guest: Guest):
    """spec 5.7: all 256 vectors in one call."""
    entries = [(v, v & 7, 0xE033, KERNEL_VA + 16 * v) for v in range(256)]
    assert set_trap_table(guest, put_table(guest, entries)) == 0
    assert trap_ctxt(guest) == entries


def test_a_long_table_continues_and_completes(guest: Guest):
    """spec 5.7 and Xen's loop: a preempt check after each entry, so a table longer than one invocation's work
    (here 1000 entries, rewriting vectors) ends the invocation with a continuation at the next entry; the
    re-issued call finishes it and the result is that of one call."""
    entries = [(v % 256, 0, 0xE033, KERNEL_VA + 16 * v) for v in range(1000)]
    gva = put_table(guest, entries)
    ctx = guest.hv.dispatcher.context(guest.v[0])
    first = guest.hv.dispatcher.dispatch(ctx, Hypercall.set_trap_table, gva)
    assert ctx.continuation is not None
    nr, (resume,) = ctx.continuation
    ctx.continuation = None
    assert (nr, resume, first) == (Hypercall.set_trap_table, gva + 256 * ENTRY_SIZE, 0)
    assert trap_ctxt(guest)[255] == entries[255]
    assert set_trap_table(guest, gva) == 0  # Hypervisor.hypercall re-issues until done
    assert trap_ctxt(guest) == [entries[768 + v] if v < 232 else entries[512 + v] for v in range(256)]


def test_trap_table_is_per_vcpu(guest: Guest):
    """spec 5.7: the virtual IDT belongs to the calling vCPU."""
    guest.bring_up(1)
    before = trap_ctxt(guest, 0)
    assert set_trap_table(guest, put_table(guest, [(14, 0, 0xE033, KERNEL_VA)]), vcpu=1) == 0
    assert guest.v[1].arch.trap_ctxt[14] == (14, 0, 0xE033, KERNEL_VA)
    assert trap_ctxt(guest, 0) == before
    assert set_trap_table(guest, 0, vcpu=1) == 0
    assert trap_ctxt(guest, 0) == before
