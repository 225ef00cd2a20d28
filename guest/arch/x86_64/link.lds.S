/*
 * Linker script of the xenpy guest kernel (preprocessed by cpp).
 *
 * Two loadable segments, both with p_paddr == p_vaddr (see layout.h for
 * the address calculation the domain builder does):
 *   text  (R X): .text (entry first, hypercall page page-aligned), .rodata
 *                and the Xen notes
 *   data  (R W): .data, then .bss (page-aligned objects first)
 * and a PT_NOTE segment covering .note.Xen (spec 7.1).
 */

#include <xenpy-guest/layout.h>

OUTPUT_FORMAT("elf64-x86-64", "elf64-x86-64", "elf64-x86-64")
OUTPUT_ARCH(i386:x86-64)
ENTRY(_start)

PHDRS
{
    text PT_LOAD FLAGS(5);      /* PF_R | PF_X */
    data PT_LOAD FLAGS(6);      /* PF_R | PF_W */
    note PT_NOTE FLAGS(4);      /* PF_R */
}

SECTIONS
{
    . = VIRT_BASE;
    _text = .;

    .text : {
        *(.text.head)
        . = ALIGN(PAGE_SIZE);
        *(.text.hypercall_page)
        *(.text .text.*)
    } :text = 0xcccccccc

    .rodata : {
        *(.rodata .rodata.*)
    } :text

    .note.Xen : {
        *(.note.Xen)
    } :text :note

    _etext = .;

    . = ALIGN(PAGE_SIZE);
    .data : {
        *(.data .data.*)
    } :data

    . = ALIGN(PAGE_SIZE);
    .bss : {
        __bss_start = .;
        *(.bss.stacks)
        *(.bss.page_aligned)
        *(.bss .bss.*)
        *(COMMON)
        . = ALIGN(PAGE_SIZE);
        __bss_end = .;
    } :data

    _end = .;

    /DISCARD/ : {
        *(.comment)
        *(.note.GNU-stack)
        *(.note.gnu.property)
        *(.note.gnu.build-id)
        *(.eh_frame)
    }
}

/* The hypercall page must be one whole page, page-aligned (spec 7.3). */
ASSERT(hypercall_page == ALIGN(hypercall_page, PAGE_SIZE), "hypercall_page is not page-aligned")
ASSERT(_start == VIRT_BASE, "_start must be the first byte of the image")
