"""The PV64 bootstrap region as libxenguest lays it out (spec 7.2) and the entry registers (spec 7.5)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenpy.abi.xen import SIF_MOD_START_PFN
from xenpy.loader.errors import LoaderError
from xenpy.loader.layout import PAGE_SIZE, BootLayout, compute_pv64_layout
from xenpy.loader.xen_notes import XenImageInfo, read_pv_image

from .elfgen import KSTART, VIRT_BASE, standard_image

MIB = 1 << 20
STANDARD = read_pv_image(standard_image())


def _info(**changes: object) -> XenImageInfo:
    return dataclasses.replace(STANDARD, **changes)


def _kernel(virt_base: int, pad_pages: int, kernel_bytes: int, **changes: object) -> XenImageInfo:
    kstart = virt_base + pad_pages * PAGE_SIZE
    return _info(
        virt_base=virt_base, virt_kstart=kstart, virt_kend=kstart + kernel_bytes, virt_entry=kstart, **changes
    )


def _count_tables(gva_from: int, gva_end: int) -> int:
    """Tables needed to map [gva_from, gva_end) with 4 KiB pages, counted page by page (one L4)."""
    pages = range(gva_from, gva_end, PAGE_SIZE)
    return 1 + sum(len({gva >> shift for gva in pages}) for shift in (39, 30, 21))


def _check_invariants(layout: BootLayout, nr_pages: int) -> None:
    virt_base = layout.virt_base
    # Regions are packed, page-aligned and 1:1 from virt_base / pfn 0 up to virt_pgtab_end.
    pfn = 0
    mapped = [r for r in layout.regions if r.gva is not None and r.pfn < layout.region_nr_pages]
    for region in mapped:
        assert region.pfn == pfn, region
        assert region.gva == virt_base + pfn * PAGE_SIZE
        pfn += region.nr_pages
    assert virt_base + pfn * PAGE_SIZE == layout.virt_pgtab_end
    # Xen's order.
    names = [r.name for r in mapped if r.name != "padding"]
    expected = ["kernel", "module", "p2m", "start_info", "xenstore", "console", "page tables", "boot stack"]
    assert names == [n for n in expected if n in names]
    # virt_pgtab_end: 4 MiB aligned, at least 512 KiB mapped after the boot stack.
    assert layout.virt_pgtab_end % (4 * MIB) == 0
    assert layout.boot_stack.gva_end is not None
    assert layout.virt_pgtab_end - layout.boot_stack.gva_end >= 512 * 1024
    assert layout.virt_alloc_end == layout.boot_stack.gva_end
    # The page tables are exactly what the mapped range needs, L4 first, then L3s, L2s, L1s.
    assert layout.nr_pt_frames == _count_tables(virt_base, layout.virt_pgtab_end)
    assert layout.pgtables.nr_pages == layout.nr_pt_frames
    levels = layout.mappings[0].levels
    assert [lvl.level for lvl in levels] == [4, 3, 2, 1]
    assert levels[0].pfn == layout.pgtables.pfn and levels[0].nr_tables == 1
    for upper, lower in itertools.pairwise(levels):
        assert lower.pfn == upper.pfn + upper.nr_tables
    # libxenguest's stop condition: the tables plus boot stack and padding fit below virt_pgtab_end.
    after_console = layout.console.gva_end
    assert after_console is not None
    assert after_console + (layout.nr_pt_frames + 1 + 128) * PAGE_SIZE <= layout.virt_pgtab_end
    # Entry registers (spec 7.5).
    assert layout.rsi == virt_base + layout.start_info_pfn * PAGE_SIZE
    assert layout.rsp == virt_base + (layout.bootstack_pfn + 1) * PAGE_SIZE
    assert layout.nr_pages_used <= nr_pages


def test_standard_layout() -> None:
    """spec 7.2 for the typical kernel in 32 MiB: every pfn, VA and count."""
    layout = compute_pv64_layout(STANDARD, 8192)
    table = [(r.name, r.pfn, r.nr_pages) for r in layout.regions]
    assert table == [
        ("padding", 0, 2),
        ("kernel", 2, 4),
        ("p2m", 6, 16),
        ("start_info", 22, 1),
        ("xenstore", 23, 1),
        ("console", 24, 1),
        ("page tables", 25, 5),
        ("boot stack", 30, 1),
        ("padding", 31, 993),
    ]
    assert layout.virt_pgtab_end == VIRT_BASE + 4 * MIB
    assert layout.nr_pt_frames == 5
    assert [lvl.nr_tables for lvl in layout.mappings[0].levels] == [1, 1, 1, 2]
    assert layout.kernel.gva == KSTART
    assert layout.mfn_list == VIRT_BASE + 6 * PAGE_SIZE
    assert layout.pt_base == VIRT_BASE + 25 * PAGE_SIZE
    assert (layout.rip, layout.rsi, layout.rsp) == (
        STANDARD.virt_entry,
        VIRT_BASE + 22 * PAGE_SIZE,
        VIRT_BASE + 31 * PAGE_SIZE,
    )
    assert layout.mod_start == layout.mod_len == layout.sif_flags == 0
    assert layout.pfn_of(layout.rsi) == 22 and layout.gva_of(22) == layout.rsi
    _check_invariants(layout, 8192)


def test_p2m_size_follows_memory() -> None:
    """spec 7.2: the p2m list is nr_pages * 8 bytes, rounded up to a page."""
    assert compute_pv64_layout(STANDARD, 8192).p2m.nr_pages == 16
    assert compute_pv64_layout(STANDARD, 8193).p2m.nr_pages == 17
    assert compute_pv64_layout(STANDARD, 262144).p2m.nr_pages == 512


def test_tables_grow_until_they_fit() -> None:
    """When the extra pages push past a 4 MiB boundary, the region grows to the next one."""
    # After the console page the cursor is at base + pad + kernel + p2m(16) + 3 pages; choose the kernel so
    # that adding 129 pages lands exactly on the 4 MiB boundary: try_end + 1 must then be the NEXT boundary.
    kernel_pages = 1024 - 2 - 16 - 3 - 129
    layout = compute_pv64_layout(_kernel(VIRT_BASE, 2, kernel_pages * PAGE_SIZE), 8192)
    assert layout.console.gva_end == VIRT_BASE + 4 * MIB - 129 * PAGE_SIZE
    assert layout.virt_pgtab_end == VIRT_BASE + 8 * MIB
    assert layout.nr_pt_frames == 1 + 1 + 1 + 4
    _check_invariants(layout, 8192)


def test_exact_fit_of_memory() -> None:
    layout = compute_pv64_layout(STANDARD, 1024)
    assert layout.region_nr_pages == 1024 == layout.nr_pages_used


def test_does_not_fit() -> None:
    """A region larger than the domain: one clear error."""
    with pytest.raises(
        LoaderError,
        match=r"^image needs 4 MiB of bootstrap region \(1024 pages from VIRT_BASE "
        r"0xffffffff80000000 to 0xffffffff80400000\), domain has 3 MiB "
        r"\(768 pages\)$",
    ):
        compute_pv64_layout(STANDARD, 768)
    with pytest.raises(LoaderError, match=r"image needs 12 MiB .* domain has 8 MiB"):
        compute_pv64_layout(_kernel(VIRT_BASE, 0, 7 * MIB + MIB // 2), 2048)


def test_module_inside_the_region() -> None:
    """spec 7.2: the initrd follows the kernel, in whole pages; mod_len is its exact length (Xen 4.19+)."""
    layout = compute_pv64_layout(STANDARD, 8192, module_nr_bytes=5000)
    assert layout.module is not None
    assert (layout.module.pfn, layout.module.nr_pages) == (6, 2)
    assert (layout.mod_start, layout.mod_len) == (VIRT_BASE + 6 * PAGE_SIZE, 5000)
    assert layout.p2m.pfn == 8
    assert layout.sif_flags == 0
    _check_invariants(layout, 8192)


def test_module_len_in_whole_pages_before_4_19() -> None:
    """Before 4c3a618b0a (profile field module_len_exact false) xc_dom_alloc_segment rounded mod_len up."""
    layout = compute_pv64_layout(STANDARD, 8192, module_nr_bytes=5000, module_len_exact=False)
    assert (layout.mod_start, layout.mod_len) == (VIRT_BASE + 6 * PAGE_SIZE, 2 * PAGE_SIZE)
    exact = compute_pv64_layout(STANDARD, 8192, module_nr_bytes=5000)
    assert layout.regions == exact.regions


def test_module_over_libxenguest_limit_is_refused() -> None:
    with pytest.raises(LoaderError, match=r"^module 0 image too large"):
        compute_pv64_layout(STANDARD, 8192, module_nr_bytes=(1 << 30) + 1)


def test_module_unmapped_with_mod_start_pfn() -> None:
    """spec 7.2: MOD_START_PFN puts the initrd after the region; mod_start is a pfn; SIF_MOD_START_PFN."""
    layout = compute_pv64_layout(_info(unmapped_initrd=True), 8192, module_nr_bytes=3 * PAGE_SIZE + 1)
    assert layout.module is not None and layout.module.gva is None
    assert (layout.module.pfn, layout.module.nr_pages) == (1024, 4)
    assert (layout.mod_start, layout.mod_len) == (1024, 4 * PAGE_SIZE)
    assert layout.sif_flags == SIF_MOD_START_PFN
    assert layout.nr_pages_used == 1028
    _check_invariants(layout, 8192)
    with pytest.raises(LoaderError, match=r"for the module and the p2m list\), domain has 4 MiB"):
        compute_pv64_layout(_info(unmapped_initrd=True), 1024, module_nr_bytes=PAGE_SIZE)


def test_empty_module_is_refused() -> None:
    with pytest.raises(LoaderError, match=r"module \(initrd\) is empty"):
        compute_pv64_layout(STANDARD, 8192, module_nr_bytes=0)


def test_init_p2m_list_outside_the_region() -> None:
    """spec 7.2: with INIT_P2M the p2m list follows the region, mapped at its own VA with its own tables."""
    p2m_base = 0x80_0000_0000  # Linux's choice: L4 slot 1
    layout = compute_pv64_layout(_info(p2m_base=p2m_base), 8192)
    assert [r.name for r in layout.regions].count("p2m") == 1
    assert layout.p2m.pfn == 1024 and layout.p2m.gva == p2m_base and layout.p2m.nr_pages == 16
    assert layout.mfn_list == p2m_base
    p2m_tables = layout.mappings[1]
    assert [(lvl.level, lvl.nr_tables) for lvl in p2m_tables.levels] == [(4, 0), (3, 1), (2, 1), (1, 1)]
    assert p2m_tables.levels[1].pfn == 1024 + 16  # its tables follow the list
    assert (layout.first_p2m_pfn, layout.nr_p2m_frames) == (1024, 19)
    assert layout.nr_pages_used == 1024 + 19
    # The region itself no longer holds the p2m: start_info directly follows the kernel.
    assert layout.start_info_pfn == 6
    _check_invariants(layout, 8192)


def test_init_p2m_sharing_upper_tables_with_the_region() -> None:
    """count_pgtables trims the levels the region's tables already cover."""
    # Same 512 GiB slot, previous 1 GiB slot: the L3 is shared, the p2m needs its own L2 and L1.
    layout = compute_pv64_layout(_info(p2m_base=VIRT_BASE - 16 * MIB), 8192)
    assert [(lvl.level, lvl.nr_tables) for lvl in layout.mappings[1].levels] == [
        (4, 0),
        (3, 0),
        (2, 1),
        (1, 1),
    ]
    assert layout.nr_p2m_frames == 16 + 2
    # Same 1 GiB slot: only an L1 of its own.
    layout = compute_pv64_layout(
        _kernel(VIRT_BASE + 32 * MIB, 0, PAGE_SIZE, p2m_base=VIRT_BASE + 16 * MIB), 8192
    )
    assert [(lvl.level, lvl.nr_tables) for lvl in layout.mappings[1].levels] == [
        (4, 0),
        (3, 0),
        (2, 0),
        (1, 1),
    ]
    assert layout.nr_p2m_frames == 16 + 1
    _check_invariants(layout, 8192)


