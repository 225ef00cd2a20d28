/*
 * timers: the periodic and single-shot timers, HYPERVISOR_set_timer_op,
 * SCHEDOP_block, SCHEDOP_poll and the other SCHEDOP_* sub-ops, and the
 * time record's refresh at time calibration (spec 1.2 cmds 6-9, 1.4, 3.1,
 * 3.2, 3.3, 3.4, 3.6). Needs 2 vCPUs: vCPU 1 stays down and is the
 * "other vCPU" of the self-only checks.
 *
 * The test owns VIRQ_TIMER on vCPU 0 (bound with the 10 ms periodic timer
 * every PV vCPU starts with still running) and does not use the runtime's
 * sleep functions. Events stay masked (evtchn_upcall_mask = 1) except
 * where a step enables them, so a timer event shows as the VIRQ_TIMER
 * port's pending bit until the step delivers it. Waits are SCHEDOP_poll
 * with a timeout, so a timer that never fires ends the wait instead of
 * hanging the test.
 *
 * Times are checked as relations: "no earlier than" a deadline (less the
 * slack between the guest's pvclock and Xen's NOW()) and "before" a later
 * deadline that only a wrong behaviour would wait for.
 */

#include <xenpy-guest.h>

const char test_title[] = "Timers, SCHEDOP_block/poll and the other sched_op sub-ops";

#define MS              NSEC_PER_MSEC
/* Allowance for the guest's pvclock against Xen's NOW(). */
#define SLACK_NS        (100 * NSEC_PER_USEC)
#define DEFAULT_PERIOD  (10 * MS)

/* Below VIRT_BASE: never mapped (spec 7.2), but passes __addr_ok. */
#define UNMAPPED_VA     0x10000UL
/* The first address above the lower canonical half: fails __addr_ok (spec 1.2 cmd 5). */
#define NOT_OKAY_VA     0x0000800000000000UL
#define BAD_PORT        4095U           /* beyond any allocated bucket */
#define NO_DOMAIN       1000U
#define STIME_DELTA_MAX 0x3fffffffffffffffUL
#define POLL_MAX_PORTS  128

static evtchn_port_t tport;             /* VIRQ_TIMER on vCPU 0 */
static volatile unsigned long nr_ticks;
static volatile uint64_t tick_at[4];    /* when the first ticks were handled */

static void timer_handler(evtchn_port_t port, void *data)
{
    unsigned long n = nr_ticks;

    (void)port;
    (void)data;
    if ( n < ARRAY_SIZE(tick_at) )
        tick_at[n] = now_ns();
    nr_ticks = n + 1;
}

static long set_periodic(unsigned int vcpu, uint64_t period)
{
    struct vcpu_set_periodic_timer p = { .period_ns = period };

    return HYPERVISOR_vcpu_op(VCPUOP_set_periodic_timer, vcpu, &p);
}

static long stop_periodic(unsigned int vcpu)
{
    return HYPERVISOR_vcpu_op(VCPUOP_stop_periodic_timer, vcpu, NULL);
}

static long set_singleshot(unsigned int vcpu, uint64_t deadline, uint32_t flags)
{
    struct vcpu_set_singleshot_timer t = { .timeout_abs_ns = deadline, .flags = flags };

    return HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, vcpu, &t);
}

static long stop_singleshot(unsigned int vcpu)
{
    return HYPERVISOR_vcpu_op(VCPUOP_stop_singleshot_timer, vcpu, NULL);
}

static long poll(evtchn_port_t *ports, unsigned int nr, uint64_t timeout)
{
    struct sched_poll p = { .nr_ports = nr, .timeout = timeout };

    set_xen_guest_handle(p.ports, ports);
    return HYPERVISOR_sched_op(SCHEDOP_poll, &p);
}

static long watchdog(uint32_t id, uint32_t timeout)
{
    struct sched_watchdog w = { .id = id, .timeout = timeout };

    return HYPERVISOR_sched_op(SCHEDOP_watchdog, &w);
}

static bool timer_pending(void)
{
    return test_bit(tport, shared_info->evtchn_pending);
}

