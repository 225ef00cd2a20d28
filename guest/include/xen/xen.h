/*
 * xenpy guest headers: the core of Xen's public interface (Xen's public/xen.h).
 *
 * Virtual interrupts, VM assists, reserved domain ids, start_info flags and
 * the structures every PV guest shares with the hypervisor: vcpu_time_info,
 * vcpu_info, shared_info, start_info, mmu_update, mmuext_op and
 * multicall_entry.
 *
 * Hypercall numbers (__HYPERVISOR_*) and the sub-op numbers of
 * HYPERVISOR_mmuext_op and HYPERVISOR_vm_assist (MMUEXT_*, VMASST_CMD_*) are
 * not declared here: they come from the generated
 * <generated/hypercalls.h>, the one table they are listed in.
 */

#ifndef __XEN_PUBLIC_XEN_H__
#define __XEN_PUBLIC_XEN_H__

#include "arch-x86/xen.h"

/* ---------------------------------------------------------------------- */
/* Virtual interrupts (EVTCHNOP_bind_virq).                               */
/* ---------------------------------------------------------------------- */

#define VIRQ_TIMER      0   /* per vCPU: timer expired */
#define VIRQ_DEBUG      1   /* per vCPU: debug key pressed */
#define VIRQ_CONSOLE    2   /* global: console input (privileged) */
#define VIRQ_DOM_EXC    3   /* global: a domain exited */
#define VIRQ_TBUF       4   /* global: trace buffers need attention */
#define VIRQ_DEBUGGER   6   /* global: a domain hit a debug trap */
#define VIRQ_XENOPROF   7   /* per vCPU: profiling samples ready */
#define VIRQ_CON_RING   8   /* global: hypervisor console ring written */
#define VIRQ_PCPU_STATE 9   /* global: a physical CPU changed state */
#define VIRQ_MEM_EVENT  10  /* global: a memory event arrived */
#define VIRQ_ARGO       11  /* per domain: Argo message pending */
#define VIRQ_ENOMEM     12  /* global: low on heap memory */
#define VIRQ_XENPMU     13  /* per vCPU: PMU interrupt */

/* Architecture-specific VIRQs. */
#define VIRQ_ARCH_0     16
#define VIRQ_ARCH_1     17
#define VIRQ_ARCH_2     18
#define VIRQ_ARCH_3     19
#define VIRQ_ARCH_4     20
#define VIRQ_ARCH_5     21
#define VIRQ_ARCH_6     22
#define VIRQ_ARCH_7     23
#define VIRQ_MCA        VIRQ_ARCH_0  /* x86: global machine check */

#define NR_VIRQS        24

/* ---------------------------------------------------------------------- */
/* VM assists (HYPERVISOR_vm_assist type argument).                       */
/* ---------------------------------------------------------------------- */

#define VMASST_TYPE_4gb_segments        0
#define VMASST_TYPE_4gb_segments_notify 1
#define VMASST_TYPE_writable_pagetables 2
#define VMASST_TYPE_pae_extended_cr3    3
#define VMASST_TYPE_architectural_iopl  4
#define VMASST_TYPE_runstate_update_flag 5
#define VMASST_TYPE_m2p_strict          32

/* ---------------------------------------------------------------------- */
/* HYPERVISOR_mmu_update: command in the low bits of mmu_update.ptr.      */
/* ---------------------------------------------------------------------- */

#define MMU_NORMAL_PT_UPDATE       0  /* ptr: machine address of a PTE */
#define MMU_MACHPHYS_UPDATE        1  /* ptr: machine address; val: pfn */
#define MMU_PT_UPDATE_PRESERVE_AD  2  /* as NORMAL, keeping A/D bits */
#define MMU_PT_UPDATE_NO_TRANSLATE 3  /* as NORMAL, no gfn translation */

