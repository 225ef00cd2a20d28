/*
 * Host check of the guest kernel's vsnprintf (guest/common/vsnprintf.c),
 * compiled for the host with its functions renamed to guest_*: every
 * format below must give the same text and return value as the C
 * library's snprintf, except %p and NULL strings, which have fixed
 * expected texts. Prints one line per mismatch and "checked N" at the end;
 * exits non-zero on any mismatch.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int guest_snprintf(char *buf, size_t size, const char *fmt, ...);

static unsigned int nr_checked, nr_failed;

static void report(const char *what, const char *got, int got_rc, const char *want, int want_rc)
{
    nr_checked++;
    if ( got_rc != want_rc || strcmp(got, want) )
    {
        nr_failed++;
        printf("MISMATCH %s: guest \"%s\" (%d), expected \"%s\" (%d)\n", what, got, got_rc, want, want_rc);
    }
}

/* Same output as the C library, in a buffer large enough and in a 6-byte one. */
#define SAME(fmt, ...)                                                        \
    do {                                                                      \
        char got[256], want[256];                                             \
        int got_rc = guest_snprintf(got, sizeof(got), fmt, __VA_ARGS__);      \
        int want_rc = snprintf(want, sizeof(want), fmt, __VA_ARGS__);         \
        report(#fmt " " #__VA_ARGS__, got, got_rc, want, want_rc);            \
        got_rc = guest_snprintf(got, 6, fmt, __VA_ARGS__);                    \
        want_rc = snprintf(want, 6, fmt, __VA_ARGS__);                        \
        report(#fmt " " #__VA_ARGS__ " (size 6)", got, got_rc, want, want_rc); \
    } while ( 0 )

#define EXPECT(text, fmt, ...)                                                \
    do {                                                                      \
        char got[256];                                                        \
        int got_rc = guest_snprintf(got, sizeof(got), fmt, __VA_ARGS__);      \
        report(#fmt " " #__VA_ARGS__, got, got_rc, text, (int)strlen(text));  \
    } while ( 0 )

int main(void)
{
    char tiny[1] = { 'x' };

    SAME("plain text%s", "");
    SAME("%d %i %u", -42, 7, 42U);
    SAME("%d %d", -2147483647 - 1, 2147483647);
    SAME("%u %x %X %o", 4294967295U, 0xdeadbeefU, 0xdeadbeefU, 0755U);
    SAME("%ld %lu %lx", -9223372036854775807L - 1, 18446744073709551615UL, 0x123456789abcdefUL);
    SAME("%lld %llu %llx", -1LL, 18446744073709551615ULL, 0xfedcba9876543210ULL);
    SAME("%hd %hu %hhd %hhu %hx", -1, 65535, -1, 255, 0x12345);
    SAME("%zu %zx", (size_t)123456789, (size_t)0xabc);
    SAME("[%5d] [%-5d] [%05d] [%+d] [% d]", 42, 42, 42, 42, 42);
    SAME("[%05d] [%-05d] [%+05d] [%5d]", -42, -42, 42, -42);
    SAME("[%08x] [%#x] [%#08x] [%#X] [%#o] [%#x]", 0xbeefU, 0xbeefU, 0xbeefU, 0xbeefU, 8U, 0U);
    SAME("[%016lx] [%16lx] [%-16lx]", 0x400000UL, 0x400000UL, 0x400000UL);
    SAME("[%.3d] [%.0d] [%8.3d] [%-8.3d] [%08.3d]", 7, 0, 7, -7, 7);
    SAME("[%*d] [%-*d] [%.*d] [%*d]", 6, 1, 6, 1, 4, 1, -6, 1);
    SAME("[%s] [%10s] [%-10s] [%.2s] [%*.*s]", "abc", "abc", "abc", "abc", 6, 1, "abc");
    SAME("[%c] [%3c] [%-3c]", 'a', 'b', 'c');
    SAME("100%% %s", "done");
    SAME("%s=%d, %s=%#lx", "a", 1, "b", 0x10UL);

    EXPECT("0x0000000000400000", "%p", (void *)0x400000);
    EXPECT("0x0000000000000000", "%p", (void *)0);
    EXPECT("(NULL)", "%s", (char *)NULL);
    EXPECT("%y", "%y", 0);

    /* Size 0 writes nothing; size 1 writes only the terminator. */
    if ( guest_snprintf(NULL, 0, "%d", 12345) != 5 )
    {
        nr_failed++;
        printf("MISMATCH size 0 return\n");
    }
    if ( guest_snprintf(tiny, 1, "%d", 12345) != 5 || tiny[0] != '\0' )
    {
        nr_failed++;
        printf("MISMATCH size 1\n");
    }

    printf("checked %u, failed %u\n", nr_checked, nr_failed);

    return nr_failed != 0;
}
