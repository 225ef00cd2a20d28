/*
 * xenpy guest headers: the argument structures of HYPERVISOR_sched_op and
 * the shutdown reasons (Xen's public/sched.h).
 *
 * The SCHEDOP_* command numbers come from the generated
 * <generated/hypercalls.h>.
 */

#ifndef __XEN_PUBLIC_SCHED_H__
#define __XEN_PUBLIC_SCHED_H__

#include "event_channel.h"

/* Shutdown reasons (sched_shutdown.reason, sched_remote_shutdown.reason). */
#define SHUTDOWN_poweroff   0  /* domain exited normally: clean up and kill */
#define SHUTDOWN_reboot     1  /* clean up, kill and restart */
#define SHUTDOWN_suspend    2  /* clean up, save the suspend record */
#define SHUTDOWN_crash      3  /* tell the control tools the domain crashed */
#define SHUTDOWN_watchdog   4  /* restart after a watchdog timeout */
#define SHUTDOWN_soft_reset 5  /* reset the domain, keeping its memory */
#define SHUTDOWN_MAX        5

#ifndef __ASSEMBLY__

/* SCHEDOP_shutdown, SCHEDOP_shutdown_code. */
struct sched_shutdown {
    unsigned int reason;            /* SHUTDOWN_* */
};
typedef struct sched_shutdown sched_shutdown_t;
DEFINE_XEN_GUEST_HANDLE(sched_shutdown_t);

/* SCHEDOP_poll: block until one of the ports is pending or the timeout. */
struct sched_poll {
    XEN_GUEST_HANDLE(evtchn_port_t) ports;
    unsigned int nr_ports;
    uint64_t timeout;               /* absolute system time (ns); 0 = none */
};
typedef struct sched_poll sched_poll_t;
DEFINE_XEN_GUEST_HANDLE(sched_poll_t);

/* SCHEDOP_remote_shutdown (privileged). */
struct sched_remote_shutdown {
    domid_t domain_id;              /* domain to shut down */
    unsigned int reason;            /* SHUTDOWN_* */
};
typedef struct sched_remote_shutdown sched_remote_shutdown_t;
DEFINE_XEN_GUEST_HANDLE(sched_remote_shutdown_t);

/* SCHEDOP_watchdog: create (id 0), kick (id n) or destroy (timeout 0). */
struct sched_watchdog {
    uint32_t id;
    uint32_t timeout;               /* seconds */
};
typedef struct sched_watchdog sched_watchdog_t;
DEFINE_XEN_GUEST_HANDLE(sched_watchdog_t);

/* SCHEDOP_pin_override (hardware domain only). */
struct sched_pin_override {
    int32_t pcpu;                   /* physical CPU, or -1 to undo */
};
typedef struct sched_pin_override sched_pin_override_t;
DEFINE_XEN_GUEST_HANDLE(sched_pin_override_t);

#endif /* !__ASSEMBLY__ */

#endif /* __XEN_PUBLIC_SCHED_H__ */
