"""The hypervisor: the top object of xenpy's core and its documented Python API.

A :class:`Hypervisor` owns the machine memory, the clock, the timer queue, the scheduler and its simulated
pCPUs, the domains, and the hypercall dispatcher. Scripts and tests drive it without a guest CPU::

    from xenpy.core import DomainConfig, Hypervisor
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
calling vCPU therefore returns with the vCPU descheduled. Arguments are taken modulo 2**64; the result is the
signed value the guest would see in rax (``-errno`` on error).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import xenpy.core.handlers  # noqa: F401 (registers every hypercall handler)
from xenpy.abi import x86_32, x86_64
from xenpy.abi.xen import DOMID_FIRST_RESERVED
from xenpy.core.clock import NSEC_PER_SEC, Clock, HostClock, VirtualClock
from xenpy.core.domain import Domain, DomainState, Vcpu
from xenpy.core.hypercall import HypercallDispatcher, PostHook, PreHook
from xenpy.core.memory import PAGE_SIZE, DomainMemory, MachineMemory
from xenpy.core.pagetable import PageTableBuilder
from xenpy.core.profiles import XenProfile, get_profile
from xenpy.core.scheduler import DEFAULT_TIME_SLICE_NS, Pcpu, Scheduler
from xenpy.core.timers import PERIODIC_DEFAULT_NS, TimerQueue, kill_vcpu_timers
from xenpy.core.vcpu_context import (
    arch_set_info_guest,
    pack_vcpu_guest_context,
    parse_vcpu_guest_context,
    pv64_entry_context,
)

#: Where the builder maps a domain's memory (Linux's ``__START_KERNEL_map``): ``gva = GUEST_VIRT_BASE + pfn * 4096``.
GUEST_VIRT_BASE = 0xFFFF_FFFF_8000_0000
_U64 = (1 << 64) - 1


class VcpuNotRunnable(RuntimeError):  # noqa: N818 (names the condition)
    """``hv.hypercall`` was asked to run a hypercall on a vCPU that cannot run."""


@dataclass(frozen=True)
class DomainConfig:
    """What :meth:`Hypervisor.create_domain` builds.

    Attributes:
        max_vcpus: number of vCPU slots (``max_vcpus``); only vCPU 0 is initialised and up at start.
        memory_mib: guest memory in MiB (every page mapped at ``GUEST_VIRT_BASE``).
        profile: Xen version profile name or object (``"head"``, ``"4.17"``, ...).
        width: guest width, 64 (PV64) or 32 (PV32, compat layouts).
        name: label for tools.
        domid: requested domain id (default: lowest free).
        hardware_domain: the domain is the hardware/control domain (privileged; owns global VIRQs).
        max_evtchn_port: highest event channel port the domain may use.
        periodic_period_ns: initial periodic timer period of every vCPU (PV default 10 ms).
    """

    max_vcpus: int = 1
    memory_mib: int = 4
    profile: str | XenProfile = "head"
    width: int = 64
    name: str = ""
    domid: int | None = None
    hardware_domain: bool = False
    max_evtchn_port: int = 4095
    periodic_period_ns: int = PERIODIC_DEFAULT_NS

    @property
    def nr_vcpus(self) -> int:
        """Alias of ``max_vcpus``."""
        return self.max_vcpus

    @property
    def abi(self) -> ModuleType:
        """The structure module of the guest width."""
        if self.width == 64:
            return x86_64
        if self.width == 32:
            return x86_32
        raise ValueError(f"width must be 64 or 32, got {self.width}")


class Hypervisor:
    """A Xen-compatible hypervisor hosted in this process.

    Args:
        nr_pcpus: simulated physical CPUs.
        clock: ``"virtual"`` (deterministic, default), ``"host"``, or a :class:`Clock`.
        memory_mib: machine memory in MiB.
        time_slice_ns: scheduler time slice.
        seed: seed of the machine frame allocation order.
        pvclock_tsc_stable: advertise XEN_PVCLOCK_TSC_STABLE_BIT in ``vcpu_time_info.flags``.
        wallclock_boot_ns: wall-clock time (ns since the epoch) at system time 0, for ``shared_info.wc_*``.

    Attributes:
        clock: the system clock.
        machine: machine memory.
        timers: the timer queue.
        scheduler: the scheduler and its pCPUs.
        dispatcher: the hypercall dispatcher.
        domains: live domains by id.
        current: the vCPU whose hypercall is being handled (None outside hypercalls).
        runstate_hooks: ``hook(vcpu, old_state, new_state, t_ns)`` after every runstate change.
        switch_hooks: ``hook(pcpu, prev, next)`` after every context switch.
        kick_hooks: ``hook(vcpu)`` when a running vCPU is kicked (an IPI in Xen).
    """

    def __init__(
        self,
        nr_pcpus: int = 1,
        *,
        clock: str | Clock = "virtual",
        memory_mib: int = 64,
        time_slice_ns: int = DEFAULT_TIME_SLICE_NS,
        seed: int = 0,
        pvclock_tsc_stable: bool = False,
        wallclock_boot_ns: int = 0,
    ) -> None:
        if isinstance(clock, str):
            if clock == "virtual":
                clock = VirtualClock()
            elif clock == "host":
                clock = HostClock()
            else:
                raise ValueError(f"clock must be 'virtual', 'host' or a Clock, got {clock!r}")
        self.clock: Clock = clock
        self.tsc_scale = clock.tsc_scale  # type: ignore[attr-defined]
        self.pvclock_tsc_stable = pvclock_tsc_stable
        self.wallclock_boot_ns = wallclock_boot_ns
        self.machine = MachineMemory(memory_mib * 256, seed=seed)
        self.timers = TimerQueue()
        self.runstate_hooks: list[Callable[[Vcpu, int, int, int], None]] = []
        self.switch_hooks: list[Callable[[Pcpu, Vcpu | None, Vcpu | None], None]] = []
        self.kick_hooks: list[Callable[[Vcpu], None]] = []
        self.scheduler = Scheduler(self, nr_pcpus, time_slice_ns)
        self.dispatcher = HypercallDispatcher()
        self.domains: dict[int, Domain] = {}
        self.current: Vcpu | None = None
        self.dummy_vcpu_info = memoryview(bytearray(64))
        self.global_virq_handlers: dict[int, Domain] = {}
        self.hardware_domain: Domain | None = None

    # ------------------------------------------------------------------ domains

    def create_domain(
        self, config: DomainConfig | None = None, *, address_space: bool = True, **kwargs: object
    ) -> Domain:
        """Build a domain and return it **paused** (Firecracker style).

        The domain gets ``memory_mib`` of memory in a scrambled, non-identity p2m; shared_info in its own
        machine frame (spec 7.2); page tables mapping every page at ``GUEST_VIRT_BASE + pfn * 4096`` (page-table
        frames read-only); and vCPU 0 initialised and up with the register state of spec 7.5 (rsp at the top of
        the boot-stack page pfn 0, cr3 the L4, VGCF_in_kernel | VGCF_online). Other vCPUs are down and not
        initialised. Memory for arguments comes from :meth:`Domain.alloc_guest`.

        With ``address_space=False`` the domain gets its memory and shared_info but no page tables, and vCPU 0
        is not initialised: a PV domain builder (:mod:`xenpy.loader`) lays the memory out as Xen's toolstack
        does, then calls :meth:`set_boot_vcpu_context`.

        A PV32 domain (``width=32``) gets the compat layouts (shared_info, vcpu_info, 32-bit event words, 1024
        ports) but no address space and no boot vCPU yet: the page-table builder is 4-level (PV64) only.

        Args:
            config: the configuration; or pass :class:`DomainConfig` fields as keyword arguments.

        Raises:
            ValueError: bad configuration or domid in use.
            OutOfMachineMemory: not enough machine memory.
        """
        if config is None:
            config = DomainConfig(**kwargs)  # type: ignore[arg-type]
        elif kwargs:
            raise TypeError("pass either a DomainConfig or keyword arguments")
        profile = get_profile(config.profile)
        abi = config.abi
        domid = config.domid if config.domid is not None else self._free_domid()
        if domid in self.domains or not 0 <= domid < DOMID_FIRST_RESERVED:
            raise ValueError(f"domid {domid} is in use or reserved")
        if config.memory_mib <= 0:
            raise ValueError("memory_mib must be positive")
        nr_pages = config.memory_mib * 256
        memory = DomainMemory(self.machine, domid, nr_pages)
        shared_info_mfn = int(self.machine.alloc_domain_frames(domid, 1)[0])
        d = Domain(
            self,
            domid,
            name=config.name,
            max_vcpus=config.max_vcpus,
            profile=profile,
            abi=abi,
            memory=memory,
            shared_info_mfn=shared_info_mfn,
            max_evtchn_port=config.max_evtchn_port,
            is_hardware_domain=config.hardware_domain,
            periodic_period_ns=config.periodic_period_ns,
        )
        self.domains[domid] = d
        if config.hardware_domain and self.hardware_domain is None:
            self.hardware_domain = d
        # Created paused by the toolstack.
        d.controller_pause_count = 1
        self.scheduler.domain_pause(d)
        if address_space and not d.is_compat:
            self._build_address_space(d)
            self._init_boot_vcpu(d)
        d._last_state = d.state
        return d

    def _free_domid(self) -> int:
        domid = 0 if self.hardware_domain is None and not self.domains else 1
        while domid in self.domains:
            domid += 1
        return domid

    def _build_address_space(self, d: Domain) -> None:
        nr_pages = d.memory.nr_pages
        table_pfns = range(nr_pages - 1, -1, -1)
        builder = PageTableBuilder(d.memory, table_pfns)
        builder.ensure_tables(GUEST_VIRT_BASE, nr_pages)
        tables = set(builder.table_pfns())
        for pfn in range(nr_pages):
            builder.map_page(GUEST_VIRT_BASE + pfn * PAGE_SIZE, pfn, writable=pfn not in tables)
        d.pagetables = builder
        d.virt_base = GUEST_VIRT_BASE
        # pfn 0 is the boot stack; data allocations follow it, up to the first table frame.
        d._alloc_next_gva = GUEST_VIRT_BASE + PAGE_SIZE
        d._alloc_end_gva = GUEST_VIRT_BASE + min(tables) * PAGE_SIZE

    def _init_boot_vcpu(self, d: Domain) -> None:
        """vCPU 0 per spec 7.5 (``xg_dom_x86.c:vcpu_x86_64``, then ``arch_set_info_guest``)."""
        stack_top = GUEST_VIRT_BASE + PAGE_SIZE
        self.set_boot_vcpu_context(d, pv64_entry_context(rip=GUEST_VIRT_BASE, rsp=stack_top, rsi=0, cr3=d.cr3))

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
        if d.is_dying:
            return
        if not d.is_shutting_down:
            d.controller_pause_count += 1
            self.scheduler.domain_pause(d)
        d.is_dying = True
        for v in d.vcpus:
            v.pause_count += 1
            self.scheduler.vcpu_sleep_sync(v)
            kill_vcpu_timers(v)
        for t in d.watchdog_timers:
            t.stop()
        d.evtchn.destroy()
        del self.domains[d.domid]
        if self.hardware_domain is d:
            self.hardware_domain = None
        for virq, owner in list(self.global_virq_handlers.items()):
            if owner is d:
                del self.global_virq_handlers[virq]
        d.memory.release()
        d.console.flush()
        d._notify()
        self.send_global_virq_dom_exc()

    def domain(self, domid: int) -> Domain | None:
        """The live domain with id ``domid``, or None."""
        return self.domains.get(domid)

    def domain_by_any_id(self, domid: int, current: Domain) -> Domain | None:
        """``rcu_lock_domain_by_any_id``: ``DOMID_SELF`` is ``current``."""
        from xenpy.abi.xen import DOMID_SELF

        if domid == DOMID_SELF:
            return current
        return self.domains.get(domid)

    # ------------------------------------------------------------------ VIRQs

    def global_virq_handler(self, virq: int) -> Domain | None:
        """``get_global_virq_handler``: the domain receiving global ``virq`` (default: the hardware domain)."""
        return self.global_virq_handlers.get(virq, self.hardware_domain)

    def send_global_virq(self, virq: int) -> None:
        """``send_global_virq``: notify the handler of global ``virq``, if any."""
        d = self.global_virq_handler(virq)
        if d is not None and not d.is_dying:
            d.evtchn.send_guest_global_virq(virq)

    def send_global_virq_dom_exc(self) -> None:
        """VIRQ_DOM_EXC to its handler (a domain died or shut down)."""
        from xenpy.abi.xen import VIRQ_DOM_EXC

        self.send_global_virq(VIRQ_DOM_EXC)

    # ------------------------------------------------------------------ time

    def now_ns(self) -> int:
        """System time (Xen's ``NOW()``)."""
        return self.clock.now_ns()

    def run_for(self, ns: int, *, max_step_ns: int | None = None) -> None:
        """Advance the simulation by ``ns`` of system time: vCPUs run, timers fire, slices end."""
        if ns < 0:
            raise ValueError("ns must be >= 0")
        self.scheduler.run_until(self.clock.now_ns() + ns, max_step_ns=max_step_ns)

    advance = run_for

    def run_until(self, t_ns: int, *, max_step_ns: int | None = None) -> None:
        """Advance the simulation to system time ``t_ns``."""
        self.scheduler.run_until(t_ns, max_step_ns=max_step_ns)

    def do_softirqs(self) -> None:
        """Run expired timers and pending reschedules now."""
        self.scheduler.do_softirqs()

    def update_domain_wallclock_time(self, d: Domain) -> None:
        """``update_domain_wallclock_time``: ``shared_info.wc_*`` = wall-clock time of system time 0."""
        info = d.abi.shared_info
        base = d.shared_info_maddr
        machine = self.machine
        ver_addr = base + info.offset_of("wc_version")
        version = (machine.read_u32(ver_addr) + 1) & 0xFFFF_FFFF
        machine.write_u32(ver_addr, version)
        sec, nsec = divmod(self.wallclock_boot_ns, NSEC_PER_SEC)
        machine.write_u32(base + info.offset_of("wc_sec"), sec & 0xFFFF_FFFF)
        machine.write_u32(base + info.offset_of("wc_nsec"), nsec)
        hi = "wc_sec_hi" if not d.is_compat else "arch.wc_sec_hi"
        machine.write_u32(base + info.offset_of(hi), (sec >> 32) & 0xFFFF_FFFF)
        machine.write_u32(ver_addr, (version + 1) & 0xFFFF_FFFF)

    # ------------------------------------------------------------------ hypercalls

    def hypercall(self, vcpu: Vcpu, nr: int, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
        """Issue hypercall ``nr`` as ``vcpu`` (see the module docstring for the rule); returns the result.

        Raises:
            VcpuNotRunnable: ``vcpu`` is not running and cannot be scheduled in.
        """
        if not vcpu.is_running:
            if vcpu.domain.is_dying or not vcpu.runnable:
                raise VcpuNotRunnable(
                    f"{vcpu!r} cannot run (pause_flags={vcpu.pause_flags:#x}, "
                    f"pause_count={vcpu.pause_count}, domain {vcpu.domain.state.value})"
                )
            self.scheduler.schedule_in(vcpu)
        self.current = vcpu
        try:
            rc = self.dispatcher.dispatch(vcpu, nr, a1 & _U64, a2 & _U64, a3 & _U64, a4 & _U64, a5 & _U64)
        finally:
            self.current = None
        self.scheduler.do_softirqs()
        return rc

    def bring_up_vcpus(self, d: Domain, vcpu_ids: Iterable[int] | None = None, *, by: int = 0) -> None:
        """Start vCPUs of ``d`` as a guest kernel does: ``VCPUOP_initialise`` (with
        :meth:`Domain.put_vcpu_context`) then ``VCPUOP_up``, both issued by vCPU ``by`` (which must be able to
        run). ``vcpu_ids`` defaults to every vCPU but ``by``.

        Raises:
            RuntimeError: a hypercall failed (the message names the vCPU, the sub-op and the errno).
        """
        from xenpy.abi.errno import XenErrno
        from xenpy.abi.generated.hypercalls import Hypercall, VcpuOp

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

    @property
    def pcpus(self) -> list[Pcpu]:
        """The simulated pCPUs."""
        return self.scheduler.pcpus

    def runstate(self, vcpu: Vcpu) -> tuple[int, int, int, int, int, int]:
        """``vcpu_runstate_get`` now: ``(state, state_entry_time, time[0..3])`` (spec 2.3)."""
        from xenpy.core.runstate import vcpu_runstate_get

        return vcpu_runstate_get(vcpu, self.clock.now_ns())

    def runstate_info(self, vcpu: Vcpu) -> Any:
        """``vcpu_runstate_get`` now, as a parsed ``vcpu_runstate_info`` of the vCPU's width (construct container)."""
        from xenpy.core.runstate import vcpu_runstate_get

        d = vcpu.domain
        return d.abi.vcpu_runstate_info.parse(d.runstate_codec.pack(*vcpu_runstate_get(vcpu, self.clock.now_ns())))

    def states(self) -> dict[int, DomainState]:
        """Lifecycle state of every live domain."""
        return {domid: d.state for domid, d in self.domains.items()}

    def __repr__(self) -> str:
        return f"<Hypervisor pcpus={len(self.pcpus)} domains={sorted(self.domains)} now={self.now_ns()}>"
