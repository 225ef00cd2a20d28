/*
 * vcpu-info-32: a vCPU beyond the 32 vcpu_info slots of shared_info (spec
 * 1.2 cmd 0 (1), 4.1 populate). Needs 33 vCPUs.
 *
 * vCPU 32 uses Xen's dummy vcpu_info until one is registered for it:
 *   - VCPUOP_initialise of vCPU 32 is -EINVAL before its argument is read,
 *     while vCPU 31 (which has a shared_info slot) reads it (-EFAULT);
 *   - VCPUOP_register_vcpu_info of vCPU 32 from vCPU 0 is allowed on every
 *     release (the target is down); populating from the dummy zeroes the
 *     new area and masks events, then Xen sets every selector bit and
 *     upcall_pending;
 *   - after that VCPUOP_initialise of vCPU 32 gets past the check (-EFAULT
 *     for the unreadable context), and the vCPU stays down.
 */

#include <xenpy-guest.h>

const char test_title[] = "vcpu_info of a vCPU >= 32 (no shared_info slot)";

#define VCPU_BEYOND     32

static uint8_t vi_page[PAGE_SIZE] __page_aligned_bss;

void test_main(void)
{
    struct vcpu_register_vcpu_info r = {
        .mfn = virt_to_mfn(vi_page), .offset = 0,
    };
    vcpu_info_t *vi = (vcpu_info_t *)vi_page;
    long rc;

    (void)test_profile();

    rc = HYPERVISOR_vcpu_op(VCPUOP_is_up, VCPU_BEYOND, NULL);
    if ( rc == -XEN_ENOENT )
    {
        xtf_error("Error: needs %u vCPUs\n", VCPU_BEYOND + 1);
        return;
    }
    check("is-up-32", "1.2", rc, 0, "VCPUOP_is_up: vCPU 32 (never brought up)");

    rc = HYPERVISOR_vcpu_op(VCPUOP_initialise, VCPU_BEYOND, NULL);
    check("init-32-dummy", "1.2", rc, -XEN_EINVAL,
          "VCPUOP_initialise: vCPU 32 with the dummy vcpu_info");
    rc = HYPERVISOR_vcpu_op(VCPUOP_initialise, VCPU_BEYOND - 1, NULL);
    check("init-31-efault", "1.2", rc, -XEN_EFAULT,
          "VCPUOP_initialise: vCPU 31 (shared_info slot), unreadable context");

    memset(vi_page, 0xa5, 128);
    rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, VCPU_BEYOND, &r);
    check("reg-32", "4.1", rc, 0, "VCPUOP_register_vcpu_info: vCPU 32 (down) from vCPU 0");
    if ( rc == 0 )
    {
        check("reg-32-mask", "4.1", READ_ONCE(vi->evtchn_upcall_mask), 1,
              "VCPUOP_register_vcpu_info: evtchn_upcall_mask set (populated from the dummy)");
        check("reg-32-pending", "4.1", READ_ONCE(vi->evtchn_upcall_pending), 1,
              "VCPUOP_register_vcpu_info: evtchn_upcall_pending raised");
        check_hex("reg-32-sel", "4.1", READ_ONCE(vi->evtchn_pending_sel), ~0UL,
                  "VCPUOP_register_vcpu_info: evtchn_pending_sel all ones");
        check_hex("reg-32-cr2", "4.1", READ_ONCE(vi->arch.cr2), 0,
                  "VCPUOP_register_vcpu_info: arch.cr2 zeroed (populated from the dummy)");
        check("reg-32-version-even", "3.6", READ_ONCE(vi->time.version) & 1, 0,
              "VCPUOP_register_vcpu_info: time.version even");
        check_hex("reg-32-next", "4.1", vi_page[64], 0xa5,
                  "VCPUOP_register_vcpu_info: the byte after the 64-byte area untouched");

        rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, VCPU_BEYOND, &r);
        check("rereg-32", "1.4", rc,
              test_profile()->vcpu_info_map_guest_area ? -XEN_EBUSY : -XEN_EINVAL,
              "VCPUOP_register_vcpu_info: vCPU 32 again");

        rc = HYPERVISOR_vcpu_op(VCPUOP_initialise, VCPU_BEYOND, NULL);
        check("init-32-registered", "1.2", rc, -XEN_EFAULT,
              "VCPUOP_initialise: vCPU 32 with a registered vcpu_info, unreadable context");
    }

    check("is-up-32-after", "1.2", HYPERVISOR_vcpu_op(VCPUOP_is_up, VCPU_BEYOND, NULL), 0,
          "VCPUOP_is_up: vCPU 32 still down");

    if ( xtf_ok() )
        xtf_success(NULL);
}
