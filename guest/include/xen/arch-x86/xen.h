/*
 * xenpy guest headers: the x86 architecture part of Xen's public interface
 * (Xen's public/arch-x86/xen.h with xen-x86_64.h and xen-x86_32.h folded in).
 *
 * Declares the primitive ABI types (xen_ulong_t, xen_pfn_t, guest handles),
 * the flat segment selectors, cpu_user_regs, trap_info, vcpu_guest_context,
 * arch_vcpu_info, arch_shared_info and, on x86_64, iret_context.
 *
 * The same text serves both widths: the compiler's __x86_64__ / __i386__
 * selects the layout, as in Xen's own headers. Every layout here is checked
 * member by member against xenpy.abi (tests/abi/test_layout_gcc.py).
 *
 * Freestanding C: only <stdint.h>, which gcc provides for -ffreestanding.
 * Constants are usable from assembly (__ASSEMBLY__); declarations are not.
 */

#ifndef __XEN_PUBLIC_ARCH_X86_XEN_H__
#define __XEN_PUBLIC_ARCH_X86_XEN_H__

#if !defined(__x86_64__) && !defined(__i386__)
#error "xenpy guest headers describe the x86 PV interface only"
#endif

/*
 * Integer constants with a C suffix, or bare in assembly. The argument is
 * macro-expanded before the suffix is pasted on, so it may itself be a
 * macro naming a literal.
 */
#ifdef __ASSEMBLY__
#define __xen_mk_ulong(x)  x
#define __xen_mk_ullong(x) x
#else
#define __xen_mk_ulong(x)  x ## UL
#define __xen_mk_ullong(x) x ## ULL
#endif
#define xen_mk_ulong(x)  __xen_mk_ulong(x)
#define xen_mk_ullong(x) __xen_mk_ullong(x)

/* ---------------------------------------------------------------------- */
/* Flat segment selectors installed by Xen in the guest's GDT.            */
/* ---------------------------------------------------------------------- */

#if defined(__x86_64__)

/* A PV64 kernel runs in ring 3, so kernel and user share the ring-3 set. */
#define FLAT_RING3_CS32 0xe023
#define FLAT_RING3_CS64 0xe033
#define FLAT_RING3_DS32 0xe02b
#define FLAT_RING3_DS64 0x0000
#define FLAT_RING3_SS32 0xe02b
#define FLAT_RING3_SS64 0xe02b

#define FLAT_KERNEL_CS64 FLAT_RING3_CS64
#define FLAT_KERNEL_CS32 FLAT_RING3_CS32
#define FLAT_KERNEL_DS64 FLAT_RING3_DS64
#define FLAT_KERNEL_DS32 FLAT_RING3_DS32
#define FLAT_KERNEL_SS64 FLAT_RING3_SS64
#define FLAT_KERNEL_SS32 FLAT_RING3_SS32
#define FLAT_KERNEL_CS   FLAT_KERNEL_CS64
#define FLAT_KERNEL_DS   FLAT_KERNEL_DS64
#define FLAT_KERNEL_SS   FLAT_KERNEL_SS64

#define FLAT_USER_CS64 FLAT_RING3_CS64
#define FLAT_USER_CS32 FLAT_RING3_CS32
#define FLAT_USER_DS64 FLAT_RING3_DS64
#define FLAT_USER_DS32 FLAT_RING3_DS32
#define FLAT_USER_SS64 FLAT_RING3_SS64
#define FLAT_USER_SS32 FLAT_RING3_SS32
#define FLAT_USER_CS   FLAT_USER_CS64
#define FLAT_USER_DS   FLAT_USER_DS64
#define FLAT_USER_SS   FLAT_USER_SS64

/* The hypervisor hole and the read-only machine-to-phys table. */
#define __HYPERVISOR_VIRT_START 0xFFFF800000000000
#define __HYPERVISOR_VIRT_END   0xFFFF880000000000
#define __MACH2PHYS_VIRT_START  0xFFFF800000000000
#define __MACH2PHYS_VIRT_END    0xFFFF804000000000
#define HYPERVISOR_VIRT_START   xen_mk_ulong(__HYPERVISOR_VIRT_START)
#define HYPERVISOR_VIRT_END     xen_mk_ulong(__HYPERVISOR_VIRT_END)
#define MACH2PHYS_VIRT_START    xen_mk_ulong(__MACH2PHYS_VIRT_START)
#define MACH2PHYS_VIRT_END      xen_mk_ulong(__MACH2PHYS_VIRT_END)

