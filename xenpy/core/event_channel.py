"""Event channels with the 2-level ABI (spec 3.3, 3.5).

Implements ``xen/common/event_channel.c`` (port table, bind/send/close/status/unmask/bind_vcpu/reset, VIRQ
delivery) and ``xen/common/event_2l.c`` (``evtchn_2l_set_pending``, ``evtchn_2l_unmask``,
``evtchn_2l_clear_pending``), plus ``vcpu_mark_events_pending`` (``xen/arch/x86/domain.c``).

The pending and mask bitmaps live in the domain's shared_info frame and the selector and upcall bytes in the
vCPU's current vcpu_info, all in machine memory: a guest reads exactly what the hypervisor wrote. Word size W is
64 (PV64) or 32 (PV32); port ``p`` is bit ``p % W`` of word ``p // W`` and selector bit ``p // W``.

Invariants:

* port 0 is reserved (ECS_RESERVED); new ports are the lowest free port; at most 4096 (PV64) / 1024 (PV32)
  ports, and no port above the domain's ``max_evtchn_port``;
* ``port_is_valid(p)`` is ``p < valid_evtchns``, which counts allocated buckets of :data:`EVTCHNS_PER_BUCKET`
  ports, not ports in use;
* set_pending follows the strict order of spec 3.3: an already-pending port does nothing at all; the upcall is
  raised only on a 0->1 selector transition of an unmasked port; pollers are checked even for masked ports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.errno import XenErrno
from xenpy.abi.event_channel import (
    EVTCHN_2L_NR_CHANNELS_X86_32,
    EVTCHN_2L_NR_CHANNELS_X86_64,
    EVTCHNSTAT_closed,
    EVTCHNSTAT_interdomain,
    EVTCHNSTAT_ipi,
    EVTCHNSTAT_pirq,
    EVTCHNSTAT_unbound,
    EVTCHNSTAT_virq,
)
from xenpy.abi.xen import DOMID_SELF, NR_VIRQS, VIRQ_KIND, VirqKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from xenpy.core.domain import Domain, Vcpu

# Internal channel states (``ECS_*``, spec 6.5).
ECS_FREE = 0
ECS_RESERVED = 1
ECS_UNBOUND = 2
ECS_INTERDOMAIN = 3
ECS_PIRQ = 4
ECS_VIRQ = 5
ECS_IPI = 6

#: Ports per allocation bucket: ``PAGE_SIZE / next_power_of_2(sizeof(struct evtchn))`` with a 64-byte
#: ``struct evtchn``.
EVTCHNS_PER_BUCKET = 64

#: PIRQs of a domU: ``nr_static_irqs`` (24 GSIs) + ``extra_domU_irqs`` (32).
DEFAULT_NR_PIRQS = 56


def virq_kind(virq: int) -> VirqKind:
    """Per-vCPU, per-domain or global (``virq_is_global``): unlisted VIRQ numbers are global on x86."""
    return VIRQ_KIND.get(virq, VirqKind.GLOBAL)


def virq_is_per_vcpu(virq: int) -> bool:
    """True for VIRQ_TIMER, DEBUG, XENOPROF and XENPMU."""
    return VIRQ_KIND.get(virq) is VirqKind.PER_VCPU


class Evtchn:
    """One port (``struct evtchn``).

    Attributes:
        port: its number.
        state: ``ECS_*``.
        notify_vcpu_id: the vCPU notified when it becomes pending.
        virq: bound VIRQ (ECS_VIRQ).
        remote_domid: the domain allowed to bind (ECS_UNBOUND).
        remote_dom / remote_port: the peer (ECS_INTERDOMAIN).
        pirq: bound PIRQ (ECS_PIRQ).
        xen_consumer: a Xen-attached port, which guests cannot send on, close or rebind.
        backend: for an UNBOUND port, the host-side backend (a toolstack service standing in for the remote
            domain) called when the guest sends on it; the guest still sees Xen's result for UNBOUND (0).
    """

    __slots__ = (
        "backend",
        "notify_vcpu_id",
        "pirq",
        "port",
        "remote_dom",
        "remote_domid",
        "remote_port",
        "state",
        "virq",
        "xen_consumer",
    )

    def __init__(self, port: int) -> None:
        self.port = port
        self.state = ECS_FREE
        self.notify_vcpu_id = 0
        self.virq = 0
        self.remote_domid = 0
        self.remote_dom: Domain | None = None
        self.remote_port = 0
        self.pirq = 0
        self.xen_consumer = False
        self.backend: Callable[[], None] | None = None

    @property
    def usable(self) -> bool:
        """``evtchn_usable``: state above ECS_RESERVED."""
        return self.state > ECS_RESERVED

    def __repr__(self) -> str:
        return f"<Evtchn {self.port} state={self.state} vcpu={self.notify_vcpu_id}>"


class EventChannels:
    """A domain's event channels (2-level ABI).

    Args:
        domain: the owning domain (its shared_info must be set up).
        max_evtchn_port: highest port the toolstack allows (clamped to the ABI's limit).
    """

    def __init__(self, domain: Domain, max_evtchn_port: int) -> None:
        self.domain = domain
        self.max_evtchns = EVTCHN_2L_NR_CHANNELS_X86_32 if domain.is_compat else EVTCHN_2L_NR_CHANNELS_X86_64
        self.max_evtchn_port = min(max_evtchn_port, self.max_evtchns - 1)
        self.nr_pirqs = DEFAULT_NR_PIRQS
        self.ports: list[Evtchn] = []
        self._alloc_bucket()
        self.ports[0].state = ECS_RESERVED

    # ------------------------------------------------------------------ port table

    @property
    def valid_evtchns(self) -> int:
        """``d->valid_evtchns``: ports in allocated buckets."""
        return len(self.ports)

    def port_is_valid(self, port: int) -> bool:
        """``port_is_valid``: ``0 <= port < valid_evtchns``."""
        return 0 <= port < len(self.ports)

    def _alloc_bucket(self) -> None:
        base = len(self.ports)
        self.ports.extend(Evtchn(base + i) for i in range(EVTCHNS_PER_BUCKET))

    def get_free_port(self) -> int:
        """``get_free_port``: the lowest free port, allocating a bucket if needed; ``-errno`` on failure."""
        if self.domain.is_dying:
            return -XenErrno.EINVAL
        port = 0
        for chn in self.ports:
            if port > self.max_evtchn_port:
                return -XenErrno.ENOSPC
            if chn.state == ECS_FREE:
                return port
            port += 1
        if port == self.max_evtchns or port > self.max_evtchn_port:
            return -XenErrno.ENOSPC
        self._alloc_bucket()
        return port

    def in_use(self) -> list[Evtchn]:
        """Every port not FREE (including the reserved port 0)."""
        return [chn for chn in self.ports if chn.state != ECS_FREE]

    # ------------------------------------------------------------------ 2-level bitmaps

    def is_pending(self, port: int) -> bool:
        """Pending bit of ``port`` in shared_info."""
        w = self.domain.bits_per_evtchn_word
        return bool(self.domain.evtchn_pending_words[port // w] >> (port % w) & 1)

    def is_masked(self, port: int) -> bool:
        """Mask bit of ``port`` in shared_info."""
        w = self.domain.bits_per_evtchn_word
        return bool(self.domain.evtchn_mask_words[port // w] >> (port % w) & 1)

    def set_pending(self, v: Vcpu, chn: Evtchn) -> None:
        """``evtchn_2l_set_pending(v, chn)`` (spec 3.3), in strict order."""
        d = self.domain
        port = chn.port
        idx, bit = divmod(port, d.bits_per_evtchn_word)
        mask = 1 << bit
        pending = d.evtchn_pending_words
        word = pending[idx]
        if word & mask:
            return
        pending[idx] = word | mask
        d.events_sent += 1
        if not d.evtchn_mask_words[idx] & mask:
            sel = v.vcpu_info_sel
            sel_word = sel[0]
            sel_bit = 1 << idx
            if not sel_word & sel_bit:
                sel[0] = sel_word | sel_bit
                vcpu_mark_events_pending(v)
        self.check_pollers(port)

    def clear_pending(self, chn: Evtchn) -> None:
        """``evtchn_2l_clear_pending``."""
        d = self.domain
        idx, bit = divmod(chn.port, d.bits_per_evtchn_word)
        d.evtchn_pending_words[idx] &= ~(1 << bit) & ((1 << d.bits_per_evtchn_word) - 1)

    def unmask_2l(self, chn: Evtchn) -> None:
        """``evtchn_2l_unmask``: re-raise only if the mask was set, the port pending and the selector clear."""
        d = self.domain
        v = d.vcpus[chn.notify_vcpu_id]
        idx, bit = divmod(chn.port, d.bits_per_evtchn_word)
        b = 1 << bit
        masks = d.evtchn_mask_words
        word = masks[idx]
        if not word & b:
            return
        masks[idx] = word & ~b
        if not d.evtchn_pending_words[idx] & b:
            return
        sel = v.vcpu_info_sel
        sel_word = sel[0]
        if sel_word & (1 << idx):
            return
        sel[0] = sel_word | (1 << idx)
        vcpu_mark_events_pending(v)

    def check_pollers(self, port: int) -> None:
        """``evtchn_check_pollers``: wake vCPUs polling this port (or any port)."""
        d = self.domain
        if not d.poll_mask:
            return
        for v in d.vcpus:
            bit = 1 << v.vcpu_id
            if not d.poll_mask & bit:
                continue
            if v.poll_evtchn <= 0 or v.poll_evtchn == port:
                d.poll_mask &= ~bit
                v.poll_evtchn = 0
                v.sched.vcpu_unblock(v)

    def port_set_pending(self, vcpu_id: int, chn: Evtchn) -> None:
        """``evtchn_port_set_pending(d, vcpu_id, chn)``."""
        self.set_pending(self.domain.vcpus[vcpu_id], chn)

    # ------------------------------------------------------------------ VIRQ delivery

    def send_guest_vcpu_virq(self, v: Vcpu, virq: int) -> bool:
        """``send_guest_vcpu_virq``: pend the port bound to ``virq`` on ``v``; dropped if unbound."""
        port = v.virq_to_evtchn[virq]
        if port == 0:
            return False
        self.set_pending(v, self.ports[port])
        return True

    def send_guest_global_virq(self, virq: int) -> bool:
        """``send_guest_global_virq`` / ``send_guest_domain_virq``: the port bound on vCPU 0, to its notify vCPU."""
        d = self.domain
        if not d.vcpus:
            return False
        port = d.vcpus[0].virq_to_evtchn[virq]
        if port == 0:
            return False
        chn = self.ports[port]
        self.port_set_pending(chn.notify_vcpu_id, chn)
        return True

    # ------------------------------------------------------------------ operations (current domain = self)

    def bind_virq(self, virq: int, vcpu_id: int, port: int = 0) -> int:
        """EVTCHNOP_bind_virq: returns the port or ``-errno`` (spec 3.5 order)."""
        d = self.domain
        virq = _as_int(virq)
        vcpu = _as_int(vcpu_id)
        if virq < 0 or virq >= NR_VIRQS:
            return -XenErrno.EINVAL
        kind = virq_kind(virq)
        if kind is not VirqKind.PER_VCPU and vcpu != 0:
            return -XenErrno.EINVAL
        v = d.vcpu(vcpu & 0xFFFF_FFFF)
        if v is None:
            return -XenErrno.ENOENT
        if kind is VirqKind.GLOBAL and d.system.global_virq_handler(virq) is not d:
            return -XenErrno.EBUSY
        if v.virq_to_evtchn[virq]:
            return -XenErrno.EEXIST
        if port == 0:
            port = self.get_free_port()
            if port < 0:
                return port
        chn = self.ports[port]
        chn.state = ECS_VIRQ
        chn.notify_vcpu_id = v.vcpu_id
        chn.virq = virq
        v.virq_to_evtchn[virq] = port
        return port

    def bind_ipi(self, vcpu_id: int) -> int:
        """EVTCHNOP_bind_ipi: returns the port or ``-errno``."""
        d = self.domain
        if d.vcpu(vcpu_id) is None:
            return -XenErrno.ENOENT
        port = self.get_free_port()
        if port < 0:
            return port
        chn = self.ports[port]
        chn.state = ECS_IPI
        chn.notify_vcpu_id = vcpu_id
        return port

    def alloc_unbound(self, caller: Domain, remote_domid: int) -> int:
        """EVTCHNOP_alloc_unbound in this domain, requested by ``caller``: the port or ``-errno``.

        ``remote_domid == DOMID_SELF`` is stored as the caller's id. Only the domain itself or a privileged
        domain may allocate (XSM_TARGET, -EPERM).
        """
        port = self.get_free_port()
        if port < 0:
            return port
        if caller is not self.domain and not caller.is_hardware_domain:
            return -XenErrno.EPERM
        chn = self.ports[port]
        chn.state = ECS_UNBOUND
        chn.remote_domid = caller.domid if remote_domid == DOMID_SELF else remote_domid
        return port

    def bind_interdomain(self, rd: Domain, remote_port: int) -> int:
        """EVTCHNOP_bind_interdomain from this domain to ``rd``'s ``remote_port``: the local port or ``-errno``.

        On success the local port is set pending at once (conservative notification).
        """
        ld = self.domain
        lport = self.get_free_port()
        if lport < 0:
            return lport
        rtab = rd.evtchn
        if not rtab.port_is_valid(remote_port):
            return -XenErrno.EINVAL
        rchn = rtab.ports[remote_port]
        if rchn.state != ECS_UNBOUND or rchn.remote_domid != ld.domid:
            return -XenErrno.EINVAL
        lchn = self.ports[lport]
        lchn.remote_dom = rd
        lchn.remote_port = remote_port
        lchn.state = ECS_INTERDOMAIN
        rchn.remote_dom = ld
        rchn.remote_port = lport
        rchn.state = ECS_INTERDOMAIN
        rchn.backend = None  # a real peer replaces the host-side backend
        self.port_set_pending(lchn.notify_vcpu_id, lchn)
        return lport

    def attach_backend(self, port: int, notify: Callable[[], None]) -> None:
        """Serve UNBOUND ``port`` from the host: ``notify()`` runs each time the guest sends on it.

        Raises:
            ValueError: ``port`` is not an UNBOUND port of this domain.
        """
        if not self.port_is_valid(port) or self.ports[port].state != ECS_UNBOUND:
            raise ValueError(f"port {port} of domain {self.domain.domid} is not unbound")
        self.ports[port].backend = notify

    def evtchn_send(self, port: int) -> int:
        """EVTCHNOP_send: 0 or ``-errno``."""
        if not self.port_is_valid(port):
            return -XenErrno.EINVAL
        chn = self.ports[port]
        if chn.xen_consumer:
            return -XenErrno.EINVAL
        state = chn.state
        if state == ECS_INTERDOMAIN:
            rd = chn.remote_dom
            assert rd is not None
            rchn = rd.evtchn.ports[chn.remote_port]
            rd.evtchn.port_set_pending(rchn.notify_vcpu_id, rchn)
        elif state == ECS_IPI:
            self.port_set_pending(chn.notify_vcpu_id, chn)
        elif state == ECS_UNBOUND:
            if chn.backend is not None:
                chn.backend()
        else:
            return -XenErrno.EINVAL
        return 0

    def _free(self, chn: Evtchn) -> None:
        """``evtchn_free``: clear pending, reset to FREE with notify vCPU 0."""
        self.clear_pending(chn)
        chn.state = ECS_FREE
        chn.notify_vcpu_id = 0
        chn.xen_consumer = False
        chn.backend = None
        chn.remote_dom = None

    def evtchn_close(self, port: int, guest: bool = True) -> int:
        """EVTCHNOP_close (``evtchn_close``): 0 or ``-errno``. The interdomain peer becomes UNBOUND."""
        if not self.port_is_valid(port):
            return -XenErrno.EINVAL
        chn = self.ports[port]
        if chn.xen_consumer and guest:
            return -XenErrno.EINVAL
        state = chn.state
        if state in (ECS_FREE, ECS_RESERVED):
            return -XenErrno.EINVAL
        if state == ECS_VIRQ:
            for v in self.domain.vcpus:
                if v.virq_to_evtchn[chn.virq] == port:
                    v.virq_to_evtchn[chn.virq] = 0
        elif state == ECS_INTERDOMAIN:
            rd = chn.remote_dom
            assert rd is not None
            rchn = rd.evtchn.ports[chn.remote_port]
            self._free(chn)
            rchn.state = ECS_UNBOUND
            rchn.remote_domid = self.domain.domid
            rchn.remote_dom = None
            return 0
        self._free(chn)
        return 0

    def status(self, port: int) -> tuple[int, int, int, int] | int:
        """EVTCHNOP_status core: ``(status, vcpu, u_lo, u_hi)`` or ``-errno``.

        ``u_lo``/``u_hi`` are the union's first two 32-bit words: unbound ``dom``; interdomain ``dom`` and
        ``port``; the pirq; the virq.
        """
        if not self.port_is_valid(port):
            return -XenErrno.EINVAL
        chn = self.ports[port]
        state = chn.state
        u_lo = u_hi = 0
        if state in (ECS_FREE, ECS_RESERVED):
            status = EVTCHNSTAT_closed
        elif state == ECS_UNBOUND:
            status = EVTCHNSTAT_unbound
            u_lo = chn.remote_domid
        elif state == ECS_INTERDOMAIN:
            status = EVTCHNSTAT_interdomain
            assert chn.remote_dom is not None
            u_lo = chn.remote_dom.domid
            u_hi = chn.remote_port
        elif state == ECS_PIRQ:
            status = EVTCHNSTAT_pirq
            u_lo = chn.pirq
        elif state == ECS_VIRQ:
            status = EVTCHNSTAT_virq
            u_lo = chn.virq
        else:
            status = EVTCHNSTAT_ipi
        return (int(status), chn.notify_vcpu_id, u_lo, u_hi)

    def bind_vcpu(self, port: int, vcpu_id: int) -> int:
        """EVTCHNOP_bind_vcpu: 0 or ``-errno``."""
        v = self.domain.vcpu(vcpu_id)
        if v is None:
            return -XenErrno.ENOENT
        if not self.port_is_valid(port):
            return -XenErrno.EINVAL
        chn = self.ports[port]
        if chn.xen_consumer:
            return -XenErrno.EINVAL
        state = chn.state
        if state == ECS_VIRQ:
            if virq_is_per_vcpu(chn.virq):
                return -XenErrno.EINVAL
            chn.notify_vcpu_id = v.vcpu_id
        elif state in (ECS_UNBOUND, ECS_INTERDOMAIN, ECS_PIRQ):
            chn.notify_vcpu_id = v.vcpu_id
        else:
            return -XenErrno.EINVAL
        return 0

    def unmask(self, port: int) -> int:
        """EVTCHNOP_unmask: 0 or ``-errno``; a FREE port inside a valid bucket returns 0 and changes nothing."""
        if not self.port_is_valid(port):
            return -XenErrno.EINVAL
        chn = self.ports[port]
        if chn.usable:
            self.unmask_2l(chn)
        return 0

    def bind_pirq(self, pirq: int) -> int:
        """EVTCHNOP_bind_pirq: no physical IRQ is ever granted here: -EINVAL if out of range, else -EPERM."""
        if pirq >= self.nr_pirqs:
            return -XenErrno.EINVAL
        return -XenErrno.EPERM

    def reset(self, caller: Domain, *, resuming: bool = False) -> int:
        """``evtchn_reset(d, resuming)``: close every port (ports stay allocated). -EINVAL for a foreign, running
        domain. A reset here always completes in one call (never -ERESTART), so no reset is ever in progress
        (``d->next_evtchn == 0``): the continuation (``resuming``) is -EBUSY and closes nothing."""
        d = self.domain
        if d is not caller and not d.controller_pause_count:
            return -XenErrno.EINVAL
        if resuming:
            return -XenErrno.EBUSY
        for port in range(1, len(self.ports)):
            self.evtchn_close(port, guest=True)
        return 0

    def destroy(self) -> None:
        """``evtchn_destroy`` (domain destruction): close every port, Xen-attached ones included."""
        for port in range(1, len(self.ports)):
            self.evtchn_close(port, guest=False)


def vcpu_mark_events_pending(v: Vcpu) -> None:
    """``vcpu_mark_events_pending``: set bit 0 of ``evtchn_upcall_pending``; kick ``v`` on a 0->1 change."""
    mv = v.vcpu_info_mv
    pending = mv[0]
    if pending & 1:
        return
    mv[0] = pending | 1
    v.sched.vcpu_kick(v)


def _as_int(value: int) -> int:
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value & 0x8000_0000 else value
