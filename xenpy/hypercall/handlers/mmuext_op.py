"""``HYPERVISOR_mmuext_op(uops, count, pdone, foreigndom)`` (hypercall 26; ``xen/arch/x86/mm.c:do_mmuext_op``).

Each ``mmuext_op {u32 cmd; arg1 @8; arg2 @16}`` (24 bytes) runs in order; the batch stops at the first error
and ``*pdone`` (if not NULL) receives the number done. Commands:

* MMUEXT_PIN_L1..L4_TABLE (0-3): validate ``arg1.mfn`` as that table level and pin it (-EINVAL: not the
  caller's frame, validation fails, another type, already pinned);
* MMUEXT_UNPIN_TABLE (4): drop the pin (-EINVAL: not pinned);
* MMUEXT_NEW_BASEPTR (5) / MMUEXT_NEW_USER_BASEPTR (15): the kernel / user root table (-EINVAL: refused as L4;
  -EPERM with a foreign page owner);
* MMUEXT_TLB_FLUSH_LOCAL/MULTI/ALL, MMUEXT_INVLPG_LOCAL/MULTI/ALL (6-11): flush (MULTI: -EINVAL when the vCPU
  bitmap ``arg2.vcpumask`` cannot be read);
* MMUEXT_FLUSH_CACHE (12): -EACCES (a domU may not flush caches); MMUEXT_FLUSH_CACHE_GLOBAL (18): -EINVAL;
* MMUEXT_SET_LDT (13): ``arg1.linear_addr`` page-aligned and a guest address, ``arg2.nr_ents`` <= 8192, else
  -EINVAL; stored in ``arch.ldt_base``/``ldt_ents``;
* MMUEXT_CLEAR_PAGE (16) / MMUEXT_COPY_PAGE (17): zero / copy a frame of the page owner that can be typed
  writable (-EINVAL otherwise);
* MMUEXT_MARK_SUPER / UNMARK_SUPER (19, 20): -EOPNOTSUPP; anything else: -ENOSYS.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from xenpy.abi.cstruct import FastCodec, fast_codec
from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall, MmuextCmd
from xenpy.core import mm
from xenpy.core.memory import PAGE_SIZE, PageType
from xenpy.core.pagetable import GuestFault, guest_handle_okay, gva_ok
from xenpy.hypercall.handlers.mmu_update import (
    get_pg_owner,
    preempt_batch,
    read_vcpumask,
    resume_batch,
    write_pdone,
)
from xenpy.hypercall.registry import Effect, decode, hypercall_handler

if TYPE_CHECKING:
    from types import ModuleType

    from xenpy.core.domain import Domain
    from xenpy.core.memory import MachineMemory
    from xenpy.hypercall.context import HypercallContext

_EINVAL = -int(XenErrno.EINVAL)
_EPERM = -int(XenErrno.EPERM)
_EFAULT = -int(XenErrno.EFAULT)
_PIN_LEVELS = {
    MmuextCmd.MMUEXT_PIN_L1_TABLE: 1,
    MmuextCmd.MMUEXT_PIN_L2_TABLE: 2,
    MmuextCmd.MMUEXT_PIN_L3_TABLE: 3,
    MmuextCmd.MMUEXT_PIN_L4_TABLE: 4,
}
_FLUSHES = (
    MmuextCmd.MMUEXT_TLB_FLUSH_LOCAL,
    MmuextCmd.MMUEXT_INVLPG_LOCAL,
    MmuextCmd.MMUEXT_TLB_FLUSH_ALL,
    MmuextCmd.MMUEXT_INVLPG_ALL,
)
#: The unions of ``mmuext_op`` as most commands read them: ``arg1.mfn``, ``arg2.src_mfn``.
_FRAMES_VIEW = {"arg1": "mfn", "arg2": "src_mfn"}
#: ... as MMUEXT_SET_LDT reads them.
_LDT_VIEW = {"arg1": "linear_addr", "arg2": "nr_ents"}
#: ... as the multi-vCPU flushes read them.
_MULTI_VIEW = {"arg1": "linear_addr", "arg2": "vcpumask"}


@cache
def _codecs(abi: ModuleType) -> tuple[FastCodec, FastCodec, FastCodec]:
    """The ``mmuext_op`` views of width ``abi``: frames, SET_LDT, multi-vCPU flush (each ``(cmd, arg1, arg2)``)."""
    layout = abi.mmuext_op
    return fast_codec(layout, _FRAMES_VIEW), fast_codec(layout, _LDT_VIEW), fast_codec(layout, _MULTI_VIEW)


def _writable_frame(machine: MachineMemory, pg_owner: Domain, mfn: int) -> bool:
    """Take a writable type reference on a frame of ``pg_owner`` (the caller must put it back)."""
    if not (0 <= mfn < machine.nr_frames and machine.mv_owner[mfn] == pg_owner.domid):
        return False
    return machine.get_page_type(mfn, PageType.writable)


def _one_op(ctx: HypercallContext, raw: bytes, cmd: int, mfn: int, src_mfn: int, pg_owner: Domain) -> int:
    """One operation: ``raw`` is the guest's ``mmuext_op``, ``mfn``/``src_mfn`` its unions read as frames."""
    d = ctx.domain
    machine = ctx.machine
    foreign = pg_owner is not d
    if cmd in _PIN_LEVELS:
        return mm.pin_table(pg_owner, mfn, _PIN_LEVELS[cmd])
    if cmd == MmuextCmd.MMUEXT_UNPIN_TABLE:
        return mm.unpin_table(pg_owner, mfn)
    if cmd == MmuextCmd.MMUEXT_NEW_BASEPTR:
        return _EPERM if foreign else mm.new_guest_cr3(ctx.vcpu, mfn)
    if cmd == MmuextCmd.MMUEXT_NEW_USER_BASEPTR:
        return _EPERM if foreign else mm.new_user_baseptr(ctx.vcpu, mfn)
    if cmd in _FLUSHES:
        if foreign:
            return _EPERM
        mm.note_pagetable_change(d)
        return 0
    if cmd in (MmuextCmd.MMUEXT_TLB_FLUSH_MULTI, MmuextCmd.MMUEXT_INVLPG_MULTI):
        if foreign:
            return _EPERM
        _cmd, _linear_addr, vcpumask = _codecs(ctx.abi)[2].unpack(raw)
        if read_vcpumask(ctx, vcpumask):
            return _EINVAL
        mm.note_pagetable_change(d)
        return 0
    if cmd == MmuextCmd.MMUEXT_FLUSH_CACHE:
        return _EPERM if foreign else -int(XenErrno.EACCES)
    if cmd == MmuextCmd.MMUEXT_FLUSH_CACHE_GLOBAL:
        return _EPERM if foreign else _EINVAL
    if cmd == MmuextCmd.MMUEXT_SET_LDT:
        if foreign:
            return _EPERM
        _cmd, linear_addr, ents = _codecs(ctx.abi)[1].unpack(raw)
        ptr = linear_addr if ents else 0
        if ptr & (PAGE_SIZE - 1) or not gva_ok(ptr) or ents > 8192:
            return _EINVAL
        arch = ctx.vcpu.arch
        arch.ldt_base = ptr
        arch.ldt_ents = ents
        mm.note_pagetable_change(d)
        return 0
    if cmd == MmuextCmd.MMUEXT_CLEAR_PAGE:
        if not _writable_frame(machine, pg_owner, mfn):
            return _EINVAL
        machine.zero_frame(mfn)
        machine.put_page_type(mfn)
        return 0
    if cmd == MmuextCmd.MMUEXT_COPY_PAGE:
        if not (0 <= src_mfn < machine.nr_frames and machine.mv_owner[src_mfn] == pg_owner.domid):
            return _EINVAL
        if not _writable_frame(machine, pg_owner, mfn):
            return _EINVAL
        machine.frames[mfn] = machine.frames[src_mfn]
        machine.put_page_type(mfn)
        return 0
    if cmd in (MmuextCmd.MMUEXT_MARK_SUPER, MmuextCmd.MMUEXT_UNMARK_SUPER):
        return -int(XenErrno.EOPNOTSUPP)
    return -int(XenErrno.ENOSYS)


