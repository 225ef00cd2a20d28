"""Run a booted domain on a CPU engine until it shuts down, crashes, or runs out of time (``xenpy run``).

The scheduler drives the engine in steps of system time (:meth:`Hypervisor.run_for`); after each step the
runner checks the domain's state, the virtual-time limit and the wall-clock limit. A domain whose vCPUs are
all blocked with no timer armed can never run again: the runner reports it as stalled rather than waiting for
the timeout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from xenpy.abi.sched import SHUTDOWN
from xenpy.core.domain import DomainState
from xenpy.core.runstate import vcpu_runstate_get

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.core.hypervisor import Hypervisor

#: System time simulated per runner step: short enough to notice a shutdown promptly.
STEP_NS = 1_000_000


class Outcome(Enum):
    """How a run ended; each maps to ``xenpy run``'s exit status."""

    POWEROFF = 0
    CRASH = 1
    OTHER_SHUTDOWN = 2
    TIMEOUT = 3


@dataclass
class RunReport:
    """What :func:`run_domain` observed.

    Attributes:
        outcome: how the run ended.
        detail: the shutdown reason's name, the crash message, or why the run timed out.
        guest_ns: system time the run covered.
        wall_s: host seconds it took.
        runstates: per vCPU ``(state, state_entry_time, time[0..3])`` at the end (spec 2.3).
    """

    outcome: Outcome
    detail: str
    guest_ns: int
    wall_s: float
    runstates: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)


def run_domain(hv: Hypervisor, domain: Domain, *, timeout_s: float, max_guest_ns: int | None = None) -> RunReport:
    """Unpause ``domain`` and run the hypervisor until the domain stops, or ``timeout_s`` wall seconds pass, or
    (if given) ``max_guest_ns`` of system time pass. The scheduler must already have an executor (an engine)."""
    start_wall = time.monotonic()
    start_ns = hv.now_ns()
    domain.unpause()
    detail = ""
    while True:
        state = domain.state
        if state in (DomainState.SHUTDOWN, DomainState.CRASHED, DomainState.DESTROYED):
            break
        if time.monotonic() - start_wall > timeout_s:
            detail = f"no shutdown within {timeout_s:g} s"
            break
        if max_guest_ns is not None and hv.now_ns() - start_ns >= max_guest_ns:
            detail = f"no shutdown within {max_guest_ns / 1e9:g} s of guest time"
            break
        if _stalled(hv, domain):
            detail = "every vCPU is blocked or down with no timer armed: the guest can never run again"
            break
        hv.run_for(STEP_NS)
    report = RunReport(
        outcome=Outcome.TIMEOUT,
        detail=detail,
        guest_ns=hv.now_ns() - start_ns,
        wall_s=time.monotonic() - start_wall,
        runstates=[vcpu_runstate_get(v, hv.now_ns()) for v in domain.vcpus],
    )
    if domain.state is DomainState.CRASHED or domain.shutdown_reason == SHUTDOWN.SHUTDOWN_crash:
        report.outcome = Outcome.CRASH
        report.detail = domain.crash_reason or "the guest shut down with SHUTDOWN_crash"
    elif domain.shutdown_reason is not None and not detail:
        reason = domain.shutdown_reason
        report.outcome = Outcome.POWEROFF if reason == SHUTDOWN.SHUTDOWN_poweroff else Outcome.OTHER_SHUTDOWN
        report.detail = SHUTDOWN(reason).name if reason in SHUTDOWN._value2member_map_ else f"reason {reason}"
    return report


def _stalled(hv: Hypervisor, domain: Domain) -> bool:
    """No vCPU of ``domain`` can run now and no timer will ever change that."""
    if any(v.runnable or v.is_running for v in domain.vcpus):
        return False
    return hv.timers.next_fire_time() is None
