/*
 * multicall: long batches (spec 6.1) of HYPERVISOR_multicall,
 * HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op and memory_op reservations,
 * which Xen may preempt and continue: the guest sees every entry's result
 * and the whole count in *pdone, whatever the number of invocations it took.
 *
 *   - a batch of 1000 XENVER_version calls: 0, every result the version;
 *   - a batch whose entry 10 sends an event to the caller (EVTCHNOP_send
 *     on a bound IPI, events enabled): the handler runs exactly once, and
 *     every entry after the send has its result;
 *   - a list at an unmapped address: -EFAULT;
 *   - 1000 MMU_MACHPHYS_UPDATE requests (the M2P entry of one of the
 *     guest's frames, rewritten with its own pfn): 0, *pdone 1000;
 *   - 1000 MMUEXT_TLB_FLUSH_LOCAL operations: 0, *pdone 1000;
 *   - mmu_update with count MMU_UPDATE_PREEMPTED and no requests, Xen's
 *     continuation of a deferred page-table release: returns foreigndom;
 *   - XENMEM_decrease_reservation of 300 frames, then XENMEM_populate_physmap
 *     of their pfns: 300 extents done each, the reservation back as before.
 */

#include <xenpy-guest.h>
#include <xen/memory.h>

const char test_title[] = "Long multicall, mmu_update, mmuext_op and memory_op batches and their preemption";

#define NR_LONG     1000
#define NR_EVENT    64
#define SEND_AT     10
#define UNMAPPED_VA 0x10000UL

#define MMU_UPDATE_PREEMPTED (1U << 31)

static multicall_entry_t batch[NR_LONG];
static mmu_update_t mmu_reqs[NR_LONG];
static struct mmuext_op mmuext_ops[NR_LONG];
static uint8_t m2p_page[PAGE_SIZE] __page_aligned_bss;

#define NR_EXTENTS 300
static xen_pfn_t extents[NR_EXTENTS];

static long reservation_op(unsigned int op)
{
    xen_memory_reservation_t r = { .nr_extents = NR_EXTENTS, .extent_order = 0, .domid = DOMID_SELF };

    set_xen_guest_handle(r.extent_start, extents);
    return HYPERVISOR_memory_op(op, &r);
}

static long current_reservation(void)
{
    domid_t self = DOMID_SELF;

    return HYPERVISOR_memory_op(XENMEM_current_reservation, &self);
}

/* The top NR_EXTENTS pfns (far above the bootstrap region: nothing maps them) given back and taken again. */
static void test_long_reservation(void)
{
    xen_pfn_t *p2m = (xen_pfn_t *)start_info->mfn_list;
    unsigned long top = start_info->nr_pages - 1;
    long before = current_reservation();
    unsigned int i;

    for ( i = 0; i < NR_EXTENTS; i++ )
        extents[i] = p2m[top - i];
    check("decrease-long", "6.9", reservation_op(XENMEM_decrease_reservation), NR_EXTENTS,
          "XENMEM_decrease_reservation of %d frames (extents done)", NR_EXTENTS);
    check("decrease-long-counts", "6.9", before - current_reservation(), NR_EXTENTS,
          "XENMEM_current_reservation after it, relative to before");
    for ( i = 0; i < NR_EXTENTS; i++ )
        extents[i] = top - i;
    check("populate-long", "6.9", reservation_op(XENMEM_populate_physmap), NR_EXTENTS,
          "XENMEM_populate_physmap of their %d pfns (extents done)", NR_EXTENTS);
    for ( i = 0; i < NR_EXTENTS; i++ )
        p2m[top - i] = extents[i];
    check("populate-long-counts", "6.9", current_reservation() - before, 0,
          "XENMEM_current_reservation after it, relative to before");
}
static evtchn_send_t send_arg;
static volatile unsigned int nr_events;

static void on_ipi(evtchn_port_t port, void *data)
{
    (void)port;
    (void)data;
    nr_events++;
}