@pytest.mark.parametrize("p2m_base", [VIRT_BASE, VIRT_BASE + 64 * MIB, 0x80_0000_0800])
def test_unusable_init_p2m_is_ignored(p2m_base: int) -> None:
    """xc_dom_build_image drops INIT_P2M at or above virt_base, or not page-aligned."""
    layout = compute_pv64_layout(_info(p2m_base=p2m_base), 8192)
    assert len(layout.mappings) == 1 and layout.mfn_list == VIRT_BASE + 6 * PAGE_SIZE


def test_init_p2m_overlapping_the_region() -> None:
    with pytest.raises(LoaderError, match=r"INIT_P2M list .* overlaps the bootstrap region"):
        compute_pv64_layout(_info(p2m_base=VIRT_BASE - PAGE_SIZE), 8192)


def test_kernel_start_must_be_page_aligned() -> None:
    with pytest.raises(LoaderError, match=r"^segment boundary isn't page aligned \(0xffffffff80002010\)$"):
        compute_pv64_layout(_info(virt_kstart=KSTART + 0x10), 8192)


def test_virt_base_must_be_page_aligned() -> None:
    with pytest.raises(LoaderError, match=r"VIRT_BASE 0xffffffff80000800 is not page-aligned"):
        compute_pv64_layout(_info(virt_base=VIRT_BASE + 0x800), 8192)


