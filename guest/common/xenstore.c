/*
 * The xenstore client (xenstore.h): requests into req[], replies out of
 * rsp[], each index published after the bytes (io/xs_wire.h), the store's
 * event channel notified after each side's update.
 */

#include <arch/barrier.h>
#include <xen/io/xs_wire.h>
#include <xenpy-guest/events.h>
#include <xenpy-guest/lib.h>
#include <xenpy-guest/setup.h>
#include <xenpy-guest/xenstore.h>

/* Bounded wait for the store: SCHEDOP_yield calls. */
#define XS_MAX_YIELDS 100000

static struct xenstore_domain_interface *xs_ring;
static uint32_t xs_req_id;

bool xs_available(void)
{
    long pfn;

    if ( xs_ring )
        return true;
    if ( is_initial_domain() || !start_info->store_mfn )
        return false;
    pfn = mfn_to_pfn(start_info->store_mfn);
    if ( pfn < 0 )
        return false;
    xs_ring = pfn_to_virt(pfn);
    return true;
}

void xs_reconnect(void)
{
    xs_ring = NULL;
}

static bool xs_put(const void *data, size_t len)
{
    const char *p = data;

    for ( unsigned int yields = 0; len; )
    {
        XENSTORE_RING_IDX cons = READ_ONCE(xs_ring->req_cons), prod = xs_ring->req_prod;
        size_t room = XENSTORE_RING_SIZE - (prod - cons);

        if ( !room )
        {
            (void)evtchn_send(start_info->store_evtchn);
            if ( ++yields > XS_MAX_YIELDS )
                return false;
            (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
            continue;
        }
        mb();
        for ( ; room && len; room--, len--, prod++ )
            xs_ring->req[MASK_XENSTORE_IDX(prod)] = *p++;
        wmb();
        WRITE_ONCE(xs_ring->req_prod, prod);
    }
    return true;
}

/* Copy len reply bytes to out (NULL: skip them), waiting for them. */
static bool xs_get(void *out, size_t len)
{
    char *p = out;

    for ( unsigned int yields = 0; len; )
    {
        XENSTORE_RING_IDX cons = xs_ring->rsp_cons, prod = READ_ONCE(xs_ring->rsp_prod);

        if ( prod == cons )
        {
            if ( ++yields > XS_MAX_YIELDS )
                return false;
            (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
            continue;
        }
        rmb();
        for ( ; prod != cons && len; len--, cons++ )
        {
            char c = xs_ring->rsp[MASK_XENSTORE_IDX(cons)];

            if ( p )
                *p++ = c;
        }
        mb();
        WRITE_ONCE(xs_ring->rsp_cons, cons);
        (void)evtchn_send(start_info->store_evtchn);
    }
    return true;
}

static long xs_errno(const char *name)
{
    static const struct { const char *name; long err; } errors[] = {
        { "EINVAL", XEN_EINVAL }, { "EACCES", XEN_EACCES }, { "EEXIST", XEN_EEXIST },
        { "EISDIR", XEN_EISDIR }, { "ENOENT", XEN_ENOENT }, { "ENOMEM", XEN_ENOMEM },
        { "ENOSPC", XEN_ENOSPC }, { "EIO", XEN_EIO }, { "ENOTEMPTY", XEN_ENOTEMPTY },
        { "ENOSYS", XEN_ENOSYS }, { "EROFS", XEN_EROFS }, { "EBUSY", XEN_EBUSY },
        { "EAGAIN", XEN_EAGAIN }, { "EISCONN", XEN_EISCONN }, { "E2BIG", XEN_E2BIG },
        { "EPERM", XEN_EPERM },
    };

    for ( unsigned int i = 0; i < ARRAY_SIZE(errors); i++ )
        if ( !strcmp(name, errors[i].name) )
            return -errors[i].err;
    return -XEN_EIO;
}

/*
 * One request of type with payload part1 and its NUL, then part2 without
 * one (a write's value), and its reply's payload into buf. Watch events and
 * stale replies that arrive first are skipped.
 */
static long xs_talk(uint32_t type, const char *part1, const char *part2, char *buf, size_t size)
{
    struct xsd_sockmsg msg = { .type = type, .req_id = ++xs_req_id };
    size_t len1 = strlen(part1) + 1, len2 = part2 ? strlen(part2) : 0;
    char err[16];

    if ( !xs_available() )
        return -XEN_ENODEV;
    msg.len = len1 + len2;
    if ( msg.len > XENSTORE_PAYLOAD_MAX )
        return -XEN_E2BIG;
    if ( !xs_put(&msg, sizeof(msg)) || !xs_put(part1, len1) || (len2 && !xs_put(part2, len2)) )
        return -XEN_EIO;
    (void)evtchn_send(start_info->store_evtchn);

    for ( ;; )
    {
        struct xsd_sockmsg reply;
        size_t keep;

        if ( !xs_get(&reply, sizeof(reply)) || reply.len > XENSTORE_PAYLOAD_MAX )
            return -XEN_EIO;
        if ( reply.type == XS_WATCH_EVENT || reply.req_id != msg.req_id )
        {
            if ( !xs_get(NULL, reply.len) )
                return -XEN_EIO;
            continue;
        }
        if ( reply.type == XS_ERROR )
        {
            keep = reply.len < sizeof(err) ? reply.len : sizeof(err) - 1;
            if ( !xs_get(err, keep) || !xs_get(NULL, reply.len - keep) )
                return -XEN_EIO;
            err[keep] = '\0';
            return xs_errno(err);
        }
        if ( reply.type != type )
            return -XEN_EIO;
        keep = reply.len < size ? reply.len : (size ? size - 1 : 0);
        if ( !xs_get(buf, keep) || !xs_get(NULL, reply.len - keep) )
            return -XEN_EIO;
        if ( size )
            buf[keep] = '\0';
        return reply.len;
    }
}

long xs_read(const char *path, char *buf, size_t size)
{
    return xs_talk(XS_READ, path, NULL, buf, size);
}

long xs_write(const char *path, const char *value)
{
    char ok[4];
    long rc = xs_talk(XS_WRITE, path, value, ok, sizeof(ok));

    return rc < 0 ? rc : 0;
}