/* Deliver what is pending (events enabled for a moment); the timer events handled. */
static unsigned long deliver(void)
{
    unsigned long before = nr_ticks;

    local_irq_enable();
    local_irq_disable();
    return nr_ticks - before;
}

/* Drop a timer event left pending (its port masked or not) and any upcall. */
static void discard_timer_event(void)
{
    clear_bit(tport, shared_info->evtchn_pending);
    (void)deliver();
}

/*
 * Wait, events masked, until the VIRQ_TIMER port is pending or `limit`:
 * SCHEDOP_poll of that port with `limit` as its timeout (a poll of a
 * pending port returns at once, so an event just before the call is not
 * missed). Returns the time.
 */
static uint64_t wait_timer_event(uint64_t limit)
{
    evtchn_port_t port = tport;

    while ( !timer_pending() && now_ns() < limit )
        (void)poll(&port, 1, limit);
    return now_ns();
}

/* ------------------------------------------------------------------ periodic */

static void test_periodic_default(void)
{
    uint64_t limit = now_ns() + 20 * DEFAULT_PERIOD;

    /*
     * Spin, events enabled, until four ticks of the default period are
     * handled. The first may have waited while events were masked, so the
     * period is measured from the second.
     */
    local_irq_enable();
    while ( nr_ticks < 4 && now_ns() < limit )
        cpu_relax();
    local_irq_disable();

    check("periodic-default-ticks", "3.1", nr_ticks >= 4, 1,
          "VCPUOP_set_periodic_timer default (10 ms from creation): 4 VIRQ_TIMER ticks while running");
    if ( nr_ticks < 4 )
        return;
    printk("Default periodic ticks handled at %lu, %lu, %lu, %lu ns\n", tick_at[0], tick_at[1], tick_at[2],
           tick_at[3]);
    /* Measured when the handler runs: allow for the upcall's latency at both ends. */
    check("periodic-default-interval", "3.1", tick_at[3] - tick_at[1] >= 2 * DEFAULT_PERIOD - 2 * MS, 1,
          "VCPUOP_set_periodic_timer default period: two intervals of 10 ms (at least 18 ms)");
    check_sched("periodic-default-interval-max", "3.1", tick_at[3] - tick_at[1] < 4 * DEFAULT_PERIOD, 1,
                "VCPUOP_set_periodic_timer default period: two intervals within 40 ms");
}

static void test_periodic_limits(void)
{
    check("periodic-below-1ms", "1.2", set_periodic(0, MS - 1), -XEN_EINVAL,
          "VCPUOP_set_periodic_timer of 999999 ns");
    check("periodic-zero", "1.2", set_periodic(0, 0), -XEN_EINVAL, "VCPUOP_set_periodic_timer of 0 ns");
    check("periodic-above-max", "1.2", set_periodic(0, STIME_DELTA_MAX + 1), -XEN_EINVAL,
          "VCPUOP_set_periodic_timer of STIME_DELTA_MAX + 1");
    check("periodic-u64-max", "1.2", set_periodic(0, ~0UL), -XEN_EINVAL,
          "VCPUOP_set_periodic_timer of 2^64 - 1 (an unsigned compare)");
    check("periodic-efault", "1.2", HYPERVISOR_vcpu_op(VCPUOP_set_periodic_timer, 0, (void *)UNMAPPED_VA),
          -XEN_EFAULT, "VCPUOP_set_periodic_timer with an unmapped argument");
    check("periodic-max", "1.2", set_periodic(0, STIME_DELTA_MAX), 0,
          "VCPUOP_set_periodic_timer of STIME_DELTA_MAX");
    check("periodic-1ms", "1.2", set_periodic(0, MS), 0, "VCPUOP_set_periodic_timer of exactly 1 ms");
    check("periodic-stop", "1.2", stop_periodic(0), 0, "VCPUOP_stop_periodic_timer of itself");
    check("periodic-remote", "1.2", set_periodic(1, DEFAULT_PERIOD), 0,
          "VCPUOP_set_periodic_timer of another (down) vCPU");
    check("periodic-stop-remote", "1.2", stop_periodic(1), 0,
          "VCPUOP_stop_periodic_timer of another (down) vCPU");
    discard_timer_event();
}

