/*
 * xenpy guest headers: the arguments of HYPERVISOR_grant_table_op's
 * setup_table, query_size, set_version, get_status_frames, get_version,
 * map_grant_ref, unmap_grant_ref and unmap_and_replace, the grant entries of
 * versions 1 and 2 and the version-2 status word, and the GTF_*, GNTMAP_*
 * and GNTST_* values (Xen's public/grant_table.h).
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

/* GNTTABOP_set_version. */
struct gnttab_set_version {
    uint32_t version;                       /* IN/OUT: 1 or 2 */
};
typedef struct gnttab_set_version gnttab_set_version_t;
DEFINE_XEN_GUEST_HANDLE(gnttab_set_version_t);

/* GNTTABOP_get_status_frames. */
struct gnttab_get_status_frames {
    uint32_t nr_frames;                     /* IN: size of frame_list */
    domid_t  dom;                           /* IN */
    int16_t  status;                        /* OUT: GNTST_* */
    XEN_GUEST_HANDLE(uint64_t) frame_list;  /* OUT: frames of the status table */
};
typedef struct gnttab_get_status_frames gnttab_get_status_frames_t;
DEFINE_XEN_GUEST_HANDLE(gnttab_get_status_frames_t);

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
#define GNTMAP_application_map (1 << 3)
#define GNTMAP_contains_pte    (1 << 4)

/* GNTST_*: the status of one operation. */
#define GNTST_okay              (0)
#define GNTST_general_error     (-1)
#define GNTST_bad_domain        (-2)
#define GNTST_bad_gntref        (-3)
#define GNTST_bad_handle        (-4)
#define GNTST_bad_virt_addr     (-5)
#define GNTST_bad_dev_addr      (-6)
#define GNTST_no_device_space   (-7)
#define GNTST_permission_denied (-8)
#define GNTST_bad_page          (-9)
#define GNTST_bad_copy_arg      (-10)
#define GNTST_address_too_big   (-11)
#define GNTST_eagain            (-12)
#define GNTST_no_space          (-13)

/* A version-1 grant entry. */
struct grant_entry_v1 {
    uint16_t flags;                         /* GTF_* */
    domid_t  domid;
    uint32_t frame;
};

/* Entries kept across a version change (toolstack-reserved). */
#define GNTTAB_NR_RESERVED_ENTRIES 8
#define GNTTAB_RESERVED_CONSOLE    0
#define GNTTAB_RESERVED_XENSTORE   1

/*
 * GTF_*: the entry's type, then subflags. GTF_reading and GTF_writing are
 * Xen's: in the flags of a version-1 entry, in the grant_status_t of a
 * version-2 one.
 */
#define GTF_invalid            0
#define GTF_permit_access      1
#define GTF_accept_transfer    2
#define GTF_transitive         3
#define GTF_type_mask          3
#define GTF_readonly           (1 << 2)
#define GTF_reading            (1 << 3)
#define GTF_writing            (1 << 4)
#define GTF_PWT                (1 << 5)
#define GTF_PCD                (1 << 6)
#define GTF_PAT                (1 << 7)
#define GTF_sub_page           (1 << 8)

/* A version-2 grant entry: one header, then the fields of its type. */
struct grant_entry_header {
    uint16_t flags;
    domid_t  domid;
};
typedef struct grant_entry_header grant_entry_header_t;

union grant_entry_v2 {
    grant_entry_header_t hdr;
    struct {                                /* GTF_permit_access, no GTF_sub_page */
        grant_entry_header_t hdr;
        uint32_t pad0;
        uint64_t frame;
    } full_page;
    struct {                                /* GTF_permit_access | GTF_sub_page */
        grant_entry_header_t hdr;
        uint16_t page_off;
        uint16_t length;
        uint64_t frame;
    } sub_page;
    struct {                                /* GTF_transitive */
        grant_entry_header_t hdr;
        domid_t  trans_domid;
        uint16_t pad0;
        grant_ref_t gref;
    } transitive;
    uint32_t __spacer[4];
};
typedef union grant_entry_v2 grant_entry_v2_t;

/* The version-2 status word of an entry: GTF_reading | GTF_writing. */
typedef uint16_t grant_status_t;

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
