/*
 * pagefault: a read of an unmapped address is delivered as #PF (vector 14)
 * with an error code and the faulting address in vcpu_info.arch.cr2
 * (spec 5.3), and the expected-fault hook resumes after the load.
 *
 * The address is in the NULL page region below VIRT_BASE, which the
 * bootstrap page tables never map (spec 7.2). Error code: not present (P
 * clear), read (W clear), data (I clear), and kernel (U clear): the CPU
 * reports U = 1 because a PV64 kernel runs in ring 3, but Xen rewrites U
 * to the guest's virtual mode before bouncing the fault
 * (xen/arch/x86/pv/traps.c:pv_inject_event).
 */

#include <xenpy-guest.h>

const char test_title[] = "Exception delivery: #PF with error code and cr2";

#define UNMAPPED_VA 0x1000UL

static struct exception_frame seen;
static unsigned long seen_cr2;
static unsigned int nr_seen;
static unsigned long resume_rip;        /* the instruction after the load */

static bool pf_hook(struct exception_frame *f)
{
    if ( f->entry_vector != X86_EXC_PF )
        return false;

    seen = *f;
    seen_cr2 = read_cr2();
    nr_seen++;
    f->rip = resume_rip;

    return true;
}

void test_main(void)
{
    unsigned long load_rip, value = UNMAPPED_VA;

    set_exception_hook(pf_hook);
    __asm__ __volatile__ ("lea 2f(%%rip), %[rip]\n\t"
                          "mov %[rip], %[resume]\n\t"
                          "lea 1f(%%rip), %[rip]\n\t"
                          "1: mov (%[val]), %[val]\n\t"
                          "2:\n\t"
                          : [rip] "=&r" (load_rip), [val] "+r" (value),
                            [resume] "=m" (resume_rip)
                          :: "memory");
    set_exception_hook(NULL);

    printk("#PF seen %u time(s): error code %#x, rip %#lx (load at %#lx), cr2 %#lx\n",
           nr_seen, seen.error_code, seen.rip, load_rip, seen_cr2);

    if ( nr_seen != 1 )
    {
        xtf_failure("Fail: expected one #PF, saw %u\n", nr_seen);
        return;
    }
    if ( seen.rip != load_rip )
        xtf_failure("Fail: rip %#lx, expected %#lx\n", seen.rip, load_rip);
    if ( seen_cr2 != UNMAPPED_VA )
        xtf_failure("Fail: cr2 %#lx, expected %#lx\n", seen_cr2, UNMAPPED_VA);
    if ( seen.error_code & (X86_PFEC_PRESENT | X86_PFEC_WRITE | X86_PFEC_USER | X86_PFEC_INSN) )
        xtf_failure("Fail: error code %#x: expected a not-present kernel read (0)\n",
                    seen.error_code);
    if ( value != UNMAPPED_VA )
        xtf_failure("Fail: the faulting load changed its destination to %#lx\n", value);

    if ( xtf_ok() )
        xtf_success(NULL);
}
