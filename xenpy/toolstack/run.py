"""Run a booted domain to its end and say how it ended (``xenpy run``).

:func:`run_domain` drives :func:`xenpy.engine.runner.run_domain_until_stopped` and turns what it observed into
an :class:`Outcome` (which ``xenpy run`` returns as its exit status), a one-line detail and the final runstate
of every vCPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from xenpy.abi.sched import SHUTDOWN
from xenpy.core.domain import DomainState
from xenpy.core.runstate import vcpu_runstate_get
from xenpy.engine.runner import RunEnd, run_domain_until_stopped

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.hypervisor import Hypervisor


class Outcome(Enum):
    """How a run ended; the value is ``xenpy run``'s exit status."""

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
        guest_ns: system time from the start of the run to the domain's shutdown (or to the end of the run).
        wall_s: host seconds it took.
        runstates: per vCPU ``(state, state_entry_time, time[0..3])`` at the end (spec 2.3).
    """

    outcome: Outcome
    detail: str
    guest_ns: int
    wall_s: float
    runstates: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)


def run_domain(hv: Hypervisor, domain: Domain, *, timeout_s: float, max_guest_ns: int | None = None) -> RunReport:
    """Unpause ``domain`` and run it until it stops, ``timeout_s`` wall seconds pass, ``max_guest_ns`` of system
    time pass (if given), or it stalls. The scheduler must already have an engine attached."""
    start_ns = hv.now_ns()
    stopped_at: list[int] = []

    def on_change(_domain: Domain, _old: DomainState, new: DomainState) -> None:
        if new in (DomainState.SHUTDOWN, DomainState.CRASHED) and not stopped_at:
            stopped_at.append(hv.now_ns())

    unwatch = domain.watch(on_change)
    try:
        summary = run_domain_until_stopped(hv, domain, timeout_s=timeout_s, max_guest_ns=max_guest_ns)
    finally:
        unwatch()
    now = hv.now_ns()
    guest_ns = (stopped_at[0] if stopped_at else now) - start_ns
    runstates = [vcpu_runstate_get(v, now) for v in domain.vcpus]
    reason = summary.shutdown_reason
    if summary.crash_reason is not None or reason == SHUTDOWN.SHUTDOWN_crash:
        outcome = Outcome.CRASH
        detail = summary.crash_reason or "the guest shut down with SHUTDOWN_crash"
    elif summary.end is RunEnd.STOPPED and reason is not None:
        outcome = Outcome.POWEROFF if reason == SHUTDOWN.SHUTDOWN_poweroff else Outcome.OTHER_SHUTDOWN
        detail = SHUTDOWN(reason).name if reason in SHUTDOWN._value2member_map_ else f"shutdown reason {reason}"
    elif summary.end is RunEnd.STALLED:
        outcome = Outcome.TIMEOUT
        detail = "every vCPU is blocked or down with no timer armed: the guest can never run again"
    else:
        outcome = Outcome.TIMEOUT
        limit = f"{timeout_s:g} s"
        if max_guest_ns is not None:
            limit += f" or {max_guest_ns / 1e9:g} s of guest time"
        detail = f"no shutdown within {limit}"
    return RunReport(outcome, detail, guest_ns, summary.wall_s, runstates)
