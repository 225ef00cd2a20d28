"""``xenpy inspect``: what the PV domain builder reads from a kernel image and where it would put everything.

    xenpy inspect IMAGE [--memory MiB] [--initrd FILE] [--profile NAME]

Prints the container (ELF, gzipped ELF, or a Linux bzImage and its payload), the ELF class and machine, the
loadable segments, the Xen notes, the addresses Xen derives from them (spec 7.1), and the bootstrap layout and
entry registers for a domain of ``--memory`` MiB (spec 7.2, 7.5), with the initrd's place and
``start_info.mod_start``/``mod_len``/flags when ``--initrd`` is given. An image the domU builder would refuse
is one error line and exit status 65.
"""

from __future__ import annotations

import argparse

from xenpy.abi.arch_x86 import FLAT_KERNEL_CS, FLAT_KERNEL_SS
from xenpy.abi.xen import SIF
from xenpy.cli.errors import CliError
from xenpy.cli.run_cmd import MAX_MEMORY_MIB
from xenpy.core.profiles import PROFILES, get_profile
from xenpy.core.vcpu_context import ENTRY_RFLAGS
from xenpy.loader.bzimage import KernelImage, unpack_kernel
from xenpy.loader.errors import LoaderError
from xenpy.loader.layout import PAGE_SIZE, BootLayout, compute_pv64_layout
from xenpy.loader.xen_notes import XenImageInfo, read_pv_kernel

