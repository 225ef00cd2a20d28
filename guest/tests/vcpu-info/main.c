/*
 * vcpu-info: VCPUOP_register_vcpu_info (spec 1.2 cmd 10, 1.4, 4.1) and the
 * secondary vcpu_time_info copies (cmds 13 and 15, spec 1.2, 3.6).
 *
 * vCPU 0, with vCPU 1 up and idle (blocked):
 *   - register_vcpu_info errors: an unreadable argument, offsets past the
 *     last 64-byte slot and past the page, a misaligned offset, frames the
 *     domain does not own, a page-table page;
 *   - registers its own vcpu_info at offset 64 of a .bss page with events
 *     masked: all 64 bytes are copied from the shared_info slot (the mask, a
 *     marker in arch.cr2), then Xen sets every selector bit and
 *     upcall_pending (the deliberate spurious event) and refreshes the time
 *     record; an event sent to itself afterwards lands in the new area only;
 *   - registers again: -EBUSY (map_guest_area) or -EINVAL (map_vcpu_info),
 *     and with a bad offset the two orders of checks differ;
 *   - registers vCPU 1's vcpu_info while vCPU 1 is up: allowed (the target is
 *     paused) or -EINVAL; an IPI to vCPU 1 is handled either way;
 *   - VCPUOP_register_vcpu_time_memory_area: -EFAULT cases, then the
 *     secondary copy is written at once and matches vcpu_info.time;
 *   - VCPUOP_register_vcpu_time_phys_area: -ENOSYS where the profile has no
 *     phys areas, else the same copy at a machine address, -ENXIO for a
 *     misaligned one, ~0 to unregister.
 */

#include <xenpy-guest.h>

const char test_title[] = "vcpu_info registration and secondary time records";

#define WAIT_NS         (2 * NSEC_PER_SEC)
#define CR2_MARKER      0x5a5a5a5a12345678UL

/* VCPUOP_register_vcpu_info targets: vCPU 0 at offset 64, vCPU 1 at 128. */
static uint8_t vi_page[PAGE_SIZE] __page_aligned_bss;
#define VI0_OFFSET      64
#define VI1_OFFSET      128

/* VCPUOP_register_vcpu_time_memory_area and _phys_area targets. */
static vcpu_time_info_t time_va_area __aligned(64);
static uint8_t time_phys_page[PAGE_SIZE] __page_aligned_bss;

static const struct xen_profile *prof;

static volatile unsigned int nr_ipi[2];

static void ipi_handler(evtchn_port_t port, void *data)
{
    (void)port;
    (void)data;
    __atomic_fetch_add(&nr_ipi[smp_processor_id()], 1, __ATOMIC_SEQ_CST);
}

static long register_vcpu_info(unsigned int vcpu, uint64_t mfn, uint32_t offset,
                               uint32_t rsvd)
{
    struct vcpu_register_vcpu_info r = {
        .mfn = mfn, .offset = offset, .rsvd = rsvd,
    };

    return HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, vcpu, &r);
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

/*
 * Copy the primary (vcpu_info.time) and a secondary time record with the
 * version protocol of spec 3.6, retrying until both are stable and of the
 * same version. Returns false if that never happens.
 */
static bool read_time_pair(const volatile vcpu_time_info_t *pri,
                           const volatile vcpu_time_info_t *sec,
                           vcpu_time_info_t *p, vcpu_time_info_t *s)
{
    for ( unsigned int i = 0; i < 100; i++ )
    {
        uint32_t v1 = pri->version, v2 = sec->version;

        rmb();
        *p = *(const vcpu_time_info_t *)pri;
        *s = *(const vcpu_time_info_t *)sec;
        rmb();
        if ( (v1 & 1) || (v2 & 1) || v1 != pri->version || v2 != sec->version )
            continue;
        return true;
    }

    return false;
}

