/*
 * String and memory functions of the xenpy guest kernel.
 *
 * gcc may turn structure copies and loops into calls to memcpy, memmove,
 * memset and memcmp even with -ffreestanding, so these must exist. They
 * are written byte by byte and guarded against the compiler recognising
 * them as calls to themselves.
 */

#include <xenpy-guest/lib.h>

#define NO_LOOP_PATTERNS __attribute__((__optimize__("no-tree-loop-distribute-patterns")))

NO_LOOP_PATTERNS void *memcpy(void *dst, const void *src, size_t n)
{
    char *d = dst;
    const char *s = src;

    while ( n-- )
        *d++ = *s++;

    return dst;
}

NO_LOOP_PATTERNS void *memmove(void *dst, const void *src, size_t n)
{
    char *d = dst;
    const char *s = src;

    if ( d < s )
    {
        while ( n-- )
            *d++ = *s++;
    }
    else
    {
        while ( n-- )
            d[n] = s[n];
    }

    return dst;
}

NO_LOOP_PATTERNS void *memset(void *dst, int c, size_t n)
{
    char *d = dst;

    while ( n-- )
        *d++ = (char)c;

    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *p = a, *q = b;

    for ( ; n; n--, p++, q++ )
    {
        if ( *p != *q )
            return *p - *q;
    }

    return 0;
}

size_t strlen(const char *s)
{
    const char *p = s;

    while ( *p )
        p++;

    return p - s;
}

size_t strnlen(const char *s, size_t max)
{
    size_t n = 0;

    while ( n < max && s[n] )
        n++;

    return n;
}

int strcmp(const char *a, const char *b)
{
    while ( *a && *a == *b )
    {
        a++;
        b++;
    }

    return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for ( ; n; n--, a++, b++ )
    {
        if ( *a != *b )
            return (unsigned char)*a - (unsigned char)*b;
        if ( !*a )
            break;
    }

    return 0;
}
