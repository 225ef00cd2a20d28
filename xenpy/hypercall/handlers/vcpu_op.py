"""``HYPERVISOR_vcpu_op(int cmd, unsigned int vcpuid, void *arg)`` (hypercall 24; spec 1, 2.4, 3.1-3.2, 4).

Implements ``xen/arch/x86/domain.c:do_vcpu_op`` / ``arch_do_vcpu_op``, ``xen/common/domain.c:common_vcpu_op``
and ``map_guest_area`` / ``map_vcpu_info``, with the version differences of spec 1.4 taken from the domain's
profile.

Guest-visible contract (``cmd``, ``vcpuid``, ``arg``):

* First, ``vcpuid >= max_vcpus`` -> -ENOENT, whatever ``cmd`` is. Then an unknown ``cmd`` (< 0 or > 15) ->
  -ENOSYS. The target is always a vCPU of the caller's domain.
* Per command, the checks of spec 1.2 in their order; a fault copying ``arg`` -> -EFAULT.
* Only set/stop_singleshot_timer require the target to be the caller (-EINVAL otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from xenpy.abi.cstruct import fast_codec
from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall, VcpuOp
from xenpy.abi.sched import SHUTDOWN_poweroff
from xenpy.abi.vcpu import VCPU_SSHOTTMR_future
from xenpy.core.event_channel import vcpu_mark_events_pending
from xenpy.core.memory import PAGE_SHIFT, PageType
from xenpy.core.pagetable import GuestFault, guest_handle_okay
from xenpy.core.runstate import vcpu_runstate_get
from xenpy.core.systime import force_update_secondary_system_time, force_update_vcpu_system_time
from xenpy.core.timers import (
    PERIODIC_MIN_NS,
    STIME_DELTA_MAX,
    s_time,
    send_timer_event,
    vcpu_set_periodic_timer,
)
from xenpy.core.vcpu_context import arch_set_info_guest, parse_vcpu_guest_context
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Vcpu
    from xenpy.core.memory import MachineMemory
    from xenpy.hypercall.context import HypercallContext

_U64 = (1 << 64) - 1
_VPF_DOWN = 2
_ENOENT = -int(XenErrno.ENOENT)
_ENOSYS = -int(XenErrno.ENOSYS)
_EINVAL = -int(XenErrno.EINVAL)
_EFAULT = -int(XenErrno.EFAULT)
_EEXIST = -int(XenErrno.EEXIST)
_EBUSY = -int(XenErrno.EBUSY)
_ENXIO = -int(XenErrno.ENXIO)
_EACCES = -int(XenErrno.EACCES)
_ETIME = -int(XenErrno.ETIME)

#: ``subop(ctx, v, arg) -> result``: one VCPUOP_* command for target vCPU ``v`` with guest pointer ``arg``.
SubOp = Callable[["HypercallContext", "Vcpu", int], int]
_SUBOPS: dict[int, SubOp] = {}


def _subop(cmd: int) -> Callable[[SubOp], SubOp]:
    def register(fn: SubOp) -> SubOp:
        _SUBOPS[int(cmd)] = fn
        return fn

    return register


@hypercall_handler(Hypercall.vcpu_op, effects=Effect.CLOCK | Effect.VCPU_STATE)
def do_vcpu_op(ctx: HypercallContext, cmd: int, vcpuid: int, arg: int) -> int:
    """Dispatch ``cmd`` for vCPU ``vcpuid`` of the caller's domain with ``arg`` (guest pointer).

    Returns -ENOENT for a bad vcpuid (checked first), -ENOSYS for an unknown cmd, else the sub-op's result.
    """
    vcpus = ctx.domain.vcpus
    if vcpuid >= len(vcpus):
        return _ENOENT
    fn = _SUBOPS.get(cmd)
    if fn is None:
        return _ENOSYS
    return fn(ctx, vcpus[vcpuid], arg)


# ------------------------------------------------------------------------------------------ lifecycle


@_subop(VcpuOp.VCPUOP_initialise)
def vcpuop_initialise(ctx: HypercallContext, v: Vcpu, arg: int) -> int:
    """VCPUOP_initialise: load ``vcpu_guest_context`` at ``arg`` into ``v`` (spec 1.2 cmd 0, 1.3).

    -EINVAL if ``v`` still uses the dummy vcpu_info (id >= 32, not registered); -EFAULT if the context
    cannot be read; -EEXIST if already initialised; then ``arch_set_info_guest``'s errors. ``v`` stays down
    unless ``flags & VGCF_online``.
    """
    if v.vcpu_info_is_dummy:
        return _EINVAL
    abi = ctx.abi
    data = ctx.copy_from_guest(arg, abi.vcpu_guest_context.sizeof())
    if v.is_initialised:
        return _EEXIST
    return arch_set_info_guest(v, parse_vcpu_guest_context(abi, data))


@_subop(VcpuOp.VCPUOP_up)
def vcpuop_up(ctx: HypercallContext, v: Vcpu, arg: int) -> int:
    """VCPUOP_up: -EINVAL if not initialised; clear ``_VPF_down`` and wake if it was set; 0 otherwise."""
    if not v.is_initialised:
        return _EINVAL
    if v.pause_flags & _VPF_DOWN:
        v.pause_flags &= ~_VPF_DOWN
        v.sched.vcpu_wake(v)
    return 0


@_subop(VcpuOp.VCPUOP_down)
def vcpuop_down(ctx: HypercallContext, v: Vcpu, arg: int) -> int:
    """VCPUOP_down: mark ``v`` down and deschedule it; returns 0.

    If no *other* vCPU is up, profiles with ``down_last_vcpu_powers_off`` shut the domain down (poweroff)
    and leave ``v`` up. Downing a vCPU that is already down does nothing.
    """
    d = v.domain
    if d.profile.down_last_vcpu_powers_off and not any(o is not v and o.is_up for o in d.vcpus):
        d.shutdown(SHUTDOWN_poweroff)
        return 0
    if not v.pause_flags & _VPF_DOWN:
        v.pause_flags |= _VPF_DOWN
        v.sched.vcpu_sleep_nosync(v)
    return 0


@_subop(VcpuOp.VCPUOP_is_up)
def vcpuop_is_up(ctx: HypercallContext, v: Vcpu, arg: int) -> int:
    """VCPUOP_is_up: 1 if ``_VPF_down`` is clear, else 0."""
    return 0 if v.pause_flags & _VPF_DOWN else 1


# ------------------------------------------------------------------------------------------ runstate


@_subop(VcpuOp.VCPUOP_get_runstate_info)
def vcpuop_get_runstate_info(ctx: HypercallContext, v: Vcpu, arg: int) -> int:
    """VCPUOP_get_runstate_info: write ``vcpu_runstate_get(v)`` (spec 2.3) to ``arg``; -EFAULT on failure."""
    data = ctx.domain.runstate_codec.pack(*vcpu_runstate_get(v, ctx.now_ns()))
    ctx.copy_to_guest(arg, data)
    return 0


@_subop(VcpuOp.VCPUOP_register_runstate_memory_area)
def vcpuop_register_runstate_memory_area(ctx: HypercallContext, v: Vcpu, arg: int) -> int:
    """VCPUOP_register_runstate_memory_area: register the VA area and copy the runstate there at once.

    -EFAULT if ``arg`` cannot be read or the area's start address fails ``guest_handle_okay``. The first
    copy has no update flag: the raw runstate for ``v == current``, ``vcpu_runstate_get`` otherwise; a fault
    during it is ignored. Address 0 is accepted and disables updates.
    """
    gva = _read_guest_area_va(ctx, "vcpu_register_runstate_memory_area", arg)
    codec = ctx.domain.runstate_codec
    if not guest_handle_okay(gva, 1, codec.size):
        return _EFAULT
    v.runstate_guest_gva = gva
    if v is ctx.vcpu:
        snapshot = v.runstate.as_tuple()
    else:
        snapshot = vcpu_runstate_get(v, ctx.now_ns())
    try:
        ctx.copy_to_guest(gva, codec.pack(*snapshot))
    except GuestFault:
        pass  # Xen ignores a fault of this first copy
    return 0


def _read_guest_area_field(ctx: HypercallContext, struct_name: str, field: str, arg: int) -> int:
    """Copy only the ``addr.<field>`` member of the ``struct_name`` argument at ``arg`` and decode it.

    Raises:
        GuestFault: the member cannot be read.
    """
    layout = getattr(ctx.abi, struct_name)
    path = f"addr.{field}"
    data = ctx.copy_from_guest(arg + layout.offset_of(path), layout.type_of(path).size)
    return int.from_bytes(data, "little")


def _read_guest_area_va(ctx: HypercallContext, struct_name: str, arg: int) -> int:
    """The guest virtual address (``addr.v``, a pointer of the guest's width) of a guest-area argument."""
    return _read_guest_area_field(ctx, struct_name, "v", arg)


def _read_guest_area_maddr(ctx: HypercallContext, struct_name: str, arg: int) -> int:
    """The 64-bit guest physical address (``addr.p``) of a guest-area argument."""
    return _read_guest_area_field(ctx, struct_name, "p", arg)


# ------------------------------------------------------------------------------------------ timers


@_subop(VcpuOp.VCPUOP_set_periodic_timer)
def vcpuop_set_periodic_timer(ctx: HypercallContext, v: Vcpu, arg: int) -> int:
    """VCPUOP_set_periodic_timer: ``period_ns`` in [1 ms, 2**62 - 1] else -EINVAL (spec 1.2 cmd 6, 3.1)."""
    codec = fast_codec(ctx.abi.vcpu_set_periodic_timer)
    (period,) = codec.unpack(ctx.copy_from_guest(arg, codec.size))
    if period < PERIODIC_MIN_NS or period > STIME_DELTA_MAX:
        return _EINVAL
    _set_period(v, period)
    return 0


@_subop(VcpuOp.VCPUOP_stop_periodic_timer)
def vcpuop_stop_periodic_timer(ctx: HypercallContext, v: Vcpu, arg: int) -> int:
    """VCPUOP_stop_periodic_timer: period 0, timer stopped; returns 0."""
    _set_period(v, 0)
    return 0


def _set_period(v: Vcpu, period: int) -> None:
    if v.domain.profile.periodic_timer_force_reschedule:
        v.periodic_period_ns = period
        v.sched.vcpu_force_reschedule(v)
    else:
        vcpu_set_periodic_timer(v, period)


@_subop(VcpuOp.VCPUOP_set_singleshot_timer)
def vcpuop_set_singleshot_timer(ctx: HypercallContext, v: Vcpu, arg: int) -> int:
    """VCPUOP_set_singleshot_timer (self only; spec 1.2 cmd 8, 1.4).

    PV64 checks ``v == current`` (-EINVAL) before the copy (-EFAULT); PV32 the other way round. A deadline in
    the past injects VIRQ_TIMER at once (profiles with ``singleshot_past_injects``) or, with
    ``VCPU_SSHOTTMR_future``, returns -ETIME (older profiles). Otherwise the timer is armed.
    """
    d = ctx.domain
    current = ctx.vcpu
    codec = fast_codec(ctx.abi.vcpu_set_singleshot_timer)
    if d.is_compat:
        data = ctx.copy_from_guest(arg, codec.size)
        if v is not current:
            return _EINVAL
    else:
        if v is not current:
            return _EINVAL
        data = ctx.copy_from_guest(arg, codec.size)
    timer = dict(zip(codec.names, codec.unpack(data), strict=True))
    timeout = timer["timeout_abs_ns"]
    flags = timer["flags"]
    now = ctx.now_ns()
    if d.profile.singleshot_past_injects:
        if timeout < now:
            v.singleshot_timer.stop()
            send_timer_event(v)
            return 0
    elif flags & VCPU_SSHOTTMR_future and timeout < now:
        return _ETIME
    v.singleshot_timer.cpu = current.processor
    v.singleshot_timer.set(s_time(timeout))
    return 0


@_subop(VcpuOp.VCPUOP_stop_singleshot_timer)
def vcpuop_stop_singleshot_timer(ctx: HypercallContext, v: Vcpu, arg: int) -> int:
    """VCPUOP_stop_singleshot_timer (self only): -EINVAL if ``v != current``; stops the timer."""
    if v is not ctx.vcpu:
        return _EINVAL
    v.singleshot_timer.stop()
    return 0


# ------------------------------------------------------------------------------------------ guest areas


def _page_owned(machine: MachineMemory, v: Vcpu, mfn: int) -> bool:
    """``mfn`` is a frame of ``v``'s domain."""
    return 0 <= mfn < machine.nr_frames and machine.owner_of(mfn) == v.domain.domid


def _map_guest_area(ctx: HypercallContext, v: Vcpu, gaddr: int, size: int, area: str) -> int:
    """``map_guest_area`` (spec 4.1 step 4-6, and cmds 14/15). ``area``: vcpu_info, runstate or time."""
    d = v.domain
    machine = ctx.machine
    mfn: int | None = None
    maddr: int | None = None
    if gaddr != _U64:
        gfn = gaddr >> PAGE_SHIFT
        if gfn != ((gaddr + size - 1) & _U64) >> PAGE_SHIFT:
            return _ENXIO
        align = 4 if d.is_compat else 8
        if gaddr % align:
            return _ENXIO
        if not _page_owned(machine, v, gfn):
            return _EINVAL
        if not machine.get_page_type(gfn, PageType.writable):
            return _EACCES
        mfn = gfn
        maddr = gaddr
    remote = v is not ctx.vcpu
    if remote:
        v.sched.vcpu_pause(v)
    rc = 0
    old_mfn: int | None = None
    if area == "vcpu_info":
        if v.vcpu_info_registered:
            rc = _EBUSY
            old_mfn = mfn
        else:
            assert maddr is not None
            _populate_vcpu_info(machine, v, maddr)
            v.set_vcpu_info_maddr(maddr)
            v.vcpu_info_registered = True
            v.vcpu_info_mfn = mfn
    elif area == "runstate":
        if maddr is not None:
            _populate_runstate_area(ctx, v, maddr)
        old_mfn = v.runstate_phys_mfn
        v.runstate_phys_maddr = maddr
        v.runstate_phys_mfn = mfn
    else:
        if maddr is not None:
            v.pending_system_time = None
            force_update_secondary_system_time(v, maddr)
        old_mfn = v.time_phys_mfn
        v.time_phys_maddr = maddr
        v.time_phys_mfn = mfn
    if rc == 0 and area == "vcpu_info":
        v.vcpu_info_sel[0] = (1 << d.bits_per_evtchn_word) - 1
        vcpu_mark_events_pending(v)
        force_update_vcpu_system_time(v)
    if remote:
        v.sched.vcpu_unpause(v)
    if old_mfn is not None:
        machine.put_page_type(old_mfn)
    return rc


def _populate_vcpu_info(machine: MachineMemory, v: Vcpu, maddr: int) -> None:
    """``vcpu_info_populate``: from the dummy, zero the new area and mask events; else copy all 64 bytes."""
    mv = machine.mv_u8
    if v.vcpu_info_is_dummy:
        mv[maddr : maddr + 64] = bytes(64)
        mv[maddr + 1] = 1
    else:
        mv[maddr : maddr + 64] = bytes(v.vcpu_info_mv)


def _populate_runstate_area(ctx: HypercallContext, v: Vcpu, maddr: int) -> None:
    """``runstate_area_populate``: no pending retry; the raw runstate is written only when ``v == current``."""
    v.need_update_runstate_area = False
    if v is ctx.vcpu:
        codec = v.domain.runstate_codec
        ctx.machine.mv_u8[maddr : maddr + codec.size] = codec.pack(*v.runstate.as_tuple())


@_subop(VcpuOp.VCPUOP_register_vcpu_info)
def vcpuop_register_vcpu_info(ctx: HypercallContext, v: Vcpu, arg: int) -> int:
    """VCPUOP_register_vcpu_info ``{mfn, offset, rsvd}``: move ``v``'s vcpu_info into a guest page (spec 4.1).

    HEAD order: -EFAULT (copy); -EINVAL (``(mfn << 12) + offset`` overflows or leaves the page); -EBUSY
    (already registered); -ENXIO (crosses a page or misaligned); -EINVAL (not the domain's page); -EACCES (not
    writable-typeable). A remote target is paused meanwhile. On success the 64 bytes are copied from the old
    location (or zeroed with the mask set, from the dummy), ``evtchn_pending_sel`` becomes all ones,
    ``upcall_pending`` is raised (with a kick on 0->1) and the time record is refreshed. Older profiles follow
    ``map_vcpu_info`` (spec 4.1 "Differences in <= 4.17").
    """
    d = ctx.domain
    codec = fast_codec(ctx.abi.vcpu_register_vcpu_info)
    info = dict(zip(codec.names, codec.unpack(ctx.copy_from_guest(arg, codec.size)), strict=True))
    mfn = info["mfn"]
    offset = info["offset"]
    if d.profile.vcpu_info_map_guest_area:
        gaddr = (((mfn << PAGE_SHIFT) & _U64) + offset) & _U64
        if gaddr == _U64 or gaddr >> PAGE_SHIFT != mfn:
            return _EINVAL
        if v.vcpu_info_registered:
            return _EBUSY
        return _map_guest_area(ctx, v, gaddr, 64, "vcpu_info")
    return _map_vcpu_info_legacy(ctx, v, mfn, offset)


def _map_vcpu_info_legacy(ctx: HypercallContext, v: Vcpu, mfn: int, offset: int) -> int:
    """``map_vcpu_info`` of Xen <= 4.17."""
    d = v.domain
    profile = d.profile
    if offset > 4096 - 64:
        return -int(profile.vcpu_info_offset_errno)
    align = 4 if d.is_compat else 8
    if offset & (align - 1) and profile.vcpu_info_misaligned_errno is not None:
        return -int(profile.vcpu_info_misaligned_errno)
    if v.vcpu_info_registered:
        return _EINVAL
    if v is not ctx.vcpu and v.is_up:
        return _EINVAL
    machine = ctx.machine
    if not _page_owned(machine, v, mfn):
        return _EINVAL
    if not machine.get_page_type(mfn, PageType.writable):
        return _EINVAL
    maddr = (mfn << PAGE_SHIFT) + offset
    _populate_vcpu_info(machine, v, maddr)
    v.set_vcpu_info_maddr(maddr)
    v.vcpu_info_registered = True
    v.vcpu_info_mfn = mfn
    v.vcpu_info_sel[0] = (1 << d.bits_per_evtchn_word) - 1
    if profile.vcpu_info_kick:
        vcpu_mark_events_pending(v)
    else:
        v.vcpu_info_mv[0] = 1
    if profile.vcpu_info_time_refresh:
        force_update_vcpu_system_time(v)
    return 0


@_subop(VcpuOp.VCPUOP_register_runstate_phys_area)
def vcpuop_register_runstate_phys_area(ctx: HypercallContext, v: Vcpu, arg: int) -> int:
    """VCPUOP_register_runstate_phys_area (>= 4.18, else -ENOSYS): map the 8-byte machine address at ``arg``.

    ``~0`` unregisters; errors as ``map_guest_area`` (-ENXIO, -EINVAL, -EACCES). Updates then always use the
    XEN_RUNSTATE_UPDATE protocol and the VA area is no longer written.
    """
    d = ctx.domain
    if not ctx.profile.phys_areas:
        return _ENOSYS
    gaddr = _read_guest_area_maddr(ctx, "vcpu_register_runstate_memory_area", arg)
    return _map_guest_area(ctx, v, gaddr, d.runstate_codec.size, "runstate")


@_subop(VcpuOp.VCPUOP_register_vcpu_time_phys_area)
def vcpuop_register_vcpu_time_phys_area(ctx: HypercallContext, v: Vcpu, arg: int) -> int:
    """VCPUOP_register_vcpu_time_phys_area (>= 4.18, else -ENOSYS): a 32-byte secondary ``vcpu_time_info``."""
    if not ctx.profile.phys_areas:
        return _ENOSYS
    gaddr = _read_guest_area_maddr(ctx, "vcpu_register_time_memory_area", arg)
    return _map_guest_area(ctx, v, gaddr, ctx.abi.vcpu_time_info.sizeof(), "time")


@_subop(VcpuOp.VCPUOP_register_vcpu_time_memory_area)
def vcpuop_register_vcpu_time_memory_area(ctx: HypercallContext, v: Vcpu, arg: int) -> int:
    """VCPUOP_register_vcpu_time_memory_area: set the VA secondary time record and refresh it (spec 3.6)."""
    gva = _read_guest_area_va(ctx, "vcpu_register_time_memory_area", arg)
    if not guest_handle_okay(gva, 1, ctx.abi.vcpu_time_info.sizeof()):
        return _EFAULT
    v.time_info_guest_gva = gva
    force_update_vcpu_system_time(v)
    return 0


# ------------------------------------------------------------------------------------------ x86 misc


@_subop(VcpuOp.VCPUOP_send_nmi)
def vcpuop_send_nmi(ctx: HypercallContext, v: Vcpu, arg: int) -> int:
    """VCPUOP_send_nmi: -EINVAL unless ``arg`` is NULL; set ``nmi_pending`` and kick if it was clear."""
    if arg:
        return _EINVAL
    if not v.arch.nmi_pending:
        v.arch.nmi_pending = True
        v.sched.vcpu_kick(v)
    return 0


@_subop(VcpuOp.VCPUOP_get_physid)
def vcpuop_get_physid(ctx: HypercallContext, v: Vcpu, arg: int) -> int:
    """VCPUOP_get_physid: -EINVAL unless ``v`` is a pinned vCPU of the hardware domain; then
    ``apic_id | acpi_id << 32`` of its pCPU (-EFAULT if it cannot be written)."""
    if not (v.domain.is_hardware_domain and v.hard_affinity is not None):
        return _EINVAL
    cpu = v.hard_affinity
    ctx.copy_to_guest(arg, fast_codec(ctx.abi.vcpu_get_physid).pack(cpu | (cpu << 32)))
    return 0
