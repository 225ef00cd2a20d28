"""PV64 domain builders: lay a domain's memory out and give vCPU 0 its entry state (spec 7.2-7.5).

Two builders, one result shape (:class:`AddressSpace` plus vCPU 0's context), consumed by one path
(:meth:`xenpy.hypervisor.Hypervisor.create_domain`):

* :func:`build_pv64_domain`: from a kernel image, as libxenguest does (below);
* :func:`build_flat_pv64_domain`: the test layout of the Python API, every page mapped at
  :data:`GUEST_VIRT_BASE` and the free pages handed out by ``Domain.alloc_guest``.

The image builder implements, for an x86_64 PV domU:
``xc_dom_build_image`` (load the kernel's PT_LOAD segments with bss zeroed,
the module, the p2m list), ``alloc_magic_pages_pv`` (clear the xenstore and console pages),
``setup_pgtables_x86_64`` / ``setup_pgtables_pv`` (page tables), ``start_info_x86_64``,
``setup_hypercall_page`` with Xen's ``XEN_DOMCTL_hypercall_init`` / ``pv_ring3_init_hypercall_page``,
``bootlate_pv`` (pin the L4) and ``vcpu_x86_64`` (vCPU 0's entry context). Placement comes from
:mod:`xenpy.loader.layout`.

Invariants:

* Only the domain's own frames are written, through :class:`~xenpy.core.memory.DomainMemory` (by pfn).
* Every allocated segment is zeroed before it is filled, as ``xc_dom_alloc_segment`` does; the xenstore and
  console pages are zero (``xc_clear_domain_page``); the console ring's indices are therefore 0.
* The page tables map ``[virt_base, virt_pgtab_end)`` 1:1 onto pfns (and an INIT_P2M list at its address);
  page-table frames are mapped read-only and typed ``PageType.l4``..``l1``; every other mapped frame is
  writable and typed ``PageType.writable``; the L4's one type reference is the builder's pin
  (MMUEXT_PIN_L4_TABLE), as every other table's is the entry that maps it.
* The vCPU 0 context is returned, not loaded: the caller gives it to ``arch_set_info_guest`` (as the
  toolstack's DOMCTL_setvcpucontext does), which validates it and takes its own cr3 reference.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from xenpy.abi import x86_64
from xenpy.abi.cstruct import fast_codec
from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import HYPERCALL_STUB_COUNT, HYPERCALL_STUB_SIZE, Hypercall
from xenpy.core.memory import PAGE_SHIFT, PAGE_SIZE, DomainMemory, PageType
from xenpy.core.pagetable import PageTableBuilder
from xenpy.core.vcpu_context import pv64_entry_context
from xenpy.loader.errors import LoaderError
from xenpy.loader.layout import BootLayout, PageTableMapping, compute_pv64_layout
from xenpy.loader.xen_notes import XenImageInfo

__all__ = [
    "GUEST_VIRT_BASE",
    "MAX_GUEST_CMDLINE",
    "AddressSpace",
    "BuiltDomain",
    "FlatDomain",
    "build_flat_pv64_domain",
    "build_pv64_domain",
    "init_hypercall_page",
]

#: ``MAX_GUEST_CMDLINE``: size of ``start_info.cmd_line`` (the string keeps at most 1023 bytes and a NUL).
MAX_GUEST_CMDLINE = 1024
#: Where the flat builder maps a domain's memory (Linux's ``__START_KERNEL_map``): ``gva = GUEST_VIRT_BASE +
#: pfn * 4096``.
GUEST_VIRT_BASE = 0xFFFF_FFFF_8000_0000
_U64 = (1 << 64) - 1


def init_hypercall_page() -> bytes:
    """The PV64 hypercall page as Xen's ``init_hypercall_page`` writes it (spec 7.3).

    The page is filled with ``0xCC`` (int3); stub ``i`` at ``32 * i`` is ``push %rcx; push %r11; mov $i,%eax;
    syscall; pop %r11; pop %rcx; ret``. Stub 23 (iret) is ``push %rcx; push %r11; push %rax; mov $23,%eax;
    syscall``: the guest jumps to it with an ``iret_context`` on its stack and it never returns.
    """
    page = bytearray(b"\xcc" * PAGE_SIZE)
    for i in range(HYPERCALL_STUB_COUNT):
        if i == Hypercall.iret:
            stub = b"\x51\x41\x53\x50\xb8" + i.to_bytes(4, "little") + b"\x0f\x05"
        else:
            stub = b"\x51\x41\x53\xb8" + i.to_bytes(4, "little") + b"\x0f\x05\x41\x5b\x59\xc3"
        page[HYPERCALL_STUB_SIZE * i : HYPERCALL_STUB_SIZE * i + len(stub)] = stub
    return bytes(page)


@dataclass(frozen=True)
class AddressSpace:
    """The bootstrap address space a builder made, for ``Domain.set_address_space``.

    Attributes:
        pagetables: the page-table builder holding the bootstrap tables (its L4 is vCPU 0's cr3).
        virt_base: start of the domain's mapping (pfn 0).
        alloc_start, alloc_end: guest virtual range ``Domain.alloc_guest`` hands out (empty: none).
    """

    pagetables: PageTableBuilder
    virt_base: int
    alloc_start: int = 0
    alloc_end: int = 0


@dataclass(frozen=True)
class FlatDomain:
    """What :func:`build_flat_pv64_domain` made: the address space and vCPU 0's context."""

    address_space: AddressSpace
    vcpu_context: dict[str, Any]


def build_flat_pv64_domain(memory: DomainMemory) -> FlatDomain:
    """The Python API's test layout: every page mapped at ``GUEST_VIRT_BASE + pfn * 4096``.

    Page tables take the highest pfns (mapped read-only); pfn 0 is the boot stack; the pages between are free
    for ``Domain.alloc_guest``. vCPU 0 enters at ``GUEST_VIRT_BASE`` with rsp at the top of pfn 0, rsi 0 and
    cr3 the L4 (spec 7.5, ``xg_dom_x86.c:vcpu_x86_64``).
    """
    nr_pages = memory.nr_pages
    builder = PageTableBuilder(memory, range(nr_pages - 1, -1, -1))
    builder.ensure_tables(GUEST_VIRT_BASE, nr_pages)
    tables = set(builder.table_pfns())
    builder.map_pages(GUEST_VIRT_BASE, range(nr_pages), writable=[pfn not in tables for pfn in range(nr_pages)])
    space = AddressSpace(
        builder,
        GUEST_VIRT_BASE,
        alloc_start=GUEST_VIRT_BASE + PAGE_SIZE,
        alloc_end=GUEST_VIRT_BASE + min(tables) * PAGE_SIZE,
    )
    stack_top = GUEST_VIRT_BASE + PAGE_SIZE
    return FlatDomain(space, pv64_entry_context(rip=GUEST_VIRT_BASE, rsp=stack_top, rsi=0, cr3=builder.cr3))


@dataclass(frozen=True)
class BuiltDomain:
    """What :func:`build_pv64_domain` made.

    Attributes:
        info: the kernel's notes and addresses.
        layout: where everything is (pfns, VAs, entry registers).
        pagetables: the page-table builder holding the domain's bootstrap tables (for ``Domain.pagetables``).
        cr3: ``l4_mfn << 12``.
        start_info: the ``start_info`` values written, as a construct build dict (``console`` holds
            ``{"domU": {...}}``).
        store_mfn, console_mfn: machine frames of the xenstore and console rings.
        hypercall_page_pfn: pfn Xen wrote the hypercall page into, or None (no HYPERCALL_PAGE note).
        vcpu_context: vCPU 0's ``vcpu_guest_context`` as flattened field values (``"user_regs.rip"``,
            ``"ctrlreg[3]"``, ...; absent fields are 0), ready for ``pack_vcpu_guest_context``.
    """

    info: XenImageInfo
    layout: BootLayout
    pagetables: PageTableBuilder
    cr3: int
    start_info: dict[str, Any]
    store_mfn: int
    console_mfn: int
    hypercall_page_pfn: int | None
    vcpu_context: dict[str, Any]

    @property
    def address_space(self) -> AddressSpace:
        """The bootstrap address space (no ``alloc_guest`` range: the guest owns its memory)."""
        return AddressSpace(self.pagetables, self.layout.virt_base)


def _fill_pages(memory: DomainMemory, first_pfn: int, nr_pages: int,
                pieces: Iterable[tuple[int, bytes | np.ndarray]] = ()) -> None:  # fmt: skip
    """Pages ``first_pfn..first_pfn+nr_pages-1`` zeroed, then each ``(offset, data)`` of ``pieces`` written at its
    byte offset from the first page's start, in order: one write into the pages' frames."""
    image = np.zeros(nr_pages * PAGE_SIZE, dtype=np.uint8)
    for offset, data in pieces:
        chunk = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8)
        if offset < 0 or offset + len(chunk) > len(image):
            raise ValueError(f"{len(chunk)} bytes at {offset:#x} run past {nr_pages} pages")
        image[offset : offset + len(chunk)] = chunk
    if first_pfn < 0 or first_pfn + nr_pages > memory.nr_pages:
        raise ValueError(f"pfns {first_pfn:#x}+{nr_pages} outside domain {memory.domid}")
    memory.machine.frames[memory.p2m.mfns[first_pfn : first_pfn + nr_pages]] = image.reshape(nr_pages, PAGE_SIZE)


