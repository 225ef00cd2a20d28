/*
 * The xenpy guest kernel's view of the hypervisor: hypercalls, the
 * start_info and shared_info pages, and pfn/mfn translation.
 *
 * Hypercalls are the generated HYPERVISOR_<name>() wrappers of
 * <generated/hypercalls.h> (one table lists them all); they call stub n of
 * the hypercall page with the PV64 convention of spec 7.4.
 */

#ifndef XENPY_GUEST_HYPERVISOR_H
#define XENPY_GUEST_HYPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <xen/xen.h>
#include <xen/callback.h>
#include <xen/errno.h>
#include <xen/event_channel.h>
#include <xen/sched.h>
#include <xen/vcpu.h>
#include <xen/version.h>
#include <generated/hypercalls.h>

#include <xenpy-guest/layout.h>

/* Page-table entry bits (for HYPERVISOR_update_va_mapping). */
#define _PAGE_PRESENT  0x001UL
#define _PAGE_RW       0x002UL
#define _PAGE_USER     0x004UL
#define _PAGE_ACCESSED 0x020UL
#define _PAGE_DIRTY    0x040UL
#define _PAGE_GLOBAL   0x100UL

/* Set by kernel_main() before anything else runs. */
extern start_info_t *start_info;

/* Whether the kernel is domain 0 (SIF_INITDOMAIN): as on real Xen under the oracle, not on xenpy. */
static inline bool is_initial_domain(void)
{
    return start_info->flags & SIF_INITDOMAIN;
}

/*
 * shared_info, mapped by kernel_main() over the page-aligned .bss page
 * shared_info_page (spec 7.2: Xen gives only its machine address).
 */
extern shared_info_t *shared_info;

/* The p2m list built by the domain builder: mfn of each pfn, or ~0. */
static inline const xen_pfn_t *p2m_list(void)
{
    return (const xen_pfn_t *)start_info->mfn_list;
}

/* Frame numbers of the bootstrap region: pfn p is mapped at VIRT_BASE + p * 4096. */
static inline unsigned long virt_to_pfn(const void *va)
{
    return ((unsigned long)va - VIRT_BASE) >> PAGE_SHIFT;
}

static inline void *pfn_to_virt(unsigned long pfn)
{
    return (void *)(VIRT_BASE + (pfn << PAGE_SHIFT));
}

static inline xen_pfn_t pfn_to_mfn(unsigned long pfn)
{
    return p2m_list()[pfn];
}

static inline xen_pfn_t virt_to_mfn(const void *va)
{
    return pfn_to_mfn(virt_to_pfn(va));
}

/* Machine address of a byte of the bootstrap region. */
static inline uint64_t virt_to_maddr(const void *va)
{
    return ((uint64_t)virt_to_mfn(va) << PAGE_SHIFT) |
           ((unsigned long)va & (PAGE_SIZE - 1));
}

/* pfn whose p2m entry is mfn (a linear search), or -1 if there is none. */
long mfn_to_pfn(xen_pfn_t mfn);

/*
 * The value of the word "key=value" of the kernel command line
 * (start_info.cmd_line; key given with its "="), copied NUL-terminated into
 * buf and cut to size - 1 bytes; false if no word starts with key or the
 * value is empty.
 */
bool cmdline_get(const char *key, char *buf, size_t size);

/* Crash the domain at once (SCHEDOP_shutdown, SHUTDOWN_crash). */
void __attribute__((__noreturn__)) crash_domain(void);

/* Shut the domain down with reason (a SHUTDOWN_* value); never returns. */
void __attribute__((__noreturn__)) shutdown_domain(unsigned int reason);

#endif /* XENPY_GUEST_HYPERVISOR_H */
