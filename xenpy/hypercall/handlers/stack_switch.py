"""``HYPERVISOR_stack_switch(ss, esp)`` (hypercall 3; ``xen/arch/x86/pv/misc-hypercalls.c:do_stack_switch``).

Sets the kernel stack a bounce from guest user mode switches to (``kernel_ss``, ``kernel_sp``; spec 3.3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.hypercall.handlers.callback_op import guest_kernel_rpl
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from xenpy.hypercall.context import HypercallContext

#: ``kernel_ss`` holds a 16-bit segment selector.
_SELECTOR_MASK = 0xFFFF
#: A PV32 guest's stack pointer is 32 bits wide (the compat entry takes it from esp).
_COMPAT_SP_MASK = 0xFFFF_FFFF


@hypercall_handler(Hypercall.stack_switch, effects=Effect.NONE)
def do_stack_switch(ctx: HypercallContext, ss: int, esp: int) -> int:
    """Set the calling vCPU's kernel stack to ``ss:esp``. Always returns 0.

    Only the selector's 16 bits are kept, and its RPL is raised to the guest kernel's (3 for PV64, 1 for PV32;
    ``fixup_guest_stack_selector``); the stack pointer is stored as given (PV32: its low 32 bits, the width of
    the compat guest's esp).
    """
    d = ctx.domain
    rpl = guest_kernel_rpl(d)
    ss &= _SELECTOR_MASK
    if ss & 3 < rpl:
        ss = (ss & ~3) | rpl
    arch = ctx.vcpu.arch
    arch.kernel_ss = ss
    arch.kernel_sp = esp & _COMPAT_SP_MASK if d.is_compat else esp
    return 0
