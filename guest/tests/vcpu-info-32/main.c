/*
 * vcpu-info-32: a vCPU with no shared_info slot (vcpu_id >= 32,
 * XEN_LEGACY_MAX_VCPUS) until it registers a vcpu_info (spec 1.2 cmd 0
 * check 1, 4.1 populate). Needs 33 vCPUs.
 *
 *   - VCPUOP_initialise of vCPU 32 is -EINVAL before its context is read
 *     (a NULL context gives -EINVAL, not -EFAULT);
 *   - VCPUOP_register_vcpu_info of vCPU 32 (down) starts from the dummy:
 *     the new area is zeroed with events masked, then gets the spurious
 *     event (all selector bits, upcall_pending);
 *   - once registered, VCPUOP_initialise reads the context (NULL: -EFAULT).
 */

#include <xenpy-guest.h>

const char test_title[] = "vCPUs >= 32: VCPUOP_initialise and VCPUOP_register_vcpu_info";

#define VCPU_32 XEN_LEGACY_MAX_VCPUS

static uint8_t vi_page[PAGE_SIZE] __page_aligned_bss;

void test_main(void)
{
    vcpu_register_vcpu_info_t r = { .offset = 0 };
    vcpu_info_t *vi = (vcpu_info_t *)vi_page;

    test_profile();
    if ( HYPERVISOR_vcpu_op(VCPUOP_is_up, VCPU_32, NULL) == -XEN_ENOENT )
    {
        xtf_skip("Skip: needs 33 vCPUs\n");
        return;
    }

    check("init-no-vcpu-info", "1.2", HYPERVISOR_vcpu_op(VCPUOP_initialise, VCPU_32, NULL), -XEN_EINVAL,
          "VCPUOP_initialise of vCPU 32 with no vcpu_info (NULL context: checked before the copy)");

    memset(vi_page, 0xa5, sizeof(vcpu_info_t));
    r.mfn = p2m_list()[virt_to_pfn(vi_page)];
    check("register", "4.1", HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, VCPU_32, &r), 0,
          "VCPUOP_register_vcpu_info of vCPU 32 (down)");
    check("register-mask", "4.1", READ_ONCE(vi->evtchn_upcall_mask), 1,
          "VCPUOP_register_vcpu_info of vCPU 32: evtchn_upcall_mask (from the dummy)");
    check("register-pending", "4.1", READ_ONCE(vi->evtchn_upcall_pending), 1,
          "VCPUOP_register_vcpu_info of vCPU 32: evtchn_upcall_pending");
    check_hex("register-sel", "4.1", READ_ONCE(vi->evtchn_pending_sel), ~0UL,
              "VCPUOP_register_vcpu_info of vCPU 32: evtchn_pending_sel");
    check_hex("register-cr2", "4.1", READ_ONCE(vi->arch.cr2), 0,
              "VCPUOP_register_vcpu_info of vCPU 32: arch.cr2 (zeroed, not the old bytes)");
    check("init-after-register", "1.2", HYPERVISOR_vcpu_op(VCPUOP_initialise, VCPU_32, NULL), -XEN_EFAULT,
          "VCPUOP_initialise of vCPU 32 with a vcpu_info and a NULL context");

    if ( xtf_ok() )
        xtf_success(NULL);
}
