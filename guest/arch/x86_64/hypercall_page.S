/*
 * The hypercall page (spec 7.3).
 *
 * One page of .text, named by the XEN_ELFNOTE_HYPERCALL_PAGE note. The
 * domain builder asks Xen to fill it with 128 stubs of 32 bytes (stub i at
 * hypercall_page + 32 * i): "push rcx; push r11; mov eax, i; syscall;
 * pop r11; pop rcx; ret", except the iret stub (23), which the guest jumps
 * to. Until then the page is poisoned with 0xC3 (ret), so that a call
 * through an unfilled page returns at once instead of running off into
 * garbage; kernel_main() checks the first byte and stops if it is still
 * 0xC3.
 */

#include <xenpy-guest/asm_macros.h>
#include <xenpy-guest/layout.h>

    .section .text.hypercall_page, "ax", @progbits
    .p2align PAGE_SHIFT
GLOBAL(hypercall_page)
    .fill PAGE_SIZE, 1, 0xc3
END_OBJECT(hypercall_page)

ASM_NO_EXEC_STACK
