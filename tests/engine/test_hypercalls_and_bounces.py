"""Guest code on the Unicorn engine: hypercalls, iret, exception bounces, upcalls, crashes (spec 3.3, 7.3-7.5)."""

from __future__ import annotations

import struct

import guest_code as gc

from xenpy.abi.sched import SHUTDOWN_crash, SHUTDOWN_poweroff
from xenpy.core.domain import DomainState
from xenpy.engine.base import ExitReason

U64 = (1 << 64) - 1
VERSION = (4 << 16) | 23  # the "head" profile's XENVER_version
ARITH_FLAGS = 0x8D5  # CF PF AF ZF SF OF


def test_hypercall_round_trip(guest):
    """spec 7.3, 7.4: rax = number, args in rdi/rsi/rdx/r10/r8, result in rax, rcx/r11 restored by the stub;
    an inline ``syscall`` leaves rcx = RIP and r11 = RFLAGS (Xen returns with sysret)."""
    g = guest("roundtrip")
    seen = []

    def pre(vcpu, nr, args):
        seen.append((nr, args))
        return 0x1234 if nr == 63 else None

    g.hv.add_hypercall_hook(pre=pre)
    result = g.run()
    assert result.reason is ExitReason.SHUTDOWN
    assert g.dom.shutdown_code == SHUTDOWN_poweroff
    assert seen[0] == (17, (0, 0, 0, 0, 0))
    assert seen[1] == (63, (0xA1, 0xA2, 0xA3, 0xA4, 0xA5))
    assert seen[2][0] == 63 and seen[2][1][0] == 0xB1
    r = g.regs("r12", "r13", "r14", "r15", "rbx", "rbp")
    assert r["r12"] == VERSION
    assert r["r13"] == 0x1111111111111111 and r["r14"] == 0x2222222222222222
    assert r["r15"] == 0x1234
    syscall_end = gc.CODE + gc.PROGRAMS["roundtrip"][0].code.index(b"\x0f\x05") + 2
    assert r["rbx"] == syscall_end
    assert r["rbp"] & ~ARITH_FLAGS == 0x202


def _run_iret(guest, rflags: int, flags: int):
    g = guest("iret")
    g.set_regs(r12=rflags, r13=flags)
    g.vcpu.vcpu_info_mv[1] = 0 if rflags & 0x200 else 1
    g.vcpu.vcpu_info_mv[1] ^= 1  # start from the opposite mask: iret must set it
    g.run()
    assert g.dom.shutdown_code == SHUTDOWN_poweroff
    return g


def test_iret_restores_registers_and_masks_events(guest):
    """spec 3.3, 7.3: HYPERVISOR_iret pops {rax, r11, rcx, flags, rip, cs, rflags, rsp, ss}; the upcall mask
    becomes !rflags.IF; without VGCF_in_syscall rcx/r11 come from the frame; the CPU's IF stays set."""
    g = _run_iret(guest, rflags=0x2 | 0x40, flags=0)  # IF clear: events masked after the iret
    r = g.regs("r12", "r13", "r14", "r15", "rbx")
    assert r["r12"] == 0x4242
    assert r["r13"] == 0x1111 and r["r14"] == 0x2222
    assert r["r15"] == gc.STACK_TOP
    assert r["rbx"] & 0x200 and r["rbx"] & 0x40  # real IF forced on, ZF from the frame
    assert g.vcpu.evtchn_upcall_mask == 1
    g = _run_iret(guest, rflags=0x202, flags=0)
    assert g.vcpu.evtchn_upcall_mask == 0


def test_iret_in_syscall_leaves_rcx_r11_as_sysret(guest):
    """spec 5.8 (VGCF_in_syscall): rcx = the return RIP and r11 = RFLAGS instead of the frame's values."""
    g = _run_iret(guest, rflags=0x202, flags=1 << 8)
    r = g.regs("r13", "r14")
    target = gc.CODE + gc.PROGRAMS["iret"][0].code.index(bytes.fromhex("4989c4"))  # mov r12, rax
    assert r["r13"] == target
    assert r["r14"] == 0x202


def _pf_guest(guest, address: int, write: bool, ti_flags: int = 4):
    g = guest("pagefault")
    g.trap_table((14, ti_flags, gc.HANDLER))
    g.set_regs(r12=address, r13=int(write))
    g.run()
    assert g.dom.shutdown_code == SHUTDOWN_poweroff, g.dom.crash_reason
    return g


