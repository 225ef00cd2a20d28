"""``public/version.h``: ``HYPERVISOR_xen_version`` arguments (spec 6.7).

The ``XENVER_*`` command values come from the generated hypercall table and are re-exported here.
"""

from xenpy.abi.cstruct import CStruct, Width
from xenpy.abi.generated.hypercalls import XenVer

# Sizes of the char-array results (xen_extraversion_t, xen_capabilities_info_t, ...).
XEN_EXTRAVERSION_LEN = 16
XEN_CAPABILITIES_INFO_LEN = 1024
XEN_CHANGESET_INFO_LEN = 64
XEN_COMMANDLINE_LEN = 1024
XEN_GUEST_HANDLE_LEN = 16

globals().update(XenVer.__members__)


def define(w: Width, abi: dict) -> None:
    """Add this header's structures for width ``w`` to ``abi``."""
    abi["xen_compile_info"] = CStruct(
        "xen_compile_info",
        ("compiler", w.array(w.char, 64)),
        ("compile_by", w.array(w.char, 16)),
        ("compile_domain", w.array(w.char, 32)),
        ("compile_date", w.array(w.char, 32)),
    )
    abi["xen_platform_parameters"] = CStruct("xen_platform_parameters", ("virt_start", w.xen_ulong_t))
    abi["xen_feature_info"] = CStruct(
        "xen_feature_info", ("submap_idx", w.unsigned_int), ("submap", w.uint32_t))
    abi["xen_build_id"] = CStruct("xen_build_id", ("len", w.uint32_t))  # then unsigned char buf[]
    abi["xen_varbuf"] = CStruct("xen_varbuf", ("len", w.uint32_t))  # then char buf[]
