/*
 * Exception, event and failsafe entry points of the xenpy guest kernel.
 *
 * Xen enters every one of them through a bounce frame (spec 3.3) built on
 * the current stack (the kernel never runs in user mode, so no stack switch
 * happens), 16-byte aligned, holding from the lowest address:
 *
 *     RCX, R11, [error code], RIP, CS, RFLAGS, RSP, SS
 *
 * RCX and R11 are the interrupted context's values (Xen's own return path
 * clobbers them). CS carries saved_upcall_mask in bits 32-39 and has RPL 0
 * when the interrupted context was the kernel; RFLAGS.IF is
 * !saved_upcall_mask.
 *
 * Each stub pops RCX and R11 back into their registers, pushes a dummy
 * error code when the vector has none, stores its vector in the upper half
 * of the error-code slot, then saves every GPR. The result is a
 * struct exception_frame (arch/frame.h), whose layout is the first 168
 * bytes of Xen's cpu_user_regs. The C handler may change the frame.
 *
 * Return is through HYPERVISOR_iret (spec 7.3): after restoring the GPRs
 * and dropping the error-code slot, the stack holds RIP, CS, RFLAGS, RSP,
 * SS; "push $0" adds iret_context.flags (not VGCF_in_syscall) and a jmp to
 * the iret stub, which pushes RCX, R11 and RAX, completes the 72-byte
 * iret_context {rax, r11, rcx, flags, rip, cs, rflags, rsp, ss}. Xen
 * restores all of it, including evtchn_upcall_mask = !RFLAGS.IF, and the
 * CS RPL 0 keeps the vCPU in kernel mode.
 */

#include <generated/hypercalls.h>
#include <xenpy-guest/asm_macros.h>
#include <arch/frame.h>

/* The iret stub: stub i is at hypercall_page + 32 * i (spec 7.3). */
#define HYPERCALL_IRET_STUB (hypercall_page + __HYPERVISOR_iret * 32)

/* Save the GPRs below the error-code slot: struct exception_frame order. */
.macro SAVE_ALL
    push    %rdi
    push    %rsi
    push    %rdx
    push    %rcx
    push    %rax
    push    %r8
    push    %r9
    push    %r10
    push    %r11
    push    %rbx
    push    %rbp
    push    %r12
    push    %r13
    push    %r14
    push    %r15
.endm

.macro RESTORE_ALL
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbp
    pop     %rbx
    pop     %r11
    pop     %r10
    pop     %r9
    pop     %r8
    pop     %rax
    pop     %rcx
    pop     %rdx
    pop     %rsi
    pop     %rdi
.endm

/*
 * Save the GPRs, call handler(struct exception_frame *) on a 16-byte
 * aligned stack, then restore everything from the (possibly changed) frame
 * and return with HYPERVISOR_iret. rbp holds the frame across the call
 * (callee-saved; its own value is in the frame).
 */
.macro DISPATCH_AND_IRET handler
    SAVE_ALL
    mov     %rsp, %rdi
    mov     %rsp, %rbp
    and     $~15, %rsp
    call    \handler
    mov     %rbp, %rsp
    RESTORE_ALL
    add     $8, %rsp            /* error code and vector */
    push    $0                  /* iret_context.flags */
    jmp     HYPERCALL_IRET_STUB
.endm

    .section .text, "ax", @progbits

/* One stub per vector: \err is 1 when Xen pushes an error code. */
.macro EXCEPTION_STUB name, vec, err
ENTRY(entry_\name)
    pop     %rcx
    pop     %r11
    .if \err == 0
    push    $0
    .endif
    movl    $\vec, 4(%rsp)
    jmp     handle_exception
END_FUNC(entry_\name)
.endm

EXCEPTION_STUB DE,  X86_EXC_DE,  0
EXCEPTION_STUB DB,  X86_EXC_DB,  0
EXCEPTION_STUB NMI, X86_EXC_NMI, 0
EXCEPTION_STUB BP,  X86_EXC_BP,  0
EXCEPTION_STUB OF,  X86_EXC_OF,  0
EXCEPTION_STUB BR,  X86_EXC_BR,  0
EXCEPTION_STUB UD,  X86_EXC_UD,  0
EXCEPTION_STUB NM,  X86_EXC_NM,  0
EXCEPTION_STUB DF,  X86_EXC_DF,  1
EXCEPTION_STUB CSO, X86_EXC_CSO, 0
EXCEPTION_STUB TS,  X86_EXC_TS,  1
EXCEPTION_STUB NP,  X86_EXC_NP,  1
EXCEPTION_STUB SS,  X86_EXC_SS,  1
EXCEPTION_STUB GP,  X86_EXC_GP,  1
EXCEPTION_STUB PF,  X86_EXC_PF,  1
EXCEPTION_STUB SPV, X86_EXC_SPV, 0
EXCEPTION_STUB MF,  X86_EXC_MF,  0
EXCEPTION_STUB AC,  X86_EXC_AC,  1
EXCEPTION_STUB MC,  X86_EXC_MC,  0
EXCEPTION_STUB XM,  X86_EXC_XM,  0

ENTRY(handle_exception)
    DISPATCH_AND_IRET do_exception
END_FUNC(handle_exception)

/*
 * Event upcall (CALLBACKTYPE_event): a bounce frame without error code,
 * entered with evtchn_upcall_mask = 1. The mask stays set while the
 * dispatcher runs; HYPERVISOR_iret restores it from the saved RFLAGS.IF,
 * and Xen delivers a new upcall at once if more events became pending in
 * the meantime, so no critical-section fixup is needed.
 */
ENTRY(entry_hypervisor_callback)
    pop     %rcx
    pop     %r11
    push    $0
    movl    $FRAME_VECTOR_EVENT, 4(%rsp)
    DISPATCH_AND_IRET do_hypervisor_callback
END_FUNC(entry_hypervisor_callback)

/*
 * Failsafe callback (CALLBACKTYPE_failsafe): Xen could not load the
 * interrupted context's data segments. Frame from the lowest address: RCX,
 * R11, DS, ES, FS, GS, RIP, CS, RFLAGS, RSP, SS (struct failsafe_frame).
 * Nothing here loads segments, so this is always a bug: report it.
 */
ENTRY(entry_failsafe_callback)
    mov     %rsp, %rdi
    and     $~15, %rsp
    call    do_failsafe_callback
    ud2
END_FUNC(entry_failsafe_callback)

/*
 * Syscall callback (CALLBACKTYPE_syscall): a syscall from guest user mode.
 * The kernel never enters user mode, so this is always a bug: report it.
 * Frame: the bounce frame of spec 3.3 without error code.
 */
ENTRY(entry_syscall_callback)
    mov     %rsp, %rdi
    and     $~15, %rsp
    call    do_syscall_callback
    ud2
END_FUNC(entry_syscall_callback)

ASM_NO_EXEC_STACK
