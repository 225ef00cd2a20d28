"""The scheduler core with the round-robin policy: slices, preemption, yield, block/wake, pause, affinity,
determinism, the executor hook (credit2's rules: test_credit2.py)."""

from __future__ import annotations

from xenpy.abi.generated.hypercalls import Hypercall, SchedOp, VcpuOp
from xenpy.core.runstate import RUNSTATE_offline, RUNSTATE_runnable, RUNSTATE_running, vcpu_runstate_change
from xenpy.hypervisor import DomainConfig, Hypervisor

MS = 1_000_000


def make(nr_pcpus: int, nr_vcpus: int, periodic_period_ns: int = 10 * MS, **hv_kwargs):
    hv = Hypervisor(nr_pcpus=nr_pcpus, memory_mib=32, **{"sched": "fifo", **hv_kwargs})
    dom = hv.create_domain(DomainConfig(max_vcpus=nr_vcpus, memory_mib=2, periodic_period_ns=periodic_period_ns))
    dom.unpause()
    hv.bring_up_vcpus(dom)
    return hv, dom


def test_runstate_change_rules():
    """spec 2.2: same state is a no-op; delta <= 0 adds no time and keeps the entry time; the state changes."""
    hv = Hypervisor(sched="fifo")
    v = hv.create_domain(max_vcpus=2).vcpus[1]
    vcpu_runstate_change(v, RUNSTATE_offline, 100)
    assert v.runstate.as_tuple() == (RUNSTATE_offline, 0, 0, 0, 0, 0)
    vcpu_runstate_change(v, RUNSTATE_runnable, 100)
    assert v.runstate.as_tuple() == (RUNSTATE_runnable, 100, 0, 0, 0, 100)
    vcpu_runstate_change(v, RUNSTATE_running, 50)
    assert v.runstate.as_tuple() == (RUNSTATE_running, 100, 0, 0, 0, 100)
    vcpu_runstate_change(v, RUNSTATE_offline, 100)
    assert v.runstate.as_tuple() == (RUNSTATE_offline, 100, 0, 0, 0, 100)
    vcpu_runstate_change(v, RUNSTATE_running, 130)
    assert v.runstate.as_tuple() == (RUNSTATE_running, 130, 0, 0, 0, 130)


def test_round_robin_time_slices():
    """Three busy vCPUs on one pCPU share it in 30 ms slices, FIFO."""
    hv, dom = make(1, 3)
    order = []
    hv.switch_hooks.append(lambda p, prev, nxt: order.append(nxt.vcpu_id if nxt else None))
    hv.run_for(90 * MS)
    assert order == [1, 2, 0]
    for v in dom.vcpus:
        assert hv.runstate(v)[2 + RUNSTATE_running] == 30 * MS


def test_custom_time_slice():
    hv, dom = make(1, 2, time_slice_ns=5 * MS)
    hv.run_for(20 * MS)
    assert hv.scheduler.nr_context_switches >= 4
    assert hv.runstate(dom.vcpus[0])[2] == 10 * MS


def test_alone_continues_without_switch():
    """A lone vCPU keeps its pCPU across slice ends (continue_running)."""
    hv = Hypervisor(sched="fifo")
    dom = hv.create_domain()
    dom.unpause()
    switches = hv.scheduler.nr_context_switches
    hv.run_for(1_000 * MS)
    assert hv.scheduler.nr_context_switches == switches
    assert dom.vcpus[0].runstate.state == RUNSTATE_running


def test_idle_time_jumps_to_next_timer():
    """With every vCPU idle the virtual clock jumps to the next timer deadline (+1 ns, strict)."""
    hv = Hypervisor(sched="fifo")
    dom = hv.create_domain()
    dom.unpause()
    v = dom.vcpus[0]
    assert dom.evtchn.bind_virq(0, 0) == 1  # VIRQ_TIMER, or the timer event would be dropped
    assert hv.hypercall(v, Hypercall.set_timer_op, 500 * MS) == 0
    assert hv.hypercall(v, Hypercall.sched_op, SchedOp.SCHEDOP_block) == 0
    steps = []
    hv.runstate_hooks.append(lambda vc, old, new, t: steps.append((new, t)))
    hv.run_for(600 * MS)
    assert (RUNSTATE_runnable, 500 * MS + 1) in steps
    assert v.runstate.state == RUNSTATE_running


