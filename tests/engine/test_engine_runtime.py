"""The engine's run loop: NMIs, TLB flushes, determinism, budgets, the host clock, registers (spec 3.3, 4.2)."""

from __future__ import annotations

import struct

import guest_code as gc
import pytest

from xenpy.abi.sched import SHUTDOWN_poweroff
from xenpy.core.domain import DomainState
from xenpy.engine.base import ExitReason, TrapBounce, TrapBounceFlags
from xenpy.engine.unicorn_engine import UnicornEngine
from xenpy.hypercall.handlers.cpu import do_set_segment_base
from xenpy.hypervisor import Hypervisor


def test_nmi_delivered_through_trap_entry_2_and_masked_until_iret(guest):
    """spec 4.2: a pending NMI bounces to trap_ctxt[2] on the next return to the guest, with no error code;
    the NMI mask is set while the handler runs and HYPERVISOR_iret restores it."""
    g = guest("upcall")
    g.trap_table((2, 0, gc.HANDLER))
    arch = g.vcpu.arch
    seen = {}

    def pre(vcpu, nr, args):
        if nr == 17 and len(seen) == 0 and not seen.get("sent"):
            arch.nmi_pending = True
            seen["sent"] = True
        if nr == 23:
            seen["mask_in_handler"] = arch.async_exception_mask

    g.hv.add_hypercall_hook(pre=pre)
    g.run()
    assert g.dom.shutdown_code == SHUTDOWN_poweroff, g.dom.crash_reason
    assert g.regs("r12")["r12"] == 1
    assert seen["mask_in_handler"] == 1
    assert arch.async_exception_mask == 0 and not arch.nmi_pending
    frame = g.read_u64s(gc.DATA + 0x800, 7)
    assert frame[2] == gc.HYPERCALL_PAGE + 17 * 32 + 10  # RIP: no error code slot before it


def test_nmi_without_handler_is_dropped(guest):
    """spec 4.2: with trap_ctxt[2].address == 0 the NMI is dropped (pending cleared, nothing delivered)."""
    g = guest("upcall")
    g.trap_table()
    g.vcpu.arch.nmi_pending = True
    g.run()
    assert g.dom.shutdown_code == SHUTDOWN_poweroff
    assert not g.vcpu.arch.nmi_pending
    assert g.regs("r12")["r12"] == 0


def test_update_va_mapping_flushes_the_cached_translation(guest):
    """The engine flushes Unicorn's TLB after a page-table update: the guest reads the new frame at once."""
    g = guest("remap")
    va = 0xFFFF_FFFF_8000_5000
    old_pfn, new_pfn = 5, 6
    g.dom.memory.write_pfn(old_pfn, struct.pack("<Q", 0x01D))
    g.dom.memory.write_pfn(new_pfn, struct.pack("<Q", 0x0E3))
    pte = (g.dom.memory.mfn_of(new_pfn) << 12) | 0x63  # P RW A D
    g.set_regs(rbx=pte)
    assert g.dom.read_guest(va, 8) == struct.pack("<Q", 0x01D)
    g.run()
    assert g.dom.shutdown_code == SHUTDOWN_poweroff, g.dom.crash_reason
    assert g.regs("r12", "r13", "r14") == {"r12": 0x01D, "r13": 0x0E3, "r14": 0}


def _determinism_run():
    from conftest import Guest

    g = Guest("determinism")
    g.run(20_000_000)
    assert g.dom.shutdown_code == SHUTDOWN_poweroff
    r = g.regs("r12", "r14")
    return (
        g.ctx.instructions_total,
        r["r12"],
        r["r14"],
        g.hv.now_ns(),
        g.hv.runstate(g.vcpu),
        g.hv.dispatcher.count,
    )


def test_deterministic_runs_are_identical():
    """The same guest twice gives the same instruction counts, TSC values, times and runstate."""
    first = _determinism_run()
    assert first == _determinism_run()
    instructions, _acc, tsc, now, _runstate, hypercalls = first
    assert instructions > 2000 * 10
    assert hypercalls == 2000 + 1
    assert 0 < tsc < now  # rdtsc follows the instructions executed (1 ns each by default)


def test_slice_end_after_exactly_the_budget(guest):
    """A run stops after exactly the instruction budget (deterministic clock), and resumes where it stopped."""
    g = guest("determinism")
    ctx = g.engine.context(g.vcpu)
    g.dom.unpause()
    pcpu = g.hv.scheduler.schedule_in(g.vcpu)
    ctx._pcpu = pcpu
    result = ctx.run(1000, g.hv.now_ns())
    assert result.reason is ExitReason.SLICE_END
    assert result.instructions == 1000 and result.elapsed_ns == 1000
    result = ctx.run(500, g.hv.now_ns())
    assert result.instructions == 500
    assert ctx.instructions_total == 1500


