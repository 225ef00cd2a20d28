/*
 * Reading a registered runstate area (spec 2.4).
 */

#ifndef XENPY_GUEST_RUNSTATE_H
#define XENPY_GUEST_RUNSTATE_H

#include <xenpy-guest/hypervisor.h>

/*
 * Copy the area at p with the guest reader protocol: wait while
 * XEN_RUNSTATE_UPDATE is set in state_entry_time, copy, and retry if
 * state_entry_time moved meanwhile.
 */
void runstate_read_area(const void *p, vcpu_runstate_info_t *out);

#endif /* XENPY_GUEST_RUNSTATE_H */