#else /* __i386__ */

/* A PV32 kernel runs in ring 1. */
#define FLAT_RING1_CS 0xe019
#define FLAT_RING1_DS 0xe021
#define FLAT_RING1_SS 0xe021
#define FLAT_RING3_CS 0xe02b
#define FLAT_RING3_DS 0xe033
#define FLAT_RING3_SS 0xe033

#define FLAT_KERNEL_CS FLAT_RING1_CS
#define FLAT_KERNEL_DS FLAT_RING1_DS
#define FLAT_KERNEL_SS FLAT_RING1_SS
#define FLAT_USER_CS   FLAT_RING3_CS
#define FLAT_USER_DS   FLAT_RING3_DS
#define FLAT_USER_SS   FLAT_RING3_SS

/* The hypervisor hole of a PAE guest. */
#define __HYPERVISOR_VIRT_START_PAE 0xF5800000
#define __MACH2PHYS_VIRT_START_PAE  0xF5800000
#define __MACH2PHYS_VIRT_END_PAE    0xF6800000
#define HYPERVISOR_VIRT_START_PAE   xen_mk_ulong(__HYPERVISOR_VIRT_START_PAE)
#define MACH2PHYS_VIRT_START_PAE    xen_mk_ulong(__MACH2PHYS_VIRT_START_PAE)
#define MACH2PHYS_VIRT_END_PAE      xen_mk_ulong(__MACH2PHYS_VIRT_END_PAE)

#endif

/* ---------------------------------------------------------------------- */
/* vcpu_guest_context.flags (VGCF_*).                                     */
/* ---------------------------------------------------------------------- */

#define _VGCF_i387_valid               0
#define VGCF_i387_valid                (1 << _VGCF_i387_valid)
#define VGCF_I387_VALID                VGCF_i387_valid
#define _VGCF_in_kernel                2
#define VGCF_in_kernel                 (1 << _VGCF_in_kernel)
#define VGCF_IN_KERNEL                 VGCF_in_kernel
#define _VGCF_failsafe_disables_events 3
#define VGCF_failsafe_disables_events  (1 << _VGCF_failsafe_disables_events)
#define _VGCF_syscall_disables_events  4
#define VGCF_syscall_disables_events   (1 << _VGCF_syscall_disables_events)
#define _VGCF_online                   5
#define VGCF_online                    (1 << _VGCF_online)

#if defined(__x86_64__)
/* Set by the guest in the flags word of an iret frame after a syscall. */
#define _VGCF_in_syscall 8
#define VGCF_in_syscall  (1 << _VGCF_in_syscall)
#define VGCF_IN_SYSCALL  VGCF_in_syscall
#endif

#ifndef __ASSEMBLY__

#include <stdint.h>

/* ---------------------------------------------------------------------- */
/* Primitive ABI types.                                                   */
/* ---------------------------------------------------------------------- */

/* Machine-word-sized values: 8 bytes on x86_64, 4 bytes on x86_32. */
typedef unsigned long xen_ulong_t;
typedef unsigned long xen_pfn_t;
#define PRI_xen_ulong "lx"
#define PRI_xen_pfn   "lx"

/*
 * XEN_GUEST_HANDLE(type): a guest virtual address that the hypervisor
 * reads or writes, wrapped in a one-member struct so that handles of
 * different types are distinct C types. It is exactly one pointer wide.
 * DEFINE_XEN_GUEST_HANDLE(type) declares the handle and its const variant;
 * type must be a single identifier (use a typedef).
 */
#define XEN_GUEST_HANDLE(type)        __xen_guest_handle_ ## type
#define XEN_GUEST_HANDLE_PARAM(type)  XEN_GUEST_HANDLE(type)
#define DEFINE_XEN_GUEST_HANDLE(type)                                    \
    typedef struct { type *p; } __xen_guest_handle_ ## type;            \
    typedef struct { const type *p; } __xen_guest_handle_const_ ## type
