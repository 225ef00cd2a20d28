/*
 * ipi: an event sent while events are masked waits, and is delivered once
 * when they are unmasked (spec 3.3, 3.5).
 *
 * vCPU 0 binds an IPI channel to itself (EVTCHNOP_bind_ipi) and, with
 * evtchn_upcall_mask set, sends on it twice (EVTCHNOP_send). The port
 * must be pending, upcall_pending raised, and no handler run: events are
 * edge-triggered, so the second send changes nothing. Clearing the mask
 * (local_irq_enable, which forces the pending upcall with a hypercall)
 * must run the handler exactly once and leave nothing pending.
 */

#include <xenpy-guest.h>

const char test_title[] = "Event channels: IPI to self, delivered once on unmask";

static volatile unsigned int nr_handled;
static volatile unsigned int handled_port;

static void ipi_handler(evtchn_port_t port, void *data)
{
    (void)data;
    handled_port = port;
    nr_handled++;
}

void test_main(void)
{
    vcpu_info_t *vi = this_vcpu_info();
    long port;
    int rc;

    local_irq_disable();

    port = evtchn_bind_ipi(0, ipi_handler, NULL);
    if ( port <= 0 )
    {
        local_irq_enable();
        xtf_error("Error: EVTCHNOP_bind_ipi(vCPU 0) failed: %ld\n", port);
        return;
    }
    printk("IPI bound to port %ld\n", port);

    for ( unsigned int i = 0; i < 2; i++ )
    {
        rc = evtchn_send(port);
        if ( rc )
        {
            local_irq_enable();
            xtf_failure("Fail: EVTCHNOP_send(%ld) #%u returned %d\n", port, i + 1, rc);
            return;
        }
    }

    printk("Masked: port pending %d, upcall_pending %u, selector %#lx, handled %u\n",
           test_bit(port, shared_info->evtchn_pending), vi->evtchn_upcall_pending,
           vi->evtchn_pending_sel, nr_handled);

    if ( nr_handled )
        xtf_failure("Fail: handler ran %u time(s) while events were masked\n", nr_handled);
    if ( !test_bit(port, shared_info->evtchn_pending) )
        xtf_failure("Fail: port %ld not pending after EVTCHNOP_send\n", port);
    if ( !vi->evtchn_upcall_pending )
        xtf_failure("Fail: evtchn_upcall_pending not raised\n");
    if ( !(vi->evtchn_pending_sel & (1UL << (port / BITS_PER_LONG))) )
        xtf_failure("Fail: selector bit %ld not set\n", port / BITS_PER_LONG);

    local_irq_enable();

    printk("Unmasked: port pending %d, upcall_pending %u, handled %u (port %u)\n",
           test_bit(port, shared_info->evtchn_pending), vi->evtchn_upcall_pending,
           nr_handled, handled_port);

    if ( nr_handled != 1 )
        xtf_failure("Fail: handler ran %u time(s), expected once\n", nr_handled);
    else if ( handled_port != port )
        xtf_failure("Fail: handler got port %u, expected %ld\n", handled_port, port);
    if ( test_bit(port, shared_info->evtchn_pending) )
        xtf_failure("Fail: port %ld still pending after the upcall\n", port);
    if ( vi->evtchn_upcall_pending )
        xtf_failure("Fail: evtchn_upcall_pending still set after the upcall\n");
    if ( evtchn_nr_spurious )
        xtf_failure("Fail: %lu spurious events\n", evtchn_nr_spurious);

    if ( xtf_ok() )
        xtf_success(NULL);
}