def _load_kernel(memory: DomainMemory, info: XenImageInfo, layout: BootLayout) -> None:
    """``elf_load_binary``: each loadable segment at ``kernel + (p_paddr - pstart)``, bss zeroed."""
    kernel = layout.kernel
    pieces: list[tuple[int, bytes | np.ndarray]] = []
    for ph in info.elf.loadable_segments:
        offset = ph.p_paddr - info.pstart
        pieces.append((offset, info.elf.segment_data(ph)))
        bss = ph.p_memsz - ph.p_filesz
        if bss:
            pieces.append((offset + ph.p_filesz, bytes(bss)))
    _fill_pages(memory, kernel.pfn, kernel.nr_pages, pieces)


def _check_tables(builder: PageTableBuilder, mapping: PageTableMapping, what: str) -> None:
    """The tables the builder made are the ones the layout counted, at the same pfns, level by level."""
    made = {level: builder.table_pfns(level) for level in (4, 3, 2, 1)}
    for lvl in mapping.levels:
        expected = list(range(lvl.pfn, lvl.pfn + lvl.nr_tables))
        got = [pfn for pfn in made[lvl.level] if pfn in mapping.table_pfns]
        if got != expected:
            raise AssertionError(f"{what}: L{lvl.level} tables at pfns {got}, layout expects {expected}")


