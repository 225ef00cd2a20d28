"""``HYPERVISOR_update_va_mapping`` (14) and ``update_va_mapping_otherdomain`` (22).

Implements ``xen/arch/x86/mm.c:__do_update_va_mapping``: write the L1 entry that maps ``va`` in the calling
vCPU's current page tables (found by walking them, ``map_guest_l1e``), through
:func:`xenpy.core.mm.mod_entry`, then flush as ``flags`` ask (UVMF_NONE, UVMF_TLB_FLUSH or UVMF_INVLPG, for the
local vCPU (UVMF_LOCAL), all vCPUs (UVMF_ALL) or a guest vCPU bitmap pointer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.abi.xen import UVMF_FLUSHTYPE_MASK
from xenpy.core import mm
from xenpy.core.memory import PAGE_SHIFT, PageType
from xenpy.hypercall.registry import Effect, legacy_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Domain, Vcpu

_EINVAL = -int(XenErrno.EINVAL)


def update_va_mapping(current: Vcpu, va: int, val: int, flags: int, pg_owner: Domain) -> int:
    """``__do_update_va_mapping``: 0 or ``-errno``.

    -EINVAL: ``va`` is not mapped down to an L1 table of the caller (or the table is not a validated L1); the
    errors of :func:`xenpy.core.mm.mod_entry`; -EFAULT: the vCPU bitmap of a multi-vCPU flush cannot be read.
    """
    d = current.domain
    machine = d.system.machine
    maddr = mm.map_guest_l1e(current, va)
    if maddr is None:
        return _EINVAL
    l1_mfn = maddr >> PAGE_SHIFT
    if (
        machine.mv_owner[l1_mfn] != d.domid
        or machine.page_type(l1_mfn) != PageType.l1
        or not machine.type_count(l1_mfn)
    ):
        return _EINVAL
    rc = mm.mod_entry(current, l1_mfn, (maddr & 0xFFF) >> 3, val, pg_owner)
    if rc:
        return rc
    if flags & UVMF_FLUSHTYPE_MASK:
        bmap = flags & ~UVMF_FLUSHTYPE_MASK
        if bmap > 4:  # a guest pointer to a vCPU bitmap: it must be readable
            rc = mm.read_vcpumask(current, bmap)
        mm.note_pagetable_change(d)
    return rc


@legacy_handler(Hypercall.update_va_mapping, effects=Effect.PAGE_TABLES)
def do_update_va_mapping(current: Vcpu, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    """Write the L1 entry mapping ``va``: rdi = ``va``, rsi = the new entry (``val64``), rdx = ``flags``.

    Returns 0 or ``-errno`` (see :func:`update_va_mapping`).
    """
    return update_va_mapping(current, a1, a2, a3, current.domain)


@legacy_handler(Hypercall.update_va_mapping_otherdomain, effects=Effect.CLOCK | Effect.PAGE_TABLES)
def do_update_va_mapping_otherdomain(current: Vcpu, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    """As update_va_mapping, the new entry's frame belonging to domain ``domid`` (r10w).

    -ESRCH: unknown domain, or the caller's own id; -EPERM: the caller may not map that domain's frames.
    """
    pg_owner = mm.get_pg_owner(current, a4 & 0xFFFF)
    if isinstance(pg_owner, int):
        return pg_owner
    return update_va_mapping(current, a1, a2, a3, pg_owner)
