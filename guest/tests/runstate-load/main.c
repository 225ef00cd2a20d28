/*
 * runstate-load: a load generator whose vCPUs spin, block on timers and
 * yield in a pattern set on the command line, and a monitor on vCPU 0 that
 * reads every vCPU's registered runstate area with the XEN_RUNSTATE_UPDATE
 * protocol (spec 2.2, 2.4; VCPUOP_register_runstate_memory_area, spec 1.2).
 *
 * Command line (words "key=value"; times take ns, us, ms or s, default ms):
 *   load=P1,P2,...  the pattern of vCPU 1, 2, ... (the last one for the
 *                   rest). A pattern is steps joined by '+', repeated:
 *                   spin[:T] (run without blocking, 1 ms by default),
 *                   block:T (sleep on the single-shot timer), yield
 *                   (SCHEDOP_yield), idle (blocked until the load stops).
 *   duration=T      guest time to run; 0 runs until the toolstack asks the
 *                   domain to shut down (xenstore control/shutdown, read
 *                   every 100 ms) or destroys it. Default: 30 ms without
 *                   load=, else 0.
 *   monitor=T       how often vCPU 0 reads the areas (default 1 ms).
 *   report=T        print each vCPU's runstate shares this often (default
 *                   1 s with load=, else never).
 * Without load= it is a conformance test: spin, spin, spin:2ms+block:1ms,
 * for 30 ms.
 *
 * Every read of an area once the vCPUs are up is checked: state_entry_time
 * minus the sum of the four times is the vCPU's creation time (spec 2.2); no time and no state_entry_time ever decreases; and an area is
 * never ahead of VCPUOP_get_runstate_info taken after it (spec 2.3).
 */

#include <xenpy-guest.h>

const char test_title[] = "Runstate load: vCPUs spin, block and yield in a pattern; vCPU 0 monitors their areas";

#define MS                   NSEC_PER_MSEC
#define MAX_STEPS            8
#define MAX_PATTERNS         16
#define DEFAULT_LOAD         "spin,spin,spin:2ms+block:1ms"
#define DEFAULT_DURATION_NS  (30 * MS)
#define DEFAULT_MONITOR_NS   (1 * MS)
#define DEFAULT_REPORT_NS    (1000 * MS)
#define STOP_POLL_NS         (100 * MS)
/* An idle vCPU looks at the stop flag this often. */
#define IDLE_SLICE_NS        (10 * MS)
/* How long vCPU 0 waits for the loaded vCPUs to finish their step. */
#define STOP_WAIT_NS         (1000 * MS)
/* A spinner's blocked share stays below this (per mille). */
#define SPIN_BLOCKED_MAX     50
/* Every hypercall_every-th round also takes VCPUOP_get_runstate_info. */
#define HYPERCALL_EVERY      8

enum step_kind { STEP_SPIN, STEP_BLOCK, STEP_YIELD, STEP_IDLE };

struct step {
    enum step_kind kind;
    uint64_t ns;
};

struct pattern {
    struct step steps[MAX_STEPS];
    unsigned int nr_steps;
    bool spins, blocks;
};

static struct pattern patterns[MAX_PATTERNS];
static unsigned int nr_patterns;

static vcpu_runstate_info_t areas[MAX_VCPUS];
static vcpu_runstate_info_t last[MAX_VCPUS], first[MAX_VCPUS];
static uint64_t creation[MAX_VCPUS];
static unsigned int nr_vcpus;

static volatile bool stop_load;
static volatile unsigned int nr_stopped;
static unsigned long loops[MAX_VCPUS];

static struct {
    unsigned long reads, hypercalls;
    unsigned long inconsistent, regressed, ahead, failed;
} mon;

/* "12", "12ms", "3us", "1s", "500ns": a time in ns; false if malformed. */
static bool parse_time(const char **s, uint64_t *out)
{
    const char *p = *s;
    uint64_t value = 0, unit = MS;

    if ( *p < '0' || *p > '9' )
        return false;
    while ( *p >= '0' && *p <= '9' )
        value = value * 10 + (uint64_t)(*p++ - '0');
    if ( !strncmp(p, "ns", 2) )
        unit = 1, p += 2;
    else if ( !strncmp(p, "us", 2) )
        unit = NSEC_PER_USEC, p += 2;
    else if ( !strncmp(p, "ms", 2) )
        p += 2;
    else if ( *p == 's' )
        unit = NSEC_PER_SEC, p++;
    *out = value * unit;
    *s = p;
    return true;
}

