/*
 * traps: a deliberate ud2 is delivered through the trap table as #UD
 * (vector 6) with the bounce frame of spec 3.3, and the expected-fault hook
 * resumes after it through HYPERVISOR_iret.
 *
 * Checked: the vector, the dummy error code, rip == the ud2, the kernel
 * code selector with RPL 0 (FLAT_KERNEL_CS & ~3, spec 3.3), rflags.IF ==
 * !saved_upcall_mask, the stack pointer of the interrupted context, and
 * that every GPR survives the round trip.
 *
 * Then, as XTF's memop-seg does, a write to a non-canonical address: Xen
 * forwards the hardware's fault, which is #SS(0) when the access goes
 * through the stack segment (a base of %rsp or %rbp, whatever %es/%cs/%ss/
 * %ds override: those are ignored in 64-bit mode; also leave's read at
 * %rbp) and #GP(0) otherwise (another base, %r12/%r13 included, or an %fs
 * override). The stack pointer stays canonical, so the bounce frame can be
 * written. QEMU's TCG, which runs real Xen under the conformance oracle,
 * raises #GP for every non-canonical address: on it the #SS forms want
 * #GP, and being CPU-dependent they are not compared with xenpy.
 */

#include <xenpy-guest.h>

const char test_title[] = "Exception delivery: #UD through the trap table, return with HYPERVISOR_iret; #SS vs #GP";

static struct exception_frame seen;
static unsigned int nr_seen;

static bool ud_hook(struct exception_frame *f)
{
    if ( f->entry_vector != X86_EXC_UD )
        return false;

    seen = *f;
    nr_seen++;
    f->rip += 2;                        /* skip the ud2 */

    return true;
}

/* The CPU's brand string (CPUID 0x80000002-0x80000004), "" if it has none. */
static void cpu_brand(char brand[49])
{
    uint32_t words[12], leaf, max;

    __asm__ __volatile__ ("cpuid" : "=a" (max) : "a" (0x80000000U) : "rbx", "rcx", "rdx");
    brand[0] = '\0';
    if ( max < 0x80000004U )
        return;
    for ( leaf = 0; leaf < 3; leaf++ )
        __asm__ __volatile__ ("cpuid"
                              : "=a" (words[4 * leaf]), "=b" (words[4 * leaf + 1]),
                                "=c" (words[4 * leaf + 2]), "=d" (words[4 * leaf + 3])
                              : "a" (0x80000002U + leaf));
    memcpy(brand, words, 48);
    brand[48] = '\0';
}

/* Whether brand names QEMU's TCG, which raises #GP(0) where hardware raises #SS(0). */
static bool brand_is_qemu_tcg(const char *brand)
{
    size_t i, len = strlen(brand);

    for ( i = 0; i + 8 <= len; i++ )
        if ( !strncmp(brand + i, "QEMU TCG", 8) )
            return true;

    return false;
}

/* Top bit set + 1 GiB: non-canonical (XTF memop-seg's address). */
#define NONCANONICAL 0x8000000040000000UL

/* Where the hook resumes after an expected #SS/#GP, and what it saw. */
static unsigned long fault_fixup;
static unsigned int fault_vector, fault_error_code;

static bool segment_fault_hook(struct exception_frame *f)
{
    if ( (f->entry_vector != X86_EXC_SS && f->entry_vector != X86_EXC_GP) || !fault_fixup )
        return false;

    fault_vector = f->entry_vector;
    fault_error_code = f->error_code;
    f->rip = fault_fixup;
    fault_fixup = 0;

    return true;
}

/*
 * One faulting access: "insn" runs with %rbp = %r13 = %rax = addr (%rbp
 * and %r13 saved around it) and addr - %rsp in %rcx; the hook resumes at
 * 1:. Returns the vector (0 if there was no fault).
 */
#define DEFINE_PROBE(name, insn)                                            \
static unsigned int probe_ ## name(unsigned long addr)                      \
{                                                                           \
    fault_vector = 0;                                                       \
    fault_error_code = ~0U;                                                 \
    __asm__ __volatile__ ("lea 1f(%%rip), %%rcx\n\t"                        \
                          "mov %%rcx, %[fixup]\n\t"                         \
                          "push %%rbp\n\t"                                  \
                          "push %%r13\n\t"                                  \
                          "mov %[addr], %%rbp\n\t"                          \
                          "mov %[addr], %%r13\n\t"                          \
                          "mov %[addr], %%rax\n\t"                          \
                          "mov %[addr], %%rcx\n\t"                          \
                          "sub %%rsp, %%rcx\n\t"                            \
                          insn "\n\t"                                       \
                          "1: pop %%r13\n\t"                                \
                          "pop %%rbp"                                       \
                          : [fixup] "=m" (fault_fixup)                      \
                          : [addr] "r" (addr)                               \
                          : "rax", "rcx", "memory");                        \
    fault_fixup = 0;                                                        \
    return fault_vector;                                                    \
}

