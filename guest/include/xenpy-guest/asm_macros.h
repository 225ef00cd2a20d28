/*
 * Helpers for the assembly files of the xenpy guest kernel.
 */

#ifndef XENPY_GUEST_ASM_MACROS_H
#define XENPY_GUEST_ASM_MACROS_H

#ifndef __ASSEMBLY__
#error "asm_macros.h is for assembly files only"
#endif

/* A global function symbol, aligned for the instruction fetcher. */
#define ENTRY(name)                             \
    .globl name;                                \
    .type name, STT_FUNC;                       \
    .p2align 4, 0x90;                           \
name:

/* A global data symbol (no alignment implied). */
#define GLOBAL(name)                            \
    .globl name;                                \
name:

/* Close a symbol opened with ENTRY or GLOBAL, recording its size. */
#define END_FUNC(name)                          \
    .size name, . - name

#define END_OBJECT(name)                        \
    .type name, STT_OBJECT;                     \
    .size name, . - name

/*
 * One ELF note (owner "Xen") in section .note.Xen, in the format read by the
 * domain builder (spec 7.1): namesz, descsz, type, the name padded to 4
 * bytes, then the descriptor padded to 4 bytes. desc is assembler data, such
 * as ".quad _start" or ".asciz \"generic\"".
 */
#define ELFNOTE(type, desc)                     \
    .pushsection .note.Xen, "a", @note;         \
    .p2align 2;                                 \
    .long 2f - 1f;          /* namesz */        \
    .long 4f - 3f;          /* descsz */        \
    .long type;                                 \
1:  .asciz "Xen";                               \
2:  .p2align 2;                                 \
3:  desc;                                       \
4:  .p2align 2;                                 \
    .popsection

/* Every assembly file: no executable stack. */
#define ASM_NO_EXEC_STACK                       \
    .section .note.GNU-stack, "", @progbits

#endif /* XENPY_GUEST_ASM_MACROS_H */
