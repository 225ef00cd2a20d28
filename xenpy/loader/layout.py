"""The PV64 bootstrap virtual region, placed as libxenguest places it (spec 7.2, 7.5).

Implements the placement arithmetic of ``tools/libs/guest/xg_dom_core.c:xc_dom_build_image`` (with
``xc_dom_alloc_segment``, ``xc_dom_alloc_page``, ``xc_dom_alloc_pad``) and of ``xg_dom_x86.c``
(``alloc_p2m_list_x86_64``, ``alloc_magic_pages_pv``, ``alloc_pgtables_pv``, ``count_pgtables``) for an x86_64
PV domU, and the entry registers of ``vcpu_x86_64``. No memory is touched: :func:`compute_pv64_layout` only
says where everything goes; :mod:`xenpy.loader.builder` fills it in.

Invariants:

* The region starts at ``virt_base`` and pfn 0 and is mapped 1:1: ``pfn = (va - virt_base) >> 12``.
* Segments are page-aligned and packed in Xen's order: padding to ``virt_kstart``, kernel, modules (unless
  MOD_START_PFN asks for them unmapped), p2m list (unless INIT_P2M places it elsewhere), start_info, xenstore,
  console, page tables (L4 first, then L3s, L2s, L1s), boot stack, padding up to ``virt_pgtab_end``.
* ``virt_pgtab_end`` is 4 MiB aligned, strictly above the boot stack, with at least 512 KiB after it, and the
  page tables map exactly ``[virt_base, virt_pgtab_end)``.
* Unmapped modules and an INIT_P2M list (with its own page tables) follow the region, in that order.
* Everything fits in the domain's ``nr_pages``, or :class:`~xenpy.loader.errors.LoaderError` says by how much
  it does not.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenpy.abi.arch_x86 import HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START
from xenpy.abi.x86 import PAGE_OFFSET_MASK, PAGE_SHIFT, PAGE_SIZE
from xenpy.abi.xen import SIF
from xenpy.loader.decompress import XC_DOM_DECOMPRESS_MAX
from xenpy.loader.errors import LoaderError
from xenpy.loader.xen_notes import XenImageInfo

__all__ = [
    "BOOT_PADDING_NR_PAGES",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "BootLayout",
    "PageTableLevel",
    "PageTableMapping",
    "Region",
    "compute_pv64_layout",
    "count_pgtables",
]

_U64 = (1 << 64) - 1
#: ``bits_to_mask(VIRT_BITS_X86_64)``: page-table arithmetic works on 48-bit addresses.
VADDR_MASK = (1 << 48) - 1
PGTBL_LEVELS_X86_64 = 4
PGTBL_LEVEL_SHIFT_X86 = 9
#: ``alloc_pgtables_pv``: 512 KiB of mapped padding after the boot stack.
BOOT_PADDING_NR_PAGES = (512 * 1024) // PAGE_SIZE
#: ``bits_to_mask(22)``: the region ends on a 4 MiB boundary.
_ALIGN_4M_MASK = (1 << 22) - 1
#: ``sizeof(xen_pfn_t)`` of an x86_64 guest: one p2m entry.
P2M_ENTRY_SIZE = 8
_MIB = 1 << 20


def _pages(nr_bytes: int) -> int:
    return (nr_bytes + PAGE_SIZE - 1) >> PAGE_SHIFT


def _mib(nr_pages: int) -> str:
    nr_bytes = nr_pages * PAGE_SIZE
    return f"{nr_bytes // _MIB} MiB" if nr_bytes % _MIB == 0 else f"{nr_bytes / _MIB:.2f} MiB"


# --------------------------------------------------------------------------------------------- page tables


@dataclass(frozen=True)
class PageTableLevel:
    """The tables of one level for one mapping (``struct xc_dom_x86_mapping_lvl``).

    Attributes:
        level: 4 (L4) .. 1 (L1).
        gva_from, gva_to: the 48-bit address range the level's tables cover (inclusive; both 0 when none).
        pfn: pfn of the first table of this level.
        nr_tables: number of tables.
    """

    level: int
    gva_from: int
    gva_to: int
    pfn: int
    nr_tables: int


@dataclass(frozen=True)
class PageTableMapping:
    """One virtual range mapped by the bootstrap page tables (``struct xc_dom_x86_mapping``).

    Attributes:
        gva_from, gva_to: the mapped range, 48-bit masked, inclusive.
        pfn: pfn mapped at ``gva_from``; consecutive pages map consecutive pfns.
        levels: the tables, L4 first (``levels[0].level == 4``).
        nr_tables: tables of all levels.
    """

    gva_from: int
    gva_to: int
    pfn: int
    levels: tuple[PageTableLevel, ...]
    nr_tables: int

    def level(self, level: int) -> PageTableLevel:
        """The tables of ``level`` (4..1)."""
        return self.levels[PGTBL_LEVELS_X86_64 - level]

    @property
    def table_pfns(self) -> range:
        """pfns of all this mapping's tables (they are consecutive, L4/L3s/L2s/L1s)."""
        return range(self.levels[0].pfn, self.levels[0].pfn + self.nr_tables)


