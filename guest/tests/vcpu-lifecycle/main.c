/*
 * vcpu-lifecycle: dispatch of HYPERVISOR_vcpu_op and the vCPU lifecycle
 * (spec 1.1, 1.2 cmds 0-3, 11, 12, 1.3, 1.4).
 *
 * vCPU 0 checks the dispatch errors (a bad vcpuid is -ENOENT even with an
 * unknown cmd; an unknown cmd is -ENOSYS), VCPUOP_initialise of an
 * initialised vCPU (-EEXIST, before any context check), of an unreadable
 * context (-EFAULT) and the context checks of arch_set_info_guest on the
 * not yet initialised vCPU 1 (-EINVAL each), VCPUOP_up of an uninitialised
 * vCPU (-EINVAL). It then brings vCPU 1 up and checks VCPUOP_is_up,
 * VCPUOP_up of an up vCPU, VCPUOP_down of another vCPU and of itself (the
 * call returns only once vCPU 0 ups it again), VCPUOP_send_nmi with an
 * argument and VCPUOP_get_physid of an unpinned vCPU.
 */

#include <xenpy-guest.h>
#include <xenpy-guest/setup.h>

const char test_title[] = "vCPU lifecycle and vcpu_op dispatch";

#define WAIT_NS          (5 * NSEC_PER_SEC)

/* Canonical, but in Xen's range: __addr_ok() refuses it (spec 1.2 cmd 5). */
#define XEN_RANGE_ADDR   0xffff800000000000UL
#define NON_CANONICAL    0x0000800000000000UL
/* An mfn far beyond any machine memory. */
#define BAD_CR3          (0xfffffffUL << PAGE_SHIFT)

static struct vcpu_guest_context ctxt;

/* Requests from vCPU 0 to vCPU 1 and vCPU 1's answers. */
static unsigned int ap_go_down;
static unsigned int ap_down_returned;
static long ap_down_rc;

static long initialise(unsigned int id, struct vcpu_guest_context *c)
{
    return HYPERVISOR_vcpu_op(VCPUOP_initialise, id, c);
}

/* One broken context for vCPU 1: VCPUOP_initialise must refuse it (-EINVAL). */
#define BAD_CONTEXT(id_, what_, stmt_)                                  \
    do {                                                                \
        smp_build_context(&ctxt, 1);                                         \
        stmt_;                                                          \
        check(id_, "1.3", initialise(1, &ctxt), -XEN_EINVAL,            \
              "VCPUOP_initialise with %s", what_);                      \
    } while ( 0 )

static void check_dispatch(unsigned int nr)
{
    check("bad-vcpuid", "1.1", HYPERVISOR_vcpu_op(VCPUOP_is_up, nr, NULL),
          -XEN_ENOENT, "VCPUOP_is_up of vcpuid %u (= the number of vCPUs)", nr);
    check("bad-vcpuid-huge", "1.1", HYPERVISOR_vcpu_op(VCPUOP_up, ~0U, NULL),
          -XEN_ENOENT, "VCPUOP_up of vcpuid 0xffffffff");
    check("bad-vcpuid-unknown-cmd", "1.1", HYPERVISOR_vcpu_op(16, nr, NULL),
          -XEN_ENOENT, "unknown VCPUOP_ cmd 16 with a bad vcpuid");
    check("unknown-cmd-16", "1.1", HYPERVISOR_vcpu_op(16, 0, NULL),
          -XEN_ENOSYS, "unknown VCPUOP_ cmd 16");
    check("unknown-cmd-neg", "1.1", HYPERVISOR_vcpu_op(-1, 0, NULL),
          -XEN_ENOSYS, "unknown VCPUOP_ cmd -1");
    check("unknown-cmd-large", "1.1", HYPERVISOR_vcpu_op(0x7fffffff, 0, NULL),
          -XEN_ENOSYS, "unknown VCPUOP_ cmd 0x7fffffff");
}

