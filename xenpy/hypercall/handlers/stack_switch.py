"""``HYPERVISOR_stack_switch(ss, esp)`` (hypercall 3; ``xen/arch/x86/pv/misc-hypercalls.c:do_stack_switch``).

Sets the kernel stack a bounce from guest user mode switches to (``kernel_ss``, ``kernel_sp``; spec 3.3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.hypercall.handlers.callback_op import guest_kernel_rpl
from xenpy.hypercall.registry import Effect, legacy_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Vcpu


@legacy_handler(Hypercall.stack_switch, effects=Effect.NONE)
def do_stack_switch(current: Vcpu, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    """Set the calling vCPU's kernel stack: rdi = ``ss``, rsi = ``esp``. Always returns 0.

    The selector's RPL is raised to the guest kernel's (3 for PV64, 1 for PV32; ``fixup_guest_stack_selector``);
    the stack pointer is stored as given (PV32: its low 32 bits).
    """
    d = current.domain
    rpl = guest_kernel_rpl(d)
    ss = a1 & 0xFFFF
    if ss & 3 < rpl:
        ss = (ss & ~3) | rpl
    current.arch.kernel_ss = ss
    current.arch.kernel_sp = a2 & 0xFFFF_FFFF if d.is_compat else a2
    return 0
