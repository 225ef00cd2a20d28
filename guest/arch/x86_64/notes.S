/*
 * Xen ELF notes of the xenpy guest kernel (spec 6.8, 7.1).
 *
 * They live in section .note.Xen, which the linker script places both in
 * the first PT_LOAD segment and in a PT_NOTE segment with p_offset != 0:
 * the domain builder reads PT_NOTE segments first.
 *
 * How the builder lays out the domain from them (spec 7.1, 7.2):
 *   - XEN_VERSION starts with "xen-3.0" and LOADER with "generic": accepted.
 *   - No FEATURES note: nothing is required of the hypervisor.
 *   - virt_offset = VIRT_BASE - PADDR_OFFSET = 0x400000 - 0x400000 = 0.
 *   - virt_kstart = min p_paddr over PT_LOAD + virt_offset = 0x400000 (the
 *     linker script sets p_paddr == p_vaddr), virt_kend = max(p_paddr +
 *     p_memsz) + virt_offset. VIRT_BASE <= virt_kstart holds, so the kernel
 *     starts at pfn 0 of the bootstrap region, loaded where it was linked.
 *   - ENTRY (= _start) must lie in [virt_kstart, virt_kend]; the builder
 *     starts vCPU 0 there with rsi = start_info (spec 7.5).
 *   - HYPERCALL_PAGE (= hypercall_page) is a virtual address; the builder
 *     turns it into pfn (va - VIRT_BASE) >> 12 and has Xen write the
 *     stubs into that frame (spec 7.3).
 */

#include <xen/elfnote.h>
#include <xenpy-guest/asm_macros.h>
#include <xenpy-guest/layout.h>

ELFNOTE(XEN_ELFNOTE_GUEST_OS,       .asciz "xenpy-guest")
ELFNOTE(XEN_ELFNOTE_GUEST_VERSION,  .asciz "0.1")
ELFNOTE(XEN_ELFNOTE_XEN_VERSION,    .asciz "xen-3.0")
ELFNOTE(XEN_ELFNOTE_LOADER,         .asciz "generic")
ELFNOTE(XEN_ELFNOTE_VIRT_BASE,      .quad VIRT_BASE)
ELFNOTE(XEN_ELFNOTE_PADDR_OFFSET,   .quad VIRT_BASE)
ELFNOTE(XEN_ELFNOTE_ENTRY,          .quad _start)
ELFNOTE(XEN_ELFNOTE_HYPERCALL_PAGE, .quad hypercall_page)
ELFNOTE(XEN_ELFNOTE_SUSPEND_CANCEL, .long 1)

ASM_NO_EXEC_STACK