def test_blocked_exit_reason(guest):
    """SCHEDOP_block with nothing pending ends the run with BLOCKED (spec 3.4)."""
    g = guest("roundtrip")

    def block_on_63(vcpu, nr, args):
        if nr == 63:
            g.hv.scheduler.vcpu_block(vcpu)  # as SCHEDOP_block does
            return 0
        return None

    g.hv.add_hypercall_hook(pre=block_on_63)
    result = g.run()
    assert result.reason is ExitReason.BLOCKED
    assert g.vcpu.pause_flags & 1


def test_host_clock_mode_runs_guests(guest):
    """With the host clock no instruction counter is installed; guest code runs the same way."""
    g = guest("roundtrip", clock="host")
    assert not g.engine.deterministic
    g.hv.add_hypercall_hook(pre=lambda v, nr, args: 0x1234 if nr == 63 else None)
    g.run(50_000_000)
    assert g.dom.shutdown_code == SHUTDOWN_poweroff
    assert g.regs("r15")["r15"] == 0x1234


def test_registers_and_segment_bases(guest):
    """read_registers / write_registers round-trip; set_segment_base sets the FS and GS bases."""
    g = guest("roundtrip")
    ctx = g.engine.context(g.vcpu)
    ctx.write_registers({"r15": 0x1234_5678_9ABC_DEF0, "rbx": 7})
    assert ctx.read_registers(("r15", "rbx")) == {"r15": 0x1234_5678_9ABC_DEF0, "rbx": 7}
    hctx = g.hv.dispatcher.context(g.vcpu)
    assert hctx.cpu is ctx
    assert do_set_segment_base(hctx, 0, 0x7000_0000) == 0
    assert do_set_segment_base(hctx, 2, 0x7100_0000) == 0
    assert do_set_segment_base(hctx, 1, 0x7200_0000) == 0
    assert do_set_segment_base(hctx, 0, 1 << 63) == -22
    assert do_set_segment_base(hctx, 9, 0) == -22
    regs = ctx.read_registers(("fs_base", "gs_base", "shadow_gs_base"))
    assert regs == {"fs_base": 0x7000_0000, "gs_base": 0x7100_0000, "shadow_gs_base": 0x7200_0000}
    arch = g.vcpu.arch
    assert (arch.fs_base, arch.gs_base_kernel, arch.gs_base_user) == (0x7000_0000, 0x7100_0000, 0x7200_0000)


def test_a_selector_on_an_unmapped_gdt_page_is_refused_before_unicorn(guest):
    """SEGBASE_GS_USER_SEL with a selector whose GDT page is not mapped (no set_gdt frames): Xen's fix-up loads
    the null selector and the call returns 0. Unicorn's own check would read the descriptor and fault inside
    QEMU, which unwinds across the Python frames of the hypercall (found by the in-guest fuzzer, seed 1040).
    (Loads Unicorn accepts are exercised from guest code, inside the emulation, by the fuzz guest.)"""
    g = guest("roundtrip")
    ctx = g.engine.context(g.vcpu)
    hctx = g.hv.dispatcher.context(g.vcpu)
    assert ctx.load_selector("ds", 0x47A3) is False
    assert ctx.load_selector("es", 0x0007) is False  # an LDT selector: the engine never has an LDT
    assert do_set_segment_base(hctx, 3, 0x47A3) == 0
    assert ctx.read_registers(("gs",))["gs"] == 0


def test_bounce_to_a_zero_handler_crashes_with_the_vector(guest):
    """spec 3.3: create_bounce_frame with a zero handler address crashes the domain (message names the vector)."""
    g = guest("roundtrip")
    ctx = g.engine.context(g.vcpu)
    g.dom.unpause()
    ctx.load_state()
    tb = TrapBounce(0, TrapBounceFlags.TBF_EXCEPTION | TrapBounceFlags.TBF_EXCEPTION_ERRCODE, 0, 13)
    assert ctx.create_bounce_frame(tb) is False
    assert g.dom.state is DomainState.CRASHED
    assert (
        g.dom.crash_reason
        == f"vCPU 0: #GP at RIP {gc.CODE:#x} with no handler (trap table entry 13 is empty)"
    )


@pytest.mark.parametrize("pcpus", [1, 2])
def test_two_vcpus_run_on_the_scheduler(guest, pcpus):
    """Two domains' vCPUs share the pCPUs through the scheduler; each runs to its shutdown."""
    a = guest("determinism", nr_pcpus=pcpus)
    b = guest("determinism", hv=a.hv)
    b.dom.unpause()
    a.run(50_000_000)
    assert a.dom.shutdown_code == SHUTDOWN_poweroff and b.dom.shutdown_code == SHUTDOWN_poweroff
    assert a.ctx.instructions_total == b.ctx.instructions_total  # the same code, whatever the interleaving