def count_pgtables(
    existing: tuple[PageTableMapping, ...],
    gva_from: int,
    gva_to: int,
    pfn: int,
    table_pfn: int,
) -> PageTableMapping:
    """``count_pgtables``: the tables a new mapping of ``[gva_from, gva_to]`` needs, after ``existing`` ones.

    The first mapping gets the one L4. At each lower level the mapping needs one table per 512 GiB (L3),
    1 GiB (L2) or 2 MiB (L1) slot of its range, minus the slots an existing mapping's tables already cover at
    either end of the range.

    Args:
        existing: mappings already laid out (the first one owns the L4).
        gva_from, gva_to: the new range (``gva_to`` inclusive); masked to 48 bits.
        pfn: pfn mapped at ``gva_from``.
        table_pfn: pfn of the first new table.
    """
    area_from = gva_from & VADDR_MASK
    area_to = gva_to & VADDR_MASK
    levels: list[PageTableLevel] = []
    nr_tables = 0
    for l_index in range(PGTBL_LEVELS_X86_64 - 1, -1, -1):  # Xen's l: 3 (L4) .. 0 (L1)
        level = l_index + 1
        lvl_pfn = table_pfn + nr_tables
        if l_index == PGTBL_LEVELS_X86_64 - 1:
            if existing:
                levels.append(PageTableLevel(level, 0, 0, lvl_pfn, 0))
            else:
                levels.append(PageTableLevel(level, 0, VADDR_MASK, lvl_pfn, 1))
                nr_tables += 1
            continue
        bits = PAGE_SHIFT + (l_index + 1) * PGTBL_LEVEL_SHIFT_X86
        mask = (1 << bits) - 1
        lvl_from = area_from & ~mask
        lvl_to = area_to | mask
        for other in existing:
            cmp = other.level(level)
            if cmp.gva_from == cmp.gva_to:
                continue
            if lvl_from >= cmp.gva_from and lvl_to <= cmp.gva_to:
                lvl_from = lvl_to = 0
                break
            if cmp.gva_from <= lvl_from <= cmp.gva_to:
                lvl_from = cmp.gva_to + 1
            if cmp.gva_from <= lvl_to <= cmp.gva_to:
                lvl_to = cmp.gva_from - 1
        count = ((lvl_to - lvl_from) >> bits) + 1 if lvl_from < lvl_to else 0
        levels.append(PageTableLevel(level, lvl_from, lvl_to, lvl_pfn, count))
        nr_tables += count
    return PageTableMapping(area_from, area_to, pfn, tuple(levels), nr_tables)


