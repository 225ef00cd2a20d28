"""``HYPERVISOR_event_channel_op(int cmd, void *arg)`` (hypercall 32) and the legacy
``HYPERVISOR_event_channel_op_compat(evtchn_op_t *op)`` (hypercall 16).

Implements ``xen/common/event_channel.c:do_event_channel_op`` and ``do_event_channel_op_compat`` over the
2-level event channels of :mod:`xenpy.core.event_channel` (spec 3.5).

Guest-visible contract (``cmd``, ``arg``): the argument struct is copied in first (-EFAULT); the
operation's errors are those of spec 3.5; operations with an OUT field copy the whole struct back (-EFAULT if
that fails, after the operation took effect). Only the 2-level ABI exists: EVTCHNOP_init_control checks its
arguments as ``evtchn_fifo_init_control`` does (-ENOENT, -EINVAL, a bad control frame -EINVAL) and then
declines the switch (-EOPNOTSUPP);
EVTCHNOP_expand_array is -EOPNOTSUPP (no FIFO control block) and EVTCHNOP_set_priority -EINVAL for a bad port,
else -ENOSYS (the 2-level port ops have no set_priority). Unknown commands return -ENOSYS.

Hypercall 16 copies the 28-byte ``evtchn_op`` (``{cmd, union}``) and forwards the legacy commands 0-9 to
hypercall 32 with the union as argument; others return -ENOSYS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from xenpy.abi.cstruct import fast_codec
from xenpy.abi.errno import XenErrno
from xenpy.abi.event_channel import EVTCHN_FIFO_CONTROL_BLOCK_SIZE, EVTCHNSTAT
from xenpy.abi.generated.hypercalls import EvtchnOp, Hypercall
from xenpy.abi.x86 import PAGE_SIZE
from xenpy.core.memory import PageType
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.hypercall.context import HypercallContext

_U64 = (1 << 64) - 1

#: ``op(ctx, arg) -> result``: one EVTCHNOP_* command with its argument's guest address.
Op = Callable[["HypercallContext", int], int]
_OPS: dict[int, Op] = {}


def _op(cmd: int) -> Callable[[Op], Op]:
    def register(fn: Op) -> Op:
        _OPS[int(cmd)] = fn
        return fn

    return register


def _write_back(ctx: HypercallContext, arg: int, struct_name: str, values: dict[str, int]) -> int:
    """Copy the whole ``struct_name`` back to ``arg``; 0 (GuestFault, hence -EFAULT, if it cannot be written)."""
    codec = fast_codec(getattr(ctx.abi, struct_name))
    ctx.copy_to_guest(arg, codec.pack(*(values[name] for name in codec.names)))
    return 0


def _xsm_target(current: Domain, target: Domain) -> bool:
    """XSM_TARGET under the dummy policy: the domain itself or the control domain."""
    return current is target or current.is_hardware_domain


@hypercall_handler(Hypercall.event_channel_op, effects=Effect.CLOCK)
def do_event_channel_op(ctx: HypercallContext, cmd: int, arg: int) -> int:
    """``do_event_channel_op(cmd, arg)``: -ENOSYS for an unknown ``cmd``, else the command's result."""
    fn = _OPS.get(cmd)
    if fn is None:
        return -XenErrno.ENOSYS
    return fn(ctx, arg)


@_op(EvtchnOp.EVTCHNOP_bind_interdomain)
def evtchnop_bind_interdomain(ctx: HypercallContext, arg: int) -> int:
    """``{remote_dom, remote_port, OUT local_port}``: -ESRCH (no remote domain), -ENOSPC, -EINVAL (remote port
    not UNBOUND for us). The new local port is set pending at once."""
    b = ctx.read_struct(arg, "evtchn_bind_interdomain")
    d = ctx.domain
    rd = ctx.domain_by_id(b["remote_dom"])
    if rd is None:
        return -XenErrno.ESRCH
    port = d.evtchn.bind_interdomain(rd, b["remote_port"])
    if port < 0:
        return port
    b["local_port"] = port
    return _write_back(ctx, arg, "evtchn_bind_interdomain", b)


@_op(EvtchnOp.EVTCHNOP_bind_virq)
def evtchnop_bind_virq(ctx: HypercallContext, arg: int) -> int:
    """``{virq, vcpu, OUT port}``: -EINVAL, -EINVAL (global VIRQ, vcpu != 0), -ENOENT, -EBUSY, -EEXIST, -ENOSPC."""
    b = ctx.read_struct(arg, "evtchn_bind_virq")
    port = ctx.domain.evtchn.bind_virq(b["virq"], b["vcpu"])
    if port < 0:
        return port
    b["port"] = port
    return _write_back(ctx, arg, "evtchn_bind_virq", b)


@_op(EvtchnOp.EVTCHNOP_bind_pirq)
def evtchnop_bind_pirq(ctx: HypercallContext, arg: int) -> int:
    """``{pirq, flags, OUT port}``: -EINVAL (pirq out of range), else -EPERM (no PIRQ access)."""
    b = ctx.read_struct(arg, "evtchn_bind_pirq")
    return ctx.domain.evtchn.bind_pirq(b["pirq"])


