/*
 * xenpy guest headers: the GNTTABOP_setup_table, GNTTABOP_query_size and
 * GNTTABOP_get_version arguments of HYPERVISOR_grant_table_op (Xen's
 * public/grant_table.h).
 *
 * The GNTTABOP_* command numbers come from the generated
 * <generated/hypercalls.h>.
 */

#ifndef __XEN_PUBLIC_GRANT_TABLE_H__
#define __XEN_PUBLIC_GRANT_TABLE_H__

#include "xen.h"

#ifndef __ASSEMBLY__

typedef uint32_t grant_ref_t;

/* GNTTABOP_setup_table. */
struct gnttab_setup_table {
    domid_t  dom;                           /* IN */
    uint32_t nr_frames;                     /* IN */
    int16_t  status;                        /* OUT: GNTST_* */
    XEN_GUEST_HANDLE(xen_pfn_t) frame_list; /* OUT: frames of the table */
};
typedef struct gnttab_setup_table gnttab_setup_table_t;
DEFINE_XEN_GUEST_HANDLE(gnttab_setup_table_t);

/* GNTTABOP_query_size. */
struct gnttab_query_size {
    domid_t  dom;                           /* IN */
    uint32_t nr_frames;                     /* OUT */
    uint32_t max_nr_frames;                 /* OUT */
    int16_t  status;                        /* OUT: GNTST_* */
};
typedef struct gnttab_query_size gnttab_query_size_t;
DEFINE_XEN_GUEST_HANDLE(gnttab_query_size_t);

/* GNTTABOP_get_version. */
struct gnttab_get_version {
    domid_t  dom;                           /* IN */
    uint16_t pad;
    uint32_t version;                       /* OUT: 1 or 2 */
};
typedef struct gnttab_get_version gnttab_get_version_t;
DEFINE_XEN_GUEST_HANDLE(gnttab_get_version_t);

#endif /* !__ASSEMBLY__ */

#endif /* __XEN_PUBLIC_GRANT_TABLE_H__ */
