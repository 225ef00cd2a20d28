"""Run a domain's vCPUs on the scheduler's pCPUs, in virtual (or host) time, until it stops or time runs out.

The scheduler (:meth:`xenpy.core.scheduler.Scheduler.run_until`) moves system time from event to event and
hands each busy pCPU's vCPU to the engine for the step. Within a step the hypervisor's clock stays at the step's
start for every pCPU but the first (with one pCPU the Unicorn engine moves it with the instructions executed),
while guest time (``rdtsc``, pvclock) advances with each vCPU's own instructions. With several pCPUs the runner
therefore bounds steps to ``pcpu_quantum_ns``, so hypervisor time never lags guest time by more than that: a
vCPU brought up, woken or blocked by another pCPU's vCPU sees the transition at most one quantum late, and a
guest's runstate figures never run ahead of its own clock.

::

    paused --unpause--> running --shutdown/crash--> stopped
                         running --wall or guest time limit--> timed out
                         running --every vCPU blocked or down, no timer armed--> stalled
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from xenpy.core.domain import DomainState

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.hypervisor import Hypervisor

#: System time simulated between two checks of the domain's state.
STEP_NS = 1_000_000
#: Longest scheduler step with several pCPUs (see the module docstring).
PCPU_QUANTUM_NS = 10_000


class RunEnd(Enum):
    """Why :func:`run_domain_until_stopped` returned."""

    STOPPED = "stopped"
    TIMED_OUT = "timed_out"
    STALLED = "stalled"


@dataclass(frozen=True)
class RunSummary:
    """What :func:`run_domain_until_stopped` observed.

    Attributes:
        end: why the run ended.
        state: the domain's lifecycle state at the end.
        shutdown_reason: the SHUTDOWN_* code once shut down (crash included), else None.
        crash_reason: the crash message, if it crashed.
        guest_ns: system time the run covered.
        wall_s: host seconds it took.
    """

    end: RunEnd
    state: DomainState
    shutdown_reason: int | None
    crash_reason: str | None
    guest_ns: int
    wall_s: float


def run_domain_until_stopped(
    hv: Hypervisor,
    domain: Domain,
    *,
    timeout_s: float | None = None,
    max_guest_ns: int | None = None,
    pcpu_quantum_ns: int = PCPU_QUANTUM_NS,
    unpause: bool = True,
) -> RunSummary:
    """Unpause ``domain`` (if paused and ``unpause``) and run the hypervisor until the domain shuts down, crashes or is
    destroyed, until ``timeout_s`` wall seconds or ``max_guest_ns`` of system time pass, or until it stalls.

    The scheduler must have an executor (e.g. a :class:`~xenpy.engine.unicorn_engine.UnicornEngine`).

    Raises:
        RuntimeError: no engine is attached to the scheduler.
    """
    if hv.scheduler.executor is None:
        raise RuntimeError("no CPU engine is attached to the scheduler")
    max_step = pcpu_quantum_ns if len(hv.scheduler.pcpus) > 1 else None
    start_wall = time.monotonic()
    start_ns = hv.now_ns()
    if unpause and domain.controller_pause_count:
        domain.unpause()
    end = RunEnd.STOPPED
    while domain.state not in (DomainState.SHUTDOWN, DomainState.CRASHED, DomainState.DESTROYED):
        if timeout_s is not None and time.monotonic() - start_wall > timeout_s:
            end = RunEnd.TIMED_OUT
            break
        if max_guest_ns is not None and hv.now_ns() - start_ns >= max_guest_ns:
            end = RunEnd.TIMED_OUT
            break
        if not any(v.runnable or v.is_running for v in domain.vcpus) and not hv.timers.has_guest_timers():
            end = RunEnd.STALLED
            break
        step = STEP_NS if max_guest_ns is None else min(STEP_NS, start_ns + max_guest_ns - hv.now_ns())
        hv.run_for(step, max_step_ns=max_step)
    return RunSummary(
        end=end,
        state=domain.state,
        shutdown_reason=domain.shutdown_reason,
        crash_reason=domain.crash_reason,
        guest_ns=hv.now_ns() - start_ns,
        wall_s=time.monotonic() - start_wall,
    )