static void check_initialise_errors(void)
{
    smp_build_context(&ctxt, 0);
    check("init-initialised", "1.2", initialise(0, &ctxt), -XEN_EEXIST,
          "VCPUOP_initialise of the initialised vCPU 0");
    smp_build_context(&ctxt, 0);
    ctxt.vm_assist = 1UL << 20;
    check("init-initialised-bad-vmassist", "1.2", initialise(0, &ctxt), -XEN_EEXIST,
          "VCPUOP_initialise of vCPU 0 with a bad vm_assist (-EEXIST first)");
    check("init-fault", "1.2", HYPERVISOR_vcpu_op(VCPUOP_initialise, 1, NULL),
          -XEN_EFAULT, "VCPUOP_initialise with a NULL context");
    check("init-fault-noncanonical", "1.2",
          HYPERVISOR_vcpu_op(VCPUOP_initialise, 1, (void *)NON_CANONICAL),
          -XEN_EFAULT, "VCPUOP_initialise with a non-canonical context pointer");

    /* Bad debug registers: -EINVAL from 4.18; 4.17 accepts the context. */
    if ( test_profile()->initialise_checks_debugregs )
    {
        BAD_CONTEXT("init-dr6-wide", "debugreg[6] = 1 << 32",
                    ctxt.debugreg[6] |= 1UL << 32);
        BAD_CONTEXT("init-dr7-wide", "debugreg[7] = 1 << 32",
                    ctxt.debugreg[7] |= 1UL << 32);
        BAD_CONTEXT("init-dr0-xen", "debugreg[0] in Xen's range",
                    ctxt.debugreg[0] = XEN_RANGE_ADDR);
        BAD_CONTEXT("init-dr3-noncanonical", "debugreg[3] non-canonical",
                    ctxt.debugreg[3] = NON_CANONICAL);
    }

    BAD_CONTEXT("init-rip", "a non-canonical rip",
                ctxt.user_regs.rip = NON_CANONICAL);
    BAD_CONTEXT("init-rsp", "a non-canonical rsp",
                ctxt.user_regs.rsp = NON_CANONICAL);
    BAD_CONTEXT("init-kernel-sp", "a non-canonical kernel_sp",
                ctxt.kernel_sp = NON_CANONICAL);
    BAD_CONTEXT("init-fs-base", "a non-canonical fs_base",
                ctxt.fs_base = NON_CANONICAL);
    BAD_CONTEXT("init-gs-base-user", "a non-canonical gs_base_user",
                ctxt.gs_base_user = NON_CANONICAL);
    BAD_CONTEXT("init-event-cb", "a non-canonical event_callback_eip",
                ctxt.event_callback_eip = NON_CANONICAL);
    BAD_CONTEXT("init-failsafe-cb", "a non-canonical failsafe_callback_eip",
                ctxt.failsafe_callback_eip = NON_CANONICAL);
    BAD_CONTEXT("init-syscall-cb", "a non-canonical syscall_callback_eip",
                ctxt.syscall_callback_eip = NON_CANONICAL);
    BAD_CONTEXT("init-trap-addr", "a non-canonical trap_ctxt[255].address",
                ctxt.trap_ctxt[255].address = NON_CANONICAL);
    BAD_CONTEXT("init-ldt-noncanonical", "ldt_ents 1 and a non-canonical ldt_base",
                (ctxt.ldt_ents = 1, ctxt.ldt_base = NON_CANONICAL));
    BAD_CONTEXT("init-ldt-xen", "ldt_base in Xen's range",
                ctxt.ldt_base = XEN_RANGE_ADDR);
    BAD_CONTEXT("init-ldt-misaligned", "ldt_base not page-aligned",
                (ctxt.ldt_ents = 1, ctxt.ldt_base = 0x400008));
    BAD_CONTEXT("init-ldt-ents", "ldt_ents 8193",
                ctxt.ldt_ents = 8193);
    BAD_CONTEXT("init-gdt-frames", "gdt_ents 8193 (17 frames)",
                ctxt.gdt_ents = 8193);
    BAD_CONTEXT("init-gdt-ents", "gdt_ents 7169 (> FIRST_RESERVED_GDT_ENTRY)",
                ctxt.gdt_ents = 7169);
    BAD_CONTEXT("init-user-no-cr1", "user mode (no VGCF_in_kernel) and no ctrlreg[1]",
                ctxt.flags &= ~VGCF_in_kernel);
    BAD_CONTEXT("init-bad-cr3", "a cr3 the domain does not own",
                ctxt.ctrlreg[3] = BAD_CR3);
    BAD_CONTEXT("init-bad-cr1", "a user L4 (ctrlreg[1]) the domain does not own",
                ctxt.ctrlreg[1] = BAD_CR3);

    check("is-up-after-errors", "1.2", HYPERVISOR_vcpu_op(VCPUOP_is_up, 1, NULL), 0,
          "VCPUOP_is_up of vCPU 1 after refused VCPUOP_initialise calls");
    check("up-uninitialised", "1.2", HYPERVISOR_vcpu_op(VCPUOP_up, 1, NULL), -XEN_EINVAL,
          "VCPUOP_up of the uninitialised vCPU 1");
}

/* Runs on vCPU 1: on request, down itself; the call returns after VCPUOP_up. */
static void ap_fn(unsigned int id)
{
    while ( !READ_ONCE(ap_go_down) )
        (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);

    WRITE_ONCE(ap_down_rc, HYPERVISOR_vcpu_op(VCPUOP_down, id, NULL));
    __atomic_store_n(&ap_down_returned, 1, __ATOMIC_SEQ_CST);
}

static bool wait_until(bool (*cond)(void))
{
    uint64_t deadline = now_ns() + WAIT_NS;

    while ( !cond() && now_ns() < deadline )
        (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);

    return cond();
}

