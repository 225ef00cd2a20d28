"""PV64 CPU semantics shared by every engine: bounce frames, iret, traps, events, NMIs, emulation.

Implements what Xen does between a PV64 guest's exit and its return (spec 3.3, 4.2, 7.3-7.5):

* ``create_bounce_frame`` (``xen/arch/x86/x86_64/entry.S``): :meth:`Pv64Context.create_bounce_frame`;
* ``toggle_guest_mode`` (``xen/arch/x86/pv/domain.c``): kernel/user switch with ``swapgs`` and the user page
  table (``ctrlreg[1]``);
* ``pv_inject_event`` (``xen/arch/x86/pv/traps.c``): :meth:`Pv64Context.inject_exception` and
  :meth:`Pv64Context.inject_sw_interrupt` through the virtual IDT (``trap_ctxt``), CR2 into
  ``vcpu_info.arch.cr2``, the #PF user bit rewritten for the guest mode, error codes for 8, 10-14 and 17;
* ``test_all_events`` / ``process_nmi`` (``entry.S``, ``set_guest_nmi_trapbounce``):
  :meth:`Pv64Context.return_to_guest`;
* ``do_iret`` (``xen/arch/x86/pv/iret.c``) and ``async_exception_cleanup``: :meth:`Pv64Context.do_iret`;
* ``switch_to_kernel`` (``entry.S``): a ``syscall`` from guest user mode, :meth:`Pv64Context.syscall_from_user`;
* ``do_general_protection`` / ``do_int3`` / ``do_invalid_op``: :meth:`Pv64Context.handle_exception`,
  including the "int N" trick (software interrupts whose trap-table DPL permits them), Xen's forced emulation
  prefix ``ud2a; .ascii "xen"; cpuid`` (``pv_emulate_invalid_op``) and the privileged operations of
  ``pv_emulate_privileged_op`` a minimal kernel uses (:meth:`Pv64Context.emulate_privileged_op`); a #GP(0)
  the engine raised where the hardware, whose fault Xen forwards, raises #SS(0) (a non-canonical access
  through the stack segment, which QEMU's TCG reports as #GP) is delivered as #SS(0)
  (:meth:`Pv64Context.stack_segment_fault`, with :mod:`xenpy.engine.x86_decode`).

An engine subclasses :class:`Pv64Context` and supplies a handful of primitives (registers, page-table load,
``swapgs``, the current guest time); everything guest-visible is decided here.

Invariants:

* the real RFLAGS of a running PV guest always has IF set and IOPL 0; the guest's virtual interrupt flag is
  ``!vcpu_info.evtchn_upcall_mask`` and its virtual IOPL is ``arch.iopl``;
* every return to the guest after a hypercall or a bounce leaves ``rcx`` = RIP and ``r11`` = RFLAGS (Xen exits
  through ``sysret``); ``HYPERVISOR_iret`` without ``VGCF_in_syscall`` restores them from the frame;
* a guest that cannot be entered (zero handler, unwritable stack, bad iret frame) crashes its own domain, with
  a message naming the vCPU, the RIP and the vector, and nothing else.

CPUID policy (:func:`cpuid_policy`): what a PV guest sees on hardware with CPUID faulting, which Xen enables
for PV guests; both a plain ``cpuid`` and the forced-emulation form return it. Vendor ``GenuineIntel``; basic
leaves up to 0xd with the feature bits of Xen's PV default policy that the engine can execute
(``native_features``), the hypervisor bit set and monitor/VMX/SMX/PCID/x2APIC/TSC-deadline cleared; Xen's
leaves at 0x40000000 (``XenVMMXenVMM``, version, one hypercall page, time information); extended leaves up to
0x80000008 (LM, NX, SYSCALL, LAHF; 48-bit virtual and 40-bit physical addresses). Leaf 1 EBX carries the
vCPU id as the initial APIC id. Unknown leaves read as zeros.
"""

from __future__ import annotations

import struct
from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from xenpy.abi.arch_x86 import (
    FLAT_KERNEL_CS,
    FLAT_KERNEL_SS,
    FLAT_RING3_CS32,
    HYPERVISOR_VIRT_END,
    HYPERVISOR_VIRT_START,
    VGCF_in_syscall,
    VGCF_syscall_disables_events,
)
from xenpy.abi.x86 import (
    EXCEPTION_NAMES,
    MSR_EFER,
    MSR_FS_BASE,
    MSR_GS_BASE,
    MSR_IA32_UCODE_REV,
    MSR_INTEL_MISC_FEATURES_ENABLES,
    MSR_INTEL_PLATFORM_INFO,
    MSR_SHADOW_GS_BASE,
    MSR_TSC,
    MSR_TSC_AUX,
    PAGE_OFFSET_MASK,
    PAGE_PRESENT,
    PAGE_RW,
    X86_CR0_TS,
    X86_CR4_DE,
    X86_CR4_OSFXSR,
    X86_CR4_OSXMMEXCPT,
    X86_CR4_PAE,
    X86_CR4_PGE,
    X86_CR4_TSD,
    X86_EFLAGS_AC,
    X86_EFLAGS_DF,
    X86_EFLAGS_IF,
    X86_EFLAGS_IOPL,
    X86_EFLAGS_NT,
    X86_EFLAGS_RF,
    X86_EFLAGS_TF,
    X86_EFLAGS_VM,
    X86_EXC_BP,
    X86_EXC_GP,
    X86_EXC_HAVE_EC,
    X86_EXC_OF,
    X86_EXC_PF,
    X86_EXC_SS,
    X86_EXC_UD,
    X86_FEATURE_HYPERVISOR,
    PFEC_insn_fetch,
    PFEC_page_present,
    PFEC_reserved_bit,
    PFEC_user_mode,
    PFEC_write_access,
)
from xenpy.abi.xen import VMASST_TYPE_architectural_iopl, VMASST_TYPE_writable_pagetables
from xenpy.core import mm
from xenpy.core.debugreg import get_debugreg, set_debugreg
from xenpy.core.domain import Vcpu
from xenpy.core.memory import PAGE_SHIFT, PageType
from xenpy.core.pagetable import GuestFault, copy_from_guest, copy_to_guest, is_canonical
from xenpy.engine.base import TrapBounce, TrapBounceFlags, VcpuContext
from xenpy.hypercall.cpu import CpuPort

if TYPE_CHECKING:
    from xenpy.hypercall.context import HypercallContext

