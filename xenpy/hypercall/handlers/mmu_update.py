"""``HYPERVISOR_mmu_update(reqs, count, pdone, foreigndom)`` (hypercall 1; ``xen/arch/x86/mm.c:do_mmu_update``).

Each request ``{u64 ptr; u64 val}`` (16 bytes) is a command in the low 3 bits of ``ptr``:

* MMU_NORMAL_PT_UPDATE (0) / MMU_PT_UPDATE_PRESERVE_AD (2) / MMU_PT_UPDATE_NO_TRANSLATE (3): write ``val`` to
  the page-table entry at machine address ``ptr & ~7``, through :func:`xenpy.core.mm.mod_entry` (validated,
  references moved, _PAGE_USER set; PRESERVE_AD keeps the old accessed/dirty bits). The frame must be the
  caller's: a validated table, or a frame that can be typed writable (then ``val`` is stored as is).
* MMU_MACHPHYS_UPDATE (1): ``m2p[ptr >> 12] = val`` for a frame of the page owner.

Requests run in order and stop at the first error; ``*pdone`` (if not NULL) receives the number done.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.abi.xen import (
    MMU_MACHPHYS_UPDATE,
    MMU_NORMAL_PT_UPDATE,
    MMU_PT_UPDATE_NO_TRANSLATE,
    MMU_PT_UPDATE_PRESERVE_AD,
)
from xenpy.core import mm
from xenpy.core.memory import PAGE_SHIFT, PageType
from xenpy.core.pagetable import GuestFault, guest_handle_okay
from xenpy.hypercall.registry import Effect, c_uint, legacy_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Vcpu

_REQ = struct.Struct("<QQ")
_EFAULT = -int(XenErrno.EFAULT)
_EINVAL = -int(XenErrno.EINVAL)
_ENOSYS = -int(XenErrno.ENOSYS)
_EPERM = -int(XenErrno.EPERM)


def _normal_update(current: Vcpu, ptr: int, val: int, cmd: int, pg_owner) -> int:  # type: ignore[no-untyped-def]
    d = current.domain
    machine = d.system.machine
    mfn = ptr >> PAGE_SHIFT
    if not (0 <= mfn < machine.nr_frames and machine.mv_owner[mfn] == d.domid) or mfn in d.ballooned_mfns:
        return _EINVAL
    page_type = machine.page_type(mfn)
    slot = (ptr & 0xFFF) >> 3
    if page_type.is_page_table and machine.type_count(mfn):
        return mm.mod_entry(current, mfn, slot, val, pg_owner, preserve_ad=cmd == MMU_PT_UPDATE_PRESERVE_AD)
    if page_type in (PageType.none, PageType.writable) and machine.get_page_type(mfn, PageType.writable):
        machine.mv_u64[(mfn << 9) | slot] = val
        machine.put_page_type(mfn)
        return 0
    return _EINVAL


@legacy_handler(Hypercall.mmu_update, effects=Effect.PAGE_TABLES)
def do_mmu_update(current: Vcpu, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    """Apply ``count`` mmu_update requests (see the module docstring).

    Arguments: rdi = ``reqs`` (guest array), esi = ``count``, rdx = ``pdone`` (guest ``unsigned int *`` or
    NULL), r10d = ``foreigndom`` (DOMID_SELF; bits 16-31 select a foreign page-table owner, which xenpy does
    not support: -ESRCH).

    Errors (the first failing request stops the batch): -EFAULT: the array is not accessible or a request
    cannot be read; -ESRCH: unknown or self-named foreign domain; -EPERM: a foreign page owner without
    privilege, or MMU_MACHPHYS_UPDATE of a foreign table owner; -EINVAL: the entry's frame is not the caller's
    or not a page table / writable frame, or the new entry is refused (see :mod:`xenpy.core.mm`); -EBUSY/-EPERM:
    an L1 entry to another domain's frame / to MMIO; -ENOSYS: an unknown command.
    """
    reqs, count, pdone, foreigndom = a1, c_uint(a2), a3, c_uint(a4)
    d = current.domain
    if not guest_handle_okay(reqs, count, _REQ.size):
        return _EFAULT
    if foreigndom >> 16:
        return -int(XenErrno.ESRCH)
    pg_owner = mm.get_pg_owner(current, foreigndom & 0xFFFF)
    if isinstance(pg_owner, int):
        return pg_owner
    rc = 0
    done = 0
    for i in range(count):
        try:
            ptr, val = _REQ.unpack(current.copy_from_guest(reqs + i * _REQ.size, _REQ.size))
        except GuestFault:
            rc = _EFAULT
            break
        cmd = ptr & 7
        ptr &= ~7
        if cmd in (MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_PRESERVE_AD, MMU_PT_UPDATE_NO_TRANSLATE):
            rc = _normal_update(current, ptr, val, cmd, pg_owner)
        elif cmd == MMU_MACHPHYS_UPDATE:
            mfn = ptr >> PAGE_SHIFT
            machine = d.system.machine
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
        current.copy_to_guest(pdone, struct.pack("<I", done))
    return rc
