/*
 * Suspend and resume (suspend.h).
 *
 * The saver finds the guest's p2m through shared_info.arch: max_pfn and
 * the frame-list-list, a page of mfns of frame-list pages, each a page of
 * mfns of the p2m's own pages (libxc's map_p2m_tree). Restore writes the
 * new domain's p2m into those same p2m pages and zeroes the frame-list-list
 * field, so it is published again after a resume.
 */

#include <xen/sched.h>
#include <xenpy-guest/console.h>
#include <xenpy-guest/events.h>
#include <xenpy-guest/lib.h>
#include <xenpy-guest/setup.h>
#include <xenpy-guest/smp.h>
#include <xenpy-guest/suspend.h>
#include <xenpy-guest/time.h>
#include <xenpy-guest/xenstore.h>

/* Frame numbers per page. */
#define FPP (PAGE_SIZE / sizeof(xen_pfn_t))
/* Frame-list pages: enough for 2 GiB of guest memory. */
#define NR_FRAME_LISTS 2

static xen_pfn_t frame_list_list[FPP] __page_aligned_bss;
static xen_pfn_t frame_lists[NR_FRAME_LISTS][FPP] __page_aligned_bss;

int p2m_publish_frame_tree(void)
{
    unsigned long nr_pages = start_info->nr_pages;
    unsigned long p2m_frames = (nr_pages + FPP - 1) / FPP;
    const char *p2m = (const char *)p2m_list();

    if ( p2m_frames > NR_FRAME_LISTS * FPP )
        return -XEN_E2BIG;

    for ( unsigned long i = 0; i < p2m_frames; i++ )
        frame_lists[i / FPP][i % FPP] = virt_to_mfn(p2m + i * PAGE_SIZE);
    for ( unsigned long i = 0; i < (p2m_frames + FPP - 1) / FPP; i++ )
        frame_list_list[i] = virt_to_mfn(frame_lists[i]);
    wmb();
    WRITE_ONCE(shared_info->arch.max_pfn, nr_pages);
    WRITE_ONCE(shared_info->arch.pfn_to_mfn_frame_list_list, virt_to_mfn(frame_list_list));
    return 0;
}

/* start_info's ring frames as pfns (to_pfn) or back as mfns. */
static void convert_ring_frames(bool to_pfn)
{
    if ( to_pfn )
    {
        start_info->store_mfn = mfn_to_pfn(start_info->store_mfn);
        start_info->console.domU.mfn = mfn_to_pfn(start_info->console.domU.mfn);
    }
    else
    {
        start_info->store_mfn = pfn_to_mfn(start_info->store_mfn);
        start_info->console.domU.mfn = pfn_to_mfn(start_info->console.domU.mfn);
    }
}

long suspend_domain(void)
{
    struct sched_shutdown shutdown = { .reason = SHUTDOWN_suspend };
    unsigned long flags;
    long rc = p2m_publish_frame_tree();

    if ( rc )
        return rc;
    flags = local_irq_save();
    convert_ring_frames(true);
    /* The saver refuses a page table that maps a frame that is not the guest's own. */
    rc = unmap_shared_info();
    if ( rc )
    {
        convert_ring_frames(false);
        local_irq_restore(flags);
        return rc;
    }

    rc = _hypercall3(__HYPERVISOR_sched_op, SCHEDOP_shutdown, &shutdown, virt_to_mfn(start_info));

    /* The restore rewrote start_info's frames as mfns of the new domain; a cancel left them as pfns. */
    if ( rc != SUSPEND_RESUMED_NEW_DOMAIN )
        convert_ring_frames(false);
    if ( map_shared_info() )
        panic("Remapping shared_info (maddr %#lx) after suspend failed\n", start_info->shared_info);
    if ( rc == SUSPEND_RESUMED_NEW_DOMAIN )
    {
        (void)p2m_publish_frame_tree();   /* it fitted before the suspend */
        events_forget_bindings();
        timer_forget_ports();
        smp_forget_vcpu_info();
        console_init();
        xs_reconnect();
    }
    local_irq_restore(flags);

    return rc;
}
