/*
 * nmi: VCPUOP_send_nmi and NMI delivery to a PV guest (spec 1.2 cmd 11,
 * 4.2, 6.6).
 *
 * The NMI handler is trap_ctxt[2] of the receiving vCPU: the trap table
 * entry for vector 2 at boot (entry_NMI), or an address installed with
 * HYPERVISOR_nmi_op(XENNMI_register_callback) or CALLBACKOP_register
 * (CALLBACKTYPE_nmi). A second stub, nmi_callback_entry, reports vector
 * NMI_CB_VECTOR so the checks see which address Xen used. vCPU 0:
 *   - send_nmi with arg != NULL: -EINVAL, nothing delivered;
 *   - send_nmi to itself: delivered on the way back from the hypercall,
 *     with events masked in the handler, and also while events are masked;
 *   - a second NMI sent from inside the handler is held until the handler's
 *     HYPERVISOR_iret, then delivered at once;
 *   - XENNMI_register_callback / CALLBACKOP_register move the handler,
 *     a non-canonical address is -EINVAL; after unregistering, an NMI is
 *     dropped (not kept pending);
 *   - send_nmi to vCPU 1 (blocked) wakes it and runs its own handler.
 */

#include <xenpy-guest.h>
#include <xen/nmi.h>

const char test_title[] = "NMIs: VCPUOP_send_nmi, the NMI callback, masking until iret";

#define WAIT_NS         (2 * NSEC_PER_SEC)
#define NMI_CB_VECTOR   0x102
#define NONCANONICAL    0x0000800000000000UL

/* Like the entry_* stubs of entry.S, with its own vector number. */
void nmi_callback_entry(void);
__asm__ (
    "    .pushsection .text, \"ax\", @progbits\n"
    "    .globl nmi_callback_entry\n"
    "    .p2align 4, 0x90\n"
    "nmi_callback_entry:\n"
    "    pop     %rcx\n"
    "    pop     %r11\n"
    "    push    $0\n"
    "    movl    $" "0x102" ", 4(%rsp)\n"
    "    jmp     handle_exception\n"
    "    .popsection\n");

void entry_NMI(void);

static volatile unsigned int nr_nmi[2];
static volatile unsigned int last_vector[2];
static volatile unsigned int mask_in_handler[2];
static volatile unsigned int saved_mask[2];

/* Nesting: 1 = the next NMI on vCPU 0 sends another one to vCPU 0. */
static volatile int nest_state;
static volatile long nest_rc;
static volatile unsigned int nest_count_after_send;

static bool nmi_hook(struct exception_frame *f)
{
    unsigned int cpu = smp_processor_id();

    if ( f->entry_vector != X86_EXC_NMI && f->entry_vector != NMI_CB_VECTOR )
        return false;
    if ( cpu >= 2 )
        return false;

    WRITE_ONCE(last_vector[cpu], f->entry_vector);
    WRITE_ONCE(mask_in_handler[cpu], this_vcpu_info()->evtchn_upcall_mask);
    WRITE_ONCE(saved_mask[cpu], frame_saved_upcall_mask(f));
    __atomic_fetch_add(&nr_nmi[cpu], 1, __ATOMIC_SEQ_CST);

    if ( cpu == 0 && READ_ONCE(nest_state) == 1 )
    {
        WRITE_ONCE(nest_state, 2);
        nest_rc = HYPERVISOR_vcpu_op(VCPUOP_send_nmi, 0, NULL);
        nest_count_after_send = READ_ONCE(nr_nmi[0]);
    }

    return true;
}

static long send_nmi(unsigned int vcpu)
{
    return HYPERVISOR_vcpu_op(VCPUOP_send_nmi, vcpu, NULL);
}

static long nmi_callback_register(unsigned long address)
{
    struct callback_register cb = {
        .type = CALLBACKTYPE_nmi, .flags = 0, .address = address,
    };

    return HYPERVISOR_callback_op(CALLBACKOP_register, &cb);
}

static long nmi_callback_unregister(void)
{
    struct callback_unregister cb = { .type = CALLBACKTYPE_nmi };

    return HYPERVISOR_callback_op(CALLBACKOP_unregister, &cb);
}

