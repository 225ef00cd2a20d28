/*
 * The virtual IDT of the xenpy guest kernel and its C exception handlers.
 *
 * HYPERVISOR_set_trap_table installs one trap_info per vector (spec 5.7);
 * Xen bounces an exception of the guest to trap_ctxt[vector].address with
 * the frame of spec 3.3, and the entry stubs (entry.S) turn that into a
 * struct exception_frame. Every entry masks events on entry (flags bit 2),
 * so handlers never nest with an event upcall; HYPERVISOR_iret restores the
 * mask from the saved RFLAGS.IF.
 */

#include <xenpy-guest/lib.h>
#include <xenpy-guest/setup.h>
#include <xenpy-guest/smp.h>
#include <xenpy-guest/traps.h>

/* Stubs of entry.S. */
void entry_DE(void);
void entry_DB(void);
void entry_NMI(void);
void entry_BP(void);
void entry_OF(void);
void entry_BR(void);
void entry_UD(void);
void entry_NM(void);
void entry_DF(void);
void entry_CSO(void);
void entry_TS(void);
void entry_NP(void);
void entry_SS(void);
void entry_GP(void);
void entry_PF(void);
void entry_SPV(void);
void entry_MF(void);
void entry_AC(void);
void entry_MC(void);
void entry_XM(void);

/* trap_info.flags: DPL in bits 0-1, bit 2 masks events on entry. */
#define TI_DPL0_MASKED 4
#define TI_DPL3_MASKED (4 | 3)

/*
 * #BP and #OF have DPL 3 so that int3 / into are allowed from any mode;
 * the others can only be raised by the CPU. The table ends with an entry
 * whose address is 0.
 */
static const struct trap_info trap_table[X86_NR_HANDLED_VECTORS + 1] = {
    { X86_EXC_DE,  TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_DE  },
    { X86_EXC_DB,  TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_DB  },
    { X86_EXC_NMI, TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_NMI },
    { X86_EXC_BP,  TI_DPL3_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_BP  },
    { X86_EXC_OF,  TI_DPL3_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_OF  },
    { X86_EXC_BR,  TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_BR  },
    { X86_EXC_UD,  TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_UD  },
    { X86_EXC_NM,  TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_NM  },
    { X86_EXC_DF,  TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_DF  },
    { X86_EXC_CSO, TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_CSO },
    { X86_EXC_TS,  TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_TS  },
    { X86_EXC_NP,  TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_NP  },
    { X86_EXC_SS,  TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_SS  },
    { X86_EXC_GP,  TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_GP  },
    { X86_EXC_PF,  TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_PF  },
    { X86_EXC_SPV, TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_SPV },
    { X86_EXC_MF,  TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_MF  },
    { X86_EXC_AC,  TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_AC  },
    { X86_EXC_MC,  TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_MC  },
    { X86_EXC_XM,  TI_DPL0_MASKED, FLAT_KERNEL_CS, (unsigned long)entry_XM  },
    { 0, 0, 0, 0 },
};

static const char *const mnemonics[X86_NR_HANDLED_VECTORS] = {
    [X86_EXC_DE]  = "#DE", [X86_EXC_DB]  = "#DB", [X86_EXC_NMI] = "NMI",
    [X86_EXC_BP]  = "#BP", [X86_EXC_OF]  = "#OF", [X86_EXC_BR]  = "#BR",
    [X86_EXC_UD]  = "#UD", [X86_EXC_NM]  = "#NM", [X86_EXC_DF]  = "#DF",
    [X86_EXC_CSO] = "#CSO", [X86_EXC_TS] = "#TS", [X86_EXC_NP]  = "#NP",
    [X86_EXC_SS]  = "#SS", [X86_EXC_GP]  = "#GP", [X86_EXC_PF]  = "#PF",
    [X86_EXC_SPV] = "#SPV", [X86_EXC_MF] = "#MF", [X86_EXC_AC]  = "#AC",
    [X86_EXC_MC]  = "#MC", [X86_EXC_XM]  = "#XM",
};

static volatile exception_hook_t exception_hook;

exception_hook_t set_exception_hook(exception_hook_t hook)
{
    return __atomic_exchange_n(&exception_hook, hook, __ATOMIC_SEQ_CST);
}

const char *exception_mnemonic(unsigned int vector)
{
    if ( vector < X86_NR_HANDLED_VECTORS )
        return mnemonics[vector];

    return "#??";
}

unsigned long read_cr2(void)
{
    return READ_ONCE(this_vcpu_info()->arch.cr2);
}

void traps_init(void)
{
    long rc = HYPERVISOR_set_trap_table(trap_table);

    if ( rc )
        panic("HYPERVISOR_set_trap_table failed: %ld\n", rc);
}

void traps_fill_context(struct trap_info trap_ctxt[256])
{
    for ( const struct trap_info *t = trap_table; t->address; t++ )
        trap_ctxt[t->vector] = *t;
}

/*
 * Called by handle_exception (entry.S) for vectors 0-19. Without a hook
 * that accepts the exception, the domain is crashed. The report is built
 * in one buffer and written by panic() without the console lock (the fault
 * may have happened while this vCPU held it).
 */
void do_exception(struct exception_frame *f)
{
    unsigned int vec = f->entry_vector;
    exception_hook_t hook = exception_hook;
    unsigned long cr2 = vec == X86_EXC_PF ? read_cr2() : 0;

    if ( hook && hook(f) )
        return;

    panic("Unhandled exception on vCPU %u: vec %u %s, error code %#x, rip %016lx, cr2 %016lx\n"
          "  cs %04x (saved upcall mask %u)  rflags %016lx  rsp %016lx  ss %04lx\n"
          "  rax %016lx  rbx %016lx  rcx %016lx  rdx %016lx\n"
          "  rsi %016lx  rdi %016lx  rbp %016lx  r8  %016lx\n"
          "  r9  %016lx  r10 %016lx  r11 %016lx  r12 %016lx\n"
          "  r13 %016lx  r14 %016lx  r15 %016lx\n",
          smp_processor_id(), vec, exception_mnemonic(vec), f->error_code, f->rip, cr2,
          frame_cs_selector(f), frame_saved_upcall_mask(f), f->rflags, f->rsp, f->ss & 0xffff,
          f->rax, f->rbx, f->rcx, f->rdx, f->rsi, f->rdi, f->rbp, f->r8,
          f->r9, f->r10, f->r11, f->r12, f->r13, f->r14, f->r15);
}

void __noreturn do_failsafe_callback(const struct failsafe_frame *f)
{
    panic("Failsafe callback on vCPU %u: rip %016lx cs %04lx, "
          "ds %04lx es %04lx fs %04lx gs %04lx\n", smp_processor_id(),
          f->rip, f->cs & 0xffff, f->ds & 0xffff, f->es & 0xffff,
          f->fs & 0xffff, f->gs & 0xffff);
}

void __noreturn do_syscall_callback(const struct syscall_frame *f)
{
    panic("Unexpected syscall callback on vCPU %u: rip %016lx cs %04lx\n",
          smp_processor_id(), f->rip, f->cs & 0xffff);
}