def test_page_fault_bounce_frame_layout(guest):
    """spec 3.3: the #PF frame, from the lowest address: RCX, R11, error code, RIP, CS (RPL 0 for a kernel
    context, saved_upcall_mask in bits 32-39), RFLAGS (IF = !saved mask), RSP, SS; 16-byte aligned; CR2 is
    written to vcpu_info.arch.cr2; TBF_INTERRUPT masks events."""
    g = _pf_guest(guest, 0x5000_0000_0000, write=False)
    frame = g.read_u64s(gc.DATA + 0x800, 8)
    fault_rip = gc.CODE + gc.PROGRAMS["pagefault"][0].code.index(bytes.fromhex("498b0424"))  # mov rax, [r12]
    assert frame == [
        0x1C1C,
        0x2B2B,
        0,
        fault_rip,
        0xE030 | (1 << 32),
        0x46 & ~0x200 | 0x2,
        gc.STACK_TOP,
        0xE02B,
    ]
    handler_rsp = g.regs("rbx")["rbx"]
    assert handler_rsp == (gc.STACK_TOP & ~0xF) - 64
    vcpu_info = g.vcpu.vcpu_info()
    assert vcpu_info.arch.cr2 == 0x5000_0000_0000
    assert g.vcpu.arch.ctrlreg[2] == 0x5000_0000_0000
    assert g.vcpu.evtchn_upcall_mask == 1


def test_page_fault_error_codes(guest):
    """spec 3.3: #PF error codes as Xen reports them to a PV kernel: P and W from the hardware, U cleared for
    guest kernel mode (the CPU, at CPL3, always sets it)."""
    not_present_write = _pf_guest(guest, 0x5000_0000_0000, write=True)
    assert not_present_write.read_u64s(gc.DATA + 0x800, 3)[2] == 2  # W
    l4_table_va = 0xFFFF_FFFF_8000_0000 + 511 * 4096  # the L4 (pfn 511): page tables are mapped read-only
    read_only_write = _pf_guest(guest, l4_table_va, write=True)
    assert read_only_write.read_u64s(gc.DATA + 0x800, 3)[2] == 3  # P | W
    assert read_only_write.vcpu.vcpu_info().arch.cr2 == l4_table_va


def test_trap_entry_without_event_mask_keeps_events_enabled(guest):
    """spec 3.3: without TI_IF (flags bit 2) the bounce does not set evtchn_upcall_mask."""
    g = guest("pagefault")
    g.trap_table((14, 0, gc.HANDLER))
    g.set_regs(r12=0x5000_0000_0000, r13=0)
    g.vcpu.vcpu_info_mv[1] = 0
    g.run()
    assert g.dom.shutdown_code == SHUTDOWN_poweroff
    assert g.vcpu.evtchn_upcall_mask == 0
    assert g.read_u64s(gc.DATA + 0x800, 6)[5] & 0x200  # pushed IF = !saved mask


def test_upcall_only_when_pending_and_unmasked(guest):
    """spec 3.3: the upcall bounces to event_callback_eip exactly when upcall_pending != 0 and upcall_mask == 0,
    on the return from a hypercall; it masks events and its frame has no error code."""
    g = guest("upcall")
    g.trap_table()
    callback = struct.pack("<HHIQ", 0, 1, 0, gc.HANDLER)  # CALLBACKTYPE_event, CALLBACKF_mask_events
    g.dom.write_guest(gc.DATA + 0x100, callback)
    vi = g.vcpu.vcpu_info_mv
    calls = []

    def pre(vcpu, nr, args):
        if nr == 17:
            calls.append(nr)
            if len(calls) == 3:
                vi[0] = 1  # pending, still masked (the boot state): nothing happens
            if len(calls) == 10:
                vi[1] = 0  # unmasked: the upcall comes on the return from this hypercall
        if nr == 23:
            vi[0] = 0  # the callback's work: acknowledge (this guest has no shared_info mapping to do it)

    g.hv.add_hypercall_hook(pre=pre)
    g.run()
    assert g.dom.shutdown_code == SHUTDOWN_poweroff, g.dom.crash_reason
    r = g.regs("r12", "r14")
    assert r["r12"] == 1  # delivered once
    assert r["r14"] == 9  # inside the 10th call: r13 was incremented 9 times
    frame = g.read_u64s(gc.DATA + 0x800, 7)
    after_syscall = gc.HYPERCALL_PAGE + 17 * 32 + 10  # in the xen_version stub, after its syscall
    assert frame[:3] == [after_syscall, frame[4], after_syscall]  # RCX, R11 as syscall left them; RIP
    assert frame[3] & 0xFFFF == 0xE030 and frame[3] >> 32 == 0  # kernel context, saved mask 0
    assert frame[4] & 0x200  # IF set: events were enabled
    assert vi[1] == 0  # restored by iret from the frame's IF


def test_no_upcall_while_masked(guest):
    """spec 3.3: pending with mask set never bounces."""
    g = guest("upcall")
    g.trap_table()
    g.dom.write_guest(gc.DATA + 0x100, struct.pack("<HHIQ", 0, 1, 0, gc.HANDLER))
    g.vcpu.vcpu_info_mv[0] = 1
    g.run()
    assert g.dom.shutdown_code == SHUTDOWN_poweroff
    assert g.regs("r12", "r13") == {"r12": 0, "r13": 50}


def test_upcall_with_no_callback_crashes_the_domain(guest):
    """spec 7.5: an upcall with event_callback_eip == 0 crashes the domain."""
    g = guest("upcall")
    g.trap_table()
    g.dom.write_guest(gc.DATA + 0x100, struct.pack("<HHIQ", 0, 1, 0, gc.HANDLER))
    g.vcpu.arch.event_callback_eip = 0
    g.vcpu.vcpu_info_mv[0] = 1
    g.vcpu.vcpu_info_mv[1] = 0
    g.run()
    assert g.dom.state is DomainState.CRASHED
    assert "event upcall" in g.dom.crash_reason


