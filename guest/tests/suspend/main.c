/*
 * suspend: the guest side of save, restore, migration and checkpoints
 * (SCHEDOP_shutdown(SHUTDOWN_suspend), spec 3.4; the restored start_info,
 * spec 7.2).
 *
 * vCPU 0 brings vCPU 1 up, binds VIRQ_TIMER and an IPI to vCPU 1, registers
 * both runstate areas and writes "ready" to its xenstore data/suspend. It
 * then polls control/shutdown every millisecond; when the toolstack writes
 * "suspend" there, it clears the node (the acknowledgement) and suspends
 * (suspend_domain()). Without a request within wait= (default 100 ms of
 * guest time) the test is SKIPped: only a toolstack that saves the domain
 * exercises it.
 *
 * After SCHEDOP_shutdown returns:
 *   0 (restored in a new domain): start_info names the new domain's
 *     xenstore and console frames at the pfns they had, and shared_info
 *     anew; no old port is bound any more (EVTCHNOP_status: free or a new
 *     binding), the ring ports work, VIRQ_TIMER and an IPI to vCPU 1 work
 *     once bound again, vCPU 1 is still up, system time runs, and a runstate
 *     area registered again is not ahead of VCPUOP_get_runstate_info (spec
 *     2.3). Runstate starts again with the new domain's vCPUs; the guest
 *     carries the saved times over itself, as Linux does, and prints the sums.
 *   1 (cancelled: the same domain runs on, as after a checkpoint): the
 *     frames are as before, and the ports bound before still work.
 * Either way the FPU and SSE state set before the suspend is still there
 * (vcpu_guest_context.fpu_ctxt, spec 1.3), and it writes "resumed" or
 * "cancelled" to data/suspend.
 *
 * Command line: wait=MS.
 */

#include <xenpy-guest.h>

const char test_title[] = "Suspend: SCHEDOP_shutdown(SHUTDOWN_suspend), then resume in a new domain or the same one";

#define MS NSEC_PER_MSEC
#define DEFAULT_WAIT_MS 100

static vcpu_runstate_info_t area[2];

/* FPU and SSE state the suspend must keep: MXCSR with FTZ, a pattern in xmm5, 1 and pi on the x87 stack. */
#define TEST_MXCSR   0x9f80u
#define TEST_XMM5    0x0123456789abcdefUL

static void fpu_load(void)
{
    uint32_t mxcsr = TEST_MXCSR;
    unsigned long xmm = TEST_XMM5;

    __asm__ __volatile__ ("fninit; fld1; fldpi; ldmxcsr %0; movq %1, %%xmm5" :: "m"(mxcsr), "r"(xmm) : "memory");
}

/* The state fpu_load() left, popped: MXCSR, xmm5's low half, the x87 TOP and the two values as integers. */
static void fpu_read(uint32_t *mxcsr, unsigned long *xmm, unsigned int *top, long *st0, long *st1)
{
    uint16_t fsw;

    __asm__ __volatile__ ("stmxcsr %0; movq %%xmm5, %1; fnstsw %2; fistpll %3; fistpll %4"
                          : "=m"(*mxcsr), "=r"(*xmm), "=m"(fsw), "=m"(*st0), "=m"(*st1) :: "memory");
    *top = (fsw >> 11) & 7;
}
static volatile unsigned long ipi_count;

static void ipi_handler(evtchn_port_t port, void *data)
{
    (void)port;
    (void)data;
    __atomic_fetch_add(&ipi_count, 1, __ATOMIC_SEQ_CST);
}

/* vCPU 1 idles in ap_main's SCHEDOP_block loop. */
static void ap_idle(unsigned int id)
{
    (void)id;
}

static long register_area(unsigned int id)
{
    struct vcpu_register_runstate_memory_area reg = { .addr.v = &area[id] };

    return HYPERVISOR_vcpu_op(VCPUOP_register_runstate_memory_area, id, &reg);
}

static long runstate_info(unsigned int id, vcpu_runstate_info_t *out)
{
    return HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, id, out);
}

