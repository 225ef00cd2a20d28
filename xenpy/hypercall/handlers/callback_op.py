"""``HYPERVISOR_callback_op(int cmd, const void *arg)`` (hypercall 30; spec 4.2, 5.9, 6.6).

Implements ``xen/arch/x86/pv/callback.c``: ``do_callback_op`` / ``compat_callback_op``,
``register_guest_callback`` / ``compat_register_guest_callback``, ``unregister_guest_callback`` and the NMI
helpers ``register_guest_nmi_callback`` / ``unregister_guest_nmi_callback`` that ``HYPERVISOR_nmi_op`` and
``HYPERVISOR_set_callbacks`` share.

Invariants:

* Callbacks are per vCPU: every operation changes only the calling vCPU (``current``).
* The NMI callback is trap-table entry 2: registering it writes ``trap_ctxt[2] = (2, 4, FLAT_KERNEL_CS,
  address)`` (flags 4: events masked on entry; PV32: ``FLAT_COMPAT_KERNEL_CS``), unregistering zeroes it
  (spec 4.2).
* ``CALLBACKF_mask_events`` is kept in ``vgc_flags`` (VGCF_failsafe_disables_events,
  VGCF_syscall_disables_events) for failsafe and syscall, and in ``syscall32_disables_events`` /
  ``sysenter_disables_events`` for those two types; registering without the flag clears it.
* A failing call changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenpy.abi.arch_x86 import (
    FLAT_KERNEL_CS,
    FLAT_RING1_CS,
    TI_IF,
    VGCF_failsafe_disables_events,
    VGCF_syscall_disables_events,
)
from xenpy.abi.callback import CALLBACKTYPE, CALLBACKF_mask_events
from xenpy.abi.cstruct import fast_codec
from xenpy.abi.errno import HypercallError, XenErrno
from xenpy.abi.generated.hypercalls import CallbackOp, Hypercall
from xenpy.core.pagetable import is_canonical
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Domain, Vcpu
    from xenpy.hypercall.context import HypercallContext

#: ``TRAP_nmi``: the trap-table vector of the NMI callback.
TRAP_nmi = 2
#: ``FLAT_COMPAT_KERNEL_CS``: a PV32 kernel's code selector (ring 1).
FLAT_COMPAT_KERNEL_CS = int(FLAT_RING1_CS)


def guest_kernel_rpl(d: Domain) -> int:
    """``GUEST_KERNEL_RPL(d)``: 3 for a PV64 kernel (ring 3), 1 for a PV32 kernel (ring 1)."""
    return 1 if d.is_compat else 3


def fixup_guest_code_selector(d: Domain, sel: int) -> int:
    """``fixup_guest_code_selector(d, sel)``: raise the selector's RPL to the guest kernel's if it is lower."""
    rpl = guest_kernel_rpl(d)
    return sel if (sel & 3) >= rpl else (sel & ~3) | rpl


def _arch_get_nmi_reason(d: Domain) -> int:
    """``arch_get_nmi_reason(d)``: ``shared_info.arch.nmi_reason``."""
    layout = d.abi.shared_info
    offset = layout.offset_of("arch.nmi_reason")
    size = layout.type_of("arch.nmi_reason").size
    return int.from_bytes(d.shared_info_bytes()[offset : offset + size], "little")


def register_guest_nmi_callback(current: Vcpu, address: int) -> None:
    """``register_guest_nmi_callback``: make ``address`` the NMI handler of ``current`` (spec 4.2).

    Raises:
        HypercallError: -EINVAL for a non-canonical ``address`` (nothing changes).
    """
    if not is_canonical(address):
        raise HypercallError(XenErrno.EINVAL)
    d = current.domain
    cs = FLAT_COMPAT_KERNEL_CS if d.is_compat else int(FLAT_KERNEL_CS)
    current.arch.trap_ctxt[TRAP_nmi] = (TRAP_nmi, int(TI_IF), cs, address)
    # Without a handler the NMI edge may have been lost: re-assert it.
    if current.vcpu_id == 0 and _arch_get_nmi_reason(d) != 0:
        current.arch.nmi_pending = True


def unregister_guest_nmi_callback(current: Vcpu) -> None:
    """``unregister_guest_nmi_callback``: zero ``trap_ctxt[2]`` of ``current``."""
    current.arch.trap_ctxt[TRAP_nmi] = (0, 0, 0, 0)


def _set_vgc_flag(current: Vcpu, flag: int, on: bool) -> None:
    if on:
        current.arch.vgc_flags |= flag
    else:
        current.arch.vgc_flags &= ~flag


def register_guest_callback(current: Vcpu, cb_type: int, flags: int, address: int) -> None:
    """``register_guest_callback`` (PV64): install callback ``cb_type`` of ``current`` at ``address``.

    Raises:
        HypercallError: -EINVAL for a non-canonical ``address`` (checked before the type), -ENOSYS for a
            type PV64 does not have (sysenter_deprecated, 6, > 7); nothing changes.
    """
    if not is_canonical(address):
        raise HypercallError(XenErrno.EINVAL)
    arch = current.arch
    mask_events = bool(flags & CALLBACKF_mask_events)
    if cb_type == CALLBACKTYPE.CALLBACKTYPE_event:
        arch.event_callback_eip = address
    elif cb_type == CALLBACKTYPE.CALLBACKTYPE_failsafe:
        arch.failsafe_callback_eip = address
        _set_vgc_flag(current, VGCF_failsafe_disables_events, mask_events)
    elif cb_type == CALLBACKTYPE.CALLBACKTYPE_syscall:
        arch.syscall_callback_eip = address
        _set_vgc_flag(current, VGCF_syscall_disables_events, mask_events)
    elif cb_type == CALLBACKTYPE.CALLBACKTYPE_syscall32:
        arch.syscall32_callback_eip = address
        arch.syscall32_disables_events = mask_events
    elif cb_type == CALLBACKTYPE.CALLBACKTYPE_sysenter:
        arch.sysenter_callback_eip = address
        arch.sysenter_disables_events = mask_events
    elif cb_type == CALLBACKTYPE.CALLBACKTYPE_nmi:
        register_guest_nmi_callback(current, address)
    else:
        raise HypercallError(XenErrno.ENOSYS)


def compat_register_guest_callback(current: Vcpu, cb_type: int, flags: int, cs: int, eip: int) -> None:
    """``compat_register_guest_callback`` (PV32): install callback ``cb_type`` at ``cs:eip``.

    The selector's RPL is raised to 1. PV32 has no CALLBACKTYPE_syscall.

    Raises:
        HypercallError: -ENOSYS for a type PV32 does not have; nothing changes.
    """
    arch = current.arch
    cs = fixup_guest_code_selector(current.domain, cs)
    mask_events = bool(flags & CALLBACKF_mask_events)
    if cb_type == CALLBACKTYPE.CALLBACKTYPE_event:
        arch.event_callback_cs = cs
        arch.event_callback_eip = eip
    elif cb_type == CALLBACKTYPE.CALLBACKTYPE_failsafe:
        arch.failsafe_callback_cs = cs
        arch.failsafe_callback_eip = eip
        _set_vgc_flag(current, VGCF_failsafe_disables_events, mask_events)
    elif cb_type == CALLBACKTYPE.CALLBACKTYPE_syscall32:
        arch.syscall32_callback_cs = cs
        arch.syscall32_callback_eip = eip
        arch.syscall32_disables_events = mask_events
    elif cb_type == CALLBACKTYPE.CALLBACKTYPE_sysenter:
        arch.sysenter_callback_cs = cs
        arch.sysenter_callback_eip = eip
        arch.sysenter_disables_events = mask_events
    elif cb_type == CALLBACKTYPE.CALLBACKTYPE_nmi:
        register_guest_nmi_callback(current, eip)
    else:
        raise HypercallError(XenErrno.ENOSYS)


def _unregister_guest_callback(current: Vcpu, cb_type: int) -> None:
    """``(compat_)unregister_guest_callback``: only the NMI callback can be removed."""
    unregisterable = {
        CALLBACKTYPE.CALLBACKTYPE_event,
        CALLBACKTYPE.CALLBACKTYPE_failsafe,
        CALLBACKTYPE.CALLBACKTYPE_syscall32,
        CALLBACKTYPE.CALLBACKTYPE_sysenter,
    }
    if not current.domain.is_compat:
        unregisterable.add(CALLBACKTYPE.CALLBACKTYPE_syscall)
    if cb_type == CALLBACKTYPE.CALLBACKTYPE_nmi:
        unregister_guest_nmi_callback(current)
    elif cb_type in unregisterable:
        raise HypercallError(XenErrno.EINVAL)
    else:
        raise HypercallError(XenErrno.ENOSYS)


def _copy_struct(ctx: HypercallContext, struct_name: str, gva: int) -> dict[str, Any]:
    """The guest's ``struct_name`` at ``gva``, by fast-codec leaf name (``type``, ``address.cs``, ...)."""
    codec = fast_codec(getattr(ctx.abi, struct_name))
    return dict(zip(codec.names, codec.unpack(ctx.copy_from_guest(gva, codec.size)), strict=True))


