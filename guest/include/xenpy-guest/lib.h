/*
 * Freestanding library of the xenpy guest kernel: strings, formatted
 * output, panic.
 */

#ifndef XENPY_GUEST_LIB_H
#define XENPY_GUEST_LIB_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <xenpy-guest/compiler.h>

/* common/string.c. gcc may emit calls to the first four by itself. */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/*
 * common/vsnprintf.c: C-style formatting into buf (always NUL-terminated
 * when size > 0). Returns the length the full output would have.
 * Conversions: d i u x X o p s c %; flags - 0 + space #; width and
 * precision (also *); length modifiers hh h l ll z.
 */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list args);
int snprintf(char *buf, size_t size, const char *fmt, ...) __printf(3, 4);

/*
 * common/console.c: format and write to the console. One call is written
 * in one piece (never interleaved with another vCPU's output), truncated
 * to PRINTK_BUF_SIZE - 1 bytes.
 */
#define PRINTK_BUF_SIZE 512
void vprintk(const char *fmt, va_list args);
void printk(const char *fmt, ...) __printf(1, 2);
#define printf printk

/*
 * Print "PANIC: <message>" and the test verdict (at least ERROR), then crash
 * the domain with SCHEDOP_shutdown(SHUTDOWN_crash).
 */
void __noreturn panic(const char *fmt, ...) __printf(1, 2);

#define ASSERT(cond)                                                    \
    do {                                                                \
        if ( unlikely(!(cond)) )                                        \
            panic("Assertion '%s' failed at %s:%d\n",                   \
                  #cond, __FILE__, __LINE__);                           \
    } while ( 0 )

#endif /* XENPY_GUEST_LIB_H */
