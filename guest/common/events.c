/*
 * Event channels of the xenpy guest kernel: the 2-level ABI (spec 3.3,
 * 3.5).
 *
 * Xen marks port p pending in shared_info.evtchn_pending, and, when the
 * port is not masked and selector bit p / 64 of the notified vCPU was
 * clear, sets that bit in its vcpu_info.evtchn_pending_sel and raises
 * evtchn_upcall_pending, which causes an upcall when the vCPU's
 * evtchn_upcall_mask is 0.
 *
 * The pending and mask bitmaps are shared by all vCPUs, so the dispatcher
 * only handles the ports bound to the vCPU it runs on (port_vcpu[]); the
 * others stay pending for their own vCPU, as in Linux.
 */

#include <xen/callback.h>
#include <xenpy-guest/events.h>
#include <xenpy-guest/lib.h>
#include <xenpy-guest/traps.h>

#define NR_EVTCHN EVTCHN_2L_NR_CHANNELS

struct port_binding {
    evtchn_handler_t handler;
    void *data;
};

static struct port_binding bindings[NR_EVTCHN];
static uint16_t port_vcpu[NR_EVTCHN];   /* vCPU notified for each port */

unsigned long evtchn_nr_spurious;

static void register_callback(uint16_t type, void (*fn)(void))
{
    struct callback_register cb = {
        .type = type,
        .flags = CALLBACKF_mask_events,
        .address = (xen_callback_t)fn,
    };
    long rc = HYPERVISOR_callback_op(CALLBACKOP_register, &cb);

    if ( rc )
        panic("CALLBACKOP_register type %u failed: %ld\n", type, rc);
}

void events_init(bool use_set_callbacks)
{
    /*
     * Start with every port masked (the builder leaves them unmasked, spec
     * 7.2); binding a port unmasks it.
     */
    for ( unsigned int i = 0; i < ARRAY_SIZE(shared_info->evtchn_mask); i++ )
        WRITE_ONCE(shared_info->evtchn_mask[i], ~0UL);

    if ( use_set_callbacks )
    {
        long rc = HYPERVISOR_set_callbacks((unsigned long)entry_hypervisor_callback,
                                           (unsigned long)entry_failsafe_callback,
                                           (unsigned long)entry_syscall_callback);

        if ( rc )
            panic("HYPERVISOR_set_callbacks failed: %ld\n", rc);
        return;
    }

    register_callback(CALLBACKTYPE_event, entry_hypervisor_callback);
    register_callback(CALLBACKTYPE_failsafe, entry_failsafe_callback);
    register_callback(CALLBACKTYPE_syscall, entry_syscall_callback);
}

void evtchn_set_handler(evtchn_port_t port, unsigned int vcpu,
                        evtchn_handler_t handler, void *data)
{
    ASSERT(port < NR_EVTCHN);

    bindings[port].data = data;
    port_vcpu[port] = vcpu;
    barrier();
    WRITE_ONCE(bindings[port].handler, handler);
}

void events_forget_bindings(void)
{
    for ( unsigned int port = 0; port < NR_EVTCHN; port++ )
        WRITE_ONCE(bindings[port].handler, NULL);
}

void evtchn_mask(evtchn_port_t port)
{
    set_bit(port, shared_info->evtchn_mask);
}

int evtchn_unmask(evtchn_port_t port)
{
    struct evtchn_unmask unmask = { .port = port };

    return HYPERVISOR_event_channel_op(EVTCHNOP_unmask, &unmask);
}

int evtchn_send(evtchn_port_t port)
{
    struct evtchn_send send = { .port = port };

    return HYPERVISOR_event_channel_op(EVTCHNOP_send, &send);
}

int evtchn_close(evtchn_port_t port)
{
    struct evtchn_close close = { .port = port };
    int rc;

    evtchn_mask(port);
    rc = HYPERVISOR_event_channel_op(EVTCHNOP_close, &close);
    if ( !rc && port < NR_EVTCHN )
        WRITE_ONCE(bindings[port].handler, NULL);

    return rc;
}

/* Install the handler, then unmask: EVTCHNOP_unmask re-raises a pending port. */
static long bind_common(evtchn_port_t port, unsigned int vcpu,
                        evtchn_handler_t handler, void *data)
{
    int rc;

    evtchn_set_handler(port, vcpu, handler, data);
    rc = evtchn_unmask(port);
    if ( rc )
        return rc;

    return port;
}

long evtchn_bind_virq(unsigned int virq, unsigned int vcpu,
                      evtchn_handler_t handler, void *data)
{
    struct evtchn_bind_virq bind = { .virq = virq, .vcpu = vcpu };
    int rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_virq, &bind);

    if ( rc )
        return rc;

    return bind_common(bind.port, vcpu, handler, data);
}

long evtchn_bind_ipi(unsigned int vcpu, evtchn_handler_t handler, void *data)
{
    struct evtchn_bind_ipi bind = { .vcpu = vcpu };
    int rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_ipi, &bind);

    if ( rc )
        return rc;

    return bind_common(bind.port, vcpu, handler, data);
}

/*
 * Scan the 2-level bitmaps for the calling vCPU: clear upcall_pending,
 * take the selector with xchg, and for each selected word handle every
 * port that is pending, not masked and bound to this vCPU, clearing its
 * pending bit before calling its handler. Loop while Xen raised
 * upcall_pending again meanwhile.
 */
static void evtchn_do_upcall(void)
{
    unsigned int cpu = smp_processor_id();
    vcpu_info_t *vi = vcpu_info_of(cpu);

    while ( READ_ONCE(vi->evtchn_upcall_pending) )
    {
        unsigned long sel;

        WRITE_ONCE(vi->evtchn_upcall_pending, 0);
        barrier();
        sel = __atomic_exchange_n(&vi->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);

        while ( sel )
        {
            unsigned int word = find_first_set(sel);
            unsigned long pending;

            sel &= sel - 1;
            pending = READ_ONCE(shared_info->evtchn_pending[word]) &
                      ~READ_ONCE(shared_info->evtchn_mask[word]);

            while ( pending )
            {
                unsigned int bit = find_first_set(pending);
                evtchn_port_t port = word * BITS_PER_LONG + bit;
                evtchn_handler_t handler;

                pending &= pending - 1;

                if ( port_vcpu[port] != cpu )
                    continue;

                clear_bit(port, shared_info->evtchn_pending);

                handler = READ_ONCE(bindings[port].handler);
                if ( handler )
                    handler(port, bindings[port].data);
                else
                    __atomic_fetch_add(&evtchn_nr_spurious, 1, __ATOMIC_RELAXED);
            }
        }
    }
}

/* Called by entry_hypervisor_callback (entry.S), events masked. */
void do_hypervisor_callback(struct exception_frame *frame)
{
    (void)frame;
    evtchn_do_upcall();
}

void block_with_events_masked(void)
{
    (void)HYPERVISOR_sched_op(SCHEDOP_block, NULL);
    local_irq_disable();
}
