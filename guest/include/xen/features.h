/*
 * xenpy guest headers: feature bits reported by XENVER_get_features
 * (Xen's public/features.h). Each is a bit number in submap 0.
 */

#ifndef __XEN_PUBLIC_FEATURES_H__
#define __XEN_PUBLIC_FEATURES_H__

#define XENFEAT_writable_page_tables       0  /* page tables need no pinning to be written */
#define XENFEAT_writable_descriptor_tables 1  /* GDT/LDT pages may be writable */
#define XENFEAT_auto_translated_physmap    2  /* the guest sees pfns, not mfns */
#define XENFEAT_supervisor_mode_kernel     3  /* the kernel runs in ring 0 */
#define XENFEAT_pae_pgdir_above_4gb        4  /* a PAE top table may sit above 4GB */
#define XENFEAT_mmu_pt_update_preserve_ad  5  /* MMU_PT_UPDATE_PRESERVE_AD is available */
#define XENFEAT_highmem_assist             6
#define XENFEAT_gnttab_map_avail_bits      7
#define XENFEAT_hvm_callback_vector        8
#define XENFEAT_hvm_safe_pvclock           9
#define XENFEAT_hvm_pirqs                  10
#define XENFEAT_dom0                       11  /* the guest is the hardware domain */
#define XENFEAT_grant_map_identity         12
#define XENFEAT_memory_op_vnode_supported  13
#define XENFEAT_ARM_SMCCC_supported        14
#define XENFEAT_linux_rsdp_unrestricted    15
#define XENFEAT_not_direct_mapped          16
#define XENFEAT_direct_mapped              17
#define XENFEAT_runstate_phys_area         18  /* VCPUOP_register_runstate_phys_area */
#define XENFEAT_vcpu_time_phys_area        19  /* VCPUOP_register_vcpu_time_phys_area */
#define XENFEAT_dm_msix_all_writes         20

#define XENFEAT_NR_SUBMAPS 1

#endif /* __XEN_PUBLIC_FEATURES_H__ */