def test_fault_without_handler_crashes_only_that_domain(guest):
    """Spec 3.3: a fault with no trap-table entry crashes its own domain with a message naming the
    vCPU, the RIP and the vector; another domain on the same hypervisor keeps running to its shutdown."""
    bad = guest("nohandler")
    good = guest("roundtrip", hv=bad.hv)
    good.dom.unpause()
    result = bad.run()
    assert bad.dom.state is DomainState.CRASHED
    assert bad.dom.shutdown_code == SHUTDOWN_crash
    fault_rip = gc.CODE + gc.PROGRAMS["nohandler"][0].code.index(bytes.fromhex("488b00"))
    assert bad.dom.crash_reason == (
        f"vCPU 0: #PF at RIP {fault_rip:#x} with no handler (trap table entry 14 is empty)"
    )
    assert good.dom.shutdown_code == SHUTDOWN_poweroff
    assert good.dom.state is DomainState.SHUTDOWN
    assert result is not None


def _priv(guest, which: int):
    g = guest("priv")
    g.trap_table((13, 4, gc.HANDLER))
    g.set_regs(r12=which)
    g.run()
    assert g.dom.shutdown_code == SHUTDOWN_poweroff, g.dom.crash_reason
    return g


def test_privileged_instruction_bounces_gp(guest):
    """spec 3.3: privileged instructions Xen does not emulate (hlt; cli with virtual IOPL 0; port I/O in a
    domU; wrmsr of an unknown MSR) raise #GP(0) into the guest at the instruction."""
    for which, opcode in ((0, b"\xf4"), (2, b"\xfa"), (3, b"\xe4\x60"), (4, b"\x0f\x30")):
        g = _priv(guest, which)
        frame = g.read_u64s(gc.DATA + 0x800, 4)
        assert g.regs("r13")["r13"] == 1
        assert frame[2] == 0  # error code 0
        assert frame[3] == gc.CODE + gc.PROGRAMS["priv"][0].code.index(opcode, 0x20), which


def test_reading_cr3_is_emulated(guest):
    """Xen emulates ``mov %cr3, %reg`` for a PV kernel: the kernel page table's cr3."""
    g = _priv(guest, 1)
    assert g.regs("r13", "r14") == {"r13": 0, "r14": g.vcpu.arch.ctrlreg[3]}


def test_forced_emulation_cpuid(guest):
    """spec 7 (cpuid): ``ud2a; .ascii "xen"; cpuid`` runs cpuid with the guest policy; a plain cpuid gives the
    same Xen leaves; leaf 1 has the hypervisor bit."""
    g = guest("cpuid")
    g.run()
    assert g.dom.shutdown_code == SHUTDOWN_poweroff, g.dom.crash_reason
    r = g.regs("r8", "r9", "r10", "r12", "r13", "r14", "r15")
    sig = struct.pack("<3I", r["r8"], r["r9"], r["r10"])
    assert sig == b"XenVMMXenVMM"
    assert (r["r12"], r["r13"], r["r14"]) == (r["r8"], r["r9"], r["r10"])
    assert r["r15"] & (1 << 31)


def test_user_mode_syscall_bounces_to_the_syscall_callback(guest):
    """spec 3.3: after HYPERVISOR_iret to user mode (CS RPL 3, user page table), a ``syscall`` bounces
    to the syscall callback on the kernel stack (stack_switch), with RCX/R11 as the instruction left them and
    CS RPL 3 in the frame; the vCPU is back in kernel mode."""
    g = guest("usersyscall")
    g.dom.write_guest(gc.DATA + 0x100, struct.pack("<HHIQ", 2, 0, 0, gc.HANDLER))  # CALLBACKTYPE_syscall
    g.set_regs(r12=g.vcpu.arch.ctrlreg[3] >> 12)
    g.run()
    assert g.dom.shutdown_code == SHUTDOWN_poweroff, g.dom.crash_reason
    r = g.regs("rbx", "r13", "r15")
    assert r["r15"] == 0  # MMUEXT_NEW_USER_BASEPTR
    assert r["r13"] == 0x5555
    assert r["rbx"] == gc.DATA + 0xF00 - 56  # kernel_sp, 7 qwords
    rcx, r11, rip, cs, rflags, rsp, ss = g.read_u64s(gc.DATA + 0x800, 7)
    syscall_end = gc.CODE + gc.PROGRAMS["usersyscall"][0].code.index(b"\x0f\x05") + 2
    assert (rcx, rip) == (syscall_end, syscall_end)
    assert r11 == 0x202 and rflags & 0x200
    assert cs & 0xFFFF == 0xE033
    assert (rsp, ss) == (gc.DATA + 0xE00, 0xE02B)
    assert g.vcpu.arch.kernel_mode
