"""The credit2 policy (xenpy.core.sched_credit2), rule by rule as in Xen 4.20's ``xen/common/sched/credit2.c``.

Without a CPU engine a running vCPU just consumes virtual time, so every figure here is exact. The guest-level
comparison with real Xen is the conformance kernel ``contention`` (wake latency and runnable shares).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenpy.abi.generated.hypercalls import Hypercall, SchedOp
from xenpy.core.domain import PauseFlags
from xenpy.core.runstate import RUNSTATE_blocked, RUNSTATE_offline, RUNSTATE_runnable, RUNSTATE_running
from xenpy.core.sched_credit2 import (
    CSCHED2_BDGT_REPL_PERIOD,
    CSCHED2_CARRYOVER_MAX,
    CSCHED2_CREDIT_INIT,
    CSCHED2_CREDIT_MIN,
    CSCHED2_MAX_TIMER,
    CSCHED2_MIGRATE_COMPENSATION,
    CSCHED2_MIN_TIMER,
    Credit2Scheduler,
)
from xenpy.hypervisor import DomainConfig, Hypervisor

MS = 1_000_000
VIRQ_TIMER = 0
US = 1_000


def make(nr_pcpus: int, nr_vcpus: int, **policy_kwargs):
    """Busy vCPUs (no periodic timer) under credit2."""
    hv = Hypervisor(nr_pcpus=nr_pcpus, memory_mib=32, sched=Credit2Scheduler(**policy_kwargs))
    dom = hv.create_domain(DomainConfig(max_vcpus=nr_vcpus, memory_mib=2, periodic_period_ns=0))
    dom.unpause()
    hv.bring_up_vcpus(dom)
    for v in dom.vcpus:
        assert dom.evtchn.bind_virq(VIRQ_TIMER, v.vcpu_id) > 0  # or a timer's event is dropped and wakes nothing
    return hv, dom, hv.scheduler.policy


def switches(hv):
    log = []
    hv.switch_hooks.append(lambda p, prev, nxt: log.append((hv.now_ns(), p.cpu_id, nxt and nxt.vcpu_id)))
    return log


def sleep(hv, v, ns):
    """``v`` (running) arms its single-shot timer ``ns`` from now and blocks."""
    assert v.runstate.state == RUNSTATE_running
    assert hv.hypercall(v, Hypercall.set_timer_op, hv.now_ns() + ns) == 0
    assert hv.hypercall(v, Hypercall.sched_op, SchedOp.SCHEDOP_block) == 0


def test_default_policy_is_credit2():
    assert Hypervisor().scheduler.policy.name == "credit2"


def test_credit_burns_one_per_ns_and_the_first_unit_runs_its_credit():
    """burn_credits at weight 256 of 256; a lone runner of 10 ms credit has a 10 ms slice (CSCHED2_MAX_TIMER)."""
    hv, dom, pol = make(1, 2)
    log = switches(hv)
    hv.run_for(10 * MS)
    assert log == [(10 * MS, 0, 1)]  # vCPU 0 ran its whole credit, then vCPU 1 (10 ms) beats it (0)
    assert pol.unit(dom.vcpus[0]).credit == 0
    assert pol.unit(dom.vcpus[1]).credit == CSCHED2_CREDIT_INIT


def test_slice_is_the_lead_over_the_preempted_unit_at_least_the_rate_limit():
    """csched2_runtime with inflight credit (4.20.2+): once credits are level (the reset at 20 ms), two busy
    units alternate every rate limit."""
    hv, _dom, _pol = make(1, 2)
    log = switches(hv)
    hv.run_for(24 * MS)
    assert [t for t, _cpu, _v in log] == [10 * MS, 20 * MS + 500 * US, 21 * MS + 500 * US, 22 * MS + 500 * US,
                                          23 * MS + 500 * US]


def test_slice_of_4_17_is_the_lead_over_the_queue_head():
    """Without inflight credit (4.17 to 4.20.1) the preempted unit is not counted: longer slices."""
    hv, _dom, _pol = make(1, 2, inflight_credit=False)
    log = switches(hv)
    hv.run_for(31 * MS)
    assert [t for t, _c, _v in log] == [10 * MS, 20 * MS + 500 * US, 30 * MS + 500 * US]


def test_runq_sorted_by_credit_equal_credits_in_arrival_order():
    """runq_insert: highest credit first; a unit goes after those of equal credit."""
    hv, dom, pol = make(1, 4)
    assert [v.vcpu_id for v in hv.scheduler.runq] == [1, 2, 3]
    pol.unit(dom.vcpus[3]).credit = CSCHED2_CREDIT_INIT + 1
    pol.remove(dom.vcpus[3])
    pol.enqueue(dom.vcpus[3])
    assert [v.vcpu_id for v in hv.scheduler.runq] == [3, 1, 2]


def test_reset_gives_every_unit_ten_ms_capped_at_carryover():
    """reset_credit: when the chosen unit's and the head's credit are <= 0, all units, blocked ones too, get
    +CSCHED2_CREDIT_INIT, capped at CSCHED2_CREDIT_INIT + CSCHED2_CARRYOVER_MAX."""
    hv, dom, pol = make(1, 3)
    v0, v1, v2 = dom.vcpus
    hv.run_for(1 * MS)
    sleep(hv, v0, 1_000 * MS)  # v0 blocks holding 9 ms of credit
    hv.do_softirqs()
    assert v0.runstate.state == RUNSTATE_blocked
    hv.run_for(25 * MS)
    assert pol.nr_resets >= 1
    assert pol.unit(v0).credit == CSCHED2_CREDIT_INIT + CSCHED2_CARRYOVER_MAX
    for v in (v1, v2):
        assert CSCHED2_CREDIT_MIN <= pol.unit(v).credit <= CSCHED2_CREDIT_INIT + CSCHED2_CARRYOVER_MAX


def test_woken_unit_preempts_a_runner_past_the_rate_limit_at_once():
    """runq_tickle: more credit than a unit that has run > 1 ms - 50 us: its pCPU reschedules at the wake."""
    hv, dom, _pol = make(1, 2)
    v0, v1 = dom.vcpus
    hv.run_for(2 * MS)
    sleep(hv, v0, 3 * MS)
    hv.do_softirqs()
    assert hv.pcpus[0].curr is v1
    hv.run_for(3 * MS + 1)
    assert v0.runstate.state == RUNSTATE_running
    assert v0.runstate.state_entry_time == 5 * MS + 1
    assert hv.runstate(v0)[2 + RUNSTATE_runnable] == 0


def test_rate_limit_delays_the_woken_unit():
    """is_preemptable / the runq_candidate shortcut: a runner switched in 0.3 ms ago keeps the pCPU for its
    1 ms even with less credit; the woken unit waits the rest of it as runnable."""
    hv, dom, pol = make(1, 2)
    v0, v1 = dom.vcpus
    hv.run_for(2 * MS)
    pol.unit(v1).credit = 1 * MS  # v0 has 8 ms
    sleep(hv, v0, 300 * US)  # v1 switched in at 2 ms; v0 wakes at 2.3 ms
    hv.do_softirqs()
    assert hv.pcpus[0].curr is v1
    hv.run_for(2 * MS)
    assert v0.runstate.state == RUNSTATE_running
    assert v0.runstate.state_entry_time == 3 * MS
    assert hv.runstate(v0)[2 + RUNSTATE_runnable] == 3 * MS - (2 * MS + 300 * US + 1)


def test_yield_lets_a_lower_credit_unit_run():
    """A yield turns off the rate limit and the credit comparison: the first queued unit runs."""
    hv, dom, pol = make(1, 2)
    v0, v1 = dom.vcpus
    pol.unit(v1).credit = 1 * MS  # far below v0's
    assert hv.hypercall(v0, Hypercall.sched_op, SchedOp.SCHEDOP_yield) == 0
    hv.do_softirqs()
    assert hv.pcpus[0].curr is v1
    assert v0.runstate.state == RUNSTATE_runnable


def test_idle_pcpu_is_tickled_and_migration_compensated():
    """A unit woken while another pCPU idles runs there at once; a unit taken from another pCPU gets
    CSCHED2_MIGRATE_COMPENSATION."""
    hv, dom, pol = make(2, 2)
    v0, v1 = dom.vcpus
    assert (v0.pcpu.cpu_id, v1.pcpu.cpu_id) == (0, 1)
    hv.run_for(1 * MS)
    sleep(hv, v1, 2 * MS)
    hv.do_softirqs()
    assert hv.pcpus[1].curr is None
    hv.scheduler.set_affinity(v1, None)
    v1.processor = 0  # as if it last ran on pCPU 0, which is busy
    credit = pol.unit(v1).credit
    hv.run_for(2 * MS + 1)
    assert v1.pcpu is hv.pcpus[1]
    assert pol.unit(v1).credit == credit + CSCHED2_MIGRATE_COMPENSATION


def test_slices_stay_within_min_and_max_timer():
    hv, _dom, _pol = make(2, 5)
    log = switches(hv)
    hv.run_for(200 * MS)
    last = {}
    for t, cpu, _v in log:
        if cpu in last:
            assert CSCHED2_MIN_TIMER <= t - last[cpu] <= CSCHED2_MAX_TIMER
        last[cpu] = t


def test_busy_units_share_pcpus_evenly():
    """3 busy vCPUs on 2 pCPUs: each runs about 2/3 of the time (credit resets every ~15 ms keep them within
    5 %: the credit above CSCHED2_CARRYOVER_MAX that a waiting unit holds at a reset is lost), and the pCPUs
    never idle."""
    hv, dom, _pol = make(2, 3)
    hv.run_for(300 * MS)
    running = [hv.runstate(v)[2 + RUNSTATE_running] for v in dom.vcpus]
    assert sum(running) == 600 * MS
    for r in running:
        assert abs(r - 200 * MS) <= 10 * MS


@settings(max_examples=40, deadline=None)
@given(
    nr_pcpus=st.integers(1, 3),
    nr_vcpus=st.integers(1, 6),
    actions=st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["block", "yield", "run"]), st.integers(1, 5_000)),
                     max_size=30),
    cap=st.sampled_from([0, 0, 30, 100, 250]),
)
def test_credit2_invariants(nr_pcpus, nr_vcpus, actions, cap):
    """Whatever the vCPUs do: credits stay within [CREDIT_MIN, CREDIT_INIT + CARRYOVER_MAX + compensation],
    runstate times sum to the time since creation, pCPU time is all accounted, a capped domain runs at most its
    cap (plus what one period's overruns can add), and the run is deterministic."""
    cap = min(cap, 100 * nr_vcpus)

    def scenario():
        hv, dom, pol = make(nr_pcpus, nr_vcpus)
        start = hv.now_ns()
        before = [hv.runstate(v) for v in dom.vcpus]
        if cap:
            pol.set_domain_cap(dom, cap)
        for vid, action, us in actions:
            v = dom.vcpus[vid % nr_vcpus]
            if v.runstate.state == RUNSTATE_running and action == "block":
                sleep(hv, v, us * US)
            elif v.runstate.state == RUNSTATE_running and action == "yield":
                hv.hypercall(v, Hypercall.sched_op, SchedOp.SCHEDOP_yield)
            hv.run_for(us * US)
            for u in pol.units.values():
                assert CSCHED2_CREDIT_MIN <= u.credit <= CSCHED2_CREDIT_INIT + CSCHED2_CARRYOVER_MAX + 50 * US
        now = hv.now_ns()
        infos = [hv.runstate(v) for v in dom.vcpus]
        for v, info in zip(dom.vcpus, infos, strict=True):
            assert sum(info[2:]) == now - v.creation_ns
        running = sum(i[2 + RUNSTATE_running] for i in infos)
        assert running <= nr_pcpus * now
        if cap:
            ran = running - sum(r[2 + RUNSTATE_running] for r in before)
            quota = max(CSCHED2_BDGT_REPL_PERIOD * cap // 100 // nr_vcpus, CSCHED2_MIN_TIMER)
            slack = CSCHED2_BDGT_REPL_PERIOD * cap // 100 + nr_vcpus * (quota + MS)
            assert ran <= (now - start) * cap // 100 + slack
        waiting = sum(i[2 + RUNSTATE_runnable] for i in infos)
        return infos, waiting

    assert scenario() == scenario()


def test_weights_share_a_pcpu_in_proportion():
    """csched2_dom_cntl putinfo: credit burns at max_weight / weight, so a domain of twice the weight gets about
    twice the time of a busy pCPU; setting it back restores max_weight (update_max_weight)."""
    hv = Hypervisor(nr_pcpus=1, memory_mib=32)
    heavy, light = (hv.create_domain(DomainConfig(max_vcpus=1, memory_mib=2, periodic_period_ns=0)) for _ in "ab")
    for d in (heavy, light):
        d.unpause()
    pol = hv.scheduler.policy
    assert pol.domain_weight(heavy) == 256
    pol.set_domain_weight(heavy, 512)
    assert (pol.domain_weight(heavy), pol.max_weight) == (512, 512)
    hv.run_for(2000 * MS)
    ran = [hv.runstate(d.vcpus[0])[2] for d in (heavy, light)]
    assert 1.8 <= ran[0] / ran[1] <= 2.2
    pol.set_domain_weight(heavy, 256)
    assert pol.max_weight == 256
    for bad in (0, 65536):
        with pytest.raises(ValueError, match="1-65535"):
            pol.set_domain_weight(light, bad)


def busy_capped(nr_pcpus, nr_vcpus, cap):
    hv, dom, pol = make(nr_pcpus, nr_vcpus)
    pol.set_domain_cap(dom, cap)
    return hv, dom, pol


def test_a_capped_vcpu_runs_its_share_and_is_offline_when_parked():
    """cap 50 of a busy vCPU alone on a pCPU: a 5 ms quota a 10 ms period, then parked (_VPF_parked) until the
    replenishment: half the time running, the other half offline (a unit parked while running leaves as
    offline, not runnable); removing the cap unparks it and it runs all the time."""
    hv, dom, pol = busy_capped(1, 1, 50)
    v = dom.vcpus[0]
    assert pol.domain_cap(dom) == 50 and pol.unit(v).budget_quota == 5 * MS
    start = hv.runstate(v)
    hv.run_for(1000 * MS)
    end = hv.runstate(v)
    running = end[2 + RUNSTATE_running] - start[2 + RUNSTATE_running]
    offline = end[2 + RUNSTATE_offline] - start[2 + RUNSTATE_offline]
    assert 490 * MS <= running <= 510 * MS and running + offline == 1000 * MS
    parked = [hv.now_ns()]
    while not v.pause_flags & PauseFlags.VPF_parked:
        hv.run_for(100 * US)
        parked.append(hv.now_ns())
    assert v.runstate.state == RUNSTATE_offline and v in pol.doms[dom].parked
    pol.set_domain_cap(dom, 0)
    hv.run_for(1 * MS)
    assert not v.pause_flags & PauseFlags.VPF_parked and v.runstate.state == RUNSTATE_running
    before = hv.runstate(v)[2 + RUNSTATE_running]
    hv.run_for(100 * MS)
    assert hv.runstate(v)[2 + RUNSTATE_running] - before == 100 * MS


def test_a_cap_bounds_a_domain_across_its_vcpus():
    """cap 100 of two busy vCPUs on two pCPUs: one pCPU's worth between them, about half each. The other domain's
    busy vCPU trails them in credit, so they preempt it while they have budget; once both are parked, one pCPU
    idles with nothing runnable queued (a pCPU never idles while a runnable unit waits)."""
    hv = Hypervisor(nr_pcpus=2, memory_mib=32)
    capped = hv.create_domain(DomainConfig(max_vcpus=2, memory_mib=2, periodic_period_ns=0))
    other = hv.create_domain(DomainConfig(max_vcpus=1, memory_mib=2, periodic_period_ns=0))
    for d in (capped, other):
        d.unpause()
    hv.bring_up_vcpus(capped)
    pol = hv.scheduler.policy
    pol.set_domain_cap(capped, 100)
    idle_with_work = []
    hv.switch_hooks.append(lambda p, prev, nxt: nxt is None and any(v.runnable for v in pol.runq)
                           and idle_with_work.append(hv.now_ns()))
    hv.run_for(1 * MS)
    vcpus = (*capped.vcpus, other.vcpus[0])
    start = [hv.runstate(v)[2 + RUNSTATE_running] for v in vcpus]
    hv.run_for(1000 * MS)
    ran = [hv.runstate(v)[2 + RUNSTATE_running] - t for v, t in zip(vcpus, start, strict=True)]
    assert 980 * MS <= ran[0] + ran[1] <= 1020 * MS
    assert all(400 * MS <= r <= 600 * MS for r in ran[:2])
    assert ran[2] >= 500 * MS
    assert not idle_with_work


def test_cap_limits():
    """Xen's -EINVAL above 100 per cent per unit; 100 per unit is accepted."""
    _hv, dom, pol = make(1, 2)
    pol.set_domain_cap(dom, 200)
    with pytest.raises(ValueError, match="0-200"):
        pol.set_domain_cap(dom, 201)
    with pytest.raises(ValueError):
        pol.set_domain_cap(dom, -1)
    assert pol.domain_cap(dom) == 200
