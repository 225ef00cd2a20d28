/*
 * memory: the memory, grant-table and MMU operations a small PV kernel uses
 * (spec 6.1, 6.9), checked as relations that hold for a domU and for dom0
 * alike (their sizes differ).
 *
 *   - XENMEM_current/maximum_reservation and maximum_ram_page against
 *     start_info's page count; -ESRCH, -EFAULT, -ENOSYS;
 *   - a balloon round trip: unmap one page (HYPERVISOR_update_va_mapping),
 *     give it back (XENMEM_decrease_reservation), take a page again
 *     (XENMEM_populate_physmap), map it, use it;
 *   - HYPERVISOR_update_va_mapping of addresses the guest may not map;
 *   - HYPERVISOR_mmuext_op: a local flush, an unknown command;
 *   - GNTTABOP_query_size, get_version, setup_table;
 *   - XENMEM_machphys_mapping and the read-only M2P table it names: the
 *     guest's own frames read back as its pfns, a write is a #PF;
 *   - a linear (recursive) L4 entry, read-only and writable.
 */

#include <xenpy-guest.h>
#include <xen/grant_table.h>
#include <xen/memory.h>

const char test_title[] = "Memory reservation, page mappings, MMU extended ops and grant-table queries";

#define XENMEM_BAD_CMD      63       /* below MEMOP_EXTENT_SHIFT (6): an op number no release defines */
#define NO_SUCH_DOMAIN      0x7000   /* a valid domid_t that names no domain */
#define UNMAPPED_VA         0x10000UL /* below VIRT_BASE: never mapped */
#define MMUEXT_BAD_CMD      99
#define GNTTABOP_BAD_CMD    99
#define PTE_FLAGS           (_PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY)

/* The page given back and taken again. */
static uint8_t balloon_page[PAGE_SIZE] __page_aligned_bss;
static xen_pfn_t grant_frames[4];

static long reservation(unsigned int op, domid_t domid)
{
    domid_t d = domid;

    return HYPERVISOR_memory_op(op, &d);
}

static void test_reservation(void)
{
    long nr_pages = start_info->nr_pages;
    long cur = reservation(XENMEM_current_reservation, DOMID_SELF);
    long max = reservation(XENMEM_maximum_reservation, DOMID_SELF);
    long ram = HYPERVISOR_memory_op(XENMEM_maximum_ram_page, NULL);

    check("cur-is-nr-pages", "6.9", cur == nr_pages, 1,
          "XENMEM_current_reservation(DOMID_SELF) == start_info.nr_pages (%ld, %ld)", cur, nr_pages);
    check("max-at-least-cur", "6.9", max >= cur, 1,
          "XENMEM_maximum_reservation(DOMID_SELF) >= current (%ld, %ld)", max, cur);
    check("ram-page-above-nr-pages", "6.9", ram > nr_pages, 1,
          "XENMEM_maximum_ram_page > start_info.nr_pages (%ld, %ld)", ram, nr_pages);
    check("cur-no-such-domain", "6.9", reservation(XENMEM_current_reservation, NO_SUCH_DOMAIN), -XEN_ESRCH,
          "XENMEM_current_reservation(domid %#x)", NO_SUCH_DOMAIN);
    check("cur-unmapped-arg", "6.9", HYPERVISOR_memory_op(XENMEM_current_reservation, (void *)UNMAPPED_VA),
          -XEN_EFAULT, "XENMEM_current_reservation with an unmapped domid_t pointer");
    check("unknown-op", "6.9", HYPERVISOR_memory_op(XENMEM_BAD_CMD, NULL), -XEN_ENOSYS,
          "HYPERVISOR_memory_op(%d)", XENMEM_BAD_CMD);
}