TBF_EXCEPTION = int(TrapBounceFlags.TBF_EXCEPTION)
TBF_EXCEPTION_ERRCODE = int(TrapBounceFlags.TBF_EXCEPTION_ERRCODE)
TBF_INTERRUPT = int(TrapBounceFlags.TBF_INTERRUPT)

#: ``async_exception_mask`` bits as :class:`~xenpy.core.domain.VcpuArch` stores them.
ASYNC_EXC_NMI = 1 << 0
ASYNC_EXC_MCE = 1 << 1

#: Trap-table vector of the NMI callback (spec 4.2).
TRAP_nmi = 2
#: ``TI_IF``: trap_info flags bit 2, events masked on entry.
TI_IF = 4

# Xen's forced emulation prefix ``ud2a; .ascii "xen"`` (``XEN_EMULATE_PREFIX``) and the cpuid that follows.
XEN_EMULATE_PREFIX = b"\x0f\x0bxen"
_CPUID = b"\x0f\xa2"

#: EFER as a PV64 guest reads it: SCE | LME | LMA | NXE.
GUEST_EFER = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11)
#: CR0 as a PV64 guest reads it (PE MP ET NE WP AM PG), plus TS when the guest set it.
GUEST_CR0 = 0x8005_0033
#: CR4 bits a guest may keep in its virtual CR4 (``pv_fixup_guest_cr4``), over the fixed PAE|OSFXSR|OSXMMEXCPT.
#: FSGSBASE is discarded, as Xen discards it for a policy without the feature (cpuid_policy's leaf 7 is empty).
GUEST_CR4_FIXED = X86_CR4_PAE | X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT
GUEST_CR4_MASK = X86_CR4_TSD | X86_CR4_DE | X86_CR4_PGE

_U64 = (1 << 64) - 1
_IRET_CONTEXT = struct.Struct("<9Q")
#: Lowest stack address a bounce frame may not use: Xen's hole, plus the largest frame (spec 3.3).
_FRAME_HOLE_END = HYPERVISOR_VIRT_END + 0x60
_LEGACY_PREFIXES = frozenset((0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3))
_REGS_BY_NUMBER = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                   "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")  # fmt: skip
_FRAME_REGS = ("rip", "rsp", "rflags", "cs", "ss", "rcx", "r11")


def exception_name(vector: int) -> str:
    """``#GP``-style name of an exception vector (``vector N`` for the others)."""
    return EXCEPTION_NAMES.get(vector, f"vector {vector}")


# ------------------------------------------------------------------------------------------------ CPUID

#: Leaf 1 ECX bits of Xen's PV default policy that the engine may pass through (SSE3 PCLMULQDQ SSSE3 FMA CX16
#: SSE4.1 SSE4.2 MOVBE POPCNT AES XSAVE? no: XSAVE/OSXSAVE/AVX hidden, RDRAND hidden for determinism).
_LEAF1_ECX_PASS = (
    (1 << 0)
    | (1 << 1)
    | (1 << 9)
    | (1 << 12)
    | (1 << 13)
    | (1 << 19)
    | (1 << 20)
    | (1 << 22)
    | (1 << 23)
    | (1 << 25)
)
#: Leaf 1 EDX bits passed through (FPU VME? no; DE TSC MSR PAE MCE CX8 SEP PGE MCA CMOV PAT CLFSH MMX FXSR SSE
#: SSE2). APIC, MTRR, PSE36, ACPI, DS, HTT, TM, PBE are hidden from PV guests.
_LEAF1_EDX_PASS = (
    (1 << 0) | (1 << 2) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 11) | (1 << 13)
    | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 19) | (1 << 23) | (1 << 24) | (1 << 25) | (1 << 26)
)  # fmt: skip
#: Extended leaf 0x80000001: EDX SYSCALL NX LM; ECX LAHF_LM.
_EXT1_EDX = (1 << 11) | (1 << 20) | (1 << 29)
_EXT1_ECX = 1 << 0
_XEN_SIGNATURE = struct.unpack("<3I", b"XenVMMXenVMM")
_VENDOR = struct.unpack("<3I", b"GenuineIntel")
XEN_CPUID_FIRST_LEAF = 0x4000_0000
XEN_CPUID_MAX_LEAF = 0x4000_0004


def cpuid_policy(
    v: Vcpu,
    leaf: int,
    subleaf: int,
    native_features: tuple[int, int, int, int],
) -> tuple[int, int, int, int]:
    """The CPUID result a PV64 guest sees (see the module docstring for the policy).

    Args:
        v: the vCPU executing cpuid.
        leaf: EAX.
        subleaf: ECX.
        native_features: ``(leaf1 ecx, leaf1 edx, ext1 ecx, ext1 edx)`` the engine can execute.

    Returns:
        ``(eax, ebx, ecx, edx)``.
    """
    leaf &= 0xFFFF_FFFF
    n_ecx, n_edx, n_xecx, n_xedx = native_features
    if leaf == 0:
        return 0xD, _VENDOR[0], _VENDOR[2], _VENDOR[1]
    if leaf == 1:
        # Family 6 model 0x3a stepping 9; CLFLUSH line 8 qwords; initial APIC id = vCPU id.
        ebx = ((v.vcpu_id & 0xFF) << 24) | (8 << 8)
        ecx = (n_ecx & _LEAF1_ECX_PASS) | X86_FEATURE_HYPERVISOR
        return 0x000306A9, ebx, ecx, n_edx & _LEAF1_EDX_PASS
    if XEN_CPUID_FIRST_LEAF <= leaf <= XEN_CPUID_MAX_LEAF:
        return _xen_leaf(v, leaf - XEN_CPUID_FIRST_LEAF, subleaf)
    if leaf == 0x8000_0000:
        return 0x8000_0008, 0, 0, 0
    if leaf == 0x8000_0001:
        return (
            0,
            0,
            n_xecx & _EXT1_ECX,
            (n_xedx & _EXT1_EDX) | (n_edx & _LEAF1_EDX_PASS & 0x0183_F3FF & ~(1 << 9)),
        )
    if leaf == 0x8000_0008:
        return 0x3028, 0, 0, 0
    return 0, 0, 0, 0


