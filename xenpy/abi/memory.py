"""``public/memory.h``: ``HYPERVISOR_memory_op`` arguments (reservations, the M2P mapping).

The ``XENMEM_*`` command values come from the generated hypercall table and are re-exported here.
"""

from xenpy.abi.cstruct import CStruct, Width
from xenpy.abi.generated.hypercalls import XenMem

globals().update(XenMem.__members__)


def define(w: Width, abi: dict) -> None:
    """Add this header's structures for width ``w`` to ``abi``."""
    abi["xen_memory_reservation"] = CStruct(
        "xen_memory_reservation",
        ("extent_start", w.handle("xen_pfn_t")),
        ("nr_extents", w.xen_ulong_t),
        ("extent_order", w.unsigned_int),
        ("mem_flags", w.unsigned_int),
        ("domid", w.domid_t),
    )
    abi["xen_machphys_mapping"] = CStruct(
        "xen_machphys_mapping",
        ("v_start", w.xen_ulong_t),
        ("v_end", w.xen_ulong_t),
        ("max_mfn", w.xen_ulong_t),
    )
