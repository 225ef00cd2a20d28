/*
 * Memory barriers and atomic bit operations on memory shared with Xen and
 * with other vCPUs (x86-64: total store order, so rmb and wmb only need to
 * stop the compiler).
 */

#ifndef XENPY_GUEST_ARCH_BARRIER_H
#define XENPY_GUEST_ARCH_BARRIER_H

#define barrier()   __asm__ __volatile__ ("" ::: "memory")
#define mb()        __asm__ __volatile__ ("mfence" ::: "memory")
#define rmb()       barrier()
#define wmb()       barrier()

#define BITS_PER_LONG 64

/* Atomically set bit nr of the bitmap at addr; returns its old value. */
static inline int test_and_set_bit(unsigned int nr, volatile unsigned long *addr)
{
    unsigned long mask = 1UL << (nr % BITS_PER_LONG);

    return !!(__atomic_fetch_or(&addr[nr / BITS_PER_LONG], mask, __ATOMIC_SEQ_CST) & mask);
}

/* Atomically clear bit nr of the bitmap at addr; returns its old value. */
static inline int test_and_clear_bit(unsigned int nr, volatile unsigned long *addr)
{
    unsigned long mask = 1UL << (nr % BITS_PER_LONG);

    return !!(__atomic_fetch_and(&addr[nr / BITS_PER_LONG], ~mask, __ATOMIC_SEQ_CST) & mask);
}

static inline void set_bit(unsigned int nr, volatile unsigned long *addr)
{
    (void)test_and_set_bit(nr, addr);
}

static inline void clear_bit(unsigned int nr, volatile unsigned long *addr)
{
    (void)test_and_clear_bit(nr, addr);
}

static inline int test_bit(unsigned int nr, const volatile unsigned long *addr)
{
    return !!(addr[nr / BITS_PER_LONG] & (1UL << (nr % BITS_PER_LONG)));
}

/* Index of the lowest set bit; x must not be 0. */
static inline unsigned int find_first_set(unsigned long x)
{
    return (unsigned int)__builtin_ctzl(x);
}

#endif /* XENPY_GUEST_ARCH_BARRIER_H */