def _xen_leaf(v: Vcpu, index: int, subleaf: int) -> tuple[int, int, int, int]:
    hv = v.domain.system
    if index == 0:
        return XEN_CPUID_MAX_LEAF, _XEN_SIGNATURE[0], _XEN_SIGNATURE[1], _XEN_SIGNATURE[2]
    if index == 1:
        major, minor = v.domain.profile.version
        return (major << 16) | minor, 0, 0, 0
    if index == 2:
        # One hypercall page; its MSR would be 0x40000000 (HVM only); no feature flags.
        return 1, 0x4000_0000, 0, 0
    if index == 3:
        tsc_khz = hv.clock.tsc_hz // 1000
        if subleaf == 0:
            return 0, 0, tsc_khz, 0
        if subleaf == 1:
            mul, shift = hv.tsc_scale
            return 0, 0, mul, shift & 0xFFFF_FFFF
        if subleaf == 2:
            return tsc_khz, 0, 0, 0
    return 0, 0, 0, 0


# ------------------------------------------------------------------------------------------------ decoding


def _skip_prefixes(code: bytes) -> tuple[int, int]:
    """Index of the opcode after legacy prefixes and REX, and the REX byte (0 if none)."""
    i = 0
    while i < len(code) and code[i] in _LEGACY_PREFIXES:
        i += 1
    rex = 0
    if i < len(code) and 0x40 <= code[i] <= 0x4F:
        rex = code[i]
        i += 1
    return i, rex


def instruction_length_of_syscall(code: bytes) -> int:
    """Length of the ``syscall`` instruction at the start of ``code`` (its prefixes included)."""
    i, _ = _skip_prefixes(code)
    return i + 2


#: What a domU reads from any I/O port (it has none): all ones, cut to the operand's size.
PORT_READ_VALUE = 0xFFFF_FFFF


class PrivilegedOp:
    """A decoded privileged instruction (the subset :meth:`Pv64Context.emulate_privileged_op` handles).

    Attributes:
        kind: ``"rdtsc"``, ``"rdtscp"``, ``"rdmsr"``, ``"wrmsr"``, ``"mov_from_cr"``, ``"mov_to_cr"``,
            ``"mov_from_dr"``, ``"mov_to_dr"``, ``"clts"``, ``"wbinvd"``, ``"cli"``, ``"sti"``, ``"io"``,
            ``"cpuid"`` or ``"other"``.
        length: instruction length in bytes.
        control: control/debug register number (mov cr/dr); for ``io`` the access size in bytes.
        gpr: general register name (mov cr/dr); for ``io`` the direction: ``"in"``, ``"out"``, or ``"string"``
            (``ins``/``outs``).
    """

    __slots__ = ("control", "gpr", "kind", "length")

    def __init__(self, kind: str, length: int, control: int = 0, gpr: str = "") -> None:
        self.kind = kind
        self.length = length
        self.control = control
        self.gpr = gpr


def decode_privileged(code: bytes) -> PrivilegedOp:
    """Decode the instruction at the start of ``code`` far enough to emulate it (or call it ``other``)."""
    i, rex = _skip_prefixes(code)
    if i >= len(code):
        return PrivilegedOp("other", 1)
    op = code[i]
    if op == 0xFA:
        return PrivilegedOp("cli", i + 1)
    if op == 0xFB:
        return PrivilegedOp("sti", i + 1)
    if op in (0xE4, 0xE5, 0xE6, 0xE7, 0xEC, 0xED, 0xEE, 0xEF, 0x6C, 0x6D, 0x6E, 0x6F):
        size = 1 if not op & 1 else (2 if 0x66 in code[:i] else 4)
        direction = "string" if op < 0x70 else ("in" if op & 2 == 0 else "out")
        return PrivilegedOp("io", i + (2 if 0xE4 <= op < 0xE8 else 1), size, direction)
    if op != 0x0F or i + 1 >= len(code):
        return PrivilegedOp("other", i + 1)
    op2 = code[i + 1]
    simple = {0x31: "rdtsc", 0x30: "wrmsr", 0x32: "rdmsr", 0x06: "clts", 0x09: "wbinvd", 0xA2: "cpuid"}
    if op2 in simple:
        return PrivilegedOp(simple[op2], i + 2)
    if op2 == 0x01 and i + 2 < len(code) and code[i + 2] == 0xF9:
        return PrivilegedOp("rdtscp", i + 3)
    if op2 in (0x20, 0x21, 0x22, 0x23) and i + 2 < len(code):
        modrm = code[i + 2]
        reg = ((modrm >> 3) & 7) | (8 if rex & 4 else 0)
        rm = (modrm & 7) | (8 if rex & 1 else 0)
        kind = {0x20: "mov_from_cr", 0x21: "mov_from_dr", 0x22: "mov_to_cr", 0x23: "mov_to_dr"}[op2]
        # These instructions always use a register operand; mod is ignored.
        return PrivilegedOp(kind, i + 3, reg, _REGS_BY_NUMBER[rm])
    return PrivilegedOp("other", i + 2)


# ------------------------------------------------------------------------------------------------ context


