/*
 * Memory layout of a xenpy guest kernel. Included by C, assembly and the
 * linker script (everything here is a plain constant).
 *
 * The kernel is linked at VIRT_BASE with p_paddr == p_vaddr, and its
 * XEN_ELFNOTE_PADDR_OFFSET note is VIRT_BASE too. The domain builder (spec
 * 7.1, elf_xen_addr_calc_check) computes
 *
 *     virt_offset = VIRT_BASE - PADDR_OFFSET                 = 0
 *     virt_kstart = min(p_paddr of PT_LOAD) + virt_offset    = VIRT_BASE
 *     virt_kend   = max(p_paddr + p_memsz)  + virt_offset    = end of .bss
 *
 * so the image is loaded exactly where it was linked, starting at pfn 0 of
 * the bootstrap region (spec 7.2), and every pfn p of that region is mapped
 * at VIRT_BASE + p * PAGE_SIZE. Everything below VIRT_BASE, including the
 * NULL page, stays unmapped.
 */

#ifndef XENPY_GUEST_LAYOUT_H
#define XENPY_GUEST_LAYOUT_H

#define PAGE_SHIFT      12
#define PAGE_SIZE       (1 << PAGE_SHIFT)

/* Link address of the kernel and base of the bootstrap virtual region. */
#define VIRT_BASE       0x400000

/*
 * Per-vCPU stacks: MAX_VCPUS stacks of STACK_SIZE bytes, each aligned to
 * STACK_SIZE, so that the stack pointer identifies the vCPU (smp_processor_id).
 * MAX_VCPUS is the number of vcpu_info slots in shared_info
 * (XEN_LEGACY_MAX_VCPUS): a vCPU beyond them has no vcpu_info until one is
 * registered (VCPUOP_register_vcpu_info), and this kernel runs none of them.
 */
#define STACK_SHIFT     14
#define STACK_SIZE      (1 << STACK_SHIFT)
#define MAX_VCPUS       32

#endif /* XENPY_GUEST_LAYOUT_H */
