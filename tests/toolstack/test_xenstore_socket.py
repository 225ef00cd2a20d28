"""The store on a Unix socket, checked with a Python client and with Xen's own clients.

Xen's clients are Debian's builds, unpacked without installing (docs/usage.md, "xenstore"): ``xenpy fetch-xen``
puts them in ``$XENPY_XEN_DIR/tools``, or ``XENPY_XENSTORE_TOOLS`` names a directory where ``xenstore-utils
libxenstore4 libxentoolcore1 xen-utils-4.17`` are unpacked. Those tests skip where they are absent, and fail
where ``XENPY_REQUIRE_ORACLE=1`` says Xen's tools must be there (CI).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from xenpy.abi.io_xs_wire import XENSTORE_PAYLOAD_MAX, XsdSockmsgType
from xenpy.toolstack.conformance.fetch import DEFAULT_DEST, tools_dir
from xenpy.toolstack.xenstore import Store, XenstoreSocketServer, parse_perms, write_dom0_nodes
from xenpy.toolstack.xenstore.wire import MessageReader, encode

T = XsdSockmsgType
TOOLS = Path(os.environ.get("XENPY_XENSTORE_TOOLS") or tools_dir(Path(os.environ.get("XENPY_XEN_DIR", DEFAULT_DEST))))
REQUIRED = os.environ.get("XENPY_REQUIRE_ORACLE") == "1"
TEST_XENSTORE = TOOLS / "usr" / "lib" / "xen-4.17" / "bin" / "test-xenstore"


@pytest.fixture
def served(tmp_path):
    """A store served on a socket by a thread (no guest CPU runs in these tests)."""
    store = Store()
    write_dom0_nodes(store)
    server = XenstoreSocketServer(store, tmp_path / "socket")
    stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(stop, 0.02), daemon=True)
    thread.start()
    yield store, server
    stop.set()
    thread.join(5)
    server.close()


class SocketClient:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.reader = MessageReader()
        self.queue: list = []

    def receive(self):
        while not self.queue:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.queue += self.reader.feed(data)
        return self.queue.pop(0)

    def request(self, msg_type: int, payload: bytes, req_id: int = 1):
        self.sock.sendall(encode(msg_type, req_id, 0, payload))
        return self.receive()


def test_socket_client_reads_writes_and_watches(served) -> None:
    store, server = served
    client = SocketClient(server.path)
    reply = client.request(T.XS_WRITE, b"/test/node\0value", req_id=3)
    assert (reply.type, reply.req_id, reply.payload) == (T.XS_WRITE, 3, b"OK\0")
    assert client.request(T.XS_READ, b"/test/node\0").payload == b"value"
    assert client.request(T.XS_READ, b"name\0").payload == b"Domain-0"  # relative to /local/domain/0
    assert client.request(T.XS_WATCH, b"/test\0tok\0").payload == b"OK\0"
    assert client.receive().payload == b"/test\0tok\0"
    store.write("/test/node/child", "x")
    event = client.receive()
    assert (event.type, event.payload) == (T.XS_WATCH_EVENT, b"/test/node/child\0tok\0")
    assert client.request(T.XS_READ, b"/missing\0").payload == b"ENOENT\0"


def test_socket_clients_are_privileged(served) -> None:
    store, server = served
    store.write("/local/domain/3/secret", "s", parse_perms("n3"))
    client = SocketClient(server.path)
    assert client.request(T.XS_READ, b"/local/domain/3/secret\0").payload == b"s"
    assert client.request(T.XS_IS_DOMAIN_INTRODUCED, b"0\0").payload == b"T\0"


def test_oversized_message_drops_the_client(served) -> None:
    _store, server = served
    client = SocketClient(server.path)
    client.sock.sendall(encode(T.XS_WRITE, 1, 0, b"")[:12] + (XENSTORE_PAYLOAD_MAX + 1).to_bytes(4, "little"))
    assert client.receive() is None  # the server closed the connection


def test_a_client_leaving_takes_its_watches(served) -> None:
    store, server = served
    client = SocketClient(server.path)
    client.request(T.XS_WATCH, b"/w\0t\0")
    client.receive()
    assert sum(len(c.watches) for c in store.connections) == 1
    client.sock.close()
    for _ in range(100):
        if not store.connections:
            break
        threading.Event().wait(0.02)
    assert store.connections == []


# ------------------------------------------------------------------ Xen's own clients


def _tools_env(server: XenstoreSocketServer) -> dict[str, str]:
    return os.environ | {
        "LD_LIBRARY_PATH": str(TOOLS / "usr" / "lib" / "x86_64-linux-gnu"),
        "XENSTORED_PATH": server.path,
    }


needs_xen_tools = pytest.mark.skipif(
    not (TOOLS / "usr" / "bin" / "xenstore-read").exists() and not REQUIRED,
    reason=f"Debian's xenstore-utils are not unpacked in {TOOLS} (xenpy fetch-xen, or set XENPY_XENSTORE_TOOLS)",
)


def _tool(server: XenstoreSocketServer, name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(TOOLS / "usr" / "bin" / name), *args], env=_tools_env(server), capture_output=True,
                          text=True, timeout=30)  # fmt: skip


@needs_xen_tools
def test_xenstore_utils_against_the_store(served) -> None:
    store, server = served
    assert _tool(server, "xenstore-write", "/tools/a", "one", "/tools/b", "two").returncode == 0
    assert _tool(server, "xenstore-read", "/tools/a").stdout == "one\n"
    assert _tool(server, "xenstore-list", "/tools").stdout.split() == ["a", "b"]
    assert _tool(server, "xenstore-chmod", "/tools/a", "n0", "r5").returncode == 0
    assert store.get_perms("/tools/a") == parse_perms("n0 r5")
    listing = _tool(server, "xenstore-ls", "-p", "/tools").stdout
    assert 'a = "one"' in listing and "(n0,r5)" in listing
    assert _tool(server, "xenstore-exists", "/tools/missing").returncode != 0
    assert _tool(server, "xenstore-rm", "/tools").returncode == 0
    assert not store.exists("/tools")
    failed = _tool(server, "xenstore-read", "/tools/a")
    assert failed.returncode != 0 and "couldn't read path" in failed.stderr


@needs_xen_tools
def test_xenstore_watch_sees_changes(served) -> None:
    store, server = served
    watch = subprocess.Popen([str(TOOLS / "usr" / "bin" / "xenstore-watch"), "-n", "3", "/w"],
                             env=_tools_env(server), stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert watch.stdout is not None
        assert watch.stdout.readline() == "/w\n"  # the watch fires once up front
        store.write("/w/x", "1")
        assert watch.stdout.readline() == "/w/x\n"
        store.rm("/w/x")
        assert watch.stdout.readline() == "/w/x\n"
        assert watch.wait(10) == 0
    finally:
        watch.kill()


@pytest.mark.skipif(not TEST_XENSTORE.exists(), reason=f"Xen 4.17's test-xenstore is not unpacked in {TOOLS}")
def test_xens_test_xenstore_passes(served) -> None:
    """Xen's test program: read, write, directory, rm and transactions (with a conflict), 5 iterations each."""
    _store, server = served
    listed = subprocess.run([str(TEST_XENSTORE), "-l"], env=_tools_env(server), capture_output=True, text=True,
                            timeout=30)  # fmt: skip
    tests = [line for line in listed.stdout.splitlines() if line.strip()]
    assert len(tests) >= 12
    run = subprocess.run([str(TEST_XENSTORE), "-i", "5"], env=_tools_env(server), capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "failed" not in run.stdout
    assert len(run.stdout.splitlines()) == 12