static uint64_t runstate_sum(const vcpu_runstate_info_t *r)
{
    return r->time[0] + r->time[1] + r->time[2] + r->time[3];
}

/* Send an IPI on port to vCPU 1 and wait (up to 100 ms) for its handler; true if it ran. */
static bool ipi_round_trip(long port)
{
    unsigned long before = ipi_count;
    uint64_t deadline = now_ns() + 100 * MS;

    if ( evtchn_send(port) )
        return false;
    while ( ipi_count == before && now_ns() < deadline )
        (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    return ipi_count != before;
}

/* Sleep 1 ms on the single-shot timer; true if VIRQ_TIMER came. */
static bool timer_fires(void)
{
    unsigned long before = timer_nr_events(0);

    sleep_ms(1);
    return timer_nr_events(0) != before;
}

/* Poll control/shutdown until it says "suspend" (then clear it) or wait_ns pass; true on a request. */
static bool wait_for_suspend_request(uint64_t wait_ns)
{
    uint64_t deadline = now_ns() + wait_ns;
    char value[16];

    while ( now_ns() < deadline )
    {
        if ( xs_read("control/shutdown", value, sizeof(value)) >= 0 && !strcmp(value, "suspend") )
        {
            (void)xs_write("control/shutdown", "");
            return true;
        }
        sleep_ms(1);
    }
    return false;
}

static unsigned long wait_ms(void)
{
    char buf[16];
    unsigned long ms = 0;

    if ( !cmdline_get("wait=", buf, sizeof(buf)) )
        return DEFAULT_WAIT_MS;
    for ( const char *p = buf; *p >= '0' && *p <= '9'; p++ )
        ms = ms * 10 + (*p - '0');
    return ms;
}

void test_main(void)
{
    vcpu_runstate_info_t before[2], after[2];
    unsigned long store_pfn, console_pfn, old_shared_info;
    long timer_port, ipi_port, rc;
    uint64_t t_before, t_after;
    unsigned long xmm5;
    uint32_t mxcsr;
    unsigned int top;
    long st0, st1;

    if ( !xs_available() )
    {
        xtf_skip("Skip: no xenstore ring, so nothing can ask this domain to suspend\n");
        return;
    }

    rc = smp_bring_up(2, ap_idle);
    check("smp", "1.1", rc, 0, "smp_bring_up(2)");
    timer_port = timer_bind_this_vcpu();
    ipi_port = evtchn_bind_ipi(1, ipi_handler, NULL);
    check("bound", "3.3", timer_port > 0 && ipi_port > 0, 1, "VIRQ_TIMER port %ld, IPI port %ld to vCPU 1",
          timer_port, ipi_port);
    check("before-timer", "3.1", timer_fires(), 1, "VIRQ_TIMER before the suspend");
    check("before-ipi", "3.3", ipi_round_trip(ipi_port), 1, "IPI to vCPU 1 before the suspend");
    check("before-area", "1.2", register_area(0) | register_area(1), 0, "register both runstate areas");

    if ( xs_write("data/suspend", "ready") )
    {
        xtf_error("Error: writing data/suspend failed\n");
        return;
    }
    if ( !wait_for_suspend_request(wait_ms() * MS) )
    {
        xtf_skip("Skip: no suspend request from the toolstack (control/shutdown) within %lu ms\n", wait_ms());
        return;
    }

    store_pfn = mfn_to_pfn(start_info->store_mfn);
    console_pfn = mfn_to_pfn(start_info->console.domU.mfn);
    old_shared_info = start_info->shared_info;
    runstate_info(0, &before[0]);
    runstate_info(1, &before[1]);
    t_before = now_ns();
    fpu_load();

    rc = suspend_domain();

    fpu_read(&mxcsr, &xmm5, &top, &st0, &st1);

    t_after = now_ns();
    printk("Resumed: SCHEDOP_shutdown returned %ld; system time %lu ns before, %lu ns after\n",
           rc, t_before, t_after);
    check("rc", "3.4", rc == SUSPEND_RESUMED_NEW_DOMAIN || rc == SUSPEND_CANCELLED, 1,
          "SCHEDOP_shutdown(SHUTDOWN_suspend) returned %ld", rc);
    check("store-frame", "7.2", mfn_to_pfn(start_info->store_mfn), store_pfn,
          "start_info.store_mfn %#lx is the frame of the xenstore ring's pfn", start_info->store_mfn);
    check("console-frame", "7.2", mfn_to_pfn(start_info->console.domU.mfn), console_pfn,
          "start_info.console.domU.mfn %#lx is the frame of the console ring's pfn", start_info->console.domU.mfn);
    check_hex("fpu-mxcsr", "1.3", mxcsr, TEST_MXCSR, "MXCSR across the suspend (vcpu_guest_context.fpu_ctxt)");
    check_hex("fpu-xmm5", "1.3", xmm5, TEST_XMM5, "xmm5 across the suspend");
    check("fpu-x87", "1.3", top == 6 && st0 == 3 && st1 == 1, 1, "x87 stack across the suspend: TOP %u, "
          "ST0 %ld (pi), ST1 %ld (1)", top, st0, st1);
    {
        uint64_t t = now_ns();

        sleep_ms(1);
        check("time-runs", "3.6", now_ns() - t >= MS, 1, "system time runs after the resume: a 1 ms sleep "
              "took %lu ns", now_ns() - t);
    }

    if ( rc == SUSPEND_CANCELLED )
    {
        check_hex("same-shared-info", "7.2", start_info->shared_info, old_shared_info, "shared_info after a cancel");
        check("cancel-timer", "3.1", timer_fires(), 1, "VIRQ_TIMER on the port bound before");
        check("cancel-ipi", "3.3", ipi_round_trip(ipi_port), 1, "the IPI port bound before");
        check("cancel-xenstore", "7.2", xs_write("data/suspend", "cancelled"), 0, "xenstore after a cancel");
    }
    else if ( rc == SUSPEND_RESUMED_NEW_DOMAIN )
    {
        struct evtchn_status st = { .dom = DOMID_SELF, .port = ipi_port };
        long new_ipi;

        HYPERVISOR_event_channel_op(EVTCHNOP_status, &st);
        check("old-ipi-gone", "3.3", st.status == EVTCHNSTAT_ipi && st.vcpu == 1, 0,
              "the old IPI port %ld is not an IPI to vCPU 1 any more (status %u)", ipi_port, st.status);
        check("new-xenstore", "7.2", xs_write("data/suspend", "resumed"), 0, "xenstore on the new ring port %u",
              start_info->store_evtchn);
        check("vcpu1-up", "1.1", HYPERVISOR_vcpu_op(VCPUOP_is_up, 1, NULL), 1, "vCPU 1 is up in the new domain");
        check("new-timer", "3.1", timer_fires(), 1, "VIRQ_TIMER bound again");
        new_ipi = evtchn_bind_ipi(1, ipi_handler, NULL);
        check("new-ipi", "3.3", new_ipi > 0 && ipi_round_trip(new_ipi), 1, "an IPI to vCPU 1 bound again");
        check("new-area", "1.2", register_area(0) | register_area(1), 0, "register both runstate areas again");
        for ( unsigned int id = 0; id < 2; id++ )
        {
            vcpu_runstate_info_t seen;

            runstate_read_area(&area[id], &seen);
            runstate_info(id, &after[id]);
            check("new-area", "2.3", runstate_sum(&seen) <= runstate_sum(&after[id]), 1,
                  "vCPU %u: the new area (%lu ns) is not ahead of VCPUOP_get_runstate_info", id,
                  runstate_sum(&seen));
            printk("vCPU %u runstate carried over (saved + new): running %lu, runnable %lu, blocked %lu, "
                   "offline %lu ns\n", id, before[id].time[0] + after[id].time[0],
                   before[id].time[1] + after[id].time[1], before[id].time[2] + after[id].time[2],
                   before[id].time[3] + after[id].time[3]);
        }
    }

    if ( xtf_ok() )
        xtf_success(NULL);
}
