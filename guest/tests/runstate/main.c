/*
 * runstate: VCPUOP_get_runstate_info, the runstate areas of
 * VCPUOP_register_runstate_memory_area and VCPUOP_register_runstate_phys_area,
 * and XEN_RUNSTATE_UPDATE (spec 1.2 cmds 4, 5, 14; spec 2; VM assist type 5
 * of spec 6.6). Needs 2 vCPUs.
 *
 * Timing-dependent figures are checked as relations. A vCPU's creation
 * time is taken from a copy of its raw runstate (state_entry_time -
 * sum(time), spec 2.2): for vCPU 1 from get_runstate_info while it is still
 * offline since creation, for vCPU 0 from the copy Xen makes when it
 * registers its own area. Then:
 *   - every later raw copy (an area written at a context switch) has the
 *     same state_entry_time - sum(time) (spec 2.2);
 *   - get_runstate_info's sum(time) is NOW - creation (spec 2.3), NOW being
 *     between the guest's pvclock readings around the call (with a slack);
 *   - totals never decrease.
 *
 * Order: vCPU 1 is looked at (and given an area by vCPU 0) while offline,
 * then brought up; it reads the area at its first switch-in, registers its
 * own area and goes idle (blocked). vCPU 0 then works on its own areas,
 * blocking 1 ms at a time (SCHEDOP_block through sleep_ns) to force context
 * switches: the area is written when the vCPU is switched out and in again.
 */

#include <xenpy-guest.h>

const char test_title[] = "Runstate information and runstate areas";

/* Allowance for the guest's pvclock against Xen's NOW(). */
#define SLACK_NS        (100 * NSEC_PER_USEC)
#define SLEEP_NS        (1 * NSEC_PER_MSEC)
#define WAIT_NS         (5 * NSEC_PER_SEC)

/* Below VIRT_BASE: never mapped (spec 7.2), but passes __addr_ok. */
#define UNMAPPED_VA     0x1000UL
/* The first address above the lower canonical half: fails __addr_ok (spec 1.2 cmd 5). */
#define NOT_OKAY_VA     0x0000800000000000UL
/* End of Xen's part of the upper canonical half: the first address __addr_ok accepts there. */
#define XEN_RANGE_END   0xffff880000000000UL
/* A machine address far above any RAM of the machine. */
#define NOT_RAM_MADDR   (1UL << 44)
#define PHYS_UNREGISTER (~0UL)

#define POISON_BYTE     0xa5
#define POISON_STATE    ((int)0xa5a5a5a5)

/* VA areas. */
static vcpu_runstate_info_t area0, area0_b, area1, area1_remote;

/* Phys areas: offset 0 for vCPU 0, PHYS_REMOTE_OFFSET for vCPU 1. */
static uint8_t phys_page[PAGE_SIZE] __page_aligned_bss;
#define PHYS_REMOTE_OFFSET 64
#define PHYS_SECOND_OFFSET 128
/* Past the end of struct shared_info (3136 bytes on PV64, spec 5.4). */
#define SHARED_INFO_TAIL   (PAGE_SIZE - 64)

/*
 * Three pages; the middle one is unmapped by test_partial(). An area in the
 * last PARTIAL_BYTES bytes of the first page has only state and
 * state_entry_time mapped; an area AFTER_HOLE_OFFSET bytes before the third
 * page has its first 8 bytes (state and padding) unmapped and the rest
 * (state_entry_time, time[]) mapped.
 */
static uint8_t edge_pages[3 * PAGE_SIZE] __page_aligned_bss;
#define PARTIAL_BYTES     16
#define AFTER_HOLE_OFFSET 8

static vcpu_runstate_info_t *partial_area(void)
{
    return (vcpu_runstate_info_t *)(edge_pages + PAGE_SIZE - PARTIAL_BYTES);
}

static vcpu_runstate_info_t *after_hole_area(void)
{
    return (vcpu_runstate_info_t *)(edge_pages + 2 * PAGE_SIZE - AFTER_HOLE_OFFSET);
}

/* The mapped part of after_hole_area() still holds the poison. */
static bool after_hole_untouched(void)
{
    const volatile uint8_t *p = edge_pages + 2 * PAGE_SIZE;

    for ( unsigned int i = 0; i < sizeof(vcpu_runstate_info_t) - AFTER_HOLE_OFFSET; i++ )
    {
        if ( p[i] != POISON_BYTE )
            return false;
    }

    return true;
}

/* Filled in by vCPU 1 once it is up. */
static vcpu_runstate_info_t ap_remote_seen; /* area1_remote at its first switch-in */
static vcpu_runstate_info_t ap_first;       /* area1 just after it registered it */
static long ap_rc_register;
static unsigned int ap_done;

static uint64_t time_sum(const vcpu_runstate_info_t *r)
{
    return r->time[0] + r->time[1] + r->time[2] + r->time[3];
}

