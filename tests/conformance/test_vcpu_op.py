"""HYPERVISOR_vcpu_op: dispatch, per-command checks and effects, version differences (spec 1.1-1.4, 8)."""

from __future__ import annotations

import pytest

from xenpy.abi.arch_x86 import VGCF_in_kernel, VGCF_online
from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall, VcpuOp
from xenpy.abi.sched import SHUTDOWN_poweroff
from xenpy.core import DomainState
from xenpy.core.domain import PauseFlags
from xenpy.core.runstate import RUNSTATE_offline, RUNSTATE_running

from .conftest import ALL_PROFILES, HOLE_GVA, UNMAPPED_GVA, Guest

ENOENT = -XenErrno.ENOENT
ENOSYS = -XenErrno.ENOSYS
EINVAL = -XenErrno.EINVAL
EFAULT = -XenErrno.EFAULT
EEXIST = -XenErrno.EEXIST


# ------------------------------------------------------------------------------------------ 1.1 dispatch


@pytest.mark.parametrize("profile", ALL_PROFILES)
@pytest.mark.parametrize("vcpuid", [4, 5, 32, 0x7FFF_FFFF, 0xFFFF_FFFF])
@pytest.mark.parametrize("cmd", [VcpuOp.VCPUOP_is_up, VcpuOp.VCPUOP_up, 16, 99, -1])
def test_bad_vcpuid_is_enoent_before_cmd(make_guest, profile, vcpuid, cmd):
    """spec 1.1, 8.1: vcpuid >= max_vcpus gives -ENOENT first, even for an unknown cmd."""
    g = make_guest(profile, max_vcpus=4)
    assert g.vcpu_op(cmd, vcpuid) == ENOENT


def test_vcpuid_uses_low_32_bits_unsigned(guest: Guest):
    """spec 1.1: vcpuid is an unsigned int: only the low 32 bits of the register count."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_is_up, (1 << 32) | 0) == 1
    assert guest.vcpu_op(VcpuOp.VCPUOP_is_up, -1) == ENOENT


@pytest.mark.parametrize("profile", ALL_PROFILES)
@pytest.mark.parametrize("cmd", [16, 17, 1000, -1, -(2**31)])
def test_unknown_cmd_is_enosys(make_guest, profile, cmd):
    """spec 1.1: an unknown cmd (>= 16 or < 0) with a valid vcpuid returns -ENOSYS."""
    g = make_guest(profile)
    assert g.vcpu_op(cmd, 0) == ENOSYS


def test_cmd_is_a_32_bit_int(guest: Guest):
    """spec 1.1: cmd is a C int: the upper half of the register is ignored."""
    assert guest.vcpu_op((1 << 32) | VcpuOp.VCPUOP_is_up, 0) == 1


# ------------------------------------------------------------------------------------------ up / down / is_up


def test_is_up_reports_vpf_down(guest: Guest):
    """spec 1.2 cmd 3: 1 if _VPF_down is clear, else 0."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_is_up, 0) == 1
    assert guest.vcpu_op(VcpuOp.VCPUOP_is_up, 1) == 0


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_up_uninitialised_is_einval(make_guest, profile):
    """spec 1.2 cmd 1, 8.2: VCPUOP_up of a vCPU that was never initialised returns -EINVAL."""
    g = make_guest(profile)
    assert g.vcpu_op(VcpuOp.VCPUOP_up, 1) == EINVAL
    assert not g.v[1].is_up


