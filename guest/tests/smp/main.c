/*
 * smp: bring up every vCPU and check the runstate figures they see (spec 2).
 *
 * vCPU 0 counts the vCPUs (VCPUOP_is_up until -ENOENT), registers its own
 * runstate area, and starts the others with VCPUOP_initialise + VCPUOP_up.
 * Each of them registers a runstate area (VCPUOP_register_runstate_memory
 * _area), reads it and VCPUOP_get_runstate_info of itself and of every other
 * vCPU, reports, and goes idle (blocked). vCPU 0 waits for every report
 * (yielding), then checks:
 *   - a vCPU is running when it looks at itself (area and get);
 *   - it spent time offline before it was brought up;
 *   - the stored area keeps sum(time) == state_entry_time - creation
 *     exactly (spec 2.2): creation, computed from the first copy, is the
 *     same in every later copy Xen writes (at context switches, spec 2.4);
 *   - totals never decrease;
 *   - for an idle (blocked) vCPU, get_runstate_info's sum(time) ==
 *     NOW - creation (spec 2.3): it grows exactly as system time does.
 */

#include <xenpy-guest.h>

const char test_title[] = "SMP bring-up and runstate accounting";

/* Allowance for the guest's pvclock against Xen's NOW(). */
#define SLACK_NS      (100 * NSEC_PER_USEC)
#define WAIT_NS       (10 * NSEC_PER_SEC)
#define SLEEP_NS      (10 * NSEC_PER_MSEC)

static const char *const state_names[] = {
    [RUNSTATE_running]  = "running",
    [RUNSTATE_runnable] = "runnable",
    [RUNSTATE_blocked]  = "blocked",
    [RUNSTATE_offline]  = "offline",
};

struct report {
    long rc_register;               /* VCPUOP_register_runstate_memory_area */
    long rc_get;                    /* VCPUOP_get_runstate_info (self) */
    vcpu_runstate_info_t area;      /* the registered area, just after registering */
    vcpu_runstate_info_t self;      /* VCPUOP_get_runstate_info of itself */
    uint64_t now;                   /* now_ns() after both */
    unsigned int nr_bad_others;     /* others' get_runstate_info failing or invalid */
};

/* Registered runstate areas: Xen writes them. */
static vcpu_runstate_info_t areas[MAX_VCPUS];
static struct report reports[MAX_VCPUS];
static unsigned int nr_vcpus;
static unsigned int nr_reported;

static const char *state_name(int state)
{
    if ( state >= 0 && state < (int)ARRAY_SIZE(state_names) )
        return state_names[state];

    return "invalid";
}

static uint64_t time_sum(const vcpu_runstate_info_t *r)
{
    return r->time[0] + r->time[1] + r->time[2] + r->time[3];
}

/* Creation time implied by a stored area: state_entry_time - sum(time). */
static uint64_t creation_of(const vcpu_runstate_info_t *r)
{
    return r->state_entry_time - time_sum(r);
}

static long register_area(unsigned int id)
{
    struct vcpu_register_runstate_memory_area reg = { .addr.v = &areas[id] };

    return HYPERVISOR_vcpu_op(VCPUOP_register_runstate_memory_area, id, &reg);
}

static long get_runstate(unsigned int id, vcpu_runstate_info_t *out)
{
    return HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, id, out);
}

#define RUNSTATE_LINE_SIZE 160

static void format_runstate(char *buf, const char *what, const vcpu_runstate_info_t *r)
{
    snprintf(buf, RUNSTATE_LINE_SIZE,
             "  %s: %s since %lu ns, time[] = {%lu, %lu, %lu, %lu}, sum %lu ns\n",
             what, state_name(r->state), r->state_entry_time, r->time[0], r->time[1],
             r->time[2], r->time[3], time_sum(r));
}

static void print_runstate(const char *what, const vcpu_runstate_info_t *r)
{
    char line[RUNSTATE_LINE_SIZE];

    format_runstate(line, what, r);
    printk("%s", line);
}

