"""``HYPERVISOR_grant_table_op(cmd, uop, count)`` (hypercall 20; ``xen/common/grant_table.c:do_grant_table_op``).

Implemented: GNTTABOP_map_grant_ref (0), GNTTABOP_unmap_grant_ref (1), GNTTABOP_setup_table (2),
GNTTABOP_query_size (6), GNTTABOP_unmap_and_replace (7), GNTTABOP_set_version (8), GNTTABOP_get_status_frames (9)
and GNTTABOP_get_version (10); every other command returns -ENOSYS (no grant copies, transfers, swaps or cache
flushes). The table, its versions and the mapping rules are :mod:`xenpy.core.grant_table`'s.

Before any command, as Xen: -EINVAL for a ``count`` that is negative as an int, or for ``cmd`` bits above the
12-bit command (the continuation argument, which only GNTTABOP_cache_flush takes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xenpy.abi.cstruct import fast_codec
from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import GnttabOp, Hypercall
from xenpy.abi.grant_table import (
    GNTST_bad_domain,
    GNTST_bad_virt_addr,
    GNTST_general_error,
    GNTST_okay,
    GNTST_permission_denied,
)
from xenpy.core.grant_table import (
    INITIAL_NR_GRANT_FRAMES,
    MAX_GRANT_FRAMES,
    ensure_table,
    grow_table,
    map_grant_ref,
    set_version,
    unmap_grant_ref,
)
from xenpy.core.pagetable import GuestFault, guest_handle_okay
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from collections.abc import Callable

    from xenpy.abi.cstruct import CStruct
    from xenpy.core.domain import Domain
    from xenpy.hypercall.context import HypercallContext

#: An element of ``gnttab_setup_table.frame_list`` (a ``xen_pfn_t`` of a PV64 guest) and of
#: ``gnttab_get_status_frames.frame_list`` (``uint64_t``).
XEN_PFN = np.dtype("<u8")
#: ``GNTTABOP_CONTINUATION_ARG_SHIFT``: the command is the low 12 bits of ``cmd``.
_CMD_MASK = (1 << 12) - 1
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


def _write_status(ctx: HypercallContext, layout: CStruct, uop: int, status: int) -> None:
    """``__copy_field_to_guest(uop, &op, status)`` (a fault is -EFAULT through the dispatcher)."""
    size = layout.type_of("status").size
    ctx.copy_to_guest(uop + layout.offset_of("status"), status.to_bytes(size, "little", signed=True))


def _write_frames(ctx: HypercallContext, frame_list: int, mfns: list[int]) -> int:
    """The frame numbers at ``frame_list``, one ``uint64_t`` each; GNTST_bad_virt_addr where one cannot be
    written (those before it are)."""
    try:
        ctx.copy_to_guest(frame_list, np.array(mfns, XEN_PFN).tobytes())
    except GuestFault:
        return GNTST_bad_virt_addr
    return GNTST_okay


def _frame_list_op(
    ctx: HypercallContext, uop: int, count: int, layout: CStruct, frames_for: Callable[[Domain, int], list[int] | None]
) -> int:
    """GNTTABOP_setup_table and get_status_frames: ``{dom, nr_frames, status (out), frame_list (out)}`` (in the
    layout's order): ``count`` must be 1; the frames ``frames_for(target, nr_frames)`` gives (None:
    GNTST_general_error) go to ``frame_list``, then the status."""
    if count != 1:
        return _EINVAL
    codec = fast_codec(layout)
    try:
        fields = dict(zip(codec.names, codec.unpack(ctx.copy_from_guest(uop, codec.size)), strict=True))
    except GuestFault:
        return _EFAULT
    nr_frames, frame_list = fields["nr_frames"], fields["frame_list"]
    if not guest_handle_okay(frame_list, nr_frames, XEN_PFN.itemsize):
        return _EFAULT
    target, status = _target(ctx, fields["dom"])
    if target is not None:
        frames = frames_for(target, nr_frames)
        status = GNTST_general_error if frames is None else _write_frames(ctx, frame_list, frames)
    _write_status(ctx, layout, uop, status)
    return 0


def _setup_table(ctx: HypercallContext, uop: int, count: int) -> int:
    def grown(target: Domain, nr_frames: int) -> list[int] | None:
        if nr_frames > MAX_GRANT_FRAMES or not grow_table(target, max(nr_frames, INITIAL_NR_GRANT_FRAMES)):
            return None
        return target.grant_frames[:nr_frames]

    return _frame_list_op(ctx, uop, count, ctx.abi.gnttab_setup_table, grown)


def _query_size(ctx: HypercallContext, uop: int, count: int) -> int:
    if count != 1:
        return _EINVAL
    codec = fast_codec(ctx.abi.gnttab_query_size)
    try:
        dom, _nr, _max, _status = codec.unpack(ctx.copy_from_guest(uop, codec.size))
    except GuestFault:
        return _EFAULT
    target, status = _target(ctx, dom)
    if target is not None and not ensure_table(target):
        target, status = None, GNTST_general_error
    nr = len(target.grant_frames) if target is not None else 0
    ctx.copy_to_guest(uop, codec.pack(dom, nr, MAX_GRANT_FRAMES if target is not None else 0, status))
    return 0


def _set_version(ctx: HypercallContext, uop: int) -> int:
    codec = fast_codec(ctx.abi.gnttab_set_version)
    try:
        (version,) = codec.unpack(ctx.copy_from_guest(uop, codec.size))
    except GuestFault:
        return _EFAULT
    rc = set_version(ctx.domain, version)
    try:
        ctx.copy_to_guest(uop, codec.pack(ctx.domain.grant_version))
    except GuestFault:
        return _EFAULT
    return rc


def _get_status_frames(ctx: HypercallContext, uop: int, count: int) -> int:
    def status_frames(target: Domain, nr_frames: int) -> list[int] | None:
        if not ensure_table(target) or nr_frames > len(target.grant_status_frames):
            return None
        return target.grant_status_frames[:nr_frames]

    return _frame_list_op(ctx, uop, count, ctx.abi.gnttab_get_status_frames, status_frames)


def _get_version(ctx: HypercallContext, uop: int) -> int:
    codec = fast_codec(ctx.abi.gnttab_get_version)
    try:
        dom, pad, _version = codec.unpack(ctx.copy_from_guest(uop, codec.size))
    except GuestFault:
        return _EFAULT
    target, status = _target(ctx, dom)
    if target is None:
        return -int(XenErrno.ESRCH) if status == GNTST_bad_domain else -int(XenErrno.EPERM)
    ctx.copy_to_guest(uop, codec.pack(dom, pad, target.grant_version))
    return 0


#: Unmaps are done in groups of this many (``GNTTAB_UNMAP_BATCH_SIZE``); preemption comes between groups.
GNTTAB_UNMAP_BATCH_SIZE = 32


def _map_grant_ref(ctx: HypercallContext, uop: int, count: int) -> int:
    codec = fast_codec(ctx.abi.gnttab_map_grant_ref)
    if not guest_handle_okay(uop, count, codec.size):
        return _EFAULT
    for i in range(count):
        at = uop + i * codec.size
        if ctx.should_preempt(i):
            return ctx.create_continuation(Hypercall.grant_table_op, GnttabOp.GNTTABOP_map_grant_ref, at, count - i)
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
    if not guest_handle_okay(uop, count, codec.size):
        return _EFAULT
    cmd = GnttabOp.GNTTABOP_unmap_and_replace if replace else GnttabOp.GNTTABOP_unmap_grant_ref
    for i in range(count):
        at = uop + i * codec.size
        if not i % GNTTAB_UNMAP_BATCH_SIZE and ctx.should_preempt(i):
            return ctx.create_continuation(Hypercall.grant_table_op, cmd, at, count - i)
        try:
            host_addr, second, handle, _status = codec.unpack(ctx.copy_from_guest(at, codec.size))
        except GuestFault:
            return _EFAULT
        if replace:
            status = unmap_grant_ref(ctx.vcpu, handle, host_addr, 0, new_addr=second)
        else:
            status = unmap_grant_ref(ctx.vcpu, handle, host_addr, second)
        try:
            _write_status(ctx, layout, at, status)
        except GuestFault:
            return _EFAULT
    return 0


@hypercall_handler(Hypercall.grant_table_op, effects=Effect.PAGE_TABLES)
def do_grant_table_op(ctx: HypercallContext, cmd: int, uop: int, count: int) -> int:
    """Grant-table operation ``cmd`` on ``count`` argument structs at ``uop``.

    First -EINVAL if ``count`` >= 2**31 or ``cmd`` has bits above the low 12. Then:

    * GNTTABOP_setup_table: ``{domid_t dom; u32 nr_frames; i16 status (out); handle frame_list (out)}``;
      ``count`` must be 1 (-EINVAL); -EFAULT if the struct or the frame list is not accessible. ``status``:
      GNTST_okay, GNTST_bad_domain (unknown ``dom``), GNTST_permission_denied (another domain),
      GNTST_general_error (more than 64 frames, or no memory), GNTST_bad_virt_addr (a frame number could not
      be written). The table grows to ``nr_frames`` (and, in version 2, its status frames with it); the mfns
      of its first ``nr_frames`` frames are written to ``frame_list``. Returns 0.
    * GNTTABOP_query_size: ``{dom; nr_frames (out); max_nr_frames (out); status (out)}``; returns 0.
    * GNTTABOP_set_version: ``{u32 version}`` (in/out), of the caller's table, ``count`` ignored: -EFAULT if it
      cannot be read; the checks and conversions of :func:`xenpy.core.grant_table.set_version` (-EINVAL,
      -EBUSY, -ENOMEM, -ERANGE); then the version in force is written back (-EFAULT if it cannot be, even when
      the version changed). Returns 0 or the error.
    * GNTTABOP_get_status_frames: ``{u32 nr_frames; domid_t dom; i16 status (out); handle frame_list (out)}``;
      ``count`` must be 1 (-EINVAL); -EFAULT if the struct or the frame list is not accessible. ``status``:
      GNTST_bad_domain, GNTST_permission_denied as setup_table; GNTST_general_error if ``nr_frames`` is more
      than the table's status frames (always, but for 0, in version 1: there are none); GNTST_bad_virt_addr.
      The mfns of the first ``nr_frames`` status frames are written to ``frame_list``. Returns 0.
    * GNTTABOP_get_version: ``{dom; pad; version (out)}``, ``count`` ignored: 1 or 2. -ESRCH / -EPERM for a bad
      ``dom``.
    * GNTTABOP_map_grant_ref: ``count`` ``{host_addr, flags, ref, dom, status (out), handle (out),
      dev_bus_addr (out)}``, each written back whole; GNTTABOP_unmap_grant_ref ``{host_addr, dev_bus_addr,
      handle, status (out)}`` and GNTTABOP_unmap_and_replace ``{host_addr, new_addr, handle, status (out)}``:
      the status of each (:mod:`xenpy.core.grant_table`). -EFAULT if the array's start is not a guest address,
      and it stops the batch at an element that cannot be read or written back. Returns 0.
    * others: -ENOSYS.

    A result that cannot be written back: -EFAULT.

    Preemption, as Xen's: a map batch before any element but the first, an unmap batch between its groups of
    ``GNTTAB_UNMAP_BATCH_SIZE``, when ``hypercall_preempt_check`` says so or once
    :data:`~xenpy.hypercall.context.PREEMPT_ENTRIES` elements have run, ends with a continuation for the rest
    (``uop`` advanced, ``count`` reduced).
    """
    if count >> 31 or (cmd & ~_CMD_MASK and cmd & _CMD_MASK != GnttabOp.GNTTABOP_cache_flush):
        return _EINVAL
    cmd &= _CMD_MASK
    if cmd == GnttabOp.GNTTABOP_map_grant_ref:
        return _map_grant_ref(ctx, uop, count)
    if cmd == GnttabOp.GNTTABOP_unmap_grant_ref:
        return _unmap(ctx, uop, count, replace=False)
    if cmd == GnttabOp.GNTTABOP_setup_table:
        return _setup_table(ctx, uop, count)
    if cmd == GnttabOp.GNTTABOP_query_size:
        return _query_size(ctx, uop, count)
    if cmd == GnttabOp.GNTTABOP_unmap_and_replace:
        return _unmap(ctx, uop, count, replace=True)
    if cmd == GnttabOp.GNTTABOP_set_version:
        return _set_version(ctx, uop)
    if cmd == GnttabOp.GNTTABOP_get_status_frames:
        return _get_status_frames(ctx, uop, count)
    if cmd == GnttabOp.GNTTABOP_get_version:
        return _get_version(ctx, uop)
    return _ENOSYS
