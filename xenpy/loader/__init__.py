"""The loader layer: read a Xen PV kernel image and build a PV64 domain from it (spec 7).

* :mod:`xenpy.loader.bzimage`: a kernel file (Linux bzImage, gzipped ELF) unpacked to its ELF
  (``xg_dom_bzimageloader.c``), with :mod:`xenpy.loader.decompress` for the payload codecs.
* :mod:`xenpy.loader.elf`: a strict ELF reader (``xen/common/libelf``'s view of a file).
* :mod:`xenpy.loader.xen_notes`: the Xen ELF notes and the kernel's addresses (``libelf-dominfo.c``).
* :mod:`xenpy.loader.layout`: where libxenguest puts the kernel, p2m, start_info, rings, tables and stack.
* :mod:`xenpy.loader.builder`: fill a domain's memory and compute vCPU 0's entry context.

Every problem with an image is a :class:`LoaderError` with a one-line message.
"""

from xenpy.loader.builder import BuiltDomain, build_pv64_domain, init_hypercall_page
from xenpy.loader.bzimage import KernelImage, unpack_kernel
from xenpy.loader.elf import ElfImage, parse_elf
from xenpy.loader.errors import LoaderError
from xenpy.loader.layout import BootLayout, Region, compute_pv64_layout
from xenpy.loader.xen_notes import XenImageInfo, XenNote, check_pv_domu, elf_xen_parse, read_pv_image

__all__ = [
    "BootLayout",
    "BuiltDomain",
    "ElfImage",
    "KernelImage",
    "LoaderError",
    "Region",
    "XenImageInfo",
    "XenNote",
    "build_pv64_domain",
    "check_pv_domu",
    "compute_pv64_layout",
    "elf_xen_parse",
    "init_hypercall_page",
    "parse_elf",
    "read_pv_image",
    "unpack_kernel",
]
