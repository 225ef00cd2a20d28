"""The console ring backend: bytes the guest puts in ``xencons_interface.out`` reach the console stream."""

from __future__ import annotations

import pytest

from xenpy.abi.generated.hypercalls import EVTCHNOP_send, Hypercall
from xenpy.abi.io_console import XENCONS_IN_SIZE, XENCONS_OUT_SIZE
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.console import ConsoleRingBackend


@pytest.fixture
def setup():
    hv = Hypervisor(memory_mib=16)
    d = hv.create_domain(memory_mib=4)
    ring_gva = d.alloc_guest_page()
    port = d.evtchn.alloc_unbound(d, 0)
    backend = ConsoleRingBackend(hv, d, d.gva_to_mfn(ring_gva), port)
    d.unpause()
    return hv, d, ring_gva, port, backend


def produce(d, ring_gva: int, data: bytes) -> None:
    """Write ``data`` into the ring as a frontend does and advance out_prod."""
    layout = d.abi.xencons_interface
    prod_gva = ring_gva + layout.offset_of("out_prod")
    prod = int.from_bytes(d.read_guest(prod_gva, 4), "little")
    for i, byte in enumerate(data):
        d.write_guest(ring_gva + layout.offset_of("out") + (prod + i) % XENCONS_OUT_SIZE, bytes([byte]))
    d.write_guest(prod_gva, ((prod + len(data)) & 0xFFFF_FFFF).to_bytes(4, "little"))


def send(hv, d, port: int) -> int:
    arg = d.put_struct("evtchn_send", port=port)
    return hv.hypercall(d.vcpus[0], Hypercall.event_channel_op, EVTCHNOP_send, arg)


def test_send_on_the_console_port_drains_the_ring(setup) -> None:
    hv, d, ring_gva, port, _backend = setup
    produce(d, ring_gva, b"hello\nwor")
    assert send(hv, d, port) == 0
    assert d.console.data == b"hello\nwor"
    assert d.console.partial_line == b"wor"
    out_cons = d.read_guest(ring_gva + d.abi.xencons_interface.offset_of("out_cons"), 4)
    assert int.from_bytes(out_cons, "little") == 9
    assert d.evtchn.is_pending(port)  # the backend notifies the guest back


def test_other_ports_do_not_drain(setup) -> None:
    hv, d, ring_gva, _port, backend = setup
    other = d.evtchn.alloc_unbound(d, 0)
    produce(d, ring_gva, b"x")
    assert send(hv, d, other) == 0
    assert d.console.data == b""
    backend.close()
    assert d.console.data == b"x"  # nothing is lost when the backend stops


def test_ring_wraps_around_and_index_overflow(setup) -> None:
    _hv, d, ring_gva, _port, backend = setup
    layout = d.abi.xencons_interface
    start = 0xFFFF_FFFF - 5  # indices wrap at 2**32 as well as at the ring size
    for name in ("out_cons", "out_prod"):
        d.write_guest(ring_gva + layout.offset_of(name), start.to_bytes(4, "little"))
    payload = bytes(range(65, 65 + 26)) * 3
    produce(d, ring_gva, payload)
    assert backend.drain() == len(payload)
    assert d.console.data == payload


def test_corrupt_indices_stop_the_backend(setup) -> None:
    _hv, d, ring_gva, _port, backend = setup
    layout = d.abi.xencons_interface
    d.write_guest(ring_gva + layout.offset_of("out_prod"), (XENCONS_OUT_SIZE + 1).to_bytes(4, "little"))
    assert backend.drain() == 0
    assert backend.bad_indices


def test_backend_needs_an_unbound_port(setup) -> None:
    hv, d, ring_gva, _port, _backend = setup
    ipi = d.evtchn.bind_ipi(0)
    with pytest.raises(ValueError, match="not unbound"):
        ConsoleRingBackend(hv, d, d.gva_to_mfn(ring_gva), ipi)


def test_serving_the_console_adds_no_hypercall_hook(setup) -> None:
    """The backend hangs off its port, not off every hypercall: the dispatcher's fast path stays hook-free."""
    hv, *_ = setup
    assert hv.dispatcher.pre_hooks == [] and hv.dispatcher.post_hooks == []