DEFINE_PROBE(rbp,    "movb $0, (%%rbp)")
DEFINE_PROBE(rsp,    "movb $0, (%%rsp,%%rcx)")
DEFINE_PROBE(rax,    "movb $0, (%%rax)")
DEFINE_PROBE(r13,    "movb $0, (%%r13)")
DEFINE_PROBE(fs_rbp, "movb $0, %%fs:(%%rbp)")
DEFINE_PROBE(gs_rsp, "movb $0, %%gs:(%%rsp,%%rcx)")
DEFINE_PROBE(ss_rax, "movb $0, %%ss:(%%rax)")
DEFINE_PROBE(ds_rbp, "movb $0, %%ds:(%%rbp)")
DEFINE_PROBE(leave,  "leave")

static void check_segment_faults(void)
{
    static const struct {
        const char *id, *form;
        unsigned int (*probe)(unsigned long addr);
        unsigned int want;
    } probes[] = {
        { "noncanonical-rbp",    "movb $0, (%rbp)",          probe_rbp,    X86_EXC_SS },
        { "noncanonical-rsp",    "movb $0, (%rsp,%rcx)",     probe_rsp,    X86_EXC_SS },
        { "noncanonical-rax",    "movb $0, (%rax)",          probe_rax,    X86_EXC_GP },
        { "noncanonical-r13",    "movb $0, (%r13)",          probe_r13,    X86_EXC_GP },
        { "noncanonical-fs-rbp", "movb $0, %fs:(%rbp)",      probe_fs_rbp, X86_EXC_GP },
        { "noncanonical-gs-rsp", "movb $0, %gs:(%rsp,%rcx)", probe_gs_rsp, X86_EXC_GP },
        { "noncanonical-ss-rax", "movb $0, %ss:(%rax)",      probe_ss_rax, X86_EXC_GP },
        { "noncanonical-ds-rbp", "movb $0, %ds:(%rbp)",      probe_ds_rbp, X86_EXC_SS },
        { "noncanonical-leave",  "leave (reads at %rbp)",    probe_leave,  X86_EXC_SS },
    };
    exception_hook_t old;
    unsigned int i, nr_error_codes = 0;
    char brand[49];
    bool tcg;

    cpu_brand(brand);
    tcg = brand_is_qemu_tcg(brand);
    printk("CPU brand: %s%s\n", brand[0] ? brand : "(none)", tcg ? " (QEMU's TCG: #GP for #SS)" : "");
    old = set_exception_hook(segment_fault_hook);

    for ( i = 0; i < ARRAY_SIZE(probes); i++ )
    {
        unsigned int got = probes[i].probe(NONCANONICAL);

        if ( probes[i].want == X86_EXC_SS )
            check_cpu(probes[i].id, "3.3", got, tcg ? X86_EXC_GP : X86_EXC_SS,
                      "%s at a non-canonical address: #SS (vector 12; QEMU's TCG: #GP, 13)",
                      probes[i].form);
        else
            check(probes[i].id, "3.3", got, X86_EXC_GP,
                  "%s at a non-canonical address: #GP (vector 13)", probes[i].form);
        if ( got && fault_error_code != 0 )
            nr_error_codes++;
    }
    check("noncanonical-error-code", "3.3", nr_error_codes, 0,
          "#SS and #GP of a non-canonical address: error code 0 (faults with another)");

    set_exception_hook(old);
}

/* SEGBASE_GS_USER_SEL (public/arch-x86/xen-x86_64.h). */
#define SEGBASE_GS_USER_SEL 3
/* A GDT selector (RPL 3) on a guest GDT page this kernel never gave Xen (it makes no set_gdt call). */
#define UNMAPPED_GDT_SEL    0x47a3

static unsigned int read_gs(void)
{
    unsigned int sel;

    __asm__ __volatile__ ("mov %%gs, %0" : "=r" (sel));
    return sel & 0xffff;
}

/*
 * SEGBASE_GS_USER_SEL: a selector Xen's load faults on is replaced by the
 * null selector (its fix-up) and the call still returns 0; a flat one is
 * loaded. The GS selector goes back to null afterwards.
 */
static void check_gs_user_selector(void)
{
    long rc = HYPERVISOR_set_segment_base(SEGBASE_GS_USER_SEL, UNMAPPED_GDT_SEL);

    check("gs-user-sel-unmapped", "6.1", rc, 0,
          "set_segment_base(SEGBASE_GS_USER_SEL, a selector on an unmapped GDT page): rc");
    check("gs-user-sel-unmapped-loaded", "6.1", read_gs(), 0, "%%gs after it (the null selector)");
    rc = HYPERVISOR_set_segment_base(SEGBASE_GS_USER_SEL, FLAT_RING3_DS32);
    check("gs-user-sel-flat", "6.1", rc, 0, "set_segment_base(SEGBASE_GS_USER_SEL, FLAT_RING3_DS32): rc");
    check("gs-user-sel-flat-loaded", "6.1", read_gs(), FLAT_RING3_DS32, "%%gs after it");
    (void)HYPERVISOR_set_segment_base(SEGBASE_GS_USER_SEL, 0);
}

/*
 * set_trap_table with more entries than one invocation's work: Xen checks
 * for preemption after each entry and continues; the guest sees one call
 * returning 0 with every entry installed (the table here is this kernel's
 * own, repeated to LONG_TABLE_ENTRIES entries, so the handlers stay the
 * same).
 */
