/*
 * grant: GNTTABOP_map_grant_ref, unmap_grant_ref and unmap_and_replace of
 * the domain's own version-1 grants (spec 6.1).
 *
 * The kernel sets up a one-frame grant table and maps it (at grant_window)
 * to write entries. Ref 8 grants `target`, remapped read-only first so that
 * only the grant mappings hold writable references to it. Its own domain
 * id comes from EVTCHNOP_status of an unbound port it allocates (the id is
 * 0 as dom0, another number as a domU), and is never printed.
 */

#include <xenpy-guest.h>
#include <xen/grant_table.h>

const char test_title[] = "Grant mappings of the domain's own grants";

#define GNTST_okay           0
#define GNTST_general_error  (-1)
#define GNTST_bad_domain     (-2)
#define GNTST_bad_gntref     (-3)
#define GNTST_bad_handle     (-4)
#define GNTST_bad_dev_addr   (-6)
#define REF                  8
#define PTE_RO               (_PAGE_PRESENT | _PAGE_ACCESSED)
#define PTE_RW               (_PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY)

static struct grant_entry_v1 grant_window[PAGE_SIZE / sizeof(struct grant_entry_v1)] __page_aligned_bss;
/* Accessed as volatile: the compiler must not assume that writes through one name leave the other alone. */
static volatile uint8_t target[PAGE_SIZE] __page_aligned_bss;
static volatile uint8_t host[PAGE_SIZE] __page_aligned_bss;
static volatile uint8_t spare[PAGE_SIZE] __page_aligned_bss;

static int own_domid(void)
{
    struct evtchn_alloc_unbound au = { .dom = DOMID_SELF, .remote_dom = DOMID_SELF };
    struct evtchn_status st = { .dom = DOMID_SELF };
    struct evtchn_close cl;

    if ( HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound, &au) )
        return -1;
    st.port = au.port;
    if ( HYPERVISOR_event_channel_op(EVTCHNOP_status, &st) )
        return -1;
    cl.port = au.port;
    (void)HYPERVISOR_event_channel_op(EVTCHNOP_close, &cl);
    return st.u.unbound.dom;
}

static int16_t map(uint32_t ref, uint32_t flags, volatile void *addr, domid_t dom, grant_handle_t *handle,
                   uint64_t *bus)
{
    struct gnttab_map_grant_ref op = {
        .host_addr = (unsigned long)addr, .flags = flags, .ref = ref, .dom = dom, .status = 0x55,
    };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_map_grant_ref, &op, 1);

    if ( rc )
        return 0x7fff;
    if ( handle )
        *handle = op.handle;
    if ( bus )
        *bus = op.dev_bus_addr;
    return op.status;
}

static int16_t unmap(grant_handle_t handle, volatile void *addr, uint64_t bus)
{
    struct gnttab_unmap_grant_ref op = {
        .host_addr = (unsigned long)addr, .dev_bus_addr = bus, .handle = handle, .status = 0x55,
    };

    if ( HYPERVISOR_grant_table_op(GNTTABOP_unmap_grant_ref, &op, 1) )
        return 0x7fff;
    return op.status;
}

static long pin_l1(volatile void *page)
{
    struct mmuext_op op = { .cmd = MMUEXT_PIN_L1_TABLE, .arg1.mfn = virt_to_mfn((const void *)page) };

    return HYPERVISOR_mmuext_op(&op, 1, NULL, DOMID_SELF);
}

static long remap(volatile void *va, volatile void *page, uint64_t flags)
{
    return HYPERVISOR_update_va_mapping((unsigned long)va, virt_to_maddr((const void *)page) | flags, UVMF_INVLPG);
}

