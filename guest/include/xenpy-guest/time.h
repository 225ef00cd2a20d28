/*
 * Time: the pvclock of vcpu_info.time (spec 3.6) and the single-shot timer
 * (spec 3.2).
 */

#ifndef XENPY_GUEST_TIME_H
#define XENPY_GUEST_TIME_H

#include <stdint.h>

#define NSEC_PER_USEC 1000UL
#define NSEC_PER_MSEC 1000000UL
#define NSEC_PER_SEC  1000000000UL

/* System time (ns since Xen booted) from the calling vCPU's vcpu_time_info. */
uint64_t now_ns(void);

/* VCPUOP_set_singleshot_timer on the calling vCPU, flags 0. */
int timer_set_singleshot(uint64_t deadline_ns);

/* VCPUOP_stop_singleshot_timer on the calling vCPU. */
int timer_stop_singleshot(void);

/*
 * Stop the calling vCPU's periodic timer (VCPUOP_stop_periodic_timer) and
 * bind VIRQ_TIMER on it (once; later calls return the same port), so that
 * VIRQ_TIMER comes only from the single-shot timer. A timer event with no
 * binding is dropped by Xen (spec 3.3), so sleeping needs it. Returns the
 * port or a negative errno.
 */
long timer_bind_this_vcpu(void);

/* VIRQ_TIMER events handled so far on a vCPU. */
unsigned long timer_nr_events(unsigned int cpu);

/*
 * Sleep until now_ns() >= deadline_ns: arm the single-shot timer, block,
 * repeat. Restores the caller's event mask. Binds VIRQ_TIMER if needed.
 */
void sleep_until(uint64_t deadline_ns);

static inline void sleep_ns(uint64_t ns)
{
    sleep_until(now_ns() + ns);
}

static inline void sleep_ms(uint64_t ms)
{
    sleep_ns(ms * NSEC_PER_MSEC);
}

#endif /* XENPY_GUEST_TIME_H */
