"""The scheduler: simulated pCPUs, wake, sleep, block, yield, pause, kick, the context switch; a policy decides.

Implements the observable behaviour of ``xen/common/sched/core.c`` (``vcpu_wake``, ``vcpu_sleep_nosync``,
``vcpu_sleep_sync``, ``vcpu_block``, ``vcpu_yield``, ``vcpu_pause``/``unpause``, ``domain_pause``/``unpause``,
``vcpu_unblock``, ``vcpu_kick``, ``schedule``, ``sched_switch_units`` and ``sched_context_switch``). What runs
next and for how long is the policy's, as Xen's ``struct scheduler`` ops: :class:`~xenpy.core.sched_credit2.
Credit2Scheduler` (Xen's default, xenpy's too) or :class:`~xenpy.core.sched_fifo.FifoScheduler` (round-robin).

Scheduling decisions happen in :meth:`Scheduler.schedule`, which is what Xen's SCHEDULE_SOFTIRQ runs: the policy's
``do_schedule`` returns the next vCPU and its slice, and the pCPU's scheduler timer is armed at ``now + slice``
(``do_schedule`` in core.c; -1 arms none). A pCPU is rescheduled when its vCPU blocks, yields, goes down or is
paused (``need_resched``), when its slice ends, and when the policy tickles it. :meth:`Scheduler.do_softirqs`
runs expired timers and pending reschedules until nothing is left, as Xen does before returning to a guest.

Runstate transitions all go through :func:`xenpy.core.runstate.vcpu_runstate_change` (spec 2.5):

* ``vcpu_wake``: blocked/offline -> runnable if ``vcpu_runnable``; blocked -> offline if not runnable and not
  ``_VPF_blocked``;
* ``vcpu_sleep_nosync``: runnable -> offline when no longer runnable;
* switch: prev -> blocked (``_VPF_blocked``), runnable or offline; next -> running; both at ``now``;
* ``continue_running`` (the same vCPU is picked again): no transition and no runstate-area write.

Time: :meth:`Scheduler.run_until` moves the clock from event to event (timer deadlines + 1 ns, slice ends). While
no CPU engine is attached, a running vCPU simply consumes virtual time. An engine plugs in as a
:class:`VcpuExecutor`: for each busy pCPU and step the scheduler asks it to run the current vCPU for at most the
step's budget; whatever the vCPU does (hypercalls that block, yield or down it) goes through the same
functions, and the scheduler picks the next vCPU for the remainder of the step.

Determinism: pCPUs are visited in id order, the policies break ties by arrival, timers by arming order. With
the virtual clock, the same inputs give the same schedule to the nanosecond.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from xenpy.core.runstate import (
    RUNSTATE_blocked,
    RUNSTATE_offline,
    RUNSTATE_runnable,
    RUNSTATE_running,
    update_runstate_area_or_retry,
    vcpu_runstate_change,
)
from xenpy.core.systime import update_vcpu_system_time
from xenpy.core.timers import vcpu_periodic_timer_work

if TYPE_CHECKING:
    from collections.abc import Sequence

    from xenpy.core.domain import Domain, Vcpu
    from xenpy.core.system import System

_VPF_BLOCKED = 1
_NEVER = 1 << 62


class VcpuExecutor(Protocol):
    """A CPU engine, as the scheduler drives it.

    ``run`` executes ``vcpu`` (the current vCPU of ``pcpu``) for at most ``budget_ns`` of virtual time starting
    at ``start_ns`` and returns the time it consumed (``0 < consumed <= budget_ns``; a vCPU that halts or
    blocks may stop early). The hypervisor's clock reads ``start_ns`` for the whole call, so hypercalls made
    by the vCPU see the step's start time. A hypercall that blocks, yields or downs the vCPU leaves the pCPU
    with ``need_resched`` set or a different current vCPU; the engine should then return.
    """

    def run(self, pcpu: Pcpu, vcpu: Vcpu, start_ns: int, budget_ns: int) -> int: ...


class SchedPolicy(Protocol):
    """A scheduling policy (Xen's ``struct scheduler`` ops), as :class:`Scheduler` drives it.

    ``wake`` queues a vCPU that became runnable and is on no pCPU (and may tickle pCPUs with
    :meth:`Scheduler.raise_schedule_softirq`); ``remove`` takes a queued vCPU out; ``context_saved`` sees every
    vCPU that left its pCPU (and queues it if it is still runnable); ``do_schedule`` picks what runs on a pCPU
    (``prev`` itself to continue, None for idle) and its slice in ns (-1: no timer), taking the pick out of the
    queue. ``idle_pulls``: an idle pCPU
    looks for work at every softirq (``has_work``) instead of waiting to be tickled.
    """

    name: str
    idle_pulls: bool
    runq: Sequence[Vcpu]

    def attach(self, sched: Scheduler) -> None: ...
    def enqueue(self, v: Vcpu, *, front: bool = False) -> None: ...
    def remove(self, v: Vcpu) -> None: ...
    def wake(self, v: Vcpu, now: int) -> None: ...
    def context_saved(self, prev: Vcpu, now: int) -> None: ...
    def requeue_front(self, v: Vcpu) -> None: ...
    def has_work(self, pcpu: Pcpu) -> bool: ...
    def do_schedule(
        self, pcpu: Pcpu, prev: Vcpu | None, now: int, can_continue: bool, yielding: bool
    ) -> tuple[Vcpu | None, int]: ...
    def slice_for(self, pcpu: Pcpu, v: Vcpu, now: int) -> int: ...


class Pcpu:
    """A simulated physical CPU.

    Attributes:
        cpu_id: its index.
        curr: the vCPU running on it, or None when idle.
        slice_end_ns: when the current vCPU's slice ends.
        need_resched: a SCHEDULE_SOFTIRQ is pending.
    """

    __slots__ = ("cpu_id", "curr", "need_resched", "nr_switches", "slice_end_ns")

    def __init__(self, cpu_id: int) -> None:
        self.cpu_id = cpu_id
        self.curr: Vcpu | None = None
        self.slice_end_ns = _NEVER
        self.need_resched = False
        self.nr_switches = 0

    def __repr__(self) -> str:
        curr = "idle" if self.curr is None else f"d{self.curr.domain.domid}v{self.curr.vcpu_id}"
        return f"<Pcpu {self.cpu_id} {curr}>"


class Scheduler:
    """The scheduler of all vCPUs of a hypervisor over ``nr_pcpus`` simulated pCPUs, with ``policy`` deciding.

    Args:
        system: the machine-wide state (clock, timers).
        nr_pcpus: number of pCPUs (>= 1).
        policy: the scheduling policy.
    """

    def __init__(self, system: System, nr_pcpus: int, policy: SchedPolicy) -> None:
        if nr_pcpus < 1:
            raise ValueError("need at least one pCPU")
        self.system = system
        self.clock = system.clock
        self.timers = system.timers
        self.pcpus = [Pcpu(i) for i in range(nr_pcpus)]
        self.policy = policy
        policy.attach(self)
        self.executor: VcpuExecutor | None = None
        self.softirq_pending = False
        self.in_softirq = False
        self.nr_context_switches = 0

    @property
    def runq(self) -> Sequence[Vcpu]:
        """The queued vCPUs, in the policy's order (the next to run first)."""
        return self.policy.runq

    def raise_schedule_softirq(self, pcpu: Pcpu) -> None:
        """Ask ``pcpu`` to reschedule at the next softirq (``raise_softirq(SCHEDULE_SOFTIRQ)``)."""
        pcpu.need_resched = True
        self.softirq_pending = True

    # ------------------------------------------------------------------ wake / sleep

    def raise_timer_softirq(self) -> None:
        """TIMER_SOFTIRQ: expired timers fire at the next :meth:`do_softirqs` (before the return to a guest)."""
        self.softirq_pending = True

    def vcpu_wake(self, v: Vcpu) -> None:
        """``vcpu_wake``: make a runnable vCPU eligible to run (spec 2.5)."""
        if v.runnable:
            if v.runstate.state >= RUNSTATE_blocked:
                vcpu_runstate_change(v, RUNSTATE_runnable, self.clock.now_ns())
            if not v.is_running and not v.in_runq:
                self.policy.wake(v, self.clock.now_ns())
        elif not v.pause_flags & _VPF_BLOCKED and v.runstate.state == RUNSTATE_blocked:
            vcpu_runstate_change(v, RUNSTATE_offline, self.clock.now_ns())

    def vcpu_sleep_nosync(self, v: Vcpu) -> None:
        """``vcpu_sleep_nosync``: a vCPU that is no longer runnable leaves the run queue or its pCPU."""
        if v.runnable:
            return
        if v.runstate.state == RUNSTATE_runnable:
            vcpu_runstate_change(v, RUNSTATE_offline, self.clock.now_ns())
        if v.in_runq:
            self.policy.remove(v)
        if v.is_running and v.pcpu is not None:
            self.raise_schedule_softirq(v.pcpu)

    def vcpu_sleep_sync(self, v: Vcpu) -> None:
        """``vcpu_sleep_sync``: as nosync, then deschedule it now if it is still on a pCPU."""
        self.vcpu_sleep_nosync(v)
        if v.is_running and not v.runnable and v.pcpu is not None:
            self.schedule(v.pcpu)

    def vcpu_pause(self, v: Vcpu) -> None:
        """``vcpu_pause``: count a pause and wait until ``v`` is descheduled."""
        v.pause_count += 1
        self.vcpu_sleep_sync(v)

    def vcpu_pause_nosync(self, v: Vcpu) -> None:
        """``vcpu_pause_nosync``."""
        v.pause_count += 1
        self.vcpu_sleep_nosync(v)

    def vcpu_unpause(self, v: Vcpu) -> None:
        """``vcpu_unpause``: wake ``v`` when the last pause goes."""
        if v.pause_count <= 0:
            raise RuntimeError(f"{v!r} is not paused")
        v.pause_count -= 1
        if v.pause_count == 0:
            self.vcpu_wake(v)

    def domain_pause(self, d: Domain) -> None:
        """``domain_pause``: count a domain pause and deschedule every vCPU."""
        d.pause_count += 1
        for v in d.vcpus:
            self.vcpu_sleep_sync(v)

    def domain_unpause(self, d: Domain) -> None:
        """``domain_unpause``: wake every vCPU when the last domain pause goes."""
        if d.pause_count <= 0:
            raise RuntimeError(f"domain {d.domid} is not paused")
        d.pause_count -= 1
        if d.pause_count == 0:
            for v in d.vcpus:
                self.vcpu_wake(v)

    def vcpu_unblock(self, v: Vcpu) -> None:
        """``vcpu_unblock``: clear ``_VPF_blocked``, end any poll, and wake ``v``.

        The poll's timeout stays armed (Xen stops it nowhere): it wakes a later poll of ``v`` that is still
        going when it fires (spec 3.4).
        """
        if not v.pause_flags & _VPF_BLOCKED:
            return
        v.pause_flags &= ~_VPF_BLOCKED
        d = v.domain
        bit = 1 << v.vcpu_id
        if d.poll_mask & bit:
            d.poll_mask &= ~bit
            v.poll_evtchn = 0
        self.vcpu_wake(v)

    def vcpu_kick(self, v: Vcpu) -> None:
        """``vcpu_kick``: unblock ``v``; if it is running and is not the current vCPU, IPI it (``kick_count``)."""
        running = v.is_running
        self.vcpu_unblock(v)
        if running and v is not self.system.current:
            v.kick_count += 1
            for hook in self.system.kick_hooks:
                hook(v)

    def vcpu_block(self, v: Vcpu) -> bool:
        """``vcpu_block`` for the current vCPU: set ``_VPF_blocked`` unless events need delivery.

        Returns:
            True if the vCPU blocks (its pCPU reschedules), False if it returned at once.
        """
        v.pause_flags |= _VPF_BLOCKED
        if v.local_events_need_delivery():
            v.pause_flags &= ~_VPF_BLOCKED
            return False
        if v.pcpu is not None:
            self.raise_schedule_softirq(v.pcpu)
        return True

    def vcpu_yield(self, v: Vcpu) -> None:
        """``vcpu_yield``: let another runnable vCPU run; if none, ``v`` continues (no runstate change)."""
        v.yield_pending = True
        if v.pcpu is not None:
            self.raise_schedule_softirq(v.pcpu)

    def vcpu_force_reschedule(self, v: Vcpu) -> None:
        """``vcpu_force_reschedule`` (<= 4.12): a running ``v`` goes running -> offline -> runnable -> running."""
        from xenpy.core.domain import VPF_migrating

        if not v.is_running or v.pcpu is None:
            return
        pcpu = v.pcpu
        v.pause_flags |= int(VPF_migrating)
        self.vcpu_sleep_nosync(v)
        self.schedule(pcpu)
        v.pause_flags &= ~int(VPF_migrating)
        self.vcpu_wake(v)
        if v.in_runq and pcpu.curr is None:
            self.policy.requeue_front(v)

    def set_affinity(self, v: Vcpu, cpu: int | None) -> None:
        """Pin ``v`` to pCPU ``cpu`` (None: any pCPU); a vCPU running elsewhere is moved at once."""
        if cpu is not None and not 0 <= cpu < len(self.pcpus):
            raise ValueError(f"no pCPU {cpu}")
        v.hard_affinity = cpu
        if cpu is not None:
            v.processor = cpu
        if v.is_running and v.pcpu is not None and cpu is not None and v.pcpu.cpu_id != cpu:
            self.raise_schedule_softirq(v.pcpu)
        self.softirq_pending = True

    # ------------------------------------------------------------------ context switch

    def schedule(self, pcpu: Pcpu) -> None:
        """SCHEDULE_SOFTIRQ on ``pcpu``: the policy keeps the current vCPU or picks another; arm the slice."""
        pcpu.need_resched = False
        now = self.clock.now_ns()
        prev = pcpu.curr
        if prev is not None:
            can_continue = prev.runnable and (prev.hard_affinity is None or prev.hard_affinity == pcpu.cpu_id)
            yielding = prev.yield_pending
            prev.yield_pending = False
        else:
            can_continue = yielding = False
        nxt, slice_ns = self.policy.do_schedule(pcpu, prev, now, can_continue, yielding)
        if nxt is prev:
            # continue_running (or idle staying idle): no runstate change and no area update.
            pcpu.slice_end_ns = now + slice_ns if nxt is not None and slice_ns >= 0 else _NEVER
            return
        self.context_switch(pcpu, nxt, now, slice_ns)

    def context_switch(self, pcpu: Pcpu, nxt: Vcpu | None, now: int, slice_ns: int | None = None) -> None:
        """Switch ``pcpu`` from its current vCPU to ``nxt`` (``sched_switch_units`` + ``context_switch``), for
        ``slice_ns`` (None: the policy's slice for ``nxt``); ``prev`` goes back to the policy (``context_saved``),
        which queues it if it is still runnable."""
        prev = pcpu.curr
        if nxt is not None and nxt.in_runq:
            self.policy.remove(nxt)
        if prev is not None:
            if prev.pause_flags & _VPF_BLOCKED:
                new_state = RUNSTATE_blocked
            elif prev.runnable:
                new_state = RUNSTATE_runnable
            else:
                new_state = RUNSTATE_offline
            vcpu_runstate_change(prev, new_state, now)
            prev.is_running = False
            prev.pcpu = None
        if nxt is not None:
            if slice_ns is None:
                slice_ns = self.policy.slice_for(pcpu, nxt, now)
            vcpu_runstate_change(nxt, RUNSTATE_running, now)
            nxt.is_running = True
            nxt.pcpu = pcpu
            nxt.processor = pcpu.cpu_id
        pcpu.slice_end_ns = now + slice_ns if nxt is not None and slice_ns is not None and slice_ns >= 0 else _NEVER
        pcpu.curr = nxt
        if prev is not None:
            self.policy.context_saved(prev, now)
        pcpu.nr_switches += 1
        self.nr_context_switches += 1
        # sched_context_switch: the periodic timer runs only while scheduled (spec 3.1).
        if prev is not None:
            prev.periodic_timer.stop()
        if nxt is not None:
            vcpu_periodic_timer_work(nxt)
        # context_switch: runstate areas, prev first, then next, then next's time info (spec 2.4, 3.6).
        if prev is not None:
            update_runstate_area_or_retry(prev)
        if nxt is not None:
            update_runstate_area_or_retry(nxt)
            update_vcpu_system_time(nxt)
        for hook in self.system.switch_hooks:
            hook(pcpu, prev, nxt)

    def schedule_in(self, v: Vcpu) -> Pcpu:
        """Put the runnable, queued ``v`` on a pCPU now: an idle one (lowest id) if any, else preempt its own.

        The preempted vCPU goes back to the head of the run queue.

        Raises:
            RuntimeError: ``v`` is not runnable.
        """
        if v.is_running and v.pcpu is not None:
            return v.pcpu
        if not v.runnable:
            raise RuntimeError(f"{v!r} is not runnable")
        candidates = self.pcpus if v.hard_affinity is None else [self.pcpus[v.hard_affinity]]
        target = next((p for p in candidates if p.curr is None), None)
        if target is None:
            target = self.pcpus[v.processor] if v.hard_affinity is None else candidates[0]
        now = self.clock.now_ns()
        prev = target.curr
        self.context_switch(target, v, now)
        if prev is not None and prev.in_runq:
            self.policy.requeue_front(prev)
        return target

    # ------------------------------------------------------------------ softirqs and time

    def do_softirqs(self) -> None:
        """Run expired timers and pending reschedules until none is left (``do_softirq``).

        Re-entrant calls (from a timer callback) only flag the work for the running loop.
        """
        if self.in_softirq:
            self.softirq_pending = True
            return
        timers = self.timers
        clock = self.clock
        pcpus = self.pcpus
        self.in_softirq = True
        try:
            while True:
                fired = timers.fire_expired(clock.now_ns())
                if not fired and not self.softirq_pending:
                    return
                self.softirq_pending = False
                for pcpu in pcpus:
                    if pcpu.need_resched:
                        self.schedule(pcpu)
                policy = self.policy
                if policy.idle_pulls and policy.runq:
                    for pcpu in pcpus:
                        if pcpu.curr is None and policy.has_work(pcpu):
                            self.schedule(pcpu)
        finally:
            self.in_softirq = False

    def next_event_ns(self, limit_ns: int) -> int:
        """The next time something happens (timer firing or slice end), capped at ``limit_ns``."""
        t_next = limit_ns
        fire = self.timers.next_fire_time()
        if fire is not None and fire < t_next:
            t_next = fire
        for pcpu in self.pcpus:
            if pcpu.curr is not None and pcpu.slice_end_ns < t_next:
                t_next = pcpu.slice_end_ns
        return t_next

    def run_until(self, t_end_ns: int, *, max_step_ns: int | None = None) -> None:
        """Advance the simulation to system time ``t_end_ns``.

        Each step goes to the next event (a timer firing, a slice end, or ``t_end_ns``; at most
        ``max_step_ns`` later). Running vCPUs consume the step (through the executor if one is attached);
        idle time is skipped at once.
        """
        clock = self.clock
        pcpus = self.pcpus
        while True:
            self.do_softirqs()
            now = clock.now_ns()
            expired = False
            for pcpu in pcpus:
                if pcpu.curr is not None and pcpu.slice_end_ns <= now:
                    self.raise_schedule_softirq(pcpu)
                    expired = True
            if expired:
                continue
            if now >= t_end_ns:
                return
            t_next = self.next_event_ns(t_end_ns)
            if max_step_ns is not None and t_next - now > max_step_ns:
                t_next = now + max_step_ns
            if self.executor is not None:
                self._run_step(now, t_next)
            clock.wait_until(t_next)

    def _run_step(self, start: int, end: int) -> None:
        executor = self.executor
        assert executor is not None
        for pcpu in self.pcpus:
            remaining = end - start
            while remaining > 0 and pcpu.curr is not None and not pcpu.need_resched:
                vcpu = pcpu.curr
                consumed = executor.run(pcpu, vcpu, start, remaining)
                if consumed <= 0:
                    break
                remaining -= consumed
                if pcpu.need_resched or self.softirq_pending:
                    self.do_softirqs()
                if pcpu.curr is vcpu:
                    break
