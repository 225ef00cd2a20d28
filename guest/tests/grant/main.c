/*
 * grant: GNTTABOP_map_grant_ref, unmap_grant_ref and unmap_and_replace of
 * the domain's own version-1 grants, then version 2: GNTTABOP_set_version
 * (the reserved entries converted both ways, -EBUSY while a grant or a
 * status frame is mapped, -ERANGE), get_version, get_status_frames, a
 * version-2 grant mapped with its status word, and back to version 1
 * (Xen's xen/common/grant_table.c; the spec only numbers the hypercall,
 * 6.1).
 *
 * The kernel sets up a one-frame grant table and maps it (at grant_window)
 * to write entries. Ref 8 grants `target`, remapped read-only first so that
 * only the grant mappings hold writable references to it. Its own domain
 * id comes from EVTCHNOP_status of an unbound port it allocates (the id is
 * 0 as dom0, another number as a domU), and is never printed. In version 2
 * the same frame holds 16-byte entries (v2_window), and the one status
 * frame is mapped at status_window; ref 8 grants `target2`. Refs 2, 3 and 5
 * are reserved entries written to see them converted.
 */

#include <xenpy-guest.h>
#include <xen/grant_table.h>

const char test_title[] = "Grant mappings of the domain's own grants, grant table versions 1 and 2";

#define REF                  8
#define PTE_RO               (_PAGE_PRESENT | _PAGE_ACCESSED)
#define PTE_RW               (_PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY)

static struct grant_entry_v1 grant_window[PAGE_SIZE / sizeof(struct grant_entry_v1)] __page_aligned_bss;
/* Accessed as volatile: the compiler must not assume that writes through one name leave the other alone. */
static volatile uint8_t target[PAGE_SIZE] __page_aligned_bss;
static volatile uint8_t host[PAGE_SIZE] __page_aligned_bss;
static volatile uint8_t spare[PAGE_SIZE] __page_aligned_bss;
static volatile uint8_t target2[PAGE_SIZE] __page_aligned_bss;
static volatile uint8_t host2[PAGE_SIZE] __page_aligned_bss;
static volatile grant_status_t status_window[PAGE_SIZE / sizeof(grant_status_t)] __page_aligned_bss;
#define v2_window ((volatile union grant_entry_v2 *)grant_window)

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

static long set_version(uint32_t version, uint32_t *now)
{
    struct gnttab_set_version op = { .version = version };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_set_version, &op, 1);

    if ( now )
        *now = op.version;
    return rc;
}

static long get_version(void)
{
    struct gnttab_get_version op = { .dom = DOMID_SELF, .pad = 0, .version = 0x55 };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_get_version, &op, 1);

    return rc ? rc : (long)op.version;
}

/* GNTTABOP_get_status_frames of nr frames: the status, or 0x7fff if the hypercall failed. */
static int16_t status_frames(uint32_t nr, uint64_t *frames, unsigned int count)
{
    struct gnttab_get_status_frames op = { .nr_frames = nr, .dom = DOMID_SELF, .status = 0x55 };

    set_xen_guest_handle(op.frame_list, frames);
    if ( HYPERVISOR_grant_table_op(GNTTABOP_get_status_frames, &op, count) )
        return 0x7fff;
    return op.status;
}

static long pin_l1_mfn(xen_pfn_t mfn)
{
    struct mmuext_op op = { .cmd = MMUEXT_PIN_L1_TABLE, .arg1.mfn = mfn };

    return HYPERVISOR_mmuext_op(&op, 1, NULL, DOMID_SELF);
}

static long pin_l1(volatile void *page)
{
    return pin_l1_mfn(virt_to_mfn((const void *)page));
}

static long remap(volatile void *va, volatile void *page, uint64_t flags)
{
    return HYPERVISOR_update_va_mapping((unsigned long)va, virt_to_maddr((const void *)page) | flags, UVMF_INVLPG);
}

