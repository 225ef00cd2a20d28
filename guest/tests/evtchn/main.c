/*
 * evtchn: the EVTCHNOP_* sub-ops of HYPERVISOR_event_channel_op with the
 * 2-level ABI (spec 3.3, 3.5, 6.4, 6.5), on 2 vCPUs.
 *
 * Port numbers are never compared with constants: the domain may already
 * have ports in use (a domU's console and xenstore ports), so every check
 * uses the ports the binds return, and port-valued results are reported as
 * "matches the expected port" (1/0). The domain's own id is not known to
 * the guest either: unbound/interdomain "dom" fields are compared with each
 * other, not with a number.
 *
 * Every port stays masked in shared_info unless a step unmasks it, so no
 * upcall arrives that the step does not expect.
 *
 * EVTCHNOP_status copies the whole guest structure in, sets status, vcpu
 * and the union member of the state, and copies it all back: the test
 * fills the structure with 0xa5 first and checks the bytes Xen does not
 * write (the padding after dom, the rest of the union).
 */

#include <xenpy-guest.h>

const char test_title[] = "Event channels: EVTCHNOP_* on 2 vCPUs";

#define BAD_PORT   4096U                     /* EVTCHN_2L_NR_CHANNELS: beyond the 2-level ABI */
/* Xen-internal (#ifdef __XEN__ in public/event_channel.h): a preempted reset's continuation. */
#define EVTCHNOP_reset_cont 14
#define BAD_VCPU   1000U
#define NO_DOMAIN  0x7fefU                   /* DOMID_FIRST_RESERVED - 1 */
#define PATTERN    0xa5
#define PATTERN64  0xa5a5a5a5a5a5a5a5UL
#define WAIT_NS    (2 * NSEC_PER_SEC)

/* The raw view of struct evtchn_status (24 bytes). */
union status_bytes {
    struct evtchn_status st;
    uint8_t b[sizeof(struct evtchn_status)];
};

static long evtchn_op(int cmd, void *arg)
{
    return HYPERVISOR_event_channel_op(cmd, arg);
}

/* EVTCHNOP_status of dom/port into *s, the structure filled with PATTERN first. */
static long status_of(domid_t dom, evtchn_port_t port, union status_bytes *s)
{
    memset(s, PATTERN, sizeof(*s));
    s->st.dom = dom;
    s->st.port = port;

    return evtchn_op(EVTCHNOP_status, &s->st);
}

static uint64_t union_u64(const union status_bytes *s)
{
    uint64_t u;

    memcpy(&u, &s->st.u, sizeof(u));
    return u;
}

/* The two padding bytes after .dom (offset 2). */
static unsigned int pad_after_dom(const union status_bytes *s)
{
    return s->b[2] | (s->b[3] << 8);
}

static long bind_virq_raw(uint32_t virq, uint32_t vcpu, evtchn_port_t *port)
{
    struct evtchn_bind_virq b = { .virq = virq, .vcpu = vcpu };
    long rc = evtchn_op(EVTCHNOP_bind_virq, &b);

    if ( port )
        *port = b.port;
    return rc;
}

static long bind_ipi_raw(uint32_t vcpu, evtchn_port_t *port)
{
    struct evtchn_bind_ipi b = { .vcpu = vcpu };
    long rc = evtchn_op(EVTCHNOP_bind_ipi, &b);

    if ( port )
        *port = b.port;
    return rc;
}

static long bind_vcpu(evtchn_port_t port, uint32_t vcpu)
{
    struct evtchn_bind_vcpu b = { .port = port, .vcpu = vcpu };

    return evtchn_op(EVTCHNOP_bind_vcpu, &b);
}

static long close_raw(evtchn_port_t port)
{
    struct evtchn_close c = { .port = port };

    return evtchn_op(EVTCHNOP_close, &c);
}

static bool pending(evtchn_port_t port)
{
    return test_bit(port, shared_info->evtchn_pending);
}

static void clear_pending(evtchn_port_t port)
{
    clear_bit(port, shared_info->evtchn_pending);
}

static bool selector_set(unsigned int cpu, evtchn_port_t port)
{
    return (READ_ONCE(vcpu_info_of(cpu)->evtchn_pending_sel) >>
            (port / BITS_PER_LONG)) & 1;
}

/* ---------------------------------------------------------------- vCPU 1 */

