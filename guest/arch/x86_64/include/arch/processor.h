/*
 * x86-64 instructions usable by a PV kernel running at CPL 3.
 */

#ifndef XENPY_GUEST_ARCH_PROCESSOR_H
#define XENPY_GUEST_ARCH_PROCESSOR_H

#include <stdint.h>

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;

    __asm__ __volatile__ ("rdtsc" : "=a" (lo), "=d" (hi));

    return ((uint64_t)hi << 32) | lo;
}

/* Spin-loop hint. */
static inline void cpu_relax(void)
{
    __asm__ __volatile__ ("pause" ::: "memory");
}

static inline unsigned long read_rsp(void)
{
    unsigned long rsp;

    __asm__ __volatile__ ("mov %%rsp, %0" : "=r" (rsp));

    return rsp;
}

/*
 * 64 x 32 -> upper 64 bits of the 96-bit product shifted right by 32:
 * (a * mul) >> 32 without overflow (the pvclock scaling, spec 3.6).
 */
static inline uint64_t mul_u64_u32_shr32(uint64_t a, uint32_t mul)
{
    return (uint64_t)(((unsigned __int128)a * mul) >> 32);
}

#endif /* XENPY_GUEST_ARCH_PROCESSOR_H */
