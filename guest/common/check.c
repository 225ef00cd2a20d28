/*
 * Conformance check lines and the test's release profile (check.h).
 */

#include <xenpy-guest/check.h>
#include <xenpy-guest/hypervisor.h>
#include <xenpy-guest/lib.h>
#include <xenpy-guest/test.h>

static const struct xen_profile *profile_by_version(void)
{
    long version = HYPERVISOR_xen_version(XENVER_version, NULL);
    xen_extraversion_t extra = { 0 };
    const struct xen_profile *same_version = NULL;
    unsigned int i;

    (void)HYPERVISOR_xen_version(XENVER_extraversion, extra);
    extra[sizeof(extra) - 1] = '\0';
    for ( i = 0; i < NR_XEN_PROFILES; i++ )
    {
        const struct xen_profile *p = &xen_profiles[i];

        if ( version != (long)((p->version[0] << 16) | p->version[1]) )
            continue;
        if ( !strcmp(p->extraversion, extra) )
            return p;
        if ( !same_version )
            same_version = p;
    }

    return same_version;
}

const struct xen_profile *test_profile(void)
{
    static const struct xen_profile *profile;
    char name[32];
    unsigned int i;

    if ( profile )
        return profile;

    if ( cmdline_get("profile=", name, sizeof(name)) )
    {
        for ( i = 0; i < NR_XEN_PROFILES; i++ )
            if ( !strcmp(xen_profiles[i].name, name) )
                profile = &xen_profiles[i];
        if ( !profile )
        {
            xtf_error("Unknown profile \"%s\" on the command line\n", name);
            xtf_exit();
        }
        printk("Profile: %s (command line)\n", profile->name);
    }
    else
    {
        profile = profile_by_version();
        if ( !profile )
        {
            xtf_error("No profile matches Xen %ld.%ld\n",
                      HYPERVISOR_xen_version(XENVER_version, NULL) >> 16,
                      HYPERVISOR_xen_version(XENVER_version, NULL) & 0xffff);
            xtf_exit();
        }
        printk("Profile: %s (Xen version)\n", profile->name);
    }

    return profile;
}

static bool report(const char *id, const char *section, bool ok, const char *got, const char *want,
                   const char *suffix, const char *what, va_list args)
{
    char buf[256];

    vsnprintf(buf, sizeof(buf), what, args);
    printk("check %s: [%s] %s: got %s want %s %s%s\n",
           id, section, buf, got, want, ok ? "ok" : "FAIL", suffix);
    if ( !ok )
        xtf_failure(NULL);

    return ok;
}

#define DEFINE_CHECK(fn, type, fmt, suffix)                                 \
    bool fn(const char *id, const char *section, type got, type want,       \
            const char *what, ...)                                          \
    {                                                                       \
        char gbuf[24], wbuf[24];                                            \
        va_list args;                                                       \
        bool ok;                                                            \
                                                                            \
        snprintf(gbuf, sizeof(gbuf), fmt, got);                             \
        snprintf(wbuf, sizeof(wbuf), fmt, want);                            \
        va_start(args, what);                                               \
        ok = report(id, section, got == want, gbuf, wbuf, suffix, what, args); \
        va_end(args);                                                       \
        return ok;                                                          \
    }

DEFINE_CHECK(check, long, "%ld", "")
DEFINE_CHECK(check_hex, uint64_t, "%#lx", "")
DEFINE_CHECK(check_sched, long, "%ld", " (scheduler-dependent)")
DEFINE_CHECK(check_domain, long, "%ld", " (domain-dependent)")
DEFINE_CHECK(check_domain_hex, uint64_t, "%#lx", " (domain-dependent)")
DEFINE_CHECK(check_cpu, long, "%ld", " (cpu-dependent)")