static void fill_version_calls(unsigned int nr)
{
    unsigned int i;

    memset(batch, 0, sizeof(batch));
    for ( i = 0; i < nr; i++ )
    {
        batch[i].op = __HYPERVISOR_xen_version;
        batch[i].args[0] = XENVER_version;
        batch[i].result = 0xdead;
    }
}

static unsigned int results_equal(unsigned int from, unsigned int to, unsigned long want)
{
    unsigned int i, n = 0;

    for ( i = from; i < to; i++ )
        n += batch[i].result == want;
    return n;
}

void test_main(void)
{
    long version = HYPERVISOR_xen_version(XENVER_version, NULL);
    long port;
    unsigned int i;

    test_profile();
    events_init(false);

    fill_version_calls(NR_LONG);
    check("long-batch", "6.1", HYPERVISOR_multicall(batch, NR_LONG), 0,
          "HYPERVISOR_multicall of %d XENVER_version calls", NR_LONG);
    check("long-batch-results", "6.1", results_equal(0, NR_LONG, version), NR_LONG,
          "entries whose result is the version");

    port = evtchn_bind_ipi(0, on_ipi, NULL);
    check("bind-ipi", "6.1", port > 0, 1, "EVTCHNOP_bind_ipi to vCPU 0");
    send_arg.port = port;
    fill_version_calls(NR_EVENT);
    batch[SEND_AT].op = __HYPERVISOR_event_channel_op;
    batch[SEND_AT].args[0] = EVTCHNOP_send;
    batch[SEND_AT].args[1] = (unsigned long)&send_arg;
    local_irq_enable();
    check("event-batch", "6.1", HYPERVISOR_multicall(batch, NR_EVENT), 0,
          "HYPERVISOR_multicall with an EVTCHNOP_send to the caller at entry %d", SEND_AT);
    check("event-delivered-once", "6.1", nr_events, 1, "the IPI handler ran once");
    check("event-send-result", "6.1", batch[SEND_AT].result, 0, "the EVTCHNOP_send entry's result");
    check("event-batch-results", "6.1", results_equal(0, NR_EVENT, version), NR_EVENT - 1,
          "the other entries' results are the version");

    check("fault-batch", "6.1", HYPERVISOR_multicall((void *)UNMAPPED_VA, 2), -XEN_EFAULT,
          "HYPERVISOR_multicall of an unmapped list");

    {
        unsigned long pfn = virt_to_pfn(m2p_page);
        unsigned int done = 0;

        for ( i = 0; i < NR_LONG; i++ )
        {
            mmu_reqs[i].ptr = ((uint64_t)pfn_to_mfn(pfn) << PAGE_SHIFT) | MMU_MACHPHYS_UPDATE;
            mmu_reqs[i].val = pfn;
        }
        check("mmu-long", "6.1", HYPERVISOR_mmu_update(mmu_reqs, NR_LONG, &done, DOMID_SELF), 0,
              "HYPERVISOR_mmu_update of %d MMU_MACHPHYS_UPDATE requests", NR_LONG);
        check("mmu-long-done", "6.1", done, NR_LONG, "HYPERVISOR_mmu_update: *pdone");

        done = 0;
        for ( i = 0; i < NR_LONG; i++ )
            mmuext_ops[i].cmd = MMUEXT_TLB_FLUSH_LOCAL;
        check("mmuext-long", "6.1", HYPERVISOR_mmuext_op(mmuext_ops, NR_LONG, &done, DOMID_SELF), 0,
              "HYPERVISOR_mmuext_op of %d MMUEXT_TLB_FLUSH_LOCAL", NR_LONG);
        check("mmuext-long-done", "6.1", done, NR_LONG, "HYPERVISOR_mmuext_op: *pdone");
        check("mmu-preempted-null", "6.1", HYPERVISOR_mmu_update(NULL, MMU_UPDATE_PREEMPTED, NULL, DOMID_SELF),
              DOMID_SELF, "HYPERVISOR_mmu_update(NULL, MMU_UPDATE_PREEMPTED): returns foreigndom");
    }

    test_long_reservation();

    if ( xtf_ok() )
        xtf_success(NULL);
}
