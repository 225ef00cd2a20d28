/*
 * A minimal xenstore client on the domain's store ring (start_info.store_mfn
 * and store_evtchn; io/xs_wire.h): one request at a time from one vCPU,
 * waiting for its reply by yielding. Paths without a leading '/' are
 * relative to /local/domain/<domid>. Domain 0 under a real Xen has no store
 * ring in its start_info: there xs_available() is false.
 */

#ifndef XENPY_GUEST_XENSTORE_H
#define XENPY_GUEST_XENSTORE_H

#include <xenpy-guest/hypervisor.h>

/* Whether the domain has a store ring. */
bool xs_available(void);

/*
 * Read path into buf (NUL-terminated, cut to size - 1 bytes). Returns the
 * value's length, or -XEN_E* (-XEN_ENOENT for a missing node, -XEN_ENODEV
 * without a store ring, -XEN_EIO for a malformed reply).
 */
long xs_read(const char *path, char *buf, size_t size);

/* Write value to path: 0, or -XEN_E* as for xs_read(). */
long xs_write(const char *path, const char *value);

#endif /* XENPY_GUEST_XENSTORE_H */
