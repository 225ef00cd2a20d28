/*
 * Conformance checks: one console line per check, in a format the
 * conformance runner (xenpy conformance) reads on xenpy and on real Xen:
 *
 *   check <id>: [<spec section>] <what>: got <X> want <Y> ok|FAIL
 *
 * <id> is unique within the test and stable across releases (the runner
 * compares xenpy's and Xen's lines by it); <what> names the hypercall and
 * sub-op it exercises (VCPUOP_up, EVTCHNOP_status, ...), which is how the
 * runner knows which checks cover which sub-op. A FAIL makes the verdict
 * FAILURE. A check whose "got" depends on scheduling (a remote vCPU's
 * state, a version counter) is made with check_sched(): its line ends with
 * " (scheduler-dependent)" and the runner does not compare its value with
 * real Xen's.
 *
 * What a check wants may differ between Xen releases: test_profile() is
 * the release profile (guest/include/generated/profiles.h, from the one
 * version table hypercalls/profiles.toml) the test expects.
 */

#ifndef XENPY_GUEST_CHECK_H
#define XENPY_GUEST_CHECK_H

#include <stdbool.h>
#include <stdint.h>

#include <generated/profiles.h>
#include <xenpy-guest/compiler.h>

/*
 * The profile the checks expect: "profile=<name>" on the command line, or
 * else the newest profile whose XENVER_version matches (with the same
 * XENVER_extraversion if one does). Found once; an unknown name on the
 * command line is a test ERROR (the test ends at once).
 */
const struct xen_profile *test_profile(void);

/* Print the check line (signed decimal values); true if got == want. */
bool check(const char *id, const char *section, long got, long want,
           const char *what, ...) __printf(5, 6);

/* As check(), with the values in hex (addresses, masks, times). */
bool check_hex(const char *id, const char *section, uint64_t got, uint64_t want,
               const char *what, ...) __printf(5, 6);

/* As check(), for a value that depends on scheduling. */
bool check_sched(const char *id, const char *section, long got, long want,
                 const char *what, ...) __printf(5, 6);

/*
 * A check whose value depends on whether the kernel is domain 0 (as on
 * real Xen under the oracle) or a domU (as on xenpy): its line ends with
 * " (domain-dependent)" and is not compared either. What it wants is
 * chosen from is_initial_domain().
 */
bool check_domain(const char *id, const char *section, long got, long want,
                  const char *what, ...) __printf(5, 6);
bool check_domain_hex(const char *id, const char *section, uint64_t got, uint64_t want,
                      const char *what, ...) __printf(5, 6);

/*
 * A check whose value depends on the CPU that runs the kernel, where an
 * emulator differs from hardware (QEMU's TCG, under the real-Xen oracle,
 * raises #GP(0) where hardware raises #SS(0)): its line ends with
 * " (cpu-dependent)" and is not compared either. What it wants for the CPU
 * at hand is the test's choice.
 */
bool check_cpu(const char *id, const char *section, long got, long want,
               const char *what, ...) __printf(5, 6);

#endif /* XENPY_GUEST_CHECK_H */
