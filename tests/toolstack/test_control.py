"""The control socket (xenpy.toolstack.control): the protocol, each op, and bad requests that change nothing.

The server is polled by a thread of the test while no guest CPU runs (``xenpy run`` polls it between the
guest's steps); the domains are test domains whose running vCPUs just consume virtual time.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from xenpy.hypervisor import DomainConfig, Hypervisor
from xenpy.toolstack.control import (
    MAX_REQUEST_BYTES,
    PROTOCOL,
    PROTOCOL_VERSION,
    ControlClient,
    ControlError,
    ControlServer,
    live_control_sockets,
)
from xenpy.toolstack.monitor import STATE_NAMES

MS = 1_000_000


class Served:
    """A hypervisor with one 2-vCPU domain, its control server polled by a thread."""

    def __init__(self, path: Path) -> None:
        self.hv = Hypervisor(nr_pcpus=1, memory_mib=32)
        self.dom = self.hv.create_domain(DomainConfig(max_vcpus=2, memory_mib=2, periodic_period_ns=0, name="guest"))
        self.dom.unpause()
        self.hv.bring_up_vcpus(self.dom)
        self.hv.run_for(4 * MS)
        self.shutdowns: list[tuple[int, str]] = []
        self.targets: list[tuple[int, int]] = []
        self.server = ControlServer(self.hv, path, request_shutdown=self._shutdown,
                                    set_memory_target=lambda d, kib: self.targets.append((d.domid, kib)),
                                    info={"sched": "credit2"})  # fmt: skip
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _shutdown(self, d, reason: str) -> None:  # type: ignore[no-untyped-def]
        self.shutdowns.append((d.domid, reason))

    def _serve(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                self.server.poll(0.01)
                self.hv.run_for(MS // 10)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.server.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path / "control.sock")
    yield s
    s.close()


def raw(path: str) -> tuple[socket.socket, object]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    stream = sock.makefile("rb")
    return sock, stream


def test_socket_is_private_and_greets(served: Served) -> None:
    mode = os.stat(served.server.path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    with ControlClient(served.server.path) as client:
        assert client.greeting["protocol"] == PROTOCOL and client.greeting["version"] == PROTOCOL_VERSION
        assert client.greeting["pid"] == os.getpid() and client.greeting["sched"] == "credit2"


def test_list_and_vcpu_list(served: Served) -> None:
    with ControlClient(served.server.path) as client:
        (d,) = client.request("list")
        assert (d["domid"], d["name"], d["state"], d["vcpus"], d["online_vcpus"]) == (served.dom.domid, "guest",
                                                                                     "running", 2, 2)
        assert d["xl_state"][2:] == "----" and d["memory_kib"] == 2048
        rows = client.request("vcpu-list", domain="guest")
        assert [r["vcpu"] for r in rows] == [0, 1]
        for r in rows:
            # xl vcpu-list's fields, then the four runstate times (spec 2.3).
            assert {"name", "domid", "vcpu", "cpu", "state", "time_s", "affinity_hard", "affinity_soft"} <= set(r)
            assert r["state"] in ("r--", "---", "-b-") and r["cpu"] == 0
            times = [r[f"{name}_ns"] for name in STATE_NAMES]
            assert r["time_s"] == pytest.approx(times[0] / 1e9)
            assert sum(times) > 0
        by_id = client.request("vcpu-list", domain=served.dom.domid)
        assert [(r["name"], r["vcpu"]) for r in by_id] == [("guest", 0), ("guest", 1)]


def test_pause_unpause_destroy(served: Served) -> None:
    with ControlClient(served.server.path) as client:
        assert client.request("pause", domain="guest")["state"] == "paused"
        with served.lock:
            assert all(not v.runnable for v in served.dom.vcpus)
        (d,) = client.request("list")
        assert d["xl_state"][2] == "p"
        assert client.request("unpause", domain=served.dom.domid)["state"] == "running"
        with pytest.raises(ControlError, match="not paused") as error:
            client.request("unpause", domain="guest")
        assert error.value.code == "invalid"
        with pytest.raises(ControlError) as error:
            client.request("pause", domain="nosuch")
        assert error.value.code == "no-such-domain"
        assert client.request("destroy", domain="guest")["state"] == "destroyed"
        assert client.request("list") == []


def test_shutdown_goes_to_the_requester(served: Served) -> None:
    with ControlClient(served.server.path) as client:
        assert client.request("shutdown", domain="guest")["requested"] == "poweroff"
        assert client.request("shutdown", domain="guest", reason="reboot")["node"] == "control/shutdown"
        with pytest.raises(ControlError) as error:
            client.request("shutdown", domain="guest", reason="explode")
        assert error.value.code == "bad-request"
    assert served.shutdowns == [(served.dom.domid, "poweroff"), (served.dom.domid, "reboot")]


def test_mem_set_goes_to_the_setter_and_list_shows_the_balloon(served: Served) -> None:
    """``mem-set`` (xl mem-set) checks the target against the domain's maximum; ``list`` reports the memory now,
    the maximum, what the balloon gave back and what is claimed."""
    with served.lock:
        served.dom.tot_pages -= 16  # as if its balloon had given back 16 pages
        served.dom.ballooned_mfns.update(dict.fromkeys(range(10_000, 10_016)))
    with ControlClient(served.server.path) as client:
        reply = client.request("mem-set", domain="guest", memory_kib=1536)
        assert reply == {"domid": served.dom.domid, "target_kib": 1536, "memory_kib": 2048 - 64,
                         "node": "memory/target"}
        for bad in (512, 4096, "1m", True):
            with pytest.raises(ControlError) as error:
                client.request("mem-set", domain="guest", memory_kib=bad)
            assert error.value.code == "bad-request"
        (row,) = client.request("list")
        assert (row["memory_kib"], row["max_memory_kib"], row["ballooned_kib"], row["claimed_kib"]) == (
            2048 - 64, 2048, 64, 0)
    assert served.targets == [(served.dom.domid, 1536)]


def test_subscribers_get_samples(served: Served) -> None:
    with ControlClient(served.server.path) as client:
        samples = []
        for sample in client.samples(0.05):
            samples.append(sample)
            if len(samples) == 3:
                break
        assert [s.domains[0].name for s in samples] == ["guest"] * 3
        assert samples[0].time_ns < samples[1].time_ns < samples[2].time_ns
        # Requests still work while subscribed; samples that arrive meanwhile are kept.
        assert client.request("unsubscribe") == {}
        assert client.request("list")[0]["name"] == "guest"


def test_bad_requests_get_error_replies_and_change_nothing(served: Served) -> None:
    sock, stream = raw(served.server.path)
    with sock:
        json.loads(stream.readline())  # greeting
        sock.sendall(b"{not json\n")
        assert json.loads(stream.readline())["error"]["code"] == "bad-json"
        sock.sendall(b"[1, 2]\n")
        assert json.loads(stream.readline())["error"]["code"] == "bad-request"
        sock.sendall(b'{"op": "reboot-the-host", "id": 7}\n')
        reply = json.loads(stream.readline())
        assert (reply["id"], reply["ok"], reply["error"]["code"]) == (7, False, "unknown-op")
        sock.sendall(b'{"op": "pause", "domain": [1]}\n')
        assert json.loads(stream.readline())["error"]["code"] == "bad-request"
        sock.sendall(b'{"op": "subscribe", "interval": 0}\n')
        assert json.loads(stream.readline())["error"]["code"] == "bad-request"
        # Oversized: one error reply, the rest of that line dropped, the next request answered.
        sock.sendall(b'{"op": "list", "pad": "' + b"x" * (MAX_REQUEST_BYTES + 10) + b'"}\n{"op": "list", "id": 2}\n')
        assert json.loads(stream.readline())["error"]["code"] == "too-large"
        reply = json.loads(stream.readline())
        assert reply["id"] == 2 and reply["ok"] and reply["result"][0]["state"] == "running"
    with ControlClient(served.server.path) as client:
        assert client.request("list")[0]["state"] == "running"


def test_other_users_are_refused() -> None:
    """A peer of another uid (SO_PEERCRED) gets one error line and is disconnected, even past the file mode."""
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    directory = Path(tempfile.mkdtemp(prefix="xenpy-control-"))
    directory.chmod(0o711)  # traversable by the other user, as the socket below is writable
    served = Served(directory / "control.sock")
    try:
        os.chmod(served.server.path, 0o666)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: become nobody and connect
            try:
                os.close(read_end)
                os.setgid(65534)
                os.setuid(65534)
                _sock, stream = raw(served.server.path)
                os.write(write_end, stream.readline() + stream.readline() + b"EOF")
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            got = pipe.read()
        os.waitpid(pid, 0)
    finally:
        served.close()
        shutil.rmtree(directory)
    first, _, rest = got.partition(b"\n")
    assert json.loads(first)["error"]["code"] == "permission"
    assert rest == b"EOF"  # then the server closed the connection


def test_a_live_socket_is_not_replaced_and_stale_ones_are_cleaned(served: Served, tmp_path: Path) -> None:
    with pytest.raises(OSError, match="another server listens"):
        ControlServer(served.hv, served.server.path)
    stale = tmp_path / "run-1.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(stale))
    listener.close()  # the file stays, nobody listens
    assert live_control_sockets(tmp_path) == [Path(served.server.path)]
    assert not stale.exists()


def test_sched_credit2_weight_and_cap(served: Served) -> None:
    """xl sched-credit2: the weight and the cap are shown and set; bad values change nothing but what Xen keeps."""
    with ControlClient(served.server.path) as client:
        assert client.request("sched-credit2", domain="guest") == {"domid": served.dom.domid, "name": "guest",
                                                                   "weight": 256, "cap": 0}
        assert client.request("sched-credit2", domain="guest", weight=512)["weight"] == 512
        assert client.request("sched-credit2", domain="guest", cap=150)["cap"] == 150
        for args, code in (({"weight": 0}, "invalid"), ({"weight": "x"}, "bad-request"),
                           ({"cap": 201}, "invalid"), ({"cap": True}, "bad-request")):
            with pytest.raises(ControlError) as error:
                client.request("sched-credit2", domain="guest", **args)
            assert error.value.code == code
        # As csched2_dom_cntl: the weight is set before the cap is refused.
        with pytest.raises(ControlError):
            client.request("sched-credit2", domain="guest", weight=300, cap=500)
        assert client.request("sched-credit2", domain="guest") == {"domid": served.dom.domid, "name": "guest",
                                                                   "weight": 300, "cap": 150}
        assert client.request("sched-credit2", domain="guest", cap=0)["cap"] == 0


def test_an_op_that_fails_answers_an_error_and_the_server_goes_on(served: Served, monkeypatch) -> None:
    def broken(_client, _request):  # type: ignore[no-untyped-def]
        raise KeyError("boom")

    monkeypatch.setitem(served.server.ops, "list", broken)
    with ControlClient(served.server.path) as client:
        with pytest.raises(ControlError, match="list failed: KeyError") as error:
            client.request("list")
        assert error.value.code == "internal"
        assert client.request("vcpu-list")[0]["name"] == "guest"