def test_up_wakes_and_runs(guest: Guest):
    """spec 1.2 cmd 1, 2.5: up clears _VPF_down and wakes: offline -> runnable -> running on an idle pCPU."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 1, guest.context()) == 0
    assert guest.v[1].runstate.state == RUNSTATE_offline
    assert guest.vcpu_op(VcpuOp.VCPUOP_up, 1) == 0
    assert guest.v[1].is_up
    assert guest.v[1].runstate.state == RUNSTATE_running


def test_up_on_up_vcpu_is_noop(guest: Guest):
    """spec 1.2 cmd 1, 8.2: up on an already-up vCPU returns 0 and changes nothing."""
    before = guest.runstate_of(0)
    assert guest.vcpu_op(VcpuOp.VCPUOP_up, 0) == 0
    assert guest.runstate_of(0) == before


def test_down_other_vcpu(guest: Guest):
    """spec 1.2 cmd 2: downing another up vCPU marks it down and deschedules it (running -> offline)."""
    guest.bring_up(1)
    assert guest.vcpu_op(VcpuOp.VCPUOP_down, 1) == 0
    assert not guest.v[1].is_up
    assert guest.v[1].runstate.state == RUNSTATE_offline
    assert not guest.v[1].is_running


def test_down_self_deschedules(guest: Guest):
    """spec 1.2 VCPUOP_down detail: a vCPU downing itself is descheduled before returning."""
    guest.bring_up(1)
    assert guest.vcpu_op(VcpuOp.VCPUOP_down, 1, vcpu=1) == 0
    assert guest.v[1].runstate.state == RUNSTATE_offline
    assert guest.dom.state is DomainState.RUNNING


def test_down_already_down_is_noop(guest: Guest):
    """spec 1.2 cmd 2, 8.2: down of a vCPU that is already down returns 0."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_down, 2) == 0
    assert not guest.v[2].is_up
    assert guest.dom.state is DomainState.RUNNING


@pytest.mark.parametrize("profile", ["head", "4.17", "4.17.3"])
def test_down_last_vcpu_powers_off(make_guest, profile):
    """spec 1.2 VCPUOP_down detail, 1.4, 8.2 (>= 4.11): the last up vCPU is not marked down; poweroff."""
    g = make_guest(profile)
    assert g.vcpu_op(VcpuOp.VCPUOP_down, 0) == 0
    assert g.v[0].is_up
    assert g.dom.state is DomainState.SHUTDOWN
    assert g.dom.shutdown_reason == SHUTDOWN_poweroff


def test_down_last_vcpu_only_marks_down_in_4_10(make_guest):
    """spec 1.4: in 4.10 downing the last vCPU just sets _VPF_down; the domain hangs, no shutdown."""
    g = make_guest("4.10")
    assert g.vcpu_op(VcpuOp.VCPUOP_down, 0) == 0
    assert not g.v[0].is_up
    assert g.v[0].runstate.state == RUNSTATE_offline
    assert g.dom.state is DomainState.RUNNING


def test_down_last_counts_only_other_vcpus(guest: Guest):
    """spec 1.2 VCPUOP_down detail: "last" means no *other* vCPU is up; down of a down vCPU while vCPU 0 is the
    only one up is not a poweroff."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_down, 3) == 0
    assert guest.dom.state is DomainState.RUNNING


# ------------------------------------------------------------------------------------------ initialise (1.2 cmd 0)


def test_initialise_dummy_vcpu_info_is_einval(make_guest):
    """spec 1.2 cmd 0 (1), 8.9: a vCPU >= 32 without a registered vcpu_info cannot be initialised (-EINVAL),
    checked before the context is read."""
    g = make_guest(max_vcpus=34)
    assert g.vcpu_op(VcpuOp.VCPUOP_initialise, 33, UNMAPPED_GVA) == EINVAL
    assert g.vcpu_op(VcpuOp.VCPUOP_initialise, 31, UNMAPPED_GVA) == EFAULT


def test_initialise_after_vcpu_info_registration(make_guest):
    """spec 1.2 cmd 0, 4.1: after VCPUOP_register_vcpu_info a vCPU >= 32 can be initialised."""
    g = make_guest(max_vcpus=34)
    page = g.page()
    arg = g.put("vcpu_register_vcpu_info", mfn=g.mfn_of(page), offset=0, rsvd=0)
    assert g.vcpu_op(VcpuOp.VCPUOP_register_vcpu_info, 33, arg) == 0
    assert g.vcpu_op(VcpuOp.VCPUOP_initialise, 33, g.context()) == 0
    assert g.v[33].is_initialised


@pytest.mark.parametrize("arg", [0, UNMAPPED_GVA, HOLE_GVA])
def test_initialise_bad_pointer_is_efault(guest: Guest, arg):
    """spec 1.2 cmd 0 (3): the whole vcpu_guest_context is copied; a fault gives -EFAULT."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 1, arg) == EFAULT
    assert not guest.v[1].is_initialised


