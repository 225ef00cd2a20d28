/*
 * The in-guest test framework (after XTF): a test is guest/tests/<name>/
 * main.c defining test_title and test_main(). test_main() reports with
 * xtf_success/xtf_skip/xtf_error/xtf_failure; the most severe report wins
 * (SUCCESS < SKIP < ERROR < FAILURE). When test_main() returns, the
 * runtime prints "Test result: <verdict>" as the very last console line and
 * shuts the domain down with SHUTDOWN_poweroff.
 */

#ifndef XENPY_GUEST_TEST_H
#define XENPY_GUEST_TEST_H

#include <stdbool.h>

#include <xenpy-guest/compiler.h>

/* Defined by the test. */
extern const char test_title[];
void test_main(void);

enum test_status {
    STATUS_RUNNING,     /* nothing reported yet */
    STATUS_SUCCESS,
    STATUS_SKIP,
    STATUS_ERROR,       /* the test could not run as intended */
    STATUS_FAILURE,     /* the behaviour under test is wrong */
};

/* Record a verdict; fmt (may be NULL) is printed as is. */
void xtf_success(const char *fmt, ...) __printf(1, 2);
void xtf_skip(const char *fmt, ...) __printf(1, 2);
void xtf_error(const char *fmt, ...) __printf(1, 2);
void xtf_failure(const char *fmt, ...) __printf(1, 2);

/* The verdict so far. */
enum test_status xtf_status(void);

/* True when nothing worse than SUCCESS has been reported. */
static inline bool xtf_ok(void)
{
    enum test_status s = xtf_status();

    return s == STATUS_RUNNING || s == STATUS_SUCCESS;
}

/*
 * Print "Test result: <verdict>" (ERROR when nothing was reported), close
 * the console, and shut down with SHUTDOWN_poweroff.
 */
void __noreturn xtf_exit(void);

/* xtf_exit(), shutting down with reason (a SHUTDOWN_* value) instead. */
void __noreturn xtf_exit_reason(unsigned int reason);

/* The verdict line after a panic: at least ERROR, then SHUTDOWN_crash. */
void __noreturn xtf_exit_crash(void);

#endif /* XENPY_GUEST_TEST_H */
