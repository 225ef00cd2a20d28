/*
 * Test verdicts and the end of a test: "Test result: <verdict>" as the
 * last console line, then SCHEDOP_shutdown.
 */

#include <xenpy-guest/console.h>
#include <xenpy-guest/hypervisor.h>
#include <xenpy-guest/lib.h>
#include <xenpy-guest/test.h>

static enum test_status status = STATUS_RUNNING;

static const char *const status_names[] = {
    [STATUS_RUNNING] = "ERROR",     /* nothing reported: see xtf_exit() */
    [STATUS_SUCCESS] = "SUCCESS",
    [STATUS_SKIP]    = "SKIP",
    [STATUS_ERROR]   = "ERROR",
    [STATUS_FAILURE] = "FAILURE",
};

/* Keep the most severe verdict (the enum is ordered by severity). */
static void set_status(enum test_status s)
{
    enum test_status old = READ_ONCE(status);

    while ( s > old &&
            !__atomic_compare_exchange_n(&status, &old, s, false,
                                         __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST) )
        ;
}

enum test_status xtf_status(void)
{
    return READ_ONCE(status);
}

#define DEFINE_REPORT(fn, st)                   \
    void fn(const char *fmt, ...)               \
    {                                           \
        set_status(st);                         \
        if ( fmt )                              \
        {                                       \
            va_list args;                       \
                                                \
            va_start(args, fmt);                \
            vprintk(fmt, args);                 \
            va_end(args);                       \
        }                                       \
    }

DEFINE_REPORT(xtf_success, STATUS_SUCCESS)
DEFINE_REPORT(xtf_skip, STATUS_SKIP)
DEFINE_REPORT(xtf_error, STATUS_ERROR)
DEFINE_REPORT(xtf_failure, STATUS_FAILURE)

static int format_verdict(char *buf, size_t size)
{
    return snprintf(buf, size, "Test result: %s\n", status_names[xtf_status()]);
}

void xtf_exit(void)
{
    xtf_exit_reason(SHUTDOWN_poweroff);
}

void xtf_exit_reason(unsigned int reason)
{
    char buf[64];
    int len;

    if ( xtf_status() == STATUS_RUNNING )
        printk("Test did not report a result\n");

    len = format_verdict(buf, sizeof(buf));
    console_write_last(buf, len, false);
    shutdown_domain(reason);
}

void xtf_exit_crash(void)
{
    char buf[64];
    int len;

    set_status(STATUS_ERROR);
    len = format_verdict(buf, sizeof(buf));
    console_write_last(buf, len, true);
    crash_domain();
}

void panic(const char *fmt, ...)
{
    static unsigned int nr_panics;
    char buf[2 * PRINTK_BUF_SIZE];
    va_list args;
    int len;

    /* A panic while panicking (e.g. a fault in the console code): just crash. */
    if ( __atomic_fetch_add(&nr_panics, 1, __ATOMIC_SEQ_CST) )
        crash_domain();

    len = snprintf(buf, sizeof(buf), "PANIC: ");
    va_start(args, fmt);
    len += vsnprintf(buf + len, sizeof(buf) - len, fmt, args);
    va_end(args);
    if ( len > (int)sizeof(buf) - 1 )
        len = sizeof(buf) - 1;

    console_write_unlocked(buf, len, true);
    xtf_exit_crash();
}
