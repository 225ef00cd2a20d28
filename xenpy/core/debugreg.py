"""A PV vCPU's virtual debug registers: ``set_debugreg`` / ``x86emul_read_dr`` (spec 1.3 step 13).

Used by HYPERVISOR_set_debugreg / get_debugreg (hypercalls 8 and 9) and by ``arch_set_info_guest``. The values
are kept on ``vcpu.arch.debugreg`` (indices 0-3, 6, 7) and ``vcpu.arch.dr7_emul``.

Reserved bits (``x86_adj_dr6_rsvd`` / ``x86_adj_dr7_rsvd`` for a CPU policy without RTM and BusLock Detect,
which is also what 4.17's fixed masks give): DR6 bits 4-11 and 16-31 read as 1, bit 12 as 0; DR7 bit 10 reads
as 1, bits 11, 12, 14 and 15 as 0.

Errors of ``set_debugreg`` (Xen's meaning: -ENODEV = #UD, -EINVAL = #GP on an invalid bit, -EPERM = #GP on a
valid bit the guest may not use):

* DR0-DR3: an address failing ``breakpoint_addr_ok`` (``__addr_ok``: Xen's range) -> -EPERM.
* DR6 (and DR4 while CR4.DE is clear): a value wider than 32 bits -> -EINVAL.
* DR7 (and DR5 while CR4.DE is clear): wider than 32 bits -> -EINVAL; GD (bit 13) -> -EPERM; an enabled
  I/O breakpoint (R/W = 10b) while CR4.DE is clear -> -EPERM. The I/O enables are emulated: they go to
  ``dr7_emul`` and are cleared from DR7 (a read gives both back).
* Any other register, and DR4/DR5 while CR4.DE is set -> -ENODEV.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.errno import XenErrno
from xenpy.abi.x86 import (
    X86_CR4_DE,
    X86_DR6_DEFAULT,
    X86_DR6_ZEROS,
    X86_DR7_ACTIVE_MASK,
    X86_DR7_CONTROL_SHIFT,
    X86_DR7_CONTROL_SIZE,
    X86_DR7_DEFAULT,
    X86_DR7_GD,
    X86_DR7_RW_IO,
    X86_DR7_ZEROS,
)
from xenpy.core.pagetable import gva_ok

if TYPE_CHECKING:
    from xenpy.core.domain import Vcpu

_U32 = 0xFFFF_FFFF
_ENODEV = -int(XenErrno.ENODEV)
_EINVAL = -int(XenErrno.EINVAL)
_EPERM = -int(XenErrno.EPERM)


def adj_dr6_rsvd(value: int) -> int:
    """DR6 with its reserved bits forced (``x86_adj_dr6_rsvd``)."""
    return (value | X86_DR6_DEFAULT) & ~X86_DR6_ZEROS


def adj_dr7_rsvd(value: int) -> int:
    """DR7 with its reserved bits forced (``x86_adj_dr7_rsvd``)."""
    return (value & ~X86_DR7_ZEROS) | X86_DR7_DEFAULT


def reset_debugregs(v: Vcpu) -> None:
    """DR0-DR3 = 0, DR6 and DR7 their defaults, no emulated I/O enables (``arch_set_info_guest`` step 13)."""
    arch = v.arch
    arch.debugreg = [0, 0, 0, 0, 0, 0, X86_DR6_DEFAULT, X86_DR7_DEFAULT]
    arch.dr7_emul = 0


def _cr4_de(v: Vcpu) -> bool:
    return bool(v.arch.ctrlreg[4] & X86_CR4_DE)


def set_debugreg(v: Vcpu, reg: int, value: int) -> int:
    """Write debug register ``reg`` (taken as unsigned) of ``v``; 0 or ``-errno`` (see the module doc)."""
    reg &= _U32
    arch = v.arch
    if reg <= 3:
        if not gva_ok(value):
            return _EPERM
        arch.debugreg[reg] = value
        return 0
    if reg in (4, 5) and _cr4_de(v):
        return _ENODEV
    if reg in (4, 6):
        if value >> 32:
            return _EINVAL
        arch.debugreg[6] = adj_dr6_rsvd(value)
        return 0
    if reg in (5, 7):
        if value >> 32:
            return _EINVAL
        value = adj_dr7_rsvd(value)
        if value & X86_DR7_GD:
            return _EPERM
        io_enable = 0
        if value & X86_DR7_ACTIVE_MASK:
            for shift in range(X86_DR7_CONTROL_SHIFT, 32, X86_DR7_CONTROL_SIZE):
                if (value >> shift) & 3 == X86_DR7_RW_IO:
                    if not _cr4_de(v):
                        return _EPERM
                    io_enable |= value & (3 << ((shift - X86_DR7_CONTROL_SHIFT) >> 1))
        arch.dr7_emul = io_enable
        arch.debugreg[7] = value & ~io_enable
        return 0
    return _ENODEV


def get_debugreg(v: Vcpu, reg: int) -> int | None:
    """The value of debug register ``reg`` (taken as unsigned) of ``v``, or None where a read is #UD."""
    reg &= _U32
    arch = v.arch
    if reg <= 3:
        return arch.debugreg[reg]
    if reg in (4, 5) and _cr4_de(v):
        return None
    if reg in (4, 6):
        return arch.debugreg[6]
    if reg in (5, 7):
        return arch.debugreg[7] | arch.dr7_emul
    return None
