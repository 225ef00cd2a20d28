"""The hypervisor: xenpy's composition root and its documented Python API.

A :class:`Hypervisor` puts together the machine-wide state (:class:`~xenpy.core.system.System`: clock, machine
memory, timers, scheduler and pCPUs, domains, VIRQ routing), the hypercall dispatcher
(:class:`~xenpy.hypercall.dispatcher.HypercallDispatcher`) and the domain builders (:mod:`xenpy.loader.builder`).
Scripts and tests drive it without a guest CPU; a CPU engine (:mod:`xenpy.engine`) runs real guest code on it::

    from xenpy.hypervisor import DomainConfig, Hypervisor
    from xenpy.abi.generated.hypercalls import Hypercall, VcpuOp

    hv = Hypervisor(nr_pcpus=2)
    dom = hv.create_domain(DomainConfig(max_vcpus=2, memory_mib=4))   # paused, vCPU 0 up (spec 7.5)
    dom.unpause()                                                     # vCPU 0 runs
    buf = dom.alloc_guest(48)                                         # guest memory for an argument
    rc = hv.hypercall(dom.vcpus[0], Hypercall.vcpu_op, VcpuOp.VCPUOP_get_runstate_info, 0, buf)
    info = dom.abi.vcpu_runstate_info.parse(dom.read_guest(buf, 48))
    hv.run_for(10_000_000)                                            # 10 ms of virtual time

**The hypercall rule.** ``hv.hypercall(vcpu, nr, *args)`` runs the hypercall as if ``vcpu`` had executed it: for
the call, ``vcpu`` is ``current``. It must be on a pCPU: if it is runnable but waiting in the run queue it is
scheduled in first (an idle pCPU if there is one, otherwise it preempts the vCPU on its own pCPU, which goes back
to the head of the run queue). A vCPU that cannot run (down, blocked, paused, or its domain paused or shut down)
cannot make hypercalls: :class:`VcpuNotRunnable` is raised. After the handler, pending softirqs run (expired
timers, reschedules), exactly as before a return to the guest; a hypercall that blocks, yields or downs the
calling vCPU therefore returns with the vCPU descheduled. A hypercall that ends with a continuation (a long
multicall) is issued again with the continuation's arguments, softirqs running in between, until it completes.
Arguments are taken modulo 2**64; the result is the signed value the guest would see in rax (``-errno`` on
error).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import xenpy.hypercall.handlers  # noqa: F401 (registers every hypercall handler)
from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall, VcpuOp
from xenpy.core.clock import Clock
from xenpy.core.domain import Domain, DomainState, Vcpu
from xenpy.core.memory import MachineMemory
from xenpy.core.runstate import vcpu_runstate_get
from xenpy.core.sched_fifo import DEFAULT_TIME_SLICE_NS
from xenpy.core.scheduler import Pcpu, SchedPolicy, Scheduler
from xenpy.core.system import DomainConfig, System
from xenpy.core.timers import TimerQueue
from xenpy.core.vcpu_context import arch_set_info_guest, pack_vcpu_guest_context, parse_vcpu_guest_context
from xenpy.hypercall.dispatcher import HypercallDispatcher, PostHook, PreHook
from xenpy.loader.builder import GUEST_VIRT_BASE, AddressSpace, build_flat_pv64_domain

__all__ = ["GUEST_VIRT_BASE", "DomainBuilder", "DomainConfig", "Hypervisor", "VcpuNotRunnable", "flat_builder"]

_U64 = (1 << 64) - 1

#: ``builder(domain) -> (address space, vCPU 0 context fields)``, or None to leave the domain without either.
DomainBuilder = Callable[[Domain], "tuple[AddressSpace, dict[str, int]] | None"]


class VcpuNotRunnable(RuntimeError):  # noqa: N818 (names the condition)
    """``hv.hypercall`` was asked to run a hypercall on a vCPU that cannot run."""


def flat_builder(d: Domain) -> tuple[AddressSpace, dict[str, int]] | None:
    """The default builder: the Python API's flat test layout (:func:`~xenpy.loader.builder.build_flat_pv64_domain`).

    A PV32 domain gets none (the page-table builder is 4-level, PV64 only).
    """
    if d.is_compat:
        return None
    built = build_flat_pv64_domain(d.memory)
    return built.address_space, built.vcpu_context


class Hypervisor:
    """A Xen-compatible hypervisor hosted in this process.

    Args:
        nr_pcpus: simulated physical CPUs.
        clock: ``"virtual"`` (deterministic, default), ``"host"``, or a :class:`~xenpy.core.clock.Clock`.
        memory_mib: machine memory in MiB.
        sched: the scheduling policy: ``"credit2"`` (Xen's default), ``"fifo"``, or a policy object.
        time_slice_ns: the time slice of ``"fifo"``.
        seed: seed of the machine frame allocation order.
        pvclock_tsc_stable: advertise XEN_PVCLOCK_TSC_STABLE_BIT in ``vcpu_time_info.flags``.
        wallclock_boot_ns: wall-clock time (ns since the epoch) at system time 0, for ``shared_info.wc_*``.

    Attributes:
        system: the machine-wide state; the read-only properties below are its fields.
        dispatcher: the hypercall dispatcher.
    """

    def __init__(
        self,
        nr_pcpus: int = 1,
        *,
        clock: str | Clock = "virtual",
        memory_mib: int = 64,
        sched: str | SchedPolicy = "credit2",
        time_slice_ns: int = DEFAULT_TIME_SLICE_NS,
        seed: int = 0,
        pvclock_tsc_stable: bool = False,
        wallclock_boot_ns: int = 0,
    ) -> None:
        self.system = System(
            nr_pcpus,
            clock=clock,
            memory_mib=memory_mib,
            sched=sched,
            time_slice_ns=time_slice_ns,
            seed=seed,
            pvclock_tsc_stable=pvclock_tsc_stable,
            wallclock_boot_ns=wallclock_boot_ns,
        )
        self.dispatcher = HypercallDispatcher(self.system)

    # ------------------------------------------------------------------ domains

    def create_domain(
        self, config: DomainConfig | None = None, *, builder: DomainBuilder = flat_builder, **kwargs: object
    ) -> Domain:
        """Create a domain, lay it out with ``builder`` and return it **paused** (Firecracker style).

        The domain gets ``memory_mib`` of memory in a scrambled, non-identity p2m and shared_info in its own
        machine frame (spec 7.2). ``builder`` then makes its bootstrap address space and vCPU 0's context, which
        is loaded through ``arch_set_info_guest`` (vCPU 0 up; the others down and not initialised).

        The default builder (:func:`flat_builder`) maps every page at ``GUEST_VIRT_BASE + pfn * 4096`` (page
        tables read-only), starts vCPU 0 with the register state of spec 7.5 (rsp at the top of the boot-stack
        page pfn 0, cr3 the L4, VGCF_in_kernel | VGCF_online) and lets :meth:`Domain.alloc_guest` hand out the
        rest for arguments. A PV32 domain (``width=32``) gets the compat layouts but no address space and no
        boot vCPU. The toolstack's image boot (:func:`xenpy.toolstack.boot.boot_pv_image`) passes a builder
        that loads a kernel as libxenguest does.

        Args:
            config: the configuration; or pass :class:`DomainConfig` fields as keyword arguments.
            builder: ``builder(domain) -> (AddressSpace, vcpu0_context_fields)`` or None.

        Raises:
            ValueError: bad configuration or domid in use.
            OutOfMachineMemory: not enough machine memory.
            RuntimeError: ``arch_set_info_guest`` refused vCPU 0's context.
        """
        if config is None:
            config = DomainConfig(**kwargs)  # type: ignore[arg-type]
        elif kwargs:
            raise TypeError("pass either a DomainConfig or keyword arguments")
        d = self.system.create_domain(config)
        try:
            built = builder(d)
            if built is not None:
                space, vcpu_context = built
                d.set_address_space(space.pagetables, space.virt_base, space.alloc_start, space.alloc_end)
                self.set_boot_vcpu_context(d, vcpu_context)
        except BaseException:
            self.system.destroy_domain(d)
            raise
        d.creation_done()
        return d

    def set_boot_vcpu_context(self, d: Domain, fields: dict[str, int]) -> None:
        """Load vCPU 0 of ``d`` from ``vcpu_guest_context`` fields (``"user_regs.rip"``, ``"ctrlreg[3]"``, ...;
        the rest zero) through ``arch_set_info_guest``, as the toolstack's DOMCTL_setvcpucontext does.

        Raises:
            RuntimeError: ``arch_set_info_guest`` refused the context (the message has the errno).
        """
        ctxt = pack_vcpu_guest_context(d.abi, fields)
        rc = arch_set_info_guest(d.vcpus[0], parse_vcpu_guest_context(d.abi, ctxt))
        if rc:
            raise RuntimeError(f"building vCPU 0 of domain {d.domid} failed: {rc}")

    def destroy_domain(self, d: Domain) -> None:
        """Destroy ``d``: deschedule its vCPUs, close its event channels, stop its timers, free its memory."""
        self.system.destroy_domain(d)

    def domain(self, domid: int) -> Domain | None:
        """The live domain with id ``domid``, or None."""
        return self.system.domains.get(domid)

    def domain_by_any_id(self, domid: int, current: Domain) -> Domain | None:
        """``rcu_lock_domain_by_any_id``: ``DOMID_SELF`` is ``current``."""
        return self.system.domain_by_any_id(domid, current)

    def states(self) -> dict[int, DomainState]:
        """Lifecycle state of every live domain."""
        return self.system.states()

    # ------------------------------------------------------------------ time

    def now_ns(self) -> int:
        """System time (Xen's ``NOW()``)."""
        return self.system.clock.now_ns()

    def run_for(self, ns: int, *, max_step_ns: int | None = None) -> None:
        """Advance the simulation by ``ns`` of system time: vCPUs run, timers fire, slices end."""
        self.system.run_for(ns, max_step_ns=max_step_ns)

    advance = run_for

    def run_until(self, t_ns: int, *, max_step_ns: int | None = None) -> None:
        """Advance the simulation to system time ``t_ns``."""
        self.system.run_until(t_ns, max_step_ns=max_step_ns)

    def do_softirqs(self) -> None:
        """Run expired timers and pending reschedules now."""
        self.system.do_softirqs()

    # ------------------------------------------------------------------ hypercalls

    def hypercall(self, vcpu: Vcpu, nr: int, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
        """Issue hypercall ``nr`` as ``vcpu`` (see the module docstring for the rule); returns the result.

        Raises:
            VcpuNotRunnable: ``vcpu`` is not running and cannot be scheduled in.
        """
        system = self.system
        if not vcpu.is_running:
            if vcpu.domain.is_dying or not vcpu.runnable:
                raise VcpuNotRunnable(
                    f"{vcpu!r} cannot run (pause_flags={vcpu.pause_flags:#x}, "
                    f"pause_count={vcpu.pause_count}, domain {vcpu.domain.state.value})"
                )
            system.scheduler.schedule_in(vcpu)
        system.current = vcpu
        dispatcher = self.dispatcher
        ctx = dispatcher.context(vcpu)
        args = (a1 & _U64, a2 & _U64, a3 & _U64, a4 & _U64, a5 & _U64)
        try:
            while True:
                rc = dispatcher.dispatch(ctx, nr, *args)
                if ctx.continuation is None:
                    break
                # The guest would re-issue the call after its events and softirqs: so do they here.
                nr, cont_args = ctx.continuation
                ctx.continuation = None
                args = (*cont_args, 0, 0, 0, 0, 0)[:5]
                system.do_softirqs()
        finally:
            system.current = None
        system.do_softirqs()
        return rc

    def bring_up_vcpus(self, d: Domain, vcpu_ids: Iterable[int] | None = None, *, by: int = 0) -> None:
        """Start vCPUs of ``d`` as a guest kernel does: ``VCPUOP_initialise`` (with
        :meth:`Domain.put_vcpu_context`) then ``VCPUOP_up``, both issued by vCPU ``by`` (which must be able to
        run). ``vcpu_ids`` defaults to every vCPU but ``by``.

        Raises:
            RuntimeError: a hypercall failed (the message names the vCPU, the sub-op and the errno).
        """
        caller = d.vcpus[by]
        ids = [v.vcpu_id for v in d.vcpus if v.vcpu_id != by] if vcpu_ids is None else list(vcpu_ids)
        for vcpu_id in ids:
            for op, arg in ((VcpuOp.VCPUOP_initialise, d.put_vcpu_context()), (VcpuOp.VCPUOP_up, 0)):
                rc = self.hypercall(caller, Hypercall.vcpu_op, op, vcpu_id, arg)
                if rc < 0:
                    raise RuntimeError(f"{op.name} of vCPU {vcpu_id} of domain {d.domid} failed: -{XenErrno(-rc).name}")

    def add_hypercall_hook(self, pre: PreHook | None = None, post: PostHook | None = None) -> Callable[[], None]:
        """Install hooks run before / after every hypercall; returns a function removing both.

        ``pre(vcpu, nr, args)`` may return an int to replace the result (the handler is skipped);
        ``post(vcpu, nr, args, result)`` may return an int to replace the result.
        """
        removers = []
        if pre is not None:
            removers.append(self.dispatcher.add_pre_hook(pre))
        if post is not None:
            removers.append(self.dispatcher.add_post_hook(post))

        def remove() -> None:
            for r in removers:
                r()

        return remove

    # ------------------------------------------------------------------ inspection

    def runstate(self, vcpu: Vcpu) -> tuple[int, int, int, int, int, int]:
        """``vcpu_runstate_get`` now: ``(state, state_entry_time, time[0..3])`` (spec 2.3)."""
        return vcpu_runstate_get(vcpu, self.system.clock.now_ns())

    def runstate_info(self, vcpu: Vcpu) -> Any:
        """``vcpu_runstate_get`` now, as a parsed ``vcpu_runstate_info`` of the vCPU's width (construct container)."""
        d = vcpu.domain
        packed = d.runstate_codec.pack(*vcpu_runstate_get(vcpu, self.system.clock.now_ns()))
        return d.abi.vcpu_runstate_info.parse(packed)

    @property
    def clock(self) -> Clock:
        """The system clock."""
        return self.system.clock

    @property
    def tsc_scale(self) -> tuple[int, int]:
        """``(tsc_to_system_mul, tsc_shift)`` of the clock."""
        return self.system.tsc_scale

    @property
    def machine(self) -> MachineMemory:
        """Machine memory."""
        return self.system.machine

    @property
    def timers(self) -> TimerQueue:
        """The timer queue."""
        return self.system.timers

    @property
    def scheduler(self) -> Scheduler:
        """The scheduler."""
        return self.system.scheduler

    @property
    def pcpus(self) -> list[Pcpu]:
        """The simulated pCPUs."""
        return self.system.scheduler.pcpus

    @property
    def domains(self) -> dict[int, Domain]:
        """Live domains by id (do not modify: use :meth:`create_domain` / :meth:`destroy_domain`)."""
        return self.system.domains

    @property
    def hardware_domain(self) -> Domain | None:
        """The hardware domain, if any."""
        return self.system.hardware_domain

    @property
    def current(self) -> Vcpu | None:
        """The vCPU whose hypercall is being handled (None outside hypercalls)."""
        return self.system.current

    @property
    def runstate_hooks(self) -> list[Callable[[Vcpu, int, int, int], None]]:
        """``hook(vcpu, old_state, new_state, t_ns)`` after every runstate change (append to install)."""
        return self.system.runstate_hooks

    @property
    def switch_hooks(self) -> list[Callable[[Pcpu, Vcpu | None, Vcpu | None], None]]:
        """``hook(pcpu, prev, next)`` after every context switch (append to install)."""
        return self.system.switch_hooks

    @property
    def kick_hooks(self) -> list[Callable[[Vcpu], None]]:
        """``hook(vcpu)`` when a running vCPU is kicked, an IPI in Xen (append to install)."""
        return self.system.kick_hooks

    def __repr__(self) -> str:
        return f"<Hypervisor pcpus={len(self.pcpus)} domains={sorted(self.domains)} now={self.now_ns()}>"
