"""The machine-wide state of the hypervisor: what Xen keeps in globals.

A :class:`System` holds the clock, machine memory, the timer queue, the scheduler and its simulated pCPUs, the
domain table and global VIRQ routing, plus the observation hooks. Domains, vCPUs and the scheduler reach it as
``domain.system``. It knows nothing of hypercall dispatch, CPU engines or domain builders: the composition root
:class:`xenpy.hypervisor.Hypervisor` puts those together and is the documented Python API.

:meth:`System.create_domain` is Xen's ``domain_create``: a domain with its memory and shared_info, paused by the
toolstack, every vCPU down and not initialised. A builder (:mod:`xenpy.loader.builder`) then lays out its
memory and loads vCPU 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from xenpy.abi import x86_64
from xenpy.abi.xen import DOMID_FIRST_RESERVED, DOMID_SELF, VIRQ_DOM_EXC
from xenpy.core.clock import NSEC_PER_SEC, Clock, HostClock, VirtualClock
from xenpy.core.domain import Domain, DomainState, Vcpu
from xenpy.core.memory import DomainMemory, MachineMemory, OutOfMachineMemory
from xenpy.core.profiles import XenProfile, get_profile
from xenpy.core.sched_credit2 import Credit2Scheduler
from xenpy.core.sched_fifo import DEFAULT_TIME_SLICE_NS, FifoScheduler
from xenpy.core.scheduler import Pcpu, SchedPolicy, Scheduler
from xenpy.core.systime import init_time_calibration
from xenpy.core.timers import PERIODIC_DEFAULT_NS, TimerQueue, kill_vcpu_timers


@dataclass(frozen=True)
class DomainConfig:
    """What a domain is created from.

    Attributes:
        max_vcpus: number of vCPU slots (``max_vcpus``).
        memory_mib: guest memory in MiB.
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
        """The structure module of the guest width (x86_32's is built when a 32-bit domain first asks)."""
        if self.width == 64:
            return x86_64
        if self.width == 32:
            from xenpy.abi import x86_32

            return x86_32
        raise ValueError(f"width must be 64 or 32, got {self.width}")


def make_clock(clock: str | Clock) -> Clock:
    """``"virtual"`` (deterministic), ``"host"`` or a :class:`Clock` itself.

    Raises:
        ValueError: another name.
    """
    if isinstance(clock, str):
        if clock == "virtual":
            return VirtualClock()
        if clock == "host":
            return HostClock()
        raise ValueError(f"clock must be 'virtual', 'host' or a Clock, got {clock!r}")
    return clock


#: The scheduling policies by name (``xenpy run --sched``): Xen's default, and a plain round-robin.
SCHEDULERS: dict[str, str] = {
    "credit2": "Xen's credit2: credits, wake-up preemption, 1 ms rate limit, slices of 0.5-10 ms",
    "fifo": "one FIFO queue, fixed time slices, no preemption on wake",
}


def make_policy(sched: str | SchedPolicy, time_slice_ns: int = DEFAULT_TIME_SLICE_NS) -> SchedPolicy:
    """The policy named ``sched`` (one of :data:`SCHEDULERS`), or ``sched`` itself.

    Raises:
        ValueError: an unknown name.
    """
    if not isinstance(sched, str):
        return sched
    if sched == "credit2":
        return Credit2Scheduler()
    if sched == "fifo":
        return FifoScheduler(time_slice_ns)
    raise ValueError(f"unknown scheduler {sched!r} (available: {', '.join(SCHEDULERS)})")


