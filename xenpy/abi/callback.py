"""``public/callback.h``: ``HYPERVISOR_callback_op`` arguments and ``CALLBACKTYPE_*`` (spec 4.2, 5.9, 6.6)."""

from enum import IntEnum, IntFlag

from xenpy.abi.cstruct import CStruct, Width
from xenpy.abi.generated.hypercalls import CallbackOp


class CALLBACKTYPE(IntEnum):
    """Callback types (spec 6.6)."""

    CALLBACKTYPE_event = 0
    CALLBACKTYPE_failsafe = 1
    CALLBACKTYPE_syscall = 2
    CALLBACKTYPE_sysenter_deprecated = 3
    CALLBACKTYPE_nmi = 4
    CALLBACKTYPE_sysenter = 5
    CALLBACKTYPE_syscall32 = 7


class CALLBACKF(IntFlag):
    """``callback_register.flags``."""

    CALLBACKF_mask_events = 1 << 0


globals().update(CALLBACKTYPE.__members__)
globals().update(CALLBACKF.__members__)
globals().update(CallbackOp.__members__)


def define(w: Width, abi: dict) -> None:
    """Add this header's structures for width ``w`` to ``abi``."""
    if w.bits == 64:
        callback = w.unsigned_long  # xen_callback_t is the address itself
    else:
        callback = abi["xen_callback"] = CStruct(
            "xen_callback", ("cs", w.unsigned_long), ("eip", w.unsigned_long))
    abi["callback_register"] = CStruct(
        "callback_register", ("type", w.uint16_t), ("flags", w.uint16_t), ("address", callback))
    abi["callback_unregister"] = CStruct(
        "callback_unregister", ("type", w.uint16_t), ("_unused", w.uint16_t))
