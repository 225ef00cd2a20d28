"""The xenstore ring backend: requests a guest writes into ``xenstore_domain_interface.req`` (through machine
memory, as a frontend does) get their replies in ``rsp``; a broken ring is ignored, never raised."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenpy.abi.generated.hypercalls import EVTCHNOP_send, Hypercall
from xenpy.abi.io_xs_wire import (
    XENSTORE_ERROR_COMM,
    XENSTORE_ERROR_NONE,
    XENSTORE_ERROR_PROTO,
    XENSTORE_ERROR_RINGIDX,
    XENSTORE_PAYLOAD_MAX,
    XENSTORE_RING_SIZE,
    XsdSockmsgType,
)
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.xenstore import Store, XenstoreRingBackend, parse_perms
from xenpy.toolstack.xenstore.wire import decode_header, encode

T = XsdSockmsgType
U32 = 0xFFFF_FFFF


class Frontend:
    """A guest's side of the ring, in machine memory (what Linux's xenbus_comms.c does)."""

    def __init__(self, hv: Hypervisor, d, ring_mfn: int, port: int, *, hypercall: bool = True) -> None:
        self.hv, self.d, self.port, self.hypercall = hv, d, port, hypercall
        layout = d.abi.xenstore_domain_interface
        self.base = ring_mfn << 12
        self.off = {name: layout.offset_of(name) for name in
                    ("req", "rsp", "req_cons", "req_prod", "rsp_cons", "rsp_prod", "server_features",
                     "connection", "error")}  # fmt: skip
        self.pending = b""

    def get(self, name: str) -> int:
        return self.hv.machine.read_u32(self.base + self.off[name])

    def set(self, name: str, value: int) -> None:
        self.hv.machine.write_u32(self.base + self.off[name], value & U32)

    def put(self, data: bytes) -> int:
        """Write as much of ``data`` as ``req`` has room for; the bytes written."""
        cons, prod = self.get("req_cons"), self.get("req_prod")
        room = XENSTORE_RING_SIZE - ((prod - cons) & U32)
        data = data[:room]
        for i, byte in enumerate(data):
            self.hv.machine.write(self.base + self.off["req"] + (prod + i) % XENSTORE_RING_SIZE, bytes([byte]))
        self.set("req_prod", prod + len(data))
        return len(data)

    def take(self) -> bytes:
        """Everything in ``rsp``, consumed."""
        cons, prod = self.get("rsp_cons"), self.get("rsp_prod")
        length = (prod - cons) & U32
        data = b"".join(self.hv.machine.read(self.base + self.off["rsp"] + (cons + i) % XENSTORE_RING_SIZE, 1)
                        for i in range(length))  # fmt: skip
        self.set("rsp_cons", cons + length)
        return data

    def send(self) -> None:
        """EVTCHNOP_send on the store port (from a test domain's memory, else straight to the event channels)."""
        if not self.hypercall:
            assert self.d.evtchn.evtchn_send(self.port) == 0
            return
        arg = self.d.put_struct("evtchn_send", port=self.port)
        assert self.hv.hypercall(self.d.vcpus[0], Hypercall.event_channel_op, EVTCHNOP_send, arg) == 0

    def messages(self) -> list[tuple[str, int, int, bytes]]:
        """The whole messages received so far (partial ones are kept for the next call)."""
        self.pending += self.take()
        out = []
        while len(self.pending) >= 16:
            msg_type, req_id, tx_id, length = decode_header(self.pending)
            if len(self.pending) < 16 + length:
                break
            out.append((T(msg_type).name, req_id, tx_id, self.pending[16 : 16 + length]))
            self.pending = self.pending[16 + length :]
        return out

    def request(self, msg_type: int, payload: bytes, req_id: int = 1, tx_id: int = 0) -> list:
        """One whole request, sent in as many pieces as the ring needs; everything received back."""
        data = encode(msg_type, req_id, tx_id, payload)
        got = []
        while data:
            data = data[self.put(data) :]
            self.send()
            got += self.messages()
        return got


@pytest.fixture
def ring():
    hv = Hypervisor(memory_mib=16)
    d = hv.create_domain(memory_mib=4)
    ring_gva = d.alloc_guest_page()
    port = d.evtchn.alloc_unbound(d, 0)
    store = Store()
    store.write(f"/local/domain/{d.domid}", b"", parse_perms(f"n0 r{d.domid}"))
    store.write(f"/local/domain/{d.domid}/name", "guest")
    store.write(f"/local/domain/{d.domid}/data", b"", parse_perms(f"n{d.domid}"))
    backend = XenstoreRingBackend(hv, d, d.gva_to_mfn(ring_gva), port, store)
    d.unpause()
    return Frontend(hv, d, d.gva_to_mfn(ring_gva), port), backend


def test_request_gets_its_reply_and_the_guest_is_notified(ring) -> None:
    front, backend = ring
    assert front.request(T.XS_READ, b"name\0", req_id=77) == [("XS_READ", 77, 0, b"guest")]
    assert front.d.evtchn.is_pending(front.port)
    assert front.get("req_cons") == front.get("req_prod") == 16 + 5
    assert backend.requests == 1 and backend.error == XENSTORE_ERROR_NONE


def test_fresh_ring_advertises_nothing(ring) -> None:
    """Xen 4.20's xenstored leaves server_features and connection as the builder zeroed them."""
    front, _backend = ring
    front.request(T.XS_READ, b"name\0")
    assert (front.get("server_features"), front.get("connection"), front.get("error")) == (0, 0, 0)


def test_message_in_pieces_across_notifications(ring) -> None:
    """A header and a payload may arrive a few bytes at a time; nothing is answered before the last one."""
    front, backend = ring
    data = encode(T.XS_WRITE, 5, 0, b"data/x\0value")
    for i in range(0, len(data), 3):
        front.put(data[i : i + 3])
        front.send()
        if i + 3 < len(data):
            assert front.messages() == []
    assert front.messages() == [("XS_WRITE", 5, 0, b"OK\0")]
    assert backend.store.read(f"/local/domain/{front.d.domid}/data/x") == b"value"


def test_indices_wrap_around_the_ring_and_2_to_the_32(ring) -> None:
    front, _backend = ring
    start = U32 - 7  # both index pairs wrap past 2**32 and past the ring's end
    for name in ("req_cons", "req_prod", "rsp_cons", "rsp_prod"):
        front.set(name, start)
    for req_id in range(1, 40):
        value = bytes([65 + req_id % 26]) * (req_id * 7)
        assert front.request(T.XS_WRITE, b"data/w\0" + value, req_id) == [("XS_WRITE", req_id, 0, b"OK\0")]
        assert front.request(T.XS_READ, b"data/w\0", req_id) == [("XS_READ", req_id, 0, value)]
    assert front.get("req_prod") < start


def test_reply_larger_than_the_ring_waits_for_the_guest(ring) -> None:
    """A 4000-byte reply takes four ring-fulls; the rest waits until the guest consumes and notifies."""
    front, backend = ring
    value = bytes(range(256)) * 15 + b"end"
    backend.store.write(f"/local/domain/{front.d.domid}/data/big", value)
    front.put(encode(T.XS_READ, 9, 0, b"data/big\0"))
    front.send()
    got = b""
    for _ in range(10):
        chunk = front.take()
        assert len(chunk) <= XENSTORE_RING_SIZE
        got += chunk
        if len(got) == 16 + len(value):
            break
        front.send()
    assert decode_header(got) == (T.XS_READ, 9, 0, len(value)) and got[16:] == value


def test_watch_event_reaches_the_ring_without_a_notification(ring) -> None:
    """A change made by another client is written into rsp at once, and the guest notified."""
    front, backend = ring
    assert front.request(T.XS_WATCH, b"data\0tok\0") == [
        ("XS_WATCH", 1, 0, b"OK\0"),
        ("XS_WATCH_EVENT", 0, 0, b"data\0tok\0"),
    ]
    front.d.evtchn.clear_pending(front.d.evtchn.ports[front.port])
    backend.store.write(f"/local/domain/{front.d.domid}/data/shutdown", "poweroff")
    assert front.messages() == [("XS_WATCH_EVENT", 0, 0, b"data/shutdown\0tok\0")]
    assert front.d.evtchn.is_pending(front.port)


def test_request_shutdown_through_the_ring(ring) -> None:
    front, backend = ring
    backend.store.write(f"/local/domain/{front.d.domid}/control/shutdown", b"",
                        parse_perms(f"n{front.d.domid}"))  # fmt: skip
    front.request(T.XS_WATCH, b"control/shutdown\0sd\0")
    backend.request_shutdown("poweroff")
    assert front.messages() == [("XS_WATCH_EVENT", 0, 0, b"control/shutdown\0sd\0")]
    assert front.request(T.XS_READ, b"control/shutdown\0") == [("XS_READ", 1, 0, b"poweroff")]


def test_full_response_ring_stops_reading_after_20_outstanding_replies(ring) -> None:
    """domain_can_read: with QUOTA_OUTSTANDING replies queued, requests stay in req until the guest reads."""
    front, _backend = ring
    front.set("rsp_prod", XENSTORE_RING_SIZE)  # rsp full: the guest consumes nothing
    requests = b"".join(encode(T.XS_READ, i, 0, b"name\0") for i in range(25))
    assert front.put(requests) == len(requests)
    front.send()
    assert (front.get("req_prod") - front.get("req_cons")) & U32 == 5 * 21
    front.set("rsp_cons", XENSTORE_RING_SIZE)  # the guest read the full ring
    front.send()
    assert [m[1] for m in front.messages()] == list(range(25))
    assert front.get("req_cons") == front.get("req_prod")


@pytest.mark.parametrize("side", ["req", "rsp"])
def test_bad_indices_break_the_connection(ring, side: str) -> None:
    """prod - cons beyond the ring on either side: xenstored's ignore_connection (error = RINGIDX)."""
    front, backend = ring
    front.request(T.XS_WATCH, b"data\0tok\0")
    front.set(f"{side}_prod", front.get(f"{side}_cons") + XENSTORE_RING_SIZE + 1)
    front.put(b"")
    front.send()
    if side == "rsp":
        backend.store.write(f"/local/domain/{front.d.domid}/data/x", "1")  # output needs the rsp ring
    assert backend.error == XENSTORE_ERROR_RINGIDX and front.get("error") == XENSTORE_ERROR_RINGIDX
    assert backend.connection.watches == []
    before = front.get("req_cons")
    front.set("req_prod", before)
    front.put(encode(T.XS_READ, 1, 0, b"name\0"))
    front.send()
    assert front.get("req_cons") == before  # ignored from now on


def test_oversized_payload_breaks_the_connection(ring) -> None:
    front, backend = ring
    front.put(encode(T.XS_WRITE, 1, 0, b"")[:12] + (XENSTORE_PAYLOAD_MAX + 1).to_bytes(4, "little"))
    front.send()
    assert backend.error == XENSTORE_ERROR_PROTO and front.get("error") == XENSTORE_ERROR_PROTO
    assert backend.requests == 0


def test_largest_payload_is_fine(ring) -> None:
    front, _backend = ring
    payload = b"data/m\0" + b"v" * (XENSTORE_PAYLOAD_MAX - 7)
    assert front.request(T.XS_WRITE, payload) == [("XS_WRITE", 1, 0, b"OK\0")]


def test_an_internal_failure_never_reaches_the_hypervisor(ring, monkeypatch) -> None:
    front, backend = ring

    def boom(*_args) -> None:
        raise RuntimeError("store bug")

    monkeypatch.setattr(backend.connection, "handle", boom)
    front.put(encode(T.XS_READ, 1, 0, b"name\0"))
    front.send()  # the hypercall returns 0: the guest is not crashed
    assert backend.error == XENSTORE_ERROR_COMM and isinstance(backend.fault, RuntimeError)
    assert not front.d.is_shutting_down


def test_garbage_in_the_ring_never_raises(ring) -> None:
    """Random bytes as requests: every complete message gets an answer, or the connection is ignored."""
    import random

    front, backend = ring
    rng = random.Random(1)
    for _ in range(200):
        size = rng.randrange(1, 64)
        blob = bytes(rng.randrange(256) for _ in range(size))
        if rng.random() < 0.7:  # mostly well-formed headers with random types and payloads
            blob = encode(rng.randrange(30), rng.randrange(U32), 0, blob)
        front.put(blob)
        front.send()
        front.take()
    assert backend.fault is None


def test_domain_destruction_releases_it(ring) -> None:
    """A destroyed domain's connection leaves the store, which fires @releaseDomain."""
    front, backend = ring
    watcher = backend.store.connect_socket()
    backend.store.process(watcher, T.XS_WATCH, 1, 0, b"@releaseDomain\0r\0")
    while watcher.pop_output() is not None:
        pass
    front.hv.destroy_domain(front.d)
    assert backend.connection not in backend.store.connections
    message = watcher.pop_output()
    assert message is not None and message[16:] == b"@releaseDomain\0r\0"
    backend.notify()  # a late notification is harmless


@pytest.mark.needs_gcc
def test_a_booted_guest_ring_is_served(guest_build_dir) -> None:
    """boot_pv_image serves start_info.store_mfn: the nodes libxl writes answer through the real ring page."""
    from xenpy.toolstack.boot import boot_pv_image

    hv = Hypervisor(memory_mib=40)
    booted = boot_pv_image(hv, (guest_build_dir / "test-pv64-hello").read_bytes(), memory_mib=16, name="hello")
    d = booted.domain
    front = Frontend(hv, d, booted.built.store_mfn, booted.store_port, hypercall=False)
    start_info = d.get_struct("start_info", booted.built.layout.rsi)
    assert start_info.store_mfn == booted.built.store_mfn
    d.unpause()
    assert front.request(T.XS_READ, b"domid\0") == [("XS_READ", 1, 0, str(d.domid).encode())]
    assert front.request(T.XS_READ, b"name\0") == [("XS_READ", 1, 0, b"hello")]
    assert front.request(T.XS_READ, b"store/ring-ref\0") == [
        ("XS_READ", 1, 0, str(booted.built.store_mfn).encode())
    ]
    assert front.request(T.XS_WRITE, b"control/feature-poweroff\0" + b"1") == [("XS_WRITE", 1, 0, b"OK\0")]
    assert front.request(T.XS_WRITE, b"name\0evil") == [("XS_ERROR", 1, 0, b"EACCES\0")]
    assert booted.xenstore is not None and booted.xenstore.requests == 5


_REQUESTS = st.lists(
    st.one_of(
        st.tuples(st.just(T.XS_WRITE), st.sampled_from([b"data/a", b"data/b/c", b"name"]), st.binary(max_size=12)),
        st.tuples(st.sampled_from([T.XS_READ, T.XS_DIRECTORY, T.XS_MKDIR, T.XS_RM, T.XS_GET_PERMS]),
                  st.sampled_from([b"data/a", b"data/b", b"data", b"name", b"bad//path"]), st.just(b"")),
        st.tuples(st.sampled_from([T.XS_WATCH, T.XS_UNWATCH]), st.sampled_from([b"data", b"data/b"]),
                  st.sampled_from([b"t1", b"t2"])),
    ),
    max_size=25,
)  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(requests=_REQUESTS, chunks=st.lists(st.integers(1, 100), min_size=1, max_size=10))
def test_ring_answers_as_the_store_does_however_the_bytes_arrive(requests, chunks) -> None:
    """Requests written in arbitrary pieces get the messages a direct connection to an identical store gets."""
    hv = Hypervisor(memory_mib=16)
    d = hv.create_domain(memory_mib=4)
    ring_gva = d.alloc_guest_page()
    port = d.evtchn.alloc_unbound(d, 0)
    stores = [Store(), Store()]
    for store in stores:
        store.write(f"/local/domain/{d.domid}", b"", parse_perms(f"n0 r{d.domid}"))
        store.write(f"/local/domain/{d.domid}/name", "guest")
        store.write(f"/local/domain/{d.domid}/data", b"", parse_perms(f"n{d.domid}"))
    XenstoreRingBackend(hv, d, d.gva_to_mfn(ring_gva), port, stores[0])
    d.unpause()
    front = Frontend(hv, d, d.gva_to_mfn(ring_gva), port)
    direct = stores[1].connect_domain(d.domid)
    stream, expected = b"", []
    for req_id, (msg_type, path, extra) in enumerate(requests, 1):
        payload = path + b"\0" + extra + (b"\0" if msg_type in (T.XS_WATCH, T.XS_UNWATCH) else b"")
        stream += encode(msg_type, req_id, 0, payload)
        direct.handle(msg_type, req_id, 0, payload)
        while (message := direct.pop_output()) is not None:
            msg_type_out, rid, tid, _length = decode_header(message)
            expected.append((T(msg_type_out).name, rid, tid, message[16:]))
    got, index = [], 0
    while stream:
        size = chunks[index % len(chunks)]
        index += 1
        written = front.put(stream[:size])
        stream = stream[written:]
        front.send()
        got += front.messages()
    front.send()
    got += front.messages()
    assert got == expected