static long memory_reservation(unsigned int op, xen_pfn_t *frame)
{
    xen_memory_reservation_t r = {
        .nr_extents = 1,
        .extent_order = 0,
        .mem_flags = 0,
        .domid = DOMID_SELF,
    };

    set_xen_guest_handle(r.extent_start, frame);
    return HYPERVISOR_memory_op(op, &r);
}

static void test_balloon(void)
{
    unsigned long va = (unsigned long)balloon_page;
    unsigned long pfn = virt_to_pfn(balloon_page);
    xen_pfn_t *p2m = (xen_pfn_t *)start_info->mfn_list;
    long before = reservation(XENMEM_current_reservation, DOMID_SELF);
    xen_pfn_t frame, bad = ~0UL >> 12;
    long rc;

    balloon_page[0] = 0x5a;
    check("unmap-page", "6.1", HYPERVISOR_update_va_mapping(va, 0, UVMF_INVLPG), 0,
          "HYPERVISOR_update_va_mapping(balloon page, not present)");
    frame = p2m[pfn];
    check("decrease", "6.9", memory_reservation(XENMEM_decrease_reservation, &frame), 1,
          "XENMEM_decrease_reservation of one page (extents done)");
    check("decrease-counts", "6.9", reservation(XENMEM_current_reservation, DOMID_SELF) - before, -1,
          "XENMEM_current_reservation after XENMEM_decrease_reservation, relative to before");
    check("decrease-not-ours", "6.9", memory_reservation(XENMEM_decrease_reservation, &bad), 0,
          "XENMEM_decrease_reservation of a frame that is not ours (extents done)");

    frame = pfn;
    rc = memory_reservation(XENMEM_populate_physmap, &frame);
    check("populate", "6.9", rc, 1, "XENMEM_populate_physmap of the freed pfn (extents done)");
    if ( rc != 1 )
        return;
    check("populate-counts", "6.9", reservation(XENMEM_current_reservation, DOMID_SELF) - before, 0,
          "XENMEM_current_reservation after XENMEM_populate_physmap, relative to before");
    p2m[pfn] = frame;
    check("map-new-page", "6.1",
          HYPERVISOR_update_va_mapping(va, (frame << PAGE_SHIFT) | PTE_FLAGS, UVMF_INVLPG), 0,
          "HYPERVISOR_update_va_mapping(balloon page, the populated frame)");
    balloon_page[1] = 0xa5;
    check("new-page-usable", "6.9", balloon_page[1] == 0xa5, 1,
          "write and read back the page XENMEM_populate_physmap gave");
}

static void test_update_va_mapping(void)
{
    unsigned long pte = (p2m_list()[virt_to_pfn(balloon_page)] << PAGE_SHIFT) | PTE_FLAGS;

    check("uvm-noncanonical", "6.1", HYPERVISOR_update_va_mapping(0x0000800000000000UL, pte, UVMF_INVLPG),
          -XEN_EINVAL, "HYPERVISOR_update_va_mapping of a non-canonical address");
    check("uvm-xen-range", "6.1", HYPERVISOR_update_va_mapping(0xffff800000000000UL, pte, UVMF_INVLPG),
          -XEN_EINVAL, "HYPERVISOR_update_va_mapping of an address in Xen's range");
}

static void test_mmuext(void)
{
    mmuext_op_t op = { .cmd = MMUEXT_TLB_FLUSH_LOCAL };
    unsigned int done = ~0U;

    check("flush-local", "6.1", HYPERVISOR_mmuext_op(&op, 1, &done, DOMID_SELF), 0,
          "HYPERVISOR_mmuext_op(MMUEXT_TLB_FLUSH_LOCAL)");
    check("flush-local-done", "6.1", done, 1, "HYPERVISOR_mmuext_op(MMUEXT_TLB_FLUSH_LOCAL): done count");
    op.cmd = MMUEXT_BAD_CMD;
    done = ~0U;
    check("mmuext-unknown", "6.1", HYPERVISOR_mmuext_op(&op, 1, &done, DOMID_SELF), -XEN_ENOSYS,
          "HYPERVISOR_mmuext_op(cmd %d)", MMUEXT_BAD_CMD);
    check("mmuext-unknown-done", "6.1", done, 0, "HYPERVISOR_mmuext_op(cmd %d): done count", MMUEXT_BAD_CMD);
}

