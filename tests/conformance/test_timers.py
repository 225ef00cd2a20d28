"""Periodic and single-shot timers, set_timer_op, VIRQ_TIMER delivery, watchdogs (spec 3.1-3.4, 1.2 cmds 6-9)."""

from __future__ import annotations

import pytest

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall, SchedOp, VcpuOp
from xenpy.abi.sched import SHUTDOWN_watchdog
from xenpy.abi.vcpu import VCPU_SSHOTTMR_future
from xenpy.core import DomainState
from xenpy.core.domain import PauseFlags
from xenpy.core.runstate import RUNSTATE_blocked, RUNSTATE_offline, RUNSTATE_runnable, RUNSTATE_running

from .conftest import ALL_PROFILES, UNMAPPED_GVA, Guest

EINVAL = -XenErrno.EINVAL
EFAULT = -XenErrno.EFAULT
MS = 1_000_000
VIRQ_TIMER = 0


def set_periodic(g: Guest, vcpuid: int, period: int, *, by: int = 0) -> int:
    return g.vcpu_op(VcpuOp.VCPUOP_set_periodic_timer, vcpuid, g.put_u64(period), vcpu=by)


def set_singleshot(g: Guest, vcpuid: int, timeout: int, flags: int = 0, *, by: int = 0) -> int:
    arg = g.put("vcpu_set_singleshot_timer", timeout_abs_ns=timeout, flags=flags)
    return g.vcpu_op(VcpuOp.VCPUOP_set_singleshot_timer, vcpuid, arg, vcpu=by)


def pending(g: Guest, port: int) -> bool:
    return g.dom.evtchn.is_pending(port)


def clear(g: Guest, port: int) -> None:
    """What a guest's event handler does: clear the pending bit, the selector and upcall_pending."""
    g.dom.evtchn.clear_pending(g.dom.evtchn.ports[port])
    for v in g.v:
        if v.vcpu_info_mv is not None:
            v.vcpu_info_mv[0] = 0
            v.vcpu_info_sel[0] = 0


# ------------------------------------------------------------------------------------------ 3.1 periodic


def test_periodic_default_is_10ms(guest: Guest):
    """spec 3.1: every PV vCPU starts with a 10 ms period and periodic_last_event 0."""
    for v in guest.v:
        assert v.periodic_period_ns == 10 * MS
        assert v.periodic_last_event_ns == 0


@pytest.mark.parametrize("profile", ALL_PROFILES)
@pytest.mark.parametrize(
    ("period", "rc"),
    [(0, EINVAL), (MS - 1, EINVAL), (MS, 0), (2**62 - 1, 0), (2**62, EINVAL), (2**64 - 1, EINVAL)],
)
def test_set_periodic_bounds(make_guest, profile, period, rc):
    """spec 1.2 cmd 6, 8.4: period in [1 ms, 2**62 - 1] (unsigned compares), else -EINVAL and no change."""
    g = make_guest(profile)
    assert set_periodic(g, 1, period) == rc
    assert g.v[1].periodic_period_ns == (period if rc == 0 else 10 * MS)


def test_set_periodic_bad_pointer(guest: Guest):
    """spec 1.2 cmd 6 (1): the argument cannot be read -> -EFAULT."""
    assert guest.vcpu_op(VcpuOp.VCPUOP_set_periodic_timer, 0, UNMAPPED_GVA) == EFAULT


def test_set_periodic_ticks_immediately_when_due(guest1: Guest):
    """spec 3.1, 8.4: setting a period when the last tick is older than the period fires a tick at once."""
    g = guest1
    port = g.bind_virq(VIRQ_TIMER)
    assert g.vcpu_op(VcpuOp.VCPUOP_stop_periodic_timer, 0) == 0
    g.hv.run_for(50 * MS)
    assert set_periodic(g, 0, 60 * MS) == 0
    assert not pending(g, port)  # last tick 0 + 60 ms > NOW
    assert set_periodic(g, 0, 20 * MS) == 0
    assert pending(g, port)
    assert g.v[0].periodic_last_event_ns == 50 * MS


