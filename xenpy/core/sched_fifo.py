"""``--sched fifo``: one FIFO run queue shared by all pCPUs, a fixed time slice, no priorities, no preemption on
wake.

Not one of Xen's schedulers: the simplest deterministic policy, kept to compare against credit2 and for tests that
want round-robin time slices. A woken vCPU joins the tail of the queue and an idle pCPU takes it at the next
softirq; a running vCPU keeps its pCPU until its slice ends, it blocks, yields or goes down.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xenpy.core.domain import Vcpu
    from xenpy.core.scheduler import Pcpu, Scheduler

#: Default time slice, as credit's ``sched_credit_tslice_ms`` (30 ms).
DEFAULT_TIME_SLICE_NS = 30_000_000


class FifoScheduler:
    """Round-robin over one FIFO queue with slices of ``time_slice_ns``.

    Attributes:
        runq: the queued vCPUs, head first.
    """

    name = "fifo"
    #: An idle pCPU takes queued work at every softirq (nothing tickles it).
    idle_pulls = True

    def __init__(self, time_slice_ns: int = DEFAULT_TIME_SLICE_NS) -> None:
        if time_slice_ns <= 0:
            raise ValueError("time_slice_ns must be positive")
        self.time_slice_ns = time_slice_ns
        self.runq: deque[Vcpu] = deque()
        self.sched: Scheduler | None = None

    def attach(self, sched: Scheduler) -> None:
        self.sched = sched

    def enqueue(self, v: Vcpu, *, front: bool = False) -> None:
        """Queue ``v`` at the tail (or the head)."""
        if front:
            self.runq.appendleft(v)
        else:
            self.runq.append(v)
        v.in_runq = True
        assert self.sched is not None
        self.sched.softirq_pending = True

    def remove(self, v: Vcpu) -> None:
        self.runq.remove(v)
        v.in_runq = False

    def wake(self, v: Vcpu, now: int) -> None:
        self.enqueue(v)

    def context_saved(self, prev: Vcpu, now: int) -> None:
        """``prev`` left its pCPU: if still runnable, it goes to the tail."""
        if prev.runnable:
            self.enqueue(prev)

    def requeue_front(self, v: Vcpu) -> None:
        """``v`` was displaced without its fault (force_reschedule, schedule_in): it goes back to the head."""
        if v.in_runq:
            self.runq.remove(v)
        self.enqueue(v, front=True)

    def pick(self, pcpu: Pcpu) -> Vcpu | None:
        """The first queued vCPU allowed on ``pcpu``."""
        cpu = pcpu.cpu_id
        for v in self.runq:
            if v.hard_affinity is None or v.hard_affinity == cpu:
                return v
        return None

    def has_work(self, pcpu: Pcpu) -> bool:
        return bool(self.runq) and self.pick(pcpu) is not None

    def do_schedule(
        self, pcpu: Pcpu, prev: Vcpu | None, now: int, can_continue: bool, yielding: bool
    ) -> tuple[Vcpu | None, int]:
        """The vCPU to run on ``pcpu`` and for how long (-1: no timer). ``prev`` continues until its slice ends."""
        expired = now >= pcpu.slice_end_ns
        if can_continue and not yielding and not expired:
            return prev, pcpu.slice_end_ns - now
        nxt = self.pick(pcpu)
        if nxt is None:
            if can_continue:
                return prev, self.time_slice_ns if expired else pcpu.slice_end_ns - now
            return None, -1
        return nxt, self.time_slice_ns

    def slice_for(self, pcpu: Pcpu, v: Vcpu, now: int) -> int:
        """The slice of ``v`` put on ``pcpu`` outside :meth:`do_schedule`."""
        return self.time_slice_ns