static void test_periodic_behaviour(void)
{
    uint64_t t0, deadline, woke;
    long rc;

    /* Periodic stopped for 20 ms: a new period's first tick is due at once. */
    t0 = now_ns();
    (void)wait_timer_event(t0 + 2 * DEFAULT_PERIOD);
    discard_timer_event();
    rc = set_periodic(0, DEFAULT_PERIOD);
    check("periodic-first-tick-now", "3.1", rc == 0 && timer_pending(), 1,
          "VCPUOP_set_periodic_timer after more than a period without a tick: VIRQ_TIMER pending on return");
    discard_timer_event();

    /* A blocked vCPU's periodic timer is stopped: only the single-shot timer wakes it. */
    (void)set_periodic(0, 5 * MS);
    discard_timer_event();
    t0 = now_ns();
    deadline = t0 + 20 * MS;
    (void)set_singleshot(0, deadline, 0);
    woke = wait_timer_event(t0 + 200 * MS);
    check("periodic-no-wake-blocked", "3.1", woke >= deadline - SLACK_NS, 1,
          "VCPUOP_set_periodic_timer of 5 ms: no wakeup of a blocked vCPU before its single-shot deadline");
    (void)stop_periodic(0);
    (void)stop_singleshot(0);
    discard_timer_event();
}

/* ------------------------------------------------------------------ single-shot */

static void test_singleshot(const struct xen_profile *prof)
{
    uint64_t t0, deadline, woke;
    long rc;

    check("singleshot-remote", "1.2", set_singleshot(1, now_ns() + MS, 0), -XEN_EINVAL,
          "VCPUOP_set_singleshot_timer of another vCPU");
    check("singleshot-remote-efault", "1.2",
          HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, 1, (void *)UNMAPPED_VA), -XEN_EINVAL,
          "VCPUOP_set_singleshot_timer of another vCPU with an unmapped argument (self checked first)");
    check("singleshot-efault", "1.2",
          HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, 0, (void *)UNMAPPED_VA), -XEN_EFAULT,
          "VCPUOP_set_singleshot_timer with an unmapped argument");
    check("singleshot-stop-remote", "1.2", stop_singleshot(1), -XEN_EINVAL,
          "VCPUOP_stop_singleshot_timer of another vCPU");
    check("singleshot-stop", "1.2", stop_singleshot(0), 0, "VCPUOP_stop_singleshot_timer of itself");

    /* Deadlines in the past fire before the return to the guest. */
    discard_timer_event();
    rc = set_singleshot(0, now_ns() - MS, 0);
    check("singleshot-past", "1.2", rc, 0, "VCPUOP_set_singleshot_timer 1 ms in the past");
    check("singleshot-past-pending", "3.2", timer_pending(), 1,
          "VCPUOP_set_singleshot_timer 1 ms in the past: VIRQ_TIMER pending on return");
    discard_timer_event();

    rc = set_singleshot(0, now_ns() - MS, VCPU_SSHOTTMR_future);
    check("singleshot-past-future-flag", "1.4", rc, prof->singleshot_past_injects ? 0 : -XEN_ETIME,
          "VCPUOP_set_singleshot_timer 1 ms in the past with VCPU_SSHOTTMR_future");
    check("singleshot-past-future-flag-pending", "1.4", timer_pending(), prof->singleshot_past_injects,
          "VCPUOP_set_singleshot_timer 1 ms in the past with VCPU_SSHOTTMR_future: VIRQ_TIMER pending on return");
    discard_timer_event();

    rc = set_singleshot(0, 1UL << 63, 0);
    check("singleshot-2p63", "3.2", rc == 0 && timer_pending(), 1,
          "VCPUOP_set_singleshot_timer of 2^63 (a negative s_time_t): VIRQ_TIMER pending on return");
    discard_timer_event();

    /* A future deadline wakes the polling vCPU no earlier than the deadline. */
    t0 = now_ns();
    deadline = t0 + 5 * MS;
    (void)set_singleshot(0, deadline, 0);
    check("singleshot-future-not-yet", "3.2", timer_pending(), 0,
          "VCPUOP_set_singleshot_timer 5 ms ahead: nothing pending on return");
    woke = wait_timer_event(t0 + 200 * MS);
    check("singleshot-future-fires", "3.2", timer_pending() && woke >= deadline - SLACK_NS && woke < t0 + 200 * MS,
          1, "VCPUOP_set_singleshot_timer 5 ms ahead: VIRQ_TIMER at the deadline");
    check("singleshot-future-one-event", "3.3", deliver(), 1,
          "VCPUOP_set_singleshot_timer 5 ms ahead: one VIRQ_TIMER event handled");

    /* A stopped timer does not fire. */
    t0 = now_ns();
    (void)set_singleshot(0, t0 + 5 * MS, 0);
    (void)stop_singleshot(0);
    woke = wait_timer_event(t0 + 20 * MS);
    check("singleshot-stopped", "1.2", timer_pending(), 0,
          "VCPUOP_stop_singleshot_timer: no VIRQ_TIMER by 15 ms past the stopped deadline");
    discard_timer_event();
}