def test_steal_time_with_more_vcpus_than_pcpus():
    """vCPUs waiting for a pCPU accumulate runnable time; the sum over vCPUs of running time is pCPU time."""
    hv, dom = make(2, 5)
    hv.run_for(600 * MS)
    running = sum(hv.runstate(v)[2 + RUNSTATE_running] for v in dom.vcpus)
    runnable = sum(hv.runstate(v)[2 + RUNSTATE_runnable] for v in dom.vcpus)
    assert running == 2 * 600 * MS
    assert runnable > 0
    for v in dom.vcpus:
        info = hv.runstate(v)
        assert sum(info[2:]) == hv.now_ns() - v.creation_ns


def test_deterministic_schedule():
    """The same scenario gives the same schedule to the nanosecond."""

    def trace():
        hv, dom = make(3, 7)
        log = []
        hv.runstate_hooks.append(lambda v, old, new, t: log.append((v.vcpu_id, old, new, t)))
        hv.hypercall(dom.vcpus[3], Hypercall.sched_op, SchedOp.SCHEDOP_yield)
        hv.run_for(200 * MS)
        return log, [hv.runstate(v) for v in dom.vcpus]

    assert trace() == trace()


def test_pause_unpause_domain():
    hv, dom = make(2, 2)
    dom.pause()
    assert all(v.runstate.state == RUNSTATE_offline for v in dom.vcpus)
    assert all(p.curr is None for p in hv.pcpus)
    hv.run_for(10 * MS)
    dom.unpause()
    assert all(v.runstate.state == RUNSTATE_running for v in dom.vcpus)
    assert hv.runstate(dom.vcpus[1])[2 + RUNSTATE_offline] == 10 * MS


def test_vcpu_pause_nests():
    hv, dom = make(2, 2)
    v = dom.vcpus[1]
    hv.scheduler.vcpu_pause(v)
    hv.scheduler.vcpu_pause(v)
    hv.scheduler.vcpu_unpause(v)
    assert v.runstate.state == RUNSTATE_offline
    hv.scheduler.vcpu_unpause(v)
    hv.do_softirqs()
    assert v.runstate.state == RUNSTATE_running


def test_hypercall_schedules_in_a_waiting_vcpu():
    """The API rule: a runnable vCPU waiting in the run queue is put on a pCPU for its hypercall; the vCPU it
    preempts goes back to the head of the run queue."""
    hv, dom = make(1, 2)
    waiting = dom.vcpus[1]
    assert waiting.runstate.state == RUNSTATE_runnable
    assert hv.hypercall(waiting, Hypercall.vcpu_op, VcpuOp.VCPUOP_is_up, 1) == 1
    assert waiting.runstate.state == RUNSTATE_running
    assert dom.vcpus[0].runstate.state == RUNSTATE_runnable
    assert hv.scheduler.runq[0] is dom.vcpus[0]


def test_affinity_moves_vcpu():
    hv, dom = make(2, 1)
    v = dom.vcpus[0]
    assert v.pcpu is hv.pcpus[0]
    hv.scheduler.set_affinity(v, 1)
    hv.do_softirqs()
    assert v.pcpu is hv.pcpus[1]
    assert hv.pcpus[0].curr is None


class CountingExecutor:
    """A stand-in CPU engine: records slices and makes vCPU 1 yield after 1 ms of its first slice."""

    def __init__(self, hv):
        self.hv = hv
        self.calls = []

    def run(self, pcpu, vcpu, start_ns, budget_ns):
        self.calls.append((pcpu.cpu_id, vcpu.vcpu_id, start_ns, budget_ns))
        assert self.hv.now_ns() == start_ns
        if vcpu.vcpu_id == 1 and len([c for c in self.calls if c[1] == 1]) == 1:
            self.hv.hypercall(vcpu, Hypercall.sched_op, SchedOp.SCHEDOP_yield)
            return MS
        return budget_ns


def test_executor_drives_slices_and_early_exit():
    """The engine hook: each busy pCPU runs its vCPU for the step; a yield ends the slice early and the
    scheduler runs the next vCPU for the rest of the step."""
    hv, _dom = make(1, 2, periodic_period_ns=0)
    executor = CountingExecutor(hv)
    hv.scheduler.executor = executor
    hv.run_for(60 * MS)
    assert executor.calls[0] == (0, 0, 0, 30 * MS)
    assert executor.calls[1] == (0, 1, 30 * MS, 30 * MS)
    assert executor.calls[2] == (0, 0, 30 * MS, 29 * MS)
