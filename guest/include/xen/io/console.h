/*
 * xenpy guest headers: the PV console ring shared with the console
 * backend (Xen's public/io/console.h).
 *
 * The page is start_info.console.domU.mfn; the backend is notified on
 * start_info.console.domU.evtchn. Indices run freely and are reduced with
 * MASK_XENCONS_IDX.
 */

#ifndef __XEN_PUBLIC_IO_CONSOLE_H__
#define __XEN_PUBLIC_IO_CONSOLE_H__

#define XENCONS_IN_SIZE  1024
#define XENCONS_OUT_SIZE 2048

#ifndef __ASSEMBLY__

#include <stdint.h>

typedef uint32_t XENCONS_RING_IDX;

#define MASK_XENCONS_IDX(idx, ring) ((idx) & (sizeof(ring) - 1))

struct xencons_interface {
    char in[XENCONS_IN_SIZE];       /* backend to guest */
    char out[XENCONS_OUT_SIZE];     /* guest to backend */
    XENCONS_RING_IDX in_cons, in_prod;
    XENCONS_RING_IDX out_cons, out_prod;
};

#endif /* !__ASSEMBLY__ */

#endif /* __XEN_PUBLIC_IO_CONSOLE_H__ */
