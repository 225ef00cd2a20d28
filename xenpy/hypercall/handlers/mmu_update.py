"""``HYPERVISOR_mmu_update(reqs, count, pdone, foreigndom)`` (hypercall 1; ``xen/arch/x86/mm.c:do_mmu_update``).

Each request ``{u64 ptr; u64 val}`` (16 bytes) is a command in the low 3 bits of ``ptr``:

* MMU_NORMAL_PT_UPDATE (0) / MMU_PT_UPDATE_PRESERVE_AD (2) / MMU_PT_UPDATE_NO_TRANSLATE (3): write ``val`` to
  the page-table entry at machine address ``ptr & ~7``, through :func:`xenpy.core.mm.mod_entry` (validated,
  references moved, _PAGE_USER set; PRESERVE_AD keeps the old accessed/dirty bits). The frame must be the
  caller's: a validated table, or a frame that can be typed writable (then ``val`` is stored as is).
* MMU_MACHPHYS_UPDATE (1): ``m2p[ptr >> 12] = val`` for a frame of the page owner.

Requests run in order and stop at the first error; ``*pdone`` (if not NULL) receives the number done.

Preemption, as Xen's: before every request but the first, if ``hypercall_preempt_check`` says so, or once
:data:`~xenpy.hypercall.context.PREEMPT_ENTRIES` requests have run in this invocation, the call ends with a
continuation: ``ureqs`` advanced, ``count`` the rest with ``MMU_UPDATE_PREEMPTED`` (bit 31) set, ``*pdone``
holding the requests done so far, which the continued call reads back and adds to. (The same for mmuext_op.)
A ``count`` of exactly ``MMU_UPDATE_PREEMPTED`` with NULL requests returns ``(int)foreigndom``, as Xen's
continuation of a deferred page-table release does.

The page-owner helpers of the memory-management hypercalls live here too: :func:`get_pg_owner` (the domain
whose frames a request may map) and :func:`read_vcpumask` (the vCPU bitmap of a multi-vCPU flush); mmuext_op
and update_va_mapping use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.cstruct import fast_codec
from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.abi.x86 import PAGE_OFFSET_MASK
from xenpy.abi.xen import (
    DOMID_IO,
    DOMID_SELF,
    DOMID_XEN,
    MMU_MACHPHYS_UPDATE,
    MMU_NORMAL_PT_UPDATE,
    MMU_PT_UPDATE_NO_TRANSLATE,
    MMU_PT_UPDATE_PRESERVE_AD,
)
from xenpy.core import mm
from xenpy.core.memory import PAGE_SHIFT, PageType
from xenpy.core.pagetable import GuestFault, guest_handle_okay
from xenpy.hypercall.registry import Effect, c_int, hypercall_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.hypercall.context import HypercallContext

#: ``sizeof(unsigned int)``: the ``*pdone`` counter (both widths).
PDONE_BYTES = 4
#: Bit 31 of ``count``: the call is a continuation; ``*pdone`` holds the work done before it.
MMU_UPDATE_PREEMPTED = 1 << 31
#: Bits of a vCPU bitmap word (``xen_ulong_t`` of a PV64 guest).
_VCPUMASK_WORD_BITS = 64
_EFAULT = -int(XenErrno.EFAULT)
_EINVAL = -int(XenErrno.EINVAL)
_ENOSYS = -int(XenErrno.ENOSYS)
_EPERM = -int(XenErrno.EPERM)
_ESRCH = -int(XenErrno.ESRCH)
_PT_UPDATES = (MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_PRESERVE_AD, MMU_PT_UPDATE_NO_TRANSLATE)


def get_pg_owner(ctx: HypercallContext, domid: int) -> Domain | int:
    """``get_pg_owner`` plus the XSM target check: the domain whose frames a request may map, or ``-errno``.

    ``domid`` is a ``domid_t``. DOMID_SELF is the caller. Naming itself by id: -ESRCH (Xen refuses it). Another
    domain: -ESRCH if unknown, -EPERM unless the caller is the hardware domain. DOMID_IO / DOMID_XEN: -EPERM
    (xenpy has no I/O or Xen pages to map).
    """
    d = ctx.domain
    if domid == DOMID_SELF:
        return d
    if domid == d.domid:
        return _ESRCH
    if domid in (DOMID_IO, DOMID_XEN):
        return _EPERM
    other = ctx.domain_by_exact_id(domid)
    if other is None:
        return _ESRCH
    if not d.is_hardware_domain:
        return _EPERM
    return other


def read_vcpumask(ctx: HypercallContext, gva: int) -> int:
    """Read the caller's guest vCPU bitmap at ``gva`` (``vcpumask_to_pcpumask``): 0, or -EFAULT if it cannot be
    read."""
    nr_words = (ctx.domain.max_vcpus + _VCPUMASK_WORD_BITS - 1) // _VCPUMASK_WORD_BITS
    try:
        ctx.copy_from_guest(gva, nr_words * _VCPUMASK_WORD_BITS // 8)
    except GuestFault:
        return _EFAULT
    return 0


def write_pdone(ctx: HypercallContext, pdone: int, done: int) -> None:
    """``copy_to_guest(pdone, &done, 1)``: store the count of requests done; Xen ignores a fault here."""
    try:
        ctx.copy_to_guest(pdone, done.to_bytes(PDONE_BYTES, "little"))
    except GuestFault:
        pass


def resume_batch(ctx: HypercallContext, reqs: int, count: int, pdone: int, foreigndom: int) -> tuple[int, int] | int:
    """The start of a batched MMU call (mmu_update, mmuext_op): ``(count, done so far)``, or the result to return
    at once for the continuation of a deferred release (``count == MMU_UPDATE_PREEMPTED``, NULL requests)."""
    if count == MMU_UPDATE_PREEMPTED and reqs == 0:
        return c_int(foreigndom)
    done = 0
    if count & MMU_UPDATE_PREEMPTED:
        count &= ~MMU_UPDATE_PREEMPTED
        if pdone:
            try:
                done = int.from_bytes(ctx.copy_from_guest(pdone, PDONE_BYTES), "little")
            except GuestFault:
                done = 0
    return count, done


def preempt_batch(ctx: HypercallContext, nr: int, i: int, reqs: int, count: int, pdone: int, foreigndom: int) -> bool:
    """Before request ``i`` of a batch: if :meth:`HypercallContext.should_preempt`, end the call with a
    continuation for requests ``i..count-1`` at ``reqs``; True if it ends here."""
    if not ctx.should_preempt(i):
        return False
    ctx.create_continuation(nr, reqs, (count - i) | MMU_UPDATE_PREEMPTED, pdone, foreigndom)
    return True


def _normal_update(ctx: HypercallContext, ptr: int, val: int, cmd: int, pg_owner: Domain) -> int:
    d = ctx.domain
    machine = ctx.machine
    mfn = ptr >> PAGE_SHIFT
    if not (0 <= mfn < machine.nr_frames and machine.mv_owner[mfn] == d.domid) or mfn in d.ballooned_mfns:
        return _EINVAL
    page_type = machine.page_type(mfn)
    slot = (ptr & PAGE_OFFSET_MASK) >> 3
    if page_type.is_page_table and machine.type_count(mfn):
        return mm.mod_entry(ctx.vcpu, mfn, slot, val, pg_owner, preserve_ad=cmd == MMU_PT_UPDATE_PRESERVE_AD)
    if page_type in (PageType.none, PageType.writable) and machine.get_page_type(mfn, PageType.writable):
        machine.mv_u64[(mfn << 9) | slot] = val
        machine.put_page_type(mfn)
        return 0
    return _EINVAL


@hypercall_handler(Hypercall.mmu_update, effects=Effect.PAGE_TABLES)
def do_mmu_update(ctx: HypercallContext, ureqs: int, count: int, pdone: int, foreigndom: int) -> int:
    """Apply ``count`` mmu_update requests at ``ureqs`` (see the module docstring).

    ``pdone`` is a guest ``unsigned int *`` or NULL; ``foreigndom`` is DOMID_SELF (bits 16-31 would select a
    foreign page-table owner, which xenpy does not support: -ESRCH).

    Errors (the first failing request stops the batch): -EFAULT: the array is not accessible or a request
    cannot be read; -ESRCH: unknown or self-named foreign domain; -EPERM: a foreign page owner without
    privilege, or MMU_MACHPHYS_UPDATE of a foreign table owner; -EINVAL: the entry's frame is not the caller's
    or not a page table / writable frame, or the new entry is refused (see :mod:`xenpy.core.mm`); -EBUSY/-EPERM:
    an L1 entry to another domain's frame / to MMIO; -ENOSYS: an unknown command.
    """
    resumed = resume_batch(ctx, ureqs, count, pdone, foreigndom)
    if isinstance(resumed, int):
        return resumed
    count, done = resumed
    codec = fast_codec(ctx.abi.mmu_update)
    size = codec.size
    if not guest_handle_okay(ureqs, count, size):
        return _EFAULT
    if foreigndom >> 16:
        return _ESRCH
    pg_owner = get_pg_owner(ctx, foreigndom)  # a domid_t: bits 16-31 are clear
    if isinstance(pg_owner, int):
        return pg_owner
    unpack = codec.unpack
    copy_from_guest = ctx.copy_from_guest
    machine = ctx.machine
    rc = 0
    for i in range(count):
        if preempt_batch(ctx, Hypercall.mmu_update, i, ureqs + i * size, count, pdone, foreigndom):
            break
        try:
            ptr, val = unpack(copy_from_guest(ureqs + i * size, size))
        except GuestFault:
            rc = _EFAULT
            break
        cmd = ptr & 7
        ptr &= ~7
        if cmd in _PT_UPDATES:
            rc = _normal_update(ctx, ptr, val, cmd, pg_owner)
        elif cmd == MMU_MACHPHYS_UPDATE:
            mfn = ptr >> PAGE_SHIFT
            if not (0 <= mfn < machine.nr_frames and machine.mv_owner[mfn] == pg_owner.domid):
                rc = _EINVAL
            else:
                machine.m2p[mfn] = val if val < (1 << 63) else -1
                rc = 0
        else:
            rc = _ENOSYS
        if rc:
            break
        done += 1
    if pdone:
        write_pdone(ctx, pdone, done)
    return rc
