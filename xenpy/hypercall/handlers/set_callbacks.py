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
from xenpy.hypercall.registry import Effect, compat_handler, hypercall_handler

if TYPE_CHECKING:
    from xenpy.hypercall.context import HypercallContext


@hypercall_handler(Hypercall.set_callbacks, effects=Effect.NONE)
def do_set_callbacks(ctx: HypercallContext, event_address: int, failsafe_address: int, syscall_address: int) -> int:
    """Set the calling vCPU's event, failsafe and syscall callbacks in one call.

    Each callback is registered as by CALLBACKOP_register with ``flags = 0``, in the order event, failsafe,
    syscall. A non-canonical address is silently skipped (that callback keeps its old value, and its
    ``*_disables_events`` flag is not touched); the others are still set. Registering the failsafe and
    syscall callbacks this way clears VGCF_failsafe_disables_events and VGCF_syscall_disables_events.

    Returns:
        Always 0.
    """
    for cb_type, address in (
        (CALLBACKTYPE.CALLBACKTYPE_event, event_address),
        (CALLBACKTYPE.CALLBACKTYPE_failsafe, failsafe_address),
        (CALLBACKTYPE.CALLBACKTYPE_syscall, syscall_address),
    ):
        with suppress(HypercallError):  # Xen ignores register_guest_callback's result here.
            register_guest_callback(ctx.vcpu, cb_type, 0, address)
    return 0


@compat_handler(Hypercall.set_callbacks)
def compat_set_callbacks(
    ctx: HypercallContext, event_selector: int, event_address: int, failsafe_selector: int, failsafe_address: int
) -> int:
    """The PV32 form (``compat_set_callbacks``): the event and failsafe callbacks as ``selector:address``
    (the selectors' RPL raised to 1); PV32 has no syscall callback here. Returns 0."""
    for cb_type, cs, eip in (
        (CALLBACKTYPE.CALLBACKTYPE_event, event_selector, event_address),
        (CALLBACKTYPE.CALLBACKTYPE_failsafe, failsafe_selector, failsafe_address),
    ):
        compat_register_guest_callback(ctx.vcpu, cb_type, 0, cs, eip)
    return 0
