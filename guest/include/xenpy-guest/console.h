/*
 * Console output: the PV console ring (start_info.console.domU), or
 * HYPERVISOR_console_io(CONSOLEIO_write) when the domain has no ring.
 */

#ifndef XENPY_GUEST_CONSOLE_H
#define XENPY_GUEST_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Find the ring: console.domU.mfn is a machine frame; its pfn is its index
 * in the p2m list, and pfn p is mapped at VIRT_BASE + p * 4096 (spec 7.2).
 * Uses no hypercall.
 */
void console_init(void);

/* True when output goes to the ring, false when through console_io. */
bool console_has_ring(void);

/* Write len bytes as one piece (serialised between vCPUs). */
void console_write(const char *buf, size_t len);

/*
 * Wait (yielding, bounded) until the backend has consumed everything
 * written to the ring.
 */
void console_flush(void);

/*
 * Write without taking the console lock (panics, and the last words before
 * shutdown): through console_io, or through the ring if console_io fails
 * or no hypercall page exists.
 */
void console_write_unlocked(const char *buf, size_t len, bool prefer_console_io);

/*
 * Write buf as the last output: every later console_write is dropped (the
 * verdict line must stay the last line). With unlocked, do not take the
 * console lock and prefer console_io (the panic path).
 */
void console_write_last(const char *buf, size_t len, bool unlocked);

#endif /* XENPY_GUEST_CONSOLE_H */
