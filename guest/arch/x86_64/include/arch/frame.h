/*
 * x86 exception vectors and the register frame built by the entry stubs
 * (arch/x86_64/entry.S) over Xen's bounce frame.
 */

#ifndef XENPY_GUEST_ARCH_FRAME_H
#define XENPY_GUEST_ARCH_FRAME_H

/* Architectural exception vectors. */
#define X86_EXC_DE   0  /* divide error */
#define X86_EXC_DB   1  /* debug */
#define X86_EXC_NMI  2  /* non-maskable interrupt */
#define X86_EXC_BP   3  /* breakpoint (int3) */
#define X86_EXC_OF   4  /* overflow (into) */
#define X86_EXC_BR   5  /* bound range */
#define X86_EXC_UD   6  /* invalid opcode */
#define X86_EXC_NM   7  /* device not available */
#define X86_EXC_DF   8  /* double fault */
#define X86_EXC_CSO  9  /* coprocessor segment overrun */
#define X86_EXC_TS  10  /* invalid TSS */
#define X86_EXC_NP  11  /* segment not present */
#define X86_EXC_SS  12  /* stack-segment fault */
#define X86_EXC_GP  13  /* general protection */
#define X86_EXC_PF  14  /* page fault */
#define X86_EXC_SPV 15  /* reserved (spurious interrupt vector) */
#define X86_EXC_MF  16  /* x87 floating point */
#define X86_EXC_AC  17  /* alignment check */
#define X86_EXC_MC  18  /* machine check */
#define X86_EXC_XM  19  /* SIMD floating point */

/* Number of vectors with a stub and a trap-table entry. */
#define X86_NR_HANDLED_VECTORS 20

/* exception_frame.entry_vector of an event upcall (not an x86 vector). */
#define FRAME_VECTOR_EVENT 0x100

/* #PF error code bits. */
#define X86_PFEC_PRESENT (1 << 0)
#define X86_PFEC_WRITE   (1 << 1)
#define X86_PFEC_USER    (1 << 2)
#define X86_PFEC_INSN    (1 << 4)

#ifndef __ASSEMBLY__

#include <stdint.h>

/*
 * Registers of an interrupted context, as saved by entry.S. The layout is
 * the first 168 bytes of Xen's struct cpu_user_regs (spec 5.6): GPRs from
 * r15 up, then error code and vector, then the hardware-style frame.
 */
struct exception_frame {
    uint64_t r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8;
    uint64_t rax, rcx, rdx, rsi, rdi;
    uint32_t error_code;    /* 0 for vectors without an error code */
    uint32_t entry_vector;  /* X86_EXC_* or FRAME_VECTOR_EVENT */
    uint64_t rip;
    uint64_t cs;            /* selector in bits 0-15, saved_upcall_mask in 32-39 */
    uint64_t rflags;
    uint64_t rsp;
    uint64_t ss;
};

_Static_assert(sizeof(struct exception_frame) == 168,
               "exception_frame must match the first 168 bytes of cpu_user_regs");

/* The selector and saved event mask packed in exception_frame.cs. */
static inline uint16_t frame_cs_selector(const struct exception_frame *f)
{
    return (uint16_t)f->cs;
}

static inline uint8_t frame_saved_upcall_mask(const struct exception_frame *f)
{
    return (uint8_t)(f->cs >> 32);
}

/* Failsafe callback frame (entry_failsafe_callback), lowest address first. */
struct failsafe_frame {
    uint64_t rcx, r11, ds, es, fs, gs, rip, cs, rflags, rsp, ss;
};

/* Syscall callback frame (entry_syscall_callback), lowest address first. */
struct syscall_frame {
    uint64_t rcx, r11, rip, cs, rflags, rsp, ss;
};

#endif /* !__ASSEMBLY__ */

#endif /* XENPY_GUEST_ARCH_FRAME_H */