/* Creation time implied by a raw copy: state_entry_time - sum(time). */
static uint64_t creation_of(const vcpu_runstate_info_t *r)
{
    return r->state_entry_time - time_sum(r);
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

/* creation + sum(time) of a get_runstate_info result lies in [lo, hi] (spec 2.3). */
static bool sum_is_now(const vcpu_runstate_info_t *r, uint64_t creation, uint64_t lo, uint64_t hi)
{
    uint64_t t = creation + time_sum(r);

    return t + SLACK_NS >= lo && t <= hi + SLACK_NS;
}

static void poison(void *area)
{
    memset(area, POISON_BYTE, sizeof(vcpu_runstate_info_t));
    wmb();
}

static bool written(const vcpu_runstate_info_t *area)
{
    return READ_ONCE(area->state) != POISON_STATE;
}

static long get_runstate(unsigned int id, void *out)
{
    return HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, id, out);
}

static long register_va(unsigned int id, unsigned long va)
{
    struct vcpu_register_runstate_memory_area reg = { .addr.p = va };

    return HYPERVISOR_vcpu_op(VCPUOP_register_runstate_memory_area, id, &reg);
}

static long register_phys(unsigned int id, uint64_t maddr)
{
    struct vcpu_register_runstate_memory_area reg = { .addr.p = maddr };

    return HYPERVISOR_vcpu_op(VCPUOP_register_runstate_phys_area, id, &reg);
}

/* Runs on vCPU 1 once it is up. */
static void ap_fn(unsigned int id)
{
    runstate_read_area(&area1_remote, &ap_remote_seen);
    ap_rc_register = register_va(id, (unsigned long)&area1);
    runstate_read_area(&area1, &ap_first);
    __atomic_store_n(&ap_done, 1, __ATOMIC_SEQ_CST);
}

/* Yield until cond() holds or WAIT_NS pass; returns cond(). */
static bool wait_for(bool (*cond)(void))
{
    uint64_t deadline = now_ns() + WAIT_NS;

    while ( !cond() && now_ns() < deadline )
        (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);

    return cond();
}

static bool ap_reported(void)
{
    return __atomic_load_n(&ap_done, __ATOMIC_SEQ_CST);
}

static bool area1_blocked(void)
{
    return READ_ONCE(area1.state) == RUNSTATE_blocked;
}

/*
 * Block SLEEP_NS: the calling vCPU is switched out (blocked) and in again
 * (running). A wake-up can come without any time blocked (the pvclock
 * passing the deadline before the block, on an emulated TSC): sleep again
 * until get_runstate_info shows time blocked, at most MAX_SLEEPS times.
 */
#define MAX_SLEEPS 10

static void block_once(void)
{
    unsigned int cpu = smp_processor_id();
    vcpu_runstate_info_t before, after;

    (void)get_runstate(cpu, &before);
    for ( unsigned int i = 0; i < MAX_SLEEPS; i++ )
    {
        uint64_t t0 = now_ns(), t1;
        unsigned long ev = timer_nr_events(cpu);

        sleep_ns(SLEEP_NS);
        t1 = now_ns();
        (void)get_runstate(cpu, &after);
        if ( after.time[RUNSTATE_blocked] > before.time[RUNSTATE_blocked] )
            return;
        printk("vCPU %u: slept %lu ns (%lu timer events) without blocking (+%lu %lu %lu %lu), again\n",
               cpu, t1 - t0, timer_nr_events(cpu) - ev, after.time[0] - before.time[0],
               after.time[1] - before.time[1], after.time[2] - before.time[2],
               after.time[3] - before.time[3]);
    }
}

