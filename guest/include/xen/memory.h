/*
 * xenpy guest headers: the reservation argument of HYPERVISOR_memory_op
 * (Xen's public/memory.h).
 *
 * The XENMEM_* command numbers come from the generated
 * <generated/hypercalls.h>.
 */

#ifndef __XEN_PUBLIC_MEMORY_H__
#define __XEN_PUBLIC_MEMORY_H__

#include "xen.h"

#ifndef __ASSEMBLY__

/* XENMEM_increase_reservation, XENMEM_decrease_reservation, XENMEM_populate_physmap. */
struct xen_memory_reservation {
    /* IN (decrease) or OUT (increase, populate): frame numbers. */
    XEN_GUEST_HANDLE(xen_pfn_t) extent_start;
    xen_ulong_t  nr_extents;        /* number of extents */
    unsigned int extent_order;      /* each extent is 2^extent_order pages */
    unsigned int mem_flags;         /* XENMEMF_* */
    domid_t      domid;             /* usually DOMID_SELF */
};
typedef struct xen_memory_reservation xen_memory_reservation_t;
DEFINE_XEN_GUEST_HANDLE(xen_memory_reservation_t);

/* XENMEM_machphys_mapping: where the read-only M2P table is mapped. */
struct xen_machphys_mapping {
    xen_ulong_t v_start, v_end;     /* start and end of the virtual range */
    xen_ulong_t max_mfn;            /* largest mfn the mapping covers */
};
typedef struct xen_machphys_mapping xen_machphys_mapping_t;
DEFINE_XEN_GUEST_HANDLE(xen_machphys_mapping_t);

#endif /* !__ASSEMBLY__ */

#endif /* __XEN_PUBLIC_MEMORY_H__ */