static bool wait_for(volatile unsigned int *p, unsigned int want)
{
    uint64_t deadline = now_ns() + WAIT_NS;

    while ( READ_ONCE(*p) < want )
    {
        if ( now_ns() > deadline )
            return false;
        (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }

    return true;
}

static void test_self(void)
{
    unsigned long dummy = 0;
    unsigned int n;
    long rc;

    rc = HYPERVISOR_vcpu_op(VCPUOP_send_nmi, 0, &dummy);
    check("send-arg", "1.2", rc, -XEN_EINVAL, "VCPUOP_send_nmi: arg != NULL");
    check("send-arg-none", "1.2", READ_ONCE(nr_nmi[0]), 0,
          "VCPUOP_send_nmi: nothing delivered after arg != NULL");

    /* Events unmasked: the handler runs with them masked (trap_info flags 4). */
    local_irq_enable();
    rc = send_nmi(0);
    check("send-self", "1.2", rc, 0, "VCPUOP_send_nmi: to itself");
    check("self-delivered", "4.2", READ_ONCE(nr_nmi[0]), 1,
          "VCPUOP_send_nmi: delivered on the way back from the hypercall");
    check_hex("self-vector", "4.2", READ_ONCE(last_vector[0]), X86_EXC_NMI,
              "VCPUOP_send_nmi: through trap_ctxt[2] (the trap table's entry)");
    check("self-mask-in-handler", "4.2", READ_ONCE(mask_in_handler[0]), 1,
          "VCPUOP_send_nmi: events masked in the handler");
    check("self-saved-mask", "4.2", READ_ONCE(saved_mask[0]), 0,
          "VCPUOP_send_nmi: saved upcall mask 0 in the frame");
    check("self-mask-after-iret", "4.2", irqs_disabled(), 0,
          "VCPUOP_send_nmi: events unmasked again after HYPERVISOR_iret");

    /* Events masked: an NMI is not an event. */
    local_irq_disable();
    rc = send_nmi(0);
    check("send-self-masked", "1.2", rc, 0, "VCPUOP_send_nmi: to itself, events masked");
    check("self-masked-delivered", "4.2", READ_ONCE(nr_nmi[0]), 2,
          "VCPUOP_send_nmi: delivered while events are masked");
    check("self-masked-saved-mask", "4.2", READ_ONCE(saved_mask[0]), 1,
          "VCPUOP_send_nmi: saved upcall mask 1 in the frame");
    local_irq_enable();

    /* A second NMI, sent from the handler, waits for its HYPERVISOR_iret. */
    n = READ_ONCE(nr_nmi[0]);
    WRITE_ONCE(nest_state, 1);
    rc = send_nmi(0);
    check("send-nest", "1.2", rc, 0, "VCPUOP_send_nmi: to itself (handler sends another)");
    check("nest-send-rc", "1.2", nest_rc, 0, "VCPUOP_send_nmi: to itself from the NMI handler");
    check("nest-held", "4.2", nest_count_after_send - n, 1,
          "VCPUOP_send_nmi: held while the NMI handler runs");
    check("nest-after-iret", "4.2", READ_ONCE(nr_nmi[0]) - n, 2,
          "VCPUOP_send_nmi: the held NMI is delivered after HYPERVISOR_iret");
}

static void test_nmi_op(void)
{
    struct xennmi_callback cb = { .handler_address = (unsigned long)nmi_callback_entry };
    unsigned int n;
    long rc;

    rc = HYPERVISOR_nmi_op(XENNMI_register_callback, &cb);
    check("nmiop-register", "4.2", rc, 0, "XENNMI_register_callback: nmi_callback_entry");
    n = READ_ONCE(nr_nmi[0]);
    rc = send_nmi(0);
    check("nmiop-send", "1.2", rc, 0, "VCPUOP_send_nmi: after XENNMI_register_callback");
    check("nmiop-delivered", "4.2", READ_ONCE(nr_nmi[0]) - n, 1,
          "XENNMI_register_callback: the NMI is delivered");
    check_hex("nmiop-vector", "4.2", READ_ONCE(last_vector[0]), NMI_CB_VECTOR,
              "XENNMI_register_callback: to the registered address");
    check("nmiop-mask-in-handler", "4.2", READ_ONCE(mask_in_handler[0]), 1,
          "XENNMI_register_callback: events masked in the handler");

    cb.handler_address = NONCANONICAL;
    rc = HYPERVISOR_nmi_op(XENNMI_register_callback, &cb);
    check("nmiop-noncanonical", "4.2", rc, -XEN_EINVAL,
          "XENNMI_register_callback: non-canonical address");

    rc = HYPERVISOR_nmi_op(XENNMI_register_callback, NULL);
    check("nmiop-efault", "4.2", rc, -XEN_EFAULT,
          "XENNMI_register_callback: unreadable argument");

    rc = HYPERVISOR_nmi_op(2, NULL);
    check("nmiop-unknown", "4.2", rc, -XEN_ENOSYS, "HYPERVISOR_nmi_op: unknown XENNMI_ command 2");

    rc = HYPERVISOR_nmi_op(XENNMI_unregister_callback, NULL);
    check("nmiop-unregister", "4.2", rc, 0, "XENNMI_unregister_callback");
    n = READ_ONCE(nr_nmi[0]);
    rc = send_nmi(0);
    check("nmiop-send-none", "1.2", rc, 0, "VCPUOP_send_nmi: with no NMI handler");
    check("nmiop-dropped", "4.2", READ_ONCE(nr_nmi[0]) - n, 0,
          "XENNMI_unregister_callback: the NMI is not delivered");
}

static void test_callback_op(void)
{
    unsigned int n = READ_ONCE(nr_nmi[0]);
    long rc;

    /* The NMI dropped above was not kept pending. */
    rc = nmi_callback_register((unsigned long)nmi_callback_entry);
    check("cb-register", "4.2", rc, 0, "CALLBACKOP_register: CALLBACKTYPE_nmi, nmi_callback_entry");
    (void)HYPERVISOR_xen_version(XENVER_version, NULL);
    check("cb-dropped-not-pending", "4.2", READ_ONCE(nr_nmi[0]) - n, 0,
          "CALLBACKOP_register: CALLBACKTYPE_nmi, an NMI sent without a handler stays dropped");

    rc = send_nmi(0);
    check("cb-send", "1.2", rc, 0, "VCPUOP_send_nmi: after CALLBACKOP_register");
    check("cb-delivered", "4.2", READ_ONCE(nr_nmi[0]) - n, 1,
          "CALLBACKOP_register: CALLBACKTYPE_nmi, the NMI is delivered");
    check_hex("cb-vector", "4.2", READ_ONCE(last_vector[0]), NMI_CB_VECTOR,
              "CALLBACKOP_register: CALLBACKTYPE_nmi, to the registered address");
    check("cb-mask-in-handler", "4.2", READ_ONCE(mask_in_handler[0]), 1,
          "CALLBACKOP_register: CALLBACKTYPE_nmi, events masked in the handler (flags 0)");

    rc = nmi_callback_register(NONCANONICAL);
    check("cb-noncanonical", "4.2", rc, -XEN_EINVAL,
          "CALLBACKOP_register: CALLBACKTYPE_nmi, non-canonical address");

    rc = nmi_callback_unregister();
    check("cb-unregister", "4.2", rc, 0, "CALLBACKOP_unregister: CALLBACKTYPE_nmi");
    n = READ_ONCE(nr_nmi[0]);
    rc = send_nmi(0);
    check("cb-send-none", "1.2", rc, 0, "VCPUOP_send_nmi: after CALLBACKOP_unregister");
    check("cb-dropped", "4.2", READ_ONCE(nr_nmi[0]) - n, 0,
          "CALLBACKOP_unregister: CALLBACKTYPE_nmi, the NMI is not delivered");

    /* Back to the boot handler. */
    rc = nmi_callback_register((unsigned long)entry_NMI);
    check("cb-register-back", "4.2", rc, 0, "CALLBACKOP_register: CALLBACKTYPE_nmi, entry_NMI");
    n = READ_ONCE(nr_nmi[0]);
    rc = send_nmi(0);
    check("cb-back-send", "1.2", rc, 0, "VCPUOP_send_nmi: after CALLBACKOP_register of entry_NMI");
    check("cb-back-delivered", "4.2", READ_ONCE(nr_nmi[0]) - n, 1,
          "CALLBACKOP_register: CALLBACKTYPE_nmi, delivered to entry_NMI");
    check_hex("cb-back-vector", "4.2", READ_ONCE(last_vector[0]), X86_EXC_NMI,
              "CALLBACKOP_register: CALLBACKTYPE_nmi, to entry_NMI");
}

static void test_remote(void)
{
    unsigned long dummy = 0;
    long rc;

    rc = HYPERVISOR_vcpu_op(VCPUOP_send_nmi, 1, &dummy);
    check("remote-arg", "1.2", rc, -XEN_EINVAL, "VCPUOP_send_nmi: vCPU 1, arg != NULL");

    rc = send_nmi(1);
    check("remote-send", "1.2", rc, 0, "VCPUOP_send_nmi: to vCPU 1 (blocked)");
    check("remote-delivered", "4.2", wait_for(&nr_nmi[1], 1), 1,
          "VCPUOP_send_nmi: vCPU 1 woken and its handler run");
    check("remote-count", "4.2", READ_ONCE(nr_nmi[1]), 1,
          "VCPUOP_send_nmi: vCPU 1 gets exactly one NMI");
    check_hex("remote-vector", "4.2", READ_ONCE(last_vector[1]), X86_EXC_NMI,
              "VCPUOP_send_nmi: through vCPU 1's own trap_ctxt[2]");
    check("remote-mask-in-handler", "4.2", READ_ONCE(mask_in_handler[1]), 1,
          "VCPUOP_send_nmi: events masked in vCPU 1's handler");
}

void test_main(void)
{
    int rc;

    (void)test_profile();

    if ( smp_nr_vcpus() < 2 )
    {
        xtf_error("Error: needs 2 vCPUs\n");
        return;
    }
    rc = smp_bring_up(2, NULL);
    if ( rc )
    {
        xtf_error("Error: smp_bring_up(2) failed: %d\n", rc);
        return;
    }

    set_exception_hook(nmi_hook);
    test_self();
    test_nmi_op();
    test_callback_op();
    test_remote();
    set_exception_hook(NULL);

    if ( xtf_ok() )
        xtf_success(NULL);
}
