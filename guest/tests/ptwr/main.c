/*
 * ptwr: writable page tables (VMASST_TYPE_writable_pagetables) and
 * HYPERVISOR_update_descriptor (spec 6.1).
 *
 *   - without the assist, a kernel write to one of its own L1 tables is a
 *     #PF (the table is mapped read-only) and changes nothing;
 *   - with it, the write is emulated: the entry is validated and stored
 *     as Xen adjusts a PV64 entry (a kernel page gets _PAGE_USER and bit 52,
 *     Xen's _PAGE_GUEST_KERNEL; a user page gets _PAGE_GLOBAL), and takes
 *     effect after a local invlpg; a
 *     4-byte store and a lock cmpxchg (succeeding and failing) work on
 *     entries too;
 *   - an entry Xen refuses (a frame that is not RAM, a writable mapping of
 *     a page table) is a #PF to the guest and changes nothing;
 *   - HYPERVISOR_update_descriptor: a code segment in a free page is stored
 *     with its DPL raised to 3; a misaligned address, a system descriptor,
 *     a page-table frame and a frame that is not the guest's: -EINVAL;
 *   - a live GDT (HYPERVISOR_set_gdt of a read-only page) takes a code
 *     segment through update_descriptor; the kernel runs on it (lretq), and
 *     a hypercall returns on FLAT_KERNEL_CS, as Xen's sysret leaves it.
 */

#include <xenpy-guest.h>

const char test_title[] = "Writable page tables and HYPERVISOR_update_descriptor";

#define PTE_BASE      (_PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_DIRTY)
#define PTE_MFN_MASK  0x000ffffffffff000UL
#define NOT_RAM_MFN   0xffffffffffUL        /* the highest frame number an entry holds: above any RAM or MMIO */
#define CODE64_DPL0   0x00af9a000000ffffUL  /* 64-bit code, present, DPL0 */
#define GUEST_KERNEL  (1UL << 52)          /* Xen's _PAGE_GUEST_KERNEL */
#define DPL_MASK      (3UL << 45)
#define TSS64_DESC    0x0000890000000067UL  /* an available 64-bit TSS (a system descriptor) */

static uint8_t target_page[PAGE_SIZE] __page_aligned_bss;
static uint64_t desc_page[PAGE_SIZE / 8] __page_aligned_bss;
static uint64_t gdt_page[PAGE_SIZE / 8] __page_aligned_bss;

/* The #PF hook: counts faults and skips the faulting store (its length is set before each store). */
static unsigned int nr_faults;
static unsigned int skip_bytes;
static uint32_t fault_error;

static bool pf_hook(struct exception_frame *f)
{
    if ( f->entry_vector != X86_EXC_PF )
        return false;
    nr_faults++;
    fault_error = f->error_code;
    f->rip += skip_bytes;
    return true;
}

/* The flags of an entry (everything but the frame number). */
static uint64_t flags(uint64_t entry)
{
    return entry & ~PTE_MFN_MASK;
}

/* The L1 entry mapping va, found through the page tables (read-only kernel mappings of them). */
static volatile uint64_t *l1e_of(const void *va)
{
    const uint64_t *table = (const uint64_t *)start_info->pt_base;
    unsigned long addr = (unsigned long)va;
    unsigned int shift;

    for ( shift = 39; shift > 12; shift -= 9 )
    {
        uint64_t entry = table[(addr >> shift) & 511];

        table = pfn_to_virt(mfn_to_pfn((entry & PTE_MFN_MASK) >> PAGE_SHIFT));
    }
    return (volatile uint64_t *)&table[(addr >> 12) & 511];
}

static void invlpg(const void *va)
{
    struct mmuext_op op = { .cmd = MMUEXT_INVLPG_LOCAL, .arg1.linear_addr = (unsigned long)va };

    HYPERVISOR_mmuext_op(&op, 1, NULL, DOMID_SELF);
}

/* A plain 8-byte store (`mov %rdx, (%rax)`, 3 bytes). */
static void store64(volatile uint64_t *p, uint64_t val)
{
    skip_bytes = 3;
    __asm__ __volatile__ ("mov %%rdx, (%%rax)" :: "a"(p), "d"(val) : "memory");
}

/* Write-probe target_page: 1 if the store faulted (`movb $1, (%rax)`, 3 bytes). */
static unsigned int write_faults(void)
{
    unsigned int before = nr_faults;

    skip_bytes = 3;
    __asm__ __volatile__ ("movb $1, (%%rax)" :: "a"(target_page) : "memory");
    return nr_faults - before;
}

