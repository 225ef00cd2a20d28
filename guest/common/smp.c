/*
 * Secondary vCPUs of the xenpy guest kernel.
 *
 * At boot only vCPU 0 is initialised and up (spec 7.5). smp_bring_up()
 * gives each other vCPU a vcpu_guest_context (spec 5.8) with
 * VCPUOP_initialise (checks: spec 1.3), then wakes it with VCPUOP_up; the
 * vCPU starts at ap_entry on its own stack, with the same trap table,
 * callbacks and page tables as vCPU 0.
 */

#include <xenpy-guest/events.h>
#include <xenpy-guest/lib.h>
#include <xenpy-guest/setup.h>
#include <xenpy-guest/smp.h>
#include <xenpy-guest/time.h>
#include <xenpy-guest/traps.h>

/* Initial values of the debug registers (spec 7.5). */
#define DR6_INIT 0xffff0ff0UL
#define DR7_INIT 0x00000400UL

/* How long smp_bring_up() waits for the vCPUs to reach ap_main(). */
#define BRING_UP_TIMEOUT_NS (10 * NSEC_PER_SEC)

static unsigned int nr_online = 1;      /* vCPU 0 */
vcpu_info_t *vcpu_info_area[MAX_VCPUS];
static ap_fn_t ap_fn;

void smp_forget_vcpu_info(void)
{
    for ( unsigned int cpu = 0; cpu < MAX_VCPUS; cpu++ )
        WRITE_ONCE(vcpu_info_area[cpu], NULL);
}

/* Only vCPU 0 brings vCPUs up, one at a time: one context suffices. */
static struct vcpu_guest_context ap_ctxt;

unsigned int smp_nr_vcpus(void)
{
    for ( unsigned int id = 0; id < MAX_VCPUS; id++ )
    {
        if ( HYPERVISOR_vcpu_op(VCPUOP_is_up, id, NULL) == -XEN_ENOENT )
            return id;
    }

    return MAX_VCPUS;
}

unsigned int smp_nr_online(void)
{
    return __atomic_load_n(&nr_online, __ATOMIC_SEQ_CST);
}

void smp_mark_online(void)
{
    __atomic_fetch_add(&nr_online, 1, __ATOMIC_SEQ_CST);
}

void smp_run_ap(unsigned int vcpu_id)
{
    ap_fn_t fn = READ_ONCE(ap_fn);

    if ( fn )
        fn(vcpu_id);
}

/* cr3 of the running page tables: the L4 at start_info.pt_base, as mfn << 12. */
static unsigned long current_cr3(void)
{
    return virt_to_mfn((const void *)start_info->pt_base) << PAGE_SHIFT;
}

void smp_build_context(struct vcpu_guest_context *c, unsigned int id)
{
    memset(c, 0, sizeof(*c));

    /* FPU: no VGCF_i387_valid, so Xen gives the vCPU a reset FPU. */
    c->flags = VGCF_in_kernel | VGCF_failsafe_disables_events |
               VGCF_syscall_disables_events;

    c->user_regs.rip = (unsigned long)ap_entry;
    c->user_regs.rsp = cpu_stack_top(id);
    c->user_regs.rdi = id;
    c->user_regs.cs = FLAT_KERNEL_CS;
    c->user_regs.ss = FLAT_KERNEL_SS;
    c->user_regs.ds = FLAT_KERNEL_DS;
    c->user_regs.es = FLAT_KERNEL_DS;
    c->user_regs.fs = FLAT_KERNEL_DS;
    c->user_regs.gs = FLAT_KERNEL_DS;
    c->user_regs.rflags = 0x202;        /* IF and the reserved bit 1 */

    traps_fill_context(c->trap_ctxt);

    c->kernel_ss = FLAT_KERNEL_SS;
    c->kernel_sp = cpu_stack_top(id);

    c->ctrlreg[3] = current_cr3();

    c->debugreg[6] = DR6_INIT;
    c->debugreg[7] = DR7_INIT;

    c->event_callback_eip = (unsigned long)entry_hypervisor_callback;
    c->failsafe_callback_eip = (unsigned long)entry_failsafe_callback;
    c->syscall_callback_eip = (unsigned long)entry_syscall_callback;
}

int smp_bring_up(unsigned int nr, ap_fn_t fn)
{
    uint64_t deadline;
    long rc;

    if ( nr > MAX_VCPUS )
        return -XEN_EINVAL;

    WRITE_ONCE(ap_fn, fn);

    for ( unsigned int id = 1; id < nr; id++ )
    {
        smp_build_context(&ap_ctxt, id);

        rc = HYPERVISOR_vcpu_op(VCPUOP_initialise, id, &ap_ctxt);
        if ( rc )
        {
            printk("VCPUOP_initialise(vCPU %u) failed: %ld\n", id, rc);
            return (int)rc;
        }

        rc = HYPERVISOR_vcpu_op(VCPUOP_up, id, NULL);
        if ( rc )
        {
            printk("VCPUOP_up(vCPU %u) failed: %ld\n", id, rc);
            return (int)rc;
        }
    }

    /* Wait for every vCPU to reach ap_main(), giving them the pCPUs. */
    deadline = now_ns() + BRING_UP_TIMEOUT_NS;
    while ( smp_nr_online() < nr )
    {
        if ( now_ns() > deadline )
        {
            printk("smp_bring_up: only %u of %u vCPUs came online\n",
                   smp_nr_online(), nr);
            return -XEN_ETIMEDOUT;
        }
        (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }

    return 0;
}
