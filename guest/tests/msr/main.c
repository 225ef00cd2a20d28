/*
 * msr: the MSRs a PV64 kernel reads and writes with rdmsr/wrmsr, which
 * Xen emulates (spec 3.3: a privileged instruction in the guest kernel is
 * a #GP(0) that Xen emulates, or injects):
 *
 *   - EFER reads back LME|LMA|SCE|NXE;
 *   - the FS and GS bases written with wrmsr read back, a non-canonical
 *     base is #GP;
 *   - the microcode revision reads (whether writing 0 to it works depends
 *     on the CPU vendor, so it is not checked here);
 *   - PLATFORM_INFO and MISC_FEATURES_ENABLES read 0 on a CPU without
 *     CPUID faulting, and setting the faulting bit is #GP;
 *   - an MSR Xen does not offer is #GP;
 *   - port I/O (in/out, 2 bytes each here) is #GP under virtual IOPL 0, and
 *     completes without a fault under IOPL 1 (PHYSDEVOP_set_iopl), a
 *     thousand times in a loop (what it reads depends on the domain: all
 *     ones for a domU, the port for dom0, so it is not checked).
 */

#include <xenpy-guest.h>

const char test_title[] = "MSRs of a PV64 kernel: rdmsr and wrmsr emulation";

#define MSR_EFER                        0xc0000080U
#define MSR_FS_BASE                     0xc0000100U
#define MSR_SHADOW_GS_BASE              0xc0000102U
#define MSR_IA32_UCODE_REV              0x0000008bU
#define MSR_INTEL_PLATFORM_INFO         0x000000ceU
#define MSR_INTEL_MISC_FEATURES_ENABLES 0x00000140U
#define MSR_UNOFFERED                   0x00001234U  /* no MSR there: Xen refuses it */
#define EFER_SCE_LME_LMA_NXE            0xd01UL

static unsigned int nr_gp;

#define PORT_POST 0x80  /* the POST diagnostic port: harmless to read and write */

static bool gp_hook(struct exception_frame *f)
{
    if ( f->entry_vector != X86_EXC_GP )
        return false;
    nr_gp++;
    f->rip += 2;  /* rdmsr and wrmsr are 2 bytes */
    return true;
}

/* rdmsr; *faulted tells whether it was a #GP. */
static uint64_t rdmsr(uint32_t msr, unsigned int *faulted)
{
    uint32_t lo = 0, hi = 0;
    unsigned int before = nr_gp;

    __asm__ __volatile__ ("rdmsr" : "+a"(lo), "+d"(hi) : "c"(msr) : "memory");
    *faulted = nr_gp - before;
    return ((uint64_t)hi << 32) | lo;
}

/* wrmsr; 1 if it was a #GP. */
static unsigned int wrmsr(uint32_t msr, uint64_t value)
{
    unsigned int before = nr_gp;

    __asm__ __volatile__ ("wrmsr" :: "c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32)) : "memory");
    return nr_gp - before;
}

static long set_iopl(uint32_t iopl)
{
    return HYPERVISOR_physdev_op(PHYSDEVOP_set_iopl, &iopl);
}

/* rounds x (outb %al, $PORT_POST; inb $PORT_POST, %al); the #GPs they raised. */
static unsigned int port_io_faults(unsigned int rounds)
{
    unsigned int before = nr_gp, i;
    uint8_t value = 0;

    for ( i = 0; i < rounds; i++ )
        __asm__ __volatile__ ("outb %0, %1\n\tinb %1, %0" : "+a"(value) : "i"(PORT_POST) : "memory");
    return nr_gp - before;
}

void test_main(void)
{
    unsigned int faulted;
    uint64_t value;

    test_profile();
    set_exception_hook(gp_hook);

    value = rdmsr(MSR_EFER, &faulted);
    check("efer-read", "3.3", faulted, 0, "rdmsr(EFER): no #GP");
    check_hex("efer-value", "3.3", value, EFER_SCE_LME_LMA_NXE, "rdmsr(EFER): LME|LMA|SCE|NXE");

    check("fs-base-write", "3.3", wrmsr(MSR_FS_BASE, 0x12345000UL), 0, "wrmsr(FS_BASE): no #GP");
    value = rdmsr(MSR_FS_BASE, &faulted);
    check_hex("fs-base-read", "3.3", value, 0x12345000UL, "rdmsr(FS_BASE) reads back what wrmsr wrote");
    check("fs-base-noncanonical", "3.3", wrmsr(MSR_FS_BASE, 0x0000800000000000UL), 1,
          "wrmsr(FS_BASE) of a non-canonical base: #GP");
    check("fs-base-reset", "3.3", wrmsr(MSR_FS_BASE, 0), 0, "wrmsr(FS_BASE, 0): no #GP");
    check("shadow-gs-write", "3.3", wrmsr(MSR_SHADOW_GS_BASE, 0x2000UL), 0, "wrmsr(SHADOW_GS_BASE): no #GP");
    value = rdmsr(MSR_SHADOW_GS_BASE, &faulted);
    check_hex("shadow-gs-read", "3.3", value, 0x2000UL, "rdmsr(SHADOW_GS_BASE) reads back what wrmsr wrote");
    wrmsr(MSR_SHADOW_GS_BASE, 0);

    rdmsr(MSR_IA32_UCODE_REV, &faulted);
    check("ucode-read", "3.3", faulted, 0, "rdmsr(UCODE_REV): no #GP");

    value = rdmsr(MSR_INTEL_PLATFORM_INFO, &faulted);
    check("platform-info-read", "3.3", faulted, 0, "rdmsr(PLATFORM_INFO): no #GP");
    check_hex("platform-info-no-faulting", "3.3", value & (1UL << 31), 0,
              "rdmsr(PLATFORM_INFO): no CPUID faulting offered");
    value = rdmsr(MSR_INTEL_MISC_FEATURES_ENABLES, &faulted);
    check("misc-features-read", "3.3", faulted, 0, "rdmsr(MISC_FEATURES_ENABLES): no #GP");
    check_hex("misc-features-value", "3.3", value, 0, "rdmsr(MISC_FEATURES_ENABLES): 0");
    check("misc-features-faulting", "3.3", wrmsr(MSR_INTEL_MISC_FEATURES_ENABLES, 1), 1,
          "wrmsr(MISC_FEATURES_ENABLES, CPUID faulting) without CPUID faulting: #GP");

    rdmsr(MSR_UNOFFERED, &faulted);
    check("unoffered-read", "3.3", faulted, 1, "rdmsr(%#x), an MSR Xen does not offer: #GP", MSR_UNOFFERED);
    check("unoffered-write", "3.3", wrmsr(MSR_UNOFFERED, 0), 1, "wrmsr(%#x): #GP", MSR_UNOFFERED);

    check("io-iopl0", "3.3", port_io_faults(1), 2, "outb and inb on port %#x under IOPL 0: #GP each", PORT_POST);
    check("io-set-iopl-1", "6.1", set_iopl(1), 0, "PHYSDEVOP_set_iopl(1)");
    check("io-iopl1", "3.3", port_io_faults(1000), 0, "1000 x (outb, inb) on port %#x under IOPL 1: no #GP",
          PORT_POST);
    check("io-set-iopl-0", "6.1", set_iopl(0), 0, "PHYSDEVOP_set_iopl(0)");
    check("io-iopl0-again", "3.3", port_io_faults(1), 2, "outb and inb under IOPL 0 again: #GP each");

    set_exception_hook(NULL);
    if ( xtf_ok() )
        xtf_success(NULL);
}