/* vCPU 1 while offline, the area vCPU 0 registers for it, its bring-up. */
static bool test_remote(uint64_t *creation1)
{
    vcpu_runstate_info_t g, g2, copy;
    uint64_t n1, n2;
    long rc;

    n1 = now_ns();
    rc = get_runstate(1, &g);
    n2 = now_ns();
    check("get-offline", "1.2", rc, 0, "VCPUOP_get_runstate_info(vCPU 1, offline): rc");
    check("get-offline-state", "2.1", g.state, RUNSTATE_offline,
          "VCPUOP_get_runstate_info(vCPU 1, offline): state");
    check("get-offline-times", "2.1", g.time[RUNSTATE_running] + g.time[RUNSTATE_runnable] +
          g.time[RUNSTATE_blocked], 0,
          "VCPUOP_get_runstate_info(vCPU 1, never up): time outside offline");
    /* Offline since creation: state_entry_time is the creation time. */
    *creation1 = g.state_entry_time;
    check("get-offline-sum", "2.3", sum_is_now(&g, *creation1, n1, n2), 1,
          "VCPUOP_get_runstate_info(vCPU 1, offline): sum(time) == NOW - creation");

    /* Immediate copy for another vCPU: vcpu_runstate_get (spec 1.2 cmd 5). */
    poison(&area1_remote);
    n1 = now_ns();
    rc = register_va(1, (unsigned long)&area1_remote);
    n2 = now_ns();
    check("register-remote", "1.2", rc, 0,
          "VCPUOP_register_runstate_memory_area(vCPU 1): rc");
    runstate_read_area(&area1_remote, &copy);
    check("register-remote-copied", "1.2", written(&area1_remote), 1,
          "VCPUOP_register_runstate_memory_area(vCPU 1): area written at registration");
    check("register-remote-state", "2.3", copy.state, RUNSTATE_offline,
          "VCPUOP_register_runstate_memory_area(vCPU 1, offline): state in the copy");
    check("register-remote-entry", "2.3", copy.state_entry_time == *creation1, 1,
          "VCPUOP_register_runstate_memory_area(vCPU 1, offline): state_entry_time in the copy "
          "is the creation time");
    check("register-remote-sum", "2.3", sum_is_now(&copy, *creation1, n1, n2), 1,
          "VCPUOP_register_runstate_memory_area(vCPU 1): copy has sum(time) == NOW - creation");
    check("get-offline-monotonic", "2.2", monotonic(&g, &copy), 1,
          "VCPUOP_register_runstate_memory_area(vCPU 1): copy >= earlier VCPUOP_get_runstate_info");

    /* Written at the switch-in of vCPU 1 (spec 2.4), seen by vCPU 1 itself. */
    poison(&area1_remote);
    rc = smp_bring_up(2, ap_fn);
    if ( rc )
    {
        xtf_error("Error: bringing up vCPU 1 failed: %ld\n", rc);
        return false;
    }
    if ( !wait_for(ap_reported) )
    {
        xtf_error("Error: vCPU 1 never reported\n");
        return false;
    }
    check("area-remote-switch-in", "2.4", ap_remote_seen.state, RUNSTATE_running,
          "VCPUOP_register_runstate_memory_area(vCPU 1): area at its switch-in: state");
    check("area-remote-switch-in-sum", "2.2", creation_of(&ap_remote_seen) == *creation1, 1,
          "VCPUOP_register_runstate_memory_area(vCPU 1): area at switch-in has sum(time) == "
          "state_entry_time - creation");
    check("area-remote-offline-time", "2.5", ap_remote_seen.time[RUNSTATE_offline] > 0, 1,
          "VCPUOP_register_runstate_memory_area(vCPU 1): offline time before VCPUOP_up");

    /* vCPU 1 registered its own area: a raw copy, and the old one is replaced. */
    check("register-self-ap", "1.2", ap_rc_register, 0,
          "VCPUOP_register_runstate_memory_area(self, vCPU 1): rc");
    check("register-self-ap-state", "1.2", ap_first.state, RUNSTATE_running,
          "VCPUOP_register_runstate_memory_area(self, vCPU 1): state in the copy");
    check("register-self-ap-sum", "2.2", creation_of(&ap_first) == *creation1, 1,
          "VCPUOP_register_runstate_memory_area(self, vCPU 1): copy has sum(time) == "
          "state_entry_time - creation");
    poison(&area1_remote);

    /* vCPU 1 goes idle: switched out blocked, its new area is written (spec 2.4). */
    check("area-remote-blocked", "2.4", wait_for(area1_blocked), 1,
          "VCPUOP_register_runstate_memory_area(vCPU 1): area says blocked once it is idle");
    runstate_read_area(&area1, &copy);
    check("area-remote-blocked-sum", "2.2", creation_of(&copy) == *creation1, 1,
          "VCPUOP_register_runstate_memory_area(vCPU 1): area at switch-out has sum(time) == "
          "state_entry_time - creation");
    check("area-remote-blocked-monotonic", "2.2", monotonic(&ap_first, &copy), 1,
          "VCPUOP_register_runstate_memory_area(vCPU 1): area totals do not decrease");

    /* get_runstate_info of another vCPU that is up. */
    n1 = now_ns();
    rc = get_runstate(1, &g);
    n2 = now_ns();
    check("get-remote", "1.2", rc, 0, "VCPUOP_get_runstate_info(vCPU 1): rc");
    check_sched("get-remote-state", "2.3", g.state, RUNSTATE_blocked,
                "VCPUOP_get_runstate_info(vCPU 1, idle): state");
    check("get-remote-sum", "2.3", sum_is_now(&g, *creation1, n1, n2), 1,
          "VCPUOP_get_runstate_info(vCPU 1): sum(time) == NOW - creation");
    check("get-remote-after-area", "2.2", monotonic(&copy, &g), 1,
          "VCPUOP_get_runstate_info(vCPU 1): >= its area");
    block_once();
    n1 = now_ns();
    rc = get_runstate(1, &g2);
    n2 = now_ns();
    check("get-remote-monotonic", "2.2", !rc && monotonic(&g, &g2) && time_sum(&g2) > time_sum(&g), 1,
          "VCPUOP_get_runstate_info(vCPU 1): totals grow");
    check("get-remote-sum-later", "2.3", sum_is_now(&g2, *creation1, n1, n2), 1,
          "VCPUOP_get_runstate_info(vCPU 1): later sum(time) == NOW - creation");

    check("register-remote-replaced", "1.2", written(&area1_remote), 0,
          "VCPUOP_register_runstate_memory_area: the area it replaced is no longer written");

    return true;
}

