"""``HYPERVISOR_set_debugreg(int reg, unsigned long value)`` and ``HYPERVISOR_get_debugreg(int reg)``
(hypercalls 8 and 9; ``xen/arch/x86/pv/misc-hypercalls.c``).

Both act on the calling vCPU's virtual debug registers (:mod:`xenpy.core.debugreg`). set_debugreg returns 0,
-EINVAL (a DR6/DR7 value wider than 32 bits), -EPERM (a breakpoint address in Xen's range, DR7.GD, an I/O
breakpoint without CR4.DE) or -ENODEV (no such register). get_debugreg returns the register's value (as a
``long``: an address in the upper half reads as negative) or -ENODEV.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.core.debugreg import get_debugreg, set_debugreg
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from xenpy.hypercall.context import HypercallContext


@hypercall_handler(Hypercall.set_debugreg, effects=Effect.NONE)
def do_set_debugreg(ctx: HypercallContext, reg: int, value: int) -> int:
    """Write debug register ``reg`` of the caller; 0 or -EINVAL / -EPERM / -ENODEV."""
    return set_debugreg(ctx.vcpu, reg, value)


@hypercall_handler(Hypercall.get_debugreg, effects=Effect.NONE)
def do_get_debugreg(ctx: HypercallContext, reg: int) -> int:
    """The value of debug register ``reg`` of the caller, or -ENODEV."""
    value = get_debugreg(ctx.vcpu, reg)
    if value is None:
        return -int(XenErrno.ENODEV)
    return value - (1 << 64) if value >> 63 else value