def test_hypervisor_error_in_an_exit_crashes_only_the_domain(guest, monkeypatch):
    """An exception inside the engine's own exit handling is captured (never propagated out of
    Unicorn's callback) and crashes only that domain, with the error in the message."""
    import xenpy.engine.pv64 as pv64

    def broken(*args):
        raise RuntimeError("policy table corrupted")

    monkeypatch.setattr(pv64, "cpuid_policy", broken)
    g = guest("cpuid")
    g.run()
    assert g.dom.state is DomainState.CRASHED
    assert "policy table corrupted" in g.dom.crash_reason
    assert isinstance(g.dom.crash_exception, RuntimeError)


def test_set_gdt_maps_guest_frames_and_checks_descriptors(guest):
    """HYPERVISOR_set_gdt: the frames take a descriptor-page reference (descriptor DPLs raised to 3) and are
    mapped in the vCPU's GDT; more than 7168 entries, an unreadable list, or a frame that is not a valid
    descriptor page give -EINVAL / -EFAULT / -EINVAL and change nothing."""
    from xenpy.core.memory import PageType
    from xenpy.hypercall.handlers.cpu import do_set_gdt

    g = guest("roundtrip")
    g.dom.unpause()
    ctx = g.engine.context(g.vcpu)
    machine = g.hv.machine
    gdt_va = g.dom.alloc_guest_page()
    gdt_mfn = g.dom.gva_to_mfn(gdt_va)
    g.dom.write_guest(gdt_va, struct.pack("<2Q", 0, 0x00AF_9B00_0000_FFFF))  # null, ring-0 code
    g.hv.hypercall(g.vcpu, 14, gdt_va, (gdt_mfn << 12) | 0x21, 0)  # map it read-only (update_va_mapping)
    frames = g.dom.alloc_guest(8, 8)
    g.write_u64(frames, gdt_mfn)
    hctx = g.hv.dispatcher.context(g.vcpu)
    assert do_set_gdt(hctx, frames, 7169) == -22
    assert g.hv.hypercall(g.vcpu, 2, 0x1000, 16) == -14
    assert do_set_gdt(hctx, frames, 16) == 0
    assert machine.page_type(gdt_mfn) == PageType.seg_desc
    assert machine.read_u64((gdt_mfn << 12) + 8) == 0x00AF_FB00_0000_FFFF  # DPL 3
    assert g.vcpu.arch.gdt_ents == 16 and g.vcpu.arch.gdt_frames[0] == gdt_mfn
    ctx.sync_mmu()
    assert ctx.area._q[2 * 512 + 0] >> 12 == gdt_mfn  # GDT page 0 of vCPU 0
    writable = g.dom.gva_to_mfn(g.dom.alloc_guest_page())
    g.write_u64(frames, writable)
    assert g.hv.hypercall(g.vcpu, 2, frames, 16) == -22
    assert g.vcpu.arch.gdt_frames[0] == gdt_mfn


def test_runner_runs_to_shutdown_and_reports(guest):
    """run_domain_until_stopped: a guest that powers off ends STOPPED with its reason; one that never stops
    ends TIMED_OUT at the guest-time limit; one whose vCPU blocks with no timer ends STALLED."""
    from xenpy.engine.runner import RunEnd, run_domain_until_stopped

    g = guest("determinism")
    summary = run_domain_until_stopped(g.hv, g.dom, timeout_s=60)
    assert (summary.end, summary.shutdown_reason) == (RunEnd.STOPPED, SHUTDOWN_poweroff)
    assert summary.guest_ns > 0

    slow_hv = Hypervisor(memory_mib=16)
    UnicornEngine(slow_hv, instructions_per_second=1_000)  # 1 ms per instruction: needs ~40 s of guest time
    slow = guest("determinism", hv=slow_hv)
    summary = run_domain_until_stopped(slow.hv, slow.dom, max_guest_ns=3_000_000)
    assert summary.end is RunEnd.TIMED_OUT and summary.guest_ns == 3_000_000
    assert slow.ctx.instructions_total == 3

    blocked = guest("roundtrip")

    def block_on_63(vcpu, nr, args):
        if nr == 63:
            blocked.hv.scheduler.vcpu_block(vcpu)
            return 0
        return None

    blocked.hv.add_hypercall_hook(pre=block_on_63)
    for v in blocked.dom.vcpus:
        v.periodic_timer.stop()
    summary = run_domain_until_stopped(blocked.hv, blocked.dom, timeout_s=60)
    assert summary.end is RunEnd.STALLED
