/*
 * Event channels (2-level ABI, spec 3.3 and 3.5) and the virtual interrupt
 * flag (vcpu_info.evtchn_upcall_mask).
 */

#ifndef XENPY_GUEST_EVENTS_H
#define XENPY_GUEST_EVENTS_H

#include <stdbool.h>

#include <arch/barrier.h>
#include <xenpy-guest/compiler.h>
#include <xenpy-guest/hypervisor.h>
#include <xenpy-guest/smp.h>

/* Called from the event upcall, with events masked, on the port's vCPU. */
typedef void (*evtchn_handler_t)(evtchn_port_t port, void *data);

/*
 * Register the event callback (CALLBACKF_mask_events), the failsafe and the
 * syscall callbacks with CALLBACKOP_register, or with
 * HYPERVISOR_set_callbacks when use_set_callbacks is true; mask every port.
 * Events stay masked on this vCPU.
 */
void events_init(bool use_set_callbacks);

/*
 * Bind a VIRQ (EVTCHNOP_bind_virq) or an IPI (EVTCHNOP_bind_ipi) to vCPU
 * vcpu, install handler, and unmask the port. Returns the port (> 0) or a
 * negative errno.
 */
long evtchn_bind_virq(unsigned int virq, unsigned int vcpu,
                      evtchn_handler_t handler, void *data);
long evtchn_bind_ipi(unsigned int vcpu, evtchn_handler_t handler, void *data);

/* Install a handler for a port bound elsewhere; events go to vCPU vcpu. */
void evtchn_set_handler(evtchn_port_t port, unsigned int vcpu,
                        evtchn_handler_t handler, void *data);

/* EVTCHNOP_unmask (re-raises a pending event), EVTCHNOP_send, EVTCHNOP_close. */
int evtchn_unmask(evtchn_port_t port);
int evtchn_send(evtchn_port_t port);
int evtchn_close(evtchn_port_t port);

/* Set the port's bit in shared_info.evtchn_mask (no hypercall exists for it). */
void evtchn_mask(evtchn_port_t port);

/* Number of events with no handler, or for another vCPU, seen by the upcall. */
extern unsigned long evtchn_nr_spurious;

/*
 * Make Xen deliver a pending upcall now: any hypercall returns through
 * Xen's event check (spec 3.3, test_all_events). As Linux does
 * (xen_force_evtchn_callback), use the cheapest: XENVER_version.
 */
static inline void force_evtchn_callback(void)
{
    (void)HYPERVISOR_xen_version(XENVER_version, NULL);
}

static inline void local_irq_disable(void)
{
    WRITE_ONCE(this_vcpu_info()->evtchn_upcall_mask, 1);
    barrier();
}

/*
 * Unmask, then look for an upcall that became pending while masked: Xen
 * only delivers upcalls on its way back to the guest, so force one.
 */
static inline void local_irq_enable(void)
{
    vcpu_info_t *vi = this_vcpu_info();

    barrier();
    WRITE_ONCE(vi->evtchn_upcall_mask, 0);
    barrier();
    if ( unlikely(READ_ONCE(vi->evtchn_upcall_pending)) )
        force_evtchn_callback();
}

static inline unsigned long local_irq_save(void)
{
    vcpu_info_t *vi = this_vcpu_info();
    unsigned long flags = READ_ONCE(vi->evtchn_upcall_mask);

    WRITE_ONCE(vi->evtchn_upcall_mask, 1);
    barrier();

    return flags;
}

static inline void local_irq_restore(unsigned long flags)
{
    if ( flags )
        local_irq_disable();
    else
        local_irq_enable();
}

static inline bool irqs_disabled(void)
{
    return READ_ONCE(this_vcpu_info()->evtchn_upcall_mask) != 0;
}

/*
 * Wait for an event with events masked: SCHEDOP_block unmasks events,
 * returns at once if an upcall is pending (spec 3.4), and the upcall runs
 * on the way back. Events are masked again on return.
 */
void block_with_events_masked(void);

#endif /* XENPY_GUEST_EVENTS_H */