static bool time_arg(const char *key, uint64_t *out)
{
    char buf[32];
    const char *p = buf;

    if ( !cmdline_get(key, buf, sizeof(buf)) )
        return true;
    return parse_time(&p, out) && *p == '\0';
}

static bool parse_step(const char **s, struct step *st)
{
    const char *p = *s;

    if ( !strncmp(p, "spin", 4) )
    {
        st->kind = STEP_SPIN;
        st->ns = MS;
        p += 4;
        if ( *p == ':' && (p++, !parse_time(&p, &st->ns)) )
            return false;
    }
    else if ( !strncmp(p, "block:", 6) )
    {
        st->kind = STEP_BLOCK;
        p += 6;
        if ( !parse_time(&p, &st->ns) )
            return false;
    }
    else if ( !strncmp(p, "idle", 4) )
    {
        st->kind = STEP_IDLE;
        st->ns = 0;
        p += 4;
    }
    else if ( !strncmp(p, "yield", 5) )
    {
        st->kind = STEP_YIELD;
        st->ns = 0;
        p += 5;
    }
    else
        return false;
    *s = p;
    return true;
}

/* The load= patterns; false (with a message) if malformed. */
static bool parse_load(const char *s)
{
    const char *p = s;

    for ( nr_patterns = 0; nr_patterns < MAX_PATTERNS; )
    {
        struct pattern *pat = &patterns[nr_patterns++];

        for ( pat->nr_steps = 0; ; )
        {
            if ( pat->nr_steps == MAX_STEPS || !parse_step(&p, &pat->steps[pat->nr_steps]) )
            {
                printk("load=%s: bad step at \"%s\" (spin[:T], block:T, yield or idle; at most %u per pattern)\n",
                       s, p, MAX_STEPS);
                return false;
            }
            pat->spins |= pat->steps[pat->nr_steps].kind == STEP_SPIN;
            pat->blocks |= pat->steps[pat->nr_steps].kind == STEP_BLOCK ||
                           pat->steps[pat->nr_steps].kind == STEP_IDLE;
            pat->nr_steps++;
            if ( *p != '+' )
                break;
            p++;
        }
        if ( *p == '\0' )
            return true;
        if ( *p != ',' )
        {
            printk("load=%s: expected ',' or '+' at \"%s\"\n", s, p);
            return false;
        }
        p++;
    }
    printk("load=%s: at most %u patterns\n", s, MAX_PATTERNS);
    return false;
}

static const struct pattern *pattern_of(unsigned int id)
{
    return &patterns[id - 1 < nr_patterns ? id - 1 : nr_patterns - 1];
}

static void spin_for(uint64_t ns)
{
    uint64_t end = now_ns() + ns;

    /* Long straight-line blocks: a CPU engine runs them at its full speed. */
    while ( now_ns() < end && !READ_ONCE(stop_load) )
        asm volatile ( ".rept 200; add $1, %%rax; .endr" ::: "rax", "cc", "memory" );
}

/* The loaded vCPUs: their pattern, step by step, until stop_load. */
static void run_load(unsigned int id)
{
    const struct pattern *pat = pattern_of(id);

    while ( !READ_ONCE(stop_load) )
    {
        for ( unsigned int i = 0; i < pat->nr_steps && !READ_ONCE(stop_load); i++ )
        {
            const struct step *st = &pat->steps[i];

            switch ( st->kind )
            {
            case STEP_SPIN:
                spin_for(st->ns);
                break;
            case STEP_BLOCK:
                sleep_until(now_ns() + st->ns);
                break;
            case STEP_YIELD:
                (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
                break;
            case STEP_IDLE:
                while ( !READ_ONCE(stop_load) )
                    sleep_until(now_ns() + IDLE_SLICE_NS);
                break;
            }
        }
        loops[id]++;
    }
    __atomic_fetch_add(&nr_stopped, 1, __ATOMIC_SEQ_CST);
}

static uint64_t sum_times(const vcpu_runstate_info_t *r)
{
    return r->time[0] + r->time[1] + r->time[2] + r->time[3];
}

/* One read of every area, checked against the last one. */
static void monitor_round(bool with_hypercall)
{
    for ( unsigned int id = 0; id < nr_vcpus; id++ )
    {
        vcpu_runstate_info_t r, now;
        uint64_t entry;

        runstate_read_area(&areas[id], &r);
        entry = r.state_entry_time & ~XEN_RUNSTATE_UPDATE;
        mon.reads++;
        if ( entry - sum_times(&r) != creation[id] )
            mon.inconsistent++;
        if ( entry < last[id].state_entry_time )
            mon.regressed++;
        for ( unsigned int k = 0; k < 4; k++ )
            if ( r.time[k] < last[id].time[k] )
                mon.regressed++;
        r.state_entry_time = entry;
        last[id] = r;

        if ( !with_hypercall )
            continue;
        mon.hypercalls++;
        if ( HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, id, &now) )
        {
            mon.failed++;
            continue;
        }
        for ( unsigned int k = 0; k < 4; k++ )
            if ( now.time[k] < r.time[k] )
                mon.ahead++;
    }
}

