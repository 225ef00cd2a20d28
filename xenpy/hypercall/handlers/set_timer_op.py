"""``HYPERVISOR_set_timer_op(s_time_t timeout)`` (hypercall 15; ``xen/common/sched/core.c:do_set_timer_op``).

Guest-visible contract: always returns 0 (spec 3.2). PV64 passes the absolute deadline in rdi; PV32 passes it
as ``lo, hi`` (``compat_set_timer_op``). ``0`` stops the calling vCPU's single-shot timer; a negative deadline,
or one more than 2**50 ns ahead, arms it for ``NOW() + 100 ms``; otherwise it is armed for the deadline (a past
deadline fires before the return to the guest).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.core.timers import do_set_timer_op as _do_set_timer_op
from xenpy.hypercall.registry import Effect, legacy_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Vcpu


@legacy_handler(Hypercall.set_timer_op, effects=Effect.CLOCK)
def do_set_timer_op(current: Vcpu, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    """Arm/stop ``current``'s single-shot timer; returns 0."""
    if current.domain.is_compat:
        timeout = ((a2 & 0xFFFF_FFFF) << 32) | (a1 & 0xFFFF_FFFF)
    else:
        timeout = a1
    _do_set_timer_op(current, timeout)
    return 0
