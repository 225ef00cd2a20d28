/*
 * xenpy guest headers: types of the ELF notes (owner "Xen") that a PV
 * kernel carries for the domain builder (Xen's public/elfnote.h).
 */

#ifndef __XEN_PUBLIC_ELFNOTE_H__
#define __XEN_PUBLIC_ELFNOTE_H__

#define XEN_ELFNOTE_INFO               0   /* unused */
#define XEN_ELFNOTE_ENTRY              1   /* virtual entry point */
#define XEN_ELFNOTE_HYPERCALL_PAGE     2   /* virtual address of the hypercall page */
#define XEN_ELFNOTE_VIRT_BASE          3   /* virtual base of the image */
#define XEN_ELFNOTE_PADDR_OFFSET       4   /* virtual minus "physical" address */
#define XEN_ELFNOTE_XEN_VERSION        5   /* string: required Xen version */
#define XEN_ELFNOTE_GUEST_OS           6   /* string: guest OS name */
#define XEN_ELFNOTE_GUEST_VERSION      7   /* string: guest OS version */
#define XEN_ELFNOTE_LOADER             8   /* string: "generic" */
#define XEN_ELFNOTE_PAE_MODE           9   /* string: "yes", "no", "bimodal" */
#define XEN_ELFNOTE_FEATURES           10  /* string: '|'-separated XENFEAT names */
#define XEN_ELFNOTE_BSD_SYMTAB         11  /* string: "yes" to load the symbol table */
#define XEN_ELFNOTE_HV_START_LOW       12  /* lowest hypervisor address (x86_32 PAE) */
#define XEN_ELFNOTE_L1_MFN_VALID       13  /* mask and value of valid L1 entries */
#define XEN_ELFNOTE_SUSPEND_CANCEL     14  /* SCHEDOP_shutdown may return 1 on resume */
#define XEN_ELFNOTE_INIT_P2M           15  /* virtual address of the initial p2m */
#define XEN_ELFNOTE_MOD_START_PFN      16  /* the kernel accepts SIF_MOD_START_PFN */
#define XEN_ELFNOTE_SUPPORTED_FEATURES 17  /* bitmap of supported XENFEAT bits */
#define XEN_ELFNOTE_PHYS32_ENTRY       18  /* 32-bit physical entry point (PVH) */
#define XEN_ELFNOTE_PHYS32_RELOC       19  /* PVH relocation parameters */
#define XEN_ELFNOTE_MAX                XEN_ELFNOTE_PHYS32_RELOC

/* Notes of a crash dump. */
#define XEN_ELFNOTE_CRASH_INFO 0x1000001
#define XEN_ELFNOTE_CRASH_REGS 0x1000002

/* Notes of a domain core dump. */
#define XEN_ELFNOTE_DUMPCORE_NONE           0x2000000
#define XEN_ELFNOTE_DUMPCORE_HEADER         0x2000001
#define XEN_ELFNOTE_DUMPCORE_XEN_VERSION    0x2000002
#define XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION 0x2000003

#endif /* __XEN_PUBLIC_ELFNOTE_H__ */