static void test_grant_table(void)
{
    gnttab_query_size_t q = { .dom = DOMID_SELF, .status = 99 };
    gnttab_get_version_t v = { .dom = DOMID_SELF };
    gnttab_setup_table_t s = { .dom = DOMID_SELF, .nr_frames = 1, .status = 99 };

    check("query-size", "6.1", HYPERVISOR_grant_table_op(GNTTABOP_query_size, &q, 1), 0,
          "GNTTABOP_query_size(DOMID_SELF)");
    check("query-size-status", "6.1", q.status, 0, "GNTTABOP_query_size(DOMID_SELF): status");
    check("query-size-frames", "6.1", q.nr_frames >= 1 && q.nr_frames <= q.max_nr_frames, 1,
          "GNTTABOP_query_size(DOMID_SELF): 1 <= nr_frames <= max_nr_frames (%u, %u)",
          q.nr_frames, q.max_nr_frames);
    check("get-version", "6.1", HYPERVISOR_grant_table_op(GNTTABOP_get_version, &v, 1), 0,
          "GNTTABOP_get_version(DOMID_SELF)");
    check("version-1", "6.1", v.version, 1, "GNTTABOP_get_version(DOMID_SELF): version");

    set_xen_guest_handle(s.frame_list, grant_frames);
    check("setup-table", "6.1", HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &s, 1), 0,
          "GNTTABOP_setup_table(DOMID_SELF, 1 frame)");
    check("setup-table-status", "6.1", s.status, 0, "GNTTABOP_setup_table(DOMID_SELF, 1 frame): status");
    check("setup-table-frame", "6.1", grant_frames[0] != 0, 1,
          "GNTTABOP_setup_table(DOMID_SELF, 1 frame): a frame in frame_list");
    check("gnttab-unknown", "6.1", HYPERVISOR_grant_table_op(GNTTABOP_BAD_CMD, &q, 1), -XEN_ENOSYS,
          "HYPERVISOR_grant_table_op(cmd %d)", GNTTABOP_BAD_CMD);
}

/* A #PF from the test's write to the M2P: note it and skip the 3-byte `mov %rbx, (%rax)`. */
static unsigned int nr_m2p_faults;
static uint32_t m2p_fault_error;
static unsigned long m2p_fault_cr2;

static bool m2p_write_hook(struct exception_frame *f)
{
    if ( f->entry_vector != X86_EXC_PF )
        return false;
    nr_m2p_faults++;
    m2p_fault_error = f->error_code;
    m2p_fault_cr2 = read_cr2();
    f->rip += 3;
    return true;
}

