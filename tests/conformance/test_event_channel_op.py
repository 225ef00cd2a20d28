"""HYPERVISOR_event_channel_op with the 2-level ABI (spec 3.3, 3.5, 8.5)."""

from __future__ import annotations

import pytest

from xenpy.abi.errno import XenErrno
from xenpy.abi.event_channel import (
    EVTCHNSTAT_closed,
    EVTCHNSTAT_interdomain,
    EVTCHNSTAT_ipi,
    EVTCHNSTAT_unbound,
    EVTCHNSTAT_virq,
)
from xenpy.abi.generated.hypercalls import EvtchnOp, Hypercall
from xenpy.abi.xen import DOMID_SELF, VIRQ_ARGO, VIRQ_CONSOLE, VIRQ_DEBUG, VIRQ_TIMER
from xenpy.core.event_channel import ECS_IPI
from xenpy.core.runstate import RUNSTATE_blocked, RUNSTATE_running

from .conftest import ALL_PROFILES, UNMAPPED_GVA, Guest

EINVAL = -XenErrno.EINVAL
EFAULT = -XenErrno.EFAULT
ENOENT = -XenErrno.ENOENT


def op(g: Guest, cmd: int, struct: str, *, by: int = 0, **fields: int) -> tuple[int, object]:
    arg = g.put(struct, **fields)
    rc = g.evtchn_op(cmd, arg, vcpu=by)
    return rc, g.get(struct, arg)


def bind_ipi(g: Guest, vcpu: int = 0) -> int:
    arg = g.put("evtchn_bind_ipi", vcpu=vcpu, port=0)
    assert g.evtchn_op(EvtchnOp.EVTCHNOP_bind_ipi, arg) == 0
    return g.get("evtchn_bind_ipi", arg).port


def alloc_unbound(g: Guest, dom: int = DOMID_SELF, remote_dom: int = DOMID_SELF) -> tuple[int, int]:
    arg = g.put("evtchn_alloc_unbound", dom=dom, remote_dom=remote_dom, port=0)
    rc = g.evtchn_op(EvtchnOp.EVTCHNOP_alloc_unbound, arg)
    return rc, g.get("evtchn_alloc_unbound", arg).port


def send(g: Guest, port: int, *, vcpu: int = 0) -> int:
    return g.evtchn_op(EvtchnOp.EVTCHNOP_send, g.put("evtchn_send", port=port), vcpu=vcpu)


def close(g: Guest, port: int) -> int:
    return g.evtchn_op(EvtchnOp.EVTCHNOP_close, g.put("evtchn_close", port=port))


def unmask(g: Guest, port: int) -> int:
    return g.evtchn_op(EvtchnOp.EVTCHNOP_unmask, g.put("evtchn_unmask", port=port))


def status(g: Guest, port: int, dom: int = DOMID_SELF) -> tuple[int, object]:
    return op(g, EvtchnOp.EVTCHNOP_status, "evtchn_status", dom=dom, port=port, status=0, vcpu=0, u={"virq": 0})