@_op(EvtchnOp.EVTCHNOP_close)
def evtchnop_close(ctx: HypercallContext, arg: int) -> int:
    """``{port}``: -EINVAL for a bad, FREE or RESERVED port; the peer of an interdomain channel becomes UNBOUND."""
    b = ctx.read_struct(arg, "evtchn_close")
    return ctx.domain.evtchn.evtchn_close(b["port"])


@_op(EvtchnOp.EVTCHNOP_send)
def evtchnop_send(ctx: HypercallContext, arg: int) -> int:
    """``{port}``: -EINVAL unless INTERDOMAIN, IPI or UNBOUND (dropped)."""
    b = ctx.read_struct(arg, "evtchn_send")
    return ctx.domain.evtchn.evtchn_send(b["port"])


#: ``evtchn_status.u``: the union member each status fills and the member paths it writes (closed and ipi: none,
#: read through the virq view). Xen copies the guest's structure in, sets ``status``, ``vcpu`` and these paths,
#: and copies the whole structure back: every other byte (the padding after ``dom``, the union bytes the member
#: does not cover) is the guest's own.
_STATUS_UNION: dict[int, tuple[str, tuple[str, ...]]] = {
    EVTCHNSTAT.EVTCHNSTAT_closed: ("virq", ()),
    EVTCHNSTAT.EVTCHNSTAT_unbound: ("unbound", ("u.unbound.dom",)),
    EVTCHNSTAT.EVTCHNSTAT_interdomain: ("interdomain", ("u.interdomain.dom", "u.interdomain.port")),
    EVTCHNSTAT.EVTCHNSTAT_pirq: ("pirq", ("u.pirq",)),
    EVTCHNSTAT.EVTCHNSTAT_virq: ("virq", ("u.virq",)),
    EVTCHNSTAT.EVTCHNSTAT_ipi: ("virq", ()),
}


@_op(EvtchnOp.EVTCHNOP_status)
def evtchnop_status(ctx: HypercallContext, arg: int) -> int:
    """``{dom, port, OUT status, vcpu, u}``: -ESRCH, -EINVAL (bad port), -EPERM (not our domain).

    Writes back the guest's own structure with only ``status``, ``vcpu`` and the state's union member changed.
    """
    layout = ctx.abi.evtchn_status
    data = bytearray(ctx.copy_from_guest(arg, layout.sizeof()))
    plain = fast_codec(layout)
    b = dict(zip(plain.names, plain.unpack(data), strict=True))
    d = ctx.domain
    target = ctx.domain_by_id(b["dom"])
    if target is None:
        return -XenErrno.ESRCH
    if not target.evtchn.port_is_valid(b["port"]):
        return -XenErrno.EINVAL
    if not _xsm_target(d, target):
        return -XenErrno.EPERM
    result = target.evtchn.status(b["port"])
    assert isinstance(result, tuple)
    status, vcpu, u_lo, u_hi = result
    member, paths = _STATUS_UNION[status]
    u_values = (u_lo, u_hi) if member == "interdomain" else (u_lo,)  # the core's words: 0 where none
    packed = fast_codec(layout, {"u": member}).pack(b["dom"], b["port"], status, vcpu, *u_values)
    for path in ("status", "vcpu", *paths):  # only the members Xen sets; the rest stays the guest's
        offset = layout.offset_of(path)
        end = offset + layout.type_of(path).size
        data[offset:end] = packed[offset:end]
    ctx.copy_to_guest(arg, data)
    return 0


@_op(EvtchnOp.EVTCHNOP_alloc_unbound)
def evtchnop_alloc_unbound(ctx: HypercallContext, arg: int) -> int:
    """``{dom, remote_dom, OUT port}``: -ESRCH (no ``dom``), -ENOSPC, -EPERM (not ours, not privileged)."""
    b = ctx.read_struct(arg, "evtchn_alloc_unbound")
    d = ctx.domain
    target = ctx.domain_by_id(b["dom"])
    if target is None:
        return -XenErrno.ESRCH
    port = target.evtchn.alloc_unbound(d, b["remote_dom"])
    if port < 0:
        return port
    b["port"] = port
    return _write_back(ctx, arg, "evtchn_alloc_unbound", b)


@_op(EvtchnOp.EVTCHNOP_bind_ipi)
def evtchnop_bind_ipi(ctx: HypercallContext, arg: int) -> int:
    """``{vcpu, OUT port}``: -ENOENT (bad vcpu), -ENOSPC."""
    b = ctx.read_struct(arg, "evtchn_bind_ipi")
    port = ctx.domain.evtchn.bind_ipi(b["vcpu"])
    if port < 0:
        return port
    b["port"] = port
    return _write_back(ctx, arg, "evtchn_bind_ipi", b)


@_op(EvtchnOp.EVTCHNOP_bind_vcpu)
def evtchnop_bind_vcpu(ctx: HypercallContext, arg: int) -> int:
    """``{port, vcpu}``: -ENOENT (bad vcpu), -EINVAL (bad port, per-vCPU VIRQ, IPI, FREE, RESERVED)."""
    b = ctx.read_struct(arg, "evtchn_bind_vcpu")
    return ctx.domain.evtchn.bind_vcpu(b["port"], b["vcpu"])