/* Version 2: entered with the one-frame table of version 1, no grant mapped. */
static void test_version_2(int domid)
{
    uint64_t sframes[2] = { 0, 0 };
    uint32_t now = 0;
    grant_handle_t handle = 0;
    struct gnttab_get_status_frames gsf = { .nr_frames = 1, .dom = DOMID_SELF };

    check("version-initial", "6.1", get_version(), 1, "GNTTABOP_get_version of a new table: version 1");
    check("status-frames-v1", "6.1", status_frames(1, sframes, 1), GNTST_general_error,
          "GNTTABOP_get_status_frames of a version-1 table: there are none (returns 0, status general_error)");
    check("status-frames-v1-none", "6.1", status_frames(0, sframes, 1), GNTST_okay,
          "GNTTABOP_get_status_frames of 0 frames of a version-1 table");
    set_xen_guest_handle(gsf.frame_list, sframes);
    check("status-frames-count", "6.1", HYPERVISOR_grant_table_op(GNTTABOP_get_status_frames, &gsf, 2),
          -XEN_EINVAL, "GNTTABOP_get_status_frames with count 2");
    {
        struct gnttab_get_version gv = { .dom = DOMID_SELF };

        check("get-version-count-0", "6.1", HYPERVISOR_grant_table_op(GNTTABOP_get_version, &gv, 0) == 0 &&
              gv.version == 1, 1, "GNTTABOP_get_version with count 0 (the count is not used)");
        check("cmd-high-bits", "6.1", HYPERVISOR_grant_table_op(GNTTABOP_get_version | 0x1000, &gv, 1),
              -XEN_EINVAL, "grant_table_op: GNTTABOP_get_version with bit 12 of cmd set");
        check("count-negative", "6.1", HYPERVISOR_grant_table_op(GNTTABOP_get_version, &gv, 0x80000000U),
              -XEN_EINVAL, "grant_table_op: GNTTABOP_get_version with a count negative as an int");
    }
    check("set-version-3", "6.1", set_version(3, &now), -XEN_EINVAL, "GNTTABOP_set_version of version 3");
    check("set-version-3-out", "6.1", now, 1, "GNTTABOP_set_version of version 3 writes back version 1");
    check("set-version-1-same", "6.1", set_version(1, &now), 0, "GNTTABOP_set_version of the version in force");

    /*
     * Reserved entries 2 and 3 are converted; ref 8 (granting `target`) is
     * not reserved and is cleared. Entry 2 carries a GTF_reading of its own,
     * which version 2 keeps in the status word.
     */
    grant_window[2].domid = 0x1234;
    grant_window[2].frame = 0xabcde;
    grant_window[2].flags = GTF_permit_access | GTF_readonly | GTF_reading;
    grant_window[3].domid = 0x4321;
    grant_window[3].frame = 0x777;
    grant_window[3].flags = GTF_accept_transfer;
    grant_window[20].domid = domid;
    grant_window[20].frame = 0x999;
    grant_window[20].flags = GTF_permit_access;
    check("set-version-2", "6.1", set_version(2, &now), 0, "GNTTABOP_set_version 1 -> 2");
    check("set-version-2-out", "6.1", now, 2, "GNTTABOP_set_version 1 -> 2 writes back version 2");
    check("version-2", "6.1", get_version(), 2, "GNTTABOP_get_version after set_version 2");
    check_hex("v2-reserved-flags", "6.1", v2_window[2].hdr.flags, GTF_permit_access | GTF_readonly,
              "GNTTABOP_set_version 1 -> 2: a reserved entry keeps its flags but GTF_reading/GTF_writing");
    check_hex("v2-reserved-domid", "6.1", v2_window[2].hdr.domid, 0x1234,
              "GNTTABOP_set_version 1 -> 2: a reserved entry keeps its domid");
    check_hex("v2-reserved-frame", "6.1", v2_window[2].full_page.frame, 0xabcde,
              "GNTTABOP_set_version 1 -> 2: a reserved entry's frame moves to full_page.frame");
    check_hex("v2-reserved-pad", "6.1", v2_window[2].full_page.pad0, 0,
              "GNTTABOP_set_version 1 -> 2: full_page.pad0 of a converted entry is zero");
    check_hex("v2-transfer-kept", "6.1", v2_window[3].hdr.flags, GTF_accept_transfer,
              "GNTTABOP_set_version 1 -> 2: a reserved GTF_accept_transfer entry is converted too");
    check_hex("v2-unreserved-cleared", "6.1", v2_window[10].hdr.flags | v2_window[10].full_page.frame, 0,
              "GNTTABOP_set_version 1 -> 2: the entries past the reserved ones are cleared (v1 ref 20 was here)");

    check("status-frames-2", "6.1", status_frames(2, sframes, 1), GNTST_general_error,
          "GNTTABOP_get_status_frames of 2 frames: a one-frame version-2 table has one status frame");
    check("status-frames", "6.1", status_frames(1, sframes, 1), GNTST_okay,
          "GNTTABOP_get_status_frames of the one status frame");
    if ( !sframes[0] )
    {
        xtf_error("Error: no status frame\n");
        return;
    }
    check("status-map-ro", "6.1", HYPERVISOR_update_va_mapping((unsigned long)status_window,
                                                               (sframes[0] << PAGE_SHIFT) | PTE_RO, UVMF_INVLPG),
          0, "update_va_mapping of the status frame read-only");
    check_hex("status-reserved", "6.1", status_window[2], GTF_reading,
              "GNTTABOP_set_version 1 -> 2: a reserved entry's GTF_reading is in its status word");
    check("status-map-rw", "6.1", HYPERVISOR_update_va_mapping((unsigned long)status_window,
                                                               (sframes[0] << PAGE_SHIFT) | PTE_RW, UVMF_INVLPG),
          0, "update_va_mapping of the status frame writable (Xen shares it read-write)");
    check("map-past-v2-table", "6.1", map(256, GNTMAP_host_map, host2, domid, NULL, NULL), GNTST_bad_gntref,
          "GNTTABOP_map_grant_ref of ref 256 (a one-frame version-2 table has 256)");

    /* A version-2 full-page grant of target2, mapped at host2 (unmapped first, with a TLB flush). */
    for ( unsigned int i = 0; i < PAGE_SIZE; i++ )
        target2[i] = 0x3c;
    if ( HYPERVISOR_update_va_mapping((unsigned long)host2, 0, UVMF_INVLPG) )
    {
        xtf_error("Error: unmapping host2\n");
        return;
    }
    v2_window[REF].hdr.domid = domid;
    v2_window[REF].full_page.frame = virt_to_mfn((const void *)target2);
    v2_window[REF + 1].hdr.domid = domid;
    v2_window[REF + 1].sub_page.page_off = 0;
    v2_window[REF + 1].sub_page.length = 16;
    v2_window[REF + 1].sub_page.frame = virt_to_mfn((const void *)target2);
    v2_window[REF + 2].hdr.domid = domid;
    v2_window[REF + 2].transitive.trans_domid = domid;
    v2_window[REF + 2].transitive.gref = REF;
    barrier();
    v2_window[REF].hdr.flags = GTF_permit_access;
    v2_window[REF + 1].hdr.flags = GTF_permit_access | GTF_sub_page;
    v2_window[REF + 2].hdr.flags = GTF_transitive;
    check("map-v2-sub-page", "6.1", map(REF + 1, GNTMAP_host_map, host2, domid, NULL, NULL), GNTST_general_error,
          "GNTTABOP_map_grant_ref of a version-2 GTF_sub_page grant (copies only)");
    check("map-v2-transitive", "6.1", map(REF + 2, GNTMAP_host_map, host2, domid, NULL, NULL), GNTST_general_error,
          "GNTTABOP_map_grant_ref of a version-2 GTF_transitive grant (copies only)");
    check("map-v2", "6.1", map(REF, GNTMAP_host_map, host2, domid, &handle, NULL), GNTST_okay,
          "GNTTABOP_map_grant_ref of a version-2 full-page grant, writable");
    check("map-v2-reads-target", "6.1", host2[7], 0x3c, "the host mapping of a version-2 grant reads the frame");
    check_hex("map-v2-status", "6.1", status_window[REF], GTF_reading | GTF_writing,
              "GNTTABOP_map_grant_ref of a version-2 grant: GTF_reading | GTF_writing in its status word");
    check_hex("map-v2-flags", "6.1", v2_window[REF].hdr.flags, GTF_permit_access,
              "GNTTABOP_map_grant_ref of a version-2 grant leaves the entry's flags alone");
    check("set-version-busy", "6.1", set_version(1, &now), -XEN_EBUSY,
          "GNTTABOP_set_version 2 -> 1 while a grant is mapped");
    check("set-version-busy-out", "6.1", now, 2, "GNTTABOP_set_version refused: version 2 written back");
    check("unmap-v2", "6.1", unmap(handle, host2, 0), GNTST_okay,
          "GNTTABOP_unmap_grant_ref of the version-2 mapping");
    check_hex("unmap-v2-status", "6.1", status_window[REF], 0,
              "GNTTABOP_unmap_grant_ref of the last mapping: the status word cleared");

    /* Back to version 1: -ERANGE first, then -EBUSY while the status frame is mapped (XSA-255). */
    v2_window[5].hdr.domid = domid;
    v2_window[5].full_page.frame = 0x100000000ULL;
    barrier();
    v2_window[5].hdr.flags = GTF_permit_access;
    check("set-version-range", "6.1", set_version(1, NULL), -XEN_ERANGE,
          "GNTTABOP_set_version 2 -> 1 with a reserved entry's frame above 32 bits");
    v2_window[5].full_page.frame = 0x5555;
    check("set-version-status-mapped", "6.1", set_version(1, NULL), -XEN_EBUSY,
          "GNTTABOP_set_version 2 -> 1 while the status frame is mapped");
    check("version-still-2", "6.1", get_version(), 2, "GNTTABOP_get_version after the refusals");
    check("status-unmap", "6.1", HYPERVISOR_update_va_mapping((unsigned long)status_window, 0, UVMF_INVLPG), 0,
          "update_va_mapping: the status frame unmapped");
    check("status-pin-l1-refused", "6.1", pin_l1_mfn(sframes[0]), -XEN_EINVAL,
          "MMUEXT_PIN_L1_TABLE of the (unmapped) status frame: Xen keeps it typed writable");
    check("set-version-back", "6.1", set_version(1, &now), 0, "GNTTABOP_set_version 2 -> 1");
    check("version-back", "6.1", get_version(), 1, "GNTTABOP_get_version after set_version 1");
    check_hex("v1-reserved-flags", "6.1", grant_window[2].flags, GTF_permit_access | GTF_readonly | GTF_reading,
              "GNTTABOP_set_version 2 -> 1: a reserved entry's flags take its status word back");
    check_hex("v1-reserved-entry", "6.1", ((uint64_t)grant_window[2].frame << 16) | grant_window[2].domid,
              (0xabcdeULL << 16) | 0x1234, "GNTTABOP_set_version 2 -> 1: a reserved entry's domid and frame");
    check_hex("v1-reserved-5", "6.1", grant_window[5].frame, 0x5555,
              "GNTTABOP_set_version 2 -> 1: the reserved entry made representable");
    check_hex("v1-transfer-cleared", "6.1", grant_window[3].flags | grant_window[3].domid | grant_window[3].frame, 0,
              "GNTTABOP_set_version 2 -> 1: a reserved entry that is not GTF_permit_access is cleared");
    check_hex("v1-unreserved-cleared", "6.1", grant_window[REF * 2].flags | grant_window[REF * 2].frame, 0,
              "GNTTABOP_set_version 2 -> 1: the entries past the reserved ones are cleared");
    check("status-frames-freed", "6.1", status_frames(1, sframes, 1), GNTST_general_error,
          "GNTTABOP_get_status_frames after set_version 1: the status frames are gone");

    grant_window[REF + 1].domid = domid;
    grant_window[REF + 1].frame = virt_to_mfn((const void *)target2);
    barrier();
    grant_window[REF + 1].flags = GTF_permit_access | GTF_sub_page;
    check("map-v1-sub-page", "6.1", map(REF + 1, GNTMAP_host_map, host2, domid, NULL, NULL), GNTST_general_error,
          "GNTTABOP_map_grant_ref of a version-1 entry with GTF_sub_page");
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

    test_version_2(domid);

    if ( xtf_ok() )
        xtf_success(NULL);
}
