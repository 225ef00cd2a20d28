"""``HYPERVISOR_physdev_op(int cmd, void *arg)`` (hypercall 33; ``xen/arch/x86/physdev.c:do_physdev_op``).

xenpy has no physical devices or IRQs; the one command it implements is the I/O privilege of a PV vCPU:

* PHYSDEVOP_set_iopl (6), ``arg`` -> ``struct physdev_set_iopl {uint32_t iopl}``: -EFAULT if ``arg`` cannot be
  read; -EINVAL if ``iopl > 3``; otherwise the calling vCPU's virtual IOPL becomes ``iopl`` (kept as
  ``VcpuArch.iopl``, in EFLAGS.IOPL position). The CPU engine emulates the guest's port I/O and
  ``cli``/``sti`` at the privilege levels it allows.
* Any other command: -ENOSYS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall, PhysdevOp
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from xenpy.hypercall.context import HypercallContext

#: Bit position of EFLAGS.IOPL.
_IOPL_SHIFT = 12


@hypercall_handler(Hypercall.physdev_op, effects=Effect.NONE)
def do_physdev_op(ctx: HypercallContext, cmd: int, arg: int) -> int:
    """Physical-device operation ``cmd``; see the module docstring."""
    if cmd == PhysdevOp.PHYSDEVOP_set_iopl:
        iopl = int.from_bytes(ctx.copy_from_guest(arg, 4), "little")
        if iopl > 3:
            return -XenErrno.EINVAL
        ctx.vcpu.arch.iopl = iopl << _IOPL_SHIFT
        return 0
    return -XenErrno.ENOSYS
