"""The toolstack and platform hypercalls, as Xen answers a domain without privilege: ``platform_op`` (7),
``sysctl`` (35), ``domctl`` (36) and ``kexec_op`` (37), with the XSM dummy policy (``xen/include/xsm/dummy.h``).

Xen checks in this order, and a domU stops at the privilege check:

* ``do_platform_op``: the ``xen_platform_op`` cannot be read (136 bytes): -EFAULT; ``interface_version`` is not
  ``XENPF_INTERFACE_VERSION``: -EACCES; ``xsm_platform_op(XSM_PRIV)``: -EPERM.
* ``do_sysctl``: the ``xen_sysctl`` cannot be read (136 bytes): -EFAULT; ``interface_version`` is not the
  profile's ``sysctl_interface_version``: -EACCES; ``xsm_sysctl(XSM_PRIV)``: -EPERM.
* ``do_domctl``: the ``xen_domctl`` cannot be read (144 bytes): -EFAULT; ``interface_version`` is not the
  profile's ``domctl_interface_version``: -EACCES; a ``domain`` that names no domain (``DOMID_SELF`` names
  none here): -ESRCH, except for ``createdomain``, for ``assign_device``/``deassign_device`` of DOMID_IO, and for
  ``test_assign_device``/``vm_event_op`` of DOMID_INVALID, which look up no domain; ``xsm_domctl``: -EPERM.
* ``do_kexec_op``: ``xsm_kexec(XSM_PRIV)``: -EPERM, before the arguments are looked at.

The hardware domain passes the privilege check; xenpy implements none of these operations, so it then gets
-ENOSYS. Nothing is written back to the guest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.abi.xen import DOMID_INVALID, DOMID_IO
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from xenpy.hypercall.context import HypercallContext

#: ``XENPF_INTERFACE_VERSION`` (unchanged since Xen 4.2).
XENPF_INTERFACE_VERSION = 0x0300_0001
XEN_DOMCTL_createdomain = 1
XEN_DOMCTL_assign_device = 37
XEN_DOMCTL_test_assign_device = 45
XEN_DOMCTL_deassign_device = 47
XEN_DOMCTL_vm_event_op = 56
#: sizeof the argument structures: ``uint32_t cmd``, ``uint32_t interface_version`` (then, for a domctl,
#: ``domid_t domain`` and its padding), then a union of 128 bytes.
PLATFORM_OP_SIZE = 136
SYSCTL_SIZE = 136
DOMCTL_SIZE = 144

_EACCES = -int(XenErrno.EACCES)
_EPERM = -int(XenErrno.EPERM)
_ESRCH = -int(XenErrno.ESRCH)
_ENOSYS = -int(XenErrno.ENOSYS)


def _refused(ctx: HypercallContext) -> int:
    """The XSM_PRIV check: -EPERM for a domain without privilege; a privileged one reaches what xenpy lacks."""
    return _ENOSYS if ctx.domain.is_hardware_domain else _EPERM


def _header(ctx: HypercallContext, arg: int, size: int) -> tuple[int, int, int]:
    """``cmd``, ``interface_version`` and the next 16 bits (a domctl's ``domain``) of the structure at ``arg``;
    the whole structure must be readable (else -EFAULT)."""
    raw = ctx.copy_from_guest(arg, size)
    return int.from_bytes(raw[0:4], "little"), int.from_bytes(raw[4:8], "little"), int.from_bytes(raw[8:10], "little")


@hypercall_handler(Hypercall.platform_op, effects=Effect.NONE)
def do_platform_op(ctx: HypercallContext, u_xenpf_op: int) -> int:
    """``HYPERVISOR_platform_op(u_xenpf_op)``; see the module docstring."""
    if _header(ctx, u_xenpf_op, PLATFORM_OP_SIZE)[1] != XENPF_INTERFACE_VERSION:
        return _EACCES
    return _refused(ctx)


@hypercall_handler(Hypercall.sysctl, effects=Effect.NONE)
def do_sysctl(ctx: HypercallContext, u_sysctl: int) -> int:
    """``HYPERVISOR_sysctl(u_sysctl)``; see the module docstring."""
    if _header(ctx, u_sysctl, SYSCTL_SIZE)[1] != ctx.profile.sysctl_interface_version:
        return _EACCES
    return _refused(ctx)


@hypercall_handler(Hypercall.domctl, effects=Effect.NONE)
def do_domctl(ctx: HypercallContext, u_domctl: int) -> int:
    """``HYPERVISOR_domctl(u_domctl)``; see the module docstring."""
    cmd, version, domid = _header(ctx, u_domctl, DOMCTL_SIZE)
    if version != ctx.profile.domctl_interface_version:
        return _EACCES
    if not _looks_up_no_domain(cmd, domid) and ctx.domain_by_exact_id(domid) is None:
        return _ESRCH
    return _refused(ctx)


def _looks_up_no_domain(cmd: int, domid: int) -> bool:
    """The commands ``do_domctl`` runs without a target domain."""
    if cmd == XEN_DOMCTL_createdomain:
        return True
    if cmd in (XEN_DOMCTL_assign_device, XEN_DOMCTL_deassign_device):
        return domid == DOMID_IO
    return cmd in (XEN_DOMCTL_test_assign_device, XEN_DOMCTL_vm_event_op) and domid == DOMID_INVALID


@hypercall_handler(Hypercall.kexec_op, effects=Effect.NONE)
def do_kexec_op(ctx: HypercallContext, op: int, uarg: int) -> int:
    """``HYPERVISOR_kexec_op(op, uarg)``; see the module docstring."""
    return _refused(ctx)