def test_initialise_context_crossing_into_unmapped_page_is_efault(guest: Guest):
    """spec 1.2 cmd 0 (3): all 5168 bytes must be readable."""
    gva = guest.dom.virt_base + guest.dom.memory.nr_pages * 4096 - 100
    assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 1, gva) == EFAULT


def test_initialise_twice_is_eexist(guest: Guest):
    """spec 1.2 cmd 0 (4): an initialised vCPU gives -EEXIST (after the copy succeeded)."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 0, guest.context()) == EEXIST
    assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 0, UNMAPPED_GVA) == EFAULT
    assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 1, guest.context()) == 0
    assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 1, guest.context()) == EEXIST


def test_initialise_leaves_vcpu_down(guest: Guest):
    """spec 1.2 cmd 0: without VGCF_online the vCPU stays down and offline."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 1, guest.context()) == 0
    assert guest.v[1].is_initialised
    assert guest.vcpu_op(VcpuOp.VCPUOP_is_up, 1) == 0
    assert guest.v[1].runstate.state == RUNSTATE_offline


def test_initialise_online_clears_down_without_wake(guest: Guest):
    """spec 1.2 cmd 0, 1.3 step 18: VGCF_online clears _VPF_down but does not wake; a later up is a no-op."""
    ctx = guest.context(flags=int(VGCF_in_kernel | VGCF_online))
    assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 1, ctx) == 0
    assert guest.vcpu_op(VcpuOp.VCPUOP_is_up, 1) == 1
    assert guest.v[1].runstate.state == RUNSTATE_offline
    assert guest.vcpu_op(VcpuOp.VCPUOP_up, 1) == 0
    assert guest.v[1].runstate.state == RUNSTATE_offline


def test_initialise_loads_state(guest: Guest):
    """spec 1.3 steps 4, 8, 10, 13: state is stored with RPL fix-ups, rflags masked, IOPL virtualised, IF on."""
    ctx = guest.context(
        **{
            "user_regs.rax": 0x1234,
            "user_regs.rflags": 0x3000 | 0x1 | (1 << 17),
            "user_regs.cs": 0xE030,
            "kernel_ss": 0xE028,
            "trap_ctxt[14].cs": 0xE030,
            "trap_ctxt[14].address": 0xFFFF_FFFF_8000_1000,
            "event_callback_eip": 0xFFFF_FFFF_8000_2000,
        }
    )
    assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 1, ctx) == 0
    arch = guest.v[1].arch
    assert arch.user_regs["rax"] == 0x1234
    assert arch.user_regs["cs"] == 0xE033
    assert arch.kernel_ss == 0xE02B
    assert arch.trap_ctxt[14] == (0, 0, 0xE033, 0xFFFF_FFFF_8000_1000)
    assert arch.event_callback_eip == 0xFFFF_FFFF_8000_2000
    assert arch.iopl == 0x3000
    assert arch.user_regs["rflags"] == 0x1 | 0x2 | 0x200
    assert arch.kernel_mode


# ------------------------------------------------------------------------------------------ 1.3 arch_set_info_guest