def test_periodic_reanchors_to_fire_time(guest1: Guest):
    """spec 3.1, 3.2: a deadline fires when expires < NOW (strict); the next deadline is fire time + period."""
    g = guest1
    port = g.bind_virq(VIRQ_TIMER)
    assert g.vcpu_op(VcpuOp.VCPUOP_stop_periodic_timer, 0) == 0
    g.hv.run_for(50 * MS)
    assert set_periodic(g, 0, 10 * MS) == 0
    assert g.v[0].periodic_last_event_ns == 50 * MS
    clear(g, port)
    g.hv.run_for(10 * MS)
    assert not pending(g, port)  # deadline 60 ms is not < NOW = 60 ms
    g.hv.run_for(1)
    assert pending(g, port)
    assert g.v[0].periodic_last_event_ns == 60 * MS + 1
    assert g.v[0].periodic_timer.expires == 70 * MS + 1


def test_periodic_stopped_while_descheduled(guest1: Guest):
    """spec 3.1, 8.4: a blocked vCPU is not woken by its periodic timer."""
    g = guest1
    port = g.bind_virq(VIRQ_TIMER)
    g.hv.run_for(15 * MS)
    clear(g, port)
    assert g.block() == 0
    g.hv.run_for(200 * MS)
    assert g.v[0].runstate.state == RUNSTATE_blocked
    assert not pending(g, port)
    assert not g.v[0].periodic_timer.active


def test_periodic_missed_ticks_collapse_into_one(guest1: Guest):
    """spec 3.1, 8.4: on switch-in after a long absence exactly one tick is sent, then the period restarts."""
    g = guest1
    port = g.bind_virq(VIRQ_TIMER)
    g.hv.run_for(15 * MS)
    clear(g, port)
    assert g.block() == 0
    g.hv.run_for(100 * MS)
    ticks = []
    original = g.dom.evtchn.set_pending

    def counting(v, chn):
        ticks.append(g.hv.now_ns())
        original(v, chn)

    g.dom.evtchn.set_pending = counting  # type: ignore[method-assign]
    g.hv.scheduler.vcpu_kick(g.v[0])
    g.hv.do_softirqs()
    assert ticks == [115 * MS]
    assert g.v[0].periodic_last_event_ns == 115 * MS
    assert g.v[0].periodic_timer.expires == 125 * MS


def test_set_periodic_on_descheduled_vcpu_can_fire(guest1: Guest):
    """spec 3.1 exception: set_periodic_timer on a descheduled vCPU arms the timer; its tick kicks the vCPU."""
    g = guest1
    g.bring_up(1)
    port = g.bind_virq(VIRQ_TIMER, 1)
    g.hv.run_for(40 * MS)  # vCPU 1 runs from 30 ms
    assert g.sched_op(SchedOp.SCHEDOP_block, vcpu=1) == 0
    clear(g, port)
    g.v[1].periodic_last_event_ns = g.hv.now_ns()
    assert set_periodic(g, 1, 5 * MS) == 0
    assert g.v[1].periodic_timer.active
    g.hv.run_for(5 * MS + 1)
    assert pending(g, port)
    assert not g.v[1].pause_flags & PauseFlags.VPF_blocked


def test_stop_periodic(guest1: Guest):
    """spec 1.2 cmd 7: period 0, timer stopped, no more ticks."""
    g = guest1
    port = g.bind_virq(VIRQ_TIMER)
    assert g.vcpu_op(VcpuOp.VCPUOP_stop_periodic_timer, 0) == 0
    assert g.v[0].periodic_period_ns == 0
    clear(g, port)
    g.hv.run_for(100 * MS)
    assert not pending(g, port)


