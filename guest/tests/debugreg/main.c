/*
 * debugreg: HYPERVISOR_set_debugreg and HYPERVISOR_get_debugreg (hypercalls
 * 8 and 9) on the calling vCPU (spec 1.3 step 13, 7.5).
 *
 * Checks the reset values, breakpoint addresses (Xen's range and
 * non-canonical addresses are -EPERM), the reserved bits of DR6 and DR7
 * (forced to 1 or 0; a value wider than 32 bits is -EINVAL), DR7.GD and I/O
 * breakpoints (-EPERM), and register numbers that do not exist (-ENODEV).
 * Bits 11 and 16 of DR6 and bit 11 of DR7 depend on the CPU (RTM, BusLock
 * Detect) and are masked out of the compared values.
 */

#include <xenpy-guest.h>

const char test_title[] = "set_debugreg and get_debugreg";

#define XEN_RANGE_ADDR   0xffff800000000000UL
#define NON_CANONICAL    0x0000800000000000UL
#define UPPER_HALF_OK    0xffff880000000000UL

/* Bits whose value depends on the CPU's RTM and BusLock Detect. */
#define DR6_CPU_BITS     ((1UL << 11) | (1UL << 16))
#define DR7_CPU_BITS     (1UL << 11)

/* A data word a DR0 breakpoint (execute, so never hit) points at. */
static unsigned long bp_target;

/* A #GP from an emulated mov to DRn: skip the 3-byte instruction. */
static unsigned int nr_gp;

static bool gp_hook(struct exception_frame *f)
{
    if ( f->entry_vector != X86_EXC_GP )
        return false;
    nr_gp++;
    f->rip += 3;
    return true;
}

static long set(int reg, unsigned long value)
{
    return HYPERVISOR_set_debugreg(reg, value);
}

static long get(int reg)
{
    return HYPERVISOR_get_debugreg(reg);
}