/* Runs on each vCPU >= 1 once it is up. */
static void ap_report(unsigned int id)
{
    struct report *r = &reports[id];
    char others[8 * MAX_VCPUS] = "";
    char area_line[RUNSTATE_LINE_SIZE], get_line[RUNSTATE_LINE_SIZE];
    size_t len = 0;

    r->rc_register = register_area(id);
    runstate_read_area(&areas[id], &r->area);
    r->rc_get = get_runstate(id, &r->self);
    r->now = now_ns();

    for ( unsigned int j = 0; j < nr_vcpus; j++ )
    {
        vcpu_runstate_info_t other;
        long rc;

        if ( j == id )
            continue;

        rc = get_runstate(j, &other);
        if ( rc || other.state < RUNSTATE_running || other.state > RUNSTATE_offline )
            r->nr_bad_others++;
        len += snprintf(others + len, sizeof(others) - len, " %u:%s", j,
                        rc ? "error" : state_name(other.state));
        if ( len >= sizeof(others) )
            len = sizeof(others) - 1;
    }

    /* One printk, so that the reports of different vCPUs do not interleave. */
    format_runstate(area_line, "area", &r->area);
    format_runstate(get_line, "get ", &r->self);
    printk("vCPU %u up at %lu ns: register %ld, get %ld; others:%s\n%s%s",
           id, r->now, r->rc_register, r->rc_get, others, area_line, get_line);

    __atomic_fetch_add(&nr_reported, 1, __ATOMIC_SEQ_CST);
}

/* Yield until cond(id) holds or WAIT_NS pass; returns cond(id). */
static bool wait_for(bool (*cond)(unsigned int), unsigned int id)
{
    uint64_t deadline = now_ns() + WAIT_NS;

    while ( !cond(id) && now_ns() < deadline )
        (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);

    return cond(id);
}

static bool all_reported(unsigned int unused)
{
    (void)unused;

    return __atomic_load_n(&nr_reported, __ATOMIC_SEQ_CST) == nr_vcpus - 1;
}

static bool area_blocked(unsigned int id)
{
    return READ_ONCE(areas[id].state) == RUNSTATE_blocked;
}

/* Every time[i] of b is >= that of a, and b's entry time is >= a's. */
static bool monotonic(const vcpu_runstate_info_t *a, const vcpu_runstate_info_t *b)
{
    for ( unsigned int i = 0; i < 4; i++ )
    {
        if ( b->time[i] < a->time[i] )
            return false;
    }

    return b->state_entry_time >= a->state_entry_time;
}

/* The figures an AP reported about itself. */
static void check_report(unsigned int id)
{
    const struct report *r = &reports[id];
    uint64_t creation = creation_of(&r->area);

    if ( r->rc_register || r->rc_get )
    {
        xtf_failure("Fail: vCPU %u: register_runstate_memory_area %ld, get_runstate_info %ld\n",
                    id, r->rc_register, r->rc_get);
        return;
    }
    if ( r->area.state != RUNSTATE_running )
        xtf_failure("Fail: vCPU %u: its own area says %s, expected running\n",
                    id, state_name(r->area.state));
    if ( r->self.state != RUNSTATE_running )
        xtf_failure("Fail: vCPU %u: get_runstate_info of itself says %s, expected running\n",
                    id, state_name(r->self.state));
    if ( r->self.time[RUNSTATE_offline] == 0 )
        xtf_failure("Fail: vCPU %u: no time offline before it was brought up\n", id);
    if ( !monotonic(&r->area, &r->self) )
        xtf_failure("Fail: vCPU %u: get_runstate_info went back from the area\n", id);
    if ( creation > r->area.state_entry_time )
        xtf_failure("Fail: vCPU %u: area sum(time) %lu exceeds state_entry_time %lu\n",
                    id, time_sum(&r->area), r->area.state_entry_time);
    if ( creation + time_sum(&r->self) > r->now + SLACK_NS )
        xtf_failure("Fail: vCPU %u: get_runstate_info sum %lu runs past now %lu (creation %lu)\n",
                    id, time_sum(&r->self), r->now, creation);
    if ( r->nr_bad_others )
        xtf_failure("Fail: vCPU %u: %u bad get_runstate_info results for other vCPUs\n",
                    id, r->nr_bad_others);
}

