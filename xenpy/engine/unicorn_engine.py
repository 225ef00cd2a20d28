"""The Unicorn engine: PV64 guests on the Unicorn x86-64 emulator, at CPL3 with Xen's flat selectors.

How the guest is set up (measured facts in the project's engine notes):

* One ``Uc`` per vCPU maps the hypervisor's whole machine memory (``MachineMemory.buffer_address``) at
  physical address 0 with ``mem_map_ptr``; with paging on, Unicorn walks the guest's own page tables there.
* Xen's slots of the guest L4 (256..271, the hypervisor hole) hold the hypervisor area, as Xen fills them when
  it validates an L4: slot 260 (Xen's per-domain area, ``PERDOMAIN_VIRT_START``) maps each vCPU's GDT (14 pages
  of guest GDT frames from ``set_gdt``, then Xen's reserved page with the flat descriptors 0xe023/0xe02b/0xe033),
  and the trampoline that enters CPL3. The area's tables and pages live in a per-domain buffer mapped after
  machine memory (:class:`HypervisorArea`); they are mapped supervisor-only, so the guest cannot touch them.
  The slots are rewritten whenever an L4 becomes a cr3.
* A vCPU enters CPL3 once, through a real ``iretq`` on the trampoline; it then stays at CPL3 (the guest kernel
  and its user space both run there, as on Xen). ``rdtsc``/``rdtscp`` are hooked and return the TSC of the
  guest's time (deterministic); ``cpuid`` is hooked and answers the guest policy.
* Hooks: ``syscall`` (a hypercall from guest kernel mode, a bounce to the syscall callback from user mode),
  ``rdtsc``/``rdtscp``, exceptions (``UC_HOOK_INTR``: the vector; CR2, the error code and whether it was
  ``int N`` are read inside the hook), invalid instructions (#UD, Xen's forced-emulation prefix),
  ``in``/``out`` (port I/O is a #GP for a PV domU; Unicorn does not fault them at CPL3) and ``cpuid``.
* After an exception has been hooked, and also after a stop requested inside a hook, QEMU keeps an exception
  "in flight" (``env->old_exception``) and the next fault becomes a double fault. The engine clears it after
  every ``emu_start``; the offsets of ``old_exception``, ``error_code`` and ``exception_is_int`` inside
  Unicorn's saved context are calibrated once per process on a scratch ``Uc`` (:func:`calibration`), never
  hard-coded.
* A block translated while an ``emu_start`` "until" address was set keeps an exit at that address, so the
  engine never uses "until" (it passes a non-canonical address) and enters CPL3 through the trampoline as the
  first instruction of the first run.
* Host writes to guest memory bypass Unicorn's detection of modified code: code the hypervisor writes must be
  in place before it first runs (the loader's case).

Exits: port I/O that Xen emulates for a domU under the guest's virtual IOPL (all ones read, writes dropped)
completes inside the ``in``/``out`` hook, without an exit; hypercalls are serviced inside the ``syscall`` hook
(registers read and written in one batch call each by the native shim, :mod:`xenpy.engine._native`); everything
else stops emulation, is handled, and emulation resumes. Writing RIP inside the syscall hook is honoured after
Unicorn adds the instruction length, so the engine writes ``target - length`` there (see
:meth:`UnicornVcpu.write_registers`).

Time and determinism. With the deterministic (virtual) clock the count of instructions is exact at every exit,
so a run's length, every ``rdtsc`` value and every exit point depend only on the guest code: the same image gives
the same instruction counts, times and traces on every run. Two ways count (``counting``), with the same results:

* ``"block"`` (the default): a C block hook adds each translation block's instruction count (QEMU's, from
  ``uc_ctl_request_cache``, once per block; cached by address and size, the user half forgotten at every new
  cr3) and stops before a block that would pass the budget. That block then runs with a code hook on its
  instructions up to the budget's last (:meth:`UnicornVcpu._run_precise`), as does every block with port I/O
  (whose hooks cannot stop a block midway) or whose instruction lengths, decoded by the helper library as
  QEMU's TCG decodes them, do not add up to QEMU's count. Such a block that lands whole a second time is kept
  translated with a code hook on its range instead (up to eight ranges, the oldest unhooked first), so a loop
  around port I/O does not translate its block twice per iteration. At an exit inside a block (an exception,
  ``rdtsc``) the count is taken back to the exiting instruction by decoding the block. A vCPU whose deadlines
  land inside blocks so often that landing costs more than it saves counts per instruction for a while. A
  block QEMU translated otherwise than it would now (one instruction, after a write to the page it runs from)
  is counted by decoding it.
* A single step (a write to a read-only page table, run again with the mapping writable) is a landing of one
  instruction on the counter; ``uc_emu_start``'s own count is not used, since a run without it after one with
  it drops every translated block.
* ``"instruction"``: a C code hook counts every instruction and stops exactly at the budget.

Known limit of block counting: code rewritten in place (at the same address, to a block of the same size with
another number of instructions) keeps the cached count until its address space changes. Debian's Linux 6.1 does
this when it patches its alternatives at boot: from there on its count differs from the per-instruction
counter's by a few instructions (31-107 k of 2.81e9 to its power-off, by what its init runs). One instruction is
``1e9 / instructions_per_second`` ns of virtual time (1 ns by default). With the host clock the counter is not
installed (guest code runs several times faster), slices are bounded by Unicorn's timeout, and time is the
host's. Known differences of the host-clock mode: a port-I/O #GP is raised at the end of the translation block
that contains the I/O instruction.

With one pCPU the virtual clock follows the running vCPU (the hypervisor sees, at each hypercall, the time the
guest reached); with several pCPUs the clock stays at the scheduler step's start during a step (the scheduler's
rule), so the steps should be short (:mod:`xenpy.engine.runner` bounds them to 10 us).

Modules: this one holds the vCPU context (:class:`UnicornVcpu`) and the engine (:class:`UnicornEngine`);
:mod:`xenpy.engine.unicorn_area` the hypervisor area and the CPU state a vCPU enters with;
:mod:`xenpy.engine.unicorn_lib` the direct calls into Unicorn's library, the hook plumbing and the calibration.

Slot 256 holds Xen's read-only M2P (:class:`ReadOnlyM2P`): user-readable, never writable, over the machine's own
M2P pages, so every guest reads ``m2p[mfn]`` at ``MACH2PHYS_VIRT_START`` as on Xen.

A guest kernel's write to one of its read-only L1 tables (writable page tables) runs once more as a single step
with the mapping made writable (:meth:`UnicornVcpu.step_instruction`); :mod:`xenpy.engine.pv64` validates what it
wrote.

Known limits: 32-bit (compat) user code segments, LDTs and cross-vCPU self-modifying code (each ``Uc`` has its
own translation cache) are not supported.
"""

from __future__ import annotations

import ctypes
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from unicorn import UC_ARCH_X86, UC_MODE_64, UC_PROT_ALL, UC_PROT_READ, Uc, UcError
from unicorn import x86_const as ux
from unicorn.unicorn_const import UC_HOOK_BLOCK, UC_HOOK_CODE, UC_HOOK_INSN, UC_HOOK_INSN_INVALID, UC_HOOK_INTR

from xenpy.abi.arch_x86 import FLAT_KERNEL_CS, FLAT_KERNEL_SS, FLAT_RING3_CS32, FLAT_RING3_CS64, FLAT_RING3_SS64
from xenpy.abi.generated.hypercalls import PV64_ARG_REGISTERS
from xenpy.abi.sched import SHUTDOWN_crash
from xenpy.abi.x86 import (
    MSR_EFER,
    MSR_SHADOW_GS_BASE,
    PERDOMAIN_L4_SLOT,
    X86_CR0_TS,
    X86_EFLAGS_IF,
    X86_EFLAGS_IOPL,
    XEN_L4_SLOTS,
    PFEC_insn_fetch,
)
from xenpy.core.clock import NSEC_PER_SEC, VirtualClock
from xenpy.core.memory import PAGE_SHIFT
from xenpy.core.pagetable import PTE_PFN_MASK
from xenpy.engine import _native
from xenpy.engine.base import GPR_NAMES, REGISTER_NAMES, Engine, ExitReason, RunResult
from xenpy.engine.effects import EffectTables
from xenpy.engine.pv64 import (
    PORT_READ_VALUE,
    PrivilegedOp,
    Pv64Context,
    decode_privileged,
    instruction_length_of_syscall,
)
from xenpy.engine.unicorn_area import (
    CPU_CR0,
    CPU_CR4,
    CPU_EFER,
    GDT_GUEST_PAGES,
    GDT_LIMIT,
    MAX_AREA_BYTES,
    PAGE_STACK,
    PAGE_TRAMPOLINE,
    RO_MPT_L4_SLOT,
    HypervisorArea,
    ReadOnlyM2P,
)
from xenpy.engine.unicorn_lib import (
    CODE_CB,
    CPUID_CB,
    IN_CB,
    INTR_CB,
    INVALID_CB,
    NEVER,
    OUT_CB,
    PY_CB,
    REG_IDS,
    SYSCALL_CB,
    UC_CTL_ADDR,
    UC_CTL_TB_FLUSH,
    UC_CTL_TLB_FLUSH,
    UC_EMU_STOP_ADDR,
    UC_READ_BATCH_ADDR,
    UC_WRITE_BATCH_ADDR,
    VOIDP,
    EngineUnavailable,
    RegBatch,
    UcMsr,
    calibration,
    hook_add,
    hook_del,
    lib,
    measure_native_features,
    remove_cached_blocks,
)
from xenpy.hypercall.registry import NR_HYPERCALLS

