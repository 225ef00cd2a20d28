"""Run a booted domain to its end and say how it ended (``xenpy run``).

:func:`run_domain` drives :func:`xenpy.engine.runner.run_domain_until_stopped` and turns what it observed into
an :class:`Outcome` (which ``xenpy run`` returns as its exit status), a one-line detail and the final runstate
of every vCPU.

With console input (:class:`~xenpy.toolstack.console_input.ConsoleInput`), or a ``between_steps`` callback
(what else the toolstack serves while the guest runs: a xenstore socket, a shutdown request), the run goes one
scheduler step (:data:`~xenpy.engine.runner.STEP_NS` of system time) at a time and polls them between steps, so
typing never blocks the guest and the guest never blocks reading. A domain that stalls (every vCPU blocked with
no timer armed) while input may still come, or while ``between_steps`` says something may still wake it, waits
for that instead of ending the run: a keystroke's event, or a xenstore watch, can wake it.

::

    running --step--> poll input, between_steps(0) --> running
    running --escape character--> interrupted
    running --stalled, input open or between_steps(wait) true--> wait (up to the timeout) --> running
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from xenpy.abi.sched import SHUTDOWN
from xenpy.core.domain import DomainState
from xenpy.core.runstate import vcpu_runstate_get
from xenpy.engine.runner import STEP_NS, RunEnd, RunSummary, run_domain_until_stopped

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.hypervisor import Hypervisor
    from xenpy.toolstack.console_input import ConsoleInput

#: Longest wait for console input while the domain is stalled, before the time limits are checked again (s).
STALLED_INPUT_WAIT_S = 0.1

#: ``between_steps(wait_s) -> bool``: serve what the toolstack serves besides the rings, waiting up to ``wait_s``
#: for it; True if it may still wake a stalled guest.
BetweenSteps = Callable[[float], bool]


class Outcome(Enum):
    """How a run ended; the value is ``xenpy run``'s exit status."""

    POWEROFF = 0
    CRASH = 1
    OTHER_SHUTDOWN = 2
    TIMEOUT = 3
    #: the toolstack destroyed the domain (``destroy`` on the control socket).
    DESTROYED = 4
    #: the toolstack saved the domain (``xenpy save``), which ended it here.
    SAVED = 5
    #: the console's escape character ended the run (the status of a run stopped by the user).
    INTERRUPTED = 130


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


def run_domain(
    hv: Hypervisor,
    domain: Domain,
    *,
    timeout_s: float,
    max_guest_ns: int | None = None,
    console_input: ConsoleInput | None = None,
    between_steps: BetweenSteps | None = None,
) -> RunReport:
    """Unpause ``domain`` and run it until it stops, ``timeout_s`` wall seconds pass, ``max_guest_ns`` of system
    time pass (if given), or it stalls. The scheduler must already have an engine attached.

    With ``console_input``, its bytes are fed to the guest between steps, a stall waits for input while more
    may come, and the escape character ends the run (:attr:`Outcome.INTERRUPTED`). ``between_steps(wait_s)`` is
    called between steps with 0, and when the domain is stalled with the longest time it may wait for
    something to happen (it returns True if something outside the guest may still wake it).
    """
    start_ns = hv.now_ns()
    stopped_at: list[int] = []

    def on_change(_domain: Domain, _old: DomainState, new: DomainState) -> None:
        if new in (DomainState.SHUTDOWN, DomainState.CRASHED) and not stopped_at:
            stopped_at.append(hv.now_ns())

    unwatch = domain.watch(on_change)
    try:
        if console_input is None and between_steps is None:
            summary = run_domain_until_stopped(hv, domain, timeout_s=timeout_s, max_guest_ns=max_guest_ns)
        else:
            summary = _run_stepped(
                hv, domain, console_input, between_steps, timeout_s=timeout_s, max_guest_ns=max_guest_ns
            )
    finally:
        unwatch()
    now = hv.now_ns()
    guest_ns = (stopped_at[0] if stopped_at else now) - start_ns
    runstates = [vcpu_runstate_get(v, now) for v in domain.vcpus]
    reason = summary.shutdown_reason
    if console_input is not None and console_input.detached and summary.end is not RunEnd.STOPPED:
        outcome = Outcome.INTERRUPTED
        detail = "Ctrl-], the console escape character, was typed"
    elif summary.state is DomainState.DESTROYED:
        outcome = Outcome.DESTROYED
        detail = "destroyed by the toolstack"
    elif summary.crash_reason is not None or reason == SHUTDOWN.SHUTDOWN_crash:
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


def _run_stepped(
    hv: Hypervisor,
    domain: Domain,
    console_input: ConsoleInput | None,
    between_steps: BetweenSteps | None,
    *,
    timeout_s: float,
    max_guest_ns: int | None,
) -> RunSummary:
    """:func:`run_domain_until_stopped` one step at a time, polling ``console_input`` and calling
    ``between_steps`` between steps."""
    start_wall = time.monotonic()
    start_ns = hv.now_ns()
    end = RunEnd.TIMED_OUT
    first = True  # later steps leave a pause of the toolstack's (between_steps) in place
    while True:
        if console_input is not None:
            console_input.poll()
        if between_steps is not None:
            between_steps(0.0)
        elapsed_s = time.monotonic() - start_wall
        guest_ns = hv.now_ns() - start_ns
        if (console_input is not None and console_input.detached) or elapsed_s > timeout_s:
            break
        if max_guest_ns is not None and guest_ns >= max_guest_ns:
            break
        step_ns = STEP_NS if max_guest_ns is None else min(STEP_NS, max_guest_ns - guest_ns)
        summary = run_domain_until_stopped(hv, domain, timeout_s=timeout_s - elapsed_s, max_guest_ns=step_ns,
                                           unpause=first)
        first = False
        if summary.end is RunEnd.STOPPED:
            end = RunEnd.STOPPED
            break
        if summary.end is RunEnd.STALLED:
            wait_s = min(STALLED_INPUT_WAIT_S, max(0.0, timeout_s - (time.monotonic() - start_wall)))
            waiting = False
            if console_input is not None and console_input.is_open:
                console_input.poll(wait_s)
                waiting, wait_s = True, 0.0
            if between_steps is not None and between_steps(wait_s):
                waiting = True
            if not waiting:
                end = RunEnd.STALLED
                break
    return RunSummary(
        end=end,
        state=domain.state,
        shutdown_reason=domain.shutdown_reason,
        crash_reason=domain.crash_reason,
        guest_ns=hv.now_ns() - start_ns,
        wall_s=time.monotonic() - start_wall,
    )
