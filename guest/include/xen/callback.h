/*
 * xenpy guest headers: the argument structures of HYPERVISOR_callback_op
 * (Xen's public/callback.h).
 *
 * The CALLBACKOP_* command numbers come from the generated
 * <generated/hypercalls.h>. xen_callback_t is declared by arch-x86/xen.h:
 * an address on x86_64, a {cs, eip} pair on x86_32.
 */

#ifndef __XEN_PUBLIC_CALLBACK_H__
#define __XEN_PUBLIC_CALLBACK_H__

#include "xen.h"

/* Callback types. */
#define CALLBACKTYPE_event               0  /* event upcall */
#define CALLBACKTYPE_failsafe            1  /* bad segment on return to guest */
#define CALLBACKTYPE_syscall             2  /* x86_64 only */
#define CALLBACKTYPE_sysenter_deprecated 3
#define CALLBACKTYPE_nmi                 4  /* NMI handler */
#define CALLBACKTYPE_sysenter            5  /* 32-bit sysenter entry */
#define CALLBACKTYPE_syscall32           7  /* x86_64 only: 32-bit syscall entry */

/* callback_register.flags: mask events on entry to the callback. */
#define _CALLBACKF_mask_events 0
#define CALLBACKF_mask_events  (1 << _CALLBACKF_mask_events)

#ifndef __ASSEMBLY__

/* CALLBACKOP_register. */
struct callback_register {
    uint16_t type;          /* CALLBACKTYPE_* */
    uint16_t flags;         /* CALLBACKF_* */
    xen_callback_t address;
};
typedef struct callback_register callback_register_t;
DEFINE_XEN_GUEST_HANDLE(callback_register_t);

/* CALLBACKOP_unregister. */
struct callback_unregister {
    uint16_t type;          /* CALLBACKTYPE_* */
    uint16_t _unused;
};
typedef struct callback_unregister callback_unregister_t;
DEFINE_XEN_GUEST_HANDLE(callback_unregister_t);

#endif /* !__ASSEMBLY__ */

#endif /* __XEN_PUBLIC_CALLBACK_H__ */
