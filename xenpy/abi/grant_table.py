"""``public/grant_table.h``: ``GNTTABOP_setup_table`` argument.

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