def test_periodic_4_10_forces_reschedule(make_guest, hv):
    """spec 1.4: in <= 4.12 setting the period of a running vCPU deschedules it briefly:
    running -> offline -> runnable -> running."""
    g = make_guest("4.10")
    seen = []
    hv.runstate_hooks.append(lambda v, old, new, t: seen.append((v.vcpu_id, old, new)))
    assert set_periodic(g, 0, 20 * MS) == 0
    assert seen == [
        (0, RUNSTATE_running, RUNSTATE_offline),
        (0, RUNSTATE_offline, RUNSTATE_runnable),
        (0, RUNSTATE_runnable, RUNSTATE_running),
    ]
    assert g.v[0].periodic_period_ns == 20 * MS


def test_periodic_head_no_reschedule(guest: Guest, hv):
    """spec 1.4 (>= 4.13): set_periodic_timer does not deschedule the target."""
    seen = []
    hv.runstate_hooks.append(lambda v, old, new, t: seen.append((v.vcpu_id, old, new)))
    assert set_periodic(guest, 0, 20 * MS) == 0
    assert seen == []


# ------------------------------------------------------------------------------------------ 3.2 single-shot


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_singleshot_self_only_checked_before_copy(make_guest, profile):
    """spec 1.2 cmd 8, 8.1 (PV64): v != current -> -EINVAL before the argument is read."""
    g = make_guest(profile)
    assert g.vcpu_op(VcpuOp.VCPUOP_set_singleshot_timer, 1, UNMAPPED_GVA) == EINVAL
    assert g.vcpu_op(VcpuOp.VCPUOP_set_singleshot_timer, 0, UNMAPPED_GVA) == EFAULT


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_stop_singleshot_self_only(make_guest, profile):
    """spec 1.2 cmd 9: stop_singleshot_timer on another vCPU -> -EINVAL; on self stops the timer."""
    g = make_guest(profile)
    g.hv.run_for(MS)
    assert set_singleshot(g, 0, 50 * MS) == 0
    assert g.vcpu_op(VcpuOp.VCPUOP_stop_singleshot_timer, 1) == EINVAL
    assert g.v[0].singleshot_timer.active
    assert g.vcpu_op(VcpuOp.VCPUOP_stop_singleshot_timer, 0) == 0
    assert not g.v[0].singleshot_timer.active


@pytest.mark.parametrize("profile", ["head", "4.17.3"])
@pytest.mark.parametrize("flags", [0, VCPU_SSHOTTMR_future])
def test_singleshot_past_injects_immediately(make_guest, profile, flags):
    """spec 1.2 cmd 8, 1.4, 8.3 (4.17.3+/4.18): a past deadline injects VIRQ_TIMER synchronously, flags ignored."""
    g = make_guest(profile)
    port = g.bind_virq(VIRQ_TIMER)
    g.hv.run_for(10 * MS)
    clear(g, port)
    injected = []
    g.hv.add_hypercall_hook(post=lambda v, nr, args, rc: injected.append(pending(g, port)))
    assert set_singleshot(g, 0, 5 * MS, flags) == 0
    assert injected == [True]
    assert not g.v[0].singleshot_timer.active


@pytest.mark.parametrize("profile", ["4.17", "4.10"])
def test_singleshot_past_with_future_flag_is_etime(make_guest, profile):
    """spec 1.4, 8.3 (before 4.17.3): a past deadline with VCPU_SSHOTTMR_future -> -ETIME, no event."""
    g = make_guest(profile)
    port = g.bind_virq(VIRQ_TIMER)
    g.hv.run_for(10 * MS)
    clear(g, port)
    assert set_singleshot(g, 0, 5 * MS, VCPU_SSHOTTMR_future) == -XenErrno.ETIME
    assert not pending(g, port)


@pytest.mark.parametrize("profile", ["4.17", "4.10"])
def test_singleshot_past_without_flag_fires_at_next_softirq(make_guest, profile):
    """spec 1.4: without the flag the timer is set in the past and fires at the next timer softirq (before the
    return to the guest), not inside the hypercall."""
    g = make_guest(profile)
    port = g.bind_virq(VIRQ_TIMER)
    g.hv.run_for(10 * MS)
    clear(g, port)
    during = []
    g.hv.add_hypercall_hook(post=lambda v, nr, args, rc: during.append(pending(g, port)))
    assert set_singleshot(g, 0, 5 * MS) == 0
    assert during == [False]
    assert pending(g, port)


