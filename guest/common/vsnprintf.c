/*
 * A small vsnprintf for the xenpy guest kernel.
 *
 * Conversions: d i u x X o p s c %. Flags: - 0 + space #. Width and
 * precision, either as digits or as '*'. Length modifiers: hh h l ll z t.
 * %p prints "0x" and 16 hex digits. An unknown conversion is copied as is.
 */

#include <xenpy-guest/lib.h>

#define FL_LEFT   (1 << 0)  /* '-': left-justify in the field */
#define FL_ZERO   (1 << 1)  /* '0': pad numbers with zeros */
#define FL_PLUS   (1 << 2)  /* '+': always print a sign */
#define FL_SPACE  (1 << 3)  /* ' ': space in place of a plus sign */
#define FL_ALT    (1 << 4)  /* '#': 0x / 0 prefix */
#define FL_UPPER  (1 << 5)  /* %X */

/* Output cursor: writes what fits, counts everything. */
struct out {
    char *buf;
    size_t size;
    size_t len;
};

static void put_char(struct out *o, char c)
{
    if ( o->len + 1 < o->size )
        o->buf[o->len] = c;
    o->len++;
}

static void put_repeat(struct out *o, char c, int n)
{
    while ( n-- > 0 )
        put_char(o, c);
}

static void put_string(struct out *o, const char *s, int width, int precision,
                       unsigned int flags)
{
    int len;

    if ( !s )
        s = "(NULL)";

    len = (int)strnlen(s, precision < 0 ? (size_t)-1 : (size_t)precision);

    if ( !(flags & FL_LEFT) )
        put_repeat(o, ' ', width - len);
    for ( int i = 0; i < len; i++ )
        put_char(o, s[i]);
    if ( flags & FL_LEFT )
        put_repeat(o, ' ', width - len);
}

static void put_number(struct out *o, unsigned long long val, bool negative,
                       unsigned int base, int width, int precision,
                       unsigned int flags)
{
    const char *digits = (flags & FL_UPPER) ? "0123456789ABCDEF"
                                            : "0123456789abcdef";
    char tmp[24];           /* 22 octal digits hold 64 bits */
    char prefix[3];
    int nr_digits = 0, nr_prefix = 0, nr_zeros, pad;

    /* Digits, least significant first. Precision 0 prints no digit for 0. */
    if ( val || precision != 0 )
    {
        do {
            tmp[nr_digits++] = digits[val % base];
            val /= base;
        } while ( val );
    }

    if ( negative )
        prefix[nr_prefix++] = '-';
    else if ( flags & FL_PLUS )
        prefix[nr_prefix++] = '+';
    else if ( flags & FL_SPACE )
        prefix[nr_prefix++] = ' ';

    if ( (flags & FL_ALT) && base == 16 && nr_digits && tmp[nr_digits - 1] != '0' )
    {
        prefix[nr_prefix++] = '0';
        prefix[nr_prefix++] = (flags & FL_UPPER) ? 'X' : 'x';
    }
    else if ( (flags & FL_ALT) && base == 8 &&
              (!nr_digits || tmp[nr_digits - 1] != '0') )
        tmp[nr_digits++] = '0';

    /* Leading zeros: from the precision, or from the width with '0'. */
    nr_zeros = precision > nr_digits ? precision - nr_digits : 0;
    if ( precision < 0 && (flags & FL_ZERO) && !(flags & FL_LEFT) &&
         width > nr_prefix + nr_digits )
        nr_zeros = width - nr_prefix - nr_digits;

    pad = width - nr_prefix - nr_zeros - nr_digits;

    if ( !(flags & FL_LEFT) )
        put_repeat(o, ' ', pad);
    for ( int i = 0; i < nr_prefix; i++ )
        put_char(o, prefix[i]);
    put_repeat(o, '0', nr_zeros);
    while ( nr_digits )
        put_char(o, tmp[--nr_digits]);
    if ( flags & FL_LEFT )
        put_repeat(o, ' ', pad);
}