@_op(EvtchnOp.EVTCHNOP_unmask)
def evtchnop_unmask(ctx: HypercallContext, arg: int) -> int:
    """``{port}``: -EINVAL (bad port); re-raises the upcall if the port was masked, pending, selector clear."""
    b = ctx.read_struct(arg, "evtchn_unmask")
    return ctx.domain.evtchn.unmask(b["port"])


def _reset(ctx: HypercallContext, arg: int, *, resuming: bool) -> int:
    b = ctx.read_struct(arg, "evtchn_reset")
    d = ctx.domain
    target = ctx.domain_by_id(b["dom"])
    if target is None:
        return -XenErrno.ESRCH
    if not _xsm_target(d, target):
        return -XenErrno.EPERM
    return target.evtchn.reset(d, resuming=resuming)


@_op(EvtchnOp.EVTCHNOP_reset)
def evtchnop_reset(ctx: HypercallContext, arg: int) -> int:
    """``{dom}``: -ESRCH, -EPERM, -EINVAL (another domain that is not paused); closes every port."""
    return _reset(ctx, arg, resuming=False)


@_op(EvtchnOp.EVTCHNOP_reset_cont)
def evtchnop_reset_cont(ctx: HypercallContext, arg: int) -> int:
    """Continuation of a preempted EVTCHNOP_reset: the same checks, then -EBUSY, closing nothing, since a reset
    here always completes in one call (``evtchn_reset(d, true)`` with ``d->next_evtchn == 0``). -ENOSYS in a
    release without it (the profile's ``evtchn_reset_cont``)."""
    if not ctx.profile.evtchn_reset_cont:
        return -XenErrno.ENOSYS
    return _reset(ctx, arg, resuming=True)


@_op(EvtchnOp.EVTCHNOP_init_control)
def evtchnop_init_control(ctx: HypercallContext, arg: int) -> int:
    """``{control_gfn, offset, vcpu, OUT link_bits}``: the argument checks of ``evtchn_fifo_init_control`` -
    -ENOENT (bad vcpu), -EINVAL (the control block crosses the page, or offset not 8-byte aligned), then
    ``map_guest_page``'s -EINVAL (``control_gfn`` is not a frame of the domain that can be typed writable) -
    then -EOPNOTSUPP: xenpy has no FIFO ABI, the domain stays on the 2-level one. Nothing is written back on
    failure."""
    b = ctx.read_struct(arg, "evtchn_init_control")
    d = ctx.domain
    if d.vcpu(b["vcpu"]) is None:
        return -XenErrno.ENOENT
    if b["offset"] > PAGE_SIZE - EVTCHN_FIFO_CONTROL_BLOCK_SIZE or b["offset"] & 7:
        return -XenErrno.EINVAL
    machine = ctx.machine
    gfn = b["control_gfn"]
    if not (0 < gfn < machine.nr_frames and machine.owner_of(gfn) == d.domid):
        return -XenErrno.EINVAL
    if machine.page_type(gfn) not in (PageType.none, PageType.writable):
        return -XenErrno.EINVAL
    return -XenErrno.EOPNOTSUPP


@_op(EvtchnOp.EVTCHNOP_expand_array)
def evtchnop_expand_array(ctx: HypercallContext, arg: int) -> int:
    """``{array_gfn}``: -EOPNOTSUPP, as ``evtchn_fifo_expand_array`` for a domain without a FIFO control block."""
    ctx.read_struct(arg, "evtchn_expand_array")
    return -XenErrno.EOPNOTSUPP


@_op(EvtchnOp.EVTCHNOP_set_priority)
def evtchnop_set_priority(ctx: HypercallContext, arg: int) -> int:
    """``{port, priority}``: -EINVAL for a bad port, else -ENOSYS (``evtchn_port_set_priority``: the 2-level
    port ops have no ``set_priority``)."""
    b = ctx.read_struct(arg, "evtchn_set_priority")
    if not ctx.domain.evtchn.port_is_valid(b["port"]):
        return -XenErrno.EINVAL
    return -XenErrno.ENOSYS


_LEGACY_CMDS = frozenset(range(int(EvtchnOp.EVTCHNOP_unmask) + 1))


@hypercall_handler(Hypercall.event_channel_op_compat, effects=Effect.CLOCK)
def do_event_channel_op_compat(ctx: HypercallContext, uop: int) -> int:
    """``do_event_channel_op_compat(uop)``: copy ``evtchn_op`` (-EFAULT), forward commands 0-9 with the union."""
    layout = ctx.abi.evtchn_op
    data = ctx.copy_from_guest(uop, layout.sizeof())
    cmd_offset = layout.offset_of("cmd")
    cmd = int.from_bytes(data[cmd_offset : cmd_offset + layout.type_of("cmd").size], "little")
    if cmd not in _LEGACY_CMDS:
        return -XenErrno.ENOSYS
    return _OPS[cmd](ctx, (uop + layout.offset_of("u")) & _U64)