/* Argument errors (spec 1.1, 1.2 cmds 4 and 5). */
static void test_errors(unsigned int nr_vcpus)
{
    vcpu_runstate_info_t g;

    check("get-efault", "1.2", get_runstate(0, (void *)UNMAPPED_VA), -XEN_EFAULT,
          "VCPUOP_get_runstate_info to an unmapped address");
    check("get-bad-vcpuid", "1.1", get_runstate(nr_vcpus, &g), -XEN_ENOENT,
          "VCPUOP_get_runstate_info of vCPU %u (no such vCPU)", nr_vcpus);
    check("register-bad-vcpuid", "1.1",
          HYPERVISOR_vcpu_op(VCPUOP_register_runstate_memory_area, nr_vcpus, NULL), -XEN_ENOENT,
          "VCPUOP_register_runstate_memory_area of vCPU %u (no such vCPU)", nr_vcpus);
    check("register-arg-efault", "1.2",
          HYPERVISOR_vcpu_op(VCPUOP_register_runstate_memory_area, 0, (void *)UNMAPPED_VA),
          -XEN_EFAULT, "VCPUOP_register_runstate_memory_area with an unreadable argument");
    check("register-not-okay", "1.2", register_va(0, NOT_OKAY_VA), -XEN_EFAULT,
          "VCPUOP_register_runstate_memory_area at %#lx (not guest_handle_okay)", NOT_OKAY_VA);
    check("register-xen-range-end", "1.2", register_va(0, XEN_RANGE_END - 8), -XEN_EFAULT,
          "VCPUOP_register_runstate_memory_area at %#lx (Xen's range, not guest_handle_okay)",
          XEN_RANGE_END - 8);
    check("register-null", "1.2", register_va(0, 0), 0,
          "VCPUOP_register_runstate_memory_area at NULL");
    /* Only the start address is checked: these pass, and the faulting copy is ignored. */
    check("register-kernel-range", "1.2", register_va(0, XEN_RANGE_END), 0,
          "VCPUOP_register_runstate_memory_area at %#lx (guest kernel range, unmapped)", XEN_RANGE_END);
    check("register-lower-half-end", "1.2", register_va(0, NOT_OKAY_VA - 8), 0,
          "VCPUOP_register_runstate_memory_area at %#lx (running past the lower canonical half)",
          NOT_OKAY_VA - 8);
    check("register-okay-null", "1.2", register_va(0, 0), 0,
          "VCPUOP_register_runstate_memory_area at NULL after the range checks");
    /* The copy at registration faults: ignored (spec 1.2 cmd 5); so do the later updates. */
    check("register-unmapped", "1.2", register_va(0, UNMAPPED_VA), 0,
          "VCPUOP_register_runstate_memory_area at an unmapped address %#lx", UNMAPPED_VA);
    block_once();
    check("register-unmapped-null", "1.2", register_va(0, 0), 0,
          "VCPUOP_register_runstate_memory_area at NULL after an unmapped area");
}

