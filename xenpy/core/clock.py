"""Xen system time (``NOW()``) and the TSC scale guests use to extrapolate it.

Implements the hypervisor side of ``xen/arch/x86/time.c``: system time is nanoseconds since the hypervisor
booted (``s_time_t``), the timebase of runstate accounting (spec 2.1), timers (spec 3.1-3.2) and
``vcpu_time_info.system_time`` (spec 3.6).

Two clocks share one interface (:class:`Clock`):

* :class:`VirtualClock` (the default) only moves when the hypervisor moves it: the scheduler advances it as
  vCPUs consume time and jumps it to the next timer deadline when every vCPU is idle. Two runs of the same
  scenario therefore give identical times, to the nanosecond.
* :class:`HostClock` follows the host's monotonic clock; "advancing" it means sleeping.

Both expose a virtual TSC derived from system time (``tsc_hz`` ticks per second, default 1 GHz so one tick is
one nanosecond) and the ``(tsc_to_system_mul, tsc_shift)`` pair Xen's ``set_time_scale`` computes for it.

Invariant: ``now_ns()`` never decreases.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

NSEC_PER_SEC = 1_000_000_000

#: Xen's ``MILLISECS(1)`` and ``MICROSECS(1)`` in ns.
MILLISECS_1 = 1_000_000
MICROSECS_1 = 1_000


def SECONDS(s: int) -> int:
    """``SECONDS(s)`` in nanoseconds."""
    return s * NSEC_PER_SEC


def time_scale(ticks_per_sec: int) -> tuple[int, int]:
    """Xen's ``set_time_scale``: ``(mul_frac, shift)`` so that ``ns = ((ticks << shift) * mul_frac) >> 32``.

    A negative shift means a right shift (spec 3.6).
    """
    if ticks_per_sec <= 0:
        raise ValueError(f"ticks_per_sec must be positive, got {ticks_per_sec}")
    tps64 = ticks_per_sec
    shift = 0
    while tps64 > NSEC_PER_SEC * 2:
        tps64 >>= 1
        shift -= 1
    tps32 = tps64 & 0xFFFF_FFFF
    while tps32 <= NSEC_PER_SEC:
        tps32 <<= 1
        shift += 1
    mul_frac = (NSEC_PER_SEC << 32) // tps32
    return mul_frac, shift


def scale_delta(delta: int, mul_frac: int, shift: int) -> int:
    """What a guest computes from a TSC delta: ``((delta << shift) * mul_frac) >> 32`` (spec 3.6)."""
    delta = delta << shift if shift >= 0 else delta >> -shift
    return (delta * mul_frac) >> 32


@runtime_checkable
class Clock(Protocol):
    """System time source of a hypervisor."""

    tsc_hz: int

    def now_ns(self) -> int:
        """Current system time in nanoseconds (Xen's ``NOW()``)."""
        ...

    def wait_until(self, t_ns: int) -> None:
        """Let system time reach ``t_ns`` (virtual: jump; host: sleep). Never moves time backwards."""
        ...

    def tsc_at(self, t_ns: int) -> int:
        """The virtual TSC value at system time ``t_ns``."""
        ...


class _TscMixin:
    tsc_hz: int

    def tsc_at(self, t_ns: int) -> int:
        """The virtual TSC at system time ``t_ns``: ``t_ns * tsc_hz / 1e9`` (floor)."""
        if self.tsc_hz == NSEC_PER_SEC:
            return t_ns
        return t_ns * self.tsc_hz // NSEC_PER_SEC

    @property
    def tsc_scale(self) -> tuple[int, int]:
        """``(tsc_to_system_mul, tsc_shift)`` for this clock's TSC frequency."""
        return time_scale(self.tsc_hz)


class VirtualClock(_TscMixin):
    """Deterministic system time, moved only by :meth:`advance` / :meth:`wait_until`.

    Args:
        start_ns: system time at hypervisor boot (default 0).
        tsc_hz: virtual TSC frequency.
    """

    def __init__(self, start_ns: int = 0, *, tsc_hz: int = NSEC_PER_SEC) -> None:
        if start_ns < 0:
            raise ValueError("start_ns must be >= 0")
        self._now = start_ns
        self.tsc_hz = tsc_hz

    def now_ns(self) -> int:
        """Current system time in ns."""
        return self._now

    def advance(self, delta_ns: int) -> int:
        """Move time forward by ``delta_ns`` (>= 0); returns the new time."""
        if delta_ns < 0:
            raise ValueError(f"time cannot go backwards (delta {delta_ns})")
        self._now += delta_ns
        return self._now

    def wait_until(self, t_ns: int) -> None:
        """Jump to ``t_ns`` if it is in the future; otherwise do nothing."""
        if t_ns > self._now:
            self._now = t_ns

    def __repr__(self) -> str:
        return f"VirtualClock(now_ns={self._now})"


class HostClock(_TscMixin):
    """System time from the host's monotonic clock, zero at construction (plus ``start_ns``)."""

    def __init__(self, start_ns: int = 0, *, tsc_hz: int = NSEC_PER_SEC) -> None:
        self._base = time.monotonic_ns() - start_ns
        self.tsc_hz = tsc_hz

    def now_ns(self) -> int:
        """Current system time in ns."""
        return time.monotonic_ns() - self._base

    def wait_until(self, t_ns: int) -> None:
        """Sleep until system time reaches ``t_ns``."""
        delta = t_ns - self.now_ns()
        if delta > 0:
            time.sleep(delta / NSEC_PER_SEC)

    def advance(self, delta_ns: int) -> int:
        """Sleep ``delta_ns``; returns the new time."""
        self.wait_until(self.now_ns() + delta_ns)
        return self.now_ns()

    def __repr__(self) -> str:
        return f"HostClock(now_ns={self.now_ns()})"
