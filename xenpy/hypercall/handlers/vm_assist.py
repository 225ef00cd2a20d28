"""``HYPERVISOR_vm_assist(unsigned int cmd, unsigned int type)`` (hypercall 21; spec 6.6).

Implements ``xen/common/kernel.c:do_vm_assist`` and ``xen/common/domain.c:vm_assist``. The valid types are the
domain's profile mask (``XenProfile.vm_assist_valid_mask``, Xen's ``arch_vm_assist_valid_mask``); a PV32 domain
can only use the types below 32 (``COMPAT_VM_ASSIST_VALID``).

Invariant: ``domain.vm_assist`` only ever holds bits of the valid mask set through this hypercall or through
vCPU 0's ``vcpu_guest_context.vm_assist`` (``arch_set_info_guest``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.errno import HypercallError, XenErrno
from xenpy.abi.generated.hypercalls import Hypercall, VmAssistCmd
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.hypercall.context import HypercallContext

#: ``BITS_PER_LONG`` of the hypervisor: types at or above it are invalid whatever the mask says.
_BITS_PER_LONG = 64


def vm_assist_valid_mask(d: Domain) -> int:
    """``arch_vm_assist_valid_mask(d)``: the VMASST_TYPE_* bits ``d`` may enable."""
    mask = d.profile.vm_assist_valid_mask
    return mask & 0xFFFF_FFFF if d.is_compat else mask


@hypercall_handler(Hypercall.vm_assist, effects=Effect.NONE)
def do_vm_assist(ctx: HypercallContext, cmd: int, vmassist_type: int) -> int:
    """Enable or disable a VM assist of the calling domain.

    Arguments: ``cmd`` (``VMASST_CMD_*``, unsigned int), ``type`` (``VMASST_TYPE_*``, unsigned int).

    Errors, in Xen's order:

    * -EINVAL: ``type >= 64`` or ``type`` not in the domain's valid mask (checked before ``cmd``, so an
      unknown ``cmd`` with a bad ``type`` is -EINVAL);
    * -ENOSYS: ``cmd`` is neither VMASST_CMD_enable (0) nor VMASST_CMD_disable (1).

    Side effects: enable sets, disable clears bit ``type`` of ``domain.vm_assist`` (the whole domain, not
    only the calling vCPU). Enabling an enabled assist, or disabling a disabled one, is not an error.

    Returns:
        0.
    """
    d = ctx.domain
    if vmassist_type >= _BITS_PER_LONG or not vm_assist_valid_mask(d) >> vmassist_type & 1:
        raise HypercallError(XenErrno.EINVAL)
    if cmd == VmAssistCmd.VMASST_CMD_enable:
        d.vm_assist |= 1 << vmassist_type
    elif cmd == VmAssistCmd.VMASST_CMD_disable:
        d.vm_assist &= ~(1 << vmassist_type)
    else:
        raise HypercallError(XenErrno.ENOSYS)
    return 0