static void test_m2p(void)
{
    struct xen_machphys_mapping map = { 0 };
    const unsigned long *m2p = (const unsigned long *)MACH2PHYS_VIRT_START;
    long ram = HYPERVISOR_memory_op(XENMEM_maximum_ram_page, NULL);
    unsigned long pfn = virt_to_pfn(balloon_page), last = start_info->nr_pages - 1;
    unsigned long *target = (unsigned long *)&m2p[pfn_to_mfn(pfn)];

    check("machphys-mapping", "6.9", HYPERVISOR_memory_op(XENMEM_machphys_mapping, &map), 0,
          "XENMEM_machphys_mapping");
    check_hex("machphys-v-start", "6.9", map.v_start, MACH2PHYS_VIRT_START, "XENMEM_machphys_mapping: v_start");
    check_hex("machphys-v-end", "6.9", map.v_end, MACH2PHYS_VIRT_END, "XENMEM_machphys_mapping: v_end");
    check("machphys-max-mfn", "6.9", map.max_mfn >= (unsigned long)ram - 1, 1,
          "XENMEM_machphys_mapping: max_mfn covers XENMEM_maximum_ram_page (%#lx, %#lx)", map.max_mfn, ram);
    check("machphys-mapping-efault", "6.9", HYPERVISOR_memory_op(XENMEM_machphys_mapping, (void *)UNMAPPED_VA),
          -XEN_EFAULT, "XENMEM_machphys_mapping with an unmapped argument");

    check("m2p-own-frame", "7.2", m2p[pfn_to_mfn(pfn)] == pfn, 1,
          "read-only M2P: m2p[p2m[pfn]] == pfn for a kernel page");
    check("m2p-pfn-0", "7.2", m2p[pfn_to_mfn(0)], 0, "read-only M2P: the entry of pfn 0's frame");
    check("m2p-last-pfn", "7.2", m2p[pfn_to_mfn(last)] == last, 1, "read-only M2P: the entry of the last pfn");

    set_exception_hook(m2p_write_hook);
    __asm__ __volatile__ ("mov %%rbx, (%%rax)" :: "a"(target), "b"(0UL) : "memory");
    set_exception_hook(NULL);
    check("m2p-write-faults", "7.2", nr_m2p_faults, 1, "a write to the read-only M2P: #PF");
    check("m2p-write-cr2", "7.2", m2p_fault_cr2 == (unsigned long)target, 1,
          "a write to the read-only M2P: %%cr2 is the address written");
    check_hex("m2p-write-error", "7.2", m2p_fault_error, X86_PFEC_PRESENT | X86_PFEC_WRITE,
              "a write to the read-only M2P: #PF error code present|write (a kernel access: no user bit)");
    check("m2p-unchanged", "7.2", m2p[pfn_to_mfn(pfn)] == pfn, 1, "read-only M2P: entry unchanged by the write");
}

/* A linear (recursive) L4 entry: read-only accepted, writable refused (Xen's default pv-linear-pt). */
static void test_linear_pagetable(void)
{
    const uint64_t *l4 = (const uint64_t *)start_info->pt_base;
    uint64_t l4_maddr = virt_to_maddr(l4);
    unsigned int slot;
    mmu_update_t mu;

    for ( slot = 1; slot < 256 && (l4[slot] & _PAGE_PRESENT); slot++ )
        ;
    mu.ptr = l4_maddr + slot * 8;
    mu.val = l4_maddr | _PAGE_PRESENT | _PAGE_ACCESSED;
    check("linear-l4-ro", "6.1", HYPERVISOR_mmu_update(&mu, 1, NULL, DOMID_SELF), 0,
          "HYPERVISOR_mmu_update: an L4 entry mapping its own L4 read-only (a linear page table)");
    check("linear-l4-ro-walk", "6.1",
          ((const uint64_t *)(((unsigned long)slot << 39) | ((unsigned long)slot << 30) |
                              ((unsigned long)slot << 21) | ((unsigned long)slot << 12)))[slot] == l4[slot], 1,
          "the linear L4 entry reads back through its own recursive mapping");
    mu.val |= _PAGE_RW;
    check("linear-l4-rw", "6.1", HYPERVISOR_mmu_update(&mu, 1, NULL, DOMID_SELF), -XEN_EINVAL,
          "HYPERVISOR_mmu_update: an L4 entry mapping its own L4 writable");
    mu.val = 0;
    check("linear-l4-clear", "6.1", HYPERVISOR_mmu_update(&mu, 1, NULL, DOMID_SELF), 0,
          "HYPERVISOR_mmu_update: clearing the linear L4 entry");
}

void test_main(void)
{
    test_profile();
    test_reservation();
    test_balloon();
    test_update_va_mapping();
    test_mmuext();
    test_grant_table();
    test_m2p();
    test_linear_pagetable();

    if ( xtf_ok() )
        xtf_success(NULL);
}