class System:
    """The machine-wide state of one hypervisor.

    Args:
        nr_pcpus: simulated physical CPUs.
        clock: ``"virtual"`` (deterministic, default), ``"host"``, or a :class:`Clock`.
        memory_mib: machine memory in MiB.
        sched: the scheduling policy, a name of :data:`SCHEDULERS` (default ``"credit2"``, Xen's) or a policy.
        time_slice_ns: the time slice of ``"fifo"``.
        seed: seed of the machine frame allocation order.
        pvclock_tsc_stable: advertise XEN_PVCLOCK_TSC_STABLE_BIT in ``vcpu_time_info.flags``.
        wallclock_boot_ns: wall-clock time (ns since the epoch) at system time 0, for ``shared_info.wc_*``.

    Attributes:
        clock: the system clock.
        machine: machine memory.
        timers: the timer queue.
        scheduler: the scheduler and its pCPUs.
        domains: live domains by id.
        hardware_domain: the hardware domain, if any.
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
        sched: str | SchedPolicy = "credit2",
        time_slice_ns: int = DEFAULT_TIME_SLICE_NS,
        seed: int = 0,
        pvclock_tsc_stable: bool = False,
        wallclock_boot_ns: int = 0,
    ) -> None:
        self.clock: Clock = make_clock(clock)
        self.tsc_scale: tuple[int, int] = self.clock.tsc_scale  # type: ignore[attr-defined]
        self.pvclock_tsc_stable = pvclock_tsc_stable
        self.wallclock_boot_ns = wallclock_boot_ns
        self.machine = MachineMemory(memory_mib * 256, seed=seed)
        self.timers = TimerQueue()
        self.runstate_hooks: list[Callable[[Vcpu, int, int, int], None]] = []
        self.switch_hooks: list[Callable[[Pcpu, Vcpu | None, Vcpu | None], None]] = []
        self.kick_hooks: list[Callable[[Vcpu], None]] = []
        self.scheduler = Scheduler(self, nr_pcpus, make_policy(sched, time_slice_ns))
        self.timers.now_ns = self.clock.now_ns
        self.timers.raise_softirq = self.scheduler.raise_timer_softirq
        self.calibration_timer = init_time_calibration(self)
        self.domains: dict[int, Domain] = {}
        self.current: Vcpu | None = None
        self.dummy_vcpu_info = memoryview(bytearray(64))
        self.global_virq_handlers: dict[int, Domain] = {}
        self.hardware_domain: Domain | None = None

    # ------------------------------------------------------------------ domains

    def create_domain(self, config: DomainConfig) -> Domain:
        """``domain_create``: a domain with its memory and shared_info, **paused** by the toolstack.

        The domain gets ``memory_mib`` of memory in a scrambled, non-identity p2m and shared_info in its own
        machine frame (spec 7.2); no page tables, and every vCPU down and not initialised.

        Raises:
            ValueError: bad configuration or domid in use.
            OutOfMachineMemory: not enough machine memory.
        """
        profile = get_profile(config.profile)
        abi = config.abi
        domid = config.domid if config.domid is not None else self._free_domid()
        if domid in self.domains or not 0 <= domid < DOMID_FIRST_RESERVED:
            raise ValueError(f"domid {domid} is in use or reserved")
        if config.memory_mib <= 0:
            raise ValueError("memory_mib must be positive")
        free = self.machine.nr_free_frames - self.outstanding_claims()  # frames claimed for others are not free
        if config.memory_mib * 256 + 1 > free:
            raise OutOfMachineMemory(config.memory_mib * 256 + 1, max(0, free))
        memory = DomainMemory(self.machine, domid, config.memory_mib * 256)
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
        d.controller_pause_count = 1
        self.scheduler.domain_pause(d)
        return d

    def outstanding_claims(self) -> int:
        """Pages claimed and not yet allocated, over every domain (Xen's ``outstanding_claims``)."""
        return sum(d.outstanding_pages for d in self.domains.values())

    def _free_domid(self) -> int:
        domid = 0 if self.hardware_domain is None and not self.domains else 1
        while domid in self.domains:
            domid += 1
        return domid

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
        self.send_global_virq(VIRQ_DOM_EXC)

    def domain(self, domid: int) -> Domain | None:
        """The live domain with id ``domid``, or None."""
        return self.domains.get(domid)

    def domain_by_any_id(self, domid: int, current: Domain) -> Domain | None:
        """``rcu_lock_domain_by_any_id``: ``DOMID_SELF`` is ``current``."""
        if domid == DOMID_SELF:
            return current
        return self.domains.get(domid)

    def states(self) -> dict[int, DomainState]:
        """Lifecycle state of every live domain."""
        return {domid: d.state for domid, d in self.domains.items()}

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
