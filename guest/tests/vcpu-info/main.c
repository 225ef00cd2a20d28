/*
 * vcpu-info: VCPUOP_register_vcpu_info (spec 1.2 cmd 10, 1.4, 4.1). Needs
 * 3 vCPUs: vCPU 1 is brought up (a remote registration of an up vCPU),
 * vCPU 2 stays down (a remote registration of a down vCPU), and vCPU 0
 * registers its own last, with events masked for the rest of the test: the
 * runtime keeps using the shared_info slots, which Xen no longer reads.
 *
 * All three vcpu_infos go into one page, 64 bytes apart. What differs between
 * releases comes from the profile: vcpu_info_map_guest_area (the >= 4.18
 * checks and errnos), vcpu_info_offset_errno, vcpu_info_misaligned_errno,
 * phys_areas. The secondary time records (cmds 13 and 15) are checked too.
 */

#include <xenpy-guest.h>

const char test_title[] = "VCPUOP_register_vcpu_info: checks, copied contents, the spurious event";

#define UNMAPPED_VA   0x10000UL
#define NO_SUCH_MFN   (1UL << 36)
#define WAIT_NS       (5 * NSEC_PER_SEC)

static uint8_t vi_page[PAGE_SIZE] __page_aligned_bss;
static volatile bool release_ap;
/* Secondary time records (VCPUOP_register_vcpu_time_memory_area and the phys form). */
static vcpu_time_info_t time_va __aligned(64);
static vcpu_time_info_t time_phys __aligned(64);

static long register_vi(unsigned int vcpu, unsigned long mfn, unsigned int offset)
{
    vcpu_register_vcpu_info_t r = { .mfn = mfn, .offset = offset };

    return HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, vcpu, &r);
}

static unsigned long mfn_of(const void *va)
{
    return p2m_list()[virt_to_pfn(va)];
}

static vcpu_info_t *new_vi(unsigned int vcpu)
{
    return (vcpu_info_t *)(vi_page + vcpu * sizeof(vcpu_info_t));
}

/* vCPU 1: events masked (in its shared_info slot, copied by a registration), yield until released. */
static void ap_hold(unsigned int vcpu_id)
{
    uint64_t end = now_ns() + WAIT_NS;

    (void)vcpu_id;
    local_irq_disable();
    while ( !release_ap && now_ns() < end )
        (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
}

static void test_errors(const struct xen_profile *p)
{
    unsigned long page = mfn_of(vi_page);
    unsigned long l4 = mfn_of((void *)start_info->pt_base);

    check("fault", "4.1", HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, 0, (void *)UNMAPPED_VA), -XEN_EFAULT,
          "VCPUOP_register_vcpu_info with an unmapped argument");
    check("offset-4096", "4.1", register_vi(0, page, PAGE_SIZE),
          p->vcpu_info_map_guest_area ? -XEN_EINVAL : p->vcpu_info_offset_errno,
          "VCPUOP_register_vcpu_info at offset 4096");
    check("offset-crosses", "4.1", register_vi(0, page, PAGE_SIZE - 56), p->vcpu_info_offset_errno,
          "VCPUOP_register_vcpu_info at offset 4040 (crosses the page)");
    if ( p->vcpu_info_misaligned_errno )
        check("offset-misaligned", "4.1", register_vi(0, page, 4), p->vcpu_info_misaligned_errno,
              "VCPUOP_register_vcpu_info at offset 4 (misaligned)");
    check("no-such-mfn", "4.1", register_vi(0, NO_SUCH_MFN, 0), -XEN_EINVAL,
          "VCPUOP_register_vcpu_info in a frame that does not exist");
    check("page-table", "4.1", register_vi(0, l4, 0), p->vcpu_info_map_guest_area ? -XEN_EACCES : -XEN_EINVAL,
          "VCPUOP_register_vcpu_info in the L4 page-table page");
}

static long register_time(unsigned int cmd, uint64_t addr)
{
    vcpu_register_time_memory_area_t r = { .addr.p = addr };

    return HYPERVISOR_vcpu_op(cmd, 0, &r);
}

/* VCPUOP_register_vcpu_time_memory_area (13) and _phys_area (15): checks, and the copy written at once. */
static void test_time_areas(const struct xen_profile *p)
{
    uint32_t mul = READ_ONCE(this_vcpu_info()->time.tsc_to_system_mul);
    unsigned long phys = (mfn_of(&time_phys) << PAGE_SHIFT) | ((unsigned long)&time_phys & (PAGE_SIZE - 1));
    long rc;

    check("time-fault", "1.2",
          HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_time_memory_area, 0, (void *)UNMAPPED_VA), -XEN_EFAULT,
          "VCPUOP_register_vcpu_time_memory_area with an unmapped argument");
    check("time-bad-address", "1.2",
          register_time(VCPUOP_register_vcpu_time_memory_area, 0x0000800000000000UL), -XEN_EFAULT,
          "VCPUOP_register_vcpu_time_memory_area at a non-canonical address");
    check("time-va", "1.2", register_time(VCPUOP_register_vcpu_time_memory_area, (unsigned long)&time_va), 0,
          "VCPUOP_register_vcpu_time_memory_area");
    check("time-va-written", "3.6", READ_ONCE(time_va.tsc_to_system_mul) == mul && !(time_va.version & 1), 1,
          "VCPUOP_register_vcpu_time_memory_area: the copy is written at once (vcpu_info's mul, even version)");

    rc = register_time(VCPUOP_register_vcpu_time_phys_area, phys);
    check("time-phys", "1.2", rc, p->phys_areas ? 0 : -XEN_ENOSYS, "VCPUOP_register_vcpu_time_phys_area");
    if ( rc == 0 )
        check("time-phys-written", "3.6",
              READ_ONCE(time_phys.tsc_to_system_mul) == mul && !(time_phys.version & 1), 1,
              "VCPUOP_register_vcpu_time_phys_area: the copy is written at once (vcpu_info's mul, even version)");
}