/* HYPERVISOR_update_va_mapping flags. */
#define UVMF_NONE           0
#define UVMF_TLB_FLUSH      1
#define UVMF_INVLPG         2
#define UVMF_FLUSHTYPE_MASK 3
#define UVMF_MULTI          0  /* flush the vCPUs in a mask (pointer in flags) */
#define UVMF_LOCAL          0  /* flush this vCPU only */
#define UVMF_ALL            (1 << 2)  /* flush every vCPU of the domain */

/* ---------------------------------------------------------------------- */
/* Domain ids.                                                            */
/* ---------------------------------------------------------------------- */

#define DOMID_FIRST_RESERVED 0x7FF0
#define DOMID_SELF           0x7FF0  /* the calling domain */
#define DOMID_IO             0x7FF1  /* owner of I/O memory */
#define DOMID_XEN            0x7FF2  /* owner of hypervisor memory */
#define DOMID_COW            0x7FF3  /* owner of shared copy-on-write pages */
#define DOMID_INVALID        0x7FF4  /* no domain */
#define DOMID_ANY            0x7FF5  /* any domain (bind wildcard) */
#define DOMID_IDLE           0x7FFF  /* the idle domain */

/* ---------------------------------------------------------------------- */
/* start_info.flags.                                                      */
/* ---------------------------------------------------------------------- */

#define SIF_PRIVILEGED      (1 << 0)  /* privileged domain */
#define SIF_INITDOMAIN      (1 << 1)  /* the initial control domain */
#define SIF_MULTIBOOT_MOD   (1 << 2)  /* mod_start holds a multiboot module list */
#define SIF_MOD_START_PFN   (1 << 3)  /* mod_start is a pfn, not a virtual address */
#define SIF_VIRT_P2M_4TOOLS (1 << 4)  /* the p2m is not mapped in the initial region */
#define SIF_PM_MASK         (0xFF << 8)  /* reserved for power management */

/* ---------------------------------------------------------------------- */
/* Miscellaneous.                                                         */
/* ---------------------------------------------------------------------- */

#define XEN_LEGACY_MAX_VCPUS 32    /* vcpu_info slots in shared_info */
#define MAX_GUEST_CMDLINE    1024  /* start_info.cmd_line bytes */

/* vcpu_time_info.flags. */
#define XEN_PVCLOCK_TSC_STABLE_BIT (1 << 0)  /* TSC is stable across vCPUs */
#define XEN_PVCLOCK_GUEST_STOPPED  (1 << 1)  /* the guest was paused */

/* The PV upcall mask is called evtchn_upcall_mask in vcpu_info. */
#define XEN_HAVE_PV_UPCALL_MASK 1

#ifndef __ASSEMBLY__

typedef uint16_t domid_t;

/* ---------------------------------------------------------------------- */
/* Page-table updates.                                                    */
/* ---------------------------------------------------------------------- */

/* One request of HYPERVISOR_mmu_update. */
struct mmu_update {
    uint64_t ptr;   /* machine address of the PTE, command in bits 0-1 */
    uint64_t val;   /* new contents */
};
typedef struct mmu_update mmu_update_t;
DEFINE_XEN_GUEST_HANDLE(mmu_update_t);

/* One request of HYPERVISOR_mmuext_op; cmd is an MMUEXT_* value. */
struct mmuext_op {
    unsigned int cmd;
    union {
        xen_pfn_t     mfn;          /* pin/unpin, new baseptr, copy/clear page */
        unsigned long linear_addr;  /* invlpg, set_ldt */
    } arg1;
    union {
        unsigned int nr_ents;                  /* set_ldt */
        XEN_GUEST_HANDLE(const_void) vcpumask; /* tlb_flush_multi, invlpg_multi */
        xen_pfn_t src_mfn;                     /* copy_page */
    } arg2;
};
typedef struct mmuext_op mmuext_op_t;
DEFINE_XEN_GUEST_HANDLE(mmuext_op_t);

/* One call of HYPERVISOR_multicall. */
struct multicall_entry {
    xen_ulong_t op;        /* hypercall number */
    xen_ulong_t result;    /* OUT: return value */
    xen_ulong_t args[6];
};
typedef struct multicall_entry multicall_entry_t;
DEFINE_XEN_GUEST_HANDLE(multicall_entry_t);

