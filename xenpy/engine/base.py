"""The CPU engine interface: what the hypervisor needs from something that executes guest code.

An engine runs the vCPUs of PV guests the way Xen's hardware does: guest code executes until it needs the
hypervisor (a hypercall, an exception, a privileged instruction), the engine services that exit, and the vCPU
continues, until its slice ends or it can no longer run. Everything above this module talks to an engine
through :class:`Engine` and :class:`VcpuContext` only; nothing there knows which engine runs.

The interface is deliberately narrow:

* :meth:`Engine.context` creates (or returns) the execution context of a vCPU over its domain's memory;
* :meth:`VcpuContext.run` runs the vCPU until it exits or its instruction budget is used, and reports why
  (:class:`RunResult`, :class:`ExitReason`);
* :meth:`VcpuContext.read_registers` / :meth:`VcpuContext.write_registers` access the live registers;
* :meth:`VcpuContext.save_state` writes them back to ``vcpu.arch``;
* :meth:`Engine.release_domain` frees a destroyed domain's contexts.

Cached translations follow ``Domain.mm_generation``: every page-table change bumps it
(:func:`xenpy.core.mm.note_pagetable_change`), and a context compares it before guest code runs again.

:meth:`Engine.run` has the signature of the scheduler's ``VcpuExecutor``: the scheduler hands an engine a vCPU
and a budget of virtual time, and the engine returns the time it consumed.

Register names are the lower-case x86 names (``"rax"``, ``"r15"``, ``"rip"``, ``"rflags"``, ``"cs"``,
``"fs_base"``...); :data:`GPR_NAMES` lists the general registers in ``cpu_user_regs`` order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, IntFlag
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xenpy.core.domain import Domain, Vcpu
    from xenpy.core.scheduler import Pcpu
    from xenpy.hypervisor import Hypervisor

#: General registers, in ``cpu_user_regs`` order (spec 5.6).
GPR_NAMES: tuple[str, ...] = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
    "rax", "rcx", "rdx", "rsi", "rdi",
)  # fmt: skip
#: Every register name :meth:`VcpuContext.read_registers` accepts.
REGISTER_NAMES: tuple[str, ...] = (
    *GPR_NAMES, "rip", "rsp", "rflags", "cs", "ss", "ds", "es", "fs", "gs",
    "fs_base", "gs_base", "shadow_gs_base", "cr2", "cr3",
)  # fmt: skip


class ExitReason(Enum):
    """Why :meth:`VcpuContext.run` returned.

    ::

        running --budget used--------------------------> SLICE_END
        running --SCHEDOP_block / SCHEDOP_poll---------> BLOCKED
        running --SCHEDOP_yield, or a reschedule-------> YIELDED
        running --VCPUOP_down on itself----------------> DOWN
        running --vCPU or domain paused----------------> PAUSED
        running --domain shut down (not a crash)-------> SHUTDOWN
        running --domain crashed-----------------------> CRASHED
    """

    SLICE_END = "slice_end"
    BLOCKED = "blocked"
    YIELDED = "yielded"
    DOWN = "down"
    PAUSED = "paused"
    SHUTDOWN = "shutdown"
    CRASHED = "crashed"


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of one :meth:`VcpuContext.run`.

    Attributes:
        reason: why the run ended.
        instructions: guest instructions retired during the run (exact with the deterministic clock; 0 when
            the engine does not count).
        elapsed_ns: virtual (or, with the host clock, host) time the run consumed.
        message: detail for CRASHED (the crash message), empty otherwise.
    """

    reason: ExitReason
    instructions: int
    elapsed_ns: int
    message: str = ""


class TrapBounceFlags(IntFlag):
    """``TBF_*``: what a bounce frame carries (Xen's ``struct trap_bounce`` flags)."""

    TBF_EXCEPTION = 1
    TBF_EXCEPTION_ERRCODE = 2
    TBF_INTERRUPT = 8


@dataclass(frozen=True, slots=True)
class TrapBounce:
    """A bounce to guest code (Xen's ``struct trap_bounce``), built by :mod:`xenpy.engine.pv64`.

    Attributes:
        eip: the guest handler's address (0 crashes the domain when the frame is built).
        flags: :class:`TrapBounceFlags`.
        error_code: pushed when ``TBF_EXCEPTION_ERRCODE`` is set.
        vector: exception vector (for messages; -1 for an event upcall, -2 for the syscall callback).
    """

    eip: int
    flags: int
    error_code: int = 0
    vector: int = -1


class VcpuContext(ABC):
    """The execution context of one vCPU in one engine.

    Attributes:
        vcpu: the vCPU.
    """

    vcpu: Vcpu

    @abstractmethod
    def run(self, max_instructions: int, start_ns: int) -> RunResult:
        """Run the vCPU from its current state for at most ``max_instructions`` instructions.

        Before guest code runs, pending NMIs and event upcalls are delivered as on every return to the guest
        (spec 3.3, 4.2). Hypercalls, exceptions and privileged instructions are serviced without returning;
        the run ends when the budget is used or the vCPU can no longer run here (blocked, yielded, down,
        paused, its domain shut down or crashed). ``start_ns`` is the system time at the start of the run
        (guest ``rdtsc`` advances from it with the instructions executed).
        """

    @abstractmethod
    def read_registers(self, names: Sequence[str] = REGISTER_NAMES) -> dict[str, int]:
        """The live values of the registers ``names`` (see :data:`REGISTER_NAMES`)."""

    @abstractmethod
    def write_registers(self, values: Mapping[str, int]) -> None:
        """Set live registers (names of :data:`REGISTER_NAMES` except ``cr2``/``cr3``)."""

    @abstractmethod
    def save_state(self) -> None:
        """Write the live registers back to ``vcpu.arch`` (``user_regs``, segment bases, mode)."""

    @abstractmethod
    def fpu_state(self) -> bytes:
        """The live x87, MMX and SSE state as the 512-byte FXSAVE image (64-bit form) that
        ``vcpu_guest_context.fpu_ctxt`` holds."""

    @abstractmethod
    def load_fpu_state(self, image: bytes) -> None:
        """Load the x87, MMX and SSE state from a 512-byte FXSAVE image (64-bit form)."""


class Engine(ABC):
    """A CPU engine serving the vCPUs of one hypervisor.

    Attributes:
        name: short engine name (``"unicorn"``).
        hv: the hypervisor it is attached to.
    """

    name: str
    hv: Hypervisor

    @abstractmethod
    def context(self, vcpu: Vcpu) -> VcpuContext:
        """The execution context of ``vcpu``, created on first use from ``vcpu.arch``."""

    @abstractmethod
    def run(self, pcpu: Pcpu, vcpu: Vcpu, start_ns: int, budget_ns: int) -> int:
        """Run ``vcpu`` on ``pcpu`` for at most ``budget_ns`` of system time from ``start_ns``.

        This is the scheduler's ``VcpuExecutor`` protocol. Returns the time consumed (> 0 unless nothing could
        run).
        """

    @abstractmethod
    def release_domain(self, domain: Domain) -> None:
        """Free every context of ``domain`` (after it is destroyed)."""