def set_mask(g: Guest, port: int, masked: bool = True) -> None:
    w = g.dom.bits_per_evtchn_word
    if masked:
        g.dom.evtchn_mask_words[port // w] |= 1 << (port % w)
    else:
        g.dom.evtchn_mask_words[port // w] &= ~(1 << (port % w))


def ack(g: Guest, vcpu: int = 0) -> None:
    """Guest-side: clear upcall_pending and the selector."""
    g.v[vcpu].vcpu_info_mv[0] = 0
    g.v[vcpu].vcpu_info_sel[0] = 0


# ------------------------------------------------------------------------------------------ port table


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_port_zero_reserved_first_port_is_one(make_guest, profile):
    """spec 3.5: port 0 is reserved; new ports are the lowest free port, so the first is 1."""
    g = make_guest(profile)
    assert bind_ipi(g) == 1
    assert bind_ipi(g) == 2
    assert bind_ipi(g) == 3
    assert close(g, 2) == 0
    assert bind_ipi(g) == 2
    rc, st = status(g, 0)
    assert rc == 0 and st.status == EVTCHNSTAT_closed
    assert close(g, 0) == EINVAL


def test_max_evtchn_port(make_guest):
    """spec 3.5: no port above the domain's max_evtchn_port: -ENOSPC."""
    g = make_guest(max_evtchn_port=70)
    ports = [bind_ipi(g) for _ in range(70)]
    assert ports == list(range(1, 71))
    assert alloc_unbound(g)[0] == -XenErrno.ENOSPC


def test_4096_ports_on_pv64(guest: Guest):
    """spec 3.5: at most 4096 ports (W = 64)."""
    for _ in range(4094):
        assert guest.dom.evtchn.alloc_unbound(guest.dom, DOMID_SELF) > 0
    rc, port = alloc_unbound(guest)
    assert (rc, port) == (0, 4095)
    assert alloc_unbound(guest)[0] == -XenErrno.ENOSPC


def test_port_is_valid_counts_buckets(guest: Guest):
    """spec 3.5: port_is_valid is port < valid_evtchns (allocated buckets): unmask of a FREE port in a valid bucket
    returns 0, beyond it -EINVAL."""
    assert unmask(guest, 63) == 0
    assert unmask(guest, 64) == EINVAL
    for _ in range(64):
        bind_ipi(guest)
    assert unmask(guest, 64 + 63) == 0
    assert unmask(guest, 128) == EINVAL


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_unknown_cmd_enosys(make_guest, profile):
    """spec 3.5: other commands -> -ENOSYS."""
    g = make_guest(profile)
    assert g.evtchn_op(15, 0) == -XenErrno.ENOSYS
    assert g.evtchn_op(-1, 0) == -XenErrno.ENOSYS


@pytest.mark.parametrize("cmd", list(EvtchnOp))
def test_every_op_copies_argument_first(guest: Guest, cmd):
    """spec 3.5: each struct argument is copied in first; a failed copy -> -EFAULT."""
    assert guest.evtchn_op(cmd, UNMAPPED_GVA) == EFAULT


def test_expand_array_without_fifo(guest: Guest):
    """spec 3.5: a 2-level domain has no FIFO control block: EVTCHNOP_expand_array -> -EOPNOTSUPP."""
    arg = guest.put("evtchn_expand_array", array_gfn=0)
    assert guest.evtchn_op(EvtchnOp.EVTCHNOP_expand_array, arg) == -XenErrno.EOPNOTSUPP


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_set_priority_on_2l(make_guest, profile):
    """spec 3.5 (evtchn_port_set_priority): -EINVAL for a bad port, -ENOSYS for a valid one (no 2-level
    set_priority); never -EOPNOTSUPP."""
    g = make_guest(profile)
    port = bind_ipi(g)
    for p, rc in ((port, -XenErrno.ENOSYS), (0, -XenErrno.ENOSYS), (4096, EINVAL), (64, EINVAL)):
        arg = g.put("evtchn_set_priority", port=p, priority=7)
        assert g.evtchn_op(EvtchnOp.EVTCHNOP_set_priority, arg) == rc


@pytest.mark.parametrize(
    ("vcpu", "offset", "rc"),
    [
        (1000, 0, ENOENT),
        (0, 4096 - 72 + 1, EINVAL),
        (0, 4095, EINVAL),
        (0, 4, EINVAL),
        (0, 4096 - 72, -XenErrno.EOPNOTSUPP),
        (0, 0, -XenErrno.EOPNOTSUPP),
    ],
)
def test_init_control_checks_then_declines(guest: Guest, vcpu, offset, rc):
    """spec 3.5: evtchn_fifo_init_control's checks (-ENOENT bad vcpu; -EINVAL control block past the page or
    misaligned), then -EOPNOTSUPP (2-level only); link_bits is not written back."""
    gfn = guest.mfn_of(guest.page())
    arg = guest.put("evtchn_init_control", control_gfn=gfn, offset=offset, vcpu=vcpu, link_bits=0, _pad=bytes(7))
    assert guest.evtchn_op(EvtchnOp.EVTCHNOP_init_control, arg) == rc
    assert guest.get("evtchn_init_control", arg).link_bits == 0


@pytest.mark.parametrize("which", ["no-such-frame", "frame-0", "page-table"])
def test_init_control_bad_control_frame(guest: Guest, which):
    """spec 3.5: map_guest_page of control_gfn fails (not a frame of the domain, or not typeable writable):
    -EINVAL (XTF's XSA-188 test; Xen 4.17.7 and 4.20: conformance test evtchn, init-control-bad-gfn)."""
    gfn = {"no-such-frame": 2**64 - 2, "frame-0": 0, "page-table": guest.dom.pagetables.l4_mfn}[which]
    arg = guest.put("evtchn_init_control", control_gfn=gfn, offset=0, vcpu=0, link_bits=0, _pad=bytes(7))
    assert guest.evtchn_op(EvtchnOp.EVTCHNOP_init_control, arg) == EINVAL


# ------------------------------------------------------------------------------------------ bind_virq


@pytest.mark.parametrize(
    ("virq", "vcpu", "rc"),
    [
        (24, 0, EINVAL),
        (2**32 - 1, 0, EINVAL),
        (VIRQ_CONSOLE, 1, EINVAL),
        (VIRQ_ARGO, 1, EINVAL),
        (VIRQ_TIMER, 4, ENOENT),
        (VIRQ_TIMER, 2**32 - 1, ENOENT),
        (VIRQ_CONSOLE, 0, -XenErrno.EBUSY),
        (16, 0, -XenErrno.EBUSY),
    ],
)
def test_bind_virq_errors(guest: Guest, virq, vcpu, rc):
    """spec 3.5 bind_virq: -EINVAL (range), -EINVAL (non-per-vCPU with vcpu != 0), -ENOENT, -EBUSY (global not
    ours)."""
    got, _ = op(guest, EvtchnOp.EVTCHNOP_bind_virq, "evtchn_bind_virq", virq=virq, vcpu=vcpu, port=0)
    assert got == rc
    assert guest.dom.evtchn.in_use() == [guest.dom.evtchn.ports[0]]


def test_bind_virq_success_and_eexist(guest: Guest):
    """spec 3.5 bind_virq: ECS_VIRQ with notify = vcpu, port written back; a second bind -> -EEXIST."""
    rc, out = op(guest, EvtchnOp.EVTCHNOP_bind_virq, "evtchn_bind_virq", virq=VIRQ_DEBUG, vcpu=2, port=0)
    assert rc == 0 and out.port == 1
    assert guest.v[2].virq_to_evtchn[VIRQ_DEBUG] == 1
    rc2, st = status(guest, 1)
    assert (rc2, st.status, st.vcpu, st.u.virq) == (0, EVTCHNSTAT_virq, 2, VIRQ_DEBUG)
    rc, _ = op(guest, EvtchnOp.EVTCHNOP_bind_virq, "evtchn_bind_virq", virq=VIRQ_DEBUG, vcpu=2, port=0)
    assert rc == -XenErrno.EEXIST
    rc, out = op(guest, EvtchnOp.EVTCHNOP_bind_virq, "evtchn_bind_virq", virq=VIRQ_DEBUG, vcpu=3, port=0)
    assert (rc, out.port) == (0, 2)


def test_bind_virq_does_not_touch_bits(guest: Guest):
    """spec 3.5 bind_virq: the pending and mask bits of the new port are left as they were."""
    guest.dom.evtchn_pending_words[0] = 0b10
    set_mask(guest, 1)
    assert guest.bind_virq(VIRQ_TIMER) == 1
    assert guest.dom.evtchn.is_pending(1) and guest.dom.evtchn.is_masked(1)


def test_global_virq_owned_by_hardware_domain(make_guest):
    """spec 3.5: the hardware domain owns global VIRQs and may bind them (vcpu 0)."""
    dom0 = make_guest(hardware_domain=True)
    rc, out = op(dom0, EvtchnOp.EVTCHNOP_bind_virq, "evtchn_bind_virq", virq=VIRQ_CONSOLE, vcpu=0, port=0)
    assert (rc, out.port) == (0, 1)


def test_bind_virq_writeback_fault_keeps_binding(guest: Guest):
    """spec 3.5: the OUT copy fails after the effect: -EFAULT, but the VIRQ is bound."""
    arg = guest.put("evtchn_bind_virq", virq=VIRQ_TIMER, vcpu=0, port=0)
    guest.dom.pagetables.set_writable(arg & ~0xFFF, False)
    assert guest.evtchn_op(EvtchnOp.EVTCHNOP_bind_virq, arg) == EFAULT
    assert guest.v[0].virq_to_evtchn[VIRQ_TIMER] == 1


# ------------------------------------------------------------------------------------------ 3.3 edge rules


def test_set_pending_raises_upcall_once(guest: Guest):
    """spec 3.3, 8.5: pending bit, then selector bit 0->1 for an unmasked port, then upcall_pending and a kick."""
    port = bind_ipi(guest, 0)
    ack(guest)
    assert send(guest, port) == 0
    assert guest.dom.evtchn.is_pending(port)
    assert guest.v[0].vcpu_info_sel[0] == 1
    assert guest.v[0].evtchn_upcall_pending == 1


def test_already_pending_does_nothing(guest: Guest):
    """spec 3.3 step 1, 8.5: an event whose pending bit is set does nothing: no selector, no upcall, no poll wake."""
    port = bind_ipi(guest, 0)
    assert send(guest, port) == 0
    ack(guest)
    assert send(guest, port) == 0
    assert guest.v[0].vcpu_info_sel[0] == 0
    assert guest.v[0].evtchn_upcall_pending == 0


def test_masked_port_no_upcall(guest: Guest):
    """spec 3.3 step 2: a masked port gets its pending bit but no selector bit and no upcall."""
    port = bind_ipi(guest, 0)
    set_mask(guest, port)
    ack(guest)
    assert send(guest, port) == 0
    assert guest.dom.evtchn.is_pending(port)
    assert guest.v[0].vcpu_info_sel[0] == 0
    assert guest.v[0].evtchn_upcall_pending == 0


def test_selector_already_set_no_reraise(guest: Guest):
    """spec 3.3 step 2, 8.5: if the selector bit is already set, upcall_pending is not raised again."""
    a = bind_ipi(guest, 0)
    b = bind_ipi(guest, 0)
    assert send(guest, a) == 0
    guest.v[0].vcpu_info_mv[0] = 0
    assert send(guest, b) == 0
    assert guest.dom.evtchn.is_pending(b)
    assert guest.v[0].evtchn_upcall_pending == 0


def test_selector_bit_is_port_word(guest: Guest):
    """spec 3.5: port p maps to evtchn_pending[p / 64] bit p % 64 and selector bit p / 64."""
    ports = [bind_ipi(guest, 0) for _ in range(130)]
    ack(guest)
    assert send(guest, ports[129]) == 0  # port 130
    assert guest.dom.evtchn_pending_words[2] == 1 << 2
    assert guest.v[0].vcpu_info_sel[0] == 1 << 2


def test_pending_visible_in_shared_info(guest: Guest):
    """spec 3.3, 5.4: the bitmaps live in shared_info (guest-visible)."""
    port = bind_ipi(guest, 0)
    assert send(guest, port) == 0
    info = guest.dom.shared_info()
    assert info.evtchn_pending[0] == 1 << port
    assert info.vcpu_info[0].evtchn_pending_sel == 1
    assert info.vcpu_info[0].evtchn_upcall_pending == 1


def test_masked_port_still_wakes_poller(guest: Guest):
    """spec 3.3 step 3, 8.5: pollers are checked even for masked ports."""
    from xenpy.abi.generated.hypercalls import SchedOp

    guest.bring_up(1)
    port = bind_ipi(guest, 1)
    set_mask(guest, port)
    ports_gva = guest.dom.alloc_guest(4, 4)
    guest.dom.write_guest(ports_gva, port.to_bytes(4, "little"))
    arg = guest.put("sched_poll", ports=ports_gva, nr_ports=1, timeout=0)
    assert guest.sched_op(SchedOp.SCHEDOP_poll, arg, vcpu=1) == 0
    assert guest.v[1].runstate.state == RUNSTATE_blocked
    assert send(guest, port) == 0
    assert guest.v[1].runstate.state == RUNSTATE_running


# ------------------------------------------------------------------------------------------ unmask


def test_unmask_reraises_when_masked_pending_selector_clear(guest: Guest):
    """spec 3.5 unmask: mask was set, port pending, selector clear -> upcall on the notify vCPU."""
    port = bind_ipi(guest, 0)
    set_mask(guest, port)
    assert send(guest, port) == 0
    ack(guest)
    assert unmask(guest, port) == 0
    assert not guest.dom.evtchn.is_masked(port)
    assert guest.v[0].vcpu_info_sel[0] == 1
    assert guest.v[0].evtchn_upcall_pending == 1


def test_unmask_of_unmasked_pending_port_does_nothing(guest: Guest):
    """spec 3.5 unmask, 8.5: if the mask bit was not set, nothing is re-raised."""
    port = bind_ipi(guest, 0)
    assert send(guest, port) == 0
    ack(guest)
    assert unmask(guest, port) == 0
    assert guest.v[0].evtchn_upcall_pending == 0


def test_unmask_with_selector_set_does_not_reraise(guest: Guest):
    """spec 3.5 unmask: selector already set -> no upcall."""
    port = bind_ipi(guest, 0)
    set_mask(guest, port)
    assert send(guest, port) == 0
    guest.v[0].vcpu_info_sel[0] = 1
    guest.v[0].vcpu_info_mv[0] = 0
    assert unmask(guest, port) == 0
    assert guest.v[0].evtchn_upcall_pending == 0


def test_unmask_free_port_leaves_mask(guest: Guest):
    """spec 3.5 unmask: a FREE port (not usable) returns 0 and its mask bit is untouched."""
    set_mask(guest, 10)
    assert unmask(guest, 10) == 0
    assert guest.dom.evtchn.is_masked(10)


def test_unmask_uses_notify_vcpu(guest: Guest):
    """spec 3.5 unmask: the upcall goes to the port's notify vCPU."""
    guest.bring_up(1)
    port = bind_ipi(guest, 1)
    set_mask(guest, port)
    assert send(guest, port) == 0
    ack(guest, 1)
    assert unmask(guest, port) == 0
    assert guest.v[1].evtchn_upcall_pending == 1
    assert guest.v[0].vcpu_info_sel[0] == 0


# ------------------------------------------------------------------------------------------ send


def test_send_states(guest: Guest):
    """spec 3.5 send: invalid -> -EINVAL; IPI pends on the notify vCPU; UNBOUND dropped (0); VIRQ/FREE/RESERVED
    -> -EINVAL."""
    assert send(guest, 5000) == EINVAL
    assert send(guest, 0) == EINVAL
    assert send(guest, 7) == EINVAL
    virq = guest.bind_virq(VIRQ_TIMER)
    assert send(guest, virq) == EINVAL
    _rc, unbound = alloc_unbound(guest)
    assert send(guest, unbound) == 0
    assert not guest.dom.evtchn.is_pending(unbound)
    ipi = bind_ipi(guest, 2)
    assert send(guest, ipi) == 0
    assert guest.v[2].vcpu_info_sel[0] == 1
    assert guest.v[0].vcpu_info_sel[0] == 0


def test_xen_consumer_port_send_and_close_rejected(guest: Guest):
    """spec 3.5 send/close: a Xen-attached port -> -EINVAL."""
    port = bind_ipi(guest, 0)
    guest.dom.evtchn.ports[port].xen_consumer = True
    assert send(guest, port) == EINVAL
    assert close(guest, port) == EINVAL


# ------------------------------------------------------------------------------------------ close


def test_close_errors_and_effects(guest: Guest):
    """spec 3.5 close: bad/FREE/RESERVED -> -EINVAL; clears pending and resets notify to 0."""
    assert close(guest, 9999) == EINVAL
    assert close(guest, 5) == EINVAL
    port = bind_ipi(guest, 3)
    assert send(guest, port) == 0
    assert close(guest, port) == 0
    assert not guest.dom.evtchn.is_pending(port)
    chn = guest.dom.evtchn.ports[port]
    assert (chn.state, chn.notify_vcpu_id) == (0, 0)
    assert close(guest, port) == EINVAL


def test_close_virq_removes_binding(guest: Guest):
    """spec 3.5 close: a VIRQ binding is removed; the VIRQ can be bound again."""
    port = guest.bind_virq(VIRQ_TIMER)
    assert close(guest, port) == 0
    assert guest.v[0].virq_to_evtchn[VIRQ_TIMER] == 0
    assert guest.bind_virq(VIRQ_TIMER) == port


# ------------------------------------------------------------------------------------------ interdomain


def test_interdomain_lifecycle(make_guest):
    """spec 3.5 alloc_unbound / bind_interdomain / send / close between two domains."""
    a = make_guest()
    b = make_guest()
    rc, ua = alloc_unbound(a, remote_dom=b.dom.domid)
    assert (rc, ua) == (0, 1)
    rc, st = status(a, ua)
    assert (st.status, st.u.unbound.dom) == (EVTCHNSTAT_unbound, b.dom.domid)
    rc, out = op(
        b,
        EvtchnOp.EVTCHNOP_bind_interdomain,
        "evtchn_bind_interdomain",
        remote_dom=a.dom.domid,
        remote_port=ua,
        local_port=0,
    )
    assert rc == 0
    lb = out.local_port
    assert b.dom.evtchn.is_pending(lb)  # conservative notification
    rc, st = status(b, lb)
    assert (st.status, st.u.interdomain.dom, st.u.interdomain.port) == (EVTCHNSTAT_interdomain, a.dom.domid, ua)
    ack(a)
    assert send(b, lb) == 0
    assert a.dom.evtchn.is_pending(ua)
    assert a.v[0].evtchn_upcall_pending == 1
    assert close(a, ua) == 0
    rc, st = status(b, lb)
    assert (st.status, st.u.unbound.dom) == (EVTCHNSTAT_unbound, a.dom.domid)


def test_bind_interdomain_errors(make_guest):
    """spec 3.5 bind_interdomain: unknown domain -> -ESRCH; remote port not UNBOUND for us -> -EINVAL."""
    a = make_guest()
    b = make_guest()
    c = make_guest()
    rc, _ = op(
        b, EvtchnOp.EVTCHNOP_bind_interdomain, "evtchn_bind_interdomain", remote_dom=999, remote_port=1, local_port=0
    )
    assert rc == -XenErrno.ESRCH
    _, for_c = alloc_unbound(a, remote_dom=c.dom.domid)
    for port in (for_c, 0, 50, 5000):
        rc, _ = op(
            b,
            EvtchnOp.EVTCHNOP_bind_interdomain,
            "evtchn_bind_interdomain",
            remote_dom=a.dom.domid,
            remote_port=port,
            local_port=0,
        )
        assert rc == EINVAL
    assert b.dom.evtchn.in_use() == [b.dom.evtchn.ports[0]]


def test_loopback_interdomain(guest: Guest):
    """spec 3.5: alloc_unbound with remote DOMID_SELF is for the caller; binding to it loops back."""
    rc, u = alloc_unbound(guest)
    assert guest.dom.evtchn.ports[u].remote_domid == guest.dom.domid
    rc, out = op(
        guest,
        EvtchnOp.EVTCHNOP_bind_interdomain,
        "evtchn_bind_interdomain",
        remote_dom=DOMID_SELF,
        remote_port=u,
        local_port=0,
    )
    assert rc == 0 and out.local_port == u + 1


def test_alloc_unbound_in_other_domain(make_guest):
    """spec 3.5 alloc_unbound: unknown dom -> -ESRCH; another domain without privilege -> -EPERM."""
    a = make_guest()
    b = make_guest()
    assert alloc_unbound(a, dom=999)[0] == -XenErrno.ESRCH
    assert alloc_unbound(a, dom=b.dom.domid)[0] == -XenErrno.EPERM
    dom0 = make_guest(hardware_domain=True, domid=100)
    rc, port = alloc_unbound(dom0, dom=b.dom.domid, remote_dom=a.dom.domid)
    assert (rc, port) == (0, 1)
    assert b.dom.evtchn.ports[1].remote_domid == a.dom.domid


# ------------------------------------------------------------------------------------------ status / bind_vcpu


def test_status_errors(make_guest):
    """spec 3.5 status: -ESRCH (no domain), -EINVAL (bad port), -EPERM (not ours); IPI reports its vCPU."""
    a = make_guest()
    b = make_guest()
    assert status(a, 1, dom=999)[0] == -XenErrno.ESRCH
    assert status(a, 64)[0] == EINVAL
    assert status(a, 1, dom=b.dom.domid)[0] == -XenErrno.EPERM
    port = bind_ipi(a, 3)
    rc, st = status(a, port)
    assert (rc, st.status, st.vcpu) == (0, EVTCHNSTAT_ipi, 3)


def test_bind_vcpu(guest: Guest):
    """spec 3.5 bind_vcpu: -ENOENT; per-vCPU VIRQ, IPI, FREE -> -EINVAL; interdomain/unbound/global VIRQ ok."""
    virq = guest.bind_virq(VIRQ_TIMER)
    ipi = bind_ipi(guest, 0)
    _, unbound = alloc_unbound(guest)

    def bind_vcpu(port: int, vcpu: int) -> int:
        return guest.evtchn_op(EvtchnOp.EVTCHNOP_bind_vcpu, guest.put("evtchn_bind_vcpu", port=port, vcpu=vcpu))

    assert bind_vcpu(unbound, 4) == ENOENT
    assert bind_vcpu(virq, 1) == EINVAL
    assert bind_vcpu(ipi, 1) == EINVAL
    assert bind_vcpu(40, 1) == EINVAL
    assert bind_vcpu(4000, 1) == EINVAL
    assert bind_vcpu(unbound, 2) == 0
    assert guest.dom.evtchn.ports[unbound].notify_vcpu_id == 2


def test_bind_ipi_bad_vcpu(guest: Guest):
    """spec 3.5 bind_ipi: bad vcpu -> -ENOENT."""
    rc, _ = op(guest, EvtchnOp.EVTCHNOP_bind_ipi, "evtchn_bind_ipi", vcpu=4, port=0)
    assert rc == ENOENT


def test_bind_pirq_refused(guest: Guest):
    """spec 3.5: a domU has no PIRQ access: -EINVAL out of range, else -EPERM."""
    rc, _ = op(guest, EvtchnOp.EVTCHNOP_bind_pirq, "evtchn_bind_pirq", pirq=10_000, flags=0, port=0)
    assert rc == EINVAL
    rc, _ = op(guest, EvtchnOp.EVTCHNOP_bind_pirq, "evtchn_bind_pirq", pirq=3, flags=0, port=0)
    assert rc == -XenErrno.EPERM


def test_reset(make_guest):
    """spec 3.5 reset: -ESRCH / -EPERM; resetting itself closes every port."""
    a = make_guest()
    b = make_guest()
    bind_ipi(a)
    a.bind_virq(VIRQ_TIMER)
    assert a.evtchn_op(EvtchnOp.EVTCHNOP_reset, a.put("evtchn_reset", dom=999)) == -XenErrno.ESRCH
    assert a.evtchn_op(EvtchnOp.EVTCHNOP_reset, a.put("evtchn_reset", dom=b.dom.domid)) == -XenErrno.EPERM
    assert a.evtchn_op(EvtchnOp.EVTCHNOP_reset, a.put("evtchn_reset", dom=DOMID_SELF)) == 0
    assert a.dom.evtchn.in_use() == [a.dom.evtchn.ports[0]]
    assert a.v[0].virq_to_evtchn[VIRQ_TIMER] == 0


def test_reset_cont_without_reset_in_progress(make_guest):
    """spec 3.5 (evtchn_reset(d, true), d->next_evtchn == 0): EVTCHNOP_reset_cont -> -EBUSY, nothing closed; the
    domain checks (-ESRCH, -EPERM) come first."""
    a = make_guest()
    b = make_guest()
    port = bind_ipi(a)
    reset_cont = EvtchnOp.EVTCHNOP_reset_cont
    assert a.evtchn_op(reset_cont, a.put("evtchn_reset", dom=DOMID_SELF)) == -XenErrno.EBUSY
    assert a.dom.evtchn.ports[port].state == ECS_IPI
    assert a.evtchn_op(reset_cont, a.put("evtchn_reset", dom=999)) == -XenErrno.ESRCH
    assert a.evtchn_op(reset_cont, a.put("evtchn_reset", dom=b.dom.domid)) == -XenErrno.EPERM
    assert a.evtchn_op(EvtchnOp.EVTCHNOP_reset, a.put("evtchn_reset", dom=DOMID_SELF)) == 0
    assert a.evtchn_op(reset_cont, a.put("evtchn_reset", dom=DOMID_SELF)) == -XenErrno.EBUSY


def test_reset_cont_absent_from_4_10(make_guest):
    """spec 3.5, profiles.toml evtchn_reset_cont: Xen 4.10.0 has no EVTCHNOP_reset_cont: -ENOSYS, nothing closed."""
    a = make_guest(profile="4.10")
    port = bind_ipi(a)
    reset_cont = EvtchnOp.EVTCHNOP_reset_cont
    assert a.evtchn_op(reset_cont, a.put("evtchn_reset", dom=DOMID_SELF)) == -XenErrno.ENOSYS
    assert a.dom.evtchn.ports[port].state == ECS_IPI


def _status_patterned(g: Guest, port: int) -> tuple[int, bytes]:
    """EVTCHNOP_status of ``port`` with the 24-byte structure filled with 0xa5 around dom and port."""
    gva = g.dom.alloc_guest(24, 8)
    g.dom.write_guest(gva, DOMID_SELF.to_bytes(2, "little") + b"\xa5\xa5" + port.to_bytes(4, "little") + b"\xa5" * 16)
    rc = g.evtchn_op(EvtchnOp.EVTCHNOP_status, gva)
    return rc, bytes(g.dom.read_guest(gva, 24))


def test_status_leaves_unwritten_bytes(guest: Guest):
    """spec 3.5 (evtchn_status copies the guest structure in and back): only status, vcpu and the state's union
    member change; the padding after dom and the rest of the union keep the guest's bytes."""
    ipi = bind_ipi(guest, 1)
    virq = guest.bind_virq(VIRQ_TIMER)
    _, unbound = alloc_unbound(guest)
    pad = b"\xa5\xa5"
    rc, raw = _status_patterned(guest, ipi)
    assert rc == 0 and raw[2:4] == pad
    assert raw[8:16] == (EVTCHNSTAT_ipi).to_bytes(4, "little") + (1).to_bytes(4, "little")
    assert raw[16:] == b"\xa5" * 8
    rc, raw = _status_patterned(guest, virq)
    assert rc == 0 and raw[16:] == VIRQ_TIMER.to_bytes(4, "little") + b"\xa5" * 4
    rc, raw = _status_patterned(guest, unbound)
    assert rc == 0 and raw[16:18] == guest.dom.domid.to_bytes(2, "little") and raw[18:] == b"\xa5" * 6
    rc, raw = _status_patterned(guest, 0)
    assert rc == 0 and raw[8:12] == bytes(4) and raw[16:] == b"\xa5" * 8
    arg = guest.put("evtchn_bind_interdomain", remote_dom=DOMID_SELF, remote_port=unbound, local_port=0)
    assert guest.evtchn_op(EvtchnOp.EVTCHNOP_bind_interdomain, arg) == 0
    local = guest.get("evtchn_bind_interdomain", arg).local_port
    rc, raw = _status_patterned(guest, local)
    assert rc == 0 and raw[16:18] == guest.dom.domid.to_bytes(2, "little") and raw[18:20] == pad
    assert raw[20:24] == unbound.to_bytes(4, "little")


# ------------------------------------------------------------------------------------------ legacy hypercall 16


def test_event_channel_op_compat(guest: Guest):
    """spec 6.1 (hypercall 16): evtchn_op {cmd, union} is forwarded for commands 0-9; others -ENOSYS."""
    op_gva = guest.dom.alloc_guest(28, 8)
    guest.dom.write_guest(op_gva, (7).to_bytes(4, "little") + (0).to_bytes(4, "little") + bytes(20))
    assert guest.call(Hypercall.event_channel_op_compat, op_gva) == 0
    assert int.from_bytes(guest.dom.read_guest(op_gva + 8, 4), "little") == 1
    guest.dom.write_guest(op_gva, (10).to_bytes(4, "little"))
    assert guest.call(Hypercall.event_channel_op_compat, op_gva) == -XenErrno.ENOSYS
    assert guest.call(Hypercall.event_channel_op_compat, UNMAPPED_GVA) == EFAULT


def test_running_state_unaffected_by_events(guest: Guest):
    """spec 3.3: an event to a running vCPU does not change its runstate."""
    port = bind_ipi(guest, 0)
    assert send(guest, port) == 0
    assert guest.v[0].runstate.state == RUNSTATE_running