# --------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Region:
    """One page-aligned piece of the domain's memory.

    Attributes:
        name: ``"padding"``, ``"kernel"``, ``"module"``, ``"p2m"``, ``"start_info"``, ``"xenstore"``,
            ``"console"``, ``"page tables"``, ``"boot stack"``.
        pfn: first pfn.
        nr_pages: size in pages.
        gva: virtual address of ``pfn``, or None for memory outside the mapped region (an unmapped module).
    """

    name: str
    pfn: int
    nr_pages: int
    gva: int | None

    @property
    def pfn_end(self) -> int:
        """First pfn after the region."""
        return self.pfn + self.nr_pages

    @property
    def gva_end(self) -> int | None:
        """First address after the region (None if unmapped)."""
        return None if self.gva is None else self.gva + self.nr_pages * PAGE_SIZE

    @property
    def nr_bytes(self) -> int:
        """Size in bytes."""
        return self.nr_pages * PAGE_SIZE


@dataclass(frozen=True)
class BootLayout:
    """Where libxenguest puts everything of a PV64 domU, and the vCPU 0 entry registers (spec 7.2, 7.5).

    Attributes:
        nr_pages: the domain's memory (``total_pages`` and ``p2m_size``).
        virt_base: start of the bootstrap region (pfn 0).
        virt_kstart, virt_kend: the kernel image's range.
        regions: every allocated piece, in pfn order (paddings included).
        kernel, module, p2m, start_info, xenstore, console, pgtables, boot_stack: the named regions
            (``module`` None without one).
        virt_alloc_end: the allocation cursor after the boot stack.
        virt_pgtab_end: end of the mapped region (4 MiB aligned).
        mappings: the page-table mappings; ``mappings[0]`` is the region, ``mappings[1]`` the INIT_P2M list.
        nr_pt_frames: tables of the region's mapping (``start_info.nr_pt_frames``).
        mfn_list: VA of the p2m list (``start_info.mfn_list``).
        mod_start, mod_len: ``start_info.mod_start``/``mod_len``: the module's VA and length in bytes, or, when
            it is unmapped (SIF_MOD_START_PFN), its pfn and length in whole pages; 0 without a module. A mapped
            module's length is page-rounded too where ``module_len_exact`` was False (Xen before 4.19).
        first_p2m_pfn, nr_p2m_frames: INIT_P2M only (else 0): the p2m segment including its own tables.
        sif_flags: ``start_info.flags`` bits the layout implies (``SIF_MOD_START_PFN``).
        nr_pages_used: pfns ``0..nr_pages_used-1`` are allocated.
        rip, rsi, rsp: entry registers (spec 7.5).
    """

    nr_pages: int
    virt_base: int
    virt_kstart: int
    virt_kend: int
    regions: tuple[Region, ...]
    kernel: Region
    module: Region | None
    p2m: Region
    start_info: Region
    xenstore: Region
    console: Region
    pgtables: Region
    boot_stack: Region
    virt_alloc_end: int
    virt_pgtab_end: int
    mappings: tuple[PageTableMapping, ...]
    nr_pt_frames: int
    mfn_list: int
    mod_start: int
    mod_len: int
    first_p2m_pfn: int
    nr_p2m_frames: int
    sif_flags: int
    nr_pages_used: int
    rip: int
    rsi: int
    rsp: int

    @property
    def region_nr_pages(self) -> int:
        """Pages of the mapped bootstrap region ``[virt_base, virt_pgtab_end)``."""
        return (self.virt_pgtab_end - self.virt_base) >> PAGE_SHIFT

    @property
    def start_info_pfn(self) -> int:
        """pfn of the start_info page."""
        return self.start_info.pfn

    @property
    def xenstore_pfn(self) -> int:
        """pfn of the xenstore ring page."""
        return self.xenstore.pfn

    @property
    def console_pfn(self) -> int:
        """pfn of the console ring page."""
        return self.console.pfn

    @property
    def bootstack_pfn(self) -> int:
        """pfn of the boot stack page."""
        return self.boot_stack.pfn

    @property
    def pt_base(self) -> int:
        """VA of the L4 (``start_info.pt_base``)."""
        assert self.pgtables.gva is not None
        return self.pgtables.gva

    @property
    def l4_pfn(self) -> int:
        """pfn of the L4 (the first page-table page)."""
        return self.pgtables.pfn

    def pfn_of(self, gva: int) -> int:
        """pfn of an address of the bootstrap region.

        Raises:
            ValueError: ``gva`` is outside ``[virt_base, virt_pgtab_end)``.
        """
        if not self.virt_base <= gva < self.virt_pgtab_end:
            raise ValueError(
                f"gva {gva:#x} is outside the bootstrap region {self.virt_base:#x}-{self.virt_pgtab_end:#x}"
            )
        return (gva - self.virt_base) >> PAGE_SHIFT

    def gva_of(self, pfn: int) -> int:
        """VA of a pfn of the bootstrap region (``ValueError`` outside it)."""
        if not 0 <= pfn < self.region_nr_pages:
            raise ValueError(f"pfn {pfn:#x} is outside the bootstrap region ({self.region_nr_pages} pages)")
        return self.virt_base + (pfn << PAGE_SHIFT)