def test_singleshot_fires_strictly_after_deadline_and_wakes(guest1: Guest):
    """spec 3.2: the timer fires when expires < NOW; it is not stopped on deschedule and wakes a blocked vCPU."""
    g = guest1
    port = g.bind_virq(VIRQ_TIMER)
    assert g.vcpu_op(VcpuOp.VCPUOP_stop_periodic_timer, 0) == 0
    assert set_singleshot(g, 0, 20 * MS) == 0
    clear(g, port)
    assert g.block() == 0
    g.hv.run_for(20 * MS)
    assert g.v[0].runstate.state == RUNSTATE_blocked
    g.hv.run_for(1)
    assert pending(g, port)
    assert g.v[0].runstate.state == RUNSTATE_running


def test_singleshot_huge_timeout_fires_at_once(guest: Guest):
    """spec 3.2: timeout_abs_ns >= 2**63 passes the unsigned 'future' test but is a negative s_time_t, so it
    fires at once (at the next softirq)."""
    port = guest.bind_virq(VIRQ_TIMER)
    guest.hv.run_for(MS)
    clear(guest, port)
    assert set_singleshot(guest, 0, 2**63 + 5) == 0
    assert pending(guest, port)


def test_singleshot_and_periodic_are_independent(guest1: Guest):
    """spec 3.2: both timers raise VIRQ_TIMER; stopping one leaves the other."""
    g = guest1
    g.hv.run_for(MS)
    assert set_singleshot(g, 0, 100 * MS) == 0
    assert g.vcpu_op(VcpuOp.VCPUOP_stop_periodic_timer, 0) == 0
    assert g.v[0].singleshot_timer.active
    assert set_periodic(g, 0, 10 * MS) == 0
    assert g.vcpu_op(VcpuOp.VCPUOP_stop_singleshot_timer, 0) == 0
    assert g.v[0].periodic_timer.active


# ------------------------------------------------------------------------------------------ set_timer_op


@pytest.mark.parametrize(
    ("timeout_fn", "expires_fn"),
    [
        (lambda now: now + 5 * MS, lambda now: now + 5 * MS),
        (lambda now: -1 & (2**64 - 1), lambda now: now + 100 * MS),
        (lambda now: 2**63, lambda now: now + 100 * MS),
        (lambda now: now + 2**50, lambda now: now + 100 * MS),
        (lambda now: now + 2**50 - 1, lambda now: now + 2**50 - 1),
    ],
    ids=["normal", "negative", "bit63", "2^50-ahead", "just-below-2^50"],
)
def test_set_timer_op_deadlines(guest: Guest, timeout_fn, expires_fn):
    """spec 3.2 do_set_timer_op, 8.3: negative or >= 2**50 ns ahead becomes NOW + 100 ms; returns 0."""
    guest.hv.run_for(3 * MS)
    now = guest.hv.now_ns()
    assert guest.call(Hypercall.set_timer_op, timeout_fn(now)) == 0
    assert guest.v[0].singleshot_timer.active
    assert guest.v[0].singleshot_timer.expires == expires_fn(now)


def test_set_timer_op_zero_stops(guest: Guest):
    """spec 3.2: timeout 0 stops the single-shot timer."""
    guest.hv.run_for(MS)
    assert guest.call(Hypercall.set_timer_op, 50 * MS) == 0
    assert guest.call(Hypercall.set_timer_op, 0) == 0
    assert not guest.v[0].singleshot_timer.active


def test_set_timer_op_past_fires_immediately(guest: Guest):
    """spec 3.2: a past value fires immediately (before the return to the guest)."""
    port = guest.bind_virq(VIRQ_TIMER)
    guest.hv.run_for(10 * MS)
    clear(guest, port)
    assert guest.call(Hypercall.set_timer_op, 1) == 0
    assert pending(guest, port)