/* ------------------------------------------------------------------ set_timer_op */

static void test_set_timer_op(void)
{
    uint64_t t0, woke;
    long rc;

    discard_timer_event();
    rc = HYPERVISOR_set_timer_op(now_ns() - MS);
    check("set-timer-op-past", "3.2", rc == 0 && timer_pending(), 1,
          "HYPERVISOR_set_timer_op 1 ms in the past: 0, VIRQ_TIMER pending on return");
    discard_timer_event();

    t0 = now_ns();
    (void)set_singleshot(0, t0 + 5 * MS, 0);
    check("set-timer-op-zero", "3.2", HYPERVISOR_set_timer_op(0), 0, "HYPERVISOR_set_timer_op(0)");
    (void)wait_timer_event(t0 + 20 * MS);
    check("set-timer-op-zero-stops", "3.2", timer_pending(), 0,
          "HYPERVISOR_set_timer_op(0) stops the single-shot timer: no VIRQ_TIMER by 15 ms past its deadline");
    discard_timer_event();

    t0 = now_ns();
    rc = HYPERVISOR_set_timer_op(t0 + 5 * MS);
    woke = wait_timer_event(t0 + 200 * MS);
    check("set-timer-op-future", "3.2", rc == 0 && timer_pending() && woke >= t0 + 5 * MS - SLACK_NS, 1,
          "HYPERVISOR_set_timer_op 5 ms ahead: VIRQ_TIMER no earlier than the deadline");
    discard_timer_event();

    t0 = now_ns();
    rc = HYPERVISOR_set_timer_op(-1L);
    woke = wait_timer_event(t0 + 1000 * MS);
    check("set-timer-op-negative", "3.2", rc == 0 && timer_pending() && woke >= t0 + 100 * MS - SLACK_NS, 1,
          "HYPERVISOR_set_timer_op(-1): VIRQ_TIMER at NOW + 100 ms, not at once");
    check_sched("set-timer-op-negative-max", "3.2", woke < t0 + 200 * MS, 1,
                "HYPERVISOR_set_timer_op(-1): VIRQ_TIMER within 200 ms");
    discard_timer_event();

    t0 = now_ns();
    rc = HYPERVISOR_set_timer_op(t0 + (1L << 50) + NSEC_PER_SEC);
    woke = wait_timer_event(t0 + 1000 * MS);
    check("set-timer-op-far", "3.2", rc == 0 && timer_pending() && woke >= t0 + 100 * MS - SLACK_NS, 1,
          "HYPERVISOR_set_timer_op 2^50 ns + 1 s ahead: VIRQ_TIMER at NOW + 100 ms");
    check_sched("set-timer-op-far-max", "3.2", woke < t0 + 200 * MS, 1,
                "HYPERVISOR_set_timer_op 2^50 ns + 1 s ahead: VIRQ_TIMER within 200 ms");
    discard_timer_event();
}