class _Allocator:
    """libxenguest's two cursors: ``virt_alloc_end`` and ``pfn_alloc_end``."""

    def __init__(self, virt_base: int) -> None:
        self.virt_alloc_end = virt_base
        self.pfn_alloc_end = 0
        self.regions: list[Region] = []

    def alloc(self, name: str, nr_pages: int, *, mapped: bool = True) -> Region:
        region = Region(name, self.pfn_alloc_end, nr_pages, self.virt_alloc_end if mapped else None)
        if nr_pages:
            self.regions.append(region)
        self.pfn_alloc_end += nr_pages
        self.virt_alloc_end += nr_pages * PAGE_SIZE
        return region

    def pad_to(self, boundary: int) -> None:
        """``xc_dom_alloc_pad``."""
        if boundary & PAGE_OFFSET_MASK:
            raise LoaderError(f"segment boundary isn't page aligned ({boundary:#x})")
        if boundary < self.virt_alloc_end:
            raise LoaderError(f"segment boundary too low ({boundary:#x} < {self.virt_alloc_end:#x})")
        self.alloc("padding", (boundary - self.virt_alloc_end) >> PAGE_SHIFT)


def _check_mappable(what: str, gva_from: int, gva_end: int) -> None:
    """The range must be canonical and outside Xen's reserved hole (Xen refuses such L4 entries)."""
    last = gva_end - 1
    if gva_end > _U64 + 1:
        raise LoaderError(f"{what} {gva_from:#x}-{gva_end:#x} runs past the top of the address space")
    lower_end = 1 << 47
    upper_start = _U64 + 1 - lower_end
    if not (last < lower_end or gva_from >= upper_start):
        raise LoaderError(f"{what} {gva_from:#x}-{gva_end:#x} is not in canonical address space")
    if gva_from < HYPERVISOR_VIRT_END and last >= HYPERVISOR_VIRT_START:
        raise LoaderError(
            f"{what} {gva_from:#x}-{gva_end:#x} overlaps Xen's reserved range "
            f"{HYPERVISOR_VIRT_START:#x}-{HYPERVISOR_VIRT_END:#x}"
        )


