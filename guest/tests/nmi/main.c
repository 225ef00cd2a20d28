/*
 * nmi: NMIs sent with VCPUOP_send_nmi and delivered through trap_ctxt[2]
 * (spec 1.2 cmd 11, 4.2).
 *
 *   - an NMI to self is delivered on the way back from the hypercall, once;
 *   - a second NMI sent from inside the handler stays pending until the
 *     handler's HYPERVISOR_iret (async_exception_mask), then is delivered;
 *   - an NMI to another vCPU (yielding, not blocked) runs there;
 *   - with no handler (CALLBACKOP_unregister of CALLBACKTYPE_nmi) an NMI is
 *     dropped, and it does not come back when a handler is registered again
 *     (CALLBACKOP_register of CALLBACKTYPE_nmi);
 *   - the callback op's errors: a non-canonical handler, unregistering a
 *     type that cannot be unregistered, a send_nmi argument.
 */

#include <xenpy-guest.h>
#include <xen/callback.h>

const char test_title[] = "NMIs: VCPUOP_send_nmi, delivery, masking until iret, CALLBACKTYPE_nmi";

#define NON_CANONICAL 0x0000800000000000UL
#define WAIT_NS       (5 * NSEC_PER_SEC)

void entry_NMI(void);

static unsigned int nmis[MAX_VCPUS];
/* The count seen at the end of the handler that sent the nested NMI. */
static unsigned int count_at_nested_end = ~0U;
static bool send_nested;

static bool nmi_hook(struct exception_frame *f)
{
    unsigned int cpu = smp_processor_id();

    if ( f->entry_vector != X86_EXC_NMI )
        return false;
    __atomic_fetch_add(&nmis[cpu], 1, __ATOMIC_SEQ_CST);
    if ( send_nested )
    {
        send_nested = false;
        (void)HYPERVISOR_vcpu_op(VCPUOP_send_nmi, cpu, NULL);
        count_at_nested_end = READ_ONCE(nmis[cpu]);
    }

    return true;
}

static long register_nmi(unsigned long address)
{
    callback_register_t cb = { .type = CALLBACKTYPE_nmi, .address = address };

    return HYPERVISOR_callback_op(CALLBACKOP_register, &cb);
}

static long unregister(unsigned int type)
{
    callback_unregister_t cb = { .type = type };

    return HYPERVISOR_callback_op(CALLBACKOP_unregister, &cb);
}

static unsigned int nmis_of(unsigned int cpu)
{
    return READ_ONCE(nmis[cpu]);
}

static void wait_for_nmis(unsigned int cpu, unsigned int n)
{
    uint64_t end = now_ns() + WAIT_NS;

    while ( nmis_of(cpu) < n && now_ns() < end )
        (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
}

/* vCPU 1 stays runnable (yielding) until its NMI has been handled, or for WAIT_NS. */
static void ap_wait_for_nmi(unsigned int vcpu_id)
{
    wait_for_nmis(vcpu_id, 1);
}

void test_main(void)
{
    unsigned int before;
    int rc;

    test_profile();
    set_exception_hook(nmi_hook);

    check("send-nmi-arg", "1.2", HYPERVISOR_vcpu_op(VCPUOP_send_nmi, 0, (void *)8), -XEN_EINVAL,
          "VCPUOP_send_nmi with arg != NULL");
    check("send-nmi-arg-none", "4.2", nmis_of(0), 0, "VCPUOP_send_nmi with arg != NULL: NMIs handled");

    check("send-nmi-self", "1.2", HYPERVISOR_vcpu_op(VCPUOP_send_nmi, 0, NULL), 0, "VCPUOP_send_nmi to self");
    check("self-delivered", "4.2", nmis_of(0), 1, "VCPUOP_send_nmi to self: NMIs handled after the call");

    send_nested = true;
    check("send-nmi-self-2", "1.2", HYPERVISOR_vcpu_op(VCPUOP_send_nmi, 0, NULL), 0,
          "VCPUOP_send_nmi to self (the handler sends another)");
    check("nested-held", "4.2", count_at_nested_end, 2,
          "VCPUOP_send_nmi from the NMI handler: NMIs handled when the handler ends (held until iret)");
    check("nested-after-iret", "4.2", nmis_of(0), 3,
          "VCPUOP_send_nmi from the NMI handler: NMIs handled after the handler's HYPERVISOR_iret");

    check("register-noncanonical", "4.2", register_nmi(NON_CANONICAL), -XEN_EINVAL,
          "CALLBACKOP_register CALLBACKTYPE_nmi at a non-canonical address");
    check("unregister-event", "4.2", unregister(CALLBACKTYPE_event), -XEN_EINVAL,
          "CALLBACKOP_unregister CALLBACKTYPE_event");
    check("unregister-nmi", "4.2", unregister(CALLBACKTYPE_nmi), 0, "CALLBACKOP_unregister CALLBACKTYPE_nmi");
    before = nmis_of(0);
    check("send-nmi-no-handler", "1.2", HYPERVISOR_vcpu_op(VCPUOP_send_nmi, 0, NULL), 0,
          "VCPUOP_send_nmi to self with no NMI handler");
    check("no-handler-dropped", "4.2", nmis_of(0) - before, 0,
          "VCPUOP_send_nmi with no NMI handler: NMIs handled");
    check("register-nmi", "4.2", register_nmi((unsigned long)entry_NMI), 0,
          "CALLBACKOP_register CALLBACKTYPE_nmi at the NMI entry");
    check("dropped-stays-dropped", "4.2", nmis_of(0) - before, 0,
          "CALLBACKOP_register CALLBACKTYPE_nmi after a dropped VCPUOP_send_nmi: NMIs handled");
    check("send-nmi-reregistered", "1.2", HYPERVISOR_vcpu_op(VCPUOP_send_nmi, 0, NULL), 0,
          "VCPUOP_send_nmi to self after CALLBACKOP_register");
    check("reregistered-delivered", "4.2", nmis_of(0) - before, 1,
          "VCPUOP_send_nmi after CALLBACKOP_register CALLBACKTYPE_nmi: NMIs handled");

    if ( smp_nr_vcpus() < 2 )
    {
        xtf_skip("Skip: the remote NMI needs 2 vCPUs\n");
        return;
    }
    rc = smp_bring_up(2, ap_wait_for_nmi);
    if ( rc )
    {
        xtf_error("Error: bringing up vCPU 1 failed: %d\n", rc);
        return;
    }
    check("send-nmi-remote", "1.2", HYPERVISOR_vcpu_op(VCPUOP_send_nmi, 1, NULL), 0,
          "VCPUOP_send_nmi to vCPU 1 (running or runnable)");
    wait_for_nmis(1, 1);
    check("remote-delivered", "4.2", nmis_of(1), 1, "VCPUOP_send_nmi to vCPU 1: NMIs handled there");
    check("remote-not-here", "4.2", nmis_of(0) - before, 1,
          "VCPUOP_send_nmi to vCPU 1: NMIs handled on vCPU 0 (unchanged)");

    set_exception_hook(NULL);
    if ( xtf_ok() )
        xtf_success(NULL);
}