#define LONG_TABLE_ENTRIES 600
static struct trap_info long_table[LONG_TABLE_ENTRIES + 1];

static void check_long_trap_table(void)
{
    struct trap_info own[256] = { 0 };
    unsigned int n = 0;
    long rc;

    traps_fill_context(own);
    while ( n < LONG_TABLE_ENTRIES )
        for ( unsigned int v = 0; v < 256 && n < LONG_TABLE_ENTRIES; v++ )
            if ( own[v].address )
                long_table[n++] = own[v];
    long_table[n].address = 0;
    rc = HYPERVISOR_set_trap_table(long_table);
    check("long-trap-table", "5.7", rc, 0, "set_trap_table of %u entries: rc", n);

    nr_seen = 0;
    set_exception_hook(ud_hook);
    __asm__ __volatile__ ("ud2" ::: "memory");
    set_exception_hook(NULL);
    check("long-trap-table-ud", "5.7", nr_seen, 1, "#UD handled through the table installed by it");
}

void test_main(void)
{
    unsigned long ud2_rip, rsp_before, rbx_after, r12_after;
    const unsigned long rbx_magic = 0x1111222233334444UL;
    const unsigned long r12_magic = 0x5555666677778888UL;

    set_exception_hook(ud_hook);

    /*
     * rbx and r12 carry known values across the fault; the hook does not
     * touch them, so HYPERVISOR_iret must hand them back unchanged.
     */
    __asm__ __volatile__ ("mov %[rbx_in], %%rbx\n\t"
                          "mov %[r12_in], %%r12\n\t"
                          "mov %%rsp, %[rsp]\n\t"
                          "lea 1f(%%rip), %[rip]\n\t"
                          "1: ud2\n\t"
                          "mov %%rbx, %[rbx_out]\n\t"
                          "mov %%r12, %[r12_out]\n\t"
                          : [rip] "=&r" (ud2_rip), [rsp] "=&r" (rsp_before),
                            [rbx_out] "=&r" (rbx_after), [r12_out] "=&r" (r12_after)
                          : [rbx_in] "r" (rbx_magic), [r12_in] "r" (r12_magic)
                          : "rbx", "r12", "memory");

    set_exception_hook(NULL);

    printk("#UD seen %u time(s): vector %u, error code %#x, rip %#lx (ud2 at %#lx)\n",
           nr_seen, seen.entry_vector, seen.error_code, seen.rip, ud2_rip);
    printk("  cs %#x, saved upcall mask %u, rflags %#lx, rsp %#lx (before %#lx), ss %#lx\n",
           frame_cs_selector(&seen), frame_saved_upcall_mask(&seen), seen.rflags,
           seen.rsp, rsp_before, seen.ss);

    if ( nr_seen != 1 )
    {
        xtf_failure("Fail: expected one #UD, saw %u\n", nr_seen);
        return;
    }
    if ( seen.entry_vector != X86_EXC_UD )
        xtf_failure("Fail: vector %u, expected %u\n", seen.entry_vector, X86_EXC_UD);
    if ( seen.error_code != 0 )
        xtf_failure("Fail: error code %#x, expected none (0)\n", seen.error_code);
    if ( seen.rip != ud2_rip )
        xtf_failure("Fail: rip %#lx, expected %#lx\n", seen.rip, ud2_rip);
    if ( frame_cs_selector(&seen) != (FLAT_KERNEL_CS & ~3) )
        xtf_failure("Fail: cs %#x, expected %#x (kernel, RPL 0)\n",
                    frame_cs_selector(&seen), FLAT_KERNEL_CS & ~3);
    if ( !!(seen.rflags & 0x200) != !frame_saved_upcall_mask(&seen) )
        xtf_failure("Fail: rflags.IF %u but saved upcall mask %u\n",
                    !!(seen.rflags & 0x200), frame_saved_upcall_mask(&seen));
    if ( seen.rsp != rsp_before )
        xtf_failure("Fail: interrupted rsp %#lx, expected %#lx\n", seen.rsp, rsp_before);
    if ( (seen.ss & 0xffff) != FLAT_KERNEL_SS )
        xtf_failure("Fail: ss %#lx, expected %#x\n", seen.ss & 0xffff, FLAT_KERNEL_SS);
    if ( seen.rbx != rbx_magic || seen.r12 != r12_magic )
        xtf_failure("Fail: frame rbx %#lx r12 %#lx, expected %#lx %#lx\n",
                    seen.rbx, seen.r12, rbx_magic, r12_magic);
    if ( rbx_after != rbx_magic || r12_after != r12_magic )
        xtf_failure("Fail: after iret rbx %#lx r12 %#lx, expected %#lx %#lx\n",
                    rbx_after, r12_after, rbx_magic, r12_magic);
    if ( irqs_disabled() )
        xtf_failure("Fail: events masked after HYPERVISOR_iret (were enabled)\n");

    check_segment_faults();
    check_gs_user_selector();
    check_long_trap_table();

    if ( xtf_ok() )
        xtf_success(NULL);
}
