/*
 * hello: boot, print a greeting with a few printf formats and the
 * start_info fields (spec 5.5, 7.2), and power off with SUCCESS.
 *
 * Checked: start_info.magic names a 64-bit PV guest ("xen-3.0-x86_64"),
 * the p2m list, page tables and start_info lie in the bootstrap region,
 * which starts at VIRT_BASE (spec 7.2). The FPU is as Xen gives it to a new
 * vCPU: the default x87 control word 0x37f and MXCSR 0x1f80 (spec 1.3).
 */

#include <xenpy-guest.h>

const char test_title[] = "Hello from a xenpy PV guest";

static bool in_region(unsigned long va)
{
    return va >= VIRT_BASE && va < VIRT_BASE + start_info->nr_pages * PAGE_SIZE;
}

void test_main(void)
{
    const start_info_t *si = start_info;
    long version = HYPERVISOR_xen_version(XENVER_version, NULL);

    printk("Hello, world! %d %i %u %x %lx %llx %c %s %%\n",
           -42, 7, 42U, 0xbeefU, 0x123456789abcUL, 0xfedcba9876543210ULL, 'X', "ok");
    printk("Padding: [%5d] [%-5d] [%05d] [%08x] [%#x] [%p]\n",
           42, 42, 42, 0xbeefU, 0xbeefU, (void *)si);

    printk("Xen version %ld.%ld\n", version >> 16, version & 0xffff);
    printk("start_info at %p:\n", si);
    printk("  magic          \"%.32s\"\n", si->magic);
    printk("  nr_pages       %lu\n", si->nr_pages);
    printk("  shared_info    %#lx (machine address)\n", si->shared_info);
    printk("  flags          %#x\n", si->flags);
    printk("  store          mfn %#lx, evtchn %u\n", si->store_mfn, si->store_evtchn);
    printk("  console        mfn %#lx, evtchn %u (%s)\n", si->console.domU.mfn,
           si->console.domU.evtchn, console_has_ring() ? "ring" : "console_io");
    printk("  pt_base        %#lx, %lu frames\n", si->pt_base, si->nr_pt_frames);
    printk("  mfn_list       %#lx\n", si->mfn_list);
    printk("  mod            %#lx, %lu bytes\n", si->mod_start, si->mod_len);
    printk("  cmd_line       \"%.*s\"\n", MAX_GUEST_CMDLINE, (const char *)si->cmd_line);
    printk("  p2m[0..2]      %#lx %#lx %#lx\n", pfn_to_mfn(0), pfn_to_mfn(1), pfn_to_mfn(2));

    {
        uint32_t mxcsr;
        uint16_t fcw;

        /* Nothing in the kernel has touched the FPU yet (-mgeneral-regs-only). */
        __asm__ __volatile__ ("stmxcsr %0; fnstcw %1" : "=m"(mxcsr), "=m"(fcw));
        check_hex("fpu-mxcsr", "1.3", mxcsr, 0x1f80, "MXCSR of a new vCPU");
        check_hex("fpu-fcw", "1.3", fcw, 0x37f, "x87 control word of a new vCPU");
    }

    if ( strncmp(si->magic, "xen-3.0-x86_64", 14) )
        xtf_failure("Fail: start_info.magic \"%.32s\" is not a 64-bit PV magic\n", si->magic);
    if ( si->nr_pages == 0 )
        xtf_failure("Fail: start_info.nr_pages is 0\n");
    if ( !in_region(si->mfn_list) || !in_region(si->pt_base) ||
         !in_region((unsigned long)si) )
        xtf_failure("Fail: mfn_list, pt_base or start_info outside the bootstrap region\n");
    if ( version < 0 )
        xtf_failure("Fail: XENVER_version returned %ld\n", version);

    if ( xtf_ok() )
        xtf_success(NULL);
}