NONCANONICAL = 0x0000_8000_0000_0000


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"debugreg[6]": 1 << 32}, id="1-dr6-wide"),
        pytest.param({"debugreg[7]": 1 << 40}, id="1-dr7-wide"),
        pytest.param({"debugreg[0]": HOLE_GVA}, id="2-dr0-hole"),
        pytest.param({"debugreg[3]": NONCANONICAL}, id="2-dr3-noncanonical"),
        pytest.param({"user_regs.rip": NONCANONICAL}, id="3-rip"),
        pytest.param({"user_regs.rsp": NONCANONICAL}, id="3-rsp"),
        pytest.param({"kernel_sp": NONCANONICAL}, id="3-kernel_sp"),
        pytest.param({"ldt_ents": 1, "ldt_base": NONCANONICAL}, id="3-ldt_base"),
        pytest.param({"fs_base": NONCANONICAL}, id="3-fs_base"),
        pytest.param({"gs_base_kernel": NONCANONICAL}, id="3-gs_base_kernel"),
        pytest.param({"gs_base_user": NONCANONICAL}, id="3-gs_base_user"),
        pytest.param({"event_callback_eip": NONCANONICAL}, id="3-event_callback"),
        pytest.param({"syscall_callback_eip": NONCANONICAL}, id="3-syscall_callback"),
        pytest.param({"failsafe_callback_eip": NONCANONICAL}, id="3-failsafe_callback"),
        pytest.param({"trap_ctxt[255].address": NONCANONICAL}, id="4-trap-address"),
        pytest.param({"ldt_base": HOLE_GVA}, id="5-ldt_base-hole"),
        pytest.param({"ldt_base": 0x1008, "ldt_ents": 1}, id="6-ldt-unaligned"),
        pytest.param({"ldt_ents": 8193}, id="6-ldt-too-many"),
        pytest.param({"gdt_ents": 16 * 512 + 1}, id="11-gdt-frames"),
        pytest.param({"flags": 0}, id="12-user-mode-no-user-pt"),
        pytest.param({"gdt_ents": 7169}, id="15-gdt-ents"),
        pytest.param({"gdt_ents": 1, "gdt_frames[0]": 0}, id="15-gdt-frame-not-owned"),
        pytest.param({"ctrlreg[3]": 0}, id="16-cr3-not-owned"),
    ],
)
def test_arch_set_info_guest_errors(guest: Guest, fields):
    """spec 1.3: each failed check returns -EINVAL and the vCPU stays uninitialised and down."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 1, guest.context(**fields)) == EINVAL
    assert not guest.v[1].is_initialised
    assert not guest.v[1].is_up


def test_vm_assist_ignored_for_other_vcpus(guest: Guest):
    """spec 1.3 steps 9 and 14: the vm_assist check and copy apply to vCPU 0 only."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 1, guest.context(vm_assist=1 << 6)) == 0
    assert guest.dom.vm_assist == 0


def test_cr3_must_be_an_l4_page(guest: Guest):
    """spec 1.3 step 16: cr3 naming an owned data page mapped writable cannot become an L4 (-EINVAL)."""
    page = guest.page()
    assert (
        guest.vcpu_op(VcpuOp.VCPUOP_initialise, 1, guest.context(**{"ctrlreg[3]": guest.mfn_of(page) << 12})) == EINVAL
    )


def test_gdt_frame_mapped_writable_is_einval(guest: Guest):
    """spec 1.3 step 15: a GDT frame must be validatable as a descriptor page (not mapped writable)."""
    page = guest.page()
    ctx = guest.context(gdt_ents=16, **{"gdt_frames[0]": guest.mfn_of(page)})
    assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 1, ctx) == EINVAL


def test_user_mode_with_user_page_table(guest: Guest):
    """spec 1.3 step 12, 16: user mode is accepted with a valid user L4 in ctrlreg[1]."""
    ctx = guest.context(flags=0, **{"ctrlreg[1]": guest.dom.cr3})
    assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 1, ctx) == 0
    assert not guest.v[1].arch.kernel_mode


def _set_info_vcpu0(vm_assist: int) -> tuple[int, object]:
    """arch_set_info_guest on a fresh domain's vCPU 0 (as DOMCTL_setvcpucontext would), before it is initialised."""
    from xenpy.core.vcpu_context import arch_set_info_guest, parse_vcpu_guest_context
    from xenpy.hypervisor import Hypervisor

    hv = Hypervisor()
    dom = hv.create_domain()
    v0 = dom.vcpus[0]
    ctx = Guest(hv, dom).context(vm_assist=vm_assist, **{"user_regs.rax": 7})
    v0.is_initialised = False
    rc = arch_set_info_guest(v0, parse_vcpu_guest_context(dom.abi, dom.read_guest(ctx, 5168)))
    return rc, dom


def test_vcpu0_vm_assist_is_copied_to_domain():
    """spec 1.3 step 14: vCPU 0's vm_assist becomes the domain's."""
    rc, dom = _set_info_vcpu0(1 << 5)
    assert rc == 0
    assert dom.vm_assist == 1 << 5


