/*
 * vCPU identity and bring-up of the other vCPUs.
 */

#ifndef XENPY_GUEST_SMP_H
#define XENPY_GUEST_SMP_H

#include <arch/processor.h>
#include <xenpy-guest/compiler.h>
#include <xenpy-guest/hypervisor.h>
#include <xenpy-guest/layout.h>

/* One stack per vCPU (arch/x86_64/head.S); vCPU n runs on cpu_stacks[n]. */
extern char cpu_stacks[MAX_VCPUS][STACK_SIZE];

/*
 * Id of the calling vCPU, derived from the stack pointer: every context of
 * vCPU n (including exception and event handlers, which Xen bounces on the
 * current kernel stack) runs on cpu_stacks[n].
 */
static inline unsigned int smp_processor_id(void)
{
    return (unsigned int)((read_rsp() - (unsigned long)cpu_stacks) >> STACK_SHIFT);
}

/*
 * Where each vCPU's vcpu_info is, once registered with
 * VCPUOP_register_vcpu_info (spec 4.1); NULL: its slot in shared_info.
 */
extern vcpu_info_t *vcpu_info_area[MAX_VCPUS];

/* vcpu_info of a vCPU: the registered area, or its slot in shared_info. */
static inline vcpu_info_t *vcpu_info_of(unsigned int cpu)
{
    vcpu_info_t *vi = READ_ONCE(vcpu_info_area[cpu]);

    return vi ? vi : &shared_info->vcpu_info[cpu];
}

/*
 * Tell the runtime that vCPU cpu's vcpu_info is now vi (NULL: the
 * shared_info slot again). Xen writes only the registered area after a
 * successful VCPUOP_register_vcpu_info.
 */
static inline void set_vcpu_info_area(unsigned int cpu, vcpu_info_t *vi)
{
    __atomic_store_n(&vcpu_info_area[cpu], vi, __ATOMIC_SEQ_CST);
}

static inline vcpu_info_t *this_vcpu_info(void)
{
    return vcpu_info_of(smp_processor_id());
}

/* Top of the stack of a vCPU (16-byte aligned). */
static inline unsigned long cpu_stack_top(unsigned int cpu)
{
    return (unsigned long)cpu_stacks[cpu] + STACK_SIZE;
}

/*
 * Number of vCPUs of the domain: the first id for which VCPUOP_is_up
 * returns -ENOENT (spec 1.1), at most MAX_VCPUS.
 */
unsigned int smp_nr_vcpus(void);

/*
 * The vcpu_guest_context smp_bring_up() gives vCPU id: kernel mode at
 * ap_entry on the vCPU's own stack, this kernel's trap table, callbacks and
 * page tables, Xen's reset values of DR6/DR7. VCPUOP_initialise accepts it.
 */
void smp_build_context(struct vcpu_guest_context *c, unsigned int id);

/* Code run by a secondary vCPU once it is up; it may return (the vCPU then idles). */
typedef void (*ap_fn_t)(unsigned int vcpu_id);

/*
 * Bring up vCPUs 1 .. nr - 1: for each, VCPUOP_initialise with a
 * vcpu_guest_context that starts it at ap_entry on its own stack with this
 * kernel's trap table, callbacks and page tables, then VCPUOP_up. Each
 * runs fn(vcpu_id), then idles blocked. Waits (yielding, up to 10 s of
 * system time) until all of them have reached ap_main(). Call it once.
 * Returns 0; -XEN_EINVAL if nr > MAX_VCPUS; the first failing hypercall's
 * negative errno (vCPUs started before it keep running); -XEN_ETIMEDOUT if
 * some vCPU never came online.
 */
int smp_bring_up(unsigned int nr, ap_fn_t fn);

/* Number of vCPUs that have reached ap_main (plus vCPU 0). */
unsigned int smp_nr_online(void);

#endif /* XENPY_GUEST_SMP_H */
