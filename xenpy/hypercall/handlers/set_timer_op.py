"""``HYPERVISOR_set_timer_op(s_time_t timeout)`` (hypercall 15; ``xen/common/sched/core.c:do_set_timer_op``).

Guest-visible contract: always returns 0 (spec 3.2). PV64 passes the absolute deadline in one register; PV32
passes it as ``uint32_t lo, int32_t hi`` (``compat_set_timer_op``, which calls ``do_set_timer_op`` with
``(s64)hi << 32 | lo``). ``0`` stops the calling vCPU's single-shot timer; a negative deadline, or one more
than 2**50 ns ahead, arms it for ``NOW() + 100 ms``; otherwise it is armed for the deadline (a past deadline
fires before the return to the guest).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.core.timers import do_set_timer_op as _do_set_timer_op
from xenpy.hypercall.registry import Effect, compat_handler, hypercall_handler

if TYPE_CHECKING:
    from xenpy.hypercall.context import HypercallContext


@hypercall_handler(Hypercall.set_timer_op, effects=Effect.CLOCK)
def do_set_timer_op(ctx: HypercallContext, timeout: int) -> int:
    """Arm/stop the caller's single-shot timer for ``timeout``; returns 0."""
    _do_set_timer_op(ctx.vcpu, timeout)
    return 0


@compat_handler(Hypercall.set_timer_op)
def compat_set_timer_op(ctx: HypercallContext, lo: int, hi: int) -> int:
    """The PV32 form: the deadline in two halves; returns 0."""
    _do_set_timer_op(ctx.vcpu, (hi << 32) | lo)
    return 0