@pytest.mark.parametrize("bad", [1 << 6, 1 << 31, 1 << 33])
def test_vcpu0_invalid_vm_assist_after_registers_changed(bad):
    """spec 1.3 step 9: vCPU 0 with a vm_assist bit outside {0..5, 32} -> -EINVAL, after step 8 already loaded
    the registers; the vCPU stays uninitialised."""
    rc, dom = _set_info_vcpu0(bad)
    assert rc == EINVAL
    assert dom.vcpus[0].arch.user_regs["rax"] == 7
    assert not dom.vcpus[0].is_initialised
    assert dom.vm_assist == 0


def test_pv32_selector_fixups_include_callback_selectors():
    """spec 1.3 step 4 (RPL 1 for PV32): a PV32 context also has its ``event_callback_cs`` and
    ``failsafe_callback_cs`` raised to RPL 1, like ``user_regs.cs`` (``arch_set_info_guest``'s compat branch);
    a selector already at RPL >= 1 is kept."""
    from xenpy.core.vcpu_context import arch_set_info_guest, pack_vcpu_guest_context, parse_vcpu_guest_context
    from xenpy.hypervisor import Hypervisor

    hv = Hypervisor(nr_pcpus=1, memory_mib=16)
    dom = hv.create_domain(width=32, memory_mib=2, max_vcpus=2)
    machine = hv.machine
    # An untyped, zeroed frame of the domain passes as the (empty) root page table.
    mfn = max(f for f in range(machine.nr_frames) if machine.owner_of(f) == dom.domid and not machine.type_count(f))
    machine.zero_frame(mfn)
    fields = {
        "flags": int(VGCF_in_kernel),
        "user_regs.cs": 0xE018,
        "user_regs.ss": 0xE020,
        "kernel_ss": 0xE020,
        "event_callback_cs": 0xE018,
        "failsafe_callback_cs": 0xE01B,
        "ctrlreg[3]": ((mfn << 12) | (mfn >> 20)) & 0xFFFF_FFFF,
    }
    v = dom.vcpus[1]
    ctx = parse_vcpu_guest_context(dom.abi, pack_vcpu_guest_context(dom.abi, fields))
    assert arch_set_info_guest(v, ctx) == 0
    assert v.arch.user_regs["cs"] == 0xE019
    assert v.arch.kernel_ss == 0xE021
    assert v.arch.event_callback_cs == 0xE019
    assert v.arch.failsafe_callback_cs == 0xE01B


# ------------------------------------------------------------------------------------------ misc commands