void test_main(void)
{
    unsigned long bp = (unsigned long)&bp_target;

    (void)test_profile();

    /* Reset values (spec 7.5). */
    check_hex("reset-dr0", "7.5", get(0), 0, "HYPERVISOR_get_debugreg(0) at boot");
    check_hex("reset-dr6", "7.5", get(6) & ~DR6_CPU_BITS, 0xffff0ff0UL & ~DR6_CPU_BITS,
              "HYPERVISOR_get_debugreg(6) at boot (bits 11, 16 masked)");
    check_hex("reset-dr7", "7.5", get(7) & ~DR7_CPU_BITS, 0x400,
              "HYPERVISOR_get_debugreg(7) at boot (bit 11 masked)");

    /* Breakpoint addresses. */
    check("set-dr0", "1.3", set(0, bp), 0, "HYPERVISOR_set_debugreg(0, a kernel address)");
    check_hex("get-dr0", "1.3", get(0), bp, "HYPERVISOR_get_debugreg(0) after setting it");
    check("set-dr1-xen", "1.3", set(1, XEN_RANGE_ADDR), -XEN_EPERM,
          "HYPERVISOR_set_debugreg(1, an address in Xen's range)");
    check("set-dr2-noncanonical", "1.3", set(2, NON_CANONICAL), -XEN_EPERM,
          "HYPERVISOR_set_debugreg(2, a non-canonical address)");
    check_hex("get-dr2-kept", "1.3", get(2), 0,
              "HYPERVISOR_get_debugreg(2) after a refused set");
    check("set-dr3-upper", "1.3", set(3, UPPER_HALF_OK), 0,
          "HYPERVISOR_set_debugreg(3, an upper-half address above Xen's range)");
    check_hex("get-dr3-upper", "1.3", (unsigned long)get(3), UPPER_HALF_OK,
              "HYPERVISOR_get_debugreg(3) of an upper-half address");
    check("set-dr3-zero", "1.3", set(3, 0), 0, "HYPERVISOR_set_debugreg(3, 0)");

    /* DR6: reserved bits read as 1 (4-11, 16-31) and 0 (12); 32 bits only. */
    check("set-dr6-zero", "1.3", set(6, 0), 0, "HYPERVISOR_set_debugreg(6, 0)");
    check_hex("get-dr6-zero", "1.3", get(6) & ~DR6_CPU_BITS, 0xffff0ff0UL & ~DR6_CPU_BITS,
              "HYPERVISOR_get_debugreg(6) after writing 0 (bits 11, 16 masked)");
    check("set-dr6-bits", "1.3", set(6, 0x0000f00fUL), 0, "HYPERVISOR_set_debugreg(6, 0xf00f)");
    check_hex("get-dr6-bits", "1.3", get(6) & ~DR6_CPU_BITS, 0xffffefffUL & ~DR6_CPU_BITS,
              "HYPERVISOR_get_debugreg(6) after writing 0xf00f (bit 12 forced to 0)");
    check("set-dr6-wide", "1.3", set(6, 1UL << 32), -XEN_EINVAL,
          "HYPERVISOR_set_debugreg(6, 1 << 32)");
    check("set-dr6-reset", "1.3", set(6, 0xffff0ff0UL), 0, "HYPERVISOR_set_debugreg(6, 0xffff0ff0)");

    /* DR7: bit 10 reads as 1, bits 12, 14, 15 as 0; GD and I/O breakpoints refused. */
    check("set-dr7-zero", "1.3", set(7, 0), 0, "HYPERVISOR_set_debugreg(7, 0)");
    check_hex("get-dr7-zero", "1.3", get(7) & ~DR7_CPU_BITS, 0x400,
              "HYPERVISOR_get_debugreg(7) after writing 0 (bit 10 forced to 1)");
    check("set-dr7-rsvd", "1.3", set(7, 0xd000), 0, "HYPERVISOR_set_debugreg(7, 0xd000)");
    check_hex("get-dr7-rsvd", "1.3", get(7) & ~DR7_CPU_BITS, 0x400,
              "HYPERVISOR_get_debugreg(7) after writing 0xd000 (bits 12, 14, 15 forced to 0)");
    check("set-dr7-wide", "1.3", set(7, 1UL << 32), -XEN_EINVAL,
          "HYPERVISOR_set_debugreg(7, 1 << 32)");
    check("set-dr7-gd", "1.3", set(7, 1UL << 13), -XEN_EPERM,
          "HYPERVISOR_set_debugreg(7, GD)");
    check("set-dr7-io", "1.3", set(7, 0x1UL | (2UL << 16)), -XEN_EPERM,
          "HYPERVISOR_set_debugreg(7, L0 with an I/O breakpoint, CR4.DE clear)");
    check("set-dr7-l0", "1.3", set(7, 0x1UL), 0,
          "HYPERVISOR_set_debugreg(7, L0: execute breakpoint at DR0)");
    check_hex("get-dr7-l0", "1.3", get(7) & ~DR7_CPU_BITS, 0x401,
              "HYPERVISOR_get_debugreg(7) with L0 enabled");
    check("set-dr7-off", "1.3", set(7, 0x400), 0, "HYPERVISOR_set_debugreg(7, 0x400)");

    /* DR4 and DR5 are DR6 and DR7 while CR4.DE is clear; others do not exist. */
    check_hex("get-dr4", "1.3", get(4) & ~DR6_CPU_BITS, 0xffff0ff0UL & ~DR6_CPU_BITS,
              "HYPERVISOR_get_debugreg(4) (DR6 while CR4.DE is clear)");
    check_hex("get-dr5", "1.3", get(5) & ~DR7_CPU_BITS, 0x400,
              "HYPERVISOR_get_debugreg(5) (DR7 while CR4.DE is clear)");
    check("set-dr8", "1.3", set(8, 0), -XEN_ENODEV, "HYPERVISOR_set_debugreg(8)");
    check("set-dr-neg", "1.3", set(-1, 0), -XEN_ENODEV, "HYPERVISOR_set_debugreg(-1)");
    check("get-dr8", "1.3", get(8), -XEN_ENODEV, "HYPERVISOR_get_debugreg(8)");
    check("get-dr-neg", "1.3", get(-1), -XEN_ENODEV, "HYPERVISOR_get_debugreg(-1)");

    /* The same rules for the kernel's own mov to and from DRn, which Xen emulates (a refusal is #GP). */
    {
        unsigned long v = bp, got = 0;

        set_exception_hook(gp_hook);
        __asm__ __volatile__ ("mov %0, %%db0" :: "r"(v));
        __asm__ __volatile__ ("mov %%db0, %0" : "=r"(got));
        check_hex("mov-dr0", "1.3", got, bp, "mov to and from %%db0 (as HYPERVISOR_set_debugreg(0))");
        v = XEN_RANGE_ADDR;
        __asm__ __volatile__ ("mov %0, %%db1" :: "r"(v));
        check("mov-dr1-xen-gp", "1.3", nr_gp, 1, "mov to %%db1 of an address in Xen's range: #GP");
        v = 1UL << 32;
        __asm__ __volatile__ ("mov %0, %%db7" :: "r"(v));
        check("mov-dr7-wide-gp", "1.3", nr_gp, 2, "mov to %%db7 of a value wider than 32 bits: #GP");
        __asm__ __volatile__ ("mov %%db7, %0" : "=r"(got));
        check_hex("mov-dr7-read", "1.3", got & ~DR7_CPU_BITS, get(7) & ~DR7_CPU_BITS,
                  "mov from %%db7 reads what HYPERVISOR_get_debugreg(7) does");
        set_exception_hook(NULL);
    }

    (void)set(0, 0);

    if ( xtf_ok() )
        xtf_success(NULL);
}
