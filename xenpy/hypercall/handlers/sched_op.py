"""``HYPERVISOR_sched_op(int cmd, void *arg)`` (hypercall 29) and ``HYPERVISOR_sched_op_compat`` (hypercall 6).

Implements ``xen/common/sched/core.c:do_sched_op`` and ``do_poll``, and ``xen/arch/x86/compat.c:
do_sched_op_compat`` (spec 3.4).

Guest-visible contract (PV64: rdi = cmd, rsi = arg):

* SCHEDOP_yield: 0; another runnable vCPU runs if there is one.
* SCHEDOP_block: events enabled first (``evtchn_upcall_mask = 0``, left at 0); returns 0 at once if
  ``evtchn_upcall_pending`` is set, otherwise the vCPU blocks until an event, a kick or its single-shot timer.
* SCHEDOP_shutdown ``{reason}``: -EFAULT; else ``domain_shutdown((u8)reason)`` (reason not validated; only the
  first reason is kept); 0.
* SCHEDOP_poll ``{ports, nr_ports, timeout}``: -EFAULT, -EINVAL (``nr_ports > 128``), -EFAULT (bad handle),
  -EINVAL (a listed port invalid, FREE or RESERVED) or -EFAULT (a port unreadable); 0 at once if events need
  delivery or a listed port is pending; otherwise blocks until the port (one port) or any port of the domain
  (0 or several ports) becomes pending, a kick, or the absolute ``timeout`` (0 = none). Returns 0 either way.
* SCHEDOP_remote_shutdown ``{domain_id, reason}``: -EFAULT, -ESRCH (no such domain), -EPERM (not privileged).
* SCHEDOP_shutdown_code ``{reason}``: latches the reason if none is latched yet; 0.
* SCHEDOP_watchdog ``{id, timeout}``: see :func:`xenpy.core.timers.domain_watchdog`.
* SCHEDOP_pin_override ``{pcpu}``: -EPERM unless the hardware domain; -EFAULT; -EINVAL (``pcpu >= NR_CPUS``).
* Any other cmd: -ENOSYS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.cstruct import fast_codec
from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall, SchedOp
from xenpy.abi.sched import SHUTDOWN_CODE_INVALID
from xenpy.core.pagetable import GuestFault, guest_handle_okay
from xenpy.core.timers import domain_watchdog, s_time
from xenpy.hypercall.registry import Effect, c_int, legacy_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Vcpu

#: Xen's ``NR_CPUS`` (``CONFIG_NR_CPUS`` default on x86).
NR_CPUS = 256
#: SCHEDOP_poll's port limit.
POLL_MAX_PORTS = 128

_VPF_BLOCKED = 1
_U64 = (1 << 64) - 1


def vcpu_block_enable_events(v: Vcpu) -> None:
    """``vcpu_block_enable_events``: unmask event delivery, then ``vcpu_block``."""
    v.evtchn_upcall_mask = 0
    v.sched.vcpu_block(v)


def do_poll(v: Vcpu, ports_gva: int, nr_ports: int, timeout: int) -> int:
    """``do_poll`` (spec 3.4 SCHEDOP_poll detail): 0 or ``-errno``."""
    if nr_ports > POLL_MAX_PORTS:
        return -XenErrno.EINVAL
    if not guest_handle_okay(ports_gva, nr_ports, 4):
        return -XenErrno.EFAULT
    d = v.domain
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
            port = int.from_bytes(v.copy_from_guest((ports_gva + 4 * i) & _U64, 4), "little")
        except GuestFault:
            return undo(-XenErrno.EFAULT)
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


def _read_u32(v: Vcpu, gva: int) -> int:
    return int.from_bytes(v.copy_from_guest(gva, 4), "little")


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


@legacy_handler(Hypercall.sched_op, effects=Effect.CLOCK)
def do_sched_op(current: Vcpu, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    """``do_sched_op(cmd = a1 (int), arg = a2)``; see the module docstring."""
    cmd = c_int(a1)
    arg = a2 & _U64
    d = current.domain
    abi = d.abi
    if cmd == SchedOp.SCHEDOP_yield:
        current.sched.vcpu_yield(current)
        return 0
    if cmd == SchedOp.SCHEDOP_block:
        vcpu_block_enable_events(current)
        return 0
    if cmd == SchedOp.SCHEDOP_shutdown:
        reason = _read_u32(current, arg)
        return d.shutdown(reason & 0xFF)
    if cmd == SchedOp.SCHEDOP_poll:
        data = current.copy_from_guest(arg, abi.sched_poll.sizeof())
        codec = fast_codec(abi.sched_poll)
        values = dict(zip(codec.names, codec.unpack(data), strict=True))
        return do_poll(current, values["ports"], values["nr_ports"], values["timeout"])
    if cmd == SchedOp.SCHEDOP_remote_shutdown:
        data = current.copy_from_guest(arg, abi.sched_remote_shutdown.sizeof())
        domain_id = int.from_bytes(data[0:2], "little")
        reason = int.from_bytes(data[4:8], "little")
        target = d.system.domain(domain_id)
        if target is None:
            return -XenErrno.ESRCH
        if not d.is_hardware_domain:
            return -XenErrno.EPERM
        target.shutdown(reason & 0xFF)
        return 0
    if cmd == SchedOp.SCHEDOP_shutdown_code:
        reason = _read_u32(current, arg)
        if d.shutdown_code == SHUTDOWN_CODE_INVALID:
            d.shutdown_code = reason & 0xFF
        return 0
    if cmd == SchedOp.SCHEDOP_watchdog:
        data = current.copy_from_guest(arg, 8)
        return domain_watchdog(d, int.from_bytes(data[0:4], "little"), int.from_bytes(data[4:8], "little"))
    if cmd == SchedOp.SCHEDOP_pin_override:
        if not d.is_hardware_domain:
            return -XenErrno.EPERM
        pcpu = c_int(_read_u32(current, arg))
        if pcpu >= NR_CPUS:
            return -XenErrno.EINVAL
        return vcpu_temporary_affinity(current, pcpu)
    return -XenErrno.ENOSYS


@legacy_handler(Hypercall.sched_op_compat, effects=Effect.CLOCK)
def do_sched_op_compat(current: Vcpu, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    """``do_sched_op_compat(cmd = a1, arg = a2)``: yield, block, shutdown(reason = arg); others -ENOSYS."""
    cmd = c_int(a1)
    if cmd == SchedOp.SCHEDOP_yield:
        current.sched.vcpu_yield(current)
        return 0
    if cmd == SchedOp.SCHEDOP_block:
        vcpu_block_enable_events(current)
        return 0
    if cmd == SchedOp.SCHEDOP_shutdown:
        current.domain.shutdown(a2 & 0xFF)
        return 0
    return -XenErrno.ENOSYS
