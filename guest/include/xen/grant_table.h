/*
 * xenpy guest headers: the arguments of HYPERVISOR_grant_table_op's
 * setup_table, query_size, get_version, map_grant_ref, unmap_grant_ref and
 * unmap_and_replace, and the version-1 grant entry (Xen's
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

typedef uint32_t grant_handle_t;

/* GNTMAP_* flags of GNTTABOP_map_grant_ref. */
#define GNTMAP_device_map      (1 << 0)
#define GNTMAP_host_map        (1 << 1)
#define GNTMAP_readonly        (1 << 2)

/* A version-1 grant entry, and its GTF_* flags. */
struct grant_entry_v1 {
    uint16_t flags;
    domid_t  domid;
    uint32_t frame;
};
#define GTF_permit_access      1
#define GTF_readonly           (1 << 2)
#define GTF_reading            (1 << 3)
#define GTF_writing            (1 << 4)

/* GNTTABOP_map_grant_ref. */
struct gnttab_map_grant_ref {
    uint64_t host_addr;                     /* IN */
    uint32_t flags;                         /* IN: GNTMAP_* */
    grant_ref_t ref;                        /* IN */
    domid_t  dom;                           /* IN */
    int16_t  status;                        /* OUT: GNTST_* */
    grant_handle_t handle;                  /* OUT */
    uint64_t dev_bus_addr;                  /* OUT */
};
typedef struct gnttab_map_grant_ref gnttab_map_grant_ref_t;

/* GNTTABOP_unmap_grant_ref. */
struct gnttab_unmap_grant_ref {
    uint64_t host_addr;                     /* IN */
    uint64_t dev_bus_addr;                  /* IN */
    grant_handle_t handle;                  /* IN */
    int16_t  status;                        /* OUT: GNTST_* */
};
typedef struct gnttab_unmap_grant_ref gnttab_unmap_grant_ref_t;

/* GNTTABOP_unmap_and_replace. */
struct gnttab_unmap_and_replace {
    uint64_t host_addr;                     /* IN */
    uint64_t new_addr;                      /* IN */
    grant_handle_t handle;                  /* IN */
    int16_t  status;                        /* OUT: GNTST_* */
};
typedef struct gnttab_unmap_and_replace gnttab_unmap_and_replace_t;

#endif /* !__ASSEMBLY__ */

#endif /* __XEN_PUBLIC_GRANT_TABLE_H__ */
