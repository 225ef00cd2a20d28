"""``HYPERVISOR_grant_table_op(cmd, uop, count)`` (hypercall 20; ``xen/common/grant_table.c:do_grant_table_op``).

Implemented: GNTTABOP_setup_table (2), GNTTABOP_query_size (6), GNTTABOP_get_version (10); every other command
returns -ENOSYS (xenpy has no grant mapping or copy yet).

The grant table of a domain is a list of frames owned by the domain but not counted in its reservation (Xen's
xenheap pages shared with the guest). It starts empty and grows, zeroed, up to ``MAX_GRANT_FRAMES`` frames when
setup_table asks for more; PV guests map the frames through their mfns. The table is version 1.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from xenpy.abi.cstruct import fast_codec
from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import GnttabOp, Hypercall
from xenpy.core.memory import OutOfMachineMemory
from xenpy.core.pagetable import GuestFault, guest_handle_okay
from xenpy.hypercall.registry import Effect, c_uint, legacy_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Domain, Vcpu

#: ``max_grant_frames`` of a domain (Xen's default ``opt_max_grant_frames``).
MAX_GRANT_FRAMES = 64
GNTST_okay = 0
GNTST_general_error = -1
GNTST_bad_domain = -2
GNTST_bad_virt_addr = -5
GNTST_permission_denied = -8
_EINVAL = -int(XenErrno.EINVAL)
_EFAULT = -int(XenErrno.EFAULT)
_ENOSYS = -int(XenErrno.ENOSYS)
#: ``gnttab_query_size {domid_t dom; u32 nr_frames; u32 max_nr_frames; i16 status}``.
_QUERY_SIZE = struct.Struct("<H2xIIh2x")
#: ``gnttab_get_version {domid_t dom; u16 pad; u32 version}``.
_GET_VERSION = struct.Struct("<HHI")


def _target(current: Vcpu, domid: int) -> tuple[Domain | None, int]:
    d = current.domain
    target = d.system.domain_by_any_id(domid, d)
    if target is None:
        return None, GNTST_bad_domain
    if target is not d and not d.is_hardware_domain:
        return None, GNTST_permission_denied
    return target, GNTST_okay


def grow_table(d: Domain, nr_frames: int) -> bool:
    """``gnttab_grow_table``: give ``d`` at least ``nr_frames`` zeroed grant frames; False if memory runs out."""
    machine = d.system.machine
    missing = nr_frames - len(d.grant_frames)
    if missing <= 0:
        return True
    try:
        mfns = machine.alloc_domain_frames(d.domid, missing)
    except OutOfMachineMemory:
        return False
    d.grant_frames.extend(int(m) for m in mfns)
    return True


def _setup_table(current: Vcpu, uop: int, count: int) -> int:
    if count != 1:
        return _EINVAL
    d = current.domain
    codec = fast_codec(d.abi.gnttab_setup_table)
    try:
        dom, nr_frames, _status, frame_list = codec.unpack(current.copy_from_guest(uop, codec.size))
    except GuestFault:
        return _EFAULT
    if not guest_handle_okay(frame_list, nr_frames, 8):
        return _EFAULT
    target, status = _target(current, dom)
    if target is not None:
        if nr_frames > MAX_GRANT_FRAMES or not grow_table(target, nr_frames):
            status = GNTST_general_error
        else:
            for i in range(nr_frames):
                if current.copy_to_guest(frame_list + 8 * i, struct.pack("<Q", target.grant_frames[i])):
                    status = GNTST_bad_virt_addr
                    break
    status_offset = d.abi.gnttab_setup_table.offset_of("status")
    if current.copy_to_guest(uop + status_offset, struct.pack("<h", status)):
        return _EFAULT
    return 0


def _query_size(current: Vcpu, uop: int, count: int) -> int:
    if count != 1:
        return _EINVAL
    try:
        dom, _nr, _max, _status = _QUERY_SIZE.unpack(current.copy_from_guest(uop, _QUERY_SIZE.size))
    except GuestFault:
        return _EFAULT
    target, status = _target(current, dom)
    nr = len(target.grant_frames) if target is not None else 0
    out = _QUERY_SIZE.pack(dom, nr, MAX_GRANT_FRAMES if target is not None else 0, status)
    return _EFAULT if current.copy_to_guest(uop, out) else 0


def _get_version(current: Vcpu, uop: int, count: int) -> int:
    if count != 1:
        return _EINVAL
    try:
        dom, pad, _version = _GET_VERSION.unpack(current.copy_from_guest(uop, _GET_VERSION.size))
    except GuestFault:
        return _EFAULT
    target, status = _target(current, dom)
    if target is None:
        return -int(XenErrno.ESRCH) if status == GNTST_bad_domain else -int(XenErrno.EPERM)
    return _EFAULT if current.copy_to_guest(uop, _GET_VERSION.pack(dom, pad, 1)) else 0


@legacy_handler(Hypercall.grant_table_op, effects=Effect.PAGE_TABLES)
def do_grant_table_op(current: Vcpu, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    """Grant-table operations: edi = ``cmd``, rsi = ``uop`` (guest pointer), edx = ``count``.

    * GNTTABOP_setup_table: ``{domid_t dom; u32 nr_frames; i16 status (out); handle frame_list (out)}``;
      ``count`` must be 1 (-EINVAL); -EFAULT if the struct or the frame list is not accessible. ``status``:
      GNTST_okay, GNTST_bad_domain (unknown ``dom``), GNTST_permission_denied (another domain),
      GNTST_general_error (more than 64 frames, or no memory), GNTST_bad_virt_addr (a frame number could not
      be written). The frames' mfns are written to ``frame_list``. Returns 0.
    * GNTTABOP_query_size: ``{dom; nr_frames (out); max_nr_frames (out); status (out)}``; returns 0.
    * GNTTABOP_get_version: ``{dom; pad; version (out)}``: 1. -ESRCH / -EPERM for a bad ``dom``.
    * others: -ENOSYS.
    """
    cmd, uop, count = c_uint(a1), a2, c_uint(a3)
    if cmd == GnttabOp.GNTTABOP_setup_table:
        return _setup_table(current, uop, count)
    if cmd == GnttabOp.GNTTABOP_query_size:
        return _query_size(current, uop, count)
    if cmd == GnttabOp.GNTTABOP_get_version:
        return _get_version(current, uop, count)
    return _ENOSYS