if TYPE_CHECKING:
    from xenpy.core.domain import Domain, Vcpu
    from xenpy.core.scheduler import Pcpu
    from xenpy.hypervisor import Hypervisor

_U64 = (1 << 64) - 1
#: The FXSAVE image (64-bit form) up to MXCSR_MASK: FCW, FSW, abridged FTW, reserved, FOP, FIP, FDP, MXCSR,
#: MXCSR_MASK; ST0-ST7 follow at 32 (16 bytes each, 10 used), XMM0-XMM15 at 160.
_FXSAVE_HEAD = struct.Struct("<HHBxHQQII")
_FXSAVE_ST, _FXSAVE_XMM, _FXSAVE_SIZE = 32, 160, 512
#: What Xen loads into a new vCPU's FPU (``FCW_DEFAULT``, ``MXCSR_DEFAULT``), and the MXCSR bits this CPU has.
_FCW_DEFAULT, _MXCSR_DEFAULT, _MXCSR_MASK = 0x37F, 0x1F80, 0xFFFF
_FP_REGS = tuple(getattr(ux, f"UC_X86_REG_FP{i}") for i in range(8))
_XMM_REGS = tuple(getattr(ux, f"UC_X86_REG_XMM{i}") for i in range(16))
_NR_TABLE = NR_HYPERCALLS
_UNPACK_IN = struct.Struct(f"<{len(_native.SYSCALL_IN)}Q").unpack_from
_SEGMENT_NAMES = frozenset(("cs", "ss", "ds", "es", "fs", "gs"))

# ------------------------------------------------------------------------------------------- the vCPU

# Exit kinds recorded by the hooks.
_EXIT_NONE = 0
_EXIT_EXCEPTION = 1
_EXIT_INVALID = 2
_EXIT_IO = 3
_EXIT_STOP = 4
_EXIT_ERROR = 5

_IO_SAVED = ("rip", "rax", "rcx", "rsi", "rdi")


#: The ways the deterministic clock counts instructions (:class:`UnicornEngine`'s ``counting``).
COUNTING_MODES = ("block", "instruction")


def _align_2m(address: int) -> int:
    return (address + (2 << 20) - 1) & ~((2 << 20) - 1)


