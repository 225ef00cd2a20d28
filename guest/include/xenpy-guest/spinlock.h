/*
 * A test-and-set spinlock between vCPUs. A waiter yields its pCPU
 * (SCHEDOP_yield) so that a descheduled holder can run.
 */

#ifndef XENPY_GUEST_SPINLOCK_H
#define XENPY_GUEST_SPINLOCK_H

#include <stdbool.h>

#include <arch/barrier.h>
#include <xenpy-guest/compiler.h>

typedef struct {
    volatile int locked;
} spinlock_t;

#define SPINLOCK_UNLOCKED { 0 }

static inline bool spin_trylock(spinlock_t *lock)
{
    return !__atomic_exchange_n(&lock->locked, 1, __ATOMIC_ACQUIRE);
}

/* Yield to the hypervisor's scheduler while waiting (common/hypervisor.c). */
void spin_wait_yield(void);

static inline void spin_lock(spinlock_t *lock)
{
    while ( !spin_trylock(lock) )
    {
        while ( READ_ONCE(lock->locked) )
            spin_wait_yield();
    }
}

static inline void spin_unlock(spinlock_t *lock)
{
    __atomic_store_n(&lock->locked, 0, __ATOMIC_RELEASE);
}

#endif /* XENPY_GUEST_SPINLOCK_H */
