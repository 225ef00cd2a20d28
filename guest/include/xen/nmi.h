/*
 * xenpy guest headers: the argument of HYPERVISOR_nmi_op and the NMI
 * reason bits (Xen's public/nmi.h).
 *
 * The XENNMI_* command numbers come from the generated
 * <generated/hypercalls.h>.
 */

#ifndef __XEN_PUBLIC_NMI_H__
#define __XEN_PUBLIC_NMI_H__

#include "xen.h"

/* Bits of shared_info.arch.nmi_reason. */
#define _XEN_NMIREASON_io_error 0  /* I/O check error */
#define XEN_NMIREASON_io_error  (1 << _XEN_NMIREASON_io_error)
#define _XEN_NMIREASON_pci_serr 1  /* PCI SERR */
#define XEN_NMIREASON_pci_serr  (1 << _XEN_NMIREASON_pci_serr)

#ifndef __ASSEMBLY__

/* XENNMI_register_callback. */
struct xennmi_callback {
    unsigned long handler_address;
    unsigned long pad;
};
typedef struct xennmi_callback xennmi_callback_t;
DEFINE_XEN_GUEST_HANDLE(xennmi_callback_t);

#endif /* !__ASSEMBLY__ */

#endif /* __XEN_PUBLIC_NMI_H__ */
