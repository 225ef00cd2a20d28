/*
 * Start of day of the xenpy guest kernel.
 *
 * kernel_main() runs on vCPU 0 with events masked (spec 7.5):
 *   1. keep start_info and find the console ring (no hypercall yet);
 *   2. check that the hypervisor filled the hypercall page;
 *   3. map shared_info (HYPERVISOR_update_va_mapping) and, in a domU, publish
 *      the p2m there for the toolstack's saver;
 *   4. install the trap table, mask every port, register the callbacks;
 *   5. print the banner, unmask events, run test_main(), report.
 */

#include <xenpy-guest/console.h>
#include <xenpy-guest/events.h>
#include <xenpy-guest/lib.h>
#include <xenpy-guest/setup.h>
#include <xenpy-guest/smp.h>
#include <xenpy-guest/suspend.h>
#include <xenpy-guest/test.h>
#include <xenpy-guest/traps.h>

/* First byte of an unfilled hypercall page (arch/x86_64/hypercall_page.S). */
#define HYPERCALL_PAGE_POISON 0xc3

/*
 * The hypercall page still holds its 0xC3 poison: no hypercall can work,
 * not even a shutdown. Leave a message in the console ring (the backend
 * may read it without a notification), then execute ud2: with no trap
 * table yet, the hypervisor crashes the domain, and the crash RIP points
 * into this function.
 */
static void __noreturn __attribute__((__noinline__)) hypercall_page_not_filled(void)
{
    static const char msg[] =
        "xenpy-guest: the hypercall page was not filled by the hypervisor (first byte is still 0xc3); stopping with ud2\n";

    if ( console_has_ring() )
        console_write_unlocked(msg, sizeof(msg) - 1, false);

    for ( ;; )
        __asm__ __volatile__ ("ud2");
}

static void print_banner(void)
{
    printk("--- xenpy guest ---\n");
    printk("Environment: PV 64bit, start_info %p (%s), %lu pages\n",
           start_info, start_info->magic, start_info->nr_pages);
    printk("Test: %s\n", test_title);
}

void kernel_main(start_info_t *si)
{
    int rc;

    start_info = si;
    console_init();

    if ( *(volatile uint8_t *)hypercall_page == HYPERCALL_PAGE_POISON )
        hypercall_page_not_filled();
    hypercall_page_ready = true;

    rc = map_shared_info();
    if ( rc )
        panic("Mapping shared_info (maddr %#lx) failed: %d\n",
              start_info->shared_info, rc);

    /* A toolstack's saver may read the p2m while the guest runs (live migration). */
    if ( !is_initial_domain() )
        (void)p2m_publish_frame_tree();

    traps_init();
    events_init(false);

    print_banner();

    local_irq_enable();
    test_main();
    local_irq_disable();

    xtf_exit();
}

void ap_main(unsigned int vcpu_id)
{
    if ( smp_processor_id() != vcpu_id )
        panic("vCPU %u started on the stack of vCPU %u\n", vcpu_id, smp_processor_id());

    smp_mark_online();
    smp_run_ap(vcpu_id);

    /* Idle: SCHEDOP_block unmasks events, so bound ports still get handled. */
    for ( ;; )
        (void)HYPERVISOR_sched_op(SCHEDOP_block, NULL);
}
