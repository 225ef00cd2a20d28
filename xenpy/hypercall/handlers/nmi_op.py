"""``HYPERVISOR_nmi_op(unsigned int cmd, void *arg)`` (hypercall 28; spec 4.2).

Implements ``xen/arch/x86/pv/callback.c:do_nmi_op`` / ``compat_nmi_op``. The NMI handler lives in
``trap_ctxt[2]`` of the calling vCPU and is shared with ``HYPERVISOR_callback_op`` (CALLBACKTYPE_nmi) and
``HYPERVISOR_set_trap_table`` (vector 2); the helpers are in :mod:`xenpy.hypercall.handlers.callback_op`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.errno import HypercallError, XenErrno
from xenpy.abi.generated.hypercalls import Hypercall, NmiOp
from xenpy.hypercall.handlers.callback_op import register_guest_nmi_callback, unregister_guest_nmi_callback
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from xenpy.hypercall.context import HypercallContext


@hypercall_handler(Hypercall.nmi_op, effects=Effect.NONE)
def do_nmi_op(ctx: HypercallContext, cmd: int, arg: int) -> int:
    """Register or remove the calling vCPU's NMI handler.

    Arguments: ``cmd`` (``XENNMI_*``, unsigned int), ``arg`` (guest pointer).

    * XENNMI_register_callback (0), ``arg`` -> ``xennmi_callback {ulong handler_address; ulong pad}`` (16
      bytes; PV32: 8): -EFAULT if ``arg`` cannot be read; -EINVAL if ``handler_address`` is not canonical
      (``pad`` is ignored); otherwise ``trap_ctxt[2] = (2, 4, FLAT_KERNEL_CS, handler_address)`` (events
      masked on entry), and on vCPU 0 ``nmi_pending`` is set again if ``shared_info.arch.nmi_reason != 0``.
    * XENNMI_unregister_callback (1): ``arg`` is not read; zero ``trap_ctxt[2]``.
    * Any other ``cmd``: -ENOSYS.

    Returns:
        0 on success; a failing call changes nothing.
    """
    if cmd == NmiOp.XENNMI_register_callback:
        layout = ctx.abi.xennmi_callback
        cb = layout.parse(ctx.copy_from_guest(arg, layout.sizeof()))
        register_guest_nmi_callback(ctx.vcpu, cb.handler_address)
        return 0
    if cmd == NmiOp.XENNMI_unregister_callback:
        unregister_guest_nmi_callback(ctx.vcpu)
        return 0
    raise HypercallError(XenErrno.ENOSYS)
