"""``public/grant_table.h``: the arguments of ``GNTTABOP_setup_table``, ``query_size``, ``get_version``,
``map_grant_ref``, ``unmap_grant_ref`` and ``unmap_and_replace``.

The ``GNTTABOP_*`` command values come from the generated hypercall table and are re-exported here.
"""

from xenpy.abi.cstruct import CStruct, Width
from xenpy.abi.generated.hypercalls import GnttabOp

globals().update(GnttabOp.__members__)


def define(w: Width, abi: dict) -> None:
    """Add this header's structures for width ``w`` to ``abi``."""
    abi["gnttab_setup_table"] = CStruct(
        "gnttab_setup_table",
        ("dom", w.domid_t),
        ("nr_frames", w.uint32_t),
        ("status", w.int16_t),
        ("frame_list", w.handle("xen_pfn_t")),
    )
    abi["gnttab_query_size"] = CStruct(
        "gnttab_query_size",
        ("dom", w.domid_t),
        ("nr_frames", w.uint32_t),
        ("max_nr_frames", w.uint32_t),
        ("status", w.int16_t),
    )
    abi["gnttab_get_version"] = CStruct(
        "gnttab_get_version",
        ("dom", w.domid_t),
        ("pad", w.uint16_t),
        ("version", w.uint32_t),
    )
    abi["gnttab_map_grant_ref"] = CStruct(
        "gnttab_map_grant_ref",
        ("host_addr", w.uint64_t),
        ("flags", w.uint32_t),
        ("ref", w.uint32_t),
        ("dom", w.domid_t),
        ("status", w.int16_t),
        ("handle", w.uint32_t),
        ("dev_bus_addr", w.uint64_t),
    )
    abi["gnttab_unmap_grant_ref"] = CStruct(
        "gnttab_unmap_grant_ref",
        ("host_addr", w.uint64_t),
        ("dev_bus_addr", w.uint64_t),
        ("handle", w.uint32_t),
        ("status", w.int16_t),
    )
    abi["gnttab_unmap_and_replace"] = CStruct(
        "gnttab_unmap_and_replace",
        ("host_addr", w.uint64_t),
        ("new_addr", w.uint64_t),
        ("handle", w.uint32_t),
        ("status", w.int16_t),
    )