/* vCPU 0's own VA areas: the copy at registration and the context-switch writes. */
static void test_self(uint64_t *creation0)
{
    vcpu_runstate_info_t g1, g2, a, b;
    uint64_t n1, n2, n3;
    long rc;

    n1 = now_ns();
    rc = get_runstate(0, &g1);
    n2 = now_ns();
    check("get-self", "1.2", rc, 0, "VCPUOP_get_runstate_info(self): rc");
    check("get-self-state", "2.3", g1.state, RUNSTATE_running,
          "VCPUOP_get_runstate_info(self): state");

    /* The copy for v == current is the raw runstate (spec 1.2 cmd 5). */
    poison(&area0);
    rc = register_va(0, (unsigned long)&area0);
    check("register-self", "1.2", rc, 0, "VCPUOP_register_runstate_memory_area(self): rc");
    check("register-self-copied", "1.2", written(&area0), 1,
          "VCPUOP_register_runstate_memory_area(self): area written at registration");
    runstate_read_area(&area0, &a);
    rc = get_runstate(0, &g2);
    n3 = now_ns();
    *creation0 = creation_of(&a);
    check("register-self-state", "1.2", a.state, RUNSTATE_running,
          "VCPUOP_register_runstate_memory_area(self): state in the copy");
    check("get-self-sum", "2.3", sum_is_now(&g1, *creation0, n1, n2), 1,
          "VCPUOP_get_runstate_info(self): sum(time) == NOW - creation");
    check("get-self-entry", "2.3", g1.state_entry_time <= n2 + SLACK_NS, 1,
          "VCPUOP_get_runstate_info(self): state_entry_time <= NOW");
    check("get-self-monotonic", "2.2", !rc && monotonic(&g1, &g2) && monotonic(&a, &g2), 1,
          "VCPUOP_get_runstate_info(self): totals do not decrease");
    check("get-self-sum-later", "2.3", sum_is_now(&g2, *creation0, n2, n3), 1,
          "VCPUOP_get_runstate_info(self): later sum(time) == NOW - creation");

    /* Written at the switch out (blocked) and in (running) of a block (spec 2.4). */
    block_once();
    runstate_read_area(&area0, &b);
    check("area-self-updated", "2.4", b.state_entry_time > a.state_entry_time, 1,
          "VCPUOP_register_runstate_memory_area(self): area rewritten after a block and wake");
    check("area-self-state", "2.4", b.state, RUNSTATE_running,
          "VCPUOP_register_runstate_memory_area(self): area state after a wake");
    check("area-self-blocked-time", "2.4", b.time[RUNSTATE_blocked] > a.time[RUNSTATE_blocked], 1,
          "VCPUOP_register_runstate_memory_area(self): blocked time grew over a block");
    check("area-self-sum", "2.2", creation_of(&b) == *creation0, 1,
          "VCPUOP_register_runstate_memory_area(self): area has sum(time) == state_entry_time - creation");
    check("area-self-monotonic", "2.2", monotonic(&a, &b), 1,
          "VCPUOP_register_runstate_memory_area(self): area totals do not decrease");

    /*
     * SCHEDOP_yield with no other vCPU runnable (vCPU 1 is still down): the
     * scheduler picks vCPU 0 again, no context switch, no rewrite (spec 2.5).
     */
    runstate_read_area(&area0, &a);
    (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    runstate_read_area(&area0, &b);
    check("area-self-yield", "2.5", b.state_entry_time == a.state_entry_time &&
          !memcmp(b.time, a.time, sizeof(a.time)), 1,
          "VCPUOP_register_runstate_memory_area(self): area not rewritten by a SCHEDOP_yield that "
          "continues running");

    /* Re-registration replaces the area. */
    poison(&area0_b);
    check("register-self-again", "1.2", register_va(0, (unsigned long)&area0_b), 0,
          "VCPUOP_register_runstate_memory_area(self) of a second area: rc");
    poison(&area0);
    block_once();
    check("register-self-replaced", "1.2", written(&area0), 0,
          "VCPUOP_register_runstate_memory_area(self): the replaced area is not written");
    runstate_read_area(&area0_b, &b);
    check("register-self-new-written", "2.4", written(&area0_b) && b.state == RUNSTATE_running, 1,
          "VCPUOP_register_runstate_memory_area(self): the new area is written");
    check("register-self-new-sum", "2.2", creation_of(&b) == *creation0, 1,
          "VCPUOP_register_runstate_memory_area(self): new area has sum(time) == "
          "state_entry_time - creation");

    /* NULL disables the updates. */
    check("register-self-null", "1.2", register_va(0, 0), 0,
          "VCPUOP_register_runstate_memory_area(self) at NULL: rc");
    poison(&area0_b);
    block_once();
    check("register-self-null-not-written", "2.4", written(&area0_b), 0,
          "VCPUOP_register_runstate_memory_area(self) at NULL: no area is written");
}

/*
 * An area whose time[] lies in an unmapped page: Xen copies up to the fault
 * (copy_to_guest leaves the bytes before it written), and ignores the
 * fault at registration and at context switches; get_runstate_info there
 * fails with -EFAULT after the same partial copy.
 */
static void test_partial(void)
{
    uint8_t *hole = edge_pages + PAGE_SIZE;
    vcpu_runstate_info_t *r = partial_area();
    uint64_t entry;
    long rc;

    rc = HYPERVISOR_update_va_mapping((unsigned long)hole, 0, UVMF_INVLPG);
    if ( rc )
    {
        xtf_error("Error: unmapping a page with update_va_mapping failed: %ld\n", rc);
        return;
    }

    memset(r, POISON_BYTE, PARTIAL_BYTES);
    wmb();
    check("get-partial", "1.2", get_runstate(0, r), -XEN_EFAULT,
          "VCPUOP_get_runstate_info(self) to an area running into an unmapped page");
    check("get-partial-written", "1.2", READ_ONCE(r->state), RUNSTATE_running,
          "VCPUOP_get_runstate_info(self) to a partly mapped area: state written before the fault");

    memset(r, POISON_BYTE, PARTIAL_BYTES);
    wmb();
    check("register-partial", "1.2", register_va(0, (unsigned long)r), 0,
          "VCPUOP_register_runstate_memory_area(self) running into an unmapped page: rc");
    check("register-partial-written", "1.2", READ_ONCE(r->state), RUNSTATE_running,
          "VCPUOP_register_runstate_memory_area(self), partly mapped: state in the copy");
    entry = READ_ONCE(r->state_entry_time);
    block_once();
    check("area-partial-updated", "2.4",
          READ_ONCE(r->state) == RUNSTATE_running && READ_ONCE(r->state_entry_time) > entry, 1,
          "VCPUOP_register_runstate_memory_area(self), partly mapped: rewritten after a block and wake");

    /* The first bytes unmapped: the whole copy fails at once, nothing is written. */
    memset(edge_pages + 2 * PAGE_SIZE, POISON_BYTE, sizeof(vcpu_runstate_info_t));
    wmb();
    check("register-after-hole", "1.2", register_va(0, (unsigned long)after_hole_area()), 0,
          "VCPUOP_register_runstate_memory_area(self) starting in an unmapped page: rc");
    check("register-after-hole-untouched", "1.2", after_hole_untouched(), 1,
          "VCPUOP_register_runstate_memory_area(self) starting in an unmapped page: nothing written");
    block_once();
    check("area-after-hole-untouched", "2.4", after_hole_untouched(), 1,
          "VCPUOP_register_runstate_memory_area(self) starting in an unmapped page: nothing written "
          "after a block and wake");
    check("register-partial-null", "1.2", register_va(0, 0), 0,
          "VCPUOP_register_runstate_memory_area(self) at NULL after a partly mapped area");
}

/* VM_ASSIST(VMASST_TYPE_runstate_update_flag): the update protocol (spec 2.4, 6.6). */
static void test_update_flag(uint64_t creation0)
{
    bool valid = test_profile()->vm_assist_valid_mask >> VMASST_TYPE_runstate_update_flag & 1;
    vcpu_runstate_info_t a;
    uint64_t raw;
    long rc;

    rc = HYPERVISOR_vm_assist(VMASST_CMD_enable, VMASST_TYPE_runstate_update_flag);
    check("vmassist-enable", "6.6", rc, valid ? 0 : -XEN_EINVAL,
          "VMASST_CMD_enable(VMASST_TYPE_runstate_update_flag)");
    if ( rc )
        return;

    poison(&area0);
    check("vmassist-register", "1.2", register_va(0, (unsigned long)&area0), 0,
          "VCPUOP_register_runstate_memory_area(self) with XEN_RUNSTATE_UPDATE: rc");
    check_hex("vmassist-register-flag", "2.4", READ_ONCE(area0.state_entry_time) & XEN_RUNSTATE_UPDATE, 0,
              "VCPUOP_register_runstate_memory_area(self): XEN_RUNSTATE_UPDATE in the copy");
    runstate_read_area(&area0, &a);
    block_once();
    /* vCPU 0 runs: no update of its own area is under way. */
    raw = READ_ONCE(area0.state_entry_time);
    check_hex("vmassist-update-flag", "2.4", raw & XEN_RUNSTATE_UPDATE, 0,
              "VCPUOP_register_runstate_memory_area(self): XEN_RUNSTATE_UPDATE after an update");
    check("vmassist-updated", "2.4", raw > a.state_entry_time, 1,
          "VCPUOP_register_runstate_memory_area(self): area rewritten after a block with XEN_RUNSTATE_UPDATE");
    runstate_read_area(&area0, &a);
    check("vmassist-sum", "2.2", a.state == RUNSTATE_running && creation_of(&a) == creation0, 1,
          "VCPUOP_register_runstate_memory_area(self): area has sum(time) == state_entry_time - creation "
          "with XEN_RUNSTATE_UPDATE");

    /*
     * An area whose first bytes are unmapped: the whole-struct copy fails,
     * but the protocol's one-byte writes of the most significant byte of
     * state_entry_time (offset 15) reach the mapped page; the last one
     * leaves the flag clear (spec 2.4).
     */
    memset(edge_pages + 2 * PAGE_SIZE, POISON_BYTE, sizeof(vcpu_runstate_info_t));
    wmb();
    check("vmassist-after-hole", "1.2", register_va(0, (unsigned long)after_hole_area()), 0,
          "VCPUOP_register_runstate_memory_area(self) starting in an unmapped page, XEN_RUNSTATE_UPDATE: rc");
    check("vmassist-after-hole-copy", "1.2", after_hole_untouched(), 1,
          "VCPUOP_register_runstate_memory_area(self) starting in an unmapped page: the copy at "
          "registration writes nothing (no XEN_RUNSTATE_UPDATE protocol)");
    block_once();
    check_hex("vmassist-after-hole-msb", "2.4", READ_ONCE(edge_pages[2 * PAGE_SIZE + 15 - AFTER_HOLE_OFFSET]),
              (uint8_t)(a.state_entry_time >> 56),
              "VCPUOP_register_runstate_memory_area(self) starting in an unmapped page: the "
              "XEN_RUNSTATE_UPDATE byte of state_entry_time after an update");
    check("vmassist-after-hole-rest", "2.4",
          READ_ONCE(edge_pages[2 * PAGE_SIZE]) == POISON_BYTE &&
          READ_ONCE(edge_pages[2 * PAGE_SIZE + sizeof(vcpu_runstate_info_t) - AFTER_HOLE_OFFSET - 1]) ==
          POISON_BYTE, 1,
          "VCPUOP_register_runstate_memory_area(self) starting in an unmapped page: the rest not written");

    /* Disabled again: one plain copy, which fails at once; the byte is not written. */
    check("vmassist-disable", "6.6",
          HYPERVISOR_vm_assist(VMASST_CMD_disable, VMASST_TYPE_runstate_update_flag), 0,
          "VMASST_CMD_disable(VMASST_TYPE_runstate_update_flag)");
    memset(edge_pages + 2 * PAGE_SIZE, POISON_BYTE, sizeof(vcpu_runstate_info_t));
    wmb();
    block_once();
    check("vmassist-disabled-after-hole", "2.4", after_hole_untouched(), 1,
          "VCPUOP_register_runstate_memory_area(self) starting in an unmapped page: nothing written "
          "after VMASST_CMD_disable(VMASST_TYPE_runstate_update_flag)");
    check("vmassist-after-hole-null", "1.2", register_va(0, 0), 0,
          "VCPUOP_register_runstate_memory_area(self) at NULL after an area starting in an unmapped page");
}

/* VCPUOP_register_runstate_phys_area (spec 1.2 cmd 14). */
static void test_phys(uint64_t creation0)
{
    vcpu_runstate_info_t *p = (vcpu_runstate_info_t *)phys_page;
    vcpu_runstate_info_t *q = (vcpu_runstate_info_t *)(phys_page + PHYS_REMOTE_OFFSET);
    vcpu_runstate_info_t *r2 = (vcpu_runstate_info_t *)(phys_page + PHYS_SECOND_OFFSET);
    uint64_t maddr = virt_to_maddr(phys_page);
    uint64_t l4 = virt_to_maddr((void *)start_info->pt_base);
    vcpu_runstate_info_t *shared_tail;
    vcpu_runstate_info_t a, b;
    long rc;

    poison(p);
    rc = register_phys(0, maddr);
    if ( !test_profile()->phys_areas )
    {
        check("phys-enosys", "1.4", rc, -XEN_ENOSYS, "VCPUOP_register_runstate_phys_area");
        return;
    }
    check("phys-self", "1.2", rc, 0, "VCPUOP_register_runstate_phys_area(self): rc");
    check("phys-bad-vcpuid", "1.1", register_phys(2, maddr), -XEN_ENOENT,
          "VCPUOP_register_runstate_phys_area of vCPU 2 (no such vCPU)");
    check("phys-self-copied", "1.2", written(p), 1,
          "VCPUOP_register_runstate_phys_area(self): area written at registration");
    runstate_read_area(p, &a);
    check("phys-self-state", "1.2", a.state, RUNSTATE_running,
          "VCPUOP_register_runstate_phys_area(self): state in the copy");
    check("phys-self-sum", "2.2", creation_of(&a) == creation0, 1,
          "VCPUOP_register_runstate_phys_area(self): copy has sum(time) == state_entry_time - creation");

    /* A VA area as well: not written while the phys area is registered. */
    check("phys-va-register", "1.2", register_va(0, (unsigned long)&area0), 0,
          "VCPUOP_register_runstate_memory_area(self) with a phys area: rc");
    poison(&area0);
    block_once();
    check("phys-va-not-written", "2.4", written(&area0), 0,
          "VCPUOP_register_runstate_memory_area: VA area not written while a "
          "VCPUOP_register_runstate_phys_area area is registered");
    check_hex("phys-update-flag", "2.4", READ_ONCE(p->state_entry_time) & XEN_RUNSTATE_UPDATE, 0,
              "VCPUOP_register_runstate_phys_area(self): XEN_RUNSTATE_UPDATE after an update");
    runstate_read_area(p, &b);
    check("phys-self-updated", "2.4", b.state_entry_time > a.state_entry_time && b.state == RUNSTATE_running, 1,
          "VCPUOP_register_runstate_phys_area(self): area rewritten after a block and wake");
    check("phys-self-updated-sum", "2.2", creation_of(&b) == creation0, 1,
          "VCPUOP_register_runstate_phys_area(self): area has sum(time) == state_entry_time - creation");

    /* Another vCPU: registered, but only the current vCPU's area is populated. */
    poison(q);
    check("phys-remote", "1.2", register_phys(1, virt_to_maddr(q)), 0,
          "VCPUOP_register_runstate_phys_area(vCPU 1): rc");
    check("phys-remote-not-copied", "1.2", written(q), 0,
          "VCPUOP_register_runstate_phys_area(vCPU 1): area written at registration");
    check("phys-remote-unregister", "1.2", register_phys(1, PHYS_UNREGISTER), 0,
          "VCPUOP_register_runstate_phys_area(vCPU 1) at ~0 (unregister): rc");
    check("phys-remote-unregister-again", "1.2", register_phys(1, PHYS_UNREGISTER), 0,
          "VCPUOP_register_runstate_phys_area(vCPU 1) at ~0 with nothing registered: rc");

    /* Re-registration replaces the mapping. */
    poison(r2);
    check("phys-self-again", "1.2", register_phys(0, virt_to_maddr(r2)), 0,
          "VCPUOP_register_runstate_phys_area(self) of a second area: rc");
    check("phys-self-again-copied", "1.2", written(r2) && READ_ONCE(r2->state) == RUNSTATE_running, 1,
          "VCPUOP_register_runstate_phys_area(self) of a second area: area written at registration");
    poison(p);
    block_once();
    check("phys-self-replaced", "1.2", written(p), 0,
          "VCPUOP_register_runstate_phys_area(self): the replaced area is not written");
    runstate_read_area(r2, &b);
    check("phys-self-again-updated", "2.4", b.state == RUNSTATE_running && creation_of(&b) == creation0, 1,
          "VCPUOP_register_runstate_phys_area(self): the new area is written, sum(time) == "
          "state_entry_time - creation");

    /* Bad addresses: the errors of map_guest_area (spec 4.1). */
    check("phys-arg-efault", "1.2",
          HYPERVISOR_vcpu_op(VCPUOP_register_runstate_phys_area, 0, (void *)UNMAPPED_VA), -XEN_EFAULT,
          "VCPUOP_register_runstate_phys_area with an unreadable argument");
    /* shared_info is a page of the domain that can be typed writable: accepted. */
    shared_tail = (vcpu_runstate_info_t *)((uint8_t *)shared_info + SHARED_INFO_TAIL);
    poison(shared_tail);
    check("phys-shared-info", "1.2", register_phys(0, start_info->shared_info + SHARED_INFO_TAIL), 0,
          "VCPUOP_register_runstate_phys_area in the unused tail of the shared_info page");
    check("phys-shared-info-copied", "1.2", READ_ONCE(shared_tail->state), RUNSTATE_running,
          "VCPUOP_register_runstate_phys_area in the shared_info page: state in the copy");
    check("phys-cross-page", "1.2", register_phys(0, maddr + PAGE_SIZE - 8), -XEN_ENXIO,
          "VCPUOP_register_runstate_phys_area crossing a page");
    check("phys-cross-page-by-8", "1.2",
          register_phys(0, maddr + PAGE_SIZE - sizeof(vcpu_runstate_info_t) + 8), -XEN_ENXIO,
          "VCPUOP_register_runstate_phys_area with its last 8 bytes in the next page");
    check("phys-misaligned", "1.2", register_phys(0, maddr + 4), -XEN_ENXIO,
          "VCPUOP_register_runstate_phys_area misaligned (offset 4)");
    check("phys-not-ram", "1.2", register_phys(0, NOT_RAM_MADDR), -XEN_EINVAL,
          "VCPUOP_register_runstate_phys_area at %#lx (not RAM)", NOT_RAM_MADDR);
    check("phys-pagetable", "1.2", register_phys(0, l4), -XEN_EACCES,
          "VCPUOP_register_runstate_phys_area on the L4 page table (not writable)");

    /* The last 48 bytes of a page fit. */
    check("phys-page-end", "1.2", register_phys(0, maddr + PAGE_SIZE - sizeof(vcpu_runstate_info_t)), 0,
          "VCPUOP_register_runstate_phys_area in the last %zu bytes of a page", sizeof(vcpu_runstate_info_t));

    /* ~0 unregisters: the VA area is written again. */
    check("phys-unregister", "1.2", register_phys(0, PHYS_UNREGISTER), 0,
          "VCPUOP_register_runstate_phys_area(self) at ~0 (unregister): rc");
    poison(r2);
    poison(&area0);
    block_once();
    check("phys-unregistered-not-written", "2.4", written(r2), 0,
          "VCPUOP_register_runstate_phys_area: area not written once unregistered");
    runstate_read_area(&area0, &b);
    check("phys-unregistered-va-written", "2.4", written(&area0) && b.state == RUNSTATE_running, 1,
          "VCPUOP_register_runstate_memory_area: VA area written again after "
          "VCPUOP_register_runstate_phys_area at ~0");
    check("phys-unregistered-va-sum", "2.2", creation_of(&b) == creation0, 1,
          "VCPUOP_register_runstate_memory_area: VA area has sum(time) == state_entry_time - creation");
}

void test_main(void)
{
    uint64_t creation0, creation1;
    unsigned int nr_vcpus;

    (void)test_profile();
    nr_vcpus = smp_nr_vcpus();
    if ( nr_vcpus != 2 )
    {
        xtf_skip("Skip: needs exactly 2 vCPUs, the domain has %u\n", nr_vcpus);
        return;
    }

    test_errors(nr_vcpus);
    test_self(&creation0);
    if ( !test_remote(&creation1) )
        return;
    test_partial();
    test_phys(creation0);
    test_update_flag(creation0);

    if ( xtf_ok() )
        xtf_success(NULL);
}