static void test_ptwr(void)
{
    volatile uint64_t *l1e = l1e_of(target_page);
    uint64_t mapping = virt_to_maddr(target_page) | PTE_BASE;
    uint64_t table_mapping = (uint64_t)virt_to_maddr((const void *)l1e) & PTE_MFN_MASK;
    uint64_t orig = *l1e, old;
    uint8_t zf;

    check("l1e-maps-target", "6.1", (orig & PTE_MFN_MASK) == (mapping & PTE_MFN_MASK), 1,
          "the L1 entry found by the walk maps the test page");
    set_exception_hook(pf_hook);

    /*
     * Without the assist a domU's write is a #PF; Xen emulates the write for the hardware domain anyway
     * (pv_ro_page_fault is reached through its read-only MMIO path), so these are domain-dependent.
     */
    check("assist-disable", "6.1", HYPERVISOR_vm_assist(VMASST_CMD_disable, VMASST_TYPE_writable_pagetables), 0,
          "HYPERVISOR_vm_assist(disable, writable_pagetables)");
    store64(l1e, orig);
    check_domain("no-assist-faults", "6.1", nr_faults, is_initial_domain() ? 0 : 1,
                 "a write to an L1 table without writable page tables: #PF for a domU");
    check_domain_hex("no-assist-error", "6.1", fault_error, is_initial_domain() ? 0 : X86_PFEC_PRESENT | X86_PFEC_WRITE,
                     "the #PF error code: present|write");
    check("no-assist-unchanged", "6.1", *l1e == orig, 1, "the entry reads back as it was");

    check("assist-enable", "6.1", HYPERVISOR_vm_assist(VMASST_CMD_enable, VMASST_TYPE_writable_pagetables), 0,
          "HYPERVISOR_vm_assist(enable, writable_pagetables)");

    nr_faults = 0;
    store64(l1e, mapping);
    check("ro-store-emulated", "6.1", nr_faults, 0, "an emulated 8-byte write of a read-only entry: no #PF");
    check_hex("ro-store-value", "6.1", flags(*l1e), PTE_BASE | _PAGE_USER | GUEST_KERNEL,
              "the entry as stored: the kernel mapping written, with _PAGE_USER and _PAGE_GUEST_KERNEL added");
    invlpg(target_page);
    check("ro-mapping-effective", "6.1", write_faults(), 1, "after invlpg, a write through the read-only entry faults");

    nr_faults = 0;
    skip_bytes = 3;
    __asm__ __volatile__ ("movl %%edx, (%%rax)" :: "a"(l1e), "d"((uint32_t)(mapping | _PAGE_RW)) : "memory");
    check("store32-emulated", "6.1", nr_faults, 0, "an emulated 4-byte write of the entry's low half: no #PF");
    check_hex("store32-value", "6.1", flags(*l1e), PTE_BASE | _PAGE_RW | _PAGE_USER | GUEST_KERNEL,
              "the entry after the 4-byte write: the low half replaced, the high half kept");
    invlpg(target_page);
    check("rw-mapping-effective", "6.1", write_faults(), 0, "after invlpg, the page is writable again");

    old = mapping;  /* stale: the entry now has RW and USER */
    skip_bytes = 5;
    __asm__ __volatile__ ("lock cmpxchg %[new], (%[p]); sete %[zf]"
                          : "+a"(old), [zf] "=q"(zf) : [p] "r"(l1e), [new] "r"(mapping) : "memory");
    check("cmpxchg-fail", "6.1", zf, 0, "lock cmpxchg with a stale old value: fails (ZF clear)");
    check_hex("cmpxchg-fail-old", "6.1", flags(old), PTE_BASE | _PAGE_RW | _PAGE_USER | GUEST_KERNEL,
              "lock cmpxchg with a stale old value: %%rax is the entry");
    __asm__ __volatile__ ("lock cmpxchg %[new], (%[p]); sete %[zf]"
                          : "+a"(old), [zf] "=q"(zf) : [p] "r"(l1e), [new] "r"(mapping | _PAGE_RW) : "memory");
    check("cmpxchg-ok", "6.1", zf, 1, "lock cmpxchg with the current value: succeeds (ZF set)");
    check("cmpxchg-no-fault", "6.1", nr_faults, 0, "the emulated cmpxchgs: no #PF");

    store64(l1e, mapping | _PAGE_RW | _PAGE_USER);
    check_hex("user-page-value", "6.1", flags(*l1e), PTE_BASE | _PAGE_RW | _PAGE_USER | _PAGE_GLOBAL,
              "a user mapping as stored: _PAGE_GLOBAL added");
    store64(l1e, mapping | _PAGE_RW);
    invlpg(target_page);

    nr_faults = 0;
    store64(l1e, (NOT_RAM_MFN << PAGE_SHIFT) | PTE_BASE);
    check("not-ram-faults", "6.1", nr_faults, 1, "an entry mapping a frame that is not RAM: #PF");
    check_hex("not-ram-unchanged", "6.1", flags(*l1e), PTE_BASE | _PAGE_RW | _PAGE_USER | GUEST_KERNEL,
              "the entry is unchanged");

    nr_faults = 0;
    store64(l1e, table_mapping | PTE_BASE | _PAGE_RW);
    check("rw-table-faults", "6.1", nr_faults, 1, "an entry mapping an L1 table writable: #PF");
    check_hex("rw-table-unchanged", "6.1", flags(*l1e), PTE_BASE | _PAGE_RW | _PAGE_USER | GUEST_KERNEL,
              "the entry is unchanged");

    set_exception_hook(NULL);
}

