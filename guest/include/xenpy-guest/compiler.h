/*
 * Compiler helpers of the xenpy guest kernel.
 */

#ifndef XENPY_GUEST_COMPILER_H
#define XENPY_GUEST_COMPILER_H

#define likely(x)       __builtin_expect(!!(x), 1)
#define unlikely(x)     __builtin_expect(!!(x), 0)

#define __noreturn      __attribute__((__noreturn__))
#define __printf(f, a)  __attribute__((__format__(__printf__, f, a)))
#define __aligned(n)    __attribute__((__aligned__(n)))
#define __section(s)    __attribute__((__section__(s)))
#define __used          __attribute__((__used__))
#define __maybe_unused  __attribute__((__unused__))
#define __page_aligned_bss __section(".bss.page_aligned") __aligned(4096)

#define ARRAY_SIZE(a)   (sizeof(a) / sizeof((a)[0]))

#define min(a, b)                               \
    ({ __typeof__(a) a_ = (a);                  \
       __typeof__(b) b_ = (b);                  \
       a_ < b_ ? a_ : b_; })

#define max(a, b)                               \
    ({ __typeof__(a) a_ = (a);                  \
       __typeof__(b) b_ = (b);                  \
       a_ > b_ ? a_ : b_; })

/* Read or write a variable exactly once (shared with Xen or other vCPUs). */
#define ACCESS_ONCE(x)  (*(volatile __typeof__(x) *)&(x))
#define READ_ONCE(x)    ACCESS_ONCE(x)
#define WRITE_ONCE(x, v) (ACCESS_ONCE(x) = (v))

#endif /* XENPY_GUEST_COMPILER_H */
