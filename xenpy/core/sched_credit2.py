"""Xen's default scheduler, credit2 (``xen/common/sched/credit2.c``), for one run queue holding every pCPU.

That is what Xen builds for the machines xenpy simulates and the oracle boots (one socket, one thread per core,
at most 16 CPUs: ``credit2_runqueue=socket`` gives a single run queue), so load balancing between run queues,
which runs only between queues, never moves anything and is not modelled.

The rules, each as in Xen 4.20's source:

* Credit is time: every unit starts with ``CSCHED2_CREDIT_INIT`` (10 ms) and a running unit burns
  ``delta * max_weight / weight`` (``burn_credits``, ``t2c_update``; all weights are 256 by default, so 1 per ns),
  down to ``CSCHED2_CREDIT_MIN`` (-10 ms). A blocked or waiting unit keeps its credit.
* The run queue is sorted by credit, highest first; equal credits keep arrival order (``runq_insert``).
* ``csched2_schedule``: burn the current unit's credit; a runnable current unit that has run for less than the rate
  limit (1 ms) continues without looking at the queue, unless it yielded; otherwise the first queued unit with
  strictly more credit (any credit after a yield) that may run here, is not reserved for another tickled pCPU,
  and, if it last ran on another pCPU, has ``CSCHED2_MIGRATE_RESIST`` (500 us) more, replaces it. When the
  chosen unit's credit and the queue head's are both <= 0, every unit gets +10 ms (+20 ms at the floor), capped
  at 10.5 ms (``reset_credit``). A unit taken from another pCPU gets ``CSCHED2_MIGRATE_COMPENSATION`` (50 us).
* The slice (``csched2_runtime``) is the chosen unit's lead in credit over the queue head (and, since 4.19.3 and
  4.20.2, over the unit it replaced), as time, within [500 us, 10 ms] and at least the rest of the rate limit.
  An idle pCPU arms no timer.
* ``runq_tickle`` on wake and when a preempted unit is put back (``csched2_context_saved``): an idle pCPU if
  there is one (the unit's own, else the next one after it); else the pCPU whose running unit has run past the
  rate limit (less 50 us) and trails the woken unit by the most credit (by more than 500 us if it is not the
  unit's own pCPU; its own pCPU wins at once if the woken unit has more credit).
* Weights (``xl sched-credit2 -w``, 256 by default) scale the burn; caps (``-c``, per cent of one pCPU, 0: none)
  give a domain a budget of ``CSCHED2_BDGT_REPL_PERIOD * cap / 100`` per 10 ms period. A capped unit grabs up to
  its quota (the budget over its domain's units, at least 500 us) from the domain's pool when it is scheduled
  with none left, burns it with its run time, and gives what is left back when it leaves its pCPU; a unit that
  finds the pool empty is parked (``_VPF_parked``: not runnable; a running one leaves as offline) until a
  return or the period's replenishment leaves budget in the pool, which unparks every parked unit. A unit's
  slice is at most its budget, but never under the minimum, so budgets overrun and the debt is paid at the
  next grab.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.core.domain import PauseFlags

if TYPE_CHECKING:
    from xenpy.core.domain import Domain, Vcpu
    from xenpy.core.scheduler import Pcpu, Scheduler
    from xenpy.core.timers import Timer

CSCHED2_DEFAULT_WEIGHT = 256
#: The range of a domain's weight (``xen_domctl_sched_credit2.weight`` is 16 bits; 0 means "unchanged").
CSCHED2_MIN_WEIGHT, CSCHED2_MAX_WEIGHT = 1, 65535
CSCHED2_MIN_TIMER = 500_000
CSCHED2_CREDIT_INIT = 10_000_000
CSCHED2_CREDIT_MIN = -CSCHED2_CREDIT_INIT
CSCHED2_IDLE_CREDIT = CSCHED2_CREDIT_MIN - 1
CSCHED2_CARRYOVER_MAX = CSCHED2_MIN_TIMER
CSCHED2_MIGRATE_RESIST = 500_000
CSCHED2_MIGRATE_COMPENSATION = 50_000
CSCHED2_RATELIMIT_TICKLE_TOLERANCE = 50_000
CSCHED2_CREDIT_RESET = 0
CSCHED2_MAX_TIMER = CSCHED2_CREDIT_INIT
#: ``sched_ratelimit_us``'s default (``SCHED_DEFAULT_RATELIMIT_US``), in ns.
DEFAULT_RATELIMIT_NS = 1_000_000
#: The budget period of capped domains (``credit2_cap_period_ms``'s default, 10 ms).
CSCHED2_BDGT_REPL_PERIOD = 10_000_000
_VPF_PARKED = int(PauseFlags.VPF_parked)


class Credit2Unit:
    """credit2's per-vCPU data (``struct csched2_unit``).

    Attributes:
        credit: ns of credit.
        start_time: when credit was last burned or reset.
        residual: the remainder of the last weighted burn.
        weight: the domain's weight.
        tickled_cpu: the pCPU tickled for this unit (-1: none).
        budget: ns of budget it holds (<= 0: none, or a debt); None while its domain has no cap (STIME_MAX).
        budget_quota: what it grabs from its domain's pool at a time (0 without a cap).
    """

    __slots__ = ("budget", "budget_quota", "credit", "residual", "start_time", "tickled_cpu", "weight")

    def __init__(self, now: int) -> None:
        self.credit = CSCHED2_CREDIT_INIT
        self.start_time = now
        self.residual = 0
        self.weight = CSCHED2_DEFAULT_WEIGHT
        self.tickled_cpu = -1
        self.budget: int | None = None
        self.budget_quota = 0


class Credit2Domain:
    """credit2's per-domain data (``struct csched2_dom``).

    Attributes:
        weight: the weight of its units.
        cap: per cent of one pCPU (0: none).
        tot_budget: budget per period (``CSCHED2_BDGT_REPL_PERIOD * cap / 100``).
        budget: the pool (units' holdings not included; negative after overruns).
        next_repl: when the pool is next replenished.
        parked: its parked vCPUs, the last parked first.
        repl_timer: the replenishment timer (a guest timer while a unit is parked: it is what can wake it).
    """

    __slots__ = ("budget", "cap", "next_repl", "parked", "repl_timer", "tot_budget", "weight")

    def __init__(self, repl_timer: Timer) -> None:
        self.weight = CSCHED2_DEFAULT_WEIGHT
        self.cap = 0
        self.tot_budget = 0
        self.budget = 0
        self.next_repl = 0
        self.parked: list[Vcpu] = []
        self.repl_timer = repl_timer


class Credit2Scheduler:
    """credit2 with one run queue for all pCPUs.

    Args:
        ratelimit_ns: the rate limit (0: none).
        inflight_credit: the slice also counts the credit of the unit just preempted (Xen 4.19.3+, 4.20.2+);
            False gives the slices of 4.17 to 4.20.1.

    Attributes:
        runq: the queued vCPUs, highest credit first.
        tickled: ids of the pCPUs tickled and not yet rescheduled.
    """

    name = "credit2"
    #: An idle pCPU reschedules only when tickled.
    idle_pulls = False

    def __init__(self, ratelimit_ns: int = DEFAULT_RATELIMIT_NS, *, inflight_credit: bool = True) -> None:
        if ratelimit_ns < 0:
            raise ValueError("ratelimit_ns must not be negative")
        self.ratelimit_ns = ratelimit_ns
        self.inflight_credit = inflight_credit
        self.runq: list[Vcpu] = []
        self.tickled: set[int] = set()
        self.units: dict[Vcpu, Credit2Unit] = {}
        self.max_weight = 1  # rqd->max_weight: the highest weight of the units
        self.doms: dict[Domain, Credit2Domain] = {}  # csched2_dom, made on first use
        self.nr_resets = 0
        self.sched: Scheduler | None = None

    def attach(self, sched: Scheduler) -> None:
        self.sched = sched

    # ------------------------------------------------------------------ units and credit

    def unit(self, v: Vcpu) -> Credit2Unit:
        """``v``'s unit (made on first use, as ``csched2_alloc_udata`` makes it at vCPU creation)."""
        u = self.units.get(v)
        if u is None:
            assert self.sched is not None
            u = self.units[v] = Credit2Unit(self.sched.clock.now_ns())
            sdom = self.doms.get(v.domain)
            if sdom is not None:
                u.weight = sdom.weight
                if sdom.cap:
                    u.budget, u.budget_quota = 0, self._quota(sdom, v.domain)
            self.max_weight = max(self.max_weight, u.weight)
        return u

    def _dom(self, d: Domain) -> Credit2Domain:
        sdom = self.doms.get(d)
        if sdom is None:
            assert self.sched is not None
            timer = self.sched.timers.timer(self._replenish, d, f"credit2 budget d{d.domid}", housekeeping=True)
            sdom = self.doms[d] = Credit2Domain(timer)
        return sdom

    def domain_weight(self, d: Domain) -> int:
        """``d``'s weight (``XEN_DOMCTL_SCHEDOP_getinfo``)."""
        sdom = self.doms.get(d)
        return CSCHED2_DEFAULT_WEIGHT if sdom is None else sdom.weight

    def domain_cap(self, d: Domain) -> int:
        """``d``'s cap in per cent of one pCPU (0: none)."""
        sdom = self.doms.get(d)
        return 0 if sdom is None else sdom.cap

    def set_domain_weight(self, d: Domain, weight: int) -> None:
        """``XEN_DOMCTL_SCHEDOP_putinfo``'s weight (``csched2_dom_cntl``): every unit of ``d`` takes it, and the
        run queue's ``max_weight`` follows (``update_max_weight``).

        Raises:
            ValueError: ``weight`` is outside 1-65535.
        """
        if not CSCHED2_MIN_WEIGHT <= weight <= CSCHED2_MAX_WEIGHT:
            raise ValueError(f"a credit2 weight is {CSCHED2_MIN_WEIGHT}-{CSCHED2_MAX_WEIGHT}, not {weight}")
        self._dom(d).weight = weight
        for v in d.vcpus:
            u = self.unit(v)
            old, u.weight = u.weight, weight
            if weight > self.max_weight:
                self.max_weight = weight
            elif old == self.max_weight:
                self.max_weight = max((unit.weight for unit in self.units.values()), default=1)

    def _all_units(self) -> list[tuple[Vcpu, Credit2Unit]]:
        """Every vCPU of the live domains with its unit (``rqd->svc``); units of destroyed domains go."""
        assert self.sched is not None
        live = [v for d in self.sched.system.domains.values() for v in d.vcpus]
        alive = set(live)
        gone = [v for v in self.units if v not in alive]
        for v in gone:
            del self.units[v]
        if gone:
            self.max_weight = max((u.weight for u in self.units.values()), default=1)
            for d in [d for d in self.doms if d.is_dying]:
                self.doms.pop(d).repl_timer.stop()
        return [(v, self.unit(v)) for v in live]

    def burn_credits(self, v: Vcpu, now: int) -> None:
        """``burn_credits``: charge the running ``v`` for the time since ``start_time``."""
        u = self.unit(v)
        delta = now - u.start_time
        if delta <= 0:
            return
        val = delta * self.max_weight + u.residual
        u.residual = val % u.weight
        u.credit = max(u.credit - val // u.weight, CSCHED2_CREDIT_MIN)
        if u.budget is not None:
            u.budget -= delta
        u.start_time = now

    def _c2t(self, credit: int, u: Credit2Unit) -> int:
        return credit * u.weight // self.max_weight

    def _reset_credit(self, now: int, snext: Vcpu) -> None:
        """``reset_credit``: a new epoch for every unit, running, queued or not."""
        reset = CSCHED2_CREDIT_INIT
        if self.unit(snext).credit == CSCHED2_CREDIT_MIN:
            reset += CSCHED2_CREDIT_INIT
        self.nr_resets += 1
        for v, u in self._all_units():
            if v.is_running and v.pcpu is not None:
                self.burn_credits(v, now)
                if u.budget is not None and u.budget <= 0:
                    self.tickled.add(v.pcpu.cpu_id)  # tickle_cpu: it reschedules, and grabs or parks
                    assert self.sched is not None
                    self.sched.raise_schedule_softirq(v.pcpu)
            u.credit = min(u.credit + reset, CSCHED2_CREDIT_INIT + CSCHED2_CARRYOVER_MAX)
            u.start_time = now

    # ------------------------------------------------------------------ the run queue

    def enqueue(self, v: Vcpu, *, front: bool = False) -> None:
        """``runq_insert``: by credit, after the units of equal credit (``front`` has no meaning here)."""
        credit = self.unit(v).credit
        units = self.units
        for i, other in enumerate(self.runq):
            if credit > units[other].credit:
                self.runq.insert(i, v)
                break
        else:
            self.runq.append(v)
        v.in_runq = True

    def remove(self, v: Vcpu) -> None:
        self.runq.remove(v)
        v.in_runq = False

    def requeue_front(self, v: Vcpu) -> None:
        """A displaced ``v`` keeps its place by credit."""
        if not v.in_runq:
            self.enqueue(v)

    def has_work(self, pcpu: Pcpu) -> bool:
        return False

    # ------------------------------------------------------------------ wake and tickle

    def wake(self, v: Vcpu, now: int) -> None:
        """``csched2_unit_wake``: queue ``v`` (its credit unchanged) and tickle a pCPU for it."""
        self.enqueue(v)
        self._tickle(v, now)

    def context_saved(self, prev: Vcpu, now: int) -> None:
        """``csched2_context_saved``: ``prev`` left its pCPU. A capped one gives back its budget (which may unpark
        its domain's parked units); a still runnable one is queued and may tickle a pCPU."""
        u = self.unit(prev)
        were_parked: list[Vcpu] = []
        if u.budget is not None and u.budget > 0:
            were_parked = self._return_budget(prev, u)
        if prev.runnable:
            self.enqueue(prev)
            self._tickle(prev, now)
        self._unpark(were_parked, now)

    def _tickle_cpu(self, pcpu: Pcpu, v: Vcpu) -> None:
        assert self.sched is not None
        self.tickled.add(pcpu.cpu_id)
        self.sched.raise_schedule_softirq(pcpu)
        self.unit(v).tickled_cpu = pcpu.cpu_id

    def _tickle_score(self, new: Vcpu, pcpu: Pcpu, now: int) -> int:
        """``tickle_score``: how much ``new`` is owed ``pcpu``; <= 0: no preemption."""
        cur = pcpu.curr
        if cur is None:
            return -1
        if (
            self.ratelimit_ns > CSCHED2_RATELIMIT_TICKLE_TOLERANCE
            and now - cur.runstate.state_entry_time <= self.ratelimit_ns - CSCHED2_RATELIMIT_TICKLE_TOLERANCE
        ):
            return -1  # !is_preemptable: cur has not run for the rate limit yet
        self.burn_credits(cur, now)
        score = self.unit(new).credit - self.unit(cur).credit
        if new.processor != pcpu.cpu_id:
            score -= CSCHED2_MIGRATE_RESIST
        if score > 0:
            score += CSCHED2_CREDIT_INIT  # the pCPU is in new's soft affinity (all pCPUs)
        return score

    def _tickle(self, new: Vcpu, now: int) -> None:
        """``runq_tickle``: find a pCPU for ``new`` and raise its SCHEDULE_SOFTIRQ, or leave it queued."""
        assert self.sched is not None
        pcpus = self.sched.pcpus
        allowed = [p for p in pcpus if new.hard_affinity is None or new.hard_affinity == p.cpu_id]
        idle = [p for p in allowed if p.curr is None and p.cpu_id not in self.tickled]
        if idle:
            # cpumask_test_or_cycle: its own pCPU if idle, else the next idle one after it (wrapping).
            cpu = new.processor
            self._tickle_cpu(min(idle, key=lambda p: (p.cpu_id - cpu) % len(pcpus)), new)
            return
        busy = [p for p in allowed if p.curr is not None and p.cpu_id not in self.tickled]
        best, best_score = None, 0
        own = next((p for p in busy if p.cpu_id == new.processor), None)
        if own is not None:
            score = self._tickle_score(new, own, now)
            if score > 0:
                self._tickle_cpu(own, new)
                return
        for p in busy:
            if p is own:
                continue
            score = self._tickle_score(new, p, now)
            if score > best_score:
                best, best_score = p, score
        if best is not None:
            self._tickle_cpu(best, new)

    # ------------------------------------------------------------------ schedule

    def _candidate(self, pcpu: Pcpu, prev: Vcpu | None, now: int, can_continue: bool, yielding: bool) -> Vcpu | None:
        """``runq_candidate``."""
        cpu = pcpu.cpu_id
        if prev is None:
            snext, yielding = None, False
        else:
            if (
                not yielding
                and self.ratelimit_ns
                and can_continue
                and now - prev.runstate.state_entry_time < self.ratelimit_ns
            ):
                return prev
            snext = prev if can_continue else None
        snext_credit = self.unit(snext).credit if snext is not None else CSCHED2_IDLE_CREDIT
        units = self.units
        for v in list(self.runq):  # a unit without budget is parked, out of the queue
            u = units[v]
            if not yielding and u.credit <= snext_credit:
                break
            if not v.runnable or (v.hard_affinity is not None and v.hard_affinity != cpu):
                continue
            if u.tickled_cpu not in (-1, cpu) and u.tickled_cpu in self.tickled:
                continue
            if v.processor != cpu and snext_credit + CSCHED2_MIGRATE_RESIST > u.credit:
                continue
            if u.budget is not None and not self._grab_budget(v, u):
                continue
            return v
        return snext

    def do_schedule(
        self, pcpu: Pcpu, prev: Vcpu | None, now: int, can_continue: bool, yielding: bool
    ) -> tuple[Vcpu | None, int]:
        """``csched2_schedule``: the vCPU to run on ``pcpu`` and its slice (-1: idle, no timer)."""
        self.tickled.discard(pcpu.cpu_id)
        if prev is not None:
            self.burn_credits(prev, now)
            u = self.unit(prev)
            if u.budget is not None and u.budget <= 0 and not self._grab_budget(prev, u):
                can_continue = False  # parked
        snext = self._candidate(pcpu, prev, now, can_continue, yielding)
        if snext is None:
            return None, -1
        if snext is not prev:
            self.remove(snext)
        u = self.unit(snext)
        top = u.credit if not self.runq else max(u.credit, self.units[self.runq[0]].credit)
        if top <= CSCHED2_CREDIT_RESET:
            self._reset_credit(now, snext)
        u.start_time = now
        u.tickled_cpu = -1
        if snext.processor != pcpu.cpu_id:
            u.credit += CSCHED2_MIGRATE_COMPENSATION
        inflight = 0
        if self.inflight_credit and prev is not None and snext is not prev and can_continue:
            inflight = self.unit(prev).credit
        return snext, self._runtime(snext, snext is prev, now, inflight)

    def _runtime(self, snext: Vcpu, continuing: bool, now: int, inflight: int = 0) -> int:
        """``csched2_runtime``: the slice of ``snext``."""
        u = self.unit(snext)
        min_time = CSCHED2_MIN_TIMER
        if self.ratelimit_ns:
            ratelimit_min = self.ratelimit_ns
            if continuing:
                ratelimit_min = snext.runstate.state_entry_time + self.ratelimit_ns - now
            min_time = max(min_time, ratelimit_min)
        swait = 0
        if self.runq:
            head = self.units[self.runq[0]].credit
            if head > 0:
                swait = head
        swait = max(swait, inflight)
        rt_credit = u.credit - swait if swait > 0 else u.credit
        time = self._c2t(rt_credit, u) if rt_credit > 0 else 0
        if u.budget is not None:
            time = min(u.budget, time)
        if time < min_time:
            return min_time
        return min(time, CSCHED2_MAX_TIMER)

    def slice_for(self, pcpu: Pcpu, v: Vcpu, now: int) -> int:
        """The slice of ``v`` put on ``pcpu`` outside :meth:`do_schedule`."""
        self.unit(v).start_time = now
        return self._runtime(v, False, now)

    # ------------------------------------------------------------------ caps and budget

    def _quota(self, sdom: Credit2Domain, d: Domain) -> int:
        return max(sdom.tot_budget // len(d.vcpus), CSCHED2_MIN_TIMER)

    def set_domain_cap(self, d: Domain, cap: int) -> None:
        """``XEN_DOMCTL_SCHEDOP_putinfo``'s cap (``csched2_dom_cntl``), in per cent of one pCPU; 0 removes it.

        Capping an uncapped domain fills its pool, starts the period and charges its running units for their
        run so far (uncapped), then leaves every unit without budget; removing the cap unparks every unit.

        Raises:
            ValueError: ``cap`` is negative or above 100 per vCPU (Xen's -EINVAL).
        """
        if not 0 <= cap <= 100 * len(d.vcpus):
            raise ValueError(f"a cap is 0-{100 * len(d.vcpus)} (per cent of one pCPU per vCPU), not {cap}")
        assert self.sched is not None
        sdom = self._dom(d)
        now = self.sched.clock.now_ns()
        if cap:
            sdom.tot_budget = CSCHED2_BDGT_REPL_PERIOD * cap // 100
            quota = self._quota(sdom, d)
            for v in d.vcpus:
                self.unit(v).budget_quota = quota
            if sdom.cap == 0:
                sdom.budget = sdom.tot_budget
                sdom.next_repl = now + CSCHED2_BDGT_REPL_PERIOD
                sdom.repl_timer.set(sdom.next_repl)
                for v in d.vcpus:
                    u = self.unit(v)
                    if v.is_running and v.pcpu is not None:
                        self.burn_credits(v, now)
                        self.tickled.add(v.pcpu.cpu_id)
                        self.sched.raise_schedule_softirq(v.pcpu)
                    u.budget = 0
            sdom.cap = cap
        elif sdom.cap:
            sdom.repl_timer.stop()
            for v in d.vcpus:
                u = self.unit(v)
                u.budget, u.budget_quota = None, 0
            sdom.cap = 0
            parked, sdom.parked = sdom.parked, []
            self._unpark(parked, now)

    def _grab_budget(self, v: Vcpu, u: Credit2Unit) -> bool:
        """``unit_grab_budget``: a unit without budget pays its debt into the pool and takes up to its quota; it
        is parked if the pool has none. True if it has budget."""
        assert u.budget is not None
        if u.budget > 0:
            return True
        sdom = self._dom(v.domain)
        sdom.budget += u.budget
        if sdom.budget > 0:
            u.budget = min(u.budget_quota, sdom.budget)
            sdom.budget -= u.budget
        else:
            u.budget = 0
            self._park(v, sdom)
        return u.budget > 0

    def _park(self, v: Vcpu, sdom: Credit2Domain) -> None:
        """``park_unit``: ``_VPF_parked`` (not runnable: its runstate stays as it is until it leaves a pCPU or
        runs again), out of the run queue, onto the domain's parked list."""
        v.pause_flags |= _VPF_PARKED
        if v.in_runq:
            self.remove(v)
        sdom.parked.insert(0, v)
        sdom.repl_timer.housekeeping = False

    def _return_budget(self, v: Vcpu, u: Credit2Unit) -> list[Vcpu]:
        """``unit_return_budget``: the unit's budget goes back to the pool; the parked units to unpark if the
        pool now has budget."""
        assert u.budget is not None
        sdom = self._dom(v.domain)
        sdom.budget += u.budget
        u.budget = 0
        if sdom.budget > 0:
            parked, sdom.parked = sdom.parked, []
            return parked
        return []

    def _unpark(self, vcpus: list[Vcpu], now: int) -> None:
        """``unpark_parked_units``: clear ``_VPF_parked``; a runnable unit goes back to the run queue (with no
        budget: it grabs again when picked) and may tickle a pCPU."""
        for v in vcpus:
            v.pause_flags &= ~_VPF_PARKED
            if v.runnable and not v.is_running and not v.in_runq:
                self.enqueue(v)
                self._tickle(v, now)
        if vcpus:
            sdom = self.doms.get(vcpus[0].domain)
            if sdom is not None and not sdom.parked:
                sdom.repl_timer.housekeeping = True

    def _replenish(self, d: Domain) -> None:
        """``replenish_domain_budget``, the period's timer: add the budget of every period passed; a positive
        pool is capped at one period's budget and unparks every parked unit; re-arm at the next period."""
        assert self.sched is not None
        sdom = self.doms.get(d)
        if sdom is None or not sdom.cap:
            return
        now = self.sched.clock.now_ns()
        sdom.next_repl += CSCHED2_BDGT_REPL_PERIOD
        sdom.budget += sdom.tot_budget
        while sdom.next_repl <= now:
            sdom.next_repl += CSCHED2_BDGT_REPL_PERIOD
            sdom.budget += sdom.tot_budget
        if sdom.budget > 0:
            sdom.budget = min(sdom.budget, sdom.tot_budget)
            parked, sdom.parked = sdom.parked, []
            self._unpark(parked, now)
        sdom.repl_timer.set(sdom.next_repl)