static void check_time_copy(const char *prefix, const char *sec_what,
                            const vcpu_time_info_t *sec_area, bool phys)
{
    vcpu_time_info_t p, s;
    char id[48];
    bool ok = read_time_pair(&this_vcpu_info()->time, sec_area, &p, &s);

    snprintf(id, sizeof(id), "%s-stable", prefix);
    check(id, "3.6", ok, 1, "%s: both time records stable", sec_what);

    snprintf(id, sizeof(id), "%s-version-even", prefix);
    check(id, "3.6", s.version & 1, 0, "%s: secondary version even", sec_what);
    printk("%s: versions: vcpu_info.time %u, secondary %u\n", sec_what, p.version, s.version);
    snprintf(id, sizeof(id), "%s-version", prefix);
    if ( phys )
        /*
         * The populate step writes the area with version 0 (-1 + 1,
         * force_update_secondary_system_time); the next update of the
         * primary record gives it the primary's version.
         */
        check(id, "1.2", s.version == 0 || s.version == p.version, 1,
              "%s: secondary version 0 (populate) or vcpu_info.time.version", sec_what);
    else
        check(id, "3.6", s.version == p.version, 1,
              "%s: secondary version == vcpu_info.time.version", sec_what);
    snprintf(id, sizeof(id), "%s-tsc", prefix);
    check(id, "3.6", s.tsc_timestamp == p.tsc_timestamp, 1,
          "%s: secondary tsc_timestamp == vcpu_info.time's", sec_what);
    snprintf(id, sizeof(id), "%s-system-time", prefix);
    check(id, "3.6", s.system_time == p.system_time, 1,
          "%s: secondary system_time == vcpu_info.time's", sec_what);
    snprintf(id, sizeof(id), "%s-mul", prefix);
    check(id, "3.6", s.tsc_to_system_mul == p.tsc_to_system_mul, 1,
          "%s: secondary tsc_to_system_mul == vcpu_info.time's", sec_what);
    snprintf(id, sizeof(id), "%s-shift", prefix);
    check(id, "3.6", s.tsc_shift == p.tsc_shift, 1,
          "%s: secondary tsc_shift == vcpu_info.time's", sec_what);
    snprintf(id, sizeof(id), "%s-flags", prefix);
    check_hex(id, "3.6", s.flags, p.flags,
              "%s: secondary flags == vcpu_info.time's", sec_what);
}

static void test_errors(xen_pfn_t mfn)
{
    long rc;

    rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, 0, NULL);
    check("reg-efault", "4.1", rc, -XEN_EFAULT,
          "VCPUOP_register_vcpu_info: unreadable argument");

    rc = register_vcpu_info(0, mfn, PAGE_SIZE - 64 + 8, 0);
    check("reg-offset-4040", "1.4", rc, prof->vcpu_info_offset_errno,
          "VCPUOP_register_vcpu_info: offset 4040 (crosses the page)");

    rc = register_vcpu_info(0, mfn, PAGE_SIZE, 0);
    check("reg-offset-4096", "1.4", rc,
          prof->vcpu_info_map_guest_area ? -XEN_EINVAL : prof->vcpu_info_offset_errno,
          "VCPUOP_register_vcpu_info: offset 4096 (gaddr leaves the frame)");

    if ( prof->vcpu_info_misaligned_errno )
    {
        rc = register_vcpu_info(0, mfn, 4, 0);
        check("reg-misaligned", "1.4", rc, prof->vcpu_info_misaligned_errno,
              "VCPUOP_register_vcpu_info: offset 4 (misaligned)");
    }

    rc = register_vcpu_info(0, 1UL << 40, 0, 0);
    check("reg-bad-mfn", "4.1", rc, -XEN_EINVAL,
          "VCPUOP_register_vcpu_info: mfn 1 << 40 (no such frame)");

    rc = register_vcpu_info(0, 1UL << 52, 0, 0);
    check("reg-mfn-overflow", "4.1", rc, -XEN_EINVAL,
          "VCPUOP_register_vcpu_info: mfn 1 << 52 (mfn << 12 overflows)");

    rc = register_vcpu_info(0, virt_to_mfn((const void *)start_info->pt_base), 0, 0);
    check("reg-pagetable", "1.4", rc,
          prof->vcpu_info_map_guest_area ? -XEN_EACCES : -XEN_EINVAL,
          "VCPUOP_register_vcpu_info: the L4 page table (not writable-typeable)");
}

