"""The Python API: building domains (spec 7.2, 7.5), lifecycle and watchers, guest memory, inspection."""

from __future__ import annotations

import numpy as np
import pytest

from xenpy.abi import x86_32, x86_64
from xenpy.abi.generated.hypercalls import Hypercall, VcpuOp
from xenpy.abi.sched import SHUTDOWN_crash, SHUTDOWN_poweroff, SHUTDOWN_suspend
from xenpy.abi.xen import VIRQ_DOM_EXC
from xenpy.core import DomainState, get_profile
from xenpy.core.memory import PageType
from xenpy.core.pagetable import GuestFault
from xenpy.core.runstate import RUNSTATE_offline, RUNSTATE_running
from xenpy.hypervisor import GUEST_VIRT_BASE, DomainConfig, Hypervisor, VcpuNotRunnable

MS = 1_000_000


@pytest.fixture
def hv():
    return Hypervisor(nr_pcpus=2, memory_mib=32)


def test_create_domain_returns_paused_with_boot_vcpu(hv):
    """spec 7.5: only vCPU 0 is initialised and up; the others are down and not initialised; paused."""
    dom = hv.create_domain(DomainConfig(max_vcpus=3, memory_mib=2))
    assert dom.state is DomainState.PAUSED
    v0, v1, v2 = dom.vcpus
    assert v0.is_initialised and v0.is_up
    assert not v1.is_initialised and not v1.is_up and not v2.is_up
    assert all(v.runstate.state == RUNSTATE_offline for v in dom.vcpus)
    with pytest.raises(VcpuNotRunnable):
        hv.hypercall(v0, Hypercall.vcpu_op, VcpuOp.VCPUOP_is_up, 0)
    dom.unpause()
    assert dom.state is DomainState.RUNNING
    assert v0.runstate.state == RUNSTATE_running


def test_boot_register_state(hv):
    """spec 7.5: rip, rsp at the top of the boot-stack page, flat kernel selectors, rflags 0x202, debug registers,
    cr3 = the L4, kernel mode, events masked."""
    dom = hv.create_domain()
    arch = dom.vcpus[0].arch
    regs = arch.user_regs
    assert regs["rip"] == GUEST_VIRT_BASE
    assert regs["rsp"] == arch.kernel_sp == GUEST_VIRT_BASE + 4096
    assert (regs["cs"], regs["ss"], arch.kernel_ss) == (0xE033, 0xE02B, 0xE02B)
    assert (regs["ds"], regs["es"], regs["fs"], regs["gs"]) == (0, 0, 0, 0)
    assert regs["rflags"] == 0x202
    assert arch.debugreg[6] == 0xFFFF0FF0 and arch.debugreg[7] == 0x400
    assert arch.ctrlreg[3] == dom.cr3 and arch.ctrlreg[1] == 0
    assert arch.kernel_mode
    assert dom.vcpus[0].evtchn_upcall_mask == 1
    assert dom.system.machine.page_type(dom.cr3 >> 12) is PageType.l4


def test_shared_info_initial_contents(hv):
    """spec 7.2: shared_info is zero except vcpu_info[i].evtchn_upcall_mask = 1 (and Xen's wallclock)."""
    dom = hv.create_domain(max_vcpus=40)
    info = dom.shared_info()
    for i in range(32):
        vi = info.vcpu_info[i]
        assert vi.evtchn_upcall_mask == 1
        assert (vi.evtchn_upcall_pending, vi.evtchn_pending_sel, vi.arch.cr2) == (0, 0, 0)
    assert not any(info.evtchn_pending) and not any(info.evtchn_mask)
    assert info.wc_version % 2 == 0
    assert dom.vcpus[35].vcpu_info_is_dummy
    assert dom.vcpus[31].vcpu_info_maddr == dom.shared_info_maddr + 31 * 64


def test_memory_is_not_identity_mapped(hv):
    dom = hv.create_domain(memory_mib=1)
    mfns = dom.memory.p2m.mfns
    assert not np.any(mfns == np.arange(len(mfns)))
    gva = dom.alloc_guest(16)
    assert gva >= GUEST_VIRT_BASE + 4096
    dom.write_guest(gva, b"hello")
    assert dom.read_guest(gva, 5) == b"hello"
    assert dom.system.machine.read(dom.gva_to_maddr(gva), 5) == b"hello"
    with pytest.raises(GuestFault):
        dom.read_guest(0x1000, 1)
    with pytest.raises(MemoryError):
        dom.alloc_guest(2 * 1024 * 1024)


def test_page_tables_mapped_read_only(hv):
    """spec 7.2: page-table pages are mapped read-only."""
    dom = hv.create_domain()
    pfn = dom.pagetables.table_pfns(4)[0]
    with pytest.raises(GuestFault):
        dom.write_guest(GUEST_VIRT_BASE + pfn * 4096, b"x")


def test_struct_helpers(hv):
    dom = hv.create_domain()
    gva = dom.put_struct("vcpu_register_vcpu_info", mfn=5, offset=8, rsvd=0)
    got = dom.get_struct("vcpu_register_vcpu_info", gva)
    assert (got.mfn, got.offset) == (5, 8)


