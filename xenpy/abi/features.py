"""``public/features.h``: ``XENFEAT_*`` feature bits reported by ``XENVER_get_features`` (spec 6.9)."""

from enum import IntEnum


class XENFEAT(IntEnum):
    """Feature bit numbers (spec 6.9)."""

    XENFEAT_writable_page_tables = 0
    XENFEAT_writable_descriptor_tables = 1
    XENFEAT_auto_translated_physmap = 2
    XENFEAT_supervisor_mode_kernel = 3
    XENFEAT_pae_pgdir_above_4gb = 4
    XENFEAT_mmu_pt_update_preserve_ad = 5
    XENFEAT_highmem_assist = 6
    XENFEAT_gnttab_map_avail_bits = 7
    XENFEAT_hvm_callback_vector = 8
    XENFEAT_hvm_safe_pvclock = 9
    XENFEAT_hvm_pirqs = 10
    XENFEAT_dom0 = 11
    XENFEAT_grant_map_identity = 12
    XENFEAT_memory_op_vnode_supported = 13
    XENFEAT_ARM_SMCCC_supported = 14
    XENFEAT_linux_rsdp_unrestricted = 15
    XENFEAT_not_direct_mapped = 16
    XENFEAT_direct_mapped = 17
    XENFEAT_runstate_phys_area = 18
    XENFEAT_vcpu_time_phys_area = 19
    XENFEAT_dm_msix_all_writes = 20


XENFEAT_NR_SUBMAPS = 1

globals().update(XENFEAT.__members__)