def test_send_nmi_requires_null_arg(guest: Guest):
    """spec 1.2 cmd 11: arg != NULL -> -EINVAL; otherwise nmi_pending is set."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_send_nmi, 0, 8) == EINVAL
    assert not guest.v[0].arch.nmi_pending
    assert guest.vcpu_op(VcpuOp.VCPUOP_send_nmi, 0, 0) == 0
    assert guest.v[0].arch.nmi_pending


def test_send_nmi_wakes_blocked_vcpu(guest: Guest):
    """spec 1.2 cmd 11, 4.2: the kick unblocks a blocked vCPU; a second NMI while pending does not kick again."""
    guest.bring_up(1)
    assert guest.block(vcpu=1) == 0
    assert guest.v[1].pause_flags & PauseFlags.VPF_blocked
    assert guest.vcpu_op(VcpuOp.VCPUOP_send_nmi, 1) == 0
    assert not guest.v[1].pause_flags & PauseFlags.VPF_blocked
    assert guest.v[1].runstate.state == RUNSTATE_running
    assert guest.block(vcpu=1) == 0
    assert guest.vcpu_op(VcpuOp.VCPUOP_send_nmi, 1) == 0
    assert guest.v[1].pause_flags & PauseFlags.VPF_blocked


def test_send_nmi_to_running_vcpu_ipis(guest: Guest):
    """spec 1.2 cmd 11: a running remote target is kicked (IPI)."""
    guest.bring_up(1)
    kicks = guest.v[1].kick_count
    assert guest.vcpu_op(VcpuOp.VCPUOP_send_nmi, 1) == 0
    assert guest.v[1].kick_count == kicks + 1


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_get_physid_domu_is_einval(make_guest, profile):
    """spec 1.2 cmd 12: a normal domU always gets -EINVAL (checked before the copy)."""
    g = make_guest(profile)
    assert g.vcpu_op(VcpuOp.VCPUOP_get_physid, 0, UNMAPPED_GVA) == EINVAL


def test_get_physid_pinned_hardware_domain(make_guest):
    """spec 1.2 cmd 12: a pinned hardware-domain vCPU gets apic_id | acpi_id << 32; a bad pointer -EFAULT."""
    g = make_guest(hardware_domain=True)
    g.hv.scheduler.set_affinity(g.v[0], 1)
    g.hv.do_softirqs()
    buf = g.put_u64(0)
    assert g.vcpu_op(VcpuOp.VCPUOP_get_physid, 0, buf) == 0
    assert int.from_bytes(g.dom.read_guest(buf, 8), "little") == 1 | (1 << 32)
    assert g.vcpu_op(VcpuOp.VCPUOP_get_physid, 0, UNMAPPED_GVA) == EFAULT


@pytest.mark.parametrize("cmd", [VcpuOp.VCPUOP_register_runstate_phys_area, VcpuOp.VCPUOP_register_vcpu_time_phys_area])
@pytest.mark.parametrize("profile", ["4.17", "4.17.3", "4.10"])
def test_phys_areas_enosys_before_4_18(make_guest, profile, cmd):
    """spec 1.1, 1.4: before 4.18 commands 14 and 15 return -ENOSYS."""
    g = make_guest(profile)
    assert g.vcpu_op(cmd, 0, UNMAPPED_GVA) == ENOSYS


def test_arg_ignored_for_commands_without_argument(guest: Guest):
    """spec 1.1: arg is ignored by commands 1, 2, 3, 7 and 9."""
    for cmd in (
        VcpuOp.VCPUOP_up,
        VcpuOp.VCPUOP_is_up,
        VcpuOp.VCPUOP_stop_periodic_timer,
        VcpuOp.VCPUOP_stop_singleshot_timer,
    ):
        assert guest.vcpu_op(cmd, 0, HOLE_GVA) >= 0
    assert guest.vcpu_op(VcpuOp.VCPUOP_down, 3, HOLE_GVA) == 0


def test_hypercall_number_is_24():
    """spec 6.1: vcpu_op is hypercall 24."""
    assert Hypercall.vcpu_op == 24


# ------------------------------------------------------------------------------------------ bad pointers


def test_argument_straddling_into_unmapped_page_is_efault(guest: Guest):
    """spec 1.2 (copy -> -EFAULT): an argument whose last bytes fall in an unmapped page faults; no change."""
    end = guest.dom.virt_base + guest.dom.memory.nr_pages * 4096
    assert guest.dom.read_guest(end - 4, 4) is not None  # the first half is readable
    assert guest.vcpu_op(VcpuOp.VCPUOP_set_periodic_timer, 0, end - 4) == EFAULT
    assert guest.v[0].periodic_period_ns == 10_000_000


def test_misaligned_argument_is_fine(guest: Guest):
    """spec 1.2: copy_from_guest has no alignment requirement; a mapped, odd address works."""
    gva = guest.dom.alloc_guest(16, 8) + 3
    guest.dom.write_guest(gva, (2_000_000).to_bytes(8, "little"))
    assert guest.vcpu_op(VcpuOp.VCPUOP_set_periodic_timer, 0, gva) == 0
    assert guest.v[0].periodic_period_ns == 2_000_000


def test_output_across_pages_partially_written(guest: Guest, hv):
    """spec 1.2 cmd 4: a copy_to_guest that faults half-way returns -EFAULT; the bytes before the fault stay."""
    first = guest.page()
    second = guest.page()
    assert second == first + 4096
    assert guest.dom.pagetables.unmap(second)
    hv.run_for(1000)
    assert guest.vcpu_op(VcpuOp.VCPUOP_get_runstate_info, 0, second - 16) == EFAULT
    written = guest.dom.read_guest(second - 16, 16)
    assert int.from_bytes(written[0:4], "little") == RUNSTATE_running
    assert int.from_bytes(written[8:16], "little") == guest.v[0].runstate.state_entry_time