/* ------------------------------------------------------------------ SCHEDOP_block */

static void test_block(void)
{
    vcpu_info_t *vi = this_vcpu_info();
    unsigned long before;
    uint64_t t0, t1;
    long rc;

    /* An event already pending: block returns at once, events enabled, and the upcall follows. */
    (void)set_singleshot(0, now_ns() - MS, 0);
    before = nr_ticks;
    rc = HYPERVISOR_sched_op(SCHEDOP_block, NULL);
    check("block-pending", "3.4", rc, 0, "SCHEDOP_block with an event pending");
    check("block-pending-unmasked", "3.4", READ_ONCE(vi->evtchn_upcall_mask), 0,
          "SCHEDOP_block: evtchn_upcall_mask left 0 on return");
    check("block-pending-delivered", "3.4", nr_ticks - before, 1,
          "SCHEDOP_block with an event pending: the upcall on return");
    local_irq_disable();

    /* Only the upcall_pending byte counts: no port pending, yet block returns at once. */
    t0 = now_ns();
    (void)set_singleshot(0, t0 + 50 * MS, 0);
    WRITE_ONCE(vi->evtchn_upcall_pending, 1);
    before = nr_ticks;
    rc = HYPERVISOR_sched_op(SCHEDOP_block, NULL);
    t1 = now_ns();
    local_irq_disable();
    check("block-pending-byte", "3.4", rc == 0 && t1 < t0 + 50 * MS && nr_ticks == before, 1,
          "SCHEDOP_block with evtchn_upcall_pending set and no port pending: returns at once");
    (void)stop_singleshot(0);
    discard_timer_event();

    /* The same through HYPERVISOR_sched_op_compat. */
    (void)set_singleshot(0, now_ns() - MS, 0);
    before = nr_ticks;
    rc = HYPERVISOR_sched_op_compat(SCHEDOP_block, 0);
    check("block-compat", "3.4", rc == 0 && nr_ticks - before == 1, 1,
          "HYPERVISOR_sched_op_compat(SCHEDOP_block) with an event pending: 0 and the upcall");
    local_irq_disable();
    check("yield-compat", "3.4", HYPERVISOR_sched_op_compat(SCHEDOP_yield, 0), 0,
          "HYPERVISOR_sched_op_compat(SCHEDOP_yield)");
    check("poll-compat", "3.4", HYPERVISOR_sched_op_compat(SCHEDOP_poll, 0), -XEN_ENOSYS,
          "HYPERVISOR_sched_op_compat(SCHEDOP_poll)");
    discard_timer_event();
}

/* ------------------------------------------------------------------ SCHEDOP_poll */

static evtchn_port_t poll_ports[POLL_MAX_PORTS + 1];

static void noop_handler(evtchn_port_t port, void *data)
{
    (void)port;
    (void)data;
}

/* An IPI port of vCPU 0, masked. */
static evtchn_port_t masked_ipi_port(void)
{
    long port = evtchn_bind_ipi(0, noop_handler, NULL);

    if ( port <= 0 )
        panic("EVTCHNOP_bind_ipi failed: %ld\n", port);
    evtchn_mask(port);
    return port;
}