static void test_update_descriptor(void)
{
    uint64_t maddr = virt_to_maddr(desc_page);
    uint64_t table_maddr = virt_to_maddr((const void *)l1e_of(target_page)) & PTE_MFN_MASK;

    check("desc-code", "6.1", HYPERVISOR_update_descriptor(maddr + 8, CODE64_DPL0), 0,
          "HYPERVISOR_update_descriptor: a DPL0 code segment in a free page");
    check_hex("desc-code-dpl", "6.1", desc_page[1], CODE64_DPL0 | DPL_MASK,
              "the descriptor as stored: DPL raised to 3");
    check("desc-misaligned", "6.1", HYPERVISOR_update_descriptor(maddr + 4, CODE64_DPL0), -XEN_EINVAL,
          "HYPERVISOR_update_descriptor at an address that is not 8-byte aligned");
    check("desc-system", "6.1", HYPERVISOR_update_descriptor(maddr + 16, TSS64_DESC), -XEN_EINVAL,
          "HYPERVISOR_update_descriptor of a TSS (a system descriptor)");
    check_hex("desc-system-unchanged", "6.1", desc_page[2], 0, "the refused descriptor is not written");
    check("desc-page-table", "6.1", HYPERVISOR_update_descriptor(table_maddr, CODE64_DPL0), -XEN_EINVAL,
          "HYPERVISOR_update_descriptor into an L1 page table");
    check("desc-not-ram", "6.1", HYPERVISOR_update_descriptor(NOT_RAM_MFN << PAGE_SHIFT, CODE64_DPL0),
          -XEN_EINVAL, "HYPERVISOR_update_descriptor into a frame that is not the guest's");
}

/* A code segment of the guest's own GDT: load it with lretq, make a hypercall, see %cs before and after. */
static void test_live_gdt(void)
{
    unsigned long frame = virt_to_mfn(gdt_page);
    uint64_t maddr = virt_to_maddr(gdt_page);
    uint16_t cs_on_own, cs_after;
    long rc;

    check("gdt-remap-ro", "6.1",
          HYPERVISOR_update_va_mapping((unsigned long)gdt_page, (frame << PAGE_SHIFT) | _PAGE_PRESENT | _PAGE_ACCESSED,
                                       UVMF_INVLPG), 0, "HYPERVISOR_update_va_mapping: the GDT page read-only");
    check("gdt-set", "6.1", HYPERVISOR_set_gdt(&frame, 512), 0, "HYPERVISOR_set_gdt of that page (512 entries)");
    check("gdt-update-live", "6.1", HYPERVISOR_update_descriptor(maddr + 8, CODE64_DPL0), 0,
          "HYPERVISOR_update_descriptor of entry 1 of the live GDT");
    check_hex("gdt-entry-dpl", "6.1", gdt_page[1], CODE64_DPL0 | DPL_MASK, "the live entry as stored: DPL 3");
    __asm__ __volatile__ ("pushq $0x0b; leaq 1f(%%rip), %%rax; pushq %%rax; lretq; 1: movw %%cs, %0"
                          : "=r"(cs_on_own) :: "rax", "memory");
    check_hex("gdt-cs-own", "6.1", cs_on_own, 0x0b, "%%cs after lretq to entry 1 of the guest's GDT (RPL 3)");
    rc = HYPERVISOR_xen_version(XENVER_version, NULL);
    __asm__ __volatile__ ("movw %%cs, %0" : "=r"(cs_after));
    check("gdt-hypercall", "6.1", rc > 0, 1, "HYPERVISOR_xen_version(XENVER_version) from that code segment");
    check_hex("gdt-cs-after-hypercall", "6.1", cs_after, FLAT_KERNEL_CS,
              "%%cs after the hypercall: FLAT_KERNEL_CS, as sysret loads it");
}

void test_main(void)
{
    test_profile();
    test_ptwr();
    test_update_descriptor();
    test_live_gdt();

    if ( xtf_ok() )
        xtf_success(NULL);
}
