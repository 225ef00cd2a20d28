/*
 * Exceptions: the virtual IDT (HYPERVISOR_set_trap_table) and the hook a
 * test installs to expect a fault.
 */

#ifndef XENPY_GUEST_TRAPS_H
#define XENPY_GUEST_TRAPS_H

#include <stdbool.h>

#include <arch/frame.h>
#include <xenpy-guest/hypervisor.h>

/*
 * Expected-fault hook: called for every exception before the default
 * handling. Return true when the exception was expected and handled; the
 * frame (e.g. rip, to skip the faulting instruction) is then restored by
 * HYPERVISOR_iret. Return false to let the default handler crash the
 * domain.
 */
typedef bool (*exception_hook_t)(struct exception_frame *frame);

/* Install (or, with NULL, remove) the hook; returns the previous one. */
exception_hook_t set_exception_hook(exception_hook_t hook);

/* HYPERVISOR_set_trap_table with entries for vectors 0-19 on the calling vCPU. */
void traps_init(void);

/* Fill a vcpu_guest_context.trap_ctxt (indexed by vector) with the same entries. */
void traps_fill_context(struct trap_info trap_ctxt[256]);

/* Faulting address of the last #PF of the calling vCPU (vcpu_info.arch.cr2). */
unsigned long read_cr2(void);

/* "#PF" etc.; "#??" for an unknown vector. */
const char *exception_mnemonic(unsigned int vector);

/* Entry points of arch/x86_64/entry.S. */
void entry_hypervisor_callback(void);
void entry_failsafe_callback(void);
void entry_syscall_callback(void);

#endif /* XENPY_GUEST_TRAPS_H */
