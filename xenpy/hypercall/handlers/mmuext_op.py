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

import struct
from typing import TYPE_CHECKING

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall, MmuextCmd
from xenpy.core import mm
from xenpy.core.memory import PAGE_SIZE, PageType
from xenpy.core.pagetable import GuestFault, guest_handle_okay, gva_ok
from xenpy.hypercall.registry import Effect, c_uint, legacy_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Domain, Vcpu

_OP = struct.Struct("<I4xQQ")
_EINVAL = -int(XenErrno.EINVAL)
_EPERM = -int(XenErrno.EPERM)
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


def _writable_frame(d: Domain, pg_owner: Domain, mfn: int) -> bool:
    """Take a writable type reference on a frame of ``pg_owner`` (the caller must put it back)."""
    machine = d.system.machine
    if not (0 <= mfn < machine.nr_frames and machine.mv_owner[mfn] == pg_owner.domid):
        return False
    return machine.get_page_type(mfn, PageType.writable)


def _one_op(current: Vcpu, cmd: int, arg1: int, arg2: int, pg_owner: Domain) -> int:
    d = current.domain
    machine = d.system.machine
    foreign = pg_owner is not d
    if cmd in _PIN_LEVELS:
        return mm.pin_table(pg_owner, arg1, _PIN_LEVELS[cmd])
    if cmd == MmuextCmd.MMUEXT_UNPIN_TABLE:
        return mm.unpin_table(pg_owner, arg1)
    if cmd == MmuextCmd.MMUEXT_NEW_BASEPTR:
        return _EPERM if foreign else mm.new_guest_cr3(current, arg1)
    if cmd == MmuextCmd.MMUEXT_NEW_USER_BASEPTR:
        return _EPERM if foreign else mm.new_user_baseptr(current, arg1)
    if cmd in _FLUSHES:
        if foreign:
            return _EPERM
        mm.note_pagetable_change(d)
        return 0
    if cmd in (MmuextCmd.MMUEXT_TLB_FLUSH_MULTI, MmuextCmd.MMUEXT_INVLPG_MULTI):
        if foreign:
            return _EPERM
        if mm.read_vcpumask(current, arg2):
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
        ents = arg2 & 0xFFFF_FFFF
        ptr = arg1 if ents else 0
        if ptr & (PAGE_SIZE - 1) or not gva_ok(ptr) or ents > 8192:
            return _EINVAL
        current.arch.ldt_base = ptr
        current.arch.ldt_ents = ents
        mm.note_pagetable_change(d)
        return 0
    if cmd == MmuextCmd.MMUEXT_CLEAR_PAGE:
        if not _writable_frame(d, pg_owner, arg1):
            return _EINVAL
        machine.zero_frame(arg1)
        machine.put_page_type(arg1)
        return 0
    if cmd == MmuextCmd.MMUEXT_COPY_PAGE:
        src = arg2
        if not (0 <= src < machine.nr_frames and machine.mv_owner[src] == pg_owner.domid):
            return _EINVAL
        if not _writable_frame(d, pg_owner, arg1):
            return _EINVAL
        machine.frames[arg1] = machine.frames[src]
        machine.put_page_type(arg1)
        return 0
    if cmd in (MmuextCmd.MMUEXT_MARK_SUPER, MmuextCmd.MMUEXT_UNMARK_SUPER):
        return -int(XenErrno.EOPNOTSUPP)
    return -int(XenErrno.ENOSYS)


@legacy_handler(Hypercall.mmuext_op, effects=Effect.PAGE_TABLES)
def do_mmuext_op(current: Vcpu, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    """Run ``count`` extended MMU operations (see the module docstring).

    Arguments: rdi = ``uops`` (guest array of 24-byte ``mmuext_op``), esi = ``count``, rdx = ``pdone`` (guest
    ``unsigned int *`` or NULL), r10d = ``foreigndom`` (DOMID_SELF, or a domain whose frames PIN/UNPIN and
    CLEAR/COPY_PAGE name; -ESRCH unknown or the caller's own id, -EPERM without privilege).

    -EFAULT: the array is not accessible or an operation cannot be read.
    """
    uops, count, pdone, foreigndom = a1, c_uint(a2), a3, c_uint(a4)
    if not guest_handle_okay(uops, count, _OP.size):
        return -int(XenErrno.EFAULT)
    pg_owner = mm.get_pg_owner(current, foreigndom & 0xFFFF)
    if isinstance(pg_owner, int):
        return pg_owner
    rc = 0
    done = 0
    for i in range(count):
        try:
            cmd, arg1, arg2 = _OP.unpack(current.copy_from_guest(uops + i * _OP.size, _OP.size))
        except GuestFault:
            rc = -int(XenErrno.EFAULT)
            break
        rc = _one_op(current, cmd, arg1, arg2, pg_owner)
        if rc:
            break
        done += 1
    if pdone:
        current.copy_to_guest(pdone, struct.pack("<I", done))
    return rc