/* ---------------------------------------------------------------------- */
/* Shared info page.                                                      */
/* ---------------------------------------------------------------------- */

/*
 * System time of a vCPU. Xen bumps version to an odd value, updates the
 * rest, then bumps it to an even value: a reader retries while version is
 * odd or changed across the read.
 *   now_ns = system_time + ((tsc - tsc_timestamp) << tsc_shift
 *                           (or >> -tsc_shift)) * tsc_to_system_mul >> 32
 */
struct vcpu_time_info {
    uint32_t version;
    uint32_t pad0;
    uint64_t tsc_timestamp;     /* TSC at the last update */
    uint64_t system_time;       /* ns since boot at tsc_timestamp */
    uint32_t tsc_to_system_mul; /* 32.32 fixed-point TSC-to-ns factor */
    int8_t   tsc_shift;
    uint8_t  flags;             /* XEN_PVCLOCK_* */
    uint8_t  pad1[2];
};
typedef struct vcpu_time_info vcpu_time_info_t;

/* Per-vCPU event state and time: 64 bytes on both widths. */
struct vcpu_info {
    uint8_t evtchn_upcall_pending;   /* set by Xen before an upcall */
    uint8_t evtchn_upcall_mask;      /* non-zero: upcalls masked */
    xen_ulong_t evtchn_pending_sel;  /* one bit per word of evtchn_pending */
    struct arch_vcpu_info arch;
    vcpu_time_info_t time;
};
typedef struct vcpu_info vcpu_info_t;

struct shared_info {
    struct vcpu_info vcpu_info[XEN_LEGACY_MAX_VCPUS];
    /* 2-level event channels: one bit per port. */
    xen_ulong_t evtchn_pending[sizeof(xen_ulong_t) * 8];
    xen_ulong_t evtchn_mask[sizeof(xen_ulong_t) * 8];
    /* Wallclock at system time 0, under the same version protocol. */
    uint32_t wc_version;
    uint32_t wc_sec;
    uint32_t wc_nsec;
#if defined(__x86_64__)
    uint32_t wc_sec_hi;
#define xen_wc_sec_hi wc_sec_hi
#else
#define xen_wc_sec_hi arch.wc_sec_hi
#endif
    struct arch_shared_info arch;
};
typedef struct shared_info shared_info_t;

/* ---------------------------------------------------------------------- */
/* Start of day information (pointed to by rsi/esi at the entry point).   */
/* ---------------------------------------------------------------------- */

struct start_info {
    char magic[32];             /* "xen-<version>-<platform>" */
    unsigned long nr_pages;     /* total pages allocated to the domain */
    unsigned long shared_info;  /* machine address of the shared info page */
    uint32_t flags;             /* SIF_* */
    xen_pfn_t store_mfn;        /* machine frame of the xenstore ring */
    uint32_t store_evtchn;      /* event channel of the xenstore ring */
    union {
        struct {
            xen_pfn_t mfn;      /* machine frame of the console ring */
            uint32_t  evtchn;   /* event channel of the console ring */
        } domU;
        struct {
            uint32_t info_off;  /* offset of the console info in this page */
            uint32_t info_size; /* size of the console info */
        } dom0;
    } console;
    unsigned long pt_base;      /* virtual address of the top page table */
    unsigned long nr_pt_frames; /* frames of the initial page tables */
    unsigned long mfn_list;     /* virtual address of the p2m array */
    unsigned long mod_start;    /* initial module (ramdisk): virtual address or pfn */
    unsigned long mod_len;      /* its length in bytes */
    int8_t cmd_line[MAX_GUEST_CMDLINE];
    unsigned long first_p2m_pfn;  /* first pfn of a p2m mapped outside the initial region */
    unsigned long nr_p2m_frames;  /* its number of frames */
};
typedef struct start_info start_info_t;

#endif /* !__ASSEMBLY__ */

#endif /* __XEN_PUBLIC_XEN_H__ */