void test_main(void)
{
    xen_pfn_t frame = 0;
    struct gnttab_setup_table setup = { .dom = DOMID_SELF, .nr_frames = 1 };
    grant_handle_t handle = 0, handle2 = 0;
    uint64_t bus = 0;
    int domid = own_domid();

    test_profile();
    set_xen_guest_handle(setup.frame_list, &frame);
    if ( domid < 0 || HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &setup, 1) || setup.status ||
         HYPERVISOR_update_va_mapping((unsigned long)grant_window, ((uint64_t)frame << PAGE_SHIFT) | PTE_RW,
                                      UVMF_INVLPG) )
    {
        xtf_error("Error: grant table setup (domid %d, status %d)\n", domid, setup.status);
        return;
    }

    for ( unsigned int i = 0; i < PAGE_SIZE; i++ )
        target[i] = 0x5a;
    /*
     * host_addr is unmapped first (with a TLB flush): Xen does not flush the
     * TLB when it maps a grant, so a stale entry would still be used.
     */
    if ( remap(target, target, PTE_RO) ||
         HYPERVISOR_update_va_mapping((unsigned long)host, 0, UVMF_INVLPG) )
    {
        xtf_error("Error: remapping the target page read-only, or unmapping host_addr\n");
        return;
    }
    grant_window[REF].domid = domid;
    grant_window[REF].frame = virt_to_mfn((const void *)target);
    barrier();
    grant_window[REF].flags = GTF_permit_access;

    check("map-no-flags", "6.1", map(REF, GNTMAP_readonly, host, domid, NULL, NULL), GNTST_bad_gntref,
          "GNTTABOP_map_grant_ref without GNTMAP_host_map or GNTMAP_device_map");
    check("map-domid-self", "6.1", map(REF, GNTMAP_host_map, host, DOMID_SELF, NULL, NULL), GNTST_bad_domain,
          "GNTTABOP_map_grant_ref of dom DOMID_SELF");
    check("map-ref-past-table", "6.1", map(512, GNTMAP_host_map, host, domid, NULL, NULL), GNTST_bad_gntref,
          "GNTTABOP_map_grant_ref of ref 512 (a one-frame table has 512)");
    check("map-not-granted", "6.1", map(REF + 1, GNTMAP_host_map, host, domid, NULL, NULL), GNTST_general_error,
          "GNTTABOP_map_grant_ref of an entry that grants nothing");

    check("map-host-rw", "6.1", map(REF, GNTMAP_host_map | GNTMAP_device_map, host, domid, &handle, &bus),
          GNTST_okay, "GNTTABOP_map_grant_ref of the own grant, host and device, writable");
    check("map-host-reads-target", "6.1", host[100], 0x5a, "the host mapping reads the granted frame");
    host[100] = 0xc3;
    check("map-host-writes-target", "6.1", target[100], 0xc3, "a write through the host mapping lands in it");
    check("map-dev-bus-addr", "6.1", bus == virt_to_maddr((const void *)target), 1,
          "GNTTABOP_map_grant_ref: dev_bus_addr is the frame's machine address");
    check_hex("map-entry-flags", "6.1", grant_window[REF].flags, GTF_permit_access | GTF_reading | GTF_writing,
              "GNTTABOP_map_grant_ref writable: the entry shows GTF_reading | GTF_writing");
    check("map-pin-l1-refused", "6.1", pin_l1(target), -XEN_EINVAL,
          "MMUEXT_PIN_L1_TABLE of a frame mapped writable through a grant");

    check("unmap-bad-handle", "6.1", unmap(handle + 100, host, 0), GNTST_bad_handle,
          "GNTTABOP_unmap_grant_ref of an unused handle");
    check("unmap-bad-bus", "6.1", unmap(handle, NULL, bus + PAGE_SIZE), GNTST_bad_dev_addr,
          "GNTTABOP_unmap_grant_ref with another frame's dev_bus_addr");
    check("unmap-host", "6.1", unmap(handle, host, 0), GNTST_okay, "GNTTABOP_unmap_grant_ref of the host mapping");
    check_hex("unmap-host-still-writing", "6.1", grant_window[REF].flags,
              GTF_permit_access | GTF_reading | GTF_writing,
              "GNTTABOP_unmap_grant_ref of the host half: the device mapping still writes");
    check("unmap-device", "6.1", unmap(handle, NULL, bus), GNTST_okay,
          "GNTTABOP_unmap_grant_ref of the device mapping");
    check_hex("unmap-entry-flags", "6.1", grant_window[REF].flags, GTF_permit_access,
              "GNTTABOP_unmap_grant_ref of the last mapping: GTF_reading and GTF_writing cleared");
    check("unmap-again", "6.1", unmap(handle, host, bus), GNTST_bad_handle,
          "GNTTABOP_unmap_grant_ref of a handle already unmapped");

    /* Read-only, then unmap_and_replace with the spare page's entry. */
    check("map-host-ro", "6.1", map(REF, GNTMAP_host_map | GNTMAP_readonly, host, domid, &handle2, NULL),
          GNTST_okay, "GNTTABOP_map_grant_ref read-only");
    check_hex("map-ro-entry-flags", "6.1", grant_window[REF].flags, GTF_permit_access | GTF_reading,
              "GNTTABOP_map_grant_ref read-only: the entry shows GTF_reading only");
    spare[0] = 0x77;
    {
        struct gnttab_unmap_and_replace ur = {
            .host_addr = (unsigned long)host, .new_addr = (unsigned long)spare, .handle = handle2, .status = 0x55,
        };

        check("unmap-and-replace", "6.1", HYPERVISOR_grant_table_op(GNTTABOP_unmap_and_replace, &ur, 1) == 0 &&
              ur.status == GNTST_okay, 1, "GNTTABOP_unmap_and_replace of the read-only mapping");
    }
    check("replace-moved-entry", "6.1", host[0], 0x77,
          "GNTTABOP_unmap_and_replace: host_addr now maps what new_addr mapped");
    check_hex("replace-entry-flags", "6.1", grant_window[REF].flags, GTF_permit_access,
              "GNTTABOP_unmap_and_replace of the last mapping: the entry's flags cleared");
    check("pin-l1-after-unmaps", "6.1", pin_l1(target) == 0, 1,
          "MMUEXT_PIN_L1_TABLE of the frame once every writable mapping is gone");

    if ( xtf_ok() )
        xtf_success(NULL);
}