@hypercall_handler(Hypercall.mmuext_op, effects=Effect.PAGE_TABLES)
def do_mmuext_op(ctx: HypercallContext, uops: int, count: int, pdone: int, foreigndom: int) -> int:
    """Run ``count`` extended MMU operations at ``uops`` (see the module docstring).

    ``pdone`` is a guest ``unsigned int *`` or NULL; ``foreigndom`` is DOMID_SELF or a domain whose frames
    PIN/UNPIN and CLEAR/COPY_PAGE name (as a ``domid_t``: its low 16 bits; -ESRCH unknown or the caller's own
    id, -EPERM without privilege).

    -EFAULT: the array is not accessible or an operation cannot be read.
    """
    resumed = resume_batch(ctx, uops, count, pdone, foreigndom)
    if isinstance(resumed, int):
        return resumed
    count, done = resumed
    codec = _codecs(ctx.abi)[0]
    size = codec.size
    if not guest_handle_okay(uops, count, size):
        return _EFAULT
    pg_owner = get_pg_owner(ctx, decode("domid_t", foreigndom))
    if isinstance(pg_owner, int):
        return pg_owner
    unpack = codec.unpack
    copy_from_guest = ctx.copy_from_guest
    rc = 0
    for i in range(count):
        if preempt_batch(ctx, Hypercall.mmuext_op, i, uops + i * size, count, pdone, foreigndom):
            break
        try:
            raw = copy_from_guest(uops + i * size, size)
        except GuestFault:
            rc = _EFAULT
            break
        cmd, mfn, src_mfn = unpack(raw)
        rc = _one_op(ctx, raw, cmd, mfn, src_mfn, pg_owner)
        if rc:
            break
        done += 1
    if pdone:
        write_pdone(ctx, pdone, done)
    return rc
