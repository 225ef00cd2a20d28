/*
 * xenpy guest headers: the xenstore wire protocol and the ring page shared
 * with xenstored (Xen's public/io/xs_wire.h, as in Xen 4.17 to 4.20).
 *
 * The page is start_info.store_mfn; xenstored is notified on
 * start_info.store_evtchn. A message is a struct xsd_sockmsg followed by
 * len bytes of payload (at most XENSTORE_PAYLOAD_MAX). Indices run freely
 * and are reduced with MASK_XENSTORE_IDX.
 */

#ifndef __XEN_PUBLIC_IO_XS_WIRE_H__
#define __XEN_PUBLIC_IO_XS_WIRE_H__

#define XENSTORE_RING_SIZE 1024

#define XENSTORE_PAYLOAD_MAX 4096
#define XENSTORE_ABS_PATH_MAX 3072
#define XENSTORE_REL_PATH_MAX 2048

#define XENSTORE_SERVER_FEATURE_RECONNECTION 1
#define XENSTORE_SERVER_FEATURE_ERROR        2

#define XENSTORE_CONNECTED 0
#define XENSTORE_RECONNECT 1

#define XENSTORE_ERROR_NONE    0
#define XENSTORE_ERROR_COMM    1
#define XENSTORE_ERROR_RINGIDX 2
#define XENSTORE_ERROR_PROTO   3

#ifndef __ASSEMBLY__

#include <stdint.h>

enum xsd_sockmsg_type
{
    XS_CONTROL,
#define XS_DEBUG XS_CONTROL
    XS_DIRECTORY,
    XS_READ,
    XS_GET_PERMS,
    XS_WATCH,
    XS_UNWATCH,
    XS_TRANSACTION_START,
    XS_TRANSACTION_END,
    XS_INTRODUCE,
    XS_RELEASE,
    XS_GET_DOMAIN_PATH,
    XS_WRITE,
    XS_MKDIR,
    XS_RM,
    XS_SET_PERMS,
    XS_WATCH_EVENT,
    XS_ERROR,
    XS_IS_DOMAIN_INTRODUCED,
    XS_RESUME,
    XS_SET_TARGET,
    /* XS_RESTRICT has been removed */
    XS_RESET_WATCHES = XS_SET_TARGET + 2,
    XS_DIRECTORY_PART,

    XS_TYPE_COUNT,      /* Number of valid types. */

    XS_INVALID = 0xffff /* Guaranteed to remain an invalid type */
};

enum xs_watch_type
{
    XS_WATCH_PATH = 0,
    XS_WATCH_TOKEN
};

struct xsd_sockmsg {
    uint32_t type;      /* XS_??? */
    uint32_t req_id;    /* echoed in the daemon's response */
    uint32_t tx_id;     /* transaction id (0 if none) */
    uint32_t len;       /* length of the payload that follows */
};

typedef uint32_t XENSTORE_RING_IDX;

#define MASK_XENSTORE_IDX(idx) ((idx) & (XENSTORE_RING_SIZE - 1))

struct xenstore_domain_interface {
    char req[XENSTORE_RING_SIZE];   /* requests to xenstored */
    char rsp[XENSTORE_RING_SIZE];   /* replies and watch events */
    XENSTORE_RING_IDX req_cons, req_prod;
    XENSTORE_RING_IDX rsp_cons, rsp_prod;
    uint32_t server_features;       /* XENSTORE_SERVER_FEATURE_* */
    uint32_t connection;            /* XENSTORE_CONNECTED, XENSTORE_RECONNECT */
    uint32_t error;                 /* XENSTORE_ERROR_* */
};

#endif /* !__ASSEMBLY__ */

#endif /* __XEN_PUBLIC_IO_XS_WIRE_H__ */
