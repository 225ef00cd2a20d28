"""Timers in system time, and the per-vCPU and per-domain timers built on them (spec 3.1-3.4).

* :class:`TimerQueue` is ``xen/common/timer.c``: a heap of deadlines in system time. A timer **fires when
  ``expires < NOW()``** (strict; ``timer_softirq_action``), so a deadline ``t`` fires at ``t + 1`` ns of
  virtual time at the earliest, and a deadline in the past fires at the next softirq. Timers with equal
  deadlines fire in the order they were set, so runs are deterministic.
* The vCPU timers implement ``xen/common/sched/core.c``: the periodic timer (``vcpu_periodic_timer_work``,
  ``vcpu_set_periodic_timer``), the single-shot timer, the poll timeout, and ``do_set_timer_op``; plus the
  domain watchdog (``domain_watchdog``). Timer events are delivered as VIRQ_TIMER to the vCPU itself
  (``send_timer_event``, spec 3.3); an unbound VIRQ_TIMER drops the event.

Invariants: a stopped timer never fires; re-arming a timer replaces its previous deadline; at most one tick
of the periodic timer is sent per evaluation and its phase is re-anchored to the actual firing time.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xenpy.abi.errno import XenErrno
from xenpy.abi.sched import SHUTDOWN_watchdog
from xenpy.abi.xen import VIRQ_TIMER
from xenpy.core.clock import MILLISECS_1, SECONDS

if TYPE_CHECKING:
    from xenpy.core.domain import Domain, Vcpu

_S64_SIGN = 1 << 63
_U64 = (1 << 64) - 1


def s_time(value: int) -> int:
    """A 64-bit value as Xen's signed ``s_time_t``."""
    value &= _U64
    return value - (1 << 64) if value & _S64_SIGN else value


class Timer:
    """One timer: a callback run (once) when its deadline has passed.

    Attributes:
        fn: called as ``fn(data)`` when the timer fires.
        data: the callback's argument.
        name: label for tracing.
        housekeeping: the hypervisor's own timer (time calibration), which never wakes or stops a guest.
        expires: deadline in system time (signed ns; meaningful while ``active``).
        cpu: pCPU the timer is bound to (``migrate_timer``); informational.
    """

    __slots__ = ("_gen", "_queue", "active", "cpu", "data", "expires", "fn", "housekeeping", "name")

    def __init__(
        self, queue: TimerQueue, fn: Callable[[Any], None], data: Any, name: str = "", *, housekeeping: bool = False
    ) -> None:
        self._queue = queue
        self.fn = fn
        self.data = data
        self.name = name
        self.housekeeping = housekeeping
        self.expires = 0
        self.active = False
        self.cpu = 0
        self._gen = 0

    def set(self, expires_ns: int) -> None:
        """``set_timer``: (re-)arm for ``expires_ns``."""
        self._queue.set_timer(self, expires_ns)

    def stop(self) -> None:
        """``stop_timer``: disarm (no-op if not armed)."""
        if self.active:
            self.active = False
            self._gen += 1

    def __repr__(self) -> str:
        state = f"expires={self.expires}" if self.active else "inactive"
        return f"<Timer {self.name} {state}>"


