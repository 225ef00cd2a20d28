"""``HYPERVISOR_grant_table_op(cmd, uop, count)`` (hypercall 20; ``xen/common/grant_table.c:do_grant_table_op``).

Implemented: GNTTABOP_map_grant_ref (0), GNTTABOP_unmap_grant_ref (1), GNTTABOP_setup_table (2),
GNTTABOP_query_size (6), GNTTABOP_unmap_and_replace (7), GNTTABOP_get_version (10); every other command returns
-ENOSYS (no version 2 tables, grant copies or transfers). The mapping rules are :mod:`xenpy.core.grant_table`'s.

The grant table of a domain is a list of frames owned by the domain but not counted in its reservation (Xen's
xenheap pages shared with the guest). It has ``INITIAL_NR_GRANT_FRAMES`` frames from the start, as Xen's
``grant_table_init`` gives every domain (xenpy allocates them at the domain's first grant-table operation, which
is the first time a guest can tell), and grows, zeroed, up to ``MAX_GRANT_FRAMES`` frames when setup_table asks
for more; PV guests map the frames through their mfns. The table is version 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xenpy.abi.cstruct import fast_codec
from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import GnttabOp, Hypercall
from xenpy.core.grant_table import (
    GNTST_bad_domain,
    GNTST_bad_virt_addr,
    GNTST_general_error,
    GNTST_okay,
    GNTST_permission_denied,
    map_grant_ref,
    unmap_grant_ref,
)
from xenpy.core.memory import OutOfMachineMemory
from xenpy.core.pagetable import GuestFault, guest_handle_okay
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.core.memory import MachineMemory
    from xenpy.hypercall.context import HypercallContext

#: ``max_grant_frames`` of a domain (Xen's default ``opt_max_grant_frames``).
MAX_GRANT_FRAMES = 64
#: Frames every grant table has (``gnttab_grow_table``'s minimum).
INITIAL_NR_GRANT_FRAMES = 1
#: An element of ``gnttab_setup_table.frame_list``: a ``xen_pfn_t`` of a PV64 guest.
XEN_PFN = np.dtype("<u8")
_EINVAL = -int(XenErrno.EINVAL)
_EFAULT = -int(XenErrno.EFAULT)
_ENOSYS = -int(XenErrno.ENOSYS)


def _target(ctx: HypercallContext, domid: int) -> tuple[Domain | None, int]:
    d = ctx.domain
    target = ctx.domain_by_id(domid)
    if target is None:
        return None, GNTST_bad_domain
    if target is not d and not d.is_hardware_domain:
        return None, GNTST_permission_denied
    return target, GNTST_okay


def grow_table(machine: MachineMemory, d: Domain, nr_frames: int) -> bool:
    """``gnttab_grow_table``: give ``d`` at least ``nr_frames`` zeroed grant frames; False if memory runs out."""
    missing = nr_frames - len(d.grant_frames)
    if missing <= 0:
        return True
    try:
        mfns = machine.alloc_domain_frames(d.domid, missing)
    except OutOfMachineMemory:
        return False
    d.grant_frames.extend(int(m) for m in mfns)
    return True


def _setup_table(ctx: HypercallContext, uop: int, count: int) -> int:
    if count != 1:
        return _EINVAL
    layout = ctx.abi.gnttab_setup_table
    codec = fast_codec(layout)
    try:
        dom, nr_frames, _status, frame_list = codec.unpack(ctx.copy_from_guest(uop, codec.size))
    except GuestFault:
        return _EFAULT
    if not guest_handle_okay(frame_list, nr_frames, XEN_PFN.itemsize):
        return _EFAULT
    target, status = _target(ctx, dom)
    if target is not None:
        wanted = max(nr_frames, INITIAL_NR_GRANT_FRAMES)
        if nr_frames > MAX_GRANT_FRAMES or not grow_table(ctx.machine, target, wanted):
            status = GNTST_general_error
        else:
            frames = np.array(target.grant_frames[:nr_frames], XEN_PFN)
            try:
                ctx.copy_to_guest(frame_list, frames.tobytes())
            except GuestFault:
                status = GNTST_bad_virt_addr
    status_type = layout.type_of("status")
    ctx.copy_to_guest(uop + layout.offset_of("status"), status.to_bytes(status_type.size, "little", signed=True))
    return 0


def _query_size(ctx: HypercallContext, uop: int, count: int) -> int:
    if count != 1:
        return _EINVAL
    codec = fast_codec(ctx.abi.gnttab_query_size)
    try:
        dom, _nr, _max, _status = codec.unpack(ctx.copy_from_guest(uop, codec.size))
    except GuestFault:
        return _EFAULT
    target, status = _target(ctx, dom)
    if target is not None and not grow_table(ctx.machine, target, INITIAL_NR_GRANT_FRAMES):
        target, status = None, GNTST_general_error
    nr = len(target.grant_frames) if target is not None else 0
    ctx.copy_to_guest(uop, codec.pack(dom, nr, MAX_GRANT_FRAMES if target is not None else 0, status))
    return 0


def _get_version(ctx: HypercallContext, uop: int, count: int) -> int:
    if count != 1:
        return _EINVAL
    codec = fast_codec(ctx.abi.gnttab_get_version)
    try:
        dom, pad, _version = codec.unpack(ctx.copy_from_guest(uop, codec.size))
    except GuestFault:
        return _EFAULT
    target, status = _target(ctx, dom)
    if target is None:
        return -int(XenErrno.ESRCH) if status == GNTST_bad_domain else -int(XenErrno.EPERM)
    ctx.copy_to_guest(uop, codec.pack(dom, pad, 1))
    return 0


def _map_grant_ref(ctx: HypercallContext, uop: int, count: int) -> int:
    codec = fast_codec(ctx.abi.gnttab_map_grant_ref)
    for i in range(count):
        at = uop + i * codec.size
        try:
            host_addr, flags, ref, dom, _status, _handle, dev_bus_addr = codec.unpack(
                ctx.copy_from_guest(at, codec.size))
        except GuestFault:
            return _EFAULT
        result = map_grant_ref(ctx.vcpu, ctx.domain_by_exact_id(dom), ref, flags, host_addr)
        if result.status == GNTST_okay:
            handle, dev_bus_addr = result.handle, result.dev_bus_addr
        else:
            handle = _handle
        try:
            ctx.copy_to_guest(at, codec.pack(host_addr, flags, ref, dom, result.status, handle, dev_bus_addr))
        except GuestFault:
            return _EFAULT
    return 0


def _unmap(ctx: HypercallContext, uop: int, count: int, *, replace: bool) -> int:
    layout = ctx.abi.gnttab_unmap_and_replace if replace else ctx.abi.gnttab_unmap_grant_ref
    codec = fast_codec(layout)
    status_at = layout.offset_of("status")
    status_size = layout.type_of("status").size
    for i in range(count):
        at = uop + i * codec.size
        try:
            host_addr, second, handle, _status = codec.unpack(ctx.copy_from_guest(at, codec.size))
        except GuestFault:
            return _EFAULT
        if replace:
            status = unmap_grant_ref(ctx.vcpu, handle, host_addr, 0, new_addr=second)
        else:
            status = unmap_grant_ref(ctx.vcpu, handle, host_addr, second)
        try:
            ctx.copy_to_guest(at + status_at, status.to_bytes(status_size, "little", signed=True))
        except GuestFault:
            return _EFAULT
    return 0


@hypercall_handler(Hypercall.grant_table_op, effects=Effect.PAGE_TABLES)
def do_grant_table_op(ctx: HypercallContext, cmd: int, uop: int, count: int) -> int:
    """Grant-table operation ``cmd`` on ``count`` argument structs at ``uop``.

    * GNTTABOP_setup_table: ``{domid_t dom; u32 nr_frames; i16 status (out); handle frame_list (out)}``;
      ``count`` must be 1 (-EINVAL); -EFAULT if the struct or the frame list is not accessible. ``status``:
      GNTST_okay, GNTST_bad_domain (unknown ``dom``), GNTST_permission_denied (another domain),
      GNTST_general_error (more than 64 frames, or no memory), GNTST_bad_virt_addr (a frame number could not
      be written). The frames' mfns are written to ``frame_list``. Returns 0.
    * GNTTABOP_query_size: ``{dom; nr_frames (out); max_nr_frames (out); status (out)}``; returns 0.
    * GNTTABOP_get_version: ``{dom; pad; version (out)}``: 1. -ESRCH / -EPERM for a bad ``dom``.
    * GNTTABOP_map_grant_ref: ``count`` ``{host_addr, flags, ref, dom, status (out), handle (out),
      dev_bus_addr (out)}``, each written back whole; GNTTABOP_unmap_grant_ref ``{host_addr, dev_bus_addr,
      handle, status (out)}`` and GNTTABOP_unmap_and_replace ``{host_addr, new_addr, handle, status (out)}``:
      the status of each (:mod:`xenpy.core.grant_table`). -EFAULT stops the batch. Returns 0.
    * others: -ENOSYS.

    A result that cannot be written back: -EFAULT.
    """
    if cmd == GnttabOp.GNTTABOP_setup_table:
        return _setup_table(ctx, uop, count)
    if cmd == GnttabOp.GNTTABOP_query_size:
        return _query_size(ctx, uop, count)
    if cmd == GnttabOp.GNTTABOP_get_version:
        return _get_version(ctx, uop, count)
    if cmd == GnttabOp.GNTTABOP_map_grant_ref:
        return _map_grant_ref(ctx, uop, count)
    if cmd == GnttabOp.GNTTABOP_unmap_grant_ref:
        return _unmap(ctx, uop, count, replace=False)
    if cmd == GnttabOp.GNTTABOP_unmap_and_replace:
        return _unmap(ctx, uop, count, replace=True)
    return _ENOSYS