/* Register vCPU 0's vcpu_info with events masked; see the header. */
static bool test_register_self(xen_pfn_t mfn)
{
    vcpu_info_t *old = &shared_info->vcpu_info[0];
    vcpu_info_t *new = (vcpu_info_t *)(vi_page + VI0_OFFSET);
    uint32_t old_version;
    uint64_t old_stime;
    long rc, port;

    local_irq_disable();
    WRITE_ONCE(old->evtchn_upcall_pending, 0);
    WRITE_ONCE(old->evtchn_pending_sel, 0);
    WRITE_ONCE(old->arch.cr2, CR2_MARKER);
    memset(new, 0xa5, sizeof(*new));
    old_version = READ_ONCE(old->time.version) & ~1U;
    old_stime = READ_ONCE(old->time.system_time);
    mb();

    /* rsvd is ignored (spec 4.1). */
    rc = register_vcpu_info(0, mfn, VI0_OFFSET, 0xdeadbeef);
    check("reg-self", "4.1", rc, 0, "VCPUOP_register_vcpu_info: vCPU 0 itself, offset 64");
    if ( rc )
    {
        local_irq_enable();
        return false;
    }
    set_vcpu_info_area(0, new);

    check("reg-copy-mask", "4.1", READ_ONCE(new->evtchn_upcall_mask), 1,
          "VCPUOP_register_vcpu_info: evtchn_upcall_mask copied from the old slot");
    check_hex("reg-copy-cr2", "4.1", READ_ONCE(new->arch.cr2), CR2_MARKER,
              "VCPUOP_register_vcpu_info: arch.cr2 copied from the old slot");
    check_hex("reg-sel-all", "4.1", READ_ONCE(new->evtchn_pending_sel), ~0UL,
              "VCPUOP_register_vcpu_info: evtchn_pending_sel all ones");
    check("reg-upcall-pending", "4.1", READ_ONCE(new->evtchn_upcall_pending), 1,
          "VCPUOP_register_vcpu_info: evtchn_upcall_pending raised (spurious event)");
    check("reg-time-version-even", "3.6", READ_ONCE(new->time.version) & 1, 0,
          "VCPUOP_register_vcpu_info: time.version even");
    check("reg-time-refresh", "1.4",
          (uint32_t)(READ_ONCE(new->time.version) - old_version) >= 2,
          prof->vcpu_info_time_refresh,
          "VCPUOP_register_vcpu_info: time rewritten (version advanced)");
    check("reg-time-system-time", "4.1", READ_ONCE(new->time.system_time) >= old_stime, 1,
          "VCPUOP_register_vcpu_info: time.system_time not older than the old slot's");
    check("reg-old-untouched", "4.1", READ_ONCE(old->evtchn_upcall_pending), 0,
          "VCPUOP_register_vcpu_info: the old slot's upcall_pending left alone");

    /* An event for vCPU 0 now marks the new area only. */
    port = evtchn_bind_ipi(0, ipi_handler, NULL);
    if ( port <= 0 )
    {
        local_irq_enable();
        xtf_error("Error: EVTCHNOP_bind_ipi(vCPU 0) failed: %ld\n", port);
        return false;
    }
    WRITE_ONCE(new->evtchn_upcall_pending, 0);
    WRITE_ONCE(new->evtchn_pending_sel, 0);
    mb();
    rc = evtchn_send(port);
    check("event-send", "3.5", rc, 0, "EVTCHNOP_send: to vCPU 0 after VCPUOP_register_vcpu_info");
    check("event-new-pending", "4.1", READ_ONCE(new->evtchn_upcall_pending), 1,
          "VCPUOP_register_vcpu_info: an event raises upcall_pending in the new area");
    check_hex("event-new-sel", "4.1", READ_ONCE(new->evtchn_pending_sel),
              1UL << (port / BITS_PER_LONG),
              "VCPUOP_register_vcpu_info: an event sets its selector bit in the new area");
    check("event-old-pending", "4.1", READ_ONCE(old->evtchn_upcall_pending), 0,
          "VCPUOP_register_vcpu_info: the old slot is no longer written");
    check_hex("event-old-sel", "4.1", READ_ONCE(old->evtchn_pending_sel), 0,
              "VCPUOP_register_vcpu_info: the old slot's selector stays clear");

    local_irq_enable();
    check("event-handled", "4.1", READ_ONCE(nr_ipi[0]), 1,
          "VCPUOP_register_vcpu_info: the upcall finds the event through the new area");

    return true;
}

static void test_reregister(xen_pfn_t mfn)
{
    long rc;

    rc = register_vcpu_info(0, mfn, 192, 0);
    check("rereg-self", "1.4", rc, prof->vcpu_info_map_guest_area ? -XEN_EBUSY : -XEN_EINVAL,
          "VCPUOP_register_vcpu_info: vCPU 0 again");

    /* map_guest_area checks "registered" before the offset; map_vcpu_info after. */
    rc = register_vcpu_info(0, mfn, PAGE_SIZE - 64 + 8, 0);
    check("rereg-bad-offset", "4.1", rc,
          prof->vcpu_info_map_guest_area ? -XEN_EBUSY : prof->vcpu_info_offset_errno,
          "VCPUOP_register_vcpu_info: vCPU 0 again, offset 4040");
}

