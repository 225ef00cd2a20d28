"""``HYPERVISOR_set_callbacks`` (hypercall 4): the older, register-only form of CALLBACKOP_register.

Implements ``xen/arch/x86/pv/callback.c:do_set_callbacks`` (PV64) and ``compat_set_callbacks`` (PV32) with the
helpers of :mod:`xenpy.hypercall.handlers.callback_op`.
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING

from xenpy.abi.callback import CALLBACKTYPE
from xenpy.abi.errno import HypercallError
from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.hypercall.handlers.callback_op import compat_register_guest_callback, register_guest_callback
from xenpy.hypercall.registry import Effect, c_uint, legacy_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Vcpu


@legacy_handler(Hypercall.set_callbacks, effects=Effect.NONE)
def do_set_callbacks(current: Vcpu, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    """Set the calling vCPU's event, failsafe and syscall callbacks in one call.

    Arguments (PV64): rdi = ``event_address``, rsi = ``failsafe_address``, rdx = ``syscall_address``
    (unsigned long each). PV32 (``compat_set_callbacks``): ebx = ``event_selector``, ecx = ``event_address``,
    edx = ``failsafe_selector``, esi = ``failsafe_address``; the selectors' RPL is raised to 1.

    Each callback is registered as by CALLBACKOP_register with ``flags = 0``, in the order event, failsafe,
    syscall. A non-canonical address is silently skipped (that callback keeps its old value, and its
    ``*_disables_events`` flag is not touched); the others are still set. Registering the failsafe and
    syscall callbacks this way clears VGCF_failsafe_disables_events and VGCF_syscall_disables_events.

    Returns:
        Always 0.
    """
    if current.domain.is_compat:
        for cb_type, cs, eip in (
            (CALLBACKTYPE.CALLBACKTYPE_event, a1, a2),
            (CALLBACKTYPE.CALLBACKTYPE_failsafe, a3, a4),
        ):
            compat_register_guest_callback(current, cb_type, 0, c_uint(cs), c_uint(eip))
        return 0
    for cb_type, address in (
        (CALLBACKTYPE.CALLBACKTYPE_event, a1),
        (CALLBACKTYPE.CALLBACKTYPE_failsafe, a2),
        (CALLBACKTYPE.CALLBACKTYPE_syscall, a3),
    ):
        with suppress(HypercallError):  # Xen ignores register_guest_callback's result here.
            register_guest_callback(current, cb_type, 0, address)
    return 0
