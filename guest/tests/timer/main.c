/*
 * timer: a single-shot timer wakes a blocked vCPU (spec 3.2).
 *
 * VIRQ_TIMER is bound on vCPU 0 (an unbound timer event is dropped, spec
 * 3.3). With events masked, the test arms VCPUOP_set_singleshot_timer
 * 10 ms ahead and blocks (SCHEDOP_block unmasks events, spec 3.4). The
 * vCPU must come back with exactly one timer event handled, no earlier than
 * the deadline.
 */

#include <xenpy-guest.h>

const char test_title[] = "Single-shot timer wakes a blocked vCPU through VIRQ_TIMER";

#define TIMEOUT_NS     (10 * NSEC_PER_MSEC)
#define MAX_LATENCY_NS (1 * NSEC_PER_SEC)
#define MAX_BLOCKS     100

void test_main(void)
{
    long port = timer_bind_this_vcpu();
    uint64_t start, deadline, woke;
    unsigned long before, after;
    unsigned int nr_blocks = 0;
    int rc;

    if ( port <= 0 )
    {
        xtf_error("Error: EVTCHNOP_bind_virq(VIRQ_TIMER, vCPU 0) failed: %ld\n", port);
        return;
    }
    printk("VIRQ_TIMER bound to port %ld\n", port);

    local_irq_disable();
    before = timer_nr_events(0);
    start = now_ns();
    deadline = start + TIMEOUT_NS;

    rc = timer_set_singleshot(deadline);
    if ( rc )
    {
        local_irq_enable();
        xtf_error("Error: VCPUOP_set_singleshot_timer failed: %d\n", rc);
        return;
    }

    while ( timer_nr_events(0) == before && nr_blocks < MAX_BLOCKS )
    {
        block_with_events_masked();
        nr_blocks++;
    }
    woke = now_ns();
    after = timer_nr_events(0);
    local_irq_enable();

    printk("Armed at %lu ns for %lu ns; woke at %lu ns (+%lu ns) after %u block(s), %lu timer event(s)\n",
           start, deadline, woke, woke - deadline, nr_blocks, after - before);

    if ( after - before != 1 )
        xtf_failure("Fail: %lu timer events, expected 1\n", after - before);
    if ( woke < deadline )
        xtf_failure("Fail: woke at %lu ns, before the deadline %lu ns\n", woke, deadline);
    else if ( woke - deadline > MAX_LATENCY_NS )
        xtf_failure("Fail: woke %lu ns after the deadline\n", woke - deadline);
    if ( evtchn_nr_spurious )
        xtf_failure("Fail: %lu spurious events\n", evtchn_nr_spurious);

    if ( xtf_ok() )
        xtf_success(NULL);
}