static void test_register_remote(xen_pfn_t mfn)
{
    vcpu_info_t *new = (vcpu_info_t *)(vi_page + VI1_OFFSET);
    long rc, port;

    /*
     * vCPU 1 is blocked. Its runtime looks at the new area from now on (a
     * copy of its slot until Xen takes over the area).
     */
    memcpy(new, &shared_info->vcpu_info[1], sizeof(*new));
    set_vcpu_info_area(1, new);
    mb();

    check("reg-remote-up", "1.4", HYPERVISOR_vcpu_op(VCPUOP_is_up, 1, NULL), 1,
          "VCPUOP_is_up: vCPU 1 before VCPUOP_register_vcpu_info");
    rc = register_vcpu_info(1, mfn, VI1_OFFSET, 0);
    check("reg-remote", "1.4", rc, prof->vcpu_info_map_guest_area ? 0 : -XEN_EINVAL,
          "VCPUOP_register_vcpu_info: vCPU 1 while it is up");
    if ( rc )
        set_vcpu_info_area(1, NULL);
    else
        check("reg-remote-rereg", "1.4", register_vcpu_info(1, mfn, 256, 0), -XEN_EBUSY,
              "VCPUOP_register_vcpu_info: vCPU 1 again");

    /* Either way, vCPU 1 still handles its events. */
    port = evtchn_bind_ipi(1, ipi_handler, NULL);
    if ( port <= 0 )
    {
        xtf_error("Error: EVTCHNOP_bind_ipi(vCPU 1) failed: %ld\n", port);
        return;
    }
    rc = evtchn_send(port);
    check("remote-event-send", "3.5", rc, 0, "EVTCHNOP_send: to vCPU 1");
    check("remote-event-handled", "4.1", wait_for(&nr_ipi[1], 1), 1,
          "VCPUOP_register_vcpu_info: vCPU 1 handles an IPI afterwards");
}

static void test_time_memory_area(void)
{
    struct vcpu_register_time_memory_area a;
    long rc;

    rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_time_memory_area, 0, NULL);
    check("time-va-efault", "1.2", rc, -XEN_EFAULT,
          "VCPUOP_register_vcpu_time_memory_area: unreadable argument");

    a.addr.p = 0x0000800000000000UL;
    rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_time_memory_area, 0, &a);
    check("time-va-bad-addr", "1.2", rc, -XEN_EFAULT,
          "VCPUOP_register_vcpu_time_memory_area: address 2^47 (not guest_handle_okay)");

    memset(&time_va_area, 0xff, sizeof(time_va_area));
    a.addr.p = 0;
    a.addr.v = &time_va_area;
    rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_time_memory_area, 0, &a);
    check("time-va", "1.2", rc, 0, "VCPUOP_register_vcpu_time_memory_area: vCPU 0");
    if ( rc == 0 )
        check_time_copy("time-va", "VCPUOP_register_vcpu_time_memory_area", &time_va_area,
                        false);
}

static void test_time_phys_area(void)
{
    struct vcpu_register_time_memory_area a;
    const vcpu_time_info_t *t = (const vcpu_time_info_t *)(time_phys_page + 64);
    long rc;

    memset(time_phys_page, 0xff, 128);
    a.addr.p = virt_to_maddr(t);
    rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_time_phys_area, 0, &a);
    check("time-phys", "1.4", rc, prof->phys_areas ? 0 : -XEN_ENOSYS,
          "VCPUOP_register_vcpu_time_phys_area: vCPU 0, machine address");
    if ( !prof->phys_areas || rc )
        return;

    check_time_copy("time-phys", "VCPUOP_register_vcpu_time_phys_area", t, true);

    a.addr.p = virt_to_maddr(time_phys_page + 4);
    rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_time_phys_area, 0, &a);
    check("time-phys-misaligned", "4.1", rc, -XEN_ENXIO,
          "VCPUOP_register_vcpu_time_phys_area: address not 8-byte aligned");

    a.addr.p = virt_to_maddr(time_phys_page + PAGE_SIZE - 16);
    rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_time_phys_area, 0, &a);
    check("time-phys-cross", "4.1", rc, -XEN_ENXIO,
          "VCPUOP_register_vcpu_time_phys_area: area crosses a page");

    a.addr.p = ~0UL;
    rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_time_phys_area, 0, &a);
    check("time-phys-unregister", "1.2", rc, 0,
          "VCPUOP_register_vcpu_time_phys_area: ~0 unregisters");
}

void test_main(void)
{
    xen_pfn_t mfn = virt_to_mfn(vi_page);
    int rc;

    prof = test_profile();

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

    test_errors(mfn);
    if ( test_register_self(mfn) )
        test_reregister(mfn);
    test_register_remote(mfn);
    test_time_memory_area();
    test_time_phys_area();

    if ( xtf_ok() )
        xtf_success(NULL);
}