/* Parse a decimal number at *fmt, advancing it. */
static int parse_decimal(const char **fmt)
{
    int n = 0;

    while ( **fmt >= '0' && **fmt <= '9' )
        n = n * 10 + (*(*fmt)++ - '0');

    return n;
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list args)
{
    struct out o = { .buf = buf, .size = size, .len = 0 };

    for ( ; *fmt; fmt++ )
    {
        unsigned int flags = 0, base = 10;
        int width = -1, precision = -1, lng = 0; /* lng: -2 hh, -1 h, 1 l, 2 ll */
        unsigned long long uval;
        bool is_signed = false, negative = false;

        if ( *fmt != '%' )
        {
            put_char(&o, *fmt);
            continue;
        }

        /* Flags. */
        for ( ;; )
        {
            switch ( *++fmt )
            {
            case '-': flags |= FL_LEFT;  continue;
            case '0': flags |= FL_ZERO;  continue;
            case '+': flags |= FL_PLUS;  continue;
            case ' ': flags |= FL_SPACE; continue;
            case '#': flags |= FL_ALT;   continue;
            }
            break;
        }

        /* Width. */
        if ( *fmt == '*' )
        {
            fmt++;
            width = va_arg(args, int);
            if ( width < 0 )
            {
                flags |= FL_LEFT;
                width = -width;
            }
        }
        else
            width = parse_decimal(&fmt);

        /* Precision. */
        if ( *fmt == '.' )
        {
            fmt++;
            if ( *fmt == '*' )
            {
                fmt++;
                precision = va_arg(args, int);
            }
            else
                precision = parse_decimal(&fmt);
            if ( precision < 0 )
                precision = -1;
        }

        /* Length modifier. */
        switch ( *fmt )
        {
        case 'h':
            lng = -1;
            if ( *++fmt == 'h' )
            {
                lng = -2;
                fmt++;
            }
            break;
        case 'l':
            lng = 1;
            if ( *++fmt == 'l' )
            {
                lng = 2;
                fmt++;
            }
            break;
        case 'z':
        case 't':
            lng = 1;
            fmt++;
            break;
        }

        /* Conversion. */
        switch ( *fmt )
        {
        case '%':
            put_char(&o, '%');
            continue;

        case 'c':
        {
            char c = (char)va_arg(args, int);

            if ( !(flags & FL_LEFT) )
                put_repeat(&o, ' ', width - 1);
            put_char(&o, c);
            if ( flags & FL_LEFT )
                put_repeat(&o, ' ', width - 1);
            continue;
        }

        case 's':
            put_string(&o, va_arg(args, const char *), width, precision, flags);
            continue;

        case 'p':
            put_char(&o, '0');
            put_char(&o, 'x');
            put_number(&o, (unsigned long)va_arg(args, void *), false, 16,
                       0, 16, 0);
            continue;

        case 'd':
        case 'i':
            is_signed = true;
            break;
        case 'u':
            break;
        case 'x':
            base = 16;
            break;
        case 'X':
            base = 16;
            flags |= FL_UPPER;
            break;
        case 'o':
            base = 8;
            break;

        case '\0':
            /* A lone '%' at the end of the format. */
            put_char(&o, '%');
            fmt--;
            continue;

        default:
            put_char(&o, '%');
            put_char(&o, *fmt);
            continue;
        }

        if ( is_signed )
        {
            long long sval;

            if ( lng == 2 )
                sval = va_arg(args, long long);
            else if ( lng == 1 )
                sval = va_arg(args, long);
            else if ( lng == -1 )
                sval = (short)va_arg(args, int);
            else if ( lng == -2 )
                sval = (signed char)va_arg(args, int);
            else
                sval = va_arg(args, int);

            negative = sval < 0;
            uval = negative ? -(unsigned long long)sval : (unsigned long long)sval;
            flags &= ~FL_ALT;
        }
        else
        {
            if ( lng == 2 )
                uval = va_arg(args, unsigned long long);
            else if ( lng == 1 )
                uval = va_arg(args, unsigned long);
            else if ( lng == -1 )
                uval = (unsigned short)va_arg(args, unsigned int);
            else if ( lng == -2 )
                uval = (unsigned char)va_arg(args, unsigned int);
            else
                uval = va_arg(args, unsigned int);

            flags &= ~(FL_PLUS | FL_SPACE);
        }

        put_number(&o, uval, negative, base, width, precision, flags);
    }

    if ( o.size )
        o.buf[o.len < o.size ? o.len : o.size - 1] = '\0';

    return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list args;
    int rc;

    va_start(args, fmt);
    rc = vsnprintf(buf, size, fmt, args);
    va_end(args);

    return rc;
}