def compute_pv64_layout(
    info: XenImageInfo, nr_pages: int, *, module_nr_bytes: int | None = None, module_len_exact: bool = True
) -> BootLayout:
    """Place a PV64 domU's bootstrap region as ``xc_dom_build_image`` does (spec 7.2).

    Args:
        info: the kernel's parsed notes and addresses.
        nr_pages: the domain's memory in pages (every pfn ``0..nr_pages-1`` is populated).
        module_nr_bytes: size of the module (initrd), or None for none.
        module_len_exact: a mapped module's ``mod_len`` is its size in bytes (the profile field of that name,
            Xen 4.19 and the stable backports), else its size rounded up to whole pages.

    Returns:
        The layout and the entry registers.

    Raises:
        LoaderError: ``virt_base`` or ``virt_kstart`` not page-aligned; an empty module, or one larger than
            libxenguest's ``max_module_size`` (1 GiB, "module 0 image too large"); a region that is not
            canonical or touches Xen's reserved range; or the whole does not fit in ``nr_pages`` ("image needs
            N MiB of bootstrap region, domain has M MiB").
    """
    if nr_pages <= 0:
        raise LoaderError(f"the domain has no memory (nr_pages {nr_pages})")
    if module_nr_bytes is not None and module_nr_bytes <= 0:
        raise LoaderError("the module (initrd) is empty")
    if module_nr_bytes is not None and module_nr_bytes > XC_DOM_DECOMPRESS_MAX:
        raise LoaderError(f"module 0 image too large ({module_nr_bytes} bytes, the limit is {XC_DOM_DECOMPRESS_MAX})")
    virt_base = info.virt_base
    if virt_base & PAGE_OFFSET_MASK:
        raise LoaderError(f"VIRT_BASE {virt_base:#x} is not page-aligned")
    kstart, kend = info.virt_kstart, info.virt_kend
    alloc = _Allocator(virt_base)

    # 1. The kernel, after padding from virt_base (xc_dom_alloc_segment with vstart = virt_kstart).
    if kstart:
        alloc.pad_to(kstart)
    kernel = alloc.alloc("kernel", _pages(kend - kstart))

    # 2. A module inside the mapped region unless MOD_START_PFN asks for it unmapped.
    module: Region | None = None
    mod_start = mod_len = 0
    sif_flags = 0
    unmapped_module = module_nr_bytes is not None and info.unmapped_initrd
    if module_nr_bytes is not None and not unmapped_module:
        module = alloc.alloc("module", _pages(module_nr_bytes))
        assert module.gva is not None
        mod_start = module.gva
        mod_len = module_nr_bytes if module_len_exact else module.nr_bytes

    # 3. The p2m list, here unless INIT_P2M gives a usable address (below virt_base, page-aligned).
    p2m_nr_pages = _pages(nr_pages * P2M_ENTRY_SIZE)
    p2m_base = info.p2m_base
    if p2m_base is not None and (p2m_base >= virt_base or p2m_base & PAGE_OFFSET_MASK):
        p2m_base = None
    p2m: Region | None = None
    if p2m_base is None:
        p2m = alloc.alloc("p2m", p2m_nr_pages)

    # 4. The magic pages.
    start_info = alloc.alloc("start_info", 1)
    xenstore = alloc.alloc("xenstore", 1)
    console = alloc.alloc("console", 1)

    # 5. Page tables for [virt_base, try_end], growing until they and the extra pages fit below try_end.
    extra = 1 + BOOT_PADDING_NR_PAGES
    pages = extra
    while True:
        try_end = (alloc.virt_alloc_end + pages * PAGE_SIZE) | _ALIGN_4M_MASK
        mapping = count_pgtables((), virt_base, try_end, 0, alloc.pfn_alloc_end)
        pages = mapping.nr_tables + extra
        if alloc.virt_alloc_end + pages * PAGE_SIZE <= try_end + 1:
            break
    virt_pgtab_end = try_end + 1
    _check_mappable("bootstrap region", virt_base, virt_pgtab_end)
    pgtables = alloc.alloc("page tables", mapping.nr_tables)

    # 6. The boot stack, then padding to the 4 MiB boundary (the whole mapped range is backed).
    boot_stack = alloc.alloc("boot stack", 1)
    virt_alloc_end = alloc.virt_alloc_end
    alloc.pad_to(virt_pgtab_end)
    region_nr_pages = alloc.pfn_alloc_end
    if region_nr_pages > nr_pages:
        raise LoaderError(
            f"image needs {_mib(region_nr_pages)} of bootstrap region ({region_nr_pages} pages from "
            f"VIRT_BASE {virt_base:#x} to {virt_pgtab_end:#x}), domain has {_mib(nr_pages)} "
            f"({nr_pages} pages)"
        )

    # 7. After the region: an unmapped module, then an INIT_P2M list with its own page tables.
    if unmapped_module:
        assert module_nr_bytes is not None
        module = alloc.alloc("module", _pages(module_nr_bytes), mapped=False)
        mod_start, mod_len = module.pfn, module.nr_bytes
        sif_flags |= SIF.SIF_MOD_START_PFN
    mappings = (mapping,)
    first_p2m_pfn = nr_p2m_frames = 0
    if p2m_base is None:
        assert p2m is not None and p2m.gva is not None
        mfn_list = p2m.gva
    else:
        p2m_end = p2m_base + p2m_nr_pages * PAGE_SIZE
        _check_mappable("INIT_P2M list", p2m_base, p2m_end)
        if p2m_end > virt_base:
            raise LoaderError(
                f"INIT_P2M list {p2m_base:#x}-{p2m_end:#x} overlaps the bootstrap region at {virt_base:#x}"
            )
        first_p2m_pfn = alloc.pfn_alloc_end
        if first_p2m_pfn + p2m_nr_pages > nr_pages:
            raise LoaderError(
                f"not enough memory for the INIT_P2M list: it needs pfns {first_p2m_pfn:#x}-"
                f"{first_p2m_pfn + p2m_nr_pages - 1:#x}, domain has {nr_pages} pages ({_mib(nr_pages)})"
            )
        p2m_mapping = count_pgtables(
            mappings, p2m_base, p2m_end - 1, first_p2m_pfn, first_p2m_pfn + p2m_nr_pages
        )
        mappings = (mapping, p2m_mapping)
        nr_p2m_frames = p2m_nr_pages + p2m_mapping.nr_tables
        p2m = Region("p2m", first_p2m_pfn, p2m_nr_pages, p2m_base)
        alloc.regions.append(p2m)
        if p2m_mapping.nr_tables:
            alloc.regions.append(
                Region("p2m page tables", first_p2m_pfn + p2m_nr_pages, p2m_mapping.nr_tables, None)
            )
        alloc.pfn_alloc_end += nr_p2m_frames
        mfn_list = p2m_base
    if alloc.pfn_alloc_end > nr_pages:
        raise LoaderError(
            f"image needs {_mib(alloc.pfn_alloc_end)} ({alloc.pfn_alloc_end} pages: {region_nr_pages} of "
            f"bootstrap region, then {alloc.pfn_alloc_end - region_nr_pages} for the module and the p2m "
            f"list), domain has {_mib(nr_pages)} ({nr_pages} pages)"
        )
    assert p2m is not None

    return BootLayout(
        nr_pages=nr_pages,
        virt_base=virt_base,
        virt_kstart=kstart,
        virt_kend=kend,
        regions=tuple(alloc.regions),
        kernel=kernel,
        module=module,
        p2m=p2m,
        start_info=start_info,
        xenstore=xenstore,
        console=console,
        pgtables=pgtables,
        boot_stack=boot_stack,
        virt_alloc_end=virt_alloc_end,
        virt_pgtab_end=virt_pgtab_end,
        mappings=mappings,
        nr_pt_frames=mapping.nr_tables,
        mfn_list=mfn_list,
        mod_start=mod_start,
        mod_len=mod_len,
        first_p2m_pfn=first_p2m_pfn,
        nr_p2m_frames=nr_p2m_frames,
        sif_flags=int(sif_flags),
        nr_pages_used=alloc.pfn_alloc_end,
        rip=info.virt_entry,
        rsi=virt_base + start_info.pfn * PAGE_SIZE,
        rsp=virt_base + (boot_stack.pfn + 1) * PAGE_SIZE,
    )