/* Per mille of each state between two reads of one area. */
static void print_shares(uint64_t t, const vcpu_runstate_info_t *from)
{
    static const char *const names[4] = { "running", "runnable", "blocked", "offline" };

    printk("load t=%lu.%03lus", t / NSEC_PER_SEC, t / MS % 1000);
    for ( unsigned int id = 1; id < nr_vcpus; id++ )
    {
        uint64_t d[4], total = 0;

        for ( unsigned int k = 0; k < 4; k++ )
            total += d[k] = last[id].time[k] - from[id].time[k];
        printk(" | v%u", id);
        for ( unsigned int k = 0; k < 4; k++ )
            printk(" %s %lu.%lu%%", names[k], total ? d[k] * 100 / total : 0,
                   total ? d[k] * 1000 / total % 10 : 0);
    }
    printk("\n");
}

/* The toolstack's request in control/shutdown ("" if none), acknowledged. */
static bool shutdown_requested(char *reason, size_t size)
{
    if ( !xs_available() || xs_read("control/shutdown", reason, size) <= 0 )
        return false;
    (void)xs_write("control/shutdown", "");
    return true;
}

void test_main(void)
{
    char load[256], reason[32] = "";
    uint64_t duration = 0, monitor_ns = DEFAULT_MONITOR_NS, report_ns = 0;
    uint64_t start, next, next_report, next_poll;
    bool have_load = cmdline_get("load=", load, sizeof(load)), registered = true, flag;
    vcpu_runstate_info_t report_from[MAX_VCPUS];
    unsigned long rounds = 0;
    int rc;

    if ( !have_load )
    {
        memcpy(load, DEFAULT_LOAD, sizeof(DEFAULT_LOAD));
        duration = DEFAULT_DURATION_NS;
    }
    else
        report_ns = DEFAULT_REPORT_NS;
    if ( !parse_load(load) || !time_arg("duration=", &duration) || !time_arg("monitor=", &monitor_ns) ||
         !time_arg("report=", &report_ns) || !monitor_ns )
    {
        xtf_error("Error: bad command line: %s\n", (const char *)start_info->cmd_line);
        return;
    }

    nr_vcpus = smp_nr_vcpus();
    if ( nr_vcpus < 2 )
    {
        xtf_skip("Skip: needs at least 2 vCPUs, the domain has %u\n", nr_vcpus);
        return;
    }
    printk("load: %u vCPUs; vCPU 0 reads the runstate areas every %lu us; ", nr_vcpus, monitor_ns / 1000);
    if ( duration )
        printk("for %lu ms of guest time\n", duration / MS);
    else
        printk("until the toolstack asks for a shutdown\n");
    for ( unsigned int id = 1; id < nr_vcpus; id++ )
    {
        const struct pattern *pat = pattern_of(id);

        printk("load: vCPU %u:", id);
        for ( unsigned int i = 0; i < pat->nr_steps; i++ )
        {
            static const char *const kinds[] = { "spin", "block", "yield", "idle" };

            printk("%s %s", i ? " +" : "", kinds[pat->steps[i].kind]);
            if ( pat->steps[i].ns )
                printk(" %lu us", pat->steps[i].ns / 1000);
        }
        printk("\n");
    }

    /* The update protocol where the release has it (spec 2.4, 6.6). */
    flag = test_profile()->vm_assist_valid_mask >> VMASST_TYPE_runstate_update_flag & 1;
    if ( flag )
        check("update-flag", "6.6", HYPERVISOR_vm_assist(VMASST_CMD_enable, VMASST_TYPE_runstate_update_flag), 0,
              "VMASST_CMD_enable(VMASST_TYPE_runstate_update_flag)");

    /* Every vCPU's area, registered by vCPU 0 (the others still offline). */
    for ( unsigned int id = 0; id < nr_vcpus; id++ )
    {
        struct vcpu_register_runstate_memory_area reg = { .addr.p = (unsigned long)&areas[id] };

        registered &= HYPERVISOR_vcpu_op(VCPUOP_register_runstate_memory_area, id, &reg) == 0;
        runstate_read_area(&areas[id], &first[id]);
        first[id].state_entry_time &= ~XEN_RUNSTATE_UPDATE;
        /*
         * vCPU 0 registers its own area: Xen copies the raw runstate, whose
         * times add up to state_entry_time - creation. For another vCPU Xen
         * copies vcpu_runstate_get(), whose times run up to NOW: still
         * offline since creation, it entered that state at creation.
         */
        creation[id] = first[id].state_entry_time - (id ? 0 : sum_times(&first[id]));
        last[id] = first[id];
    }
    check("register", "1.2", registered, 1, "VCPUOP_register_runstate_memory_area of every vCPU");
    if ( !registered )
        return;

    rc = smp_bring_up(nr_vcpus, run_load);
    if ( rc )
    {
        xtf_error("Error: bringing up the vCPUs failed: %d\n", rc);
        return;
    }

    start = now_ns();
    next = start;
    next_poll = start + STOP_POLL_NS;
    next_report = report_ns ? start + report_ns : UINT64_MAX;
    memcpy(report_from, last, sizeof(last));
    for ( ;; )
    {
        uint64_t t;

        next += monitor_ns;
        sleep_until(next);
        monitor_round(rounds++ % HYPERCALL_EVERY == 0);
        t = now_ns();
        if ( t >= next_report )
        {
            print_shares(t - start, report_from);
            memcpy(report_from, last, sizeof(last));
            next_report += report_ns;
        }
        if ( duration && t - start >= duration )
            break;
        if ( t >= next_poll )
        {
            next_poll = t + STOP_POLL_NS;
            if ( shutdown_requested(reason, sizeof(reason)) )
            {
                printk("load: the toolstack asked for \"%s\": stopping\n", reason);
                break;
            }
        }
        if ( next < t )
            next = t;
    }

    WRITE_ONCE(stop_load, true);
    for ( uint64_t until = now_ns() + STOP_WAIT_NS; READ_ONCE(nr_stopped) < nr_vcpus - 1 && now_ns() < until; )
        sleep_until(now_ns() + MS);
    monitor_round(true);

    printk("load: %lu area reads, %lu with VCPUOP_get_runstate_info, over %lu ms\n", mon.reads, mon.hypercalls,
           (now_ns() - start) / MS);
    print_shares(now_ns() - start, first);

    check("area-consistent", "2.2", mon.inconsistent, 0,
          "reads where state_entry_time - sum(time) is not the vCPU's creation time");
    check("area-monotonic", "2.2", mon.regressed, 0, "reads where a time or state_entry_time decreased");
    check("area-behind-hypercall", "2.3", mon.ahead, 0,
          "reads with a time above VCPUOP_get_runstate_info's taken after them");
    check("runstate-info", "2.3", mon.failed, 0, "failed VCPUOP_get_runstate_info calls");
    for ( unsigned int id = 1; id < nr_vcpus; id++ )
    {
        char name[32];
        uint64_t total = sum_times(&last[id]) - sum_times(&first[id]);
        uint64_t blocked = last[id].time[RUNSTATE_blocked] - first[id].time[RUNSTATE_blocked];
        uint64_t running = last[id].time[RUNSTATE_running] - first[id].time[RUNSTATE_running];
        const struct pattern *pat = pattern_of(id);
        bool shaped = (!pat->spins || running > 0) &&
                      (pat->blocks ? blocked > 0 : blocked * 1000 <= total * SPIN_BLOCKED_MAX);

        snprintf(name, sizeof(name), "load-v%u", id);
        check(name, "2", shaped, 1, "vCPU %u %s", id,
              pat->spins && pat->blocks ? "ran, and was blocked at times" :
              pat->spins ? "ran, and was blocked for under 5% of the time" : "was blocked at times");
    }

    if ( xtf_ok() )
        xtf_success(NULL);
    if ( !strcmp(reason, "reboot") )
        xtf_exit_reason(SHUTDOWN_reboot);
}
