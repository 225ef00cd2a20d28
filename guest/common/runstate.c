/*
 * Reading a registered runstate area (runstate.h).
 */

#include <arch/barrier.h>
#include <xenpy-guest/runstate.h>

void runstate_read_area(const void *p, vcpu_runstate_info_t *out)
{
    const volatile vcpu_runstate_info_t *a = p;
    uint64_t entry;

    do {
        do {
            entry = a->state_entry_time;
        } while ( entry & XEN_RUNSTATE_UPDATE );
        rmb();
        out->state = a->state;
        for ( unsigned int i = 0; i < 4; i++ )
            out->time[i] = a->time[i];
        out->state_entry_time = entry;
        rmb();
    } while ( a->state_entry_time != entry );
}