def test_a_real_peer_replaces_the_backend(setup) -> None:
    """Spec 3.5: once another domain binds the port, sends go to that peer and the backend no longer drains."""
    hv, d, ring_gva, port, _backend = setup
    peer = hv.create_domain(memory_mib=2)
    d.evtchn.ports[port].remote_domid = peer.domid
    peer_port = peer.evtchn.bind_interdomain(d, port)
    assert peer_port > 0
    produce(d, ring_gva, b"y")
    assert send(hv, d, port) == 0
    assert d.console.data == b""
    assert peer.evtchn.is_pending(peer_port)


# ------------------------------------------------------------------------------------------ input


def ring_in(d, ring_gva: int) -> tuple[int, int]:
    """(in_cons, in_prod) as the guest sees them."""
    layout = d.abi.xencons_interface
    return tuple(  # type: ignore[return-value]
        int.from_bytes(d.read_guest(ring_gva + layout.offset_of(name), 4), "little") for name in ("in_cons", "in_prod")
    )


def consume(d, ring_gva: int, nr_bytes: int | None = None) -> bytes:
    """Take input as a frontend does: read from in_cons up to in_prod, then advance in_cons."""
    layout = d.abi.xencons_interface
    cons, prod = ring_in(d, ring_gva)
    count = (prod - cons) & 0xFFFF_FFFF if nr_bytes is None else nr_bytes
    data = b"".join(
        d.read_guest(ring_gva + layout.offset_of("in") + (cons + i) % XENCONS_IN_SIZE, 1) for i in range(count)
    )
    d.write_guest(ring_gva + layout.offset_of("in_cons"), ((cons + count) & 0xFFFF_FFFF).to_bytes(4, "little"))
    return data


def test_feed_writes_the_input_ring_and_notifies(setup) -> None:
    """console.h: the backend writes in[] at in_prod (mod 1024), advances in_prod, then notifies the guest."""
    _hv, d, ring_gva, port, backend = setup
    assert backend.feed(b"ls -l\r") == 6
    assert ring_in(d, ring_gva) == (0, 6)
    assert d.read_guest(ring_gva + d.abi.xencons_interface.offset_of("in"), 6) == b"ls -l\r"
    assert d.evtchn.is_pending(port)
    assert backend.pending_input == 0 and backend.total_input_bytes == 6


def test_feed_respects_ring_space_and_keeps_the_rest(setup) -> None:
    """At most 1024 bytes are in flight; the rest stays queued until the guest consumes and notifies."""
    hv, d, ring_gva, port, backend = setup
    data = bytes(range(256)) * 10  # 2560 bytes
    assert backend.feed(data) == XENCONS_IN_SIZE
    assert backend.pending_input == len(data) - XENCONS_IN_SIZE
    assert backend.feed(b"") == 0  # still full
    got = consume(d, ring_gva, 1000)
    assert send(hv, d, port) == 0  # the guest made room and says so: the backend fills it
    assert ring_in(d, ring_gva) == (1000, 2024)
    got += consume(d, ring_gva)
    send(hv, d, port)
    got += consume(d, ring_gva)
    assert got == data and backend.pending_input == 0


def test_input_ring_index_wraps_at_2_32(setup) -> None:
    _hv, d, ring_gva, _port, backend = setup
    layout = d.abi.xencons_interface
    start = 0xFFFF_FFFF - 2
    for name in ("in_cons", "in_prod"):
        d.write_guest(ring_gva + layout.offset_of(name), start.to_bytes(4, "little"))
    assert backend.feed(b"abcdefgh") == 8
    assert ring_in(d, ring_gva) == (start, (start + 8) & 0xFFFF_FFFF)
    assert consume(d, ring_gva) == b"abcdefgh"


def test_corrupt_input_indices_write_nothing(setup) -> None:
    """in_prod - in_cons beyond the ring: nothing is written (xenconsoled ignores such a ring); bytes stay queued."""
    _hv, d, ring_gva, _port, backend = setup
    layout = d.abi.xencons_interface
    d.write_guest(ring_gva + layout.offset_of("in_prod"), (XENCONS_IN_SIZE + 5).to_bytes(4, "little"))
    assert backend.feed(b"xyz") == 0
    assert backend.pending_input == 3
    assert ring_in(d, ring_gva) == (0, XENCONS_IN_SIZE + 5)


def test_output_and_input_share_the_port(setup) -> None:
    """One notification serves both directions: the output is drained and queued input moves in."""
    hv, d, ring_gva, port, backend = setup
    backend.feed(b"k" * (XENCONS_IN_SIZE + 1))
    consume(d, ring_gva)
    produce(d, ring_gva, b"$ ")
    assert send(hv, d, port) == 0
    assert d.console.data == b"$ "
    assert consume(d, ring_gva) == b"k"