class TimerQueue:
    """All timers of a hypervisor, ordered by deadline then by arming order.

    Args:
        now_ns: the system time (NOW()); with ``raise_softirq``, lets an already expired timer fire at once.
        raise_softirq: called when a timer is armed with a deadline already past. Xen's ``set_timer`` raises
            TIMER_SOFTIRQ when the timer becomes the earliest, and softirqs run before the return to the guest,
            so such a timer fires before the hypercall that armed it returns (spec 3.2).
    """

    def __init__(
        self,
        now_ns: Callable[[], int] | None = None,
        raise_softirq: Callable[[], None] | None = None,
    ) -> None:
        self._heap: list[tuple[int, int, int, Timer]] = []
        self._seq = 0
        self.nr_fired = 0
        self.now_ns = now_ns
        self.raise_softirq = raise_softirq

    def timer(self, fn: Callable[[Any], None], data: Any, name: str = "", *, housekeeping: bool = False) -> Timer:
        """A new, inactive timer on this queue."""
        return Timer(self, fn, data, name, housekeeping=housekeeping)

    def set_timer(self, timer: Timer, expires_ns: int) -> None:
        """Arm ``timer`` for ``expires_ns`` (a signed s_time_t; negative means already expired)."""
        timer._gen += 1
        timer.expires = expires_ns
        timer.active = True
        self._seq += 1
        heapq.heappush(self._heap, (expires_ns, self._seq, timer._gen, timer))
        if self.raise_softirq is not None and self.now_ns is not None and expires_ns < self.now_ns():
            self.raise_softirq()

    @staticmethod
    def stop_timer(timer: Timer) -> None:
        """Disarm ``timer``."""
        timer.stop()

    def _prune(self) -> None:
        heap = self._heap
        while heap:
            _, _, gen, timer = heap[0]
            if timer.active and timer._gen == gen:
                return
            heapq.heappop(heap)

    def next_deadline(self) -> int | None:
        """The earliest armed deadline, or None if no timer is armed."""
        self._prune()
        return self._heap[0][0] if self._heap else None

    def next_fire_time(self) -> int | None:
        """The earliest system time at which a timer fires (deadline + 1, strict compare), or None."""
        deadline = self.next_deadline()
        return None if deadline is None else deadline + 1

    def has_guest_timers(self) -> bool:
        """True if a timer other than a housekeeping one is armed (something may still wake or stop a guest)."""
        return any(t.active and t._gen == gen and not t.housekeeping for _, _, gen, t in self._heap)

    def fire_expired(self, now_ns: int) -> int:
        """Run every timer whose deadline is ``< now_ns``, earliest first (``timer_softirq_action``).

        A callback may arm timers; one that is already expired fires in the same call.

        Returns:
            The number of timers that fired.
        """
        heap = self._heap
        fired = 0
        while heap:
            expires, _, gen, timer = heap[0]
            if not (timer.active and timer._gen == gen):
                heapq.heappop(heap)
                continue
            if expires >= now_ns:
                break
            heapq.heappop(heap)
            timer.active = False
            timer._gen += 1
            fired += 1
            timer.fn(timer.data)
        self.nr_fired += fired
        return fired

    def __len__(self) -> int:
        self._prune()
        return sum(1 for _, _, gen, t in self._heap if t.active and t._gen == gen)


# ------------------------------------------------------------------------------------------------ vCPU timers

#: ``STIME_DELTA_MAX``: the largest accepted periodic timer period (spec 1.2 cmd 6).
STIME_DELTA_MAX = (1 << 62) - 1
#: Minimum periodic timer period (``MILLISECS(1)``, inclusive).
PERIODIC_MIN_NS = MILLISECS_1
#: The PV default periodic timer period (``pv_vcpu_initialise``: 100 Hz).
PERIODIC_DEFAULT_NS = 10 * MILLISECS_1
#: ``do_set_timer_op``'s workaround for absurd deadlines: ``NOW() + MILLISECS(100)``.
SET_TIMER_OP_SLACK_NS = 100 * MILLISECS_1
#: ``NR_DOMAIN_WATCHDOG_TIMERS``.
NR_DOMAIN_WATCHDOG_TIMERS = 2
#: SCHEDOP_watchdog's result with both slots in use: ``id == NR ? -ENOSPC : id + 1`` with a ``uint32_t id``
#: is an unsigned expression, so the guest gets ``(uint32_t)-ENOSPC`` zero-extended (measured on Xen 4.17.7
#: and 4.20), not -ENOSPC.
WATCHDOG_ENOSPC = -XenErrno.ENOSPC & 0xFFFF_FFFF


def send_timer_event(v: Vcpu) -> None:
    """``send_timer_event``: VIRQ_TIMER on ``v`` itself; dropped if VIRQ_TIMER is not bound on ``v``."""
    v.domain.evtchn.send_guest_vcpu_virq(v, VIRQ_TIMER)


def init_vcpu_timers(v: Vcpu) -> None:
    """Create the periodic, single-shot and poll timers of ``v`` (``vcpu_create``)."""
    queue = v.domain.system.timers
    v.periodic_timer = queue.timer(vcpu_periodic_timer_fn, v, f"d{v.domain.domid}v{v.vcpu_id}-periodic")
    v.singleshot_timer = queue.timer(vcpu_singleshot_timer_fn, v, f"d{v.domain.domid}v{v.vcpu_id}-singleshot")
    v.poll_timer = queue.timer(poll_timer_fn, v, f"d{v.domain.domid}v{v.vcpu_id}-poll")


def kill_vcpu_timers(v: Vcpu) -> None:
    """Stop every timer of ``v`` (domain destruction)."""
    v.periodic_timer.stop()
    v.singleshot_timer.stop()
    v.poll_timer.stop()