class UnicornVcpu(Pv64Context):
    """One vCPU on its own ``Uc``.

    Attributes:
        engine: the engine.
        uc: the Unicorn instance.
        instructions_total: guest instructions retired over the context's life (deterministic mode).
        last_result: the last :class:`RunResult`.
    """

    def __init__(self, engine: UnicornEngine, vcpu: Vcpu) -> None:
        super().__init__(vcpu)
        self.engine = engine
        d = vcpu.domain
        self.domain = d
        self.hv = engine.hv
        self.area = engine.area(d)
        self.cal = engine.cal
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        self._uch = VOIDP(self.uc._uch.value)
        machine = self.hv.machine
        self.uc.mem_map_ptr(0, machine.nr_bytes, UC_PROT_ALL, machine.buffer_address)
        self.uc.mem_map_ptr(self.area.phys_base, self.area.nr_bytes, UC_PROT_ALL, self.area.buffer_address)
        m2p = engine.m2p
        self.uc.mem_map_ptr(m2p.tables_phys, m2p.nr_bytes, UC_PROT_ALL, m2p.buffer_address)
        self.uc.mem_map_ptr(m2p.data_phys, machine.m2p_nr_bytes, UC_PROT_READ, machine.m2p_buffer_address)
        self.instructions_total = 0
        self.last_result: RunResult | None = None
        self._batches: dict[tuple[str, ...], RegBatch] = {}
        self._msr = UcMsr()
        self._reg1 = ctypes.c_uint64()
        self._ctx = VOIDP()
        if lib.uc_context_alloc(self._uch, ctypes.byref(self._ctx)):
            raise EngineUnavailable("uc_context_alloc failed")
        self._step_ctx = VOIDP()  # the registers before step_instruction, allocated on first use
        self._entered = False
        self._loaded_regs: dict[str, int] | None = None
        self._loaded_fpu: bytes | None = None
        self._loaded_cr3 = -1
        self._loaded_gdt: tuple[tuple[int, ...], int] | None = None
        self._loaded_ts = False
        self._mm_gen = -1
        self._exit = _EXIT_NONE
        self._exit_data: tuple[Any, ...] = ()
        self._hook_error: BaseException | None = None
        # Inside the syscall hook: the length of the syscall instruction (RIP reads and writes are adjusted
        # by it, see write_registers); 0 outside the hook.
        self._hook_addend = 0
        self._slen: dict[int, int] = {}
        self._io_ops: dict[int, PrivilegedOp] = {}  # decoded port I/O instructions by RIP (_io_in_place)
        self._time_base = 0
        self._time_floor = 0
        self._time_cap = 0
        clock = self.hv.clock
        # With one pCPU the clock can follow the running vCPU exactly; with several, vCPUs of later pCPUs run
        # the same scheduler step afterwards, so the clock stays at the step's start (the scheduler's rule).
        single = len(self.hv.scheduler.pcpus) == 1
        self._deterministic = engine.deterministic
        follow = isinstance(clock, VirtualClock) and single and self._deterministic
        self._virtual_clock: VirtualClock | None = clock if follow else None
        self._ns_per_insn_1 = engine.instructions_per_second == NSEC_PER_SEC
        # Hot-path shortcuts (these objects never change for a vCPU).
        self._arch = vcpu.arch
        self._sched = engine.scheduler
        self._dispatch = engine.dispatch
        self._clock_free = engine.effects.clock_free
        self._resync = engine.effects.resync
        self._hctx = engine.hv.dispatcher.context(vcpu)
        self.bind(self._hctx)
        self._pcpu: Pcpu | None = None
        self._entry_cs = FLAT_RING3_CS64
        self._count_bias = 0
        # Block counting, inside the hook of an instruction that then completes: the count at it (else None).
        self._count_at_insn: int | None = None
        self._setup_cpu()
        self._install_hooks()

    # ---------------------------------------------------------------- setup

    def _setup_cpu(self) -> None:
        uc = self.uc
        uc.reg_write(ux.UC_X86_REG_CR4, CPU_CR4)
        uc.msr_write(MSR_EFER, CPU_EFER)
        uc.reg_write(ux.UC_X86_REG_CR0, CPU_CR0)
        uc.reg_write(ux.UC_X86_REG_GDTR, (0, HypervisorArea.vcpu_va(self.vcpu.vcpu_id), GDT_LIMIT, 0))
        # The FPU as Xen gives it to a new vCPU: every register empty, the default control words.
        uc.reg_write(ux.UC_X86_REG_FPCW, _FCW_DEFAULT)
        uc.reg_write(ux.UC_X86_REG_FPTAG, 0xFFFF)
        uc.reg_write(ux.UC_X86_REG_MXCSR, _MXCSR_DEFAULT)

    def fpu_state(self) -> bytes:
        """See :meth:`VcpuContext.fpu_state`."""
        uc = self.uc
        fsw = uc.reg_read(ux.UC_X86_REG_FPSW)
        full_tag = uc.reg_read(ux.UC_X86_REG_FPTAG)
        abridged = sum(1 << i for i in range(8) if (full_tag >> 2 * i) & 3 != 3)
        image = bytearray(_FXSAVE_SIZE)
        _FXSAVE_HEAD.pack_into(image, 0, uc.reg_read(ux.UC_X86_REG_FPCW), fsw, abridged,
                               uc.reg_read(ux.UC_X86_REG_FOP), uc.reg_read(ux.UC_X86_REG_FIP),
                               uc.reg_read(ux.UC_X86_REG_FDP), uc.reg_read(ux.UC_X86_REG_MXCSR), _MXCSR_MASK)
        top = (fsw >> 11) & 7
        for i in range(8):  # ST(i) is physical register (TOP + i) mod 8
            mantissa, exponent = uc.reg_read(_FP_REGS[(top + i) & 7])
            struct.pack_into("<QH", image, _FXSAVE_ST + 16 * i, mantissa, exponent)
        for i, reg in enumerate(_XMM_REGS):
            image[_FXSAVE_XMM + 16 * i : _FXSAVE_XMM + 16 * (i + 1)] = uc.reg_read(reg).to_bytes(16, "little")
        return bytes(image)

    def load_fpu_state(self, image: bytes) -> None:
        """See :meth:`VcpuContext.load_fpu_state`."""
        if len(image) != _FXSAVE_SIZE:
            raise ValueError(f"an FXSAVE image has {_FXSAVE_SIZE} bytes, not {len(image)}")
        uc = self.uc
        fcw, fsw, abridged, fop, fip, fdp, mxcsr, _mask = _FXSAVE_HEAD.unpack_from(image, 0)
        top = (fsw >> 11) & 7
        uc.reg_write(ux.UC_X86_REG_FPCW, fcw)
        uc.reg_write(ux.UC_X86_REG_FPSW, fsw)
        for i in range(8):
            mantissa, exponent = struct.unpack_from("<QH", image, _FXSAVE_ST + 16 * i)
            uc.reg_write(_FP_REGS[(top + i) & 7], (mantissa, exponent))
        uc.reg_write(ux.UC_X86_REG_FPTAG, sum(3 << 2 * i for i in range(8) if not abridged >> i & 1))
        uc.reg_write(ux.UC_X86_REG_FOP, fop)
        uc.reg_write(ux.UC_X86_REG_FIP, fip)
        uc.reg_write(ux.UC_X86_REG_FDP, fdp)
        uc.reg_write(ux.UC_X86_REG_MXCSR, mxcsr & _MXCSR_MASK)
        for i, reg in enumerate(_XMM_REGS):
            uc.reg_write(reg, int.from_bytes(image[_FXSAVE_XMM + 16 * i : _FXSAVE_XMM + 16 * (i + 1)], "little"))

    def _install_hooks(self) -> None:
        uch = self._uch
        native = self.engine.native
        self._counter = _native.Counter(0, 0, 0, UC_EMU_STOP_ADDR)
        self._count_mv = memoryview(self._counter).cast("B").cast("Q")
        self._counter_address = ctypes.addressof(self._counter)
        self._callbacks: list[Any] = []
        # The engine counts by block; this vCPU does unless it counts per instruction for a while (_code_hook).
        self._block_engine = self._by_block = self._deterministic and self.engine.counting == "block"
        self._code_hook: int | None = None
        self._runs = self._precise_ns = self._runs_ns = 0
        self._hooked: list[tuple[int, int, int]] = []  # (pc, size, hook handle) of the hooked ranges, oldest first
        self._landed: dict[tuple[int, int], int] = {}  # whole-block landings per block, to choose what to hook
        if self._by_block:
            assert native is not None
            counter = self._counter
            counter.block_pc = _native.BLOCK_NONE
            counter.mem_base = self.hv.machine.buffer_address
            counter.mem_size = self.hv.machine.nr_bytes
            counter.ctl = UC_CTL_ADDR
            hook_add(uch, UC_HOOK_BLOCK, native.block_hook, ctypes.addressof(counter))
        elif self._deterministic:
            if native is not None:
                hook_add(uch, UC_HOOK_CODE, native.count_hook, ctypes.addressof(self._counter))
            else:
                cb = CODE_CB(self._py_count)
                self._callbacks.append(cb)
                hook_add(uch, UC_HOOK_CODE, ctypes.cast(cb, VOIDP).value or 0, 0)
        elif native is not None:
            # Host clock: Unicorn's own timeout thread ends a slice, but its uc_emu_stop can be lost (a guest
            # spinning in one translation block then never returns). The counter, run per block with the
            # instruction budget as its limit, ends the slice from inside the emulation as a backstop; blocks
            # are slower to emulate than 1 ns each, so the timeout normally comes first.
            hook_add(uch, UC_HOOK_BLOCK, native.count_hook, ctypes.addressof(self._counter))
        frame = _native.SyscallFrame()
        for i, name in enumerate(_native.SYSCALL_IN):
            frame.ids_in[i] = REG_IDS[name]
            frame.ptrs_in[i] = ctypes.addressof(frame) + _native.SyscallFrame.regs_in.offset + 8 * i
        for i, name in enumerate(_native.SYSCALL_OUT):
            frame.ids_out[i] = REG_IDS[name]
            frame.ptrs_out[i] = ctypes.addressof(frame) + _native.SyscallFrame.regs_out.offset + 8 * i
        frame.read_batch = UC_READ_BATCH_ADDR
        frame.write_batch = UC_WRITE_BATCH_ADDR
        self._frame = frame
        self._sf = memoryview(frame).cast("B")[: 8 * _native.SF_WORDS].cast("Q")
        if self._virtual_clock is not None and self._ns_per_insn_1:
            frame.counter = ctypes.addressof(self._counter)
        py_cb = PY_CB(self._on_syscall)
        self._callbacks.append(py_cb)
        frame.callback = ctypes.cast(py_cb, VOIDP).value
        if native is not None:
            hook_add(uch, UC_HOOK_INSN, native.syscall_hook, ctypes.addressof(frame), ux.UC_X86_INS_SYSCALL)
        else:
            cb = SYSCALL_CB(self._py_syscall_shim)
            self._callbacks.append(cb)
            hook_add(uch, UC_HOOK_INSN, ctypes.cast(cb, VOIDP).value or 0, 0, ux.UC_X86_INS_SYSCALL)
        for htype, cbtype, fn, extra in (
            (UC_HOOK_INTR, INTR_CB, self._on_intr, ()),
            (UC_HOOK_INSN_INVALID, INVALID_CB, self._on_invalid, ()),
            (UC_HOOK_INSN, IN_CB, self._on_in, (ux.UC_X86_INS_IN,)),
            (UC_HOOK_INSN, OUT_CB, self._on_out, (ux.UC_X86_INS_OUT,)),
            (UC_HOOK_INSN, CPUID_CB, self._on_cpuid, (ux.UC_X86_INS_CPUID,)),
            (UC_HOOK_INSN, CPUID_CB, self._on_rdtsc, (ux.UC_X86_INS_RDTSC,)),
            (UC_HOOK_INSN, CPUID_CB, self._on_rdtscp, (ux.UC_X86_INS_RDTSCP,)),
        ):
            cb = cbtype(fn)
            self._callbacks.append(cb)
            hook_add(uch, htype, ctypes.cast(cb, VOIDP).value or 0, 0, *extra)

    # ---------------------------------------------------------------- registers

    def _batch(self, names: Sequence[str]) -> RegBatch:
        key = tuple(names)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = RegBatch(key)
        return batch

    def _read_msr(self, msr: int) -> int:
        self._msr.rid = msr
        lib.uc_reg_read(self._uch, ux.UC_X86_REG_MSR, ctypes.byref(self._msr))
        return int(self._msr.value)

    def _write_msr(self, msr: int, value: int) -> None:
        self._msr.rid = msr
        self._msr.value = value & _U64
        lib.uc_reg_write(self._uch, ux.UC_X86_REG_MSR, ctypes.byref(self._msr))

    def read_registers(self, names: Sequence[str] = REGISTER_NAMES) -> dict[str, int]:
        """See :meth:`VcpuContext.read_registers`. Inside the syscall hook RIP reads as after the ``syscall``."""
        plain = [n for n in names if n != "shadow_gs_base"]
        out: dict[str, int] = {}
        if plain:
            batch = self._batch(plain)
            lib.uc_reg_read_batch(self._uch, batch.ids, batch.ptrs, batch.n)
            out = dict(zip(batch.names, batch.vals, strict=True))
            if "rip" in out and self._hook_addend:
                out["rip"] = (out["rip"] + self._hook_addend) & _U64
            for seg in _SEGMENT_NAMES.intersection(out):
                out[seg] &= 0xFFFF
        if len(plain) != len(names):
            out["shadow_gs_base"] = self._read_msr(MSR_SHADOW_GS_BASE)
        return out

    def write_registers(self, values: Mapping[str, int]) -> None:
        """See :meth:`VcpuContext.write_registers`.

        Inside the syscall hook a RIP write is stored as ``rip - length`` because Unicorn adds the ``syscall``
        length after the hook returns.
        """
        items = {k: v for k, v in values.items() if k != "shadow_gs_base"}
        for seg in _SEGMENT_NAMES.intersection(items):
            self._check_selector(seg, items[seg])
        if "shadow_gs_base" in values:
            self._write_msr(MSR_SHADOW_GS_BASE, values["shadow_gs_base"])
        if not items:
            return
        if "rip" in items and self._hook_addend:
            items["rip"] = (items["rip"] - self._hook_addend) & _U64
        batch = self._batch(tuple(items))
        for i, value in enumerate(items.values()):
            batch.vals[i] = value & _U64
        lib.uc_reg_write_batch(self._uch, batch.ids, batch.ptrs, batch.n)

    def _check_selector(self, segment: str, selector: int) -> None:
        """Refuse a selector whose descriptor Unicorn could not read without faulting.

        Unicorn checks a segment load (``uc_check_cpu_x86_load_seg``) by reading the descriptor from the GDT; on
        an unmapped GDT page that read raises a page fault inside QEMU, which unwinds with ``siglongjmp`` across
        the Python frames of the caller (the interpreter's state is lost). So the descriptor's GDT page must be
        mapped (the guest's ``set_gdt`` frames, or Xen's reserved page) before the selector goes to Unicorn; the
        descriptor's own checks (present, type, privilege) are then Unicorn's.

        Raises:
            ValueError: the selector cannot be loaded (the caller loads the null selector or crashes the guest).
        """
        selector &= 0xFFFF
        if selector & 0xFFFC == 0:
            return
        if selector & 4:  # an LDT selector: the engine never loads an LDT (LDTR is null, its limit 0)
            raise ValueError(f"{segment} selector {selector:#06x}: there is no LDT")
        if not self.area.gdt_page_mapped(self.vcpu.vcpu_id, (selector & 0xFFF8) >> PAGE_SHIFT):
            raise ValueError(f"{segment} selector {selector:#06x}: its GDT page is not mapped")

    # ---------------------------------------------------------------- Pv64Context primitives

    def load_page_table(self, cr3: int) -> None:
        """Fill Xen's L4 slots of ``cr3``'s L4 (as Xen does when an L4 is validated) and load it."""
        machine = self.hv.machine
        mfn = (cr3 & PTE_PFN_MASK) >> PAGE_SHIFT
        if not 0 < mfn < machine.nr_frames:
            raise ValueError(f"cr3 {cr3:#x} outside machine memory")
        table = machine.mv_u64
        base = mfn << 9
        xen_slots = {PERDOMAIN_L4_SLOT: self.area.l4_entry, RO_MPT_L4_SLOT: self.engine.m2p.l4_entry}
        for slot in XEN_L4_SLOTS:
            table[base + slot] = xen_slots.get(slot, 0)
        self._reg1.value = mfn << PAGE_SHIFT
        lib.uc_reg_write(self._uch, ux.UC_X86_REG_CR3, ctypes.byref(self._reg1))
        if self._counter.cr3 != mfn << PAGE_SHIFT:
            if self._by_block:  # another page table maps other code at the same user addresses
                assert self.engine.native is not None
                self.engine.native.cache_clear(self._counter, everything=False)
            self._counter.cr3 = mfn << PAGE_SHIFT
        self._loaded_cr3 = cr3
        self._slen.clear()
        self._io_ops.clear()

    def swap_gs_bases(self) -> None:
        """``swapgs``."""
        gs = self.read_registers(("gs_base",))["gs_base"]
        shadow = self._read_msr(MSR_SHADOW_GS_BASE)
        self.write_registers({"gs_base": shadow})
        self._write_msr(MSR_SHADOW_GS_BASE, gs)

    def guest_time_ns(self) -> int:
        """Deterministic: the run's start time plus the instructions executed so far; host: the host clock."""
        if self._deterministic:
            count = self._counter.count if self._count_at_insn is None else self._count_at_insn
            return self._time_base + self.engine.instructions_to_ns(count - self._count_bias)
        return self.hv.clock.now_ns()

    def sync_clock(self) -> None:
        """Deterministic mode, one pCPU: move the virtual clock up to the running vCPU's time.

        The hypervisor then sees, at every hypercall and exception, the time the guest has reached by the
        instructions it executed (never past the run's window; the clock never moves backwards). With several
        pCPUs the clock stays at the scheduler step's start during the step, and guest time runs ahead of it by
        at most the step.
        """
        clock = self._virtual_clock
        if clock is not None:
            clock.wait_until(self._guest_now())

    def _guest_now(self) -> int:
        t = self._time_base + self.engine.instructions_to_ns(self._count_mv[0] - self._count_bias)
        return min(t, self._time_cap)

    def native_features(self) -> tuple[int, int, int, int]:
        """The engine's CPU features (measured once on a scratch ``Uc``)."""
        return self.engine.native_features

    def set_fpu_taskswitch(self, ts: bool) -> None:
        """CR0.TS of the guest, mirrored in the emulated CR0 so FPU instructions raise #NM."""
        super().set_fpu_taskswitch(ts)
        self._sync_cr0()

    def _sync_cr0(self) -> None:
        ts = bool(self.vcpu.arch.ctrlreg[0] & X86_CR0_TS)
        if ts != self._loaded_ts:
            self._reg1.value = CPU_CR0 | (X86_CR0_TS if ts else 0)
            lib.uc_reg_write(self._uch, ux.UC_X86_REG_CR0, ctypes.byref(self._reg1))
            self._loaded_ts = ts

    # ---------------------------------------------------------------- state load / save

    def flush_tlb(self) -> None:
        """Drop Unicorn's cached translations (``uc_ctl_flush_tlb``)."""
        lib.uc_ctl(self._uch, ctypes.c_int(UC_CTL_TLB_FLUSH))
        self._slen.clear()
        self._io_ops.clear()

    def step_instruction(self) -> bool:
        """See :meth:`Pv64Context.step_instruction`.

        With the instruction counter, the counter ends the step: its budget is the one instruction, and the code
        hook (per-instruction counting, or one put on this instruction and the next for block counting) stops
        before the next. ``uc_emu_start``'s own instruction count is not used there: leaving it for a run
        without one drops every translated block."""
        saved = self._step_ctx
        if not saved.value and lib.uc_context_alloc(self._uch, ctypes.byref(saved)):
            raise EngineUnavailable("uc_context_alloc failed")
        lib.uc_context_save(self._uch, saved)
        self.flush_tlb()
        self._exit = _EXIT_NONE
        rip = self._rip()
        counter = self._counter
        limit, stopping = counter.limit, counter.stopping
        if self._by_block:
            status = self._step_counted(rip, limit, stopping)
        else:
            # Per-instruction counting: a budget of this one instruction. Host clock: Unicorn's count of one, and
            # a budget the per-block backstop cannot reach.
            budget, count = (1, 0) if self._deterministic else (2, 1)
            counter.limit, counter.stopping = counter.count + budget, 0
            try:
                status = lib.uc_emu_start(self._uch, rip, NEVER, 0, count)
            finally:
                counter.limit, counter.stopping = limit, stopping
        if status == 0 and self._exit == _EXIT_NONE and self._hook_error is None:
            return True
        self._exit = _EXIT_NONE
        lib.uc_context_restore(self._uch, saved)
        self._clear_exception_in_flight()
        return False

    def _step_counted(self, rip: int, limit: int, stopping: int) -> int:
        """Block counting: run the instruction at ``rip`` as a landing of one instruction (the code hook counts it
        and stops before the next one, the block hook stops before any block that does not start at ``rip``)."""
        native = self.engine.native
        assert native is not None
        counter = self._counter
        try:
            length = native.insn_length(self.fetch_instruction(rip))[0]
        except Exception:  # the fetch faults: the step does too, at once
            length = -1
        length = length if length > 0 else 1
        uch = self._uch
        remove_cached_blocks(uch, rip, rip + length + 1)
        handle = hook_add(uch, UC_HOOK_CODE, native.count_hook, self._counter_address, begin=rip, end=rip + length)
        counter.limit, counter.stopping = counter.count + 1, 0
        counter.land_pc, counter.land_size = rip, length
        counter.precise, counter.block_pc = _native.PRECISE_STEP, _native.BLOCK_NONE
        try:
            return lib.uc_emu_start(uch, rip, NEVER, 0, 0)  # type: ignore[no-any-return]
        finally:
            counter.precise = counter.land_pc = 0
            counter.limit, counter.stopping = limit, stopping
            hook_del(uch, handle)
            remove_cached_blocks(uch, rip, rip + length + 1)

    def undo_step(self) -> None:
        """See :meth:`Pv64Context.undo_step`."""
        lib.uc_context_restore(self._uch, self._step_ctx)

    def sync_mmu(self) -> None:
        """Apply page-table, cr3, GDT and CR0.TS changes made by hypercalls since the last sync."""
        v = self.vcpu
        arch = v.arch
        gen = self.domain.mm_generation
        if gen != self._mm_gen:
            self.flush_tlb()
            self._mm_gen = gen
        cr3 = v.cr3
        if cr3 != self._loaded_cr3:
            self.load_page_table(cr3)
        gdt = (tuple(arch.gdt_frames), arch.gdt_ents)
        if gdt != self._loaded_gdt:
            nr = min((arch.gdt_ents + 511) // 512, GDT_GUEST_PAGES)
            self.area.map_gdt(v.vcpu_id, arch.gdt_frames[:nr])
            self._loaded_gdt = gdt
            self.flush_tlb()
        self._sync_cr0()

    def load_state(self) -> None:
        """Load ``vcpu.arch`` (as VCPUOP_initialise or the builder left it) into the CPU."""
        v = self.vcpu
        arch = v.arch
        regs = arch.user_regs
        self.sync_mmu()
        if arch.fpu_ctxt is not self._loaded_fpu:  # a context loaded with VGCF_i387_valid brings its FPU
            if arch.fpu_initialised:
                self.load_fpu_state(arch.fpu_ctxt)
            self._loaded_fpu = arch.fpu_ctxt
        gprs = {name: regs.get(name, 0) & _U64 for name in GPR_NAMES}
        rip = regs.get("rip", 0) & _U64
        rsp = regs.get("rsp", 0) & _U64
        rflags = (regs.get("rflags", 0x202) & ~X86_EFLAGS_IOPL) | X86_EFLAGS_IF | 2
        cs = regs.get("cs", FLAT_RING3_CS64) | 3
        if cs not in (FLAT_RING3_CS64, FLAT_RING3_CS32):
            cs = FLAT_RING3_CS64
        self.write_registers(gprs)
        self.write_registers({"rip": rip, "rsp": rsp, "rflags": rflags})
        self._entry_cs = cs
        for seg in ("ds", "es", "fs", "gs"):
            sel = regs.get(seg, 0) & 0xFFFF
            if sel:
                try:
                    self.write_registers({seg: sel | 3})
                except UcError:
                    self.write_registers({seg: 0})
        if arch.kernel_mode:
            gs_active, gs_shadow = arch.gs_base_kernel, arch.gs_base_user
        else:
            gs_active, gs_shadow = arch.gs_base_user, arch.gs_base_kernel
        self.write_registers({"fs_base": arch.fs_base, "gs_base": gs_active, "shadow_gs_base": gs_shadow})
        self._loaded_regs = regs

    def _entry_point(self) -> int:
        """Prepare the first entry to CPL3: an ``iretq`` frame on the trampoline stack; returns where to start.

        The CPU starts at CPL0 on the trampoline, whose ``iretq`` loads the guest's RIP, CS, RFLAGS, RSP and SS
        (it is the only instruction that ever runs at CPL0; the counter skips it).
        """
        area = self.area
        vid = self.vcpu.vcpu_id
        regs = self.read_registers(("rip", "rsp", "rflags"))
        frame = struct.pack("<5Q", regs["rip"], self._entry_cs, regs["rflags"], regs["rsp"], FLAT_RING3_SS64)
        offset = area.stack_write(frame)
        self.write_registers({"rsp": area.vcpu_va(vid, PAGE_STACK) + offset})
        self._entered = True
        self._count_bias = 1
        self._sf[_native.SF_COUNT_BIAS] = 1
        self._counter.limit += 1
        return area.vcpu_va(vid, PAGE_TRAMPOLINE)

    def save_state(self) -> None:
        """Write the live registers back to ``vcpu.arch`` (in place, so the context stays loaded)."""
        v = self.vcpu
        arch = v.arch
        names = (
            "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
            "rdi", "rip", "rsp", "rflags", "cs", "ss", "ds", "es", "fs", "gs", "fs_base", "gs_base",
            "shadow_gs_base",
        )  # fmt: skip
        live = self.read_registers(names)
        regs = arch.user_regs
        for name in names[:-3]:
            regs[name] = live[name]
        arch.fs_base = live["fs_base"]
        if arch.kernel_mode:
            arch.gs_base_kernel, arch.gs_base_user = live["gs_base"], live["shadow_gs_base"]
        else:
            arch.gs_base_user, arch.gs_base_kernel = live["gs_base"], live["shadow_gs_base"]
        self._loaded_regs = regs

    # ---------------------------------------------------------------- running

    def run(self, max_instructions: int, start_ns: int) -> RunResult:
        """See :meth:`VcpuContext.run`."""
        v = self.vcpu
        d = self.domain
        hv = self.hv
        counter = self._counter
        counter.count = 0
        counter.limit = max(0, max_instructions)
        counter.stopping = 0
        counter.block_pc = _native.BLOCK_NONE
        counter.land_pc = 0
        self._time_floor = max(self._time_floor, start_ns)
        self._time_base = self._time_floor
        self._time_cap = start_ns + self.engine.instructions_to_ns(max_instructions)
        sf = self._sf
        sf[_native.SF_TIME_BASE] = self._time_base
        sf[_native.SF_TIME_CAP] = self._time_cap
        sf[_native.SF_COUNT_BIAS] = 0
        host_start = time.monotonic_ns()
        reason: ExitReason | None = None
        message = ""
        system = hv.system
        prev_current = system.current
        system.current = v
        try:
            if self._loaded_regs is not v.arch.user_regs:
                self.load_state()
            else:
                self.sync_mmu()
            if not self.return_to_guest():
                reason = ExitReason.CRASHED
            while reason is None:
                reason = self._stop_reason()
                if reason is not None:
                    break
                if counter.count >= counter.limit and (self._deterministic or self.engine.native is not None):
                    reason = ExitReason.SLICE_END
                    break
                if (
                    not self._deterministic
                    and time.monotonic_ns() - host_start >= self.engine.instructions_to_ns(max_instructions)
                ):
                    reason = ExitReason.SLICE_END
                    break
                reason = self._emulate(max_instructions, host_start)
        except Exception as exc:  # a hypervisor bug: crash only this domain
            d.crash(f"vCPU {v.vcpu_id}: hypervisor error in the CPU engine: {exc!r}", exc)
            reason = ExitReason.CRASHED
        finally:
            system.current = prev_current
        if reason is ExitReason.CRASHED or d.is_shutting_down:
            reason = self._domain_reason() or reason
            message = d.crash_reason or ""
        try:
            self.save_state()
        except Exception:
            pass
        executed = int(counter.count) - self._count_bias if self._deterministic else 0
        if self._count_bias:
            counter.limit -= self._count_bias
            self._count_bias = 0
            self._sf[_native.SF_COUNT_BIAS] = 0
        self.instructions_total += executed
        if self._block_engine:
            self._choose_counting(time.monotonic_ns() - host_start)
        if self._deterministic:
            elapsed = self.engine.instructions_to_ns(executed)
        else:
            elapsed = max(0, time.monotonic_ns() - host_start)
        self._time_floor = self._time_base + elapsed
        self.sync_clock()
        result = RunResult(reason, executed, elapsed, message)
        self.last_result = result
        return result

    def _emulate(self, max_instructions: int, host_start: int) -> ExitReason | None:
        """One ``emu_start`` and the handling of its exit; None to keep running."""
        v = self.vcpu
        counter = self._counter
        self._exit = _EXIT_NONE
        self._hook_error = None
        counter.stopping = 0
        rip = self.read_registers(("rip",))["rip"] if self._entered else self._entry_point()
        timeout_us = 0
        if not self._deterministic:
            left = self.engine.instructions_to_ns(max_instructions) - (time.monotonic_ns() - host_start)
            timeout_us = max(1, left // 1000)
        status = lib.uc_emu_start(self._uch, rip, NEVER, timeout_us, 0)
        if counter.land_pc:
            status = self._run_precise(status)
        if self._hook_error is not None:
            exc = self._hook_error
            self.domain.crash(f"vCPU {v.vcpu_id}: hypervisor error while handling a guest exit: {exc!r}", exc)
            return ExitReason.CRASHED
        if status != 0:
            rip = self.read_registers(("rip",))["rip"]
            self.crash(f"vCPU {v.vcpu_id}: CPU emulation failed at RIP {rip:#x}: {UcError(status)}")
            return ExitReason.CRASHED
        # Any stop can leave an exception "in flight" in QEMU (an exception hook, but also a stop requested
        # inside the syscall hook): clear it before guest code runs again.
        self._clear_exception_in_flight()
        kind = self._exit
        if kind == _EXIT_NONE or kind == _EXIT_STOP:
            return None
        self.sync_clock()
        if kind == _EXIT_EXCEPTION:
            vector, error_code, cr2, is_int = self._exit_data
            ok = self.handle_exception(vector, error_code, cr2, is_int)
        elif kind == _EXIT_INVALID:
            ok = self.handle_exception(6, 0, 0, False)
        else:  # _EXIT_IO: undo what the I/O instruction did, then fault it
            self.write_registers(dict(zip(_IO_SAVED, self._exit_data, strict=True)))
            ok = self.emulate_privileged_op()
        if ok:
            self.sync_mmu()
            ok = self.return_to_guest()
        return None if ok else ExitReason.CRASHED

    #: Block counting: runs between looks at what landing costs, the share of the host time in landings over
    #: which a vCPU counts per instruction instead, and for how many runs it then does.
    _COUNTING_WINDOW = 256
    _COUNTING_MAX_SHARE = 0.3
    _COUNTING_BACKOFF = 4096

    def _choose_counting(self, run_ns: int) -> None:
        """Block counting: count this vCPU per instruction for a while when landing on its deadlines (each a
        block translated again, twice) costs more than the blocks save, as with many short runs in big blocks.
        Both ways give the same counts, so the choice, made on host time, changes nothing the guest sees."""
        self._runs += 1
        self._runs_ns += run_ns
        if self._code_hook is not None:
            if self._runs >= self._COUNTING_BACKOFF:
                self._set_counting(by_block=True)
        elif self._runs >= self._COUNTING_WINDOW:
            if self._precise_ns > self._COUNTING_MAX_SHARE * self._runs_ns:
                self._set_counting(by_block=False)
            self._runs = self._precise_ns = self._runs_ns = 0

    def _set_counting(self, by_block: bool) -> None:
        native = self.engine.native
        assert native is not None
        counter = self._counter
        if by_block:
            assert self._code_hook is not None
            hook_del(self._uch, self._code_hook)
            self._code_hook = None
            native.cache_clear(counter, everything=True)  # the code may have changed meanwhile
            counter.passive = 0
        else:
            self._code_hook = hook_add(self._uch, UC_HOOK_CODE, native.count_hook, self._counter_address)
            counter.passive = 1
        counter.block_pc = _native.BLOCK_NONE
        lib.uc_ctl(self._uch, ctypes.c_int(UC_CTL_TB_FLUSH))  # translate again, with or without the code hook
        self._by_block = by_block
        self._runs = self._precise_ns = self._runs_ns = 0

    def _run_precise(self, status: int) -> int:
        """Block counting: the block hook stopped before block ``land_pc`` (the budget ends inside it, or it
        does port I/O, or its instruction lengths are not known); run that block with a code hook on its
        instructions, which counts each and stops exactly at the budget. Returns the ``emu_start`` status.

        A block that lands whole a second time is hooked instead (:meth:`_hook_range`): it stays translated
        with the code hook, and runs from then on without stopping before it. A block overlapping a hooked
        range without being inside it gets that range unhooked first."""
        counter = self._counter
        pc, size = counter.land_pc, counter.land_size
        counter.land_pc = 0
        if status != 0 or self._exit != _EXIT_NONE or self._hook_error is not None or counter.count >= counter.limit:
            return status
        self._clear_exception_in_flight()
        native = self.engine.native
        assert native is not None
        uch = self._uch
        if counter.land_conflict:
            counter.land_conflict = 0
            for hooked in [h for h in self._hooked if h[0] < pc + size and pc < h[0] + h[1]]:
                self._unhook_range(hooked)
            self._set_rip(pc)  # the block is classified again when it is entered next
            return status
        if counter.land_whole:
            key = (pc, size)
            landings = self._landed.get(key, 0) + 1
            if landings >= self._HOOK_AFTER_LANDINGS:
                self._landed.pop(key, None)
                self._hook_range(pc, size)
                self._set_rip(pc)
                return status
            if len(self._landed) >= self._LANDED_MAX:
                self._landed.clear()
            self._landed[key] = landings
        # Only the instructions up to the one the budget stops at need the code hook (translating a hooked
        # instruction costs several times a plain one).
        left = counter.limit - counter.count
        last = -1 if counter.land_whole else native.insn_offset(self._counter_address, pc, size, left)
        end = pc + (last if last >= 0 else size - 1)
        remove_cached_blocks(uch, pc, pc + size)
        handle = hook_add(uch, UC_HOOK_CODE, native.count_hook, self._counter_address, begin=pc, end=end)
        counter.land_pc, counter.land_size = pc, size
        counter.precise, counter.stopping, counter.block_pc = _native.PRECISE_LANDING, 0, _native.BLOCK_NONE
        started = time.monotonic_ns()
        try:
            status = lib.uc_emu_start(uch, pc, NEVER, 0, 0)
        finally:
            counter.precise = counter.land_pc = 0
            hook_del(uch, handle)
            remove_cached_blocks(uch, pc, pc + size)
            self._precise_ns += time.monotonic_ns() - started
        return status

    #: Block counting: whole-block landings of one block before it is hooked, the blocks whose landings are
    #: remembered (then forgotten together).
    _HOOK_AFTER_LANDINGS = 2
    _LANDED_MAX = 4096

    def _hook_range(self, pc: int, size: int) -> None:
        """Keep block ``[pc, pc + size)`` translated with a code hook that counts its instructions (the oldest
        hooked range makes room when all are in use)."""
        native = self.engine.native
        assert native is not None
        if len(self._hooked) >= _native.HOOKED_RANGES:
            self._unhook_range(self._hooked[0])
        counter = self._counter
        handle = hook_add(self._uch, UC_HOOK_CODE, native.range_hook, self._counter_address, begin=pc,
                          end=pc + size - 1)  # fmt: skip
        self._hooked.append((pc, size, handle))
        self._publish_hooked()
        native.cache_forget(self._counter_address, pc, size)
        remove_cached_blocks(self._uch, pc, pc + size)
        assert counter.nr_hooked == len(self._hooked)

    def _unhook_range(self, hooked: tuple[int, int, int]) -> None:
        native = self.engine.native
        assert native is not None
        pc, size, handle = hooked
        self._hooked.remove(hooked)
        hook_del(self._uch, handle)
        self._publish_hooked()
        native.cache_forget(self._counter_address, pc, size)
        remove_cached_blocks(self._uch, pc, pc + size)

    def _publish_hooked(self) -> None:
        counter = self._counter
        for i, (pc, size, _handle) in enumerate(self._hooked):
            counter.hooked[i].pc, counter.hooked[i].size = pc, size
        counter.nr_hooked = len(self._hooked)

    def _set_rip(self, rip: int) -> None:
        self._reg1.value = rip
        lib.uc_reg_write(self._uch, ux.UC_X86_REG_RIP, ctypes.byref(self._reg1))

    def _count_at(self, rip: int, started: bool) -> int | None:
        """Block counting: the exact count at ``rip`` inside the block last entered (``started``: the
        instruction at ``rip`` has begun, as a faulting one has; a trap's ``rip`` is past its instruction); None
        when the count is exact already, ``rip`` is outside the block, or its instructions cannot be told."""
        native = self.engine.native
        assert native is not None
        exact = native.count_at(self._counter_address, rip, int(started))
        return None if exact < 0 else exact

    def _rip(self) -> int:
        lib.uc_reg_read(self._uch, ux.UC_X86_REG_RIP, ctypes.byref(self._reg1))
        return self._reg1.value

    def _settle_count(self, rip: int, started: bool) -> None:
        """Block counting, at an exit inside a block: the counter counted the whole block; count to ``rip``."""
        exact = self._count_at(rip, started)
        if exact is not None:
            self._counter.count = exact
        self._counter.block_pc = _native.BLOCK_NONE

    def _clear_exception_in_flight(self) -> None:
        """Reset QEMU's ``old_exception`` after a hooked exception (else the next fault becomes #DF)."""
        ctx = self._ctx
        lib.uc_context_save(self._uch, ctx)
        where = (ctx.value or 0) + self.cal.old_exception
        if ctypes.string_at(where, 4) != b"\xff\xff\xff\xff":
            ctypes.memmove(where, b"\xff\xff\xff\xff", 4)
            lib.uc_context_restore(self._uch, ctx)

    def _domain_reason(self) -> ExitReason | None:
        d = self.domain
        if d.is_shutting_down or d.is_shut_down:
            return ExitReason.CRASHED if d.shutdown_code == SHUTDOWN_crash else ExitReason.SHUTDOWN
        return None

    def _stop_reason(self) -> ExitReason | None:
        """Why the vCPU cannot continue on its pCPU (None: it can)."""
        v = self.vcpu
        d = self.domain
        reason = self._domain_reason()
        if reason is not None:
            return reason
        if v.pause_flags & 1:
            return ExitReason.BLOCKED
        if v.pause_flags & 2:
            return ExitReason.DOWN
        if v.pause_count or d.pause_count or v.pause_flags:
            return ExitReason.PAUSED
        pcpu = self._pcpu
        if pcpu is not None and (pcpu.curr is not v or pcpu.need_resched):
            return ExitReason.YIELDED
        return None

    def request_stop(self) -> None:
        """See :meth:`CpuPort.request_stop <xenpy.hypercall.cpu.CpuPort.request_stop>`: end the emulation."""
        self._counter.stopping = 1
        lib.uc_emu_stop(self._uch)

    def registers_written(self) -> None:
        """See :meth:`CpuPort.registers_written <xenpy.hypercall.cpu.CpuPort.registers_written>`: the syscall
        shim writes nothing back."""
        self._sf[_native.SF_NOUT] = 0

    def _hook_failed(self, exc: BaseException) -> None:
        self._hook_addend = 0
        if self._hook_error is None:
            self._hook_error = exc
        self._exit = _EXIT_ERROR
        self.request_stop()

    # ---------------------------------------------------------------- hooks

    def _py_count(self, _uc: int, _address: int, _size: int, _ud: int) -> None:
        counter = self._counter
        if counter.stopping or counter.count >= counter.limit:
            counter.stopping = 1
            lib.uc_emu_stop(self._uch)
            return
        counter.count += 1

    def _py_syscall_shim(self, _uc: int, _ud: int) -> None:
        """What ``xp_syscall_hook`` does, in Python (no C compiler)."""
        batch = self._batch(_native.SYSCALL_IN)
        lib.uc_reg_read_batch(self._uch, batch.ids, batch.ptrs, batch.n)
        sf = self._sf
        for i in range(batch.n):
            sf[i] = batch.vals[i]
        sf[_native.SF_NOUT] = 3
        sf[_native.SF_ADDEND] = 2
        if self._virtual_clock is not None:
            sf[_native.SF_NOW] = self._guest_now()
        self._on_syscall()
        nout = sf[_native.SF_NOUT]
        if nout == 3:
            sf[_native.SF_RCX_OUT] = (sf[_native.SF_RIP] + sf[_native.SF_ADDEND]) & _U64
            sf[_native.SF_R11_OUT] = sf[_native.SF_RFLAGS]
        if nout:
            out = self._batch(_native.SYSCALL_OUT[:nout])
            for i in range(nout):
                out.vals[i] = sf[_native.SF_RAX_OUT + i]
            lib.uc_reg_write_batch(self._uch, out.ids, out.ptrs, out.n)

    def _syscall_length(self, rip: int) -> int:
        try:
            code = self.fetch_instruction(rip, 15)
        except Exception:
            code = b""
        length = instruction_length_of_syscall(code) if code[:1] != b"\x0f" else 2
        self._slen[rip] = length
        return length

    def _on_syscall(self) -> None:
        """The ``syscall`` hook (called by the shim with ``SyscallFrame`` filled; see _native).

        The hot path of every hypercall: a few local lookups, the clock update (the shim computed the time;
        skipped for hypercalls that never read it), the dispatch, the result for the shim to write back (it
        adds rcx/r11 as Xen's sysret leaves them), and the return-to-guest checks (softirqs, page-table
        changes, shutdown, pending events). A handler that sets the registers itself (iret) clears
        ``SF_NOUT``. The frame's indices are written as numbers on this path (a global lookup per access
        costs measurably): 9 ``SF_RAX_OUT``, 15 ``SF_NOUT``, 16 ``SF_ADDEND``, 20 ``SF_NOW``.
        """
        sf = self._sf
        try:
            nr, a1, a2, a3, a4, a5, rip, _rflags, cs = _UNPACK_IN(self._frame)
            addend = self._slen.get(rip)
            if addend is None:
                addend = self._syscall_length(rip)
            if addend != 2:
                sf[16] = addend
            self._hook_addend = addend
            arch = self._arch
            if not arch.kernel_mode:
                self._syscall_user(rip, addend)
                self._hook_addend = 0
                return
            clock = self._virtual_clock
            if clock is not None and (nr >= _NR_TABLE or self._clock_free[nr] == 0):
                clock.wait_until(sf[20] if self._ns_per_insn_1 else self._guest_now())
            v = self.vcpu
            result = self._dispatch(self._hctx, nr, a1, a2, a3, a4, a5)
            if self._hctx.continuation is not None:
                self._continue_hypercall(rip)
            if sf[15]:
                sf[9] = result & _U64
                if cs != FLAT_KERNEL_CS:
                    self._sysret_selectors()
            if self._sched.softirq_pending or nr in self._resync:
                self._after_hypercall_slow(nr)
            else:
                vi = v.vcpu_info_mv
                if (vi[0] and not vi[1]) or arch.nmi_pending:
                    self._deliver_in_hook()
            self._hook_addend = 0
        except BaseException as exc:
            sf[_native.SF_NOUT] = 0
            self._hook_failed(exc)

    def _continue_hypercall(self, rip: int) -> None:
        """``hypercall_create_continuation`` seen from the guest: RAX holds the hypercall number again, the
        argument registers its new arguments, and RIP is back on the ``syscall``, which the guest executes again
        once its events are delivered."""
        hctx = self._hctx
        assert hctx.continuation is not None
        nr, args = hctx.continuation
        hctx.continuation = None
        regs = dict(zip(PV64_ARG_REGISTERS, args, strict=False))
        regs.update(rax=nr, rip=rip)
        self.write_registers(regs)
        self.registers_written()

    def _sysret_selectors(self) -> None:
        """Xen returns from a hypercall with ``sysret``, which loads FLAT_KERNEL_CS and FLAT_KERNEL_SS whatever code
        segment the kernel made the call from (a guest tells an event taken before a hypercall from one after it
        by the ``%cs`` of its frame)."""
        self.write_registers({"cs": FLAT_KERNEL_CS, "ss": FLAT_KERNEL_SS})

    def _flush_pending_writes(self) -> None:
        """Apply now the writes the shim would do after the hook (rax = result, rcx/r11 as sysret leaves them)."""
        sf = self._sf
        if sf[_native.SF_NOUT]:
            self.write_registers({
                "rax": sf[_native.SF_RAX_OUT],
                "rcx": (sf[_native.SF_RIP] + self._hook_addend) & _U64,
                "r11": sf[_native.SF_RFLAGS],
            })
            sf[_native.SF_NOUT] = 0

    def _deliver_in_hook(self) -> None:
        self._flush_pending_writes()
        if not self.return_to_guest():
            self._exit = _EXIT_STOP
            self.request_stop()

    def _after_hypercall_slow(self, nr: int) -> None:
        sched = self.engine.scheduler
        if sched.softirq_pending:
            sched.do_softirqs()
        if nr in self._resync:
            self._flush_pending_writes()
            self.sync_mmu()
        if self._stop_reason() is not None or self.domain.is_shutting_down:
            self._exit = _EXIT_STOP
            self.request_stop()
            return
        if self.events_pending():
            self._deliver_in_hook()

    def _syscall_user(self, rip: int, addend: int) -> None:
        sf = self._sf
        sf[_native.SF_NOUT] = 0
        next_rip = (rip + addend) & _U64
        self.write_registers({"rcx": next_rip, "r11": sf[_native.SF_RFLAGS]})
        if not self.syscall_from_user(next_rip) or not self.return_to_guest():
            self._exit = _EXIT_STOP
            self.request_stop()

    def _on_intr(self, _uc: int, intno: int, _ud: int) -> None:
        try:
            cr2 = 0
            if intno == 14:
                cr2 = self.read_registers(("cr2",))["cr2"]
            ctx = self._ctx
            lib.uc_context_save(self._uch, ctx)
            raw = ctypes.string_at((ctx.value or 0) + self.cal.error_code, 8)
            error_code, is_int = struct.unpack("<iI", raw)
            if self._by_block:
                # A fetch fault started nothing of its block; a trap (int N, #DB) is past its instruction.
                if intno == 14 and error_code & PFEC_insn_fetch:
                    self._counter.block_pc = _native.BLOCK_NONE
                else:
                    self._settle_count(self._rip(), started=not (is_int or intno == 1))
            self._exit = _EXIT_EXCEPTION
            self._exit_data = (intno, error_code & 0xFFFF_FFFF, cr2, bool(is_int))
            self.request_stop()
        except BaseException as exc:
            self._hook_failed(exc)

    def _on_invalid(self, _uc: int, _ud: int) -> bool:
        try:
            if self._by_block:
                self._settle_count(self._rip(), started=True)
            self._exit = _EXIT_INVALID
            self.request_stop()
        except BaseException as exc:
            self._hook_failed(exc)
        return True

    def _io_exit(self) -> None:
        if self._exit == _EXIT_IO:
            return
        live = self.read_registers(_IO_SAVED)
        self._exit = _EXIT_IO
        self._exit_data = tuple(live[n] for n in _IO_SAVED)
        self.request_stop()

    def _io_in_place(self) -> bool:
        """Whether the hooked port I/O is one Xen emulates (:meth:`port_io_emulated`); the hook then completes it,
        as Xen's emulation would, without leaving the emulation: Unicorn stores the value an ``in`` hook
        returns at the operand's size, zero-extending a 32-bit one, as Xen's emulation does. Decoded
        instructions are kept per RIP until the next TLB flush, like the syscall lengths."""
        rip = self._rip()
        op = self._io_ops.get(rip)
        if op is None:
            try:
                op = decode_privileged(self.fetch_instruction(rip))
            except Exception:
                return False
            self._io_ops[rip] = op
        return self.port_io_emulated(op)

    def _on_in(self, _uc: int, _port: int, _size: int, _ud: int) -> int:
        try:
            if not self._io_in_place():
                self._io_exit()
        except BaseException as exc:
            self._hook_failed(exc)
        return PORT_READ_VALUE

    def _on_out(self, _uc: int, _port: int, _size: int, _value: int, _ud: int) -> None:
        try:
            if not self._io_in_place():
                self._io_exit()
        except BaseException as exc:
            self._hook_failed(exc)

    def _on_cpuid(self, _uc: int, _ud: int) -> int:
        try:
            self.emulate_cpuid()
        except BaseException as exc:
            self._hook_failed(exc)
        return 1

    def _write_gprs(self, batch: RegBatch, *values: int) -> None:
        """Write the general registers ``batch.names`` (no segment, not RIP) in one call."""
        vals = batch.vals
        for i, value in enumerate(values):
            vals[i] = value & _U64
        lib.uc_reg_write_batch(self._uch, batch.ids, batch.ptrs, batch.n)

    def _on_rdtsc(self, _uc: int, _ud: int) -> int:
        try:
            tsc = self._tsc_in_hook()
            self._write_gprs(self._batch(("rax", "rdx")), tsc & 0xFFFF_FFFF, tsc >> 32)
        except BaseException as exc:
            self._hook_failed(exc)
        return 1

    def _on_rdtscp(self, _uc: int, _ud: int) -> int:
        try:
            tsc = self._tsc_in_hook()
            self._write_gprs(self._batch(("rax", "rdx", "rcx")), tsc & 0xFFFF_FFFF, tsc >> 32, 0)
        except BaseException as exc:
            self._hook_failed(exc)
        return 1

    def _tsc_in_hook(self) -> int:
        """The guest TSC at the hooked ``rdtsc``/``rdtscp``, whose block goes on running after the hook."""
        if not self._by_block:
            return self.guest_tsc()
        self._count_at_insn = self._count_at(self._rip(), started=True)
        try:
            return self.guest_tsc()
        finally:
            self._count_at_insn = None

    def close(self) -> None:
        """Free the Unicorn context buffer (the ``Uc`` itself is freed when collected); no longer serve the
        vCPU's CPU-bound hypercalls."""
        self.unbind()
        if self._ctx.value:
            lib.uc_context_free(self._ctx)
            self._ctx = VOIDP()
        if self._step_ctx.value:
            lib.uc_context_free(self._step_ctx)
            self._step_ctx = VOIDP()


# ------------------------------------------------------------------------------------------- the engine


class UnicornEngine(Engine):
    """The Unicorn CPU engine of one hypervisor.

    Creating it attaches it: it becomes the scheduler's executor. Each vCPU context it creates is the CPU port
    (``ctx.cpu``) of that vCPU's hypercall context, through which the CPU-bound hypercalls (iret,
    set_segment_base, set_gdt, fpu_taskswitch) act on the CPU.

    Args:
        hv: the hypervisor.
        deterministic: count instructions and derive time from them (default: when ``hv.clock`` is a
            :class:`~xenpy.core.clock.VirtualClock`).
        instructions_per_second: guest instructions per second of virtual time (default 1e9: 1 ns each).
        native: use the compiled helpers (default: when a C compiler can build them).
        counting: how the deterministic clock counts instructions: ``"block"`` (per translation block, and per
            instruction only to land on a deadline; the default) or ``"instruction"`` (a hook on every
            instruction). Both give the same count at every exit; without the compiled helpers it is
            ``"instruction"``.

    Attributes:
        name: ``"unicorn"``.
        deterministic: whether instructions are counted.
        counting: ``"block"`` or ``"instruction"`` (see Args).
        native: the loaded helper library, or None (Python callbacks).
        cal: the context offsets (:func:`calibration`).
        native_features: CPU features of the emulated CPU, for the CPUID policy.
        effects: what to do around each hypercall (:class:`~xenpy.engine.effects.EffectTables`, from the
            handlers' declared effects).
    """

    name = "unicorn"

    def __init__(
        self,
        hv: Hypervisor,
        *,
        deterministic: bool | None = None,
        instructions_per_second: int = NSEC_PER_SEC,
        native: bool = True,
        counting: str = "block",
    ) -> None:
        if instructions_per_second <= 0:
            raise ValueError("instructions_per_second must be positive")
        if counting not in COUNTING_MODES:
            raise ValueError(f"counting must be one of {', '.join(COUNTING_MODES)}, got {counting!r}")
        self.hv = hv
        self.scheduler = hv.scheduler
        self.deterministic = isinstance(hv.clock, VirtualClock) if deterministic is None else deterministic
        self.instructions_per_second = instructions_per_second
        self.native = _native.load_native() if native else None
        self.counting = counting if self.native is not None else "instruction"
        self.cal = calibration()
        self.native_features = measure_native_features()
        self.dispatch: Callable[..., int] = hv.dispatcher.dispatch
        self.effects = EffectTables.from_registry()
        self._contexts: dict[Vcpu, UnicornVcpu] = {}
        self._areas: dict[int, HypervisorArea] = {}
        self._phys_base = _align_2m(hv.machine.nr_bytes)
        m2p_tables = _align_2m(self._phys_base + MAX_AREA_BYTES)
        self.m2p = ReadOnlyM2P(m2p_tables, _align_2m(m2p_tables + (2 << 20)), hv.machine.m2p_nr_bytes)
        self.running: UnicornVcpu | None = None
        hv.scheduler.executor = self

    # ---------------------------------------------------------------- time

    def instructions_to_ns(self, instructions: int) -> int:
        """Virtual time of ``instructions`` instructions (rounded up)."""
        ips = self.instructions_per_second
        if ips == NSEC_PER_SEC:
            return instructions
        return -(-instructions * NSEC_PER_SEC // ips)

    def ns_to_instructions(self, ns: int) -> int:
        """Instructions that fit in ``ns`` of virtual time (at least 1 for a positive ``ns``)."""
        ips = self.instructions_per_second
        n = ns if ips == NSEC_PER_SEC else ns * ips // NSEC_PER_SEC
        return max(1, n) if ns > 0 else 0

    # ---------------------------------------------------------------- contexts

    def area(self, d: Domain) -> HypervisorArea:
        """The hypervisor area of domain ``d`` (created on first use)."""
        area = self._areas.get(d.domid)
        if area is None:
            area = self._areas[d.domid] = HypervisorArea(self._phys_base, d.max_vcpus)
            d.watch(self._on_domain_state)
        return area

    def _on_domain_state(self, d: Domain, old: Any, new: Any) -> None:
        if getattr(new, "value", None) == "destroyed":
            self.release_domain(d)

    def context(self, vcpu: Vcpu) -> UnicornVcpu:
        """See :meth:`Engine.context`."""
        ctx = self._contexts.get(vcpu)
        if ctx is None:
            ctx = self._contexts[vcpu] = UnicornVcpu(self, vcpu)
        return ctx

    def run(self, pcpu: Pcpu, vcpu: Vcpu, start_ns: int, budget_ns: int) -> int:
        """See :meth:`Engine.run` (the scheduler's ``VcpuExecutor``)."""
        ctx = self.context(vcpu)
        ctx._pcpu = pcpu
        previous = self.running
        self.running = ctx
        try:
            result = ctx.run(self.ns_to_instructions(budget_ns), start_ns)
        finally:
            self.running = previous
        return min(result.elapsed_ns, budget_ns) if result.elapsed_ns else 0

    def release_domain(self, domain: Domain) -> None:
        """See :meth:`Engine.release_domain`."""
        for vcpu in [v for v in self._contexts if v.domain is domain]:
            self._contexts.pop(vcpu).close()
        self._areas.pop(domain.domid, None)

    def contexts(self) -> list[UnicornVcpu]:
        """Every live context."""
        return list(self._contexts.values())
