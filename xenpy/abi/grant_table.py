"""``public/grant_table.h``: the ``GNTTABOP_setup_table``, ``GNTTABOP_query_size`` and ``GNTTABOP_get_version``
arguments.

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