static void test_poll_errors(evtchn_port_t p)
{
    struct sched_poll sp = { .nr_ports = 1 };
    evtchn_port_t freed = masked_ipi_port();
    unsigned int i;

    (void)evtchn_close(freed);

    check("poll-efault", "3.4", HYPERVISOR_sched_op(SCHEDOP_poll, (void *)UNMAPPED_VA), -XEN_EFAULT,
          "SCHEDOP_poll with an unmapped argument");
    for ( i = 0; i <= POLL_MAX_PORTS; i++ )
        poll_ports[i] = p;
    check("poll-129-ports", "3.4", poll(poll_ports, POLL_MAX_PORTS + 1, 0), -XEN_EINVAL,
          "SCHEDOP_poll of 129 ports");
    set_xen_guest_handle(sp.ports, (evtchn_port_t *)NOT_OKAY_VA);
    check("poll-ports-not-okay", "3.4", HYPERVISOR_sched_op(SCHEDOP_poll, &sp), -XEN_EFAULT,
          "SCHEDOP_poll with ports above the lower canonical half");
    check("poll-ports-unmapped", "3.4", poll((evtchn_port_t *)UNMAPPED_VA, 1, 0), -XEN_EFAULT,
          "SCHEDOP_poll with unmapped ports");
    poll_ports[0] = 0;
    check("poll-port-0", "3.4", poll(poll_ports, 1, 0), -XEN_EINVAL, "SCHEDOP_poll of port 0 (reserved)");
    poll_ports[0] = freed;
    check("poll-port-free", "3.4", poll(poll_ports, 1, 0), -XEN_EINVAL, "SCHEDOP_poll of a closed port");
    poll_ports[0] = BAD_PORT;
    check("poll-port-invalid", "3.4", poll(poll_ports, 1, 0), -XEN_EINVAL, "SCHEDOP_poll of port 4095");
    poll_ports[0] = p;
    poll_ports[1] = 0;
    check("poll-second-port-0", "3.4", poll(poll_ports, 2, 0), -XEN_EINVAL,
          "SCHEDOP_poll of a good port then port 0");
}

static void test_poll(void)
{
    vcpu_info_t *vi = this_vcpu_info();
    evtchn_port_t p = masked_ipi_port(), q = masked_ipi_port();
    uint64_t t0, woke, first_timeout;
    unsigned int i;
    long rc;

    test_poll_errors(p);

    /* A listed port already pending (masked): 0 at once, the bit left set. */
    (void)evtchn_send(p);
    t0 = now_ns();
    poll_ports[0] = p;
    rc = poll(poll_ports, 1, t0 + 1000 * MS);
    woke = now_ns();
    check("poll-pending-port", "3.4", rc == 0 && woke < t0 + 1000 * MS, 1,
          "SCHEDOP_poll of a pending masked port: 0 at once");
    check("poll-pending-port-kept", "3.4", test_bit(p, shared_info->evtchn_pending), 1,
          "SCHEDOP_poll of a pending port leaves it pending");
    for ( i = 0; i < POLL_MAX_PORTS; i++ )
        poll_ports[i] = p;
    check("poll-128-ports", "3.4", poll(poll_ports, POLL_MAX_PORTS, 0), 0,
          "SCHEDOP_poll of 128 ports, pending: 0");
    clear_bit(p, shared_info->evtchn_pending);

    /* The timeout is absolute; the poll returns 0 at it. */
    t0 = now_ns();
    poll_ports[0] = p;
    rc = poll(poll_ports, 1, t0 + 10 * MS);
    woke = now_ns();
    check("poll-timeout", "3.4", rc == 0 && woke >= t0 + 10 * MS - SLACK_NS, 1,
          "SCHEDOP_poll of a quiet port, timeout 10 ms ahead: 0 no earlier than the timeout");
    check("poll-keeps-mask", "3.4", READ_ONCE(vi->evtchn_upcall_mask), 1,
          "SCHEDOP_poll leaves evtchn_upcall_mask set");

    /* A masked listed port wakes its poller (evtchn_check_pollers). */
    evtchn_mask(tport);
    t0 = now_ns();
    (void)set_singleshot(0, t0 + 5 * MS, 0);
    poll_ports[0] = tport;
    (void)poll(poll_ports, 1, t0 + 100 * MS);
    woke = now_ns();
    check("poll-masked-port-wakes", "3.4", timer_pending() && woke < t0 + 100 * MS, 1,
          "SCHEDOP_poll of the masked VIRQ_TIMER port: woken by its event, before the timeout");
    discard_timer_event();

    /* Another masked port does not wake a one-port poller... */
    t0 = now_ns();
    (void)set_singleshot(0, t0 + 5 * MS, 0);
    poll_ports[0] = p;
    (void)poll(poll_ports, 1, t0 + 30 * MS);
    woke = now_ns();
    check("poll-other-masked-port", "3.4", timer_pending() && woke >= t0 + 30 * MS - SLACK_NS, 1,
          "SCHEDOP_poll of one port: a masked other port's event does not wake it");
    discard_timer_event();

    /* ...but wakes a poller of several ports, or of none. */
    t0 = now_ns();
    (void)set_singleshot(0, t0 + 5 * MS, 0);
    poll_ports[0] = p;
    poll_ports[1] = q;
    (void)poll(poll_ports, 2, t0 + 100 * MS);
    woke = now_ns();
    check("poll-two-ports-any", "3.4", timer_pending() && woke < t0 + 100 * MS, 1,
          "SCHEDOP_poll of two ports: any port's event wakes it");
    discard_timer_event();
    t0 = now_ns();
    (void)set_singleshot(0, t0 + 5 * MS, 0);
    (void)poll(NULL, 0, t0 + 100 * MS);
    woke = now_ns();
    check("poll-no-ports-any", "3.4", timer_pending() && woke < t0 + 100 * MS, 1,
          "SCHEDOP_poll of no port: any port's event wakes it");
    discard_timer_event();
    (void)evtchn_unmask(tport);

    /*
     * An unmasked other port's event kicks the vCPU (vcpu_mark_events_pending
     * -> vcpu_kick), which ends any poll. The poll's timer stays armed: a
     * later poll with no timeout is woken at the first poll's timeout.
     */
    t0 = now_ns();
    first_timeout = t0 + 40 * MS;
    (void)set_singleshot(0, t0 + 5 * MS, 0);
    poll_ports[0] = p;
    (void)poll(poll_ports, 1, first_timeout);
    woke = now_ns();
    check("poll-kick-wakes", "3.4", timer_pending() && woke < first_timeout, 1,
          "SCHEDOP_poll of one port: an unmasked other port's event (the upcall kick) wakes it");
    discard_timer_event();
    (void)set_singleshot(0, first_timeout + 60 * MS, 0);
    (void)poll(poll_ports, 1, 0);
    woke = now_ns();
    check("poll-timer-left-armed", "3.4", !timer_pending() && woke >= first_timeout - SLACK_NS &&
          woke < first_timeout + 60 * MS, 1,
          "SCHEDOP_poll without timeout after an early-woken poll: woken at the earlier poll's timeout");
    (void)wait_timer_event(first_timeout + 200 * MS);
    (void)stop_singleshot(0);
    discard_timer_event();

    (void)evtchn_close(p);
    (void)evtchn_close(q);
}

