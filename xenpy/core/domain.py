"""Domains and vCPUs: pause flags and counts, lifecycle, shared_info and vcpu_info, guest memory access.

Implements the state Xen keeps in ``struct domain`` and ``struct vcpu`` (``xen/include/xen/sched.h``) and the
lifecycle of ``xen/common/domain.c`` (``vcpu_create``, ``domain_shutdown``, ``domain_crash``,
``domain_pause_by_systemcontroller``, ``domain_resume``).

Invariants:

* ``vcpu_runnable(v) == not (v.pause_flags or v.pause_count or v.domain.pause_count)`` (spec 2.5).
* A vCPU is created offline (runstate ``offline`` at creation time), with ``_VPF_down`` set and not initialised
  (spec 2.1).
* Only the first shutdown reason is kept (``shutdown_code`` latches once; spec 3.4).
* shared_info lives in one machine frame owned by the domain (not in its p2m, like Xen's xenheap page); its
  initial contents are zero except ``vcpu_info[i].evtchn_upcall_mask = 1`` for i < 32 (spec 7.2).
* A vCPU's vcpu_info is in its shared_info slot (id < 32), in the hypervisor's shared dummy (id >= 32, never
  registered), or wherever VCPUOP_register_vcpu_info put it (spec 4.1). ``vcpu_info_mv`` is always a 64-byte
  view of the current location: the hypervisor reads and writes the guest-visible bytes there.
* All guest-virtual accesses go through ``copy_from_guest`` / ``copy_to_guest`` with the vCPU's current cr3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, IntFlag
from types import ModuleType
from typing import TYPE_CHECKING, Any

from xenpy.abi.arch_x86 import FLAT_KERNEL_CS, FLAT_KERNEL_SS, VGCF_in_kernel
from xenpy.abi.sched import SHUTDOWN_CODE_INVALID, SHUTDOWN_crash, SHUTDOWN_suspend
from xenpy.abi.xen import NR_VIRQS, VIRQ_DOM_EXC, XEN_LEGACY_MAX_VCPUS
from xenpy.core import pagetable
from xenpy.core.console import ConsoleStream
from xenpy.core.memory import PageType
from xenpy.core.runstate import RUNSTATE_offline, RunstateInfo
from xenpy.core.timers import PERIODIC_DEFAULT_NS, init_vcpu_timers
from xenpy.core.vcpu_context import ENTRY_RFLAGS, pack_vcpu_guest_context

if TYPE_CHECKING:
    from xenpy.core.event_channel import EventChannels
    from xenpy.core.grant_table import ActiveGrant, MaptrackEntry
    from xenpy.core.memory import DomainMemory
    from xenpy.core.pagetable import PageTableBuilder
    from xenpy.core.profiles import XenProfile
    from xenpy.core.scheduler import Pcpu, Scheduler
    from xenpy.core.system import System
    from xenpy.core.timers import Timer


class PauseFlags(IntFlag):
    """``v->pause_flags`` bits (``_VPF_*``, spec 2.5)."""

    VPF_blocked = 1 << 0
    VPF_down = 1 << 1
    VPF_blocked_in_xen = 1 << 2
    VPF_migrating = 1 << 3
    VPF_mem_paging = 1 << 4
    VPF_mem_access = 1 << 5
    VPF_mem_sharing = 1 << 6
    VPF_in_reset = 1 << 7
    VPF_parked = 1 << 8


VPF_blocked = PauseFlags.VPF_blocked
VPF_down = PauseFlags.VPF_down
VPF_migrating = PauseFlags.VPF_migrating
_VPF_BLOCKED = int(VPF_blocked)
_VPF_DOWN = int(VPF_down)


class DomainState(Enum):
    """Lifecycle of a domain, as tools see it.

    ::

        PAUSED --unpause--> RUNNING --pause--> PAUSED
        PAUSED/RUNNING --shutdown(reason)--> SHUTDOWN (reason != crash) or CRASHED (reason == crash)
        SHUTDOWN --resume--> PAUSED/RUNNING
        any --destroy--> DESTROYED
    """

    PAUSED = "paused"
    RUNNING = "running"
    SHUTDOWN = "shutdown"
    CRASHED = "crashed"
    DESTROYED = "destroyed"


@dataclass(frozen=True)
class MemoryStats:
    """A domain's memory counters (KiB), as Xen keeps them.

    Attributes:
        total_kib: its memory now (``tot_pages``).
        max_kib: the most it may have (``max_pages``).
        ballooned_kib: frames its balloon gave back (XENMEM_decrease_reservation), kept for it to take again.
        claimed_kib: claimed and not yet allocated (``outstanding_pages``, XENMEM_claim_pages).
        shared_kib: shared with other domains by page sharing (``shr_pages``; xenpy shares none: 0).
        free_kib: how much more it may take (``max - total``).
    """

    total_kib: int
    max_kib: int
    ballooned_kib: int
    claimed_kib: int
    shared_kib: int = 0

    @property
    def free_kib(self) -> int:
        """How much more it may take (``max_kib - total_kib``)."""
        return max(0, self.max_kib - self.total_kib)


#: Observer of a domain's lifecycle: ``callback(domain, old_state, new_state)``.
DomainWatcher = Callable[["Domain", DomainState, DomainState], None]


class VcpuArch:
    """A PV vCPU's register and control state (``v->arch``), as VCPUOP_initialise loads it (spec 1.3).

    The CPU engine reads and writes this state; until it exists, it is what ``arch_set_info_guest`` stored.

    Attributes:
        user_regs: general registers and segment selectors by ``cpu_user_regs`` field name.
        trap_ctxt: 256 trap-table entries as ``(vector, flags, cs, address)``.
        ctrlreg: control registers; ``ctrlreg[3]`` is the kernel cr3 (``mfn << 12``), ``ctrlreg[1]`` the user
            L4 (PV64).
        debugreg: debug registers as the guest reads them: DR0-DR3, DR6 and DR7 (index 4 and 5 stay 0; see
            :mod:`xenpy.core.debugreg`).
        dr7_emul: the I/O-breakpoint enables of DR7, emulated and kept out of ``debugreg[7]`` (``pv.dr7_emul``).
        vgc_flags: the ``VGCF_*`` flags given at initialisation.
        kernel_mode: Xen's ``TF_kernel_mode``.
        iopl: the virtual IOPL (``pv.iopl``).
        event_callback_eip / failsafe_callback_eip / syscall_callback_eip: the callbacks (PV32: with their
            ``*_cs``); CALLBACKF_mask_events of failsafe and syscall is kept in ``vgc_flags``.
        syscall32_callback_eip / sysenter_callback_eip: the 32-bit syscall and sysenter callbacks (PV32: with
            ``*_cs``), and ``syscall32_disables_events`` / ``sysenter_disables_events``.
        nmi_pending: an NMI waits for delivery (spec 4.2).
        async_exception_mask: NMI (bit 0) / MCE (bit 1) being handled.
    """

    def __init__(self) -> None:
        self.fpu_ctxt = bytes(512)
        self.fpu_initialised = False
        self.vgc_flags = 0
        self.user_regs: dict[str, int] = {}
        self.trap_ctxt: list[tuple[int, int, int, int]] = [(0, 0, 0, 0)] * 256
        self.ldt_base = 0
        self.ldt_ents = 0
        self.gdt_frames: list[int] = [0] * 16
        self.gdt_ents = 0
        self.kernel_ss = 0
        self.kernel_sp = 0
        self.ctrlreg: list[int] = [0] * 8
        self.debugreg: list[int] = [0] * 8
        self.dr7_emul = 0
        self.event_callback_cs = 0
        self.event_callback_eip = 0
        self.failsafe_callback_cs = 0
        self.failsafe_callback_eip = 0
        self.syscall_callback_eip = 0
        self.syscall32_callback_cs = 0
        self.syscall32_callback_eip = 0
        self.syscall32_disables_events = False
        self.sysenter_callback_cs = 0
        self.sysenter_callback_eip = 0
        self.sysenter_disables_events = False
        self.fs_base = 0
        self.gs_base_kernel = 0
        self.gs_base_user = 0
        self.kernel_mode = True
        self.iopl = 0
        self.nmi_pending = False
        self.async_exception_mask = 0


class Vcpu:
    """One virtual CPU of a domain (Xen's ``struct vcpu``).

    Created by :class:`Domain`; never constructed directly by users.

    Attributes:
        vcpu_id: index in the domain.
        domain: the owning domain.
        pause_flags: ``_VPF_*`` bits (:class:`PauseFlags`).
        pause_count: ``vcpu_pause`` nesting.
        is_initialised: VCPUOP_initialise (or the builder) loaded a context.
        runstate: the hypervisor's runstate record (:class:`RunstateInfo`).
        creation_ns: system time of ``vcpu_create``.
        processor: the pCPU it last ran on (or will run on).
        is_running: currently on a pCPU.
        arch: register and control state (:class:`VcpuArch`).
        runstate_guest_gva: VA area of VCPUOP_register_runstate_memory_area (0 = none).
        runstate_phys_maddr: machine address of the phys runstate area (None = none).
        vcpu_info_maddr: machine address of the current vcpu_info, None while on the dummy.
        vcpu_info_registered: VCPUOP_register_vcpu_info succeeded (can never be undone).
        time_info_guest_gva: VA of the secondary vcpu_time_info (cmd 13), 0 = none.
        time_phys_maddr: machine address of the phys secondary vcpu_time_info (cmd 15), None = none.
        periodic_period_ns / periodic_last_event_ns: periodic timer state (spec 3.1).
        poll_evtchn: the port a one-port SCHEDOP_poll waits for (-1 = any, 0 = none).
        virq_to_evtchn: port bound to each VIRQ on this vCPU (0 = unbound).
    """

    def __init__(self, domain: Domain, vcpu_id: int) -> None:
        system = domain.system
        now = system.clock.now_ns()
        self.domain = domain
        self.vcpu_id = vcpu_id
        self.sched: Scheduler = system.scheduler
        self.pause_flags = _VPF_DOWN
        self.pause_count = 0
        self.is_initialised = False
        self.paused_for_shutdown = False
        self.runstate = RunstateInfo(RUNSTATE_offline, now)
        self.creation_ns = now
        self.processor = vcpu_id % len(system.scheduler.pcpus)
        self.pcpu: Pcpu | None = None
        self.is_running = False
        self.in_runq = False
        self.yield_pending = False
        self.hard_affinity: int | None = None
        self.affinity_override = False
        self.kick_count = 0
        self.arch = VcpuArch()
        # Runstate areas (spec 2.4).
        self.runstate_guest_gva = 0
        self.runstate_phys_maddr: int | None = None
        self.runstate_phys_mfn: int | None = None
        self.need_update_runstate_area = False
        # vcpu_info (spec 4.1).
        self.vcpu_info_registered = False
        self.vcpu_info_mfn: int | None = None
        self.vcpu_info_maddr: int | None = None
        if vcpu_id < XEN_LEGACY_MAX_VCPUS:
            self.set_vcpu_info_maddr(domain.shared_info_maddr + 64 * vcpu_id)
        else:
            self.set_vcpu_info_maddr(None)
        # Secondary time areas (spec 3.6).
        self.time_info_guest_gva = 0
        self.time_phys_maddr: int | None = None
        self.time_phys_mfn: int | None = None
        self.pending_system_time: bytes | None = None
        # Timers and polling (spec 3.1-3.4).
        self.periodic_period_ns = domain.config_periodic_ns
        self.periodic_last_event_ns = 0
        self.periodic_timer: Timer
        self.singleshot_timer: Timer
        self.poll_timer: Timer
        init_vcpu_timers(self)
        self.poll_evtchn = 0
        self.virq_to_evtchn = [0] * NR_VIRQS

    # ------------------------------------------------------------------ state

    @property
    def runnable(self) -> bool:
        """``vcpu_runnable(v)``."""
        return not (self.pause_flags or self.pause_count or self.domain.pause_count)

    @property
    def is_up(self) -> bool:
        """``!(pause_flags & VPF_down)`` (VCPUOP_is_up)."""
        return not self.pause_flags & _VPF_DOWN

    @property
    def in_kernel_mode(self) -> bool:
        """Xen's ``TF_kernel_mode``."""
        return self.arch.kernel_mode

    @property
    def cr3(self) -> int:
        """The page table in use: ``ctrlreg[3]`` in kernel mode, the user L4 ``ctrlreg[1]`` (if any) otherwise."""
        arch = self.arch
        if arch.kernel_mode or not arch.ctrlreg[1]:
            return arch.ctrlreg[3]
        return arch.ctrlreg[1]

    # ------------------------------------------------------------------ guest memory

    def copy_from_guest(self, gva: int, nbytes: int) -> bytes:
        """Read guest virtual memory through this vCPU's page tables.

        Raises:
            GuestFault: the range cannot be read (a handler returns -EFAULT).
        """
        d = self.domain
        return pagetable.copy_from_guest(d.system.machine, self.cr3, gva, nbytes, domid=d.domid)

    def copy_to_guest(self, gva: int, data: bytes | bytearray | memoryview) -> int:
        """Write guest virtual memory; returns the number of bytes NOT copied (0 = success)."""
        d = self.domain
        return pagetable.copy_to_guest(d.system.machine, self.cr3, gva, data, domid=d.domid)

    def copy_to_guest_or_fault(self, gva: int, data: bytes | bytearray | memoryview) -> None:
        """Write guest virtual memory or raise ``GuestFault`` (a handler returns -EFAULT)."""
        d = self.domain
        pagetable.copy_to_guest_or_fault(d.system.machine, self.cr3, gva, data, domid=d.domid)

    # ------------------------------------------------------------------ vcpu_info

    def set_vcpu_info_maddr(self, maddr: int | None) -> None:
        """Point this vCPU's vcpu_info at machine address ``maddr`` (None: the dummy)."""
        d = self.domain
        self.vcpu_info_maddr = maddr
        if maddr is None:
            mv = d.system.dummy_vcpu_info
        else:
            mv = d.system.machine.mv_u8[maddr : maddr + 64]
        self.vcpu_info_mv = mv
        sel = d.vcpu_info_sel_offset
        self.vcpu_info_sel = mv[sel : sel + d.evtchn_word_bytes].cast("Q" if d.evtchn_word_bytes == 8 else "I")

    @property
    def vcpu_info_is_dummy(self) -> bool:
        """True while vcpu_info is the shared dummy (id >= 32, never registered)."""
        return self.vcpu_info_maddr is None

    @property
    def evtchn_upcall_pending(self) -> int:
        """``vcpu_info.evtchn_upcall_pending``."""
        return self.vcpu_info_mv[0]

    @property
    def evtchn_upcall_mask(self) -> int:
        """``vcpu_info.evtchn_upcall_mask``."""
        return self.vcpu_info_mv[1]

    @evtchn_upcall_mask.setter
    def evtchn_upcall_mask(self, value: int) -> None:
        self.vcpu_info_mv[1] = value

    def local_events_need_delivery(self) -> bool:
        """``evtchn_upcall_pending && !evtchn_upcall_mask``."""
        mv = self.vcpu_info_mv
        return bool(mv[0]) and not mv[1]

    def vcpu_info(self) -> Any:
        """The current vcpu_info, parsed (construct container)."""
        return self.domain.abi.vcpu_info.parse(bytes(self.vcpu_info_mv))

    def runstate_info(self) -> tuple[int, int, int, int, int, int]:
        """The hypervisor's raw runstate ``(state, state_entry_time, time[0..3])``."""
        return self.runstate.as_tuple()

    def toggle_guest_mode(self, kernel: bool) -> None:
        """Switch between guest kernel and user mode; on entry to kernel mode, retry pending area writes."""
        from xenpy.core.runstate import retry_on_kernel_entry
        from xenpy.core.systime import update_secondary_system_time

        self.arch.kernel_mode = kernel
        if not kernel:
            return
        retry_on_kernel_entry(self)
        if self.pending_system_time is not None and update_secondary_system_time(self, self.pending_system_time):
            self.pending_system_time = None

    def __repr__(self) -> str:
        return f"<Vcpu d{self.domain.domid}v{self.vcpu_id} flags={self.pause_flags:#x} rs={self.runstate.state}>"


class Domain:
    """A guest domain (Xen's ``struct domain``). Created by :meth:`System.create_domain
    <xenpy.core.system.System.create_domain>`, laid out by a builder (:mod:`xenpy.loader.builder`).

    Attributes:
        domid: domain id.
        name: label.
        system: the machine-wide state (:class:`~xenpy.core.system.System`).
        profile: Xen version profile (:class:`XenProfile`).
        abi: structure layouts of the guest width (``xenpy.abi.x86_64`` or ``xenpy.abi.x86_32``).
        is_compat: a 32-bit PV guest (compat layouts).
        vcpus: every vCPU slot (``max_vcpus``).
        pause_count / controller_pause_count: ``domain_pause`` nesting / toolstack pauses.
        shutdown_code: the latched SHUTDOWN_* reason (``SHUTDOWN_CODE_INVALID`` until one is latched).
        crash_reason: text given to the first :meth:`crash` (None if never crashed).
        crash_exception: the exception that crashed it, if a hypervisor bug did.
        vm_assist: enabled VM assists (bit = VMASST_TYPE_*).
        console: what the domain writes with CONSOLEIO_write (:class:`~xenpy.core.console.ConsoleStream`).
        memory: its pseudo-physical memory (``DomainMemory``).
        shared_info_mfn: machine frame of shared_info.
        evtchn: its event channels.
        poll_mask: bit i set while vCPU i polls (SCHEDOP_poll).
    """

    def __init__(
        self,
        system: System,
        domid: int,
        *,
        name: str,
        max_vcpus: int,
        profile: XenProfile,
        abi: ModuleType,
        memory: DomainMemory,
        shared_info_mfn: int,
        max_evtchn_port: int,
        is_hardware_domain: bool = False,
        periodic_period_ns: int = PERIODIC_DEFAULT_NS,
    ) -> None:
        from xenpy.abi.cstruct import fast_codec
        from xenpy.core.event_channel import EventChannels
        from xenpy.core.timers import init_domain_watchdogs

        if max_vcpus < 1:
            raise ValueError("a domain needs at least one vCPU")
        self.system = system
        self.domid = domid
        self.name = name or f"d{domid}"
        self.profile = profile
        self.abi = abi
        self.is_compat = abi.__name__.endswith("x86_32")
        self.is_hardware_domain = is_hardware_domain
        self.creation_ns = system.clock.now_ns()
        self.memory = memory
        self.shared_info_mfn = shared_info_mfn
        self.shared_info_maddr = shared_info_mfn << pagetable.PAGE_SHIFT
        self.config_periodic_ns = periodic_period_ns
        # Width-dependent layout facts, from the ABI definitions.
        self.evtchn_word_bytes = abi.shared_info.type_of("evtchn_pending").element.size
        self.bits_per_evtchn_word = 8 * self.evtchn_word_bytes
        self.vcpu_info_sel_offset = abi.vcpu_info.offset_of("evtchn_pending_sel")
        self.runstate_codec = fast_codec(abi.vcpu_runstate_info)
        self.runstate_entry_offset = abi.vcpu_runstate_info.offset_of("state_entry_time")
        self.time_codec = fast_codec(abi.vcpu_time_info)
        self.vcpu_info_size = abi.vcpu_info.sizeof()
        # Lifecycle.
        self.pause_count = 0
        self.controller_pause_count = 0
        self.shutdown_code = SHUTDOWN_CODE_INVALID
        self.is_shutting_down = False
        self.is_shut_down = False
        self.is_dying = False
        self.crash_reason: str | None = None
        self.crash_exception: BaseException | None = None
        self.suspend_evtchn = 0
        #: The TSC incarnation (``d->arch.incarnation``): 0 at creation, one more in each restore.
        self.tsc_incarnation = 0
        self._watchers: list[DomainWatcher] = []
        self._last_state: DomainState | None = None
        self.vm_assist = 0
        self.console = ConsoleStream()
        self.poll_mask = 0
        #: event-channel ports the hypervisor set pending (a notification that found the port already pending
        #: is not counted), for monitors.
        self.events_sent = 0
        self.watchdog_timers: list[Timer] = []
        self.watchdog_inuse_map = 0
        # Guest address space for the Python API (set by the builder).
        self.pagetables: PageTableBuilder | None = None
        self.virt_base = 0
        self._alloc_next_gva = 0
        self._alloc_end_gva = 0
        # PV memory management (xenpy.core.mm): pinned page tables (PGT_pinned), a counter bumped on every
        # page-table change or TLB flush request (CPU engines flush their cached translations when it moves),
        # and the page counts of XENMEM_current_reservation / maximum_reservation.
        self.pinned_tables: set[int] = set()
        self.mm_generation = 0
        self.tot_pages = memory.nr_pages
        self.max_pages = memory.nr_pages
        self.ballooned_mfns: dict[int, None] = {}
        #: Pages of a claim not yet allocated (XENMEM_claim_pages, ``d->outstanding_pages``).
        self.outstanding_pages = 0
        #: The grant table (``xenpy.core.grant_table``): its shared frames, the version of their entries (1 or 2,
        #: GNTTABOP_set_version) and, in version 2, its status frames.
        self.grant_frames: list[int] = []
        self.grant_version = 1
        self.grant_status_frames: list[int] = []
        #: Active entries of this domain's grants (by ref), and this domain's grant mappings (by handle).
        self.grant_active: dict[int, ActiveGrant] = {}
        self.maptrack: list[MaptrackEntry | None] = []
        self._init_shared_info()
        self.evtchn: EventChannels = EventChannels(self, max_evtchn_port)
        self.vcpus: list[Vcpu] = [Vcpu(self, i) for i in range(max_vcpus)]
        init_domain_watchdogs(self)

    # ------------------------------------------------------------------ vcpus

    @property
    def max_vcpus(self) -> int:
        """Number of vCPU slots."""
        return len(self.vcpus)

    def vcpu(self, vcpu_id: int) -> Vcpu | None:
        """``domain_vcpu(d, id)``: the vCPU, or None when ``id`` is out of range."""
        if 0 <= vcpu_id < len(self.vcpus):
            return self.vcpus[vcpu_id]
        return None

    # ------------------------------------------------------------------ shared_info

    def _init_shared_info(self) -> None:
        machine = self.system.machine
        machine.zero_frame(self.shared_info_mfn)
        base = self.shared_info_maddr
        mask_offset = self.abi.vcpu_info.offset_of("evtchn_upcall_mask")
        for i in range(XEN_LEGACY_MAX_VCPUS):
            machine.mv_u8[base + 64 * i + mask_offset] = 1
        nwords = self.abi.shared_info.type_of("evtchn_pending").count
        fmt = "Q" if self.evtchn_word_bytes == 8 else "I"
        pend = base + self.abi.shared_info.offset_of("evtchn_pending")
        mask = base + self.abi.shared_info.offset_of("evtchn_mask")
        size = nwords * self.evtchn_word_bytes
        self.evtchn_pending_words = machine.mv_u8[pend : pend + size].cast(fmt)
        self.evtchn_mask_words = machine.mv_u8[mask : mask + size].cast(fmt)

    def shared_info_bytes(self) -> bytes:
        """The raw shared_info structure."""
        size = self.abi.shared_info.sizeof()
        return self.system.machine.read(self.shared_info_maddr, size)

    def shared_info(self) -> Any:
        """shared_info, parsed (construct container)."""
        return self.abi.shared_info.parse(self.shared_info_bytes())

    # ------------------------------------------------------------------ lifecycle

    @property
    def state(self) -> DomainState:
        """The lifecycle state (:class:`DomainState`)."""
        if self.is_dying:
            return DomainState.DESTROYED
        if self.is_shut_down:
            return DomainState.CRASHED if self.shutdown_code == SHUTDOWN_crash else DomainState.SHUTDOWN
        if self.controller_pause_count:
            return DomainState.PAUSED
        return DomainState.RUNNING

    @property
    def shutdown_reason(self) -> int | None:
        """The SHUTDOWN_* reason once shut down, else None."""
        return self.shutdown_code if self.is_shut_down else None

    def watch(self, callback: DomainWatcher) -> Callable[[], None]:
        """Call ``callback(domain, old, new)`` on every lifecycle state change; returns an unsubscribe function."""
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback) if callback in self._watchers else None

    def _notify(self) -> None:
        new = self.state
        old = self._last_state
        if old is new:
            return
        self._last_state = new
        if old is None:
            return
        for callback in list(self._watchers):
            callback(self, old, new)

    def pause(self) -> None:
        """``domain_pause_by_systemcontroller``: pause every vCPU (synchronously descheduled)."""
        self.controller_pause_count += 1
        self.system.scheduler.domain_pause(self)
        self._notify()

    def unpause(self) -> None:
        """``domain_unpause_by_systemcontroller``.

        Raises:
            RuntimeError: the domain is not paused by the toolstack (Xen's -EINVAL).
        """
        if self.controller_pause_count == 0:
            raise RuntimeError(f"domain {self.domid} is not paused")
        self.controller_pause_count -= 1
        self.system.scheduler.domain_unpause(self)
        self._notify()
        self.system.do_softirqs()

    def shutdown(self, reason: int) -> int:
        """``domain_shutdown(d, reason)`` (spec 3.4): latch the first reason, pause every vCPU, notify.

        ``reason`` is truncated to 8 bits and not validated. Once every vCPU is paused the domain is shut
        down and VIRQ_DOM_EXC goes to its global handler (or the suspend event channel is signalled).

        Returns:
            0.
        """
        reason &= 0xFF
        if self.shutdown_code == SHUTDOWN_CODE_INVALID:
            self.shutdown_code = reason
        if self.is_shutting_down:
            return 0
        self.is_shutting_down = True
        sched = self.system.scheduler
        for v in self.vcpus:
            sched.vcpu_pause_nosync(v)
            v.paused_for_shutdown = True
        self._finalise_shutdown()
        if self.system.current is None:
            # Not inside a hypercall (a toolstack or timer caller): deschedule the vCPUs now.
            self.system.do_softirqs()
        return 0

    def _finalise_shutdown(self) -> None:
        if self.is_shut_down or not all(v.paused_for_shutdown for v in self.vcpus):
            return
        self.is_shut_down = True
        self.console.flush()
        if self.shutdown_code == SHUTDOWN_suspend and self.suspend_evtchn:
            self.evtchn.evtchn_send(self.suspend_evtchn)
        else:
            self.system.send_global_virq(VIRQ_DOM_EXC)
        self._notify()

    def crash(self, reason_text: str, exc: BaseException | None = None) -> None:
        """``domain_crash``: shut down with SHUTDOWN_crash, keeping ``reason_text`` (and ``exc``) for tools.

        The first crash report is kept; the shutdown reason stays the first one latched.
        """
        if self.crash_reason is None:
            self.crash_reason = reason_text
            self.crash_exception = exc
        self.shutdown(SHUTDOWN_crash)

    def resume(self) -> None:
        """``domain_resume``: undo a shutdown (e.g. a cancelled suspend); vCPUs paused for it are unpaused."""
        if self.is_dying:
            raise RuntimeError(f"domain {self.domid} is destroyed")
        sched = self.system.scheduler
        self.is_shutting_down = False
        self.is_shut_down = False
        self.shutdown_code = SHUTDOWN_CODE_INVALID
        for v in self.vcpus:
            if v.paused_for_shutdown:
                v.paused_for_shutdown = False
                sched.vcpu_unpause(v)
        self._notify()
        self.system.do_softirqs()

    # ------------------------------------------------------------------ guest memory (Python API)

    def memory_stats(self) -> MemoryStats:
        """The domain's memory counters now."""
        kib = pagetable.PAGE_SIZE // 1024
        return MemoryStats(self.tot_pages * kib, self.max_pages * kib, len(self.ballooned_mfns) * kib,
                           self.outstanding_pages * kib)

    def set_address_space(self, pagetables: PageTableBuilder, virt_base: int, alloc_start: int, alloc_end: int) -> None:
        """Adopt the bootstrap page tables a domain builder made: ``pagetables`` maps the domain from
        ``virt_base``; :meth:`alloc_guest` hands out ``[alloc_start, alloc_end)``. The builder's L4 counts as
        pinned, as the toolstack pins it (spec 7.2)."""
        self.pagetables = pagetables
        self.virt_base = virt_base
        self._alloc_next_gva = alloc_start
        self._alloc_end_gva = alloc_end
        l4 = pagetables.l4_mfn
        if self.system.machine.page_type(l4) == PageType.l4:
            self.pinned_tables.add(l4)

    def creation_done(self) -> None:
        """The builder has finished: the current lifecycle state is the first one watchers are told about."""
        self._last_state = self.state

    @property
    def cr3(self) -> int:
        """The kernel page table the builder made (``l4_mfn << 12``)."""
        if self.pagetables is None:
            raise RuntimeError(f"domain {self.domid} has no guest address space")
        return self.pagetables.cr3

    def alloc_guest(self, nbytes: int, align: int = 16) -> int:
        """Reserve ``nbytes`` of zeroed, writable guest memory; returns its guest virtual address.

        Raises:
            MemoryError: the domain's data pages are exhausted.
        """
        if nbytes <= 0 or align <= 0 or align & (align - 1):
            raise ValueError("nbytes must be > 0 and align a power of two")
        gva = (self._alloc_next_gva + align - 1) & ~(align - 1)
        if gva + nbytes > self._alloc_end_gva:
            raise MemoryError(f"domain {self.domid}: guest allocation of {nbytes} bytes does not fit")
        self._alloc_next_gva = gva + nbytes
        return gva

    def alloc_guest_page(self) -> int:
        """Reserve one whole page (page-aligned); returns its gva."""
        return self.alloc_guest(pagetable.PAGE_SIZE, pagetable.PAGE_SIZE)

    def write_guest(self, gva: int, data: bytes | bytearray | memoryview) -> None:
        """Write guest memory through the domain's page tables (``GuestFault`` if not writable)."""
        pagetable.copy_to_guest_or_fault(self.system.machine, self.cr3, gva, data, domid=self.domid)

    def read_guest(self, gva: int, nbytes: int) -> bytes:
        """Read guest memory through the domain's page tables (``GuestFault`` if not mapped)."""
        return pagetable.copy_from_guest(self.system.machine, self.cr3, gva, nbytes, domid=self.domid)

    def put_struct(self, struct_name: str, value: dict[str, Any] | None = None, **fields: Any) -> int:
        """Build Xen structure ``struct_name`` (of this domain's width) in fresh guest memory; returns its gva.

        Example: ``dom.put_struct("vcpu_set_periodic_timer", period_ns=10**6)``.
        """
        struct = getattr(self.abi, struct_name)
        data = struct.build({**(value or {}), **fields})
        gva = self.alloc_guest(len(data), 8)
        self.write_guest(gva, data)
        return gva

    def put_vcpu_context(self, fields: dict[str, int] | None = None) -> int:
        """Place a valid PV64 ``vcpu_guest_context`` in fresh guest memory for ``VCPUOP_initialise``; returns its
        gva. Kernel mode, the domain's page tables, rip at the start of its mapping, and a fresh stack page;
        ``fields`` (flattened names such as ``"user_regs.rip"``, ``"ctrlreg[3]"``) override any of these."""
        stack_top = self.alloc_guest_page() + pagetable.PAGE_SIZE
        values = {
            "flags": int(VGCF_in_kernel),
            "user_regs.rip": self.virt_base,
            "user_regs.rsp": stack_top,
            "user_regs.rflags": ENTRY_RFLAGS,
            "user_regs.cs": int(FLAT_KERNEL_CS),
            "user_regs.ss": int(FLAT_KERNEL_SS),
            "kernel_ss": int(FLAT_KERNEL_SS),
            "kernel_sp": stack_top,
            "ctrlreg[3]": self.cr3,
            **(fields or {}),
        }
        data = pack_vcpu_guest_context(self.abi, values)
        gva = self.alloc_guest(len(data), 16)
        self.write_guest(gva, data)
        return gva

    def get_struct(self, struct_name: str, gva: int) -> Any:
        """Read and parse Xen structure ``struct_name`` at ``gva`` (construct container)."""
        struct = getattr(self.abi, struct_name)
        return struct.parse(self.read_guest(gva, struct.sizeof()))

    def gva_to_maddr(self, gva: int, *, write: bool = False) -> int:
        """Machine address of ``gva`` (``GuestFault`` if not mapped)."""
        return pagetable.translate(self.system.machine, self.cr3, gva, write=write, domid=self.domid)

    def gva_to_mfn(self, gva: int) -> int:
        """Machine frame mapped at ``gva``."""
        return self.gva_to_maddr(gva) >> pagetable.PAGE_SHIFT

    def __repr__(self) -> str:
        return f"<Domain {self.domid} {self.name!r} {self.state.value} vcpus={len(self.vcpus)}>"