def _build_page_tables(memory: DomainMemory, layout: BootLayout) -> PageTableBuilder:
    """``setup_pgtables_pv``: tables at the layout's pfns; each mapping's pages mapped, tables read-only."""
    main = layout.mappings[0]
    table_pfns = itertools.chain.from_iterable(m.table_pfns for m in layout.mappings)
    builder = PageTableBuilder(memory, table_pfns)
    region_nr_pages = layout.region_nr_pages
    builder.ensure_tables(layout.virt_base, region_nr_pages)
    _check_tables(builder, main, "bootstrap region")
    read_only = {pfn for m in layout.mappings for pfn in m.table_pfns}
    builder.map_pages(layout.virt_base, range(region_nr_pages),
                      writable=[pfn not in read_only for pfn in range(region_nr_pages)])
    if len(layout.mappings) > 1:
        p2m = layout.p2m
        assert p2m.gva is not None
        builder.ensure_tables(p2m.gva, p2m.nr_pages)
        _check_tables(builder, layout.mappings[1], "INIT_P2M list")
        builder.map_pages(p2m.gva, range(p2m.pfn, p2m.pfn + p2m.nr_pages), writable=True)
    if builder.nr_table_frames != sum(m.nr_tables for m in layout.mappings):
        raise AssertionError(
            f"page-table builder made {builder.nr_table_frames} tables, layout counted "
            f"{sum(m.nr_tables for m in layout.mappings)}"
        )
    return builder


