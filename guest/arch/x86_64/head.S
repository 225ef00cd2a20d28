/*
 * Entry points of the xenpy guest kernel: _start for vCPU 0 and
 * ap_entry for the vCPUs that smp_bring_up() starts.
 *
 * Register state at _start (spec 7.5): rsi = virtual address of start_info,
 * rsp = top of the builder's boot-stack page, cs = FLAT_KERNEL_CS (0xe033),
 * ss = 0xe02b, every other GPR 0, events masked (vcpu_info[0]
 * .evtchn_upcall_mask = 1). .bss has been zeroed by the builder: nothing is
 * zeroed here.
 */

#include <xenpy-guest/asm_macros.h>
#include <xenpy-guest/layout.h>

    .section .text.head, "ax", @progbits
    .code64

ENTRY(_start)
    cld

    /*
     * Move from the builder's boot stack to vCPU 0's stack in .bss: the
     * stack of vCPU n is cpu_stacks[n], and smp_processor_id() relies on it.
     */
    lea     cpu_stacks + STACK_SIZE(%rip), %rsp
    xor     %ebp, %ebp          /* terminate frame-pointer chains */

    /* kernel_main(start_info_t *si) does not return. */
    mov     %rsi, %rdi
    call    kernel_main
    ud2
END_FUNC(_start)

/*
 * First instruction of a vCPU brought up by smp_bring_up(): its
 * vcpu_guest_context sets rip = ap_entry, rsp = the top of cpu_stacks[id],
 * rdi = id, events masked (spec 1.3). ap_main(unsigned int id) does not
 * return.
 */
ENTRY(ap_entry)
    cld
    xor     %ebp, %ebp
    call    ap_main
    ud2
END_FUNC(ap_entry)

/*
 * Stacks, one per vCPU, each aligned to its size (layout.h). vCPU 0 uses
 * cpu_stacks[0].
 */
    .section .bss.stacks, "aw", @nobits
    .p2align STACK_SHIFT
GLOBAL(cpu_stacks)
    .skip MAX_VCPUS * STACK_SIZE
END_OBJECT(cpu_stacks)

ASM_NO_EXEC_STACK