#define set_xen_guest_handle(hnd, val) do { (hnd).p = (val); } while ( 0 )
#define guest_handle_is_null(hnd)      ((hnd).p == 0)

DEFINE_XEN_GUEST_HANDLE(char);
DEFINE_XEN_GUEST_HANDLE(int);
DEFINE_XEN_GUEST_HANDLE(void);
DEFINE_XEN_GUEST_HANDLE(uint8_t);
DEFINE_XEN_GUEST_HANDLE(uint32_t);
DEFINE_XEN_GUEST_HANDLE(uint64_t);
DEFINE_XEN_GUEST_HANDLE(xen_ulong_t);
DEFINE_XEN_GUEST_HANDLE(xen_pfn_t);

/* ---------------------------------------------------------------------- */
/* Guest register frame.                                                  */
/* ---------------------------------------------------------------------- */

#if defined(__x86_64__)

/* 200 bytes. Segment selectors are each padded to 8 bytes. */
struct cpu_user_regs {
    uint64_t r15;
    uint64_t r14;
    uint64_t r13;
    uint64_t r12;
    uint64_t rbp;
    uint64_t rbx;
    uint64_t r11;
    uint64_t r10;
    uint64_t r9;
    uint64_t r8;
    uint64_t rax;
    uint64_t rcx;
    uint64_t rdx;
    uint64_t rsi;
    uint64_t rdi;
    uint32_t error_code;        /* private to Xen */
    uint32_t entry_vector;      /* private to Xen */
    uint64_t rip;
    uint16_t cs, _pad0[1];
    uint8_t  saved_upcall_mask;
    uint8_t  _pad1[3];
    uint64_t rflags;            /* rflags.IF == !saved_upcall_mask */
    uint64_t rsp;
    uint16_t ss, _pad2[3];
    uint16_t es, _pad3[3];
    uint16_t ds, _pad4[3];
    uint16_t fs, _pad5[3];      /* non-zero selector overrides fs_base */
    uint16_t gs, _pad6[3];      /* non-zero selector overrides gs_base_user */
};

#else /* __i386__ */

/* 68 bytes. */
struct cpu_user_regs {
    uint32_t ebx;
    uint32_t ecx;
    uint32_t edx;
    uint32_t esi;
    uint32_t edi;
    uint32_t ebp;
    uint32_t eax;
    uint16_t error_code;        /* private to Xen */
    uint16_t entry_vector;      /* private to Xen */
    uint32_t eip;
    uint16_t cs;
    uint8_t  saved_upcall_mask;
    uint8_t  _pad0;
    uint32_t eflags;            /* eflags.IF == !saved_upcall_mask */
    uint32_t esp;
    uint16_t ss, _pad1;
    uint16_t es, _pad2;
    uint16_t ds, _pad3;
    uint16_t fs, _pad4;
    uint16_t gs, _pad5;
};

#endif
typedef struct cpu_user_regs cpu_user_regs_t;
DEFINE_XEN_GUEST_HANDLE(cpu_user_regs_t);

/* ---------------------------------------------------------------------- */
/* Virtual trap table (HYPERVISOR_set_trap_table).                        */
/* ---------------------------------------------------------------------- */

/* flags: bits 0-1 are the DPL allowed to raise the trap with "int n";
 * bit 2 set means events are masked on entry (an interrupt gate). */
#define TI_GET_DPL(_ti)      ((_ti)->flags & 3)
#define TI_GET_IF(_ti)       ((_ti)->flags & 4)
#define TI_SET_DPL(_ti, _dpl) ((_ti)->flags |= (_dpl))
#define TI_SET_IF(_ti, _if)   ((_ti)->flags |= ((!!(_if)) << 2))

/* A table is terminated by the first entry whose address is 0. */
struct trap_info {
    uint8_t       vector;       /* exception vector */
    uint8_t       flags;        /* DPL and event mask, see TI_* */
    uint16_t      cs;           /* code selector */
    unsigned long address;      /* code offset */
};
typedef struct trap_info trap_info_t;
DEFINE_XEN_GUEST_HANDLE(trap_info_t);

