/*
 * Console output of the xenpy guest kernel.
 *
 * Two paths, and each piece of output takes exactly one of them:
 *   - the PV console ring (Xen's public/io/console.h): bytes go into
 *     out[], out_prod is published after them, and the backend is
 *     notified with EVTCHNOP_send on console.domU.evtchn;
 *   - HYPERVISOR_console_io(CONSOLEIO_write), used when the domain has no
 *     ring (console.domU.mfn == 0) and for panics.
 * A panic first drains the ring, so that the output stays in order.
 */

#include <arch/barrier.h>
#include <xen/io/console.h>
#include <xenpy-guest/console.h>
#include <xenpy-guest/events.h>
#include <xenpy-guest/lib.h>
#include <xenpy-guest/setup.h>
#include <xenpy-guest/spinlock.h>

/* The ring, or NULL when output goes through console_io. */
static struct xencons_interface *ring;
static evtchn_port_t ring_evtchn;

static spinlock_t console_lock = SPINLOCK_UNLOCKED;
static bool console_closed;

/* Bounded wait for the backend: SCHEDOP_yield calls. */
#define FLUSH_MAX_YIELDS 10000

void console_init(void)
{
    xen_pfn_t mfn;
    long pfn;

    /* The console union holds dom0's info_off/info_size in the initial domain. */
    if ( start_info->flags & SIF_INITDOMAIN )
        return;

    mfn = start_info->console.domU.mfn;
    if ( !mfn )
        return;

    pfn = mfn_to_pfn(mfn);
    if ( pfn < 0 )
        return;

    ring = pfn_to_virt(pfn);
    ring_evtchn = start_info->console.domU.evtchn;
}

bool console_has_ring(void)
{
    return ring != NULL;
}

static void ring_notify(void)
{
    if ( hypercall_page_ready )
        (void)evtchn_send(ring_evtchn);
}

/*
 * Copy buf into out[], publishing out_prod after the bytes. When the ring
 * is full, publish what is there, notify, and yield until the backend
 * makes room (there is no dropping: output is never lost).
 */
static void ring_write(const char *buf, size_t len)
{
    XENCONS_RING_IDX prod = READ_ONCE(ring->out_prod);

    while ( len )
    {
        XENCONS_RING_IDX cons = READ_ONCE(ring->out_cons);

        rmb();      /* read out_cons before writing over consumed bytes */

        if ( prod - cons >= sizeof(ring->out) )
        {
            wmb();
            WRITE_ONCE(ring->out_prod, prod);
            ring_notify();
            spin_wait_yield();
            continue;
        }

        ring->out[MASK_XENCONS_IDX(prod, ring->out)] = *buf++;
        prod++;
        len--;
    }

    wmb();          /* the bytes before the index that publishes them */
    WRITE_ONCE(ring->out_prod, prod);
    ring_notify();
}

/* CONSOLEIO_write; returns the hypercall's result. */
static long console_io_write(const char *buf, size_t len)
{
    if ( !hypercall_page_ready )
        return -XEN_ENOSYS;

    return HYPERVISOR_console_io(CONSOLEIO_write, (unsigned int)len, (char *)buf);
}

void console_flush(void)
{
    if ( !ring || !hypercall_page_ready )
        return;

    ring_notify();
    for ( unsigned int i = 0; i < FLUSH_MAX_YIELDS; i++ )
    {
        if ( READ_ONCE(ring->out_cons) == READ_ONCE(ring->out_prod) )
            break;
        (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }
}

/*
 * Mask events while holding the lock: an event handler that prints on
 * this vCPU would otherwise deadlock. Before shared_info is mapped there is
 * no vcpu_info, and only vCPU 0 runs.
 */
static unsigned long console_lock_irqsave(void)
{
    unsigned long flags = shared_info ? local_irq_save() : 1;

    spin_lock(&console_lock);

    return flags;
}

static void console_unlock_irqrestore(unsigned long flags)
{
    spin_unlock(&console_lock);
    if ( shared_info )
        local_irq_restore(flags);
}

void console_write(const char *buf, size_t len)
{
    unsigned long flags = console_lock_irqsave();

    if ( !console_closed )
    {
        if ( ring )
            ring_write(buf, len);
        else
            (void)console_io_write(buf, len);
    }

    console_unlock_irqrestore(flags);
}

void console_write_unlocked(const char *buf, size_t len, bool prefer_console_io)
{
    if ( prefer_console_io || !ring )
    {
        console_flush();
        if ( console_io_write(buf, len) >= 0 || !ring )
            return;
    }

    ring_write(buf, len);
}

void console_write_last(const char *buf, size_t len, bool unlocked)
{
    unsigned long flags;

    if ( unlocked )
    {
        console_closed = true;
        console_write_unlocked(buf, len, true);
        console_flush();
        return;
    }

    flags = console_lock_irqsave();
    if ( !console_closed )
    {
        console_closed = true;
        if ( ring )
            ring_write(buf, len);
        else
            (void)console_io_write(buf, len);
    }
    console_unlock_irqrestore(flags);
    console_flush();
}

void vprintk(const char *fmt, va_list args)
{
    char buf[PRINTK_BUF_SIZE];
    int len = vsnprintf(buf, sizeof(buf), fmt, args);

    if ( len > (int)sizeof(buf) - 1 )
        len = sizeof(buf) - 1;

    console_write(buf, len);
}

void printk(const char *fmt, ...)
{
    va_list args;

    va_start(args, fmt);
    vprintk(fmt, args);
    va_end(args);
}