class Pv64Context(VcpuContext, CpuPort):
    """The PV64 behaviour of a vCPU, over engine primitives; also the vCPU's :class:`CpuPort`.

    Subclasses implement :meth:`read_registers`, :meth:`write_registers`, :meth:`load_page_table`,
    :meth:`swap_gs_bases`, :meth:`guest_time_ns`, :meth:`native_features` and, for the CPU port,
    :meth:`registers_written` and :meth:`request_stop`. :meth:`bind` makes the context the ``ctx.cpu`` of the
    vCPU's hypercall context, so the CPU-bound hypercalls reach it.

    Attributes:
        vcpu: the vCPU.
        nmi_old_mask: ``async_exception_state(NMI).old_mask`` (restored by ``HYPERVISOR_iret``).
        mce_old_mask: the same for MCE.
    """

    def __init__(self, vcpu: Vcpu) -> None:
        self.vcpu = vcpu
        self.nmi_old_mask = 0
        self.mce_old_mask = 0
        d = vcpu.domain
        self._cr2_offset = d.abi.vcpu_info.offset_of("arch.cr2")
        self._bound: HypercallContext | None = None

    def bind(self, hctx: HypercallContext) -> None:
        """Serve the CPU-bound hypercalls of ``hctx`` (the vCPU's hypercall context): ``hctx.cpu = self``."""
        hctx.cpu = self
        self._bound = hctx

    def unbind(self) -> None:
        """Stop serving them (the context is being freed): ``ctx.cpu`` becomes None again."""
        hctx = self._bound
        if hctx is not None and hctx.cpu is self:
            hctx.cpu = None
        self._bound = None

    # ---------------------------------------------------------------- primitives

    @abstractmethod
    def load_page_table(self, cr3: int) -> None:
        """Make ``cr3`` (``l4_mfn << 12``) the page table the guest runs on (and flush cached translations)."""

    @abstractmethod
    def swap_gs_bases(self) -> None:
        """``swapgs``: exchange the active GS base with the shadow one."""

    @abstractmethod
    def guest_time_ns(self) -> int:
        """System time as the running guest sees it now (the TSC the guest reads is derived from it)."""

    @abstractmethod
    def native_features(self) -> tuple[int, int, int, int]:
        """``(leaf1 ecx, leaf1 edx, ext1 ecx, ext1 edx)`` of the CPU features the engine can execute."""

    @abstractmethod
    def step_instruction(self) -> bool:
        """Execute the one instruction at RIP with the current page tables (cached translations flushed first).

        Returns:
            True if it retired without an exception; False if it raised one, and then the vCPU's registers are
            as before (memory it wrote before faulting is not restored).
        """

    @abstractmethod
    def undo_step(self) -> None:
        """Put the registers back as they were before the last successful :meth:`step_instruction`."""

    # ---------------------------------------------------------------- helpers

    def crash(self, message: str) -> None:
        """Crash the vCPU's domain with ``message`` (``domain_crash``)."""
        self.vcpu.domain.crash(message)

    def _vm_assist(self, vmasst_type: int) -> bool:
        return bool(self.vcpu.domain.vm_assist >> vmasst_type & 1)

    def copy_from_guest(self, gva: int, nbytes: int) -> bytes:
        """Read guest memory through the page table in use (raises ``GuestFault``)."""
        v = self.vcpu
        d = v.domain
        return copy_from_guest(d.system.machine, v.cr3, gva, nbytes, domid=d.domid)

    def fetch_instruction(self, rip: int, nbytes: int = 15) -> bytes:
        """Up to ``nbytes`` instruction bytes at ``rip`` (fewer if the mapping ends; b"" if none)."""
        got = b""
        while len(got) < nbytes:
            try:
                chunk = self.copy_from_guest((rip + len(got)) & _U64, min(nbytes - len(got), 4096))
            except GuestFault:
                # Read what is left of the mapped page, byte by byte up to the fault.
                while len(got) < nbytes:
                    try:
                        got += self.copy_from_guest((rip + len(got)) & _U64, 1)
                    except GuestFault:
                        return got
                return got
            got += chunk
        return got

    def guest_tsc(self) -> int:
        """The TSC value a guest ``rdtsc`` returns now."""
        hv = self.vcpu.domain.system
        return hv.clock.tsc_at(self.guest_time_ns()) & _U64

    # ---------------------------------------------------------------- mode switch

    def toggle_guest_mode(self) -> None:
        """``toggle_guest_mode``: swap GS bases, flip kernel/user mode, load that mode's page table."""
        v = self.vcpu
        self.swap_gs_bases()
        v.toggle_guest_mode(not v.arch.kernel_mode)
        self.load_page_table(v.cr3)

    # ---------------------------------------------------------------- bounce frames

    def create_bounce_frame(self, tb: TrapBounce, interrupted: Mapping[str, int] | None = None) -> bool:
        """Xen's ``create_bounce_frame`` (spec 3.3): push the frame and enter ``tb.eip`` in kernel mode.

        Args:
            tb: the bounce.
            interrupted: register values of the interrupted context that differ from the live registers
                (e.g. RIP past a ``syscall``; RCX/R11 as ``syscall`` left them).

        Returns:
            True if the guest enters the handler; False if the domain was crashed.
        """
        v = self.vcpu
        arch = v.arch
        regs = self.read_registers(_FRAME_REGS)
        if interrupted:
            regs.update(interrupted)
        rip = regs["rip"]
        cs = regs["cs"]
        if arch.kernel_mode:
            sp = regs["rsp"]
            cs &= ~3  # indicate kernel context to the guest
        else:
            self.toggle_guest_mode()
            sp = arch.kernel_sp
        sp &= ~0xF & _U64
        if HYPERVISOR_VIRT_START <= sp < _FRAME_HOLE_END:
            self.crash(
                f"vCPU {v.vcpu_id}: bounce frame for {self._bounce_name(tb)} at RIP {rip:#x} would be written "
                f"at {sp:#x}, inside the hypervisor area"
            )
            return False
        vi = v.vcpu_info_mv
        saved_mask = vi[1]
        if tb.flags & TBF_INTERRUPT:
            vi[1] = 1
        rflags = regs["rflags"]
        pushed_flags = rflags & ~(X86_EFLAGS_IF | X86_EFLAGS_IOPL)
        if not saved_mask:
            pushed_flags |= X86_EFLAGS_IF
        if self._vm_assist(VMASST_TYPE_architectural_iopl):
            pushed_flags |= arch.iopl
        words = [regs["rcx"], regs["r11"]]
        if tb.flags & TBF_EXCEPTION_ERRCODE:
            words.append(tb.error_code & 0xFFFF_FFFF)
        words += [rip, (cs & 0xFFFF) | (saved_mask << 32), pushed_flags, regs["rsp"], regs["ss"]]
        new_sp = (sp - 8 * len(words)) & _U64
        d = v.domain
        if copy_to_guest(d.system.machine, v.cr3, new_sp, struct.pack(f"<{len(words)}Q", *words), domid=d.domid):
            self.crash(
                f"vCPU {v.vcpu_id}: fault writing the bounce frame for {self._bounce_name(tb)} at {new_sp:#x} "
                f"(RIP {rip:#x})"
            )
            return False
        if tb.eip == 0:
            self.crash(self._null_bounce_message(tb, rip))
            return False
        new_flags = rflags & ~(X86_EFLAGS_AC | X86_EFLAGS_VM | X86_EFLAGS_RF | X86_EFLAGS_NT | X86_EFLAGS_TF)
        new_flags = (new_flags & ~X86_EFLAGS_IOPL) | X86_EFLAGS_IF
        self.write_registers(
            {
                "rip": tb.eip,
                "rsp": new_sp,
                "rflags": new_flags,
                # Xen returns through sysret: rcx = RIP, r11 = RFLAGS.
                "rcx": tb.eip,
                "r11": new_flags,
            }
        )
        return True

    @staticmethod
    def _bounce_name(tb: TrapBounce) -> str:
        if tb.vector == -1:
            return "the event upcall"
        if tb.vector == -2:
            return "the syscall callback"
        return exception_name(tb.vector)

    def _null_bounce_message(self, tb: TrapBounce, rip: int) -> str:
        vid = self.vcpu.vcpu_id
        if tb.vector == -1:
            return (
                f"vCPU {vid}: event upcall at RIP {rip:#x} with no event callback (event_callback_eip is 0)"
            )
        if tb.vector == -2:
            return f"vCPU {vid}: syscall at RIP {rip:#x} with no syscall callback"
        return (
            f"vCPU {vid}: {exception_name(tb.vector)} at RIP {rip:#x} with no handler "
            f"(trap table entry {tb.vector} is empty)"
        )

    # ---------------------------------------------------------------- exceptions

    def inject_exception(
        self,
        vector: int,
        error_code: int = 0,
        cr2: int | None = None,
        interrupted: Mapping[str, int] | None = None,
    ) -> bool:
        """``pv_inject_hw_exception`` then the bounce: deliver hardware exception ``vector`` to the guest.

        #PF stores ``cr2`` in ``ctrlreg[2]`` and ``vcpu_info.arch.cr2`` and sets the error code's user bit from
        the guest mode (the CPU always reports user mode: the guest kernel runs at CPL3). Vectors 8, 10-14 and
        17 push ``error_code``.

        Returns:
            True if the handler will run; False if the domain crashed (no handler, bad stack).
        """
        v = self.vcpu
        arch = v.arch
        _, ti_flags, _, address = arch.trap_ctxt[vector]
        flags = TBF_EXCEPTION
        if X86_EXC_HAVE_EC >> vector & 1:
            flags |= TBF_EXCEPTION_ERRCODE
        else:
            error_code = 0
        if vector == X86_EXC_PF:
            cr2 = (cr2 or 0) & _U64
            arch.ctrlreg[2] = cr2
            off = self._cr2_offset
            v.vcpu_info_mv[off : off + 8] = cr2.to_bytes(8, "little")
            error_code &= ~PFEC_user_mode
            if not arch.kernel_mode:
                error_code |= PFEC_user_mode
        if ti_flags & TI_IF:
            flags |= TBF_INTERRUPT
        return self.create_bounce_frame(TrapBounce(address, flags, error_code, vector), interrupted)

    def inject_sw_interrupt(self, vector: int, interrupted: Mapping[str, int] | None = None) -> bool:
        """``pv_inject_sw_interrupt``: an ``int N`` the trap table permits (no error code)."""
        _, ti_flags, _, address = self.vcpu.arch.trap_ctxt[vector]
        flags = TBF_EXCEPTION | (TBF_INTERRUPT if ti_flags & TI_IF else 0)
        return self.create_bounce_frame(TrapBounce(address, flags, 0, vector), interrupted)

    def _permit_softint(self, vector: int) -> bool:
        """``permit_softint``: the trap-table DPL of ``vector`` allows an ``int N`` from the current mode."""
        dpl = self.vcpu.arch.trap_ctxt[vector][1] & 3
        return dpl >= (1 if self.vcpu.arch.kernel_mode else 3)

    def handle_exception(self, vector: int, error_code: int, cr2: int, is_int: bool) -> bool:
        """Handle a CPU exception of the running guest as Xen's ``handle_exception`` paths do.

        Args:
            vector: the exception vector (for ``int N``, N).
            error_code: the hardware error code (for vectors that have one).
            cr2: the faulting address (#PF).
            is_int: a software interrupt (``int N``, ``int3``): RIP already points past the instruction.

        Returns:
            True if the guest continues; False if its domain crashed.
        """
        if is_int and vector not in (X86_EXC_BP, X86_EXC_OF):
            # Xen's IDT gates are DPL0 except #BP/#OF: "int N" raises #GP(N << 3 | 2) at the instruction.
            rip = self.read_registers(("rip",))["rip"]
            if self._permit_softint(vector):
                return self.inject_sw_interrupt(vector)
            self.write_registers({"rip": (rip - 2) & _U64})
            return self.inject_exception(X86_EXC_GP, (vector << 3) | 2)
        if vector == X86_EXC_GP and error_code == 0:
            if self.stack_segment_fault():
                return self.inject_exception(X86_EXC_SS, 0)
            return self.emulate_privileged_op()
        if vector == X86_EXC_PF and self.emulate_ptwr_write(error_code, cr2):
            return True
        if vector == X86_EXC_UD:
            return self.emulate_invalid_op()
        return self.inject_exception(vector, error_code, cr2)

    def stack_segment_fault(self) -> bool:
        """Whether a #GP(0) the engine raised at RIP is, on hardware, a #SS(0) (see :mod:`.x86_decode`).

        True if the first address of the instruction that fails its canonical check is an access through the
        stack segment: an operand based on %rsp or %rbp without an %fs/%gs override, or an implicit stack
        access (push, pop, call, ret, enter, leave, iret). A #GP(0) of a privileged instruction, of a
        non-canonical branch target or an operand through another segment, or one whose every address is
        canonical, stays a #GP(0).
        """
        from xenpy.engine.x86_decode import GPR_NAMES, decode, noncanonical_fault  # only for a #GP(0): imported then

        rip = self.read_registers(("rip",))["rip"]
        insn = decode(self.fetch_instruction(rip))
        if insn is None or not insn.steps:
            return False
        regs = self.read_registers((*GPR_NAMES, "fs_base", "gs_base"))
        return noncanonical_fault(insn, regs, rip, self._read_guest_or_none) == X86_EXC_SS

    def _read_guest_or_none(self, gva: int, nbytes: int) -> bytes | None:
        try:
            return self.copy_from_guest(gva, nbytes)
        except GuestFault:
            return None

    def emulate_ptwr_write(self, error_code: int, cr2: int) -> bool:
        """Writable page tables (``ptwr_do_page_fault``): emulate a guest kernel's write to one of its L1 tables.

        Taken when VMASST_TYPE_writable_pagetables is on, the #PF is a kernel-mode write to a present page
        (no reserved-bit or fetch fault), and the kernel L1 entry of ``cr2`` maps, read-only, a frame of the
        domain typed as an L1 table. The instruction then runs once with that mapping writable; the one
        entry it changed is put back and updated as ``mod_l1_entry`` does (the new entry validated, _PAGE_USER
        added, the old entry's reference dropped), and RIP moves on. If the instruction faults, changes more
        than one entry, or the new entry is refused, nothing is kept and the #PF goes to the guest as Xen's
        ``X86EMUL_UNHANDLEABLE`` does.

        Returns:
            True if the write was emulated.
        """
        v = self.vcpu
        d = v.domain
        wanted = PFEC_page_present | PFEC_write_access
        if (
            not v.arch.kernel_mode
            or error_code & (wanted | PFEC_reserved_bit | PFEC_insn_fetch) != wanted
            or not self._vm_assist(VMASST_TYPE_writable_pagetables)
        ):
            return False
        pte_maddr = mm.map_guest_l1e(v, cr2)
        if pte_maddr is None:
            return False
        machine = d.system.machine
        pte = machine.read_u64(pte_maddr)
        if pte & (PAGE_PRESENT | PAGE_RW) != PAGE_PRESENT:
            return False
        table_mfn = mm.pte_mfn(pte)
        if (
            table_mfn >= machine.nr_frames
            or machine.owner_of(table_mfn) != d.domid
            or machine.page_type(table_mfn) != PageType.l1
            or not machine.type_count(table_mfn)
        ):
            return False
        entries = machine.frames[table_mfn].view(np.uint64)  # the L1 table, live
        before = entries.copy()
        machine.write_u64(pte_maddr, pte | PAGE_RW)
        try:
            stepped = self.step_instruction()
        finally:
            machine.write_u64(pte_maddr, pte)
            mm.note_pagetable_change(d)  # the engine drops the writable translation before the guest runs
        changed = np.flatnonzero(entries != before) if stepped else ()
        if not stepped or len(changed) > 1:
            entries[:] = before
            if stepped:
                self.undo_step()
            return False
        if not len(changed):
            return True
        slot = int(changed[0])
        new = int(entries[slot])
        entries[slot] = before[slot]
        if mm.mod_entry(v, table_mfn, slot, new, d):
            self.undo_step()
            return False
        return True

    def emulate_invalid_op(self) -> bool:
        """``pv_emulate_invalid_op``: Xen's forced-emulation cpuid, else #UD into the guest."""
        rip = self.read_registers(("rip",))["rip"]
        code = self.fetch_instruction(rip, len(XEN_EMULATE_PREFIX) + len(_CPUID))
        if code == XEN_EMULATE_PREFIX + _CPUID:
            self.emulate_cpuid(rip + len(code))
            return True
        return self.inject_exception(X86_EXC_UD)

    def emulate_cpuid(self, next_rip: int | None = None) -> None:
        """Execute ``cpuid`` with the guest policy; set RIP to ``next_rip`` if given."""
        regs = self.read_registers(("rax", "rcx"))
        eax, ebx, ecx, edx = cpuid_policy(
            self.vcpu, regs["rax"], regs["rcx"] & 0xFFFF_FFFF, self.native_features()
        )
        out = {"rax": eax, "rbx": ebx, "rcx": ecx, "rdx": edx}
        if next_rip is not None:
            out["rip"] = next_rip & _U64
        self.write_registers(out)

    # ---------------------------------------------------------------- privileged operations

    def _iopl_ok(self) -> bool:
        arch = self.vcpu.arch
        if arch.kernel_mode:
            cpl = 0 if self._vm_assist(VMASST_TYPE_architectural_iopl) else 1
        else:
            cpl = 3
        return (cpl << 12) <= arch.iopl

    def port_io_emulated(self, op: PrivilegedOp) -> bool:
        """Whether ``op`` is port I/O that Xen emulates here, for a domU with no I/O ports (guest_io_read/write):
        ``in``/``out`` (not the string forms) that the virtual IOPL allows. Reads see all ones
        (:data:`PORT_READ_VALUE`, of the operand's size), writes are dropped."""
        return op.kind == "io" and op.gpr != "string" and self._iopl_ok()

    def emulate_privileged_op(self) -> bool:
        """``pv_emulate_privileged_op`` for a #GP(0), or inject the #GP.

        Emulated (then RIP moves past the instruction): ``rdtsc``/``rdtscp`` (any mode; the TSC of :meth:`guest_tsc`,
        TSC_AUX 0), and in guest kernel mode only: ``mov`` from CR0/CR2/CR3/CR4 (CR3 is the kernel page table's
        ``ctrlreg[3]``), ``mov`` to CR0 (only TS may change), CR3 (as MMUEXT_NEW_BASEPTR) and CR4, ``mov`` from/to
        DR0-7, ``clts``, ``wbinvd`` (no effect), ``rdmsr`` of EFER, TSC, TSC_AUX, the FS/GS bases, the microcode
        revision, PLATFORM_INFO and MISC_FEATURES_ENABLES (0: no CPUID faulting), ``wrmsr`` of the FS/GS bases and of 0
        to the microcode revision and MISC_FEATURES_ENABLES; ``cli``/``sti`` when the virtual IOPL allows them (they
        change nothing, as in Xen). Port I/O (``in``/``out``, not the string forms) when the virtual IOPL allows it: a
        domU has no I/O ports, so reads see all ones and writes are dropped; else #GP.
        Anything else: #GP(0) into the guest.
        """
        v = self.vcpu
        arch = v.arch
        rip = self.read_registers(("rip",))["rip"]
        op = decode_privileged(self.fetch_instruction(rip))
        next_rip = (rip + op.length) & _U64
        kind = op.kind
        if kind in ("rdtsc", "rdtscp"):
            tsc = self.guest_tsc()
            out = {"rax": tsc & 0xFFFF_FFFF, "rdx": tsc >> 32, "rip": next_rip}
            if kind == "rdtscp":
                out["rcx"] = 0
            self.write_registers(out)
            return True
        if kind in ("cli", "sti") and self._iopl_ok():
            self.write_registers({"rip": next_rip})
            return True
        if self.port_io_emulated(op):
            if op.gpr == "in":
                rax = self.read_registers(("rax",))["rax"]
                if op.control == 4:
                    rax = PORT_READ_VALUE  # a 32-bit destination zero-extends
                else:
                    rax |= PORT_READ_VALUE & ((1 << (8 * op.control)) - 1)
                self.write_registers({"rax": rax, "rip": next_rip})
            else:
                self.write_registers({"rip": next_rip})
            return True
        if kind == "cpuid":
            self.emulate_cpuid(next_rip)
            return True
        if not arch.kernel_mode or kind in ("other", "io", "cli", "sti"):
            return self.inject_exception(X86_EXC_GP, 0)
        handler = self._priv_handlers().get(kind)
        if handler is None or not handler(op):
            return self.inject_exception(X86_EXC_GP, 0)
        self.write_registers({"rip": next_rip})
        return True

    def _priv_handlers(self) -> dict[str, Callable[[PrivilegedOp], bool]]:
        return {
            "mov_from_cr": self._read_cr,
            "mov_to_cr": self._write_cr,
            "mov_from_dr": self._read_dr,
            "mov_to_dr": self._write_dr,
            "rdmsr": self._rdmsr,
            "wrmsr": self._wrmsr,
            "clts": self._clts,
            "wbinvd": lambda op: True,
        }

    def _read_cr(self, op: PrivilegedOp) -> bool:
        arch = self.vcpu.arch
        if op.control == 0:
            value = GUEST_CR0 | (arch.ctrlreg[0] & X86_CR0_TS)
        elif op.control == 2:
            value = arch.ctrlreg[2]
        elif op.control == 3:
            value = arch.ctrlreg[3]
        elif op.control == 4:
            value = GUEST_CR4_FIXED | (arch.ctrlreg[4] & GUEST_CR4_MASK)
        else:
            return False
        self.write_registers({op.gpr: value & _U64})
        return True

    def _write_cr(self, op: PrivilegedOp) -> bool:
        arch = self.vcpu.arch
        value = self.read_registers((op.gpr,))[op.gpr]
        if op.control == 0:
            current = GUEST_CR0 | (arch.ctrlreg[0] & X86_CR0_TS)
            if (value ^ current) & ~X86_CR0_TS:
                return False
            self.set_fpu_taskswitch(bool(value & X86_CR0_TS))
            return True
        if op.control == 3:
            return self.new_guest_cr3(value & ~PAGE_OFFSET_MASK) == 0
        if op.control == 4:
            arch.ctrlreg[4] = value & GUEST_CR4_MASK
            return True
        return False

    def _read_dr(self, op: PrivilegedOp) -> bool:
        value = get_debugreg(self.vcpu, op.control)
        if value is None:
            return False
        self.write_registers({op.gpr: value & _U64})
        return True

    def _write_dr(self, op: PrivilegedOp) -> bool:
        value = self.read_registers((op.gpr,))[op.gpr]
        return set_debugreg(self.vcpu, op.control, value) == 0

    def _rdmsr(self, op: PrivilegedOp) -> bool:
        arch = self.vcpu.arch
        msr = self.read_registers(("rcx",))["rcx"] & 0xFFFF_FFFF
        if msr == MSR_EFER:
            value = GUEST_EFER
        elif msr == MSR_TSC:
            value = self.guest_tsc()
        elif msr == MSR_TSC_AUX:
            value = 0
        elif msr == MSR_FS_BASE:
            value = self.read_registers(("fs_base",))["fs_base"]
        elif msr == MSR_GS_BASE:
            value = self.read_registers(("gs_base",))["gs_base"]
        elif msr == MSR_SHADOW_GS_BASE:
            value = self.read_registers(("shadow_gs_base",))["shadow_gs_base"]
        elif msr in (MSR_IA32_UCODE_REV, MSR_INTEL_PLATFORM_INFO, MSR_INTEL_MISC_FEATURES_ENABLES):
            # No microcode revision to forward; the virtual CPU has no CPUID faulting, so Xen's policy offers
            # none (platform_info.cpuid_faulting follows the host) and MISC_FEATURES_ENABLES stays 0.
            value = 0
        else:
            return False
        del arch
        self.write_registers({"rax": value & 0xFFFF_FFFF, "rdx": (value >> 32) & 0xFFFF_FFFF})
        return True

    def _wrmsr(self, op: PrivilegedOp) -> bool:
        regs = self.read_registers(("rcx", "rax", "rdx"))
        msr = regs["rcx"] & 0xFFFF_FFFF
        value = ((regs["rdx"] & 0xFFFF_FFFF) << 32) | (regs["rax"] & 0xFFFF_FFFF)
        if msr in (MSR_IA32_UCODE_REV, MSR_INTEL_MISC_FEATURES_ENABLES):
            # UCODE_REV: an (Intel) guest may write 0 before reading it; MISC_FEATURES_ENABLES: every bit is
            # reserved without CPUID faulting. Anything else is #GP.
            return value == 0
        names = {MSR_FS_BASE: "fs_base", MSR_GS_BASE: "gs_base", MSR_SHADOW_GS_BASE: "shadow_gs_base"}
        if msr not in names or not is_canonical(value):
            return False
        self.write_registers({names[msr]: value})
        return True

    def _clts(self, op: PrivilegedOp) -> bool:
        self.set_fpu_taskswitch(False)
        return True

    def load_selector(self, segment: str, selector: int) -> bool:
        """See :meth:`CpuPort.load_selector` (a selector the engine refuses raises ``ValueError`` there)."""
        try:
            self.write_registers({segment: selector})
        except ValueError:
            return False
        return True

    def set_fpu_taskswitch(self, ts: bool) -> None:
        """``do_fpu_taskswitch``: the guest's CR0.TS (kept in ``ctrlreg[0]``)."""
        arch = self.vcpu.arch
        arch.ctrlreg[0] = (arch.ctrlreg[0] & ~X86_CR0_TS) | (X86_CR0_TS if ts else 0)

    def new_guest_cr3(self, cr3: int) -> int:
        """``mov %reg, %cr3``: switch the kernel page table with MMUEXT_NEW_BASEPTR semantics; 0 or ``-errno``.

        :func:`xenpy.core.mm.new_guest_cr3` validates the new L4 and moves the root reference to it; on
        success the vCPU's page table is loaded (:meth:`load_page_table`).
        """
        rc = mm.new_guest_cr3(self.vcpu, cr3 >> PAGE_SHIFT)
        if rc == 0:
            self.load_page_table(self.vcpu.cr3)
        return rc

    # ---------------------------------------------------------------- syscall, iret, events

    def syscall_from_user(self, next_rip: int) -> bool:
        """``switch_to_kernel``: a ``syscall`` in guest user mode bounces to the syscall callback.

        The interrupted context is the one the instruction left: RIP and RCX = ``next_rip``, R11 = RFLAGS.
        Events are masked on entry if the callback was registered with ``CALLBACKF_mask_events``; DF is
        cleared. With no callback, #UD is raised at the ``syscall`` (with the vector's own trap-table entry).
        """
        v = self.vcpu
        arch = v.arch
        regs = self.read_registers(("rflags", "cs"))
        rflags = regs["rflags"]
        eip = arch.syscall_callback_eip
        if (regs["cs"] | 3) == FLAT_RING3_CS32:
            eip = getattr(arch, "syscall32_callback_eip", 0)
        flags = TBF_INTERRUPT if arch.vgc_flags & VGCF_syscall_disables_events else 0
        interrupted = {"rip": next_rip, "rcx": next_rip, "r11": rflags}
        if eip == 0:
            # x86/pv: inject #UD for missing SYSCALL callbacks (at the syscall instruction, DF kept).
            _, ti_flags, _, address = arch.trap_ctxt[X86_EXC_UD]
            flags = TBF_EXCEPTION | (TBF_INTERRUPT if ti_flags & TI_IF else 0)
            interrupted["rip"] = (next_rip - 2) & _U64
            return self.create_bounce_frame(TrapBounce(address, flags, 0, X86_EXC_UD), interrupted)
        if not self.create_bounce_frame(TrapBounce(eip, flags, 0, -2), interrupted):
            return False
        new_flags = self.read_registers(("rflags",))["rflags"] & ~X86_EFLAGS_DF
        self.write_registers({"rflags": new_flags, "r11": new_flags})
        return True

    def do_iret(self) -> int | None:
        """``HYPERVISOR_iret`` (hypercall 23; spec 3.3, 7.3).

        Pops the 72-byte ``iret_context {rax, r11, rcx, flags, rip, cs, rflags, rsp, ss}`` at RSP; returns to
        user mode (``toggle_guest_mode``, user page table) when the saved CS has RPL 3; restores RIP, RSP,
        RFLAGS (IOPL and VM cleared, IF set; the virtual IOPL taken from it with VMASST_architectural_iopl),
        RCX and R11 unless ``flags`` has VGCF_in_syscall (then Xen's sysret leaves RCX = RIP, R11 = RFLAGS),
        ``evtchn_upcall_mask = !(saved rflags.IF)``, and the NMI/MCE mask it saved (spec 4.2).

        Returns:
            The saved RAX (the hypercall's result), or None if the domain was crashed (unreadable frame,
            return to user mode with no user page table).
        """
        v = self.vcpu
        arch = v.arch
        rsp = self.read_registers(("rsp",))["rsp"]
        try:
            frame = self.copy_from_guest(rsp, _IRET_CONTEXT.size)
        except GuestFault:
            self.crash(
                f"vCPU {v.vcpu_id}: fault while reading the iret context from the guest stack at {rsp:#x}"
            )
            return None
        rax, r11, rcx, flags, rip, cs, rflags, new_rsp, _ss = _IRET_CONTEXT.unpack(frame)
        if cs & 3 == 3:
            if arch.ctrlreg[1] == 0:
                self.crash(f"vCPU {v.vcpu_id}: iret to user mode with no user page tables (RIP {rip:#x})")
                return None
            self.toggle_guest_mode()
        if self._vm_assist(VMASST_TYPE_architectural_iopl):
            arch.iopl = rflags & X86_EFLAGS_IOPL
        new_flags = (rflags & ~(X86_EFLAGS_IOPL | X86_EFLAGS_VM)) | X86_EFLAGS_IF
        out = {"rax": rax, "rip": rip, "rsp": new_rsp, "rflags": new_flags}
        if flags & VGCF_in_syscall:
            out["rcx"] = rip
            out["r11"] = new_flags
        else:
            out["rcx"] = rcx
            out["r11"] = r11
        self.write_registers(out)
        v.vcpu_info_mv[1] = 0 if rflags & X86_EFLAGS_IF else 1
        self.async_exception_cleanup()
        return rax

    def async_exception_cleanup(self) -> None:
        """Restore the NMI/MCE mask saved when the last asynchronous exception was delivered (spec 4.2)."""
        arch = self.vcpu.arch
        mask = arch.async_exception_mask
        if not mask:
            return
        if mask & ASYNC_EXC_NMI and (mask == ASYNC_EXC_NMI or mask ^ self.nmi_old_mask == ASYNC_EXC_NMI):
            arch.async_exception_mask = self.nmi_old_mask
        elif mask & ASYNC_EXC_MCE:
            arch.async_exception_mask = self.mce_old_mask

    def return_to_guest(self) -> bool:
        """``test_all_events``: deliver a pending NMI (spec 4.2), then a pending event upcall (spec 3.3).

        Returns:
            False if delivering crashed the domain, True otherwise.
        """
        v = self.vcpu
        arch = v.arch
        while True:
            if arch.nmi_pending and not arch.async_exception_mask & ASYNC_EXC_NMI:
                arch.nmi_pending = False
                _, ti_flags, _, address = arch.trap_ctxt[TRAP_nmi]
                if address:
                    self.nmi_old_mask = arch.async_exception_mask
                    arch.async_exception_mask |= ASYNC_EXC_NMI
                    flags = TBF_EXCEPTION | (TBF_INTERRUPT if ti_flags & TI_IF else 0)
                    if not self.create_bounce_frame(TrapBounce(address, flags, 0, TRAP_nmi)):
                        return False
                continue
            vi = v.vcpu_info_mv
            if vi[0] and not vi[1]:
                if not self.create_bounce_frame(TrapBounce(arch.event_callback_eip, TBF_INTERRUPT, 0, -1)):
                    return False
                continue
            return True

    def events_pending(self) -> bool:
        """True if :meth:`return_to_guest` would deliver something."""
        v = self.vcpu
        arch = v.arch
        if arch.nmi_pending and not arch.async_exception_mask & ASYNC_EXC_NMI:
            return True
        vi = v.vcpu_info_mv
        return bool(vi[0]) and not vi[1]


__all__ = [
    "FLAT_KERNEL_CS",
    "FLAT_KERNEL_SS",
    "PrivilegedOp",
    "Pv64Context",
    "cpuid_policy",
    "decode_privileged",
    "exception_name",
    "instruction_length_of_syscall",
]
