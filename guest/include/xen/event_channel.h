/*
 * xenpy guest headers: the argument structures of
 * HYPERVISOR_event_channel_op (Xen's public/event_channel.h).
 *
 * The EVTCHNOP_* command numbers come from the generated
 * <generated/hypercalls.h>.
 */

#ifndef __XEN_PUBLIC_EVENT_CHANNEL_H__
#define __XEN_PUBLIC_EVENT_CHANNEL_H__

#include "xen.h"

/* evtchn_status.status. */
#define EVTCHNSTAT_closed      0  /* not in use */
#define EVTCHNSTAT_unbound     1  /* waiting for a remote domain to bind */
#define EVTCHNSTAT_interdomain 2  /* connected to a remote domain */
#define EVTCHNSTAT_pirq        3  /* bound to a physical IRQ */
#define EVTCHNSTAT_virq        4  /* bound to a VIRQ */
#define EVTCHNSTAT_ipi         5  /* bound for inter-vCPU notification */

/* 2-level ABI: one bit per port in shared_info.evtchn_pending. */
#define EVTCHN_2L_NR_CHANNELS (sizeof(xen_ulong_t) * sizeof(xen_ulong_t) * 64)

/* FIFO ABI. */
#define EVTCHN_FIFO_LINK_BITS   17
#define EVTCHN_FIFO_NR_CHANNELS (1 << EVTCHN_FIFO_LINK_BITS)

#ifndef __ASSEMBLY__

typedef uint32_t evtchn_port_t;
DEFINE_XEN_GUEST_HANDLE(evtchn_port_t);

/* EVTCHNOP_alloc_unbound. */
struct evtchn_alloc_unbound {
    domid_t dom;            /* IN: domain owning the port */
    domid_t remote_dom;     /* IN: domain allowed to bind */
    evtchn_port_t port;     /* OUT */
};
typedef struct evtchn_alloc_unbound evtchn_alloc_unbound_t;

/* EVTCHNOP_bind_interdomain. */
struct evtchn_bind_interdomain {
    domid_t remote_dom;         /* IN */
    evtchn_port_t remote_port;  /* IN */
    evtchn_port_t local_port;   /* OUT */
};
typedef struct evtchn_bind_interdomain evtchn_bind_interdomain_t;

/* EVTCHNOP_bind_virq. */
struct evtchn_bind_virq {
    uint32_t virq;          /* IN: VIRQ_* */
    uint32_t vcpu;          /* IN: vCPU to notify */
    evtchn_port_t port;     /* OUT */
};
typedef struct evtchn_bind_virq evtchn_bind_virq_t;

/* EVTCHNOP_bind_pirq. */
#define BIND_PIRQ__WILL_SHARE 1
struct evtchn_bind_pirq {
    uint32_t pirq;          /* IN */
    uint32_t flags;         /* IN: BIND_PIRQ__* */
    evtchn_port_t port;     /* OUT */
};
typedef struct evtchn_bind_pirq evtchn_bind_pirq_t;

/* EVTCHNOP_bind_ipi. */
struct evtchn_bind_ipi {
    uint32_t vcpu;          /* IN: vCPU to notify */
    evtchn_port_t port;     /* OUT */
};
typedef struct evtchn_bind_ipi evtchn_bind_ipi_t;

/* EVTCHNOP_close. */
struct evtchn_close {
    evtchn_port_t port;     /* IN */
};
typedef struct evtchn_close evtchn_close_t;

/* EVTCHNOP_send. */
struct evtchn_send {
    evtchn_port_t port;     /* IN */
};
typedef struct evtchn_send evtchn_send_t;

/* EVTCHNOP_status. */
struct evtchn_status {
    domid_t dom;            /* IN */
    evtchn_port_t port;     /* IN */
    uint32_t status;        /* OUT: EVTCHNSTAT_* */
    uint32_t vcpu;          /* OUT: vCPU notified */
    union {
        struct {
            domid_t dom;
        } unbound;          /* EVTCHNSTAT_unbound */
        struct {
            domid_t dom;
            evtchn_port_t port;
        } interdomain;      /* EVTCHNSTAT_interdomain */
        uint32_t pirq;      /* EVTCHNSTAT_pirq */
        uint32_t virq;      /* EVTCHNSTAT_virq */
    } u;
};
typedef struct evtchn_status evtchn_status_t;

/* EVTCHNOP_bind_vcpu. */
struct evtchn_bind_vcpu {
    evtchn_port_t port;     /* IN */
    uint32_t vcpu;          /* IN */
};
typedef struct evtchn_bind_vcpu evtchn_bind_vcpu_t;

/* EVTCHNOP_unmask. */
struct evtchn_unmask {
    evtchn_port_t port;     /* IN */
};
typedef struct evtchn_unmask evtchn_unmask_t;

/* EVTCHNOP_reset. */
struct evtchn_reset {
    domid_t dom;            /* IN */
};
typedef struct evtchn_reset evtchn_reset_t;

/* EVTCHNOP_init_control (FIFO ABI). */
struct evtchn_init_control {
    uint64_t control_gfn;   /* IN */
    uint32_t offset;        /* IN */
    uint32_t vcpu;          /* IN */
    uint8_t link_bits;      /* OUT */
    uint8_t _pad[7];
};
typedef struct evtchn_init_control evtchn_init_control_t;

/* EVTCHNOP_expand_array (FIFO ABI). */
struct evtchn_expand_array {
    uint64_t array_gfn;     /* IN */
};
typedef struct evtchn_expand_array evtchn_expand_array_t;

/* EVTCHNOP_set_priority (FIFO ABI). */
struct evtchn_set_priority {
    evtchn_port_t port;     /* IN */
    uint32_t priority;      /* IN */
};
typedef struct evtchn_set_priority evtchn_set_priority_t;

/* Argument of the legacy HYPERVISOR_event_channel_op_compat. */
struct evtchn_op {
    uint32_t cmd;           /* EVTCHNOP_* */
    union {
        struct evtchn_bind_interdomain bind_interdomain;
        struct evtchn_bind_virq bind_virq;
        struct evtchn_bind_pirq bind_pirq;
        struct evtchn_close close;
        struct evtchn_send send;
        struct evtchn_status status;
        struct evtchn_alloc_unbound alloc_unbound;
        struct evtchn_bind_ipi bind_ipi;
        struct evtchn_bind_vcpu bind_vcpu;
        struct evtchn_unmask unmask;
    } u;
};
typedef struct evtchn_op evtchn_op_t;
DEFINE_XEN_GUEST_HANDLE(evtchn_op_t);

#endif /* !__ASSEMBLY__ */

#endif /* __XEN_PUBLIC_EVENT_CHANNEL_H__ */