/* The effects every registration has (spec 4.1): the spurious event, the copied mask, a time record. */
static void check_effects(const char *who, unsigned int vcpu, uint8_t old_mask)
{
    vcpu_info_t *vi = new_vi(vcpu);
    char id[40];

    snprintf(id, sizeof(id), "%s-sel", who);
    check_hex(id, "4.1", READ_ONCE(vi->evtchn_pending_sel), ~0UL,
              "VCPUOP_register_vcpu_info of vCPU %u: evtchn_pending_sel", vcpu);
    snprintf(id, sizeof(id), "%s-pending", who);
    check(id, "4.1", READ_ONCE(vi->evtchn_upcall_pending), 1,
          "VCPUOP_register_vcpu_info of vCPU %u: evtchn_upcall_pending", vcpu);
    snprintf(id, sizeof(id), "%s-mask", who);
    check(id, "4.1", READ_ONCE(vi->evtchn_upcall_mask) == old_mask, 1,
          "VCPUOP_register_vcpu_info of vCPU %u: evtchn_upcall_mask copied from the old slot", vcpu);
}

void test_main(void)
{
    const struct xen_profile *p = test_profile();
    unsigned long page = mfn_of(vi_page);
    uint8_t old_mask;
    vcpu_info_t *vi;
    int rc;

    if ( smp_nr_vcpus() < 3 )
    {
        xtf_skip("Skip: needs 3 vCPUs\n");
        return;
    }
    test_errors(p);
    test_time_areas(p);

    /* vCPU 2, down (never initialised): any release accepts it. */
    old_mask = READ_ONCE(vcpu_info_of(2)->evtchn_upcall_mask);
    check("remote-down", "4.1", register_vi(2, page, 2 * sizeof(vcpu_info_t)), 0,
          "VCPUOP_register_vcpu_info of vCPU 2 (down)");
    check_effects("remote-down", 2, old_mask);
    check("remote-down-again", "4.1", register_vi(2, page, 2 * sizeof(vcpu_info_t)),
          p->vcpu_info_map_guest_area ? -XEN_EBUSY : -XEN_EINVAL,
          "VCPUOP_register_vcpu_info of vCPU 2 again");

    /* vCPU 1, up: allowed (the target is paused) only with map_guest_area. */
    rc = smp_bring_up(2, ap_hold);
    if ( rc )
    {
        xtf_error("Error: bringing up vCPU 1 failed: %d\n", rc);
        return;
    }
    while ( !READ_ONCE(vcpu_info_of(1)->evtchn_upcall_mask) )
        (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    rc = register_vi(1, page, sizeof(vcpu_info_t));
    check("remote-up", "1.4", rc, p->vcpu_info_map_guest_area ? 0 : -XEN_EINVAL,
          "VCPUOP_register_vcpu_info of vCPU 1 (up)");
    if ( rc == 0 )
        check_effects("remote-up", 1, 1);
    release_ap = true;
    check("down-vcpu1", "1.2", HYPERVISOR_vcpu_op(VCPUOP_down, 1, NULL), 0, "VCPUOP_down of vCPU 1");

    /* Self, with events masked from here on. */
    local_irq_disable();
    old_mask = READ_ONCE(this_vcpu_info()->evtchn_upcall_mask);
    check("self", "4.1", register_vi(0, page, 0), 0, "VCPUOP_register_vcpu_info of self");
    check_effects("self", 0, old_mask);
    vi = new_vi(0);
    check("self-time-version", "3.6", READ_ONCE(vi->time.version) % 2, 0,
          "VCPUOP_register_vcpu_info of self: time.version is even");
    check("self-time-set", "3.6", READ_ONCE(vi->time.tsc_to_system_mul) != 0, 1,
          "VCPUOP_register_vcpu_info of self: time record filled (tsc_to_system_mul set)");
    check("self-again", "4.1", register_vi(0, page, 0), p->vcpu_info_map_guest_area ? -XEN_EBUSY : -XEN_EINVAL,
          "VCPUOP_register_vcpu_info of self again");

    if ( xtf_ok() )
        xtf_success(NULL);
}