/* ------------------------------------------------------------------ other sched_op */

static void test_sched_op_misc(void)
{
    struct sched_remote_shutdown rs = { .domain_id = NO_DOMAIN, .reason = SHUTDOWN_poweroff };

    check("yield", "3.4", HYPERVISOR_sched_op(SCHEDOP_yield, NULL), 0, "SCHEDOP_yield");
    check("unknown-cmd", "3.4", HYPERVISOR_sched_op(100, NULL), -XEN_ENOSYS, "unknown SCHEDOP_ cmd 100");
    check("shutdown-efault", "3.4", HYPERVISOR_sched_op(SCHEDOP_shutdown, (void *)UNMAPPED_VA), -XEN_EFAULT,
          "SCHEDOP_shutdown with an unmapped argument");
    check("shutdown-code-efault", "3.4", HYPERVISOR_sched_op(SCHEDOP_shutdown_code, (void *)UNMAPPED_VA),
          -XEN_EFAULT, "SCHEDOP_shutdown_code with an unmapped argument");
    check("remote-shutdown-efault", "3.4",
          HYPERVISOR_sched_op(SCHEDOP_remote_shutdown, (void *)UNMAPPED_VA), -XEN_EFAULT,
          "SCHEDOP_remote_shutdown with an unmapped argument");
    check("remote-shutdown-esrch", "3.4", HYPERVISOR_sched_op(SCHEDOP_remote_shutdown, &rs), -XEN_ESRCH,
          "SCHEDOP_remote_shutdown of domain %u (none)", NO_DOMAIN);

    check("watchdog-efault", "3.4", HYPERVISOR_sched_op(SCHEDOP_watchdog, (void *)UNMAPPED_VA), -XEN_EFAULT,
          "SCHEDOP_watchdog with an unmapped argument");
    check("watchdog-id-3", "3.4", watchdog(3, 60), -XEN_EINVAL, "SCHEDOP_watchdog of id 3");
    check("watchdog-id-unused", "3.4", watchdog(1, 60), -XEN_EINVAL, "SCHEDOP_watchdog of id 1, not in use");
    check("watchdog-new-1", "3.4", watchdog(0, 60), 1, "SCHEDOP_watchdog id 0 (new): the first slot");
    check("watchdog-new-2", "3.4", watchdog(0, 60), 2, "SCHEDOP_watchdog id 0 (new): the second slot");
    /* domain_watchdog's "id == NR ? -ENOSPC : id + 1" is unsigned (id is uint32_t): not sign-extended. */
    check("watchdog-full", "3.4", watchdog(0, 60), (uint32_t)-XEN_ENOSPC,
          "SCHEDOP_watchdog id 0 with both slots in use: (uint32_t)-ENOSPC");
    check("watchdog-rearm", "3.4", watchdog(1, 60), 0, "SCHEDOP_watchdog of id 1: re-armed");
    check("watchdog-destroy-1", "3.4", watchdog(1, 0), 0, "SCHEDOP_watchdog of id 1, timeout 0: destroyed");
    check("watchdog-destroy-2", "3.4", watchdog(2, 0), 0, "SCHEDOP_watchdog of id 2, timeout 0: destroyed");
    check("watchdog-destroyed", "3.4", watchdog(1, 0), -XEN_EINVAL,
          "SCHEDOP_watchdog of id 1 once destroyed");
}