DEFAULT_MEMORY_MIB = 32
_PAGES_PER_MIB = (1 << 20) // PAGE_SIZE


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``xenpy inspect``."""
    inspect = subparsers.add_parser(
        "inspect",
        help="show a PV kernel's Xen notes and its bootstrap layout",
        description="Read a Xen PV kernel image as the domU builder does: ELF headers, Xen ELF notes, the "
        "kernel's addresses, and where the kernel, p2m list, start_info, rings, page tables and boot stack "
        "would be placed in a domain of the given size.",
    )
    inspect.add_argument("image", metavar="IMAGE", help="the kernel image (an ELF file or a Linux bzImage)")
    inspect.add_argument(
        "--memory",
        type=_memory_mib,
        default=DEFAULT_MEMORY_MIB,
        metavar="MiB",
        help=f"domain memory for the layout (default {DEFAULT_MEMORY_MIB})",
    )
    inspect.add_argument("--initrd", metavar="FILE", help="place FILE as the initrd (module 0) in the layout")
    inspect.add_argument("--profile", choices=list(PROFILES), default="head",
                         help="the Xen version whose domain builder to follow (default head)")
    inspect.set_defaults(handler=_inspect)


def _memory_mib(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of MiB: {text!r}") from None
    if not 1 <= value <= MAX_MEMORY_MIB:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_MEMORY_MIB} MiB")
    return value


def _size(nr_bytes: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nr_bytes >= 1 << shift and nr_bytes % (1 << shift) == 0:
            return f"{nr_bytes >> shift} {unit}"
    return f"{nr_bytes} B" if nr_bytes < 1 << 10 else f"{nr_bytes / 1024:.1f} KiB"


def _read(path: str, what: str = "") -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as error:
        raise CliError(f"{what}{path}: {error.strerror or error}") from None


def _inspect(args: argparse.Namespace) -> int:
    path = args.image
    data = _read(path)
    initrd_nr_bytes = None if args.initrd is None else len(_read(args.initrd, "--initrd "))
    nr_pages = args.memory * _PAGES_PER_MIB
    try:
        kernel = unpack_kernel(data)
        info = read_pv_kernel(kernel)
        layout = compute_pv64_layout(
            info,
            nr_pages,
            module_nr_bytes=initrd_nr_bytes,
            module_len_exact=get_profile(args.profile).module_len_exact,
        )
    except LoaderError as error:
        raise CliError(f"{path}: {error}") from None
    _print_image(path, kernel, info)
    print()
    _print_layout(args.memory, layout)
    return 0


def _print_image(path: str, kernel: KernelImage, info: XenImageInfo) -> None:
    header = info.elf.header
    if kernel.container != "ELF":
        print(f"{path}: {kernel.description}")
    print(
        f"{path}: {header.class_name} little-endian {header.machine_name}, {header.type_name}, "
        f"e_entry {header.e_entry:#x}, guest type {info.guest_type}"
    )
    print()
    print("Loadable segments:")
    print(f"  {'#':>3} {'flags':5} {'offset':>10} {'vaddr':>18} {'paddr':>18} {'filesz':>10} {'memsz':>10}")
    for ph in info.elf.loadable_segments:
        print(
            f"  {ph.index:>3} {ph.flags_text:5} {ph.p_offset:>#10x} {ph.p_vaddr:>#18x} {ph.p_paddr:>#18x} "
            f"{ph.p_filesz:>#10x} {ph.p_memsz:>#10x}"
        )
    print()
    print(f"Xen notes (from {info.note_source}):")
    for note in info.notes:
        print(f"  {note.name:20} {note.value_text}")
    print()
    print("Addresses:")
    rows = [
        ("virt_base", f"{info.virt_base:#x}"),
        ("elf_paddr_offset", f"{info.elf_paddr_offset:#x}"),
        ("virt_offset", f"{info.virt_offset:#x}"),
        ("virt_kstart", f"{info.virt_kstart:#x}"),
        ("virt_kend", f"{info.virt_kend:#x}"),
        ("virt_entry", f"{info.virt_entry:#x}"),
        (
            "hypercall page",
            "none"
            if info.virt_hypercall is None
            else f"{info.virt_hypercall:#x} (pfn "
            f"{((info.virt_hypercall - info.virt_base) % (1 << 64)) // PAGE_SIZE:#x})",
        ),
        ("p2m (INIT_P2M)", "in the bootstrap region" if info.p2m_base is None else f"{info.p2m_base:#x}"),
        ("features", info.features_text or "none"),
    ]
    for name, value in rows:
        print(f"  {name:20} {value}")


def _print_layout(memory_mib: int, layout: BootLayout) -> None:
    print(f"Bootstrap layout for {memory_mib} MiB ({layout.nr_pages} pages):")
    print(f"  {'region':15} {'VA start':>18} {'VA end':>18} {'pfn':>8} {'pfn end':>8} {'pages':>6}  size")
    for region in layout.regions:
        start = "unmapped" if region.gva is None else f"{region.gva:#x}"
        end = "" if region.gva_end is None else f"{region.gva_end:#x}"
        print(
            f"  {region.name:15} {start:>18} {end:>18} {region.pfn:>#8x} {region.pfn_end:>#8x} "
            f"{region.nr_pages:>6}  {_size(region.nr_bytes)}"
        )
    mapping = layout.mappings[0]
    tables = ", ".join(f"L{lvl.level} {lvl.nr_tables}" for lvl in mapping.levels)
    print(
        f"  virt_pgtab_end {layout.virt_pgtab_end:#x}: {_size(layout.region_nr_pages * PAGE_SIZE)} mapped "
        f"({layout.region_nr_pages} pages), {layout.nr_pt_frames} page-table frames ({tables}), "
        f"{layout.nr_pages_used} of {layout.nr_pages} pages used"
    )
    if layout.module is not None:
        unmapped = bool(layout.sif_flags & SIF.SIF_MOD_START_PFN)
        where = f"pfn {layout.mod_start:#x} (SIF_MOD_START_PFN)" if unmapped else f"{layout.mod_start:#x}"
        print(f"  initrd: start_info.mod_start {where}, mod_len {layout.mod_len:#x}")
    print()
    print("Entry registers (vCPU 0):")
    print(f"  rip    {layout.rip:#018x}  virt_entry")
    print(f"  rsi    {layout.rsi:#018x}  start_info")
    print(f"  rsp    {layout.rsp:#018x}  top of the boot stack")
    print(
        f"  rflags {ENTRY_RFLAGS:#018x}  cs {int(FLAT_KERNEL_CS):#x}  ss {int(FLAT_KERNEL_SS):#x}  "
        f"cr3 = L4 at {layout.pt_base:#x} (pfn {layout.l4_pfn:#x})"
    )
