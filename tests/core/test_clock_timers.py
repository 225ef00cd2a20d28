"""Clocks, the TSC scale and the timer queue (xenpy.core.clock, xenpy.core.timers)."""

from __future__ import annotations

import pytest

from xenpy.core.clock import HostClock, VirtualClock, scale_delta, time_scale
from xenpy.core.timers import TimerQueue, s_time


def test_virtual_clock_moves_only_forward():
    clock = VirtualClock(start_ns=5)
    assert clock.now_ns() == 5
    assert clock.advance(10) == 15
    clock.wait_until(12)
    assert clock.now_ns() == 15
    clock.wait_until(100)
    assert clock.now_ns() == 100
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_host_clock_is_monotonic():
    clock = HostClock()
    a = clock.now_ns()
    clock.advance(1_000_000)
    assert clock.now_ns() - a >= 1_000_000


@pytest.mark.parametrize("hz", [1_000_000_000, 2_400_000_000, 3_000_000_000, 100_000_000, 1_999_999_999])
def test_time_scale_converts_ticks_to_ns(hz):
    """Xen's set_time_scale: a guest converts one second of ticks back to ~1e9 ns."""
    mul, shift = time_scale(hz)
    assert 0 < mul < 2**32
    assert abs(scale_delta(hz, mul, shift) - 1_000_000_000) <= 2


def test_time_scale_1ghz_is_exact():
    assert time_scale(1_000_000_000) == (0x8000_0000, 1)
    assert VirtualClock().tsc_at(123_456) == 123_456
    assert VirtualClock(tsc_hz=2_000_000_000).tsc_at(10) == 20


def test_timers_fire_strictly_after_deadline_in_order():
    q = TimerQueue()
    fired = []
    a = q.timer(fired.append, "a")
    b = q.timer(fired.append, "b")
    c = q.timer(fired.append, "c")
    a.set(10)
    b.set(5)
    c.set(10)
    assert q.next_deadline() == 5
    assert q.next_fire_time() == 6
    assert q.fire_expired(5) == 0
    assert q.fire_expired(6) == 1
    assert q.fire_expired(11) == 2
    assert fired == ["b", "a", "c"]
    assert not a.active
    assert q.next_deadline() is None


def test_timer_rearm_and_stop():
    q = TimerQueue()
    fired = []
    t = q.timer(fired.append, 1)
    t.set(10)
    t.set(20)
    assert q.fire_expired(15) == 0
    t.stop()
    assert q.fire_expired(100) == 0
    assert fired == []
    assert len(q) == 0


def test_negative_deadline_fires_at_once():
    q = TimerQueue()
    fired = []
    q.timer(fired.append, "x").set(s_time(2**63 + 1))
    assert q.fire_expired(0) == 1


def test_arming_an_expired_timer_raises_the_softirq():
    """spec 3.2: a timer armed in the past raises TIMER_SOFTIRQ (it fires before the return to the guest)."""
    now = [100]
    raised = []
    q = TimerQueue(now_ns=lambda: now[0], raise_softirq=lambda: raised.append(now[0]))
    t = q.timer(lambda _: None, None)
    t.set(100)
    t.set(200)
    assert raised == []
    t.set(99)
    t.set(s_time(2**63))
    assert raised == [100, 100]


def test_callback_may_arm_expired_timer():
    q = TimerQueue()
    fired = []
    second = q.timer(fired.append, "second")
    first = q.timer(lambda _: (fired.append("first"), second.set(0)), None)
    first.set(1)
    assert q.fire_expired(5) == 2
    assert fired == ["first", "second"]


def test_s_time_sign():
    assert s_time(5) == 5
    assert s_time(2**64 - 1) == -1
    assert s_time(2**63) == -(2**63)
