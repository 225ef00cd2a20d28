/*
 * traps: a deliberate ud2 is delivered through the trap table as #UD
 * (vector 6) with the bounce frame of spec 3.3, and the expected-fault hook
 * resumes after it through HYPERVISOR_iret.
 *
 * Checked: the vector, the dummy error code, rip == the ud2, the kernel
 * code selector with RPL 0 (FLAT_KERNEL_CS & ~3, spec 3.3), rflags.IF ==
 * !saved_upcall_mask, the stack pointer of the interrupted context, and
 * that every GPR survives the round trip.
 */

#include <xenpy-guest.h>

const char test_title[] = "Exception delivery: #UD through the trap table, return with HYPERVISOR_iret";

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

    if ( xtf_ok() )
        xtf_success(NULL);
}