def _setup_hypercall_page(memory: DomainMemory, info: XenImageInfo) -> int | None:
    """``setup_hypercall_page`` + Xen's ``XEN_DOMCTL_hypercall_init``."""
    if info.virt_hypercall is None:
        return None
    pfn = ((info.virt_hypercall - info.virt_base) & _U64) >> PAGE_SHIFT
    if pfn >= memory.nr_pages:
        raise LoaderError(
            f"HYPERCALL_INIT failed: {-XenErrno.EINVAL} (-EINVAL): HYPERCALL_PAGE {info.virt_hypercall:#x} "
            f"is pfn {pfn:#x}, outside the domain's {memory.nr_pages} pages"
        )
    mfn = memory.mfn_of(pfn)
    machine = memory.machine
    if not machine.get_page_type(mfn, PageType.writable):
        raise LoaderError(
            f"HYPERCALL_INIT failed: {-XenErrno.EPERM} (-EPERM): HYPERCALL_PAGE {info.virt_hypercall:#x} "
            f"(pfn {pfn:#x}) is a {machine.page_type(mfn).name} page, not writable"
        )
    try:
        memory.write_pfn(pfn, init_hypercall_page())
    finally:
        machine.put_page_type(mfn)
    return pfn


def _start_info(
    memory: DomainMemory,
    info: XenImageInfo,
    layout: BootLayout,
    *,
    shared_info_mfn: int,
    cmdline: bytes,
    flags: int,
    store_evtchn: int,
    console_evtchn: int,
    has_module: bool,
) -> dict[str, Any]:
    """``start_info_x86_64`` (spec 7.2 table)."""
    cmd = cmdline.split(b"\0", 1)[0][: MAX_GUEST_CMDLINE - 1]
    init_p2m = len(layout.mappings) > 1
    return {
        "magic": info.guest_type.encode()[:31].ljust(32, b"\0"),
        "nr_pages": memory.nr_pages,
        "shared_info": shared_info_mfn << PAGE_SHIFT,
        "flags": flags | layout.sif_flags,
        "store_mfn": memory.mfn_of(layout.xenstore_pfn),
        "store_evtchn": store_evtchn,
        "console": {"domU": {"mfn": memory.mfn_of(layout.console_pfn), "evtchn": console_evtchn}},
        "pt_base": layout.pt_base,
        "nr_pt_frames": layout.nr_pt_frames,
        "mfn_list": layout.mfn_list,
        "mod_start": layout.mod_start if has_module else 0,
        "mod_len": layout.mod_len if has_module else 0,
        "cmd_line": cmd.ljust(MAX_GUEST_CMDLINE, b"\0"),
        "first_p2m_pfn": layout.first_p2m_pfn if init_p2m else 0,
        "nr_p2m_frames": layout.nr_p2m_frames if init_p2m else 0,
    }


def start_info_bytes(start_info: dict[str, Any]) -> bytes:
    """The bytes of ``start_info`` (the values :func:`_start_info` gives, its console union as the domU member),
    as ``x86_64.start_info.build`` makes them."""
    codec = fast_codec(x86_64.start_info, {"console": "domU"})
    console = start_info["console"]["domU"]
    values = {**start_info, "console.domU.mfn": console["mfn"], "console.domU.evtchn": console["evtchn"]}
    return codec.pack(*(values[name] for name in codec.names))


