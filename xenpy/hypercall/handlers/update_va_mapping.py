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
from xenpy.abi.x86 import PAGE_OFFSET_MASK
from xenpy.abi.xen import UVMF_FLUSHTYPE_MASK
from xenpy.core import mm
from xenpy.core.memory import PAGE_SHIFT, PageType
from xenpy.hypercall.handlers.mmu_update import get_pg_owner, read_vcpumask
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.hypercall.context import HypercallContext

_EINVAL = -int(XenErrno.EINVAL)


def update_va_mapping(ctx: HypercallContext, va: int, val: int, flags: int, pg_owner: Domain) -> int:
    """``__do_update_va_mapping``: 0 or ``-errno``.

    -EINVAL: ``va`` is not mapped down to an L1 table of the caller (or the table is not a validated L1); the
    errors of :func:`xenpy.core.mm.mod_entry`; -EFAULT: the vCPU bitmap of a multi-vCPU flush cannot be read.
    """
    current = ctx.vcpu
    d = ctx.domain
    machine = ctx.machine
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
    rc = mm.mod_entry(current, l1_mfn, (maddr & PAGE_OFFSET_MASK) >> 3, val, pg_owner)
    if rc:
        return rc
    if flags & UVMF_FLUSHTYPE_MASK:
        bmap = flags & ~UVMF_FLUSHTYPE_MASK
        if bmap > 4:  # a guest pointer to a vCPU bitmap: it must be readable
            rc = read_vcpumask(ctx, bmap)
        mm.note_pagetable_change(d)
    return rc


@hypercall_handler(Hypercall.update_va_mapping, effects=Effect.PAGE_TABLES)
def do_update_va_mapping(ctx: HypercallContext, va: int, val64: int, flags: int) -> int:
    """Write the L1 entry mapping ``va`` with ``val64``, then flush as ``flags`` ask.

    Returns 0 or ``-errno`` (see :func:`update_va_mapping`).
    """
    return update_va_mapping(ctx, va, val64, flags, ctx.domain)


@hypercall_handler(Hypercall.update_va_mapping_otherdomain, effects=Effect.CLOCK | Effect.PAGE_TABLES)
def do_update_va_mapping_otherdomain(ctx: HypercallContext, va: int, val64: int, flags: int, domid: int) -> int:
    """As update_va_mapping, the new entry's frame belonging to domain ``domid``.

    -ESRCH: unknown domain, or the caller's own id; -EPERM: the caller may not map that domain's frames.
    """
    pg_owner = get_pg_owner(ctx, domid)
    if isinstance(pg_owner, int):
        return pg_owner
    return update_va_mapping(ctx, va, val64, flags, pg_owner)