# ------------------------------------------------------------------------------------------ 3.3 delivery


def test_unbound_virq_timer_is_dropped(guest1: Guest):
    """spec 3.3, 8.5: VIRQ_TIMER with no binding on that vCPU is dropped, not latched."""
    g = guest1
    g.hv.run_for(50 * MS)
    assert set_singleshot(g, 0, 0) == 0
    port = g.bind_virq(VIRQ_TIMER)
    assert not pending(g, port)


def test_virq_timer_goes_to_the_vcpu_itself(guest1: Guest):
    """spec 3.3: the timer event pends on the port bound on that vCPU and marks that vCPU's vcpu_info."""
    g = guest1
    g.bring_up(1)
    port1 = g.bind_virq(VIRQ_TIMER, 1)
    port0 = g.bind_virq(VIRQ_TIMER, 0)
    g.dom.vcpus[0].vcpu_info_mv[1] = 0
    g.dom.vcpus[1].vcpu_info_mv[1] = 0
    clear(g, port0)
    g.hv.run_for(30 * MS)  # vCPU 1 scheduled in: its periodic timer is due
    assert pending(g, port1)
    assert g.v[1].evtchn_upcall_pending == 1
    assert g.v[1].vcpu_info_sel[0] & 1


# ------------------------------------------------------------------------------------------ watchdog (3.4)


def watchdog(g: Guest, wd_id: int, timeout: int) -> int:
    return g.sched_op(SchedOp.SCHEDOP_watchdog, g.put("sched_watchdog", id=wd_id, timeout=timeout))


def test_watchdog_allocation(guest: Guest):
    """spec 3.4 SCHEDOP_watchdog: id 0 allocates slot 1 then 2, then (uint32_t)-ENOSPC as real Xen 4.17.7 and
    4.20 return it; id > 2 or unused -> -EINVAL."""
    assert watchdog(guest, 3, 10) == EINVAL
    assert watchdog(guest, 1, 10) == EINVAL
    assert watchdog(guest, 0, 10) == 1
    assert watchdog(guest, 0, 10) == 2
    assert watchdog(guest, 0, 10) == 0xFFFF_FFE4
    assert watchdog(guest, 1, 0) == 0
    assert watchdog(guest, 1, 5) == EINVAL
    assert watchdog(guest, 0, 10) == 1


def test_watchdog_expiry_shuts_down(guest: Guest):
    """spec 3.4: on expiry, domain_shutdown(SHUTDOWN_watchdog); re-arming postpones it."""
    assert watchdog(guest, 0, 2) == 1
    guest.hv.run_for(1_500 * MS)
    assert watchdog(guest, 1, 2) == 0
    guest.hv.run_for(1_900 * MS)
    assert guest.dom.state is DomainState.RUNNING
    guest.hv.run_for(200 * MS)
    assert guest.dom.state is DomainState.SHUTDOWN
    assert guest.dom.shutdown_reason == SHUTDOWN_watchdog


def test_watchdog_destroyed_never_fires(guest: Guest):
    """spec 3.4: timeout 0 destroys the watchdog."""
    assert watchdog(guest, 0, 1) == 1
    assert watchdog(guest, 1, 0) == 0
    guest.hv.run_for(5_000 * MS)
    assert guest.dom.state is DomainState.RUNNING


def test_watchdog_bad_pointer(guest: Guest):
    """spec 3.4: the argument cannot be read -> -EFAULT."""
    assert guest.sched_op(SchedOp.SCHEDOP_watchdog, UNMAPPED_GVA) == EFAULT


def test_runstate_offline_after_shutdown(guest: Guest):
    """spec 3.4: domain_shutdown pauses every vCPU."""
    assert watchdog(guest, 0, 1) == 1
    guest.hv.run_for(1_100 * MS)
    assert guest.v[0].runstate.state == RUNSTATE_offline
    assert guest.v[0].runstate.state != RUNSTATE_runnable
