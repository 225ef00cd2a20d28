/*
 * Runtime internals shared between common/ and arch/ (not for tests).
 */

#ifndef XENPY_GUEST_SETUP_H
#define XENPY_GUEST_SETUP_H

#include <stdbool.h>

#include <xenpy-guest/compiler.h>
#include <xenpy-guest/hypervisor.h>

/* True once kernel_main() has seen a filled hypercall page. */
extern bool hypercall_page_ready;

/* C entry of vCPU 0 (from _start) and of the other vCPUs (from ap_entry). */
void __noreturn kernel_main(start_info_t *si);
void __noreturn ap_main(unsigned int vcpu_id);

/* HYPERVISOR_update_va_mapping of shared_info over a reserved .bss page. */
int map_shared_info(void);
/* Remove that mapping (before a suspend: the saver refuses a mapping of a frame the guest does not own). */
int unmap_shared_info(void);

/*
 * After a resume in a new domain (common/suspend.c): forget what did not
 * survive it, and find the console and xenstore rings again from start_info.
 */
void events_forget_bindings(void);
void timer_forget_ports(void);
void smp_forget_vcpu_info(void);
void xs_reconnect(void);

/* AP code address (arch/x86_64/head.S). */
void ap_entry(void);

/* Mark the calling vCPU online (common/smp.c). */
void smp_mark_online(void);

/* The function the APs run (set by smp_bring_up). */
void smp_run_ap(unsigned int vcpu_id);

#endif /* XENPY_GUEST_SETUP_H */