/* ---------------------------------------------------------------------- */
/* Initial vCPU state (VCPUOP_initialise).                                */
/* ---------------------------------------------------------------------- */

struct vcpu_guest_context {
    char          fpu_ctxt[512];     /* FXSAVE image, first for alignment */
    unsigned long flags;             /* VGCF_* */
    struct cpu_user_regs user_regs;  /* user-level CPU registers */
    struct trap_info trap_ctxt[256]; /* virtual IDT */
    unsigned long ldt_base, ldt_ents;        /* LDT (linear address, entries) */
    unsigned long gdt_frames[16], gdt_ents;  /* GDT (machine frames, entries) */
    unsigned long kernel_ss, kernel_sp;      /* virtual TSS (ring-1 stack on x86_32) */
    unsigned long ctrlreg[8];        /* cr3 holds a machine frame << 12 */
    unsigned long debugreg[8];       /* db0-db7 */
#if defined(__x86_64__)
    unsigned long event_callback_eip;
    unsigned long failsafe_callback_eip;
    unsigned long syscall_callback_eip;
#else
    unsigned long event_callback_cs;     /* CS:EIP of the event callback */
    unsigned long event_callback_eip;
    unsigned long failsafe_callback_cs;  /* CS:EIP of the failsafe callback */
    unsigned long failsafe_callback_eip;
#endif
    unsigned long vm_assist;         /* VMASST_TYPE_* bitmap */
#if defined(__x86_64__)
    uint64_t      fs_base;           /* segment bases (x86_64 only) */
    uint64_t      gs_base_kernel;
    uint64_t      gs_base_user;
#endif
};
typedef struct vcpu_guest_context vcpu_guest_context_t;
DEFINE_XEN_GUEST_HANDLE(vcpu_guest_context_t);

/* ---------------------------------------------------------------------- */
/* Architecture parts of vcpu_info and shared_info.                       */
/* ---------------------------------------------------------------------- */

struct arch_vcpu_info {
    unsigned long cr2;               /* faulting address of the last #PF */
#if defined(__x86_64__)
    unsigned long pad;               /* keeps vcpu_info at 64 bytes */
#else
    unsigned long pad[5];            /* keeps vcpu_info at 64 bytes */
#endif
};
typedef struct arch_vcpu_info arch_vcpu_info_t;

struct arch_shared_info {
    unsigned long max_pfn;           /* highest pseudo-physical frame + 1 */
    /* Frame of the list of frames of the list of frames of the p2m table. */
    xen_pfn_t     pfn_to_mfn_frame_list_list;
    unsigned long nmi_reason;        /* XEN_NMIREASON_* */
    /* Alternative p2m description: a linear virtual array. */
    unsigned long p2m_cr3;           /* cr3 value of the p2m address space */
    unsigned long p2m_vaddr;         /* virtual address of the p2m array */
    unsigned long p2m_generation;    /* incremented around every p2m update */
#if defined(__i386__)
    uint32_t      wc_sec_hi;         /* upper 32 bits of the wallclock seconds */
#endif
};
typedef struct arch_shared_info arch_shared_info_t;

#if defined(__x86_64__)
/*
 * The frame HYPERVISOR_iret pops from the guest stack: the guest pushes
 * it, newest first from ss down to rax, then makes the hypercall.
 * flags holds VGCF_in_syscall after a syscall entry.
 */
struct iret_context {
    uint64_t rax, r11, rcx, flags, rip, cs, rflags, rsp, ss;
};

typedef unsigned long xen_callback_t;   /* a callback is its address */
#define XEN_CALLBACK(__cs, __rip) (__rip)
#else
/* A callback is a code selector and an offset. */
struct xen_callback {
    unsigned long cs;
    unsigned long eip;
};
typedef struct xen_callback xen_callback_t;
#define XEN_CALLBACK(__cs, __eip) ((struct xen_callback){ .cs = (__cs), .eip = (__eip) })
#endif

#endif /* !__ASSEMBLY__ */

#endif /* __XEN_PUBLIC_ARCH_X86_XEN_H__ */