def build_pv64_domain(
    memory: DomainMemory,
    info: XenImageInfo,
    *,
    shared_info_mfn: int,
    cmdline: str | bytes = b"",
    module: bytes | None = None,
    module_len_exact: bool = True,
    flags: int = 0,
    store_evtchn: int = 0,
    console_evtchn: int = 0,
) -> BuiltDomain:
    """Build a PV64 domU's initial memory from a parsed kernel (spec 7.2-7.5).

    In libxenguest's order: load the kernel (and module), write the p2m list, clear the xenstore and console
    pages, build the page tables, write start_info, have "Xen" write the hypercall page, pin the L4, and
    compute vCPU 0's entry context.

    Args:
        memory: the domain's memory (all ``nr_pages`` frames; the frames are expected fresh, i.e. untyped).
        info: the kernel (from :func:`~xenpy.loader.xen_notes.read_pv_image`).
        shared_info_mfn: machine frame of the domain's shared_info (``start_info.shared_info`` is its
            address).
        cmdline: the kernel command line (cut to 1023 bytes, as ``strncpy`` into ``cmd_line[1024]`` does).
        module: the initrd, or None.
        module_len_exact: ``start_info.mod_len`` of a mapped module is its exact size (the profile field),
            else its size in whole pages.
        flags: ``start_info.flags`` from the toolstack (libxl passes 0); SIF_MOD_START_PFN is added when the
            module is left unmapped.
        store_evtchn, console_evtchn: event channels of the xenstore and console rings.

    Returns:
        The layout, the page tables, what start_info holds, and vCPU 0's context.

    Raises:
        LoaderError: the image does not fit the domain, or XEN_DOMCTL_hypercall_init would fail (the page is
            outside the domain: -EINVAL; not writable, e.g. a page table: -EPERM).
    """
    if isinstance(cmdline, str):
        cmdline = cmdline.encode()
    layout = compute_pv64_layout(
        info,
        memory.nr_pages,
        module_nr_bytes=None if module is None else len(module),
        module_len_exact=module_len_exact,
    )

    # xc_dom_build_image: kernel, module, p2m list; alloc_magic_pages_pv clears the rings.
    _load_kernel(memory, info, layout)
    if module is not None:
        assert layout.module is not None
        _fill_pages(memory, layout.module.pfn, layout.module.nr_pages, [(0, module)])
    p2m = layout.p2m
    _fill_pages(memory, p2m.pfn, p2m.nr_pages, [(0, memory.p2m.mfns.astype("<u8"))])
    for pfn in (layout.start_info_pfn, layout.xenstore_pfn, layout.console_pfn, layout.bootstack_pfn):
        memory.zero_pfn(pfn)

    # xc_dom_boot_image: page tables, start_info, hypercall page, pin (bootlate), vCPU context.
    builder = _build_page_tables(memory, layout)
    start_info = _start_info(
        memory,
        info,
        layout,
        shared_info_mfn=shared_info_mfn,
        cmdline=cmdline,
        flags=flags,
        store_evtchn=store_evtchn,
        console_evtchn=console_evtchn,
        has_module=module is not None,
    )
    memory.write_pfn(layout.start_info_pfn, start_info_bytes(start_info))
    hypercall_pfn = _setup_hypercall_page(memory, info)
    return BuiltDomain(
        info=info,
        layout=layout,
        pagetables=builder,
        cr3=builder.cr3,
        start_info=start_info,
        store_mfn=start_info["store_mfn"],
        console_mfn=start_info["console"]["domU"]["mfn"],
        hypercall_page_pfn=hypercall_pfn,
        vcpu_context=pv64_entry_context(rip=layout.rip, rsp=layout.rsp, rsi=layout.rsi, cr3=builder.cr3),
    )