def test_region_in_xens_reserved_range() -> None:
    with pytest.raises(LoaderError, match=r"overlaps Xen's reserved range"):
        compute_pv64_layout(_kernel(0xFFFF_8000_0000_0000, 0, PAGE_SIZE), 8192)


def test_region_must_be_canonical() -> None:
    with pytest.raises(LoaderError, match=r"not in canonical address space"):
        compute_pv64_layout(_kernel(0x7FFF_FFF0_0000, 0, 2 * MIB), 8192)


def test_kernel_at_address_zero() -> None:
    layout = compute_pv64_layout(_kernel(0, 0, 3 * PAGE_SIZE), 8192)
    assert layout.kernel.pfn == 0 and layout.regions[0].name == "kernel"
    _check_invariants(layout, 8192)


@settings(max_examples=120, deadline=None)
@given(
    virt_base=st.sampled_from(
        [0, 0x400000, 0x1234000, 0x7F_FFC0_0000, 0xFFFF_FFFF_8000_0000, 0xFFFF_C900_0000_3000, 0x3FE00000]
    ),
    pad_pages=st.integers(0, 700),
    kernel_bytes=st.integers(1, 40 * MIB),
    memory_mib=st.integers(4, 512),
    module_bytes=st.none() | st.integers(1, 8 * MIB),
)
def test_layout_invariants(
    virt_base: int, pad_pages: int, kernel_bytes: int, memory_mib: int, module_bytes: int | None
) -> None:
    """Property: for any kernel placement and memory size the layout keeps spec 7.2's invariants."""
    nr_pages = memory_mib * 256
    info = _kernel(virt_base, pad_pages, kernel_bytes)
    try:
        layout = compute_pv64_layout(info, nr_pages, module_nr_bytes=module_bytes)
    except LoaderError as error:
        assert str(error).startswith(("image needs", "bootstrap region"))
        return
    _check_invariants(layout, nr_pages)
