/*
 * Suspend for the toolstack's save, migration and checkpoint, as a PV
 * kernel does it (spec 3.4, SCHEDOP_shutdown; Linux's xen_suspend).
 */

#ifndef XENPY_GUEST_SUSPEND_H
#define XENPY_GUEST_SUSPEND_H

#include <xenpy-guest/hypervisor.h>

/* Values of suspend_domain() besides -errno. */
#define SUSPEND_RESUMED_NEW_DOMAIN 0
#define SUSPEND_CANCELLED          1

/*
 * Suspend the domain: publish the p2m as a frame tree in
 * shared_info.arch (the saver reads it), turn start_info's xenstore and
 * console frame numbers into pfns, unmap shared_info, and issue
 * SCHEDOP_shutdown(SHUTDOWN_suspend) with start_info's mfn in rdx. Call it
 * on vCPU 0 with the other vCPUs idle and no foreign or grant mapping
 * left.
 *
 * Returns SUSPEND_RESUMED_NEW_DOMAIN once restored into a new domain: the
 * runtime has remapped shared_info, republished the p2m, reconnected the
 * console and xenstore rings and forgotten every event-channel binding,
 * VIRQ_TIMER port and registered vcpu_info (none survive into a new
 * domain); a test rebinds what it needs. Returns SUSPEND_CANCELLED when the
 * toolstack resumed the same domain (a checkpoint, or a failed save):
 * everything is as before the call. -XEN_E2BIG: the p2m cannot be published.
 */
long suspend_domain(void);

/*
 * Publish the p2m as a frame tree in shared_info.arch (max_pfn,
 * pfn_to_mfn_frame_list_list), as a live migration's saver reads it while the
 * guest runs: kernel_main() does it at boot (in a domU). 0, or -XEN_E2BIG
 * beyond 2 GiB of memory.
 */
int p2m_publish_frame_tree(void);

#endif /* XENPY_GUEST_SUSPEND_H */