def test_watchers_see_every_state_change(hv):
    dom = hv.create_domain()
    seen = []
    unwatch = dom.watch(lambda d, old, new: seen.append((old, new)))
    dom.unpause()
    dom.pause()
    dom.unpause()
    dom.crash("oops")
    assert seen == [
        (DomainState.PAUSED, DomainState.RUNNING),
        (DomainState.RUNNING, DomainState.PAUSED),
        (DomainState.PAUSED, DomainState.RUNNING),
        (DomainState.RUNNING, DomainState.CRASHED),
    ]
    unwatch()
    hv.destroy_domain(dom)
    assert len(seen) == 4
    assert dom.state is DomainState.DESTROYED


def test_crash_keeps_first_report(hv):
    dom = hv.create_domain()
    dom.unpause()
    err = RuntimeError("x")
    dom.crash("first", err)
    dom.crash("second")
    assert dom.crash_reason == "first"
    assert dom.crash_exception is err
    assert dom.shutdown_reason == SHUTDOWN_crash


def test_shutdown_then_resume(hv):
    dom = hv.create_domain()
    dom.unpause()
    dom.shutdown(SHUTDOWN_suspend)
    assert dom.state is DomainState.SHUTDOWN
    assert dom.vcpus[0].runstate.state == RUNSTATE_offline
    dom.resume()
    assert dom.state is DomainState.RUNNING
    assert dom.vcpus[0].runstate.state == RUNSTATE_running
    assert dom.shutdown_reason is None


def test_destroy_domain(hv):
    dom0 = hv.create_domain(hardware_domain=True)
    dom0.unpause()
    dom_exc = dom0.evtchn.bind_virq(VIRQ_DOM_EXC, 0)
    a = hv.create_domain()
    b = hv.create_domain()
    a.unpause()
    port_b = b.evtchn.alloc_unbound(b, a.domid)
    port_a = a.evtchn.bind_interdomain(b, port_b)
    assert port_a > 0
    nr_free = hv.machine.nr_free_frames
    hv.destroy_domain(b)
    assert b.domid not in hv.domains
    assert hv.machine.nr_free_frames > nr_free
    assert a.evtchn.status(port_a)[0] == 1  # EVTCHNSTAT_unbound
    assert dom0.evtchn.is_pending(dom_exc)
    with pytest.raises(VcpuNotRunnable):
        hv.hypercall(b.vcpus[0], Hypercall.vcpu_op, VcpuOp.VCPUOP_is_up, 0)
    assert hv.states() == {dom0.domid: DomainState.RUNNING, a.domid: DomainState.RUNNING}


def test_bad_configuration(hv):
    hv.create_domain(domid=5)
    with pytest.raises(ValueError):
        hv.create_domain(domid=5)
    with pytest.raises(ValueError):
        hv.create_domain(domid=0x7FF0)
    with pytest.raises(ValueError):
        hv.create_domain(width=16)
    with pytest.raises(KeyError):
        hv.create_domain(profile="3.0")
    dom = hv.create_domain()
    dom.unpause()
    with pytest.raises(RuntimeError):
        dom.unpause()


def test_pv32_domain_layouts(hv):
    """A PV32 (compat) domain uses the x86_32 layouts: 32-bit event words, 1024 ports, 44-byte runstate."""
    dom = hv.create_domain(width=32)
    assert dom.abi is x86_32 and dom.is_compat
    assert dom.bits_per_evtchn_word == 32
    assert dom.evtchn.max_evtchns == 1024
    assert dom.runstate_codec.size == 44
    assert dom.runstate_entry_offset == 4
    assert hv.create_domain().abi is x86_64
    from xenpy.core.vcpu_context import arch_set_info_guest, pack_vcpu_guest_context, parse_vcpu_guest_context

    ctx = parse_vcpu_guest_context(dom.abi, pack_vcpu_guest_context(dom.abi, {"user_regs.cs": 0xE018}))
    assert arch_set_info_guest(dom.vcpus[0], ctx) == -22  # cr3 0 is not the domain's page
    assert dom.vcpus[0].arch.user_regs["cs"] == 0xE019  # compat RPL 1 fix-up


def test_profiles_are_data():
    head = get_profile("head")
    assert head is get_profile(head)
    assert head.runstate_update_flag
    assert get_profile("4.17").singleshot_past_injects is False
    assert get_profile("4.17.3").singleshot_past_injects is True
    with pytest.raises(AttributeError):
        head.phys_areas = False  # type: ignore[misc]


def test_run_for_and_runstate_readback(hv):
    dom = hv.create_domain()
    dom.unpause()
    hv.run_for(25 * MS)
    assert hv.now_ns() == 25 * MS
    assert hv.runstate(dom.vcpus[0]) == (RUNSTATE_running, 0, 25 * MS, 0, 0, 0)
    assert dom.vcpus[0].runstate_info() == (RUNSTATE_running, 0, 0, 0, 0, 0)
    parsed = hv.runstate_info(dom.vcpus[0])
    assert (parsed.state, parsed.state_entry_time, list(parsed.time)) == (RUNSTATE_running, 0, [25 * MS, 0, 0, 0])
    assert dom.vcpus[0].vcpu_info().evtchn_upcall_mask == 1


def test_host_clock_runs(tmp_path):
    hv = Hypervisor(clock="host")
    dom = hv.create_domain()
    dom.unpause()
    hv.run_for(2 * MS)
    assert hv.runstate(dom.vcpus[0])[2] >= 2 * MS


def test_poweroff_via_down_reports_reason(hv):
    dom = hv.create_domain()
    dom.unpause()
    assert hv.hypercall(dom.vcpus[0], Hypercall.vcpu_op, VcpuOp.VCPUOP_down, 0) == 0
    assert dom.shutdown_reason == SHUTDOWN_poweroff