@hypercall_handler(Hypercall.callback_op, effects=Effect.NONE)
def do_callback_op(ctx: HypercallContext, cmd: int, arg: int) -> int:
    """Register or unregister a callback of the calling vCPU.

    Arguments: ``cmd`` (``CALLBACKOP_*``), ``arg`` (guest pointer to the argument struct).

    * CALLBACKOP_register (0), ``arg`` -> ``callback_register {u16 type; u16 flags; address}`` (16 bytes; PV32:
      12 bytes, ``address = {cs, eip}``):

      - -EFAULT: ``arg`` cannot be read;
      - -EINVAL: ``address`` is not canonical (PV64; checked before the type);
      - -ENOSYS: a type the guest width does not have (PV64: 3, 6, >= 8; PV32 also 2);
      - event (0), failsafe (1), syscall (2), syscall32 (7), sysenter (5): store ``address`` as the vCPU's
        callback; for failsafe and syscall, CALLBACKF_mask_events sets (else clears)
        VGCF_failsafe_disables_events / VGCF_syscall_disables_events in ``vgc_flags``;
      - nmi (4): ``trap_ctxt[2] = (2, 4, FLAT_KERNEL_CS, address)``; on vCPU 0 with
        ``shared_info.arch.nmi_reason != 0``, ``nmi_pending`` is set again (spec 4.2).

    * CALLBACKOP_unregister (1), ``arg`` -> ``callback_unregister {u16 type}``: -EFAULT; nmi: zero
      ``trap_ctxt[2]`` and return 0; event, failsafe, syscall, syscall32, sysenter: -EINVAL; other types:
      -ENOSYS.
    * Any other ``cmd``: -ENOSYS (PV32: -EINVAL, as ``compat_callback_op``).

    Returns:
        0 on success. A failing call leaves every callback unchanged.
    """
    current = ctx.vcpu
    compat = ctx.domain.is_compat
    if cmd == CallbackOp.CALLBACKOP_register:
        reg = _copy_struct(ctx, "callback_register", arg)
        if compat:
            compat_register_guest_callback(current, reg["type"], reg["flags"], reg["address.cs"], reg["address.eip"])
        else:
            register_guest_callback(current, reg["type"], reg["flags"], reg["address"])
        return 0
    if cmd == CallbackOp.CALLBACKOP_unregister:
        unreg = _copy_struct(ctx, "callback_unregister", arg)
        _unregister_guest_callback(current, unreg["type"])
        return 0
    raise HypercallError(XenErrno.EINVAL if compat else XenErrno.ENOSYS)
