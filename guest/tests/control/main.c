/*
 * control: the toolstack, platform and physdev hypercalls a PV kernel can
 * reach (spec 6.1), in Xen's order of checks:
 *
 *   - sysctl / domctl / platform_op: an unreadable argument is -EFAULT,
 *     another interface version -EACCES (the release's
 *     XEN_SYSCTL/DOMCTL_INTERFACE_VERSION, XENPF_INTERFACE_VERSION), a
 *     domctl naming no domain -ESRCH; then the privilege check: a domU gets
 *     -EPERM, domain 0 (under the real-Xen oracle) goes on (domain-dependent);
 *   - PHYSDEVOP_set_iopl: -EFAULT, -EINVAL above 3, 0.
 */

#include <xenpy-guest.h>

const char test_title[] = "sysctl, domctl, platform_op and physdev_op checks";

#define UNMAPPED_VA           0x10000UL
#define XEN_SYSCTL_physinfo   3
#define XEN_DOMCTL_getdomaininfo 5
#define XENPF_INTERFACE_VERSION 0x03000001
#define XENPF_settime64       62
#define NO_SUCH_DOMAIN        0x1234

static uint32_t op[64] __attribute__((aligned(8)));  /* 256 bytes: any of the three structures */

static void *head(uint32_t cmd, uint32_t version, uint16_t domain)
{
    memset(op, 0, sizeof(op));
    op[0] = cmd;
    op[1] = version;
    op[2] = domain;
    return op;
}

/* The caller's own domain id: an unbound port it may bind itself reports it (EVTCHNOP_status). */
static domid_t own_domid(void)
{
    evtchn_alloc_unbound_t alloc = { .dom = DOMID_SELF, .remote_dom = DOMID_SELF };
    evtchn_status_t status = { .dom = DOMID_SELF };

    if ( HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound, &alloc) )
        return DOMID_SELF;
    status.port = alloc.port;
    HYPERVISOR_event_channel_op(EVTCHNOP_status, &status);
    evtchn_close(alloc.port);
    return status.u.unbound.dom;
}

void test_main(void)
{
    const struct xen_profile *p = test_profile();
    uint32_t sysctl_v = p->sysctl_interface_version, domctl_v = p->domctl_interface_version;
    uint32_t iopl = 4;

    check("sysctl-efault", "6.1", HYPERVISOR_sysctl((void *)UNMAPPED_VA), -XEN_EFAULT,
          "HYPERVISOR_sysctl of an unmapped argument");
    check("sysctl-version", "6.1", HYPERVISOR_sysctl(head(XEN_SYSCTL_physinfo, sysctl_v + 1, 0)), -XEN_EACCES,
          "HYPERVISOR_sysctl(physinfo) with interface version %#x (the release's is %#x)", sysctl_v + 1, sysctl_v);
    check_domain("sysctl-privilege", "6.1", HYPERVISOR_sysctl(head(XEN_SYSCTL_physinfo, sysctl_v, 0)),
                 is_initial_domain() ? 0 : -XEN_EPERM, "HYPERVISOR_sysctl(physinfo) with the release's version");

    check("domctl-efault", "6.1", HYPERVISOR_domctl((void *)UNMAPPED_VA), -XEN_EFAULT,
          "HYPERVISOR_domctl of an unmapped argument");
    check("domctl-version", "6.1", HYPERVISOR_domctl(head(XEN_DOMCTL_getdomaininfo, domctl_v - 1, 0)),
          -XEN_EACCES, "HYPERVISOR_domctl(getdomaininfo) with interface version %#x (the release's is %#x)",
          domctl_v - 1, domctl_v);
    check("domctl-no-domain", "6.1",
          HYPERVISOR_domctl(head(XEN_DOMCTL_getdomaininfo, domctl_v, NO_SUCH_DOMAIN)), -XEN_ESRCH,
          "HYPERVISOR_domctl(getdomaininfo) of a domain that does not exist");
    check_domain("domctl-privilege", "6.1",
                 HYPERVISOR_domctl(head(XEN_DOMCTL_getdomaininfo, domctl_v, own_domid())),
                 is_initial_domain() ? 0 : -XEN_EPERM, "HYPERVISOR_domctl(getdomaininfo) of the caller");

    check("platform-efault", "6.1", HYPERVISOR_platform_op((void *)UNMAPPED_VA), -XEN_EFAULT,
          "HYPERVISOR_platform_op of an unmapped argument");
    check("platform-version", "6.1", HYPERVISOR_platform_op(head(XENPF_settime64, XENPF_INTERFACE_VERSION - 1, 0)),
          -XEN_EACCES, "HYPERVISOR_platform_op(settime64) with another interface version");

    check("iopl-efault", "6.1", HYPERVISOR_physdev_op(PHYSDEVOP_set_iopl, (void *)UNMAPPED_VA), -XEN_EFAULT,
          "PHYSDEVOP_set_iopl of an unmapped argument");
    check("iopl-too-big", "6.1", HYPERVISOR_physdev_op(PHYSDEVOP_set_iopl, &iopl), -XEN_EINVAL,
          "PHYSDEVOP_set_iopl(4)");
    iopl = 1;
    check("iopl-1", "6.1", HYPERVISOR_physdev_op(PHYSDEVOP_set_iopl, &iopl), 0, "PHYSDEVOP_set_iopl(1)");
    iopl = 0;
    check("iopl-0", "6.1", HYPERVISOR_physdev_op(PHYSDEVOP_set_iopl, &iopl), 0, "PHYSDEVOP_set_iopl(0)");

    if ( xtf_ok() )
        xtf_success(NULL);
}
