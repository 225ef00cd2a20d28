/*
 * vcpu-down-last: VCPUOP_down of the last vCPU that is up (spec 1.2
 * "VCPUOP_down detail", 1.4).
 *
 * Only vCPU 0 is ever up. It checks that downing another, never
 * initialised vCPU is a no-op returning 0, then reports its verdict and
 * downs itself: where the profile says so (down_last_vcpu_powers_off,
 * >= 4.11) Xen shuts the domain down with SHUTDOWN_poweroff and the call
 * never returns to the guest. If it does return, the domain crashes
 * (SHUTDOWN_crash instead of poweroff). Where the profile says the vCPU is
 * only marked down (4.10), the domain would hang: the test skips.
 */

#include <xenpy-guest.h>
#include <xenpy-guest/console.h>

const char test_title[] = "VCPUOP_down of the last up vCPU";

void test_main(void)
{
    static const char verdict[] = "Test result: SUCCESS\n";
    const struct xen_profile *p = test_profile();
    unsigned int nr = smp_nr_vcpus();

    printk("The domain has %u vCPU(s)\n", nr);

    check("is-up-self", "1.2", HYPERVISOR_vcpu_op(VCPUOP_is_up, 0, NULL), 1,
          "VCPUOP_is_up of vCPU 0");
    if ( nr >= 2 )
    {
        check("down-uninitialised", "1.2", HYPERVISOR_vcpu_op(VCPUOP_down, 1, NULL), 0,
              "VCPUOP_down of the never initialised vCPU 1");
        check("is-up-uninitialised", "1.2", HYPERVISOR_vcpu_op(VCPUOP_is_up, 1, NULL), 0,
              "VCPUOP_is_up of vCPU 1 after VCPUOP_down");
        check("is-up-self-after", "1.2", HYPERVISOR_vcpu_op(VCPUOP_is_up, 0, NULL), 1,
              "VCPUOP_is_up of vCPU 0 after VCPUOP_down of vCPU 1");
    }

    if ( !p->down_last_vcpu_powers_off )
    {
        xtf_skip("Skip: VCPUOP_down of the last vCPU only marks it down in profile %s\n",
                 p->name);
        return;
    }
    if ( !xtf_ok() )
        return;

    /*
     * The verdict comes first: VCPUOP_down of the last up vCPU powers the
     * domain off and does not come back.
     */
    printk("VCPUOP_down of vCPU 0, the last vCPU that is up: expect poweroff\n");
    xtf_success(NULL);
    console_write_last(verdict, sizeof(verdict) - 1, false);
    (void)HYPERVISOR_vcpu_op(VCPUOP_down, 0, NULL);

    /* Still running: the console is closed, so the crash is the report. */
    crash_domain();
}
