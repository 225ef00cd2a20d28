"""Property tests of runstate accounting over random schedules (spec 2.1-2.5).

Random sequences of up, down, block, kick (wake), yield, single-shot timer expiries, pause/unpause and time
advances run on a 3-vCPU domain over 2 pCPUs. After every step:

* stored struct: ``sum(time) == state_entry_time - creation``;
* ``vcpu_runstate_get``: ``sum == max(NOW, state_entry_time) - creation`` and ``state_entry_time`` unchanged;
* ``time[]`` and ``state_entry_time`` never decrease;
* state consistency: blocked iff ``_VPF_blocked`` (blocked wins over offline); running iff on a pCPU; runnable
  iff queued;
* the registered runstate areas (XEN_RUNSTATE_UPDATE protocol on) never show the update flag between
  operations, and the area of a running vCPU says running since its last switch-in.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xenpy.abi.generated.hypercalls import Hypercall, VcpuOp
from xenpy.abi.xen import VMASST_TYPE_runstate_update_flag
from xenpy.core.runstate import (
    XEN_RUNSTATE_UPDATE,
    RUNSTATE_blocked,
    RUNSTATE_runnable,
    RUNSTATE_running,
    vcpu_runstate_get,
)
from xenpy.hypervisor import DomainConfig, Hypervisor

NR_VCPUS = 3
MS = 1_000_000

vcpu_ids = st.integers(0, NR_VCPUS - 1)
steps = st.one_of(
    st.tuples(st.just("up"), vcpu_ids),
    st.tuples(st.just("down"), vcpu_ids),
    st.tuples(st.just("block"), vcpu_ids),
    st.tuples(st.just("kick"), vcpu_ids),
    st.tuples(st.just("yield"), vcpu_ids),
    st.tuples(st.just("ack"), vcpu_ids),
    st.tuples(st.just("timer"), vcpu_ids, st.integers(0, 50 * MS)),
    st.tuples(st.just("advance"), st.integers(0, 80 * MS)),
    st.tuples(
        st.just("pause"),
    ),
    st.tuples(
        st.just("unpause"),
    ),
)


def build() -> tuple[Hypervisor, object, list[int]]:
    hv = Hypervisor(nr_pcpus=2, memory_mib=16)
    dom = hv.create_domain(DomainConfig(max_vcpus=NR_VCPUS, memory_mib=1))
    dom.unpause()
    v0 = dom.vcpus[0]
    hv.bring_up_vcpus(dom)
    dom.vm_assist |= 1 << VMASST_TYPE_runstate_update_flag
    areas = []
    for v in dom.vcpus:
        assert dom.evtchn.bind_virq(0, v.vcpu_id) > 0  # VIRQ_TIMER: timer expiries kick the vCPU
        area = dom.alloc_guest(48, 8)
        arg = dom.alloc_guest(8, 8)
        dom.write_guest(arg, area.to_bytes(8, "little"))
        assert hv.hypercall(v0, Hypercall.vcpu_op, VcpuOp.VCPUOP_register_runstate_memory_area, v.vcpu_id, arg) == 0
        areas.append(area)
    return hv, dom, areas


def apply(hv: Hypervisor, dom, step: tuple) -> None:
    sched = hv.scheduler
    kind = step[0]
    if kind == "advance":
        hv.run_for(step[1])
        return
    if kind == "pause":
        dom.pause()
        return
    if kind == "unpause":
        if dom.controller_pause_count:
            dom.unpause()
        return
    v = dom.vcpus[step[1]]
    if kind == "up":
        if v.pause_flags & 2:
            v.pause_flags &= ~2
            sched.vcpu_wake(v)
    elif kind == "down":
        if not v.pause_flags & 2 and any(o is not v and o.is_up for o in dom.vcpus):
            v.pause_flags |= 2
            sched.vcpu_sleep_nosync(v)
    elif kind == "block":
        if v.is_running:
            v.evtchn_upcall_mask = 0
            sched.vcpu_block(v)
    elif kind == "kick":
        sched.vcpu_kick(v)
    elif kind == "yield":
        if v.is_running:
            sched.vcpu_yield(v)
    elif kind == "ack":
        v.vcpu_info_mv[0] = 0
        v.vcpu_info_sel[0] = 0
        dom.evtchn_pending_words[0] = 0
    elif kind == "timer":
        v.singleshot_timer.set(hv.now_ns() + step[2])
    hv.do_softirqs()


def check(hv: Hypervisor, dom, areas: list[int], previous: dict[int, tuple]) -> None:
    now = hv.now_ns()
    for v in dom.vcpus:
        rs = v.runstate
        assert sum(rs.time) == rs.state_entry_time - v.creation_ns
        got = vcpu_runstate_get(v, now)
        assert got[1] == rs.state_entry_time
        assert sum(got[2:]) == max(now, rs.state_entry_time) - v.creation_ns
        before = previous.get(v.vcpu_id)
        if before is not None:
            assert rs.state_entry_time >= before[1]
            assert all(a >= b for a, b in zip(rs.time, before[2:], strict=True))
        previous[v.vcpu_id] = rs.as_tuple()
        assert (rs.state == RUNSTATE_blocked) == bool(v.pause_flags & 1)
        assert (rs.state == RUNSTATE_running) == v.is_running
        assert (rs.state == RUNSTATE_runnable) == v.in_runq
        area = dom.get_struct("vcpu_runstate_info", areas[v.vcpu_id])
        assert not area.state_entry_time & XEN_RUNSTATE_UPDATE
        if v.is_running:
            assert area.state == RUNSTATE_running
            assert area.state_entry_time == rs.state_entry_time
    running = [p.curr for p in hv.pcpus if p.curr is not None]
    assert len(running) == len(set(map(id, running)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, min_size=1, max_size=30))
def test_runstate_invariants_over_random_schedules(sequence):
    """spec 2.2-2.5: the invariants of the module docstring hold after every step."""
    hv, dom, areas = build()
    previous: dict[int, tuple] = {}
    check(hv, dom, areas, previous)
    for step in sequence:
        apply(hv, dom, step)
        check(hv, dom, areas, previous)
    hv.run_for(100 * MS)
    check(hv, dom, areas, previous)