/* An AP that went idle: its area and get_runstate_info over a sleep. */
static void check_idle(unsigned int id)
{
    uint64_t creation = creation_of(&reports[id].area);
    vcpu_runstate_info_t area, g1, g2;
    uint64_t n1, n2, n3, n4, grown;
    long rc1, rc2;

    if ( !wait_for(area_blocked, id) )
    {
        runstate_read_area(&areas[id], &area);
        xtf_failure("Fail: vCPU %u: area still says %s, expected blocked once idle\n",
                    id, state_name(area.state));
        return;
    }
    runstate_read_area(&areas[id], &area);

    if ( creation_of(&area) != creation )
        xtf_failure("Fail: vCPU %u: area sum(time) - state_entry_time changed: creation %lu, then %lu\n",
                    id, creation, creation_of(&area));
    if ( !monotonic(&reports[id].area, &area) )
        xtf_failure("Fail: vCPU %u: area totals went back\n", id);

    n1 = now_ns();
    rc1 = get_runstate(id, &g1);
    n2 = now_ns();
    sleep_ns(SLEEP_NS);
    n3 = now_ns();
    rc2 = get_runstate(id, &g2);
    n4 = now_ns();

    if ( rc1 || rc2 )
    {
        xtf_failure("Fail: vCPU %u: get_runstate_info %ld, %ld\n", id, rc1, rc2);
        return;
    }

    printk("vCPU %u idle:\n", id);
    print_runstate("area", &area);
    print_runstate("get ", &g1);
    print_runstate("get ", &g2);

    if ( g1.state != RUNSTATE_blocked || g2.state != RUNSTATE_blocked )
        xtf_failure("Fail: vCPU %u: idle but %s, then %s\n",
                    id, state_name(g1.state), state_name(g2.state));
    if ( !monotonic(&area, &g1) || !monotonic(&g1, &g2) )
        xtf_failure("Fail: vCPU %u: get_runstate_info totals went back\n", id);
    if ( g2.state_entry_time != g1.state_entry_time )
        xtf_failure("Fail: vCPU %u: state_entry_time moved while blocked: %lu -> %lu\n",
                    id, g1.state_entry_time, g2.state_entry_time);

    /* sum(get) == NOW - creation (spec 2.3), NOW being between n1 and n2. */
    if ( creation + time_sum(&g1) + SLACK_NS < n1 || creation + time_sum(&g1) > n2 + SLACK_NS )
        xtf_failure("Fail: vCPU %u: creation + sum %lu outside [%lu, %lu]\n",
                    id, creation + time_sum(&g1), n1, n2);

    grown = time_sum(&g2) - time_sum(&g1);
    if ( grown + SLACK_NS < n3 - n2 || grown > n4 - n1 + SLACK_NS )
        xtf_failure("Fail: vCPU %u: sum(time) grew %lu ns while system time grew %lu..%lu ns\n",
                    id, grown, n3 - n2, n4 - n1);
    if ( g2.time[RUNSTATE_blocked] - g1.time[RUNSTATE_blocked] != grown )
        xtf_failure("Fail: vCPU %u: blocked, but time outside blocked grew\n", id);
}

/* vCPU 0's own area: running when read, and the stored invariant. */
static void check_self(const vcpu_runstate_info_t *first)
{
    vcpu_runstate_info_t now;

    runstate_read_area(&areas[0], &now);
    print_runstate("vCPU 0 area", &now);

    if ( now.state != RUNSTATE_running )
        xtf_failure("Fail: vCPU 0: its own area says %s, expected running\n", state_name(now.state));
    if ( creation_of(&now) != creation_of(first) )
        xtf_failure("Fail: vCPU 0: area sum(time) - state_entry_time changed: creation %lu, then %lu\n",
                    creation_of(first), creation_of(&now));
    if ( !monotonic(first, &now) )
        xtf_failure("Fail: vCPU 0: area totals went back\n");
    if ( now.time[RUNSTATE_blocked] - first->time[RUNSTATE_blocked] + SLACK_NS < SLEEP_NS )
        xtf_failure("Fail: vCPU 0: slept %lu ns but only %lu ns more blocked\n",
                    SLEEP_NS, now.time[RUNSTATE_blocked] - first->time[RUNSTATE_blocked]);
}

void test_main(void)
{
    vcpu_runstate_info_t first;
    long rc;

    nr_vcpus = smp_nr_vcpus();
    printk("The domain has %u vCPU(s)\n", nr_vcpus);
    if ( nr_vcpus < 2 )
    {
        xtf_skip("Skip: needs at least 2 vCPUs\n");
        return;
    }

    rc = register_area(0);
    if ( rc )
    {
        xtf_failure("Fail: VCPUOP_register_runstate_memory_area(vCPU 0) failed: %ld\n", rc);
        return;
    }
    runstate_read_area(&areas[0], &first);
    print_runstate("vCPU 0 area", &first);
    if ( first.state != RUNSTATE_running )
        xtf_failure("Fail: vCPU 0: its own area says %s, expected running\n", state_name(first.state));

    rc = smp_bring_up(nr_vcpus, ap_report);
    if ( rc )
    {
        xtf_error("Error: bringing up %u vCPUs failed: %ld\n", nr_vcpus, rc);
        return;
    }

    if ( !wait_for(all_reported, 0) )
    {
        xtf_failure("Fail: only %u of %u vCPUs reported\n", nr_reported, nr_vcpus - 1);
        return;
    }

    for ( unsigned int id = 1; id < nr_vcpus; id++ )
        check_report(id);
    for ( unsigned int id = 1; id < nr_vcpus; id++ )
        check_idle(id);
    check_self(&first);

    if ( xtf_ok() )
        xtf_success(NULL);
}
