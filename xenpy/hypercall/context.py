"""The narrow context a hypercall handler works with.

A handler sees the machine through one :class:`HypercallContext`, the calling vCPU's, and nothing else: no
hypervisor object, no engine. The context carries

* who is calling: :attr:`~HypercallContext.vcpu` (Xen's ``current``), its :attr:`~HypercallContext.domain`,
  the domain's :attr:`~HypercallContext.profile` (Xen version behaviour) and :attr:`~HypercallContext.abi`
  (structure layouts of the guest width);
* system time: :meth:`~HypercallContext.now_ns` (Xen's ``NOW()``);
* guest memory: :meth:`~HypercallContext.copy_from_guest` / :meth:`~HypercallContext.copy_to_guest` through
  the caller's page tables, raising :class:`~xenpy.core.pagetable.GuestFault` (which the dispatcher returns as
  -EFAULT), and :attr:`~HypercallContext.machine` for handlers that manage frames (memory management);
* other domains: :meth:`~HypercallContext.domain_by_id` (``rcu_lock_domain_by_any_id``);
* nested hypercalls (multicall): :meth:`~HypercallContext.hypercall`;
* the live CPU, where an engine runs the vCPU: :attr:`~HypercallContext.cpu` (a
  :class:`~xenpy.hypercall.cpu.CpuPort`), None without one.

One context exists per vCPU for the life of the dispatcher (:meth:`HypercallDispatcher.context
<xenpy.hypercall.dispatcher.HypercallDispatcher.context>`); building it costs nothing per call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xenpy.abi.cstruct import fast_codec
from xenpy.abi.xen import DOMID_SELF
from xenpy.core import pagetable

if TYPE_CHECKING:
    from types import ModuleType

    from xenpy.core.domain import Domain, Vcpu
    from xenpy.core.memory import MachineMemory
    from xenpy.core.profiles import XenProfile
    from xenpy.core.system import System
    from xenpy.hypercall.cpu import CpuPort


_U64 = (1 << 64) - 1
#: The entries a batched hypercall (multicall, mmu_update, mmuext_op) runs at most in one invocation before it
#: ends with a continuation, the elements of the batches a multicall's entries run included: xenpy's time does
#: not advance within a hypercall, so this stands in for the timer-driven preemption of Xen's
#: ``hypercall_preempt_check``.
PREEMPT_ENTRIES = 256


class HypercallContext:
    """What a handler may use while it serves one hypercall of :attr:`vcpu`.

    Attributes:
        vcpu: the calling vCPU (Xen's ``current``).
        domain: its domain.
        profile: the domain's Xen version profile.
        abi: structure layouts of the domain's width (``xenpy.abi.x86_64`` or ``x86_32``).
        machine: machine memory (frames, page types, the m2p).
        cpu: the live CPU of the vCPU, set by a CPU engine; None when no engine runs it.
        continuation: ``(nr, args)`` after a handler called :meth:`create_continuation`: the caller (the CPU
            engine, :meth:`Hypervisor.hypercall <xenpy.hypervisor.Hypervisor.hypercall>`, or a multicall)
            issues hypercall ``nr`` again with ``args`` and clears it; None otherwise.
        hypercalls: hypercalls the vCPU made through the dispatcher (a multicall's entries included).
    """

    __slots__ = ("_batch_work", "_clock", "_dispatch", "_nesting", "_system", "abi", "continuation", "cpu", "domain",
                 "hypercalls", "machine", "profile", "vcpu")  # fmt: skip

    def __init__(self, vcpu: Vcpu, system: System, dispatch: Callable[..., int]) -> None:
        """``dispatch(ctx, nr, a1..a5)`` runs a nested hypercall (the dispatcher's, with its hooks)."""
        d = vcpu.domain
        self.vcpu = vcpu
        self.domain: Domain = d
        self.profile: XenProfile = d.profile
        self.abi: ModuleType = d.abi
        self.machine: MachineMemory = system.machine
        self.cpu: CpuPort | None = None
        self.continuation: tuple[int, tuple[int, ...]] | None = None
        self.hypercalls = 0
        self._batch_work = 0  # batch elements started in this invocation, nested batches included
        self._nesting = 0  # hypercalls issued through hypercall() (a multicall's entries) now running
        self._clock = system.clock
        self._system = system
        self._dispatch = dispatch

    def now_ns(self) -> int:
        """System time in ns (Xen's ``NOW()``)."""
        return self._clock.now_ns()

    def copy_from_guest(self, gva: int, nbytes: int) -> bytes:
        """Read ``nbytes`` at guest virtual address ``gva`` through the caller's page tables.

        Raises:
            GuestFault: the range cannot be read.
        """
        return pagetable.copy_from_guest(self.machine, self.vcpu.cr3, gva, nbytes, domid=self.domain.domid)

    def read_struct(self, gva: int, struct_name: str) -> dict[str, int]:
        """The ``struct_name`` structure of the caller's width at ``gva``, decoded by member name.

        Raises:
            GuestFault: the structure cannot be read.
        """
        codec = fast_codec(getattr(self.abi, struct_name))
        return dict(zip(codec.names, codec.unpack(self.copy_from_guest(gva, codec.size)), strict=True))

    def copy_to_guest(self, gva: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` at ``gva`` through the caller's page tables (bytes before a fault stay written).

        Raises:
            GuestFault: some of the range cannot be written.
        """
        pagetable.copy_to_guest_or_fault(self.machine, self.vcpu.cr3, gva, data, domid=self.domain.domid)

    def domain_by_id(self, domid: int) -> Domain | None:
        """``rcu_lock_domain_by_any_id``: the live domain ``domid``; ``DOMID_SELF`` is the caller's domain."""
        if domid == DOMID_SELF:
            return self.domain
        return self._system.domains.get(domid)

    def outstanding_claims(self) -> int:
        """Pages claimed for domains and not yet allocated (Xen's ``outstanding_claims``, XENMEM_claim_pages)."""
        return self._system.outstanding_claims()

    def create_continuation(self, nr: int, *args: int) -> int:
        """``hypercall_create_continuation``: end this invocation so that the guest issues hypercall ``nr`` with
        ``args`` (raw register values) again when it next runs, after pending events and softirqs, as Xen
        rewrites the guest's registers and rewinds its RIP over the ``syscall``. Returns 0; the guest does not
        see it (its RAX becomes ``nr``)."""
        self.continuation = (nr, tuple(a & _U64 for a in args))
        return 0

    def preempt_check(self) -> bool:
        """``hypercall_preempt_check``: a softirq is pending, or the calling vCPU has an event to deliver."""
        vcpu = self.vcpu
        info = vcpu.vcpu_info_mv
        return bool(self._system.scheduler.softirq_pending or (info[0] and not info[1]) or vcpu.arch.nmi_pending)

    def should_preempt(self, done: int) -> bool:
        """Before the next element of a batch of which this invocation has done ``done``: Xen's
        ``done && hypercall_preempt_check()``, or :data:`PREEMPT_ENTRIES` elements are done in this invocation,
        counting those of the batches a multicall's entries ran (so a multicall of batches is bounded too)."""
        if not done:
            if not self._nesting:
                self._batch_work = 0  # a top-level batch starts its invocation
            self._batch_work += 1
            return False
        self._batch_work += 1
        return done >= PREEMPT_ENTRIES or self._batch_work > PREEMPT_ENTRIES or self.preempt_check()

    def hypercall(self, nr: int, *args: int) -> int:
        """Issue hypercall ``nr`` with raw register ``args`` as the caller, through the dispatcher (multicall).

        Hooks see it as a hypercall of its own; the result is what the guest would see in rax.
        """
        self._nesting += 1
        try:
            return self._dispatch(self, nr, *args)
        finally:
            self._nesting -= 1

    def __repr__(self) -> str:
        return f"<HypercallContext {self.vcpu!r}>"

    def __getstate__(self) -> Any:  # pragma: no cover - contexts are never pickled
        raise TypeError("a HypercallContext is bound to a live hypervisor")

    # ------------------------------------------------------------------ narrow additions for handlers

    def domain_by_exact_id(self, domid: int) -> Domain | None:
        """``rcu_lock_domain_by_id``: the live domain ``domid``, or None.

        Unlike :meth:`domain_by_id`, ``DOMID_SELF`` is not special: it names no domain (None).
        """
        return self._system.domains.get(domid)
