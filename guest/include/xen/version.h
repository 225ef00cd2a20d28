/*
 * xenpy guest headers: the results of HYPERVISOR_xen_version
 * (Xen's public/version.h).
 *
 * The XENVER_* command numbers come from the generated
 * <generated/hypercalls.h>. XENVER_version returns (major << 16) | minor
 * and takes no buffer.
 */

#ifndef __XEN_PUBLIC_VERSION_H__
#define __XEN_PUBLIC_VERSION_H__

#include "xen.h"

#ifndef __ASSEMBLY__

/* XENVER_extraversion. */
typedef char xen_extraversion_t[16];
#define XEN_EXTRAVERSION_LEN (sizeof(xen_extraversion_t))

/* XENVER_compile_info. */
struct xen_compile_info {
    char compiler[64];
    char compile_by[16];
    char compile_domain[32];
    char compile_date[32];
};
typedef struct xen_compile_info xen_compile_info_t;

/* XENVER_capabilities. */
typedef char xen_capabilities_info_t[1024];
#define XEN_CAPABILITIES_INFO_LEN (sizeof(xen_capabilities_info_t))

/* XENVER_changeset. */
typedef char xen_changeset_info_t[64];
#define XEN_CHANGESET_INFO_LEN (sizeof(xen_changeset_info_t))

/* XENVER_platform_parameters. */
struct xen_platform_parameters {
    xen_ulong_t virt_start;     /* start of the hypervisor hole */
};
typedef struct xen_platform_parameters xen_platform_parameters_t;

/* XENVER_get_features: submap_idx selects 32 XENFEAT_* bits. */
struct xen_feature_info {
    unsigned int submap_idx;    /* IN */
    uint32_t     submap;        /* OUT */
};
typedef struct xen_feature_info xen_feature_info_t;

/* XENVER_guest_handle. */
typedef char xen_domain_handle_t[16];
#define XEN_GUEST_HANDLE_LEN (sizeof(xen_domain_handle_t))

/* XENVER_commandline. */
typedef char xen_commandline_t[1024];
#define XEN_COMMANDLINE_LEN (sizeof(xen_commandline_t))

/* XENVER_build_id: len is IN (size of buf[]); the id follows it. */
struct xen_build_id {
    uint32_t len;
    unsigned char buf[];
};
typedef struct xen_build_id xen_build_id_t;

/*
 * The *2 variants: len is IN (buffer size); the string follows it.
 */
struct xen_varbuf {
    uint32_t len;
    unsigned char buf[];
};
typedef struct xen_varbuf xen_varbuf_t;

#endif /* !__ASSEMBLY__ */

#endif /* __XEN_PUBLIC_VERSION_H__ */