def vcpu_periodic_timer_work(v: Vcpu) -> None:
    """``vcpu_periodic_timer_work``: tick if a period has elapsed since the last tick, then re-arm (spec 3.1).

    Runs when the vCPU is scheduled in, when its timer fires, and when the period is set.
    """
    period = v.periodic_period_ns
    if not period:
        return
    now = v.domain.system.clock.now_ns()
    next_event = v.periodic_last_event_ns + period
    if now >= next_event:
        send_timer_event(v)
        v.periodic_last_event_ns = now
        next_event = now + period
    v.periodic_timer.cpu = v.processor
    v.periodic_timer.set(next_event)


def vcpu_periodic_timer_fn(v: Vcpu) -> None:
    """Expiry of the periodic timer."""
    vcpu_periodic_timer_work(v)


def vcpu_set_periodic_timer(v: Vcpu, period_ns: int) -> None:
    """``vcpu_set_periodic_timer``: stop, set the period, and evaluate at once if non-zero (spec 3.1).

    The timer is armed even if ``v`` is descheduled, so it can then fire (and kick ``v``) until ``v`` is next
    switched out.
    """
    v.periodic_timer.stop()
    v.periodic_period_ns = period_ns
    if period_ns:
        vcpu_periodic_timer_work(v)


def vcpu_singleshot_timer_fn(v: Vcpu) -> None:
    """Expiry of the single-shot timer: VIRQ_TIMER (wakes a blocked vCPU through the event kick)."""
    send_timer_event(v)


def poll_timer_fn(v: Vcpu) -> None:
    """``poll_timer_fn``: end a SCHEDOP_poll on timeout if the vCPU is still polling."""
    d = v.domain
    bit = 1 << v.vcpu_id
    if d.poll_mask & bit:
        d.poll_mask &= ~bit
        v.sched.vcpu_unblock(v)


def do_set_timer_op(v: Vcpu, timeout: int) -> None:
    """``do_set_timer_op`` (hypercall 15) for ``v`` == current; ``timeout`` is the raw 64-bit argument.

    ``0`` stops the single-shot timer; a negative value, or one more than 2**50 ns ahead, arms it for
    ``NOW() + 100 ms``; anything else arms it for ``timeout`` (a past value fires at the next softirq).
    """
    timeout = s_time(timeout)
    now = v.domain.system.clock.now_ns()
    offset = timeout - now
    if timeout == 0:
        v.singleshot_timer.stop()
    elif timeout < 0 or (offset > 0 and (offset >> 50) & 0xFFFF_FFFF):
        v.singleshot_timer.set(now + SET_TIMER_OP_SLACK_NS)
    else:
        v.singleshot_timer.cpu = v.processor
        v.singleshot_timer.set(timeout)


def init_domain_watchdogs(d: Domain) -> None:
    """Create the domain's watchdog timers (``domain_create``)."""
    queue = d.system.timers
    d.watchdog_timers = [
        queue.timer(domain_watchdog_timeout, (d, i), f"d{d.domid}-watchdog{i}")
        for i in range(NR_DOMAIN_WATCHDOG_TIMERS)
    ]
    d.watchdog_inuse_map = 0


def domain_watchdog_timeout(data: tuple[Domain, int]) -> None:
    """Expiry of a watchdog: ``domain_shutdown(SHUTDOWN_watchdog)`` unless already shutting down."""
    d, _ = data
    if d.is_shutting_down or d.is_dying:
        return
    d.shutdown(SHUTDOWN_watchdog)


def domain_watchdog(d: Domain, wd_id: int, timeout_s: int) -> int:
    """``domain_watchdog`` (SCHEDOP_watchdog, spec 3.4): returns the hypercall result.

    ``id == 0`` allocates a free slot and arms it for ``NOW() + timeout`` seconds, returning ``slot + 1``
    (or, with both slots in use, :data:`WATCHDOG_ENOSPC`); ``id > 2`` or an unused ``id`` gives -EINVAL;
    ``timeout == 0`` destroys the slot; otherwise the slot is re-armed.
    """
    if wd_id > NR_DOMAIN_WATCHDOG_TIMERS:
        return -XenErrno.EINVAL
    now = d.system.clock.now_ns()
    if wd_id == 0:
        for i in range(NR_DOMAIN_WATCHDOG_TIMERS):
            if d.watchdog_inuse_map & (1 << i):
                continue
            d.watchdog_inuse_map |= 1 << i
            d.watchdog_timers[i].set(now + SECONDS(timeout_s))
            return i + 1
        return WATCHDOG_ENOSPC
    slot = wd_id - 1
    if not d.watchdog_inuse_map & (1 << slot):
        return -XenErrno.EINVAL
    if timeout_s == 0:
        d.watchdog_timers[slot].stop()
        d.watchdog_inuse_map &= ~(1 << slot)
    else:
        d.watchdog_timers[slot].set(now + SECONDS(timeout_s))
    return 0
