"""``HYPERVISOR_sched_op(int cmd, void *arg)`` (hypercall 29) and ``HYPERVISOR_sched_op_compat`` (hypercall 6).

Implements ``xen/common/sched/core.c:do_sched_op`` and ``do_poll``, and ``xen/arch/x86/compat.c:
do_sched_op_compat`` (spec 3.4).

Guest-visible contract (``cmd``, ``arg``):

* SCHEDOP_yield: 0; another runnable vCPU runs if there is one.
* SCHEDOP_block: events enabled first (``evtchn_upcall_mask = 0``, left at 0); returns 0 at once if
  ``evtchn_upcall_pending`` is set, otherwise the vCPU blocks until an event, a kick or its single-shot timer.
* SCHEDOP_shutdown ``{reason}``: -EFAULT; else ``domain_shutdown((u8)reason)`` (reason not validated; only the
  first reason is kept); 0.
* SCHEDOP_poll ``{ports, nr_ports, timeout}``: -EFAULT, -EINVAL (``nr_ports > 128``), -EFAULT (bad handle),
  -EINVAL (a listed port invalid, FREE or RESERVED) or -EFAULT (a port unreadable); 0 at once if events need
  delivery or a listed port is pending; otherwise blocks until the port (one port) or any port of the domain
  (0 or several ports) becomes pending, a kick, or the absolute ``timeout`` (0 = none). Returns 0 either way.
* SCHEDOP_remote_shutdown ``{domain_id, reason}``: -EFAULT, -ESRCH (no such domain; ``DOMID_SELF`` names none,
  as in ``rcu_lock_domain_by_id``), -EPERM (not privileged).
* SCHEDOP_shutdown_code ``{reason}``: latches the reason if none is latched yet; 0.
* SCHEDOP_watchdog ``{id, timeout}``: see :func:`xenpy.core.timers.domain_watchdog`.
* SCHEDOP_pin_override ``{pcpu}``: -EPERM unless the hardware domain; -EFAULT; -EINVAL (``pcpu >= NR_CPUS``).
* Any other cmd: -ENOSYS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall, SchedOp
from xenpy.abi.sched import SHUTDOWN_CODE_INVALID
from xenpy.core.pagetable import GuestFault, guest_handle_okay
from xenpy.core.timers import domain_watchdog, s_time
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Vcpu
    from xenpy.hypercall.context import HypercallContext

#: Xen's ``NR_CPUS`` (``CONFIG_NR_CPUS`` default on x86).
NR_CPUS = 256
#: SCHEDOP_poll's port limit.
POLL_MAX_PORTS = 128

_VPF_BLOCKED = 1
_U64 = (1 << 64) - 1
#: ``(u8)reason``: ``domain_shutdown`` takes an 8-bit reason.
_U8 = 0xFF


def vcpu_block_enable_events(v: Vcpu) -> None:
    """``vcpu_block_enable_events``: unmask event delivery, then ``vcpu_block``."""
    v.evtchn_upcall_mask = 0
    v.sched.vcpu_block(v)


def do_poll(ctx: HypercallContext, ports_gva: int, nr_ports: int, timeout: int) -> int:
    """``do_poll`` for the calling vCPU (spec 3.4 SCHEDOP_poll detail): 0 or ``-errno``."""
    port_size = ctx.abi.evtchn_send.type_of("port").size  # evtchn_port_t
    if nr_ports > POLL_MAX_PORTS:
        return -XenErrno.EINVAL
    if not guest_handle_okay(ports_gva, nr_ports, port_size):
        return -XenErrno.EFAULT
    v = ctx.vcpu
    d = ctx.domain
    bit = 1 << v.vcpu_id
    v.pause_flags |= _VPF_BLOCKED
    v.poll_evtchn = -1
    d.poll_mask |= bit

    def undo(rc: int) -> int:
        v.poll_evtchn = 0
        d.poll_mask &= ~bit
        v.pause_flags &= ~_VPF_BLOCKED
        return rc

    if v.local_events_need_delivery():
        return undo(0)
    evtchn = d.evtchn
    port = 0
    for i in range(nr_ports):
        try:
            data = ctx.copy_from_guest((ports_gva + port_size * i) & _U64, port_size)
        except GuestFault:
            return undo(-XenErrno.EFAULT)
        port = int.from_bytes(data, "little")
        if not evtchn.port_is_valid(port) or not evtchn.ports[port].usable:
            return undo(-XenErrno.EINVAL)
        if evtchn.is_pending(port):
            return undo(0)
    if nr_ports == 1:
        v.poll_evtchn = port
    if timeout != 0:
        v.poll_timer.set(s_time(timeout))
    if v.pcpu is not None:
        v.sched.raise_schedule_softirq(v.pcpu)
    return 0


def vcpu_temporary_affinity(v: Vcpu, pcpu: int) -> int:
    """``vcpu_temporary_affinity(v, cpu, VCPU_AFFINITY_OVERRIDE)``: pin (``pcpu >= 0``) or unpin (``< 0``)."""
    sched = v.sched
    if pcpu < 0:
        if not v.affinity_override:
            return -XenErrno.EINVAL
        v.affinity_override = False
        sched.set_affinity(v, None)
        return 0
    if pcpu >= len(sched.pcpus):
        return -XenErrno.EINVAL
    if v.affinity_override:
        return -XenErrno.EBUSY
    v.affinity_override = True
    sched.set_affinity(v, pcpu)
    return 0


@hypercall_handler(Hypercall.sched_op, effects=Effect.CLOCK)
def do_sched_op(ctx: HypercallContext, cmd: int, arg: int) -> int:
    """``do_sched_op(cmd, arg)``; see the module docstring."""
    current = ctx.vcpu
    d = ctx.domain
    if cmd == SchedOp.SCHEDOP_yield:
        current.sched.vcpu_yield(current)
        return 0
    if cmd == SchedOp.SCHEDOP_block:
        vcpu_block_enable_events(current)
        return 0
    if cmd == SchedOp.SCHEDOP_shutdown:
        reason = ctx.read_struct(arg, "sched_shutdown")["reason"]
        return d.shutdown(reason & _U8)
    if cmd == SchedOp.SCHEDOP_poll:
        poll = ctx.read_struct(arg, "sched_poll")
        return do_poll(ctx, poll["ports"], poll["nr_ports"], poll["timeout"])
    if cmd == SchedOp.SCHEDOP_remote_shutdown:
        remote = ctx.read_struct(arg, "sched_remote_shutdown")
        target = ctx.domain_by_exact_id(remote["domain_id"])
        if target is None:
            return -XenErrno.ESRCH
        if not d.is_hardware_domain:
            return -XenErrno.EPERM
        target.shutdown(remote["reason"] & _U8)
        return 0
    if cmd == SchedOp.SCHEDOP_shutdown_code:
        reason = ctx.read_struct(arg, "sched_shutdown")["reason"]
        if d.shutdown_code == SHUTDOWN_CODE_INVALID:
            d.shutdown_code = reason & _U8
        return 0
    if cmd == SchedOp.SCHEDOP_watchdog:
        watchdog = ctx.read_struct(arg, "sched_watchdog")
        return domain_watchdog(d, watchdog["id"], watchdog["timeout"])
    if cmd == SchedOp.SCHEDOP_pin_override:
        if not d.is_hardware_domain:
            return -XenErrno.EPERM
        pcpu = ctx.read_struct(arg, "sched_pin_override")["pcpu"]
        if pcpu >= NR_CPUS:
            return -XenErrno.EINVAL
        return vcpu_temporary_affinity(current, pcpu)
    return -XenErrno.ENOSYS


@hypercall_handler(Hypercall.sched_op_compat, effects=Effect.CLOCK)
def do_sched_op_compat(ctx: HypercallContext, cmd: int, arg: int) -> int:
    """``do_sched_op_compat(cmd, arg)``: yield, block, shutdown(reason = ``(u8)arg``); others -ENOSYS."""
    current = ctx.vcpu
    if cmd == SchedOp.SCHEDOP_yield:
        current.sched.vcpu_yield(current)
        return 0
    if cmd == SchedOp.SCHEDOP_block:
        vcpu_block_enable_events(current)
        return 0
    if cmd == SchedOp.SCHEDOP_shutdown:
        ctx.domain.shutdown(arg & _U8)
        return 0
    return -XenErrno.ENOSYS