static volatile long ap_timer_rc = 1;
static volatile long ap_timer_again_rc = 1;
static volatile evtchn_port_t ap_timer_port;

/* vCPU 1 binds its own VIRQ_TIMER (left masked). */
static void ap_fn(unsigned int vcpu_id)
{
    evtchn_port_t port = 0;
    long rc = bind_virq_raw(VIRQ_TIMER, vcpu_id, &port);

    ap_timer_port = port;
    ap_timer_again_rc = bind_virq_raw(VIRQ_TIMER, vcpu_id, NULL);
    wmb();
    ap_timer_rc = rc;
}

/* Handlers record the vCPU they ran on. */
static volatile unsigned int nr_handled;
static volatile unsigned int handled_on;
static volatile evtchn_port_t handled_port;

static void record_handler(evtchn_port_t port, void *data)
{
    (void)data;
    handled_port = port;
    handled_on = smp_processor_id();
    nr_handled++;
}

static void reset_handled(void)
{
    nr_handled = 0;
    handled_on = ~0U;
    handled_port = 0;
}

/* Wait (yielding) until a handler ran, up to WAIT_NS of system time. */
static void wait_handled(unsigned int n)
{
    uint64_t end = now_ns() + WAIT_NS;

    while ( READ_ONCE(nr_handled) < n && now_ns() < end )
        (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
}

/* ---------------------------------------------------------------- steps */

static void scan_ports(void)
{
    union status_bytes s;
    unsigned int nr = 0;

    for ( evtchn_port_t p = 1; p < 64; p++ )
        if ( status_of(DOMID_SELF, p, &s) == 0 && s.st.status != EVTCHNSTAT_closed )
        {
            printk("port %u in use at start: status %u vcpu %u\n", p, s.st.status, s.st.vcpu);
            nr++;
        }
    printk("%u port(s) in use at start\n", nr);
}

static evtchn_port_t test_virq(void)
{
    evtchn_port_t p0 = 0;
    union status_bytes s;
    long rc;

    rc = bind_virq_raw(VIRQ_TIMER, 0, &p0);
    check("virq-timer-v0", "3.5", rc, 0, "EVTCHNOP_bind_virq VIRQ_TIMER on vCPU 0");
    check("virq-timer-v1", "3.5", ap_timer_rc, 0,
          "EVTCHNOP_bind_virq VIRQ_TIMER on vCPU 1, by vCPU 1");
    check("virq-timer-ports-differ", "3.5", ap_timer_port != p0 && ap_timer_port, 1,
          "EVTCHNOP_bind_virq: each vCPU's VIRQ_TIMER has its own port");
    check("virq-timer-eexist-v0", "3.5", bind_virq_raw(VIRQ_TIMER, 0, NULL), -XEN_EEXIST,
          "EVTCHNOP_bind_virq VIRQ_TIMER again on vCPU 0");
    check("virq-timer-eexist-v1", "3.5", ap_timer_again_rc, -XEN_EEXIST,
          "EVTCHNOP_bind_virq VIRQ_TIMER again on vCPU 1, by vCPU 1");
    check("virq-timer-eexist-v1-remote", "3.5", bind_virq_raw(VIRQ_TIMER, 1, NULL), -XEN_EEXIST,
          "EVTCHNOP_bind_virq VIRQ_TIMER again on vCPU 1, by vCPU 0");
    check("virq-global-vcpu1", "3.5, 6.4", bind_virq_raw(VIRQ_DOM_EXC, 1, NULL), -XEN_EINVAL,
          "EVTCHNOP_bind_virq global VIRQ_DOM_EXC with vcpu 1");
    check("virq-bad-virq", "3.5, 6.4", bind_virq_raw(NR_VIRQS, 0, NULL), -XEN_EINVAL,
          "EVTCHNOP_bind_virq virq NR_VIRQS");
    check("virq-bad-virq-neg", "3.5", bind_virq_raw(~0U, 0, NULL), -XEN_EINVAL,
          "EVTCHNOP_bind_virq virq -1");
    check("virq-bad-vcpu", "3.5", bind_virq_raw(VIRQ_TIMER, BAD_VCPU, NULL), -XEN_ENOENT,
          "EVTCHNOP_bind_virq VIRQ_TIMER vcpu %u", BAD_VCPU);

    rc = status_of(DOMID_SELF, p0, &s);
    check("status-virq-rc", "3.5", rc, 0, "EVTCHNOP_status of a VIRQ port");
    check("status-virq", "3.5, 6.5", s.st.status, EVTCHNSTAT_virq, "EVTCHNOP_status: status");
    check("status-virq-vcpu", "3.5", s.st.vcpu, 0, "EVTCHNOP_status: vcpu of vCPU 0's VIRQ_TIMER");
    check_hex("status-virq-union", "3.5", union_u64(&s), 0xa5a5a5a500000000UL,
              "EVTCHNOP_status: u.virq = VIRQ_TIMER, rest of the union untouched");
    check_hex("status-virq-pad", "3.5", pad_after_dom(&s), 0xa5a5,
              "EVTCHNOP_status: padding after dom untouched");
    rc = status_of(DOMID_SELF, ap_timer_port, &s);
    check("status-virq-v1", "3.5", rc == 0 && s.st.status == EVTCHNSTAT_virq && s.st.vcpu == 1, 1,
          "EVTCHNOP_status of vCPU 1's VIRQ_TIMER: virq, vcpu 1");

    check("bind-vcpu-virq-pervcpu", "3.5", bind_vcpu(p0, 1), -XEN_EINVAL,
          "EVTCHNOP_bind_vcpu of a per-vCPU VIRQ");
    check("send-virq", "3.5", evtchn_send(p0), -XEN_EINVAL, "EVTCHNOP_send on a VIRQ port");

    check("close-virq-v1", "3.5", close_raw(ap_timer_port), 0, "EVTCHNOP_close of vCPU 1's VIRQ_TIMER");
    check("virq-rebind-after-close", "3.5", bind_virq_raw(VIRQ_TIMER, 1, NULL) == 0, 1,
          "EVTCHNOP_bind_virq VIRQ_TIMER on vCPU 1 after EVTCHNOP_close");

    return p0;
}

static void test_ipi(void)
{
    union status_bytes s;
    long port;

    check("ipi-bad-vcpu", "3.5", bind_ipi_raw(BAD_VCPU, NULL), -XEN_ENOENT,
          "EVTCHNOP_bind_ipi vcpu %u", BAD_VCPU);

    /* An IPI notifying vCPU 1, sent by vCPU 0. */
    reset_handled();
    port = evtchn_bind_ipi(1, record_handler, NULL);
    check("ipi-bind-v1", "3.5", port > 0, 1, "EVTCHNOP_bind_ipi vcpu 1");
    if ( port <= 0 )
        return;

    check("ipi-send", "3.5", evtchn_send(port), 0, "EVTCHNOP_send on an IPI port");
    wait_handled(1);
    check("ipi-received-v1", "3.3, 3.5", nr_handled == 1 && handled_on == 1 && handled_port == port, 1,
          "EVTCHNOP_send: the IPI is handled once, on vCPU 1");

    (void)status_of(DOMID_SELF, port, &s);
    check("status-ipi", "3.5, 6.5", s.st.status, EVTCHNSTAT_ipi, "EVTCHNOP_status of an IPI port");
    check("status-ipi-vcpu", "3.5", s.st.vcpu, 1, "EVTCHNOP_status: vcpu of the IPI");
    check_hex("status-ipi-union", "3.5", union_u64(&s), PATTERN64,
              "EVTCHNOP_status: union untouched for an IPI");
    check("bind-vcpu-ipi", "3.5", bind_vcpu(port, 0), -XEN_EINVAL, "EVTCHNOP_bind_vcpu of an IPI port");

    check("close-ipi", "3.5", evtchn_close(port), 0, "EVTCHNOP_close of an IPI port");
    (void)status_of(DOMID_SELF, port, &s);
    check("status-closed", "3.5, 6.5", s.st.status, EVTCHNSTAT_closed,
          "EVTCHNOP_status of a closed port");
    check("status-closed-vcpu", "3.5", s.st.vcpu, 0, "EVTCHNOP_status: a closed port notifies vCPU 0");
    check_hex("status-closed-union", "3.5", union_u64(&s), PATTERN64,
              "EVTCHNOP_status: union untouched for a closed port");
    check("send-closed", "3.5", evtchn_send(port), -XEN_EINVAL, "EVTCHNOP_send on a closed port");
    check("close-closed", "3.5", close_raw(port), -XEN_EINVAL, "EVTCHNOP_close of a closed port");
}

static void test_bad_ports(void)
{
    union status_bytes s;

    check("send-bad", "3.5", evtchn_send(BAD_PORT), -XEN_EINVAL, "EVTCHNOP_send port %u", BAD_PORT);
    check("send-reserved", "3.5", evtchn_send(0), -XEN_EINVAL, "EVTCHNOP_send port 0 (reserved)");
    check("close-bad", "3.5", close_raw(BAD_PORT), -XEN_EINVAL, "EVTCHNOP_close port %u", BAD_PORT);
    check("close-reserved", "3.5", close_raw(0), -XEN_EINVAL, "EVTCHNOP_close port 0 (reserved)");
    check("unmask-bad", "3.5", evtchn_unmask(BAD_PORT), -XEN_EINVAL, "EVTCHNOP_unmask port %u", BAD_PORT);
    check("status-bad", "3.5", status_of(DOMID_SELF, BAD_PORT, &s), -XEN_EINVAL,
          "EVTCHNOP_status port %u", BAD_PORT);
    check("status-bad-neg", "3.5", status_of(DOMID_SELF, ~0U, &s), -XEN_EINVAL,
          "EVTCHNOP_status port 0xffffffff");
    check("status-no-domain", "3.5", status_of(NO_DOMAIN, 0, &s), -XEN_ESRCH,
          "EVTCHNOP_status of domain %#x", NO_DOMAIN);
    check("bind-vcpu-bad-port", "3.5", bind_vcpu(BAD_PORT, 0), -XEN_EINVAL,
          "EVTCHNOP_bind_vcpu port %u", BAD_PORT);
    check("bind-vcpu-bad-vcpu", "3.5", bind_vcpu(0, BAD_VCPU), -XEN_ENOENT,
          "EVTCHNOP_bind_vcpu vcpu %u", BAD_VCPU);

    (void)status_of(DOMID_SELF, 0, &s);
    check("status-port0", "3.5", s.st.status == EVTCHNSTAT_closed && s.st.vcpu == 0, 1,
          "EVTCHNOP_status of port 0: closed, vcpu 0");
    check_hex("status-port0-union", "3.5", union_u64(&s), PATTERN64,
              "EVTCHNOP_status: union untouched for port 0");
}

static void test_interdomain(void)
{
    struct evtchn_alloc_unbound a = { .dom = DOMID_SELF, .remote_dom = DOMID_SELF };
    struct evtchn_bind_interdomain bi = { .remote_dom = DOMID_SELF };
    union status_bytes s;
    evtchn_port_t u, l, ipi;
    unsigned int self_dom;
    long rc;

    check("alloc-unbound-no-domain", "3.5",
          evtchn_op(EVTCHNOP_alloc_unbound,
                    &(struct evtchn_alloc_unbound){ .dom = NO_DOMAIN, .remote_dom = DOMID_SELF }),
          -XEN_ESRCH, "EVTCHNOP_alloc_unbound in domain %#x", NO_DOMAIN);

    rc = evtchn_op(EVTCHNOP_alloc_unbound, &a);
    check("alloc-unbound", "3.5", rc, 0, "EVTCHNOP_alloc_unbound dom DOMID_SELF remote DOMID_SELF");
    if ( rc )
        return;
    u = a.port;

    rc = status_of(DOMID_SELF, u, &s);
    check("status-unbound", "3.5, 6.5", s.st.status, EVTCHNSTAT_unbound, "EVTCHNOP_status of an unbound port");
    check("status-unbound-vcpu", "3.5", s.st.vcpu, 0, "EVTCHNOP_status: vcpu of the unbound port");
    check("status-unbound-dom-self", "3.5", s.st.u.unbound.dom != DOMID_SELF, 1,
          "EVTCHNOP_status: u.unbound.dom is the caller's id, not DOMID_SELF");
    check_hex("status-unbound-union-rest", "3.5", union_u64(&s) >> 16, PATTERN64 >> 16,
              "EVTCHNOP_status: union bytes after u.unbound.dom untouched");
    self_dom = s.st.u.unbound.dom;

    /* Not unbound for us: an IPI port. */
    if ( bind_ipi_raw(0, &ipi) == 0 )
    {
        bi.remote_port = ipi;
        check("bind-interdomain-not-unbound", "3.5", evtchn_op(EVTCHNOP_bind_interdomain, &bi),
              -XEN_EINVAL, "EVTCHNOP_bind_interdomain to an IPI port");
        (void)close_raw(ipi);
    }
    bi.remote_dom = NO_DOMAIN;
    bi.remote_port = u;
    check("bind-interdomain-no-domain", "3.5", evtchn_op(EVTCHNOP_bind_interdomain, &bi), -XEN_ESRCH,
          "EVTCHNOP_bind_interdomain to domain %#x", NO_DOMAIN);

    /* Loopback: bind to our own unbound port. */
    bi.remote_dom = DOMID_SELF;
    bi.remote_port = u;
    rc = evtchn_op(EVTCHNOP_bind_interdomain, &bi);
    check("bind-interdomain", "3.5", rc, 0, "EVTCHNOP_bind_interdomain DOMID_SELF to the unbound port");
    if ( rc )
        return;
    l = bi.local_port;
    check("bind-interdomain-pending", "3.5", pending(l), 1,
          "EVTCHNOP_bind_interdomain sets the new local port pending");
    check("bind-interdomain-remote-not-pending", "3.5", pending(u), 0,
          "EVTCHNOP_bind_interdomain leaves the remote port's pending bit");

    (void)status_of(DOMID_SELF, l, &s);
    check("status-interdomain", "3.5, 6.5", s.st.status, EVTCHNSTAT_interdomain,
          "EVTCHNOP_status of the local end");
    check("status-interdomain-peer", "3.5",
          s.st.u.interdomain.dom == self_dom && s.st.u.interdomain.port == u, 1,
          "EVTCHNOP_status: u.interdomain is (own domain, the unbound port)");
    check_hex("status-interdomain-pad", "3.5", (union_u64(&s) >> 16) & 0xffff, 0xa5a5,
              "EVTCHNOP_status: union padding after u.interdomain.dom untouched");
    (void)status_of(DOMID_SELF, u, &s);
    check("status-interdomain-remote", "3.5",
          s.st.status == EVTCHNSTAT_interdomain && s.st.u.interdomain.dom == self_dom &&
          s.st.u.interdomain.port == l, 1,
          "EVTCHNOP_status of the remote end: interdomain, (own domain, the local port)");

    /* A send on one end arrives on the other (both masked: no upcall). */
    clear_pending(l);
    check("send-interdomain", "3.5", evtchn_send(l), 0, "EVTCHNOP_send on the local end");
    check("send-interdomain-arrives", "3.5", pending(u) && !pending(l), 1,
          "EVTCHNOP_send: the peer (remote end) becomes pending, not the sender");
    clear_pending(u);
    (void)evtchn_send(u);
    check("send-interdomain-back", "3.5", pending(l) && !pending(u), 1,
          "EVTCHNOP_send on the remote end: the local end becomes pending");
    clear_pending(l);

    /* bind_vcpu moves the local end to vCPU 1: an unmask now notifies vCPU 1. */
    check("bind-vcpu-interdomain", "3.5", bind_vcpu(l, 1), 0, "EVTCHNOP_bind_vcpu of an interdomain port to vCPU 1");
    (void)status_of(DOMID_SELF, l, &s);
    check("bind-vcpu-interdomain-status", "3.5", s.st.vcpu, 1,
          "EVTCHNOP_status after EVTCHNOP_bind_vcpu: vcpu 1");
    reset_handled();
    evtchn_set_handler(l, 1, record_handler, NULL);
    (void)evtchn_send(u);
    check("bind-vcpu-masked-send", "3.5", pending(l) && nr_handled == 0, 1,
          "EVTCHNOP_send to the masked moved port: pending, not handled");
    check("bind-vcpu-unmask", "3.5", evtchn_unmask(l), 0, "EVTCHNOP_unmask of the moved port");
    wait_handled(1);
    check("bind-vcpu-handled-v1", "3.3, 3.5", nr_handled == 1 && handled_on == 1 && handled_port == l, 1,
          "EVTCHNOP_unmask of the moved port: handled once, on vCPU 1");

    /* Closing one end makes the other unbound (for our own domain). */
    check("close-interdomain", "3.5", evtchn_close(l), 0, "EVTCHNOP_close of the local end");
    (void)status_of(DOMID_SELF, u, &s);
    check("close-peer-unbound", "3.5", s.st.status, EVTCHNSTAT_unbound,
          "EVTCHNOP_close: the peer becomes unbound");
    check("close-peer-unbound-dom", "3.5", s.st.u.unbound.dom == self_dom, 1,
          "EVTCHNOP_status of the peer: u.unbound.dom is the closer's domain");
    (void)status_of(DOMID_SELF, l, &s);
    check("close-interdomain-status", "3.5", s.st.status == EVTCHNSTAT_closed && s.st.vcpu == 0, 1,
          "EVTCHNOP_status of the closed end: closed, vcpu 0");
    check("send-unbound", "3.5", evtchn_send(u), 0, "EVTCHNOP_send on an unbound port (dropped)");
    check("send-unbound-dropped", "3.5", pending(u), 0, "EVTCHNOP_send on an unbound port sets nothing");
    check("close-unbound", "3.5", close_raw(u), 0, "EVTCHNOP_close of an unbound port");
}

static void test_mask(void)
{
    vcpu_info_t *vi = this_vcpu_info();
    long port;

    reset_handled();
    port = evtchn_bind_ipi(0, record_handler, NULL);
    check("mask-bind-ipi", "3.5", port > 0, 1, "EVTCHNOP_bind_ipi vcpu 0");
    if ( port <= 0 )
        return;

    /* Events enabled on vCPU 0, the port masked: pending, no upcall. */
    evtchn_mask(port);
    check("mask-send", "3.5", evtchn_send(port), 0, "EVTCHNOP_send on a masked IPI port");
    check("mask-send-pending", "3.3", pending(port), 1, "EVTCHNOP_send to a masked port sets it pending");
    check("mask-send-no-upcall", "3.3",
          nr_handled == 0 && !READ_ONCE(vi->evtchn_upcall_pending) && !selector_set(0, port), 1,
          "EVTCHNOP_send to a masked port: no selector bit, no upcall");

    /* Unmask with events masked: the upcall is re-raised, delivered on enable. */
    local_irq_disable();
    check("unmask-masked-pending", "3.5", evtchn_unmask(port), 0, "EVTCHNOP_unmask of a masked pending port");
    check("unmask-reraises", "3.3, 3.5",
          READ_ONCE(vi->evtchn_upcall_pending) && selector_set(0, port) && nr_handled == 0, 1,
          "EVTCHNOP_unmask with the selector clear: selector bit and upcall_pending set");
    local_irq_enable();
    check("unmask-delivered", "3.3", nr_handled == 1 && handled_port == port && !pending(port), 1,
          "EVTCHNOP_unmask: the re-raised upcall is handled once");

    /* Unmask of an unmasked port that is pending with the selector set: nothing new. */
    local_irq_disable();
    (void)evtchn_send(port);
    check("unmask-unmasked", "3.5", evtchn_unmask(port), 0, "EVTCHNOP_unmask of an unmasked port");
    local_irq_enable();
    check("unmask-unmasked-once", "3.3", nr_handled, 2,
          "EVTCHNOP_send then EVTCHNOP_unmask of an unmasked port: one more event");

    (void)evtchn_close(port);
}

static void test_fifo_ops(evtchn_port_t valid_port)
{
    struct evtchn_set_priority sp = { .port = valid_port, .priority = 7 };
    struct evtchn_expand_array ea = { .array_gfn = 0 };
    struct evtchn_init_control ic = { .control_gfn = 0, .offset = 0, .vcpu = BAD_VCPU };

    check("set-priority-2l", "3.5", evtchn_op(EVTCHNOP_set_priority, &sp), -XEN_ENOSYS,
          "EVTCHNOP_set_priority of a valid port on a 2-level domain");
    sp.port = BAD_PORT;
    check("set-priority-bad-port", "3.5", evtchn_op(EVTCHNOP_set_priority, &sp), -XEN_EINVAL,
          "EVTCHNOP_set_priority port %u", BAD_PORT);
    check("expand-array-2l", "3.5", evtchn_op(EVTCHNOP_expand_array, &ea), -XEN_EOPNOTSUPP,
          "EVTCHNOP_expand_array on a 2-level domain");
    check("init-control-bad-vcpu", "3.5", evtchn_op(EVTCHNOP_init_control, &ic), -XEN_ENOENT,
          "EVTCHNOP_init_control vcpu %u", BAD_VCPU);
    ic.vcpu = 0;
    ic.offset = 4095;
    check("init-control-offset-past-page", "3.5", evtchn_op(EVTCHNOP_init_control, &ic), -XEN_EINVAL,
          "EVTCHNOP_init_control offset 4095 (control block crosses the page)");
    ic.offset = 4;
    check("init-control-offset-misaligned", "3.5", evtchn_op(EVTCHNOP_init_control, &ic), -XEN_EINVAL,
          "EVTCHNOP_init_control offset 4 (not 8-byte aligned)");
    ic.offset = 0;
    ic.control_gfn = ~1UL;
    check("init-control-bad-gfn", "3.5", evtchn_op(EVTCHNOP_init_control, &ic), -XEN_EINVAL,
          "EVTCHNOP_init_control of control_gfn 2^64 - 2 (no such frame)");
    ic.control_gfn = start_info->pt_base ? virt_to_mfn((void *)start_info->pt_base) : 0;
    check("init-control-page-table-gfn", "3.5", evtchn_op(EVTCHNOP_init_control, &ic), -XEN_EINVAL,
          "EVTCHNOP_init_control of the L4 page table's frame (not typeable writable)");
    check("init-control-no-writeback", "3.5", ic.link_bits, 0,
          "EVTCHNOP_init_control failing: link_bits not written back");
}

static void test_reset(evtchn_port_t virq_port)
{
    struct evtchn_reset r = { .dom = DOMID_SELF };
    /* No reset in progress: -EBUSY; a release without reset_cont: -ENOSYS. */
    long cont_idle = test_profile()->evtchn_reset_cont ? -XEN_EBUSY : -XEN_ENOSYS;
    union status_bytes s;
    evtchn_port_t ipi = 0;

    (void)bind_ipi_raw(0, &ipi);
    check("reset-cont-idle", "3.5", evtchn_op(EVTCHNOP_reset_cont, &r), cont_idle,
          "EVTCHNOP_reset_cont with no reset in progress");
    (void)status_of(DOMID_SELF, ipi, &s);
    check("reset-cont-closes-nothing", "3.5", s.st.status, EVTCHNSTAT_ipi,
          "EVTCHNOP_reset_cont refused: the IPI port stays bound");
    r.dom = NO_DOMAIN;
    check("reset-no-domain", "3.5", evtchn_op(EVTCHNOP_reset, &r), -XEN_ESRCH,
          "EVTCHNOP_reset of domain %#x", NO_DOMAIN);

    r.dom = DOMID_SELF;
    check("reset-self", "3.5", evtchn_op(EVTCHNOP_reset, &r), 0, "EVTCHNOP_reset DOMID_SELF");
    (void)status_of(DOMID_SELF, ipi, &s);
    check("reset-closed-ipi", "3.5", s.st.status, EVTCHNSTAT_closed, "EVTCHNOP_reset closed the IPI port");
    (void)status_of(DOMID_SELF, virq_port, &s);
    check("reset-closed-virq", "3.5", s.st.status, EVTCHNSTAT_closed, "EVTCHNOP_reset closed the VIRQ port");
    check("reset-virq-rebind", "3.5", bind_virq_raw(VIRQ_TIMER, 0, NULL), 0,
          "EVTCHNOP_bind_virq VIRQ_TIMER after EVTCHNOP_reset");
    check("reset-cont-after", "3.5", evtchn_op(EVTCHNOP_reset_cont, &r), cont_idle,
          "EVTCHNOP_reset_cont after a completed reset");
}

void test_main(void)
{
    evtchn_port_t virq_port;
    int rc;

    (void)test_profile();

    if ( smp_nr_vcpus() < 2 )
    {
        xtf_skip("Skip: needs 2 vCPUs\n");
        return;
    }
    scan_ports();

    rc = smp_bring_up(2, ap_fn);
    if ( rc )
    {
        xtf_error("Error: smp_bring_up: %d\n", rc);
        return;
    }
    while ( READ_ONCE(ap_timer_rc) == 1 )
        (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    rmb();

    virq_port = test_virq();
    test_ipi();
    test_bad_ports();
    test_interdomain();
    test_mask();
    test_fifo_ops(virq_port);
    test_reset(virq_port);

    if ( evtchn_nr_spurious )
        printk("%lu spurious event(s)\n", evtchn_nr_spurious);

    if ( xtf_ok() )
        xtf_success(NULL);
}