/* ------------------------------------------------------------------ time calibration */

static void test_calibration(void)
{
    const volatile vcpu_time_info_t *t = &this_vcpu_info()->time;
    struct vcpu_runstate_info before, after;
    uint64_t stamp, target, limit;
    uint32_t version;
    bool changed = false;

    /*
     * Xen recalibrates once a second and then rewrites the running vCPU's
     * time record; the record's system_time is the last calibration's
     * stamp. Sleep until just before the next one, then spin across it.
     */
    for ( ;; )
    {
        stamp = t->system_time;
        target = stamp + NSEC_PER_SEC;
        if ( now_ns() >= target - 5 * MS )
            break;
        (void)set_singleshot(0, target - 5 * MS, 0);
        (void)wait_timer_event(target);
        discard_timer_event();
    }

    (void)HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, 0, &before);
    version = t->version;
    limit = target + 200 * MS;
    while ( now_ns() < limit )
    {
        if ( t->version != version )
        {
            changed = true;
            break;
        }
        cpu_relax();
    }
    (void)HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, 0, &after);

    check("calibration-no-switch", "3.6", after.state_entry_time == before.state_entry_time, 1,
          "VCPUOP_get_runstate_info around a 205 ms spin: no context switch");
    check("calibration-refresh", "3.6", changed, 1,
          "vcpu_time_info rewritten while running, a second after its stamp (time calibration)");
}

void test_main(void)
{
    const struct xen_profile *prof = test_profile();
    long port;

    if ( smp_nr_vcpus() < 2 )
    {
        xtf_skip("Skip: needs 2 vCPUs, has %u\n", smp_nr_vcpus());
        return;
    }

    local_irq_disable();
    port = evtchn_bind_virq(VIRQ_TIMER, 0, timer_handler, NULL);
    if ( port <= 0 )
    {
        xtf_error("Error: EVTCHNOP_bind_virq(VIRQ_TIMER, vCPU 0) failed: %ld\n", port);
        return;
    }
    tport = port;

    test_periodic_default();
    test_periodic_limits();
    test_periodic_behaviour();
    test_singleshot(prof);
    test_set_timer_op();
    test_block();
    test_poll();
    test_sched_op_misc();
    test_calibration();

    local_irq_enable();
    if ( xtf_ok() )
        xtf_success(NULL);
}