static bool vcpu1_down(void)
{
    return HYPERVISOR_vcpu_op(VCPUOP_is_up, 1, NULL) == 0;
}

static bool down_returned(void)
{
    return __atomic_load_n(&ap_down_returned, __ATOMIC_SEQ_CST);
}

static void check_up_down(void)
{
    long rc;

    check("is-up-self", "1.2", HYPERVISOR_vcpu_op(VCPUOP_is_up, 0, NULL), 1,
          "VCPUOP_is_up of vCPU 0");
    check("is-up-before", "1.2", HYPERVISOR_vcpu_op(VCPUOP_is_up, 1, NULL), 0,
          "VCPUOP_is_up of vCPU 1 before VCPUOP_initialise");

    rc = smp_bring_up(2, ap_fn);
    if ( rc )
    {
        xtf_error("Error: bringing up vCPU 1 failed: %ld\n", rc);
        return;
    }

    check("is-up-after", "1.2", HYPERVISOR_vcpu_op(VCPUOP_is_up, 1, NULL), 1,
          "VCPUOP_is_up of vCPU 1 after VCPUOP_up");
    check("up-up", "1.2", HYPERVISOR_vcpu_op(VCPUOP_up, 1, NULL), 0,
          "VCPUOP_up of the up vCPU 1");
    check("up-self", "1.2", HYPERVISOR_vcpu_op(VCPUOP_up, 0, NULL), 0,
          "VCPUOP_up of vCPU 0 (itself)");
    smp_build_context(&ctxt, 1);
    check("init-up-vcpu", "1.2", initialise(1, &ctxt), -XEN_EEXIST,
          "VCPUOP_initialise of the up vCPU 1");

    /* Down another vCPU, then up it again. */
    check("down-other", "1.2", HYPERVISOR_vcpu_op(VCPUOP_down, 1, NULL), 0,
          "VCPUOP_down of vCPU 1");
    check("is-up-down", "1.2", HYPERVISOR_vcpu_op(VCPUOP_is_up, 1, NULL), 0,
          "VCPUOP_is_up of vCPU 1 after VCPUOP_down");
    check("down-down", "1.2", HYPERVISOR_vcpu_op(VCPUOP_down, 1, NULL), 0,
          "VCPUOP_down of the down vCPU 1");
    check("init-down-vcpu", "1.2", initialise(1, &ctxt), -XEN_EEXIST,
          "VCPUOP_initialise of the initialised, down vCPU 1");
    check("up-again", "1.2", HYPERVISOR_vcpu_op(VCPUOP_up, 1, NULL), 0,
          "VCPUOP_up of the down vCPU 1");
    check("is-up-again", "1.2", HYPERVISOR_vcpu_op(VCPUOP_is_up, 1, NULL), 1,
          "VCPUOP_is_up of vCPU 1 after VCPUOP_up again");

    /* vCPU 1 downs itself: the call returns only once it is up again. */
    __atomic_store_n(&ap_go_down, 1, __ATOMIC_SEQ_CST);
    check("self-down-is-up", "1.2", wait_until(vcpu1_down), 1,
          "VCPUOP_down of itself by vCPU 1: VCPUOP_is_up says down (1 = yes)");
    check("self-down-blocks", "1.2", down_returned(), 0,
          "VCPUOP_down of itself by vCPU 1 has not returned while it is down");
    check("self-down-up", "1.2", HYPERVISOR_vcpu_op(VCPUOP_up, 1, NULL), 0,
          "VCPUOP_up of vCPU 1, down by its own VCPUOP_down");
    check("self-down-returns", "1.2", wait_until(down_returned), 1,
          "VCPUOP_down of itself by vCPU 1 returned after VCPUOP_up");
    check("self-down-rc", "1.2", READ_ONCE(ap_down_rc), 0,
          "VCPUOP_down of itself by vCPU 1: its result");
}

static void check_misc(void)
{
    uint64_t physid = 0;
    unsigned long dummy = 0;

    check("send-nmi-arg", "1.2", HYPERVISOR_vcpu_op(VCPUOP_send_nmi, 0, &dummy),
          -XEN_EINVAL, "VCPUOP_send_nmi with arg != NULL");
    check("get-physid", "1.2", HYPERVISOR_vcpu_op(VCPUOP_get_physid, 0, &physid),
          -XEN_EINVAL, "VCPUOP_get_physid of an unpinned vCPU");
}

void test_main(void)
{
    unsigned int nr;

    (void)test_profile();

    nr = smp_nr_vcpus();
    printk("The domain has %u vCPU(s)\n", nr);
    if ( nr < 2 )
    {
        xtf_skip("Skip: needs at least 2 vCPUs\n");
        return;
    }

    check_dispatch(nr);
    check_initialise_errors();
    check_up_down();
    check_misc();

    if ( xtf_ok() )
        xtf_success(NULL);
}
