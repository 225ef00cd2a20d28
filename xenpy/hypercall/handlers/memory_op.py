"""``HYPERVISOR_memory_op(cmd, arg)`` (hypercall 12; ``xen/common/memory.c:do_memory_op``): reservations.

Implemented sub-ops (the low 6 bits of ``cmd``; the upper bits are a continuation's start extent):

* XENMEM_increase_reservation (0), XENMEM_decrease_reservation (1), XENMEM_populate_physmap (6): the balloon.
  ``arg`` is a ``xen_memory_reservation {extent_start, nr_extents, extent_order, mem_flags, domid}``. They
  return the number of extents done, stopping at the first that fails; a bad argument makes them return the
  start extent (0), not an errno, as Xen does. A long batch is preempted as Xen's: before an extent but the
  first of the invocation, on ``hypercall_preempt_check`` or once
  :data:`~xenpy.hypercall.context.PREEMPT_ENTRIES` extents are done, it ends with a continuation whose ``cmd``
  carries the extents done so far above ``MEMOP_EXTENT_SHIFT``.
* XENMEM_maximum_ram_page (2): the number of machine frames (``max_page``).
* XENMEM_current_reservation (3) / XENMEM_maximum_reservation (4): ``arg`` is a ``domid_t``; the domain's
  pages (``tot_pages``) / its limit (``max_pages``). -EFAULT, -ESRCH (unknown domain), -EPERM (another domain
  without privilege).
* XENMEM_machphys_mapping (12): writes ``xen_machphys_mapping {v_start, v_end, max_mfn}``, where the read-only
  M2P table is mapped: PV64 ``MACH2PHYS_VIRT_START``/``_END`` and the entries that range holds, less one
  (the hardware domain: ``max_page - 1``); PV32 the compat range from ``HYPERVISOR_COMPAT_VIRT_START`` to
  0xFFE00000, 4-byte entries. -EFAULT if it cannot be written.
* XENMEM_claim_pages (24): the toolstack stakes a claim on free memory for a domain (``xen_memory_reservation``:
  ``nr_extents`` is the domain's pages once it is populated, ``domid``; ``domain_set_outstanding_pages``). In
  Xen's order: a start extent, a non-NULL ``extent_start``, an order or ``mem_flags`` other than 0, or an
  unknown domain: -EINVAL; -EFAULT; an unprivileged caller: -EPERM; a dying domain: -EINVAL. 0 pages cancels
  the claim; a second claim, or one not above ``tot_pages`` or above ``max_pages``: -EINVAL; more than the free
  frames less every other claim: -ENOMEM. The claim (``Domain.outstanding_pages``) shrinks as the domain's
  pages grow, and a new machine frame goes to another domain only where it leaves every claim its frames.
* anything else: -ENOSYS.

Balloon model (PV: guest frame numbers are machine frame numbers). A decreased frame leaves the domain's
accounting (``tot_pages`` - 1), its m2p entry becomes invalid, it is scrubbed and can no longer be mapped; it
stays reserved for the domain (in ``Domain.ballooned_mfns``) and is handed out again, zeroed, by the next
increase before any new machine frame. An increase never takes the domain above ``max_pages``; only
order-0 extents may be increased (``multipage_allocation_permitted`` for a domain without I/O resources);
decrease accepts orders up to 9 (``domu_max_order``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xenpy.abi.arch_x86 import HYPERVISOR_COMPAT_VIRT_START, MACH2PHYS_VIRT_END, MACH2PHYS_VIRT_START
from xenpy.abi.cstruct import fast_codec
from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall, XenMem
from xenpy.core.memory import INVALID_M2P_ENTRY, OutOfMachineMemory
from xenpy.core.pagetable import GuestFault, guest_handle_okay
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.core.memory import MachineMemory
    from xenpy.hypercall.context import HypercallContext

MEMOP_EXTENT_SHIFT = 6
MEMOP_CMD_MASK = (1 << MEMOP_EXTENT_SHIFT) - 1
#: ``domu_max_order``: the largest extent order a domU may free.
DOMU_MAX_ORDER = 9
#: An element of the ``extent_start`` array: a ``xen_pfn_t`` of a PV64 guest.
XEN_PFN = np.dtype("<u8")
_PFN_BYTES = XEN_PFN.itemsize
_ENOSYS = -int(XenErrno.ENOSYS)
_EFAULT = -int(XenErrno.EFAULT)
_EINVAL = -int(XenErrno.EINVAL)
_ESRCH = -int(XenErrno.ESRCH)
_EPERM = -int(XenErrno.EPERM)
_UINT_MAX = 0xFFFF_FFFF
#: ``MACH2PHYS_COMPAT_VIRT_END``: the end of a PV32 guest's read-only M2P.
MACH2PHYS_COMPAT_VIRT_END = 0xFFE0_0000


def _target(ctx: HypercallContext, domid: int) -> Domain | int:
    d = ctx.domain
    target = ctx.domain_by_id(domid)
    if target is None:
        return _ESRCH
    if target is not d and not d.is_hardware_domain:
        return _EPERM
    return target


def _read_pfn(ctx: HypercallContext, gva: int) -> int:
    """The ``xen_pfn_t`` at ``gva`` (GuestFault if it cannot be read)."""
    return int(np.frombuffer(ctx.copy_from_guest(gva, _PFN_BYTES), XEN_PFN)[0])


def _alloc_frame(ctx: HypercallContext, machine: MachineMemory, d: Domain) -> int | None:
    """One zeroed frame for ``d``: a ballooned-out frame first, else a new machine frame (none that another
    domain's claim needs: ``alloc_heap_pages``)."""
    if d.ballooned_mfns:
        mfn = next(iter(d.ballooned_mfns))
        if machine.type_count(mfn) == 0:
            del d.ballooned_mfns[mfn]
            machine.zero_frame(mfn)
            return mfn
    if ctx.outstanding_claims() + 1 > machine.nr_free_frames and d.outstanding_pages < 1:
        return None
    try:
        return int(machine.alloc_domain_frames(d.domid, 1)[0])
    except OutOfMachineMemory:
        return None


class _Preempted(Exception):  # noqa: N818 (names the condition, not an error)
    """A reservation loop stops for a continuation after ``done`` extents (Xen's ``args.preempted``)."""

    def __init__(self, done: int) -> None:
        super().__init__(done)
        self.done = done


def _increase(
    ctx: HypercallContext, d: Domain, extent_start: int, nr_extents: int, order: int, start: int, gpfn_list: bool
) -> int:
    machine = ctx.machine
    if extent_start and not guest_handle_okay(extent_start, nr_extents, _PFN_BYTES):
        return start
    if order != 0:
        return start
    i = start
    while i < nr_extents:
        if ctx.should_preempt(i - start):
            raise _Preempted(i)
        gpfn = None
        if gpfn_list:
            try:
                gpfn = _read_pfn(ctx, extent_start + _PFN_BYTES * i)
            except GuestFault:
                break
        if d.tot_pages + 1 > d.max_pages:
            break
        mfn = _alloc_frame(ctx, machine, d)
        if mfn is None:
            break
        d.tot_pages += 1
        d.outstanding_pages = max(0, d.outstanding_pages - 1)
        if gpfn is not None:
            machine.m2p[mfn] = gpfn if gpfn < (1 << 63) else INVALID_M2P_ENTRY
        if extent_start:
            try:
                ctx.copy_to_guest(extent_start + _PFN_BYTES * i, np.array([mfn], XEN_PFN).tobytes())
            except GuestFault:
                break
        i += 1
    return i


def _decrease(ctx: HypercallContext, d: Domain, extent_start: int, nr_extents: int, order: int, start: int) -> int:
    machine = ctx.machine
    if not guest_handle_okay(extent_start, nr_extents, _PFN_BYTES) or order > DOMU_MAX_ORDER:
        return start
    i = start
    while i < nr_extents:
        if ctx.should_preempt(i - start):
            raise _Preempted(i)
        try:
            gmfn = _read_pfn(ctx, extent_start + _PFN_BYTES * i)
        except GuestFault:
            break
        ok = True
        for j in range(1 << order):
            mfn = gmfn + j
            if (
                not (0 <= mfn < machine.nr_frames and machine.mv_owner[mfn] == d.domid)
                or mfn in d.ballooned_mfns
            ):
                ok = False
                break
            if mfn == d.shared_info_mfn or mfn in d.grant_frames or mfn in d.grant_status_frames:
                ok = False
                break
            machine.m2p[mfn] = INVALID_M2P_ENTRY
            if machine.type_count(mfn) == 0:
                machine.zero_frame(mfn)
            d.ballooned_mfns[mfn] = None
            d.tot_pages -= 1
        if not ok:
            break
        i += 1
    return i


def _reservation(ctx: HypercallContext, op: int, arg: int, start: int) -> int:
    codec = fast_codec(ctx.abi.xen_memory_reservation)
    try:
        raw = ctx.copy_from_guest(arg, codec.size)
    except GuestFault:
        return start
    extent_start, nr_extents, order, _mem_flags, domid = codec.unpack(raw)
    if nr_extents > (_UINT_MAX >> MEMOP_EXTENT_SHIFT) or start >= nr_extents:
        return start
    target = _target(ctx, domid)
    if isinstance(target, int):
        return start
    try:
        if op == XenMem.XENMEM_decrease_reservation:
            return _decrease(ctx, target, extent_start, nr_extents, order, start)
        return _increase(
            ctx, target, extent_start, nr_extents, order, start, gpfn_list=op == XenMem.XENMEM_populate_physmap
        )
    except _Preempted as stop:  # the rest continues from extent stop.done, encoded in cmd as Xen does
        return ctx.create_continuation(Hypercall.memory_op, op | (stop.done << MEMOP_EXTENT_SHIFT), arg)


@hypercall_handler(Hypercall.memory_op, effects=Effect.PAGE_TABLES)
def do_memory_op(ctx: HypercallContext, cmd: int, arg: int) -> int:
    """Memory reservation operations ``cmd`` with argument ``arg`` (see the module docstring)."""
    op = cmd & MEMOP_CMD_MASK
    start = cmd >> MEMOP_EXTENT_SHIFT
    if op in (
        XenMem.XENMEM_increase_reservation,
        XenMem.XENMEM_decrease_reservation,
        XenMem.XENMEM_populate_physmap,
    ):
        return _reservation(ctx, op, arg, start)
    if op == XenMem.XENMEM_maximum_ram_page:
        return _EINVAL if start else ctx.machine.nr_frames
    if op in (XenMem.XENMEM_current_reservation, XenMem.XENMEM_maximum_reservation):
        if start:
            return _EINVAL
        domid_t = ctx.abi.xen_memory_reservation.type_of("domid")  # ``arg`` is a ``domid_t *``
        try:
            domid = int.from_bytes(ctx.copy_from_guest(arg, domid_t.size), "little")
        except GuestFault:
            return _EFAULT
        target = _target(ctx, domid)
        if isinstance(target, int):
            return target
        return target.tot_pages if op == XenMem.XENMEM_current_reservation else target.max_pages
    if op == XenMem.XENMEM_claim_pages:
        return _claim_pages(ctx, arg, start)
    if cmd == XenMem.XENMEM_machphys_mapping:  # an arch op: Xen matches the whole cmd (no start extent)
        return _machphys_mapping(ctx, arg)
    return _ENOSYS


def _claim_pages(ctx: HypercallContext, arg: int, start: int) -> int:
    if start:
        return _EINVAL
    codec = fast_codec(ctx.abi.xen_memory_reservation)
    try:
        extent_start, pages, order, mem_flags, domid = codec.unpack(ctx.copy_from_guest(arg, codec.size))
    except GuestFault:
        return _EFAULT
    if extent_start or order or mem_flags:
        return _EINVAL
    d = ctx.domain_by_id(domid)
    if d is None:
        return _EINVAL
    if not ctx.domain.is_hardware_domain:
        return _EPERM
    if d.is_dying:
        return _EINVAL
    return _set_outstanding_pages(ctx, d, pages)


def _set_outstanding_pages(ctx: HypercallContext, d: Domain, pages: int) -> int:
    """``domain_set_outstanding_pages(d, pages)``: 0 or -errno (see the module docstring)."""
    if pages == 0:
        d.outstanding_pages = 0
        return 0
    if d.outstanding_pages:
        return _EINVAL
    if pages <= d.tot_pages or pages > d.max_pages:
        return _EINVAL
    claim = pages - d.tot_pages
    if claim > ctx.machine.nr_free_frames - ctx.outstanding_claims():
        return -int(XenErrno.ENOMEM)
    d.outstanding_pages = claim
    return 0


def _machphys_mapping(ctx: HypercallContext, arg: int) -> int:
    d = ctx.domain
    if d.is_compat:
        v_start, v_end, entry_bytes = HYPERVISOR_COMPAT_VIRT_START, MACH2PHYS_COMPAT_VIRT_END, 4
    else:
        v_start, v_end, entry_bytes = MACH2PHYS_VIRT_START, MACH2PHYS_VIRT_END, 8
    max_mfn = (v_end - v_start) // entry_bytes - 1
    if d.is_hardware_domain:  # no memory hotplug: the hardware domain learns the machine's size
        max_mfn = ctx.machine.nr_frames - 1
    data = fast_codec(ctx.abi.xen_machphys_mapping).pack(v_start, v_end, max_mfn)
    try:
        ctx.copy_to_guest(arg, data)
    except GuestFault:
        return _EFAULT
    return 0
