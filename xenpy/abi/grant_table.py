"""``public/grant_table.h``: grant entries (``grant_entry_v1``, ``grant_entry_v2``, ``grant_status_t``), their
``GTF_*`` flags, the ``GNTMAP_*`` flags and ``GNTST_*`` statuses, and the arguments of ``GNTTABOP_setup_table``,
``query_size``, ``set_version``, ``get_status_frames``, ``get_version``, ``map_grant_ref``, ``unmap_grant_ref``
and ``unmap_and_replace``.

The ``GNTTABOP_*`` command values come from the generated hypercall table and are re-exported here.
"""

from xenpy.abi.cstruct import CStruct, CUnion, Width
from xenpy.abi.generated.hypercalls import GnttabOp

globals().update(GnttabOp.__members__)

# ``GNTST_*``: the status of one operation (``enum grant_status``).
GNTST_okay = 0
GNTST_general_error = -1
GNTST_bad_domain = -2
GNTST_bad_gntref = -3
GNTST_bad_handle = -4
GNTST_bad_virt_addr = -5
GNTST_bad_dev_addr = -6
GNTST_no_device_space = -7
GNTST_permission_denied = -8
GNTST_bad_page = -9
GNTST_bad_copy_arg = -10
GNTST_address_too_big = -11
GNTST_eagain = -12
GNTST_no_space = -13

# ``GNTMAP_*``: flags of GNTTABOP_map_grant_ref.
GNTMAP_device_map = 1 << 0
GNTMAP_host_map = 1 << 1
GNTMAP_readonly = 1 << 2
GNTMAP_application_map = 1 << 3
GNTMAP_contains_pte = 1 << 4

# ``GTF_*``: an entry's type (the low two bits of ``flags``), then its subflags. [GST] the guest writes them,
# [XEN] Xen does: GTF_reading / GTF_writing are in ``flags`` in version 1, in the status word in version 2.
GTF_invalid = 0
GTF_permit_access = 1
GTF_accept_transfer = 2
GTF_transitive = 3
GTF_type_mask = 3
GTF_readonly = 1 << 2  # [GST]
GTF_reading = 1 << 3  # [XEN]
GTF_writing = 1 << 4  # [XEN]
GTF_PWT = 1 << 5  # [GST] x86 cache attributes of a mapping
GTF_PCD = 1 << 6
GTF_PAT = 1 << 7
GTF_sub_page = 1 << 8  # [GST] version 2: only bytes [page_off, page_off + length) may be copied, no mapping

#: Entries kept across a version change and that the toolstack may fill at creation (console, xenstore).
GNTTAB_NR_RESERVED_ENTRIES = 8
GNTTAB_RESERVED_CONSOLE = 0
GNTTAB_RESERVED_XENSTORE = 1


def define(w: Width, abi: dict) -> None:
    """Add this header's structures for width ``w`` to ``abi``."""
    abi["grant_entry_v1"] = CStruct(
        "grant_entry_v1",
        ("flags", w.uint16_t),
        ("domid", w.domid_t),
        ("frame", w.uint32_t),
    )
    header = CStruct("grant_entry_header", ("flags", w.uint16_t), ("domid", w.domid_t))
    abi["grant_entry_header"] = header
    abi["grant_entry_v2"] = CUnion(
        "grant_entry_v2",
        ("hdr", header),
        ("full_page", CStruct(
            "grant_entry_v2_full_page", ("hdr", header), ("pad0", w.uint32_t), ("frame", w.uint64_t))),
        ("sub_page", CStruct(
            "grant_entry_v2_sub_page",
            ("hdr", header),
            ("page_off", w.uint16_t),
            ("length", w.uint16_t),
            ("frame", w.uint64_t),
        )),
        ("transitive", CStruct(
            "grant_entry_v2_transitive",
            ("hdr", header),
            ("trans_domid", w.domid_t),
            ("pad0", w.uint16_t),
            ("gref", w.uint32_t),
        )),
        ("__spacer", w.array(w.uint32_t, 4)),
    )
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
    abi["gnttab_set_version"] = CStruct("gnttab_set_version", ("version", w.uint32_t))
    abi["gnttab_get_status_frames"] = CStruct(
        "gnttab_get_status_frames",
        ("nr_frames", w.uint32_t),
        ("dom", w.domid_t),
        ("status", w.int16_t),
        ("frame_list", w.handle("uint64_t")),
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
