/*
 * xenpy guest headers: the argument structures of HYPERVISOR_vcpu_op
 * (Xen's public/vcpu.h).
 *
 * The VCPUOP_* command numbers come from the generated
 * <generated/hypercalls.h>.
 */

#ifndef __XEN_PUBLIC_VCPU_H__
#define __XEN_PUBLIC_VCPU_H__

#include "xen.h"

/* vcpu_runstate_info.state. */
#define RUNSTATE_running  0  /* running on a physical CPU */
#define RUNSTATE_runnable 1  /* ready to run, waiting for a physical CPU */
#define RUNSTATE_blocked  2  /* blocked on an event */
#define RUNSTATE_offline  3  /* down, or not yet brought up */

/*
 * Set in state_entry_time of a registered runstate area while Xen updates
 * it, when VMASST_TYPE_runstate_update_flag is enabled.
 */
#define XEN_RUNSTATE_UPDATE (xen_mk_ullong(1) << 63)

/* vcpu_set_singleshot_timer.flags: fail with -ETIME if the deadline is past. */
#define _VCPU_SSHOTTMR_future 0
#define VCPU_SSHOTTMR_future  (1 << _VCPU_SSHOTTMR_future)

#ifndef __ASSEMBLY__

/* VCPUOP_get_runstate_info, and the area of VCPUOP_register_runstate_memory_area. */
struct vcpu_runstate_info {
    int      state;             /* RUNSTATE_* */
    uint64_t state_entry_time;  /* system time (ns) of entry to state */
    uint64_t time[4];           /* ns spent in each RUNSTATE_* */
};
typedef struct vcpu_runstate_info vcpu_runstate_info_t;
DEFINE_XEN_GUEST_HANDLE(vcpu_runstate_info_t);

DEFINE_XEN_GUEST_HANDLE(vcpu_time_info_t);

/* VCPUOP_register_runstate_memory_area: a guest virtual address. */
struct vcpu_register_runstate_memory_area {
    union {
        XEN_GUEST_HANDLE(vcpu_runstate_info_t) h;
        struct vcpu_runstate_info *v;
        uint64_t p;
    } addr;
};
typedef struct vcpu_register_runstate_memory_area vcpu_register_runstate_memory_area_t;
DEFINE_XEN_GUEST_HANDLE(vcpu_register_runstate_memory_area_t);

/* VCPUOP_set_periodic_timer. */
struct vcpu_set_periodic_timer {
    uint64_t period_ns;
};
typedef struct vcpu_set_periodic_timer vcpu_set_periodic_timer_t;
DEFINE_XEN_GUEST_HANDLE(vcpu_set_periodic_timer_t);

/* VCPUOP_set_singleshot_timer. */
struct vcpu_set_singleshot_timer {
    uint64_t timeout_abs_ns;    /* absolute system time (ns) */
    uint32_t flags;             /* VCPU_SSHOTTMR_* */
};
typedef struct vcpu_set_singleshot_timer vcpu_set_singleshot_timer_t;
DEFINE_XEN_GUEST_HANDLE(vcpu_set_singleshot_timer_t);

/* VCPUOP_register_vcpu_info: move vcpu_info to mfn:offset. */
struct vcpu_register_vcpu_info {
    uint64_t mfn;               /* machine frame holding the new vcpu_info */
    uint32_t offset;            /* its offset within the frame */
    uint32_t rsvd;              /* must be zero */
};
typedef struct vcpu_register_vcpu_info vcpu_register_vcpu_info_t;
DEFINE_XEN_GUEST_HANDLE(vcpu_register_vcpu_info_t);

/* VCPUOP_get_physid. */
struct vcpu_get_physid {
    uint64_t phys_id;
};
typedef struct vcpu_get_physid vcpu_get_physid_t;
DEFINE_XEN_GUEST_HANDLE(vcpu_get_physid_t);
#define xen_vcpu_physid_to_x86_apicid(physid) ((uint32_t)(physid))
#define xen_vcpu_physid_to_x86_acpiid(physid) ((uint32_t)((physid) >> 32))

/* VCPUOP_register_vcpu_time_memory_area: a guest virtual address. */
struct vcpu_register_time_memory_area {
    union {
        XEN_GUEST_HANDLE(vcpu_time_info_t) h;
        struct vcpu_time_info *v;
        uint64_t p;
    } addr;
};
typedef struct vcpu_register_time_memory_area vcpu_register_time_memory_area_t;
DEFINE_XEN_GUEST_HANDLE(vcpu_register_time_memory_area_t);

#endif /* !__ASSEMBLY__ */

#endif /* __XEN_PUBLIC_VCPU_H__ */
