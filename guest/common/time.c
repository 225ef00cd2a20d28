/*
 * Time of the xenpy guest kernel.
 *
 * now_ns() reads the pvclock of the calling vCPU (vcpu_info.time, spec
 * 3.6): Xen makes version odd, writes the fields, then makes it even, so a
 * reader retries while version is odd or changed across its read. The
 * TSC is sampled inside the retry loop, so it matches the fields read.
 *
 * Sleeping arms the single-shot timer (VCPUOP_set_singleshot_timer, which
 * wakes a blocked vCPU, spec 3.2) and blocks; VIRQ_TIMER must be bound on
 * the vCPU, or Xen drops the event (spec 3.3) and the vCPU never wakes.
 */

#include <arch/processor.h>
#include <xenpy-guest/events.h>
#include <xenpy-guest/lib.h>
#include <xenpy-guest/smp.h>
#include <xenpy-guest/setup.h>
#include <xenpy-guest/time.h>

static long timer_port[MAX_VCPUS];          /* 0: VIRQ_TIMER not bound yet */
static unsigned long timer_events[MAX_VCPUS];

uint64_t now_ns(void)
{
    const volatile vcpu_time_info_t *t = &this_vcpu_info()->time;
    uint32_t version, mul;
    uint64_t tsc, tsc_timestamp, system_time, delta;
    int8_t shift;

    do {
        version = t->version;
        rmb();
        tsc = rdtsc();
        tsc_timestamp = t->tsc_timestamp;
        system_time = t->system_time;
        mul = t->tsc_to_system_mul;
        shift = t->tsc_shift;
        rmb();
    } while ( (version & 1) || version != t->version );

    delta = tsc - tsc_timestamp;
    if ( shift < 0 )
        delta >>= -shift;
    else
        delta <<= shift;

    return system_time + mul_u64_u32_shr32(delta, mul);
}

int timer_set_singleshot(uint64_t deadline_ns)
{
    struct vcpu_set_singleshot_timer timer = {
        .timeout_abs_ns = deadline_ns,
        .flags = 0,     /* a past deadline fires at once on every version (spec 1.4) */
    };

    return HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, smp_processor_id(), &timer);
}

int timer_stop_singleshot(void)
{
    return HYPERVISOR_vcpu_op(VCPUOP_stop_singleshot_timer, smp_processor_id(), NULL);
}

static void timer_handler(evtchn_port_t port, void *data)
{
    unsigned int cpu = (unsigned int)(unsigned long)data;

    (void)port;
    timer_events[cpu]++;
}

long timer_bind_this_vcpu(void)
{
    unsigned int cpu = smp_processor_id();
    long port = timer_port[cpu];

    if ( port > 0 )
        return port;

    /*
     * Every PV vCPU starts with a 10 ms periodic timer raising VIRQ_TIMER
     * (spec 3.1); while the VIRQ is unbound its events are dropped. Stop
     * it first, as Linux does, so that VIRQ_TIMER only ever comes from the
     * single-shot timer.
     */
    port = HYPERVISOR_vcpu_op(VCPUOP_stop_periodic_timer, cpu, NULL);
    if ( port )
        return port;

    port = evtchn_bind_virq(VIRQ_TIMER, cpu, timer_handler, (void *)(unsigned long)cpu);
    if ( port > 0 )
        timer_port[cpu] = port;

    return port;
}

void timer_forget_ports(void)
{
    for ( unsigned int cpu = 0; cpu < MAX_VCPUS; cpu++ )
        WRITE_ONCE(timer_port[cpu], 0);
}

unsigned long timer_nr_events(unsigned int cpu)
{
    return READ_ONCE(timer_events[cpu]);
}

void sleep_until(uint64_t deadline_ns)
{
    unsigned long flags;
    long port = timer_bind_this_vcpu();
    int rc;

    if ( port < 0 )
        panic("sleep: binding VIRQ_TIMER on vCPU %u failed: %ld\n", smp_processor_id(), port);

    flags = local_irq_save();
    while ( now_ns() < deadline_ns )
    {
        /*
         * Armed with events masked: if the deadline passes before the
         * block, upcall_pending is already set and SCHEDOP_block returns
         * at once (spec 3.4).
         */
        rc = timer_set_singleshot(deadline_ns);
        if ( rc )
            panic("VCPUOP_set_singleshot_timer failed: %d\n", rc);
        block_with_events_masked();
    }
    local_irq_restore(flags);
}
