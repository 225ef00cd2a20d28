"""The control socket of a running hypervisor (``xenpy run --control``), and its client.

A local Unix stream socket (mode 0600; a peer of another user, by ``SO_PEERCRED``, gets an error and is
disconnected) carrying newline-delimited JSON, protocol version :data:`PROTOCOL_VERSION`:

* on connect the server sends a greeting: ``{"protocol": "xenpy-control", "version": 1, "pid": ..., "sched":
  ..., "pcpus": ..., "clock": ...}``;
* a request is one JSON object on one line, ``{"op": NAME, ...arguments, "id": ANY}`` (``id`` is optional and
  comes back in the reply);
* every request gets one reply, ``{"id": ..., "ok": true, "result": ...}`` or ``{"id": ..., "ok": false,
  "error": {"code": CODE, "message": TEXT}}``; a request line longer than :data:`MAX_REQUEST_BYTES`, bad
  JSON, an unknown op or a bad argument is such an error reply, and the connection and the hypervisor go on;
* a subscriber also gets ``{"event": "sample", "sample": SAMPLE}`` lines (:class:`~xenpy.toolstack.monitor.Sample`
  as JSON), the first at once, then one per interval of host time.

The ops: ``list`` (with ``xl list``'s State letters as ``xl_state`` and the toolstack's
:mod:`~xenpy.toolstack.lifecycle` state as ``lifecycle``); ``vcpu-list`` [``domain``]; ``sample``;
``metrics`` (Prometheus text); ``pause``, ``unpause``, ``destroy`` ``domain``; ``shutdown`` ``domain``
[``reason``: poweroff, reboot, halt, suspend, crash], written into the guest's xenstore ``control/shutdown`` as
``xl shutdown`` does (a guest that watches or reads the node acts on it); ``sched-credit2`` ``domain``
[``weight``] [``cap``], ``xl sched-credit2``'s weight and cap;
``save`` ``domain`` ``path`` [``checkpoint``]: ``xl save`` (:mod:`xenpy.toolstack.migration.save`), the xl save
file written at ``path`` (absolute) by the server, ``{"event": "progress", "id": ..., "done": N, "total": M}``
lines (pages) sent before the reply, the domain destroyed once saved or, with ``checkpoint``, left running;
``migrate`` ``domain`` ``address`` [``max_downtime_ms``] [``max_rounds``] [``ssh_command``]: live migration
(:mod:`xenpy.toolstack.migration.migrate`) to a ``xenpy restore --incoming`` at ``address``, with ``{"event":
"progress", "round": N, "pages": P, "left": L}`` lines after each pre-copy round;
``mem-set`` ``domain`` ``memory_kib``: ``xl mem-set``, the guest's xenstore ``memory/target`` (its balloon driver
follows it; ``list`` shows ``memory_kib`` falling or rising, with ``max_memory_kib``, ``ballooned_kib`` and
``claimed_kib``);
``subscribe`` [``interval`` s, 0.05-3600, default 1]; ``unsubscribe``. ``domain`` is a domid or a name. Error
codes: ``bad-json``, ``bad-request``, ``too-large``, ``unknown-op``, ``no-such-domain``, ``invalid`` (the
domain's state does not allow it), ``unsupported``, ``failed`` (the guest or the file refused: a save the guest
did not answer), ``permission`` (another user), ``internal`` (the op failed unexpectedly; the hypervisor goes
on).

The server is single-threaded: :meth:`ControlServer.poll` does one round of I/O; ``xenpy run`` calls it between
the guest's scheduler steps, so a request never races the guest's CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xenpy.abi.sched import SHUTDOWN
from xenpy.core.domain import DomainState, VPF_blocked
from xenpy.core.sched_credit2 import Credit2Scheduler
from xenpy.toolstack.control_path import default_control_dir
from xenpy.toolstack.lifecycle import MOVABLE, lifecycle_of
from xenpy.toolstack.monitor import STATE_NAMES, Sample, prometheus_text, take_sample
from xenpy.toolstack.socket_server import UnixSocketServer, is_listening

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.hypervisor import Hypervisor

PROTOCOL = "xenpy-control"
PROTOCOL_VERSION = 1
#: Longest request line (bytes, newline excluded).
MAX_REQUEST_BYTES = 65536
#: Output a client may have queued before samples to it are skipped (a subscriber that does not read).
MAX_QUEUED_BYTES = 4 << 20
#: Bounds and default of a subscription's interval (s).
MIN_INTERVAL_S, MAX_INTERVAL_S, DEFAULT_INTERVAL_S = 0.05, 3600.0, 1.0
#: ``control/shutdown`` commands, by the name the ``shutdown`` op takes.
SHUTDOWN_REASONS = ("poweroff", "reboot", "halt", "suspend", "crash")

_UCRED = struct.Struct("3i")

#: ``request_shutdown(domain, reason)``: ask the guest to shut down; raises LookupError where it has no
#: xenstore control node.
ShutdownRequester = Callable[["Domain", str], None]
#: ``save(domain, path, checkpoint, progress) -> summary``: save the domain to ``path`` (``progress(done,
#: total)`` as pages are written); raises LookupError where it cannot be saved, RuntimeError or OSError if the
#: save fails.
SaveRequester = Callable[["Domain", str, bool, Callable[[int, int], None]], dict[str, Any]]
#: ``migrate(domain, request, progress) -> summary``: migrate the domain as the request says (``address``,
#: ``max_downtime_ms``, ``max_rounds``, ``ssh_command``); ``progress(round, pages, left)``; raises as
#: :data:`SaveRequester` does.
#: ``set_memory_target(domain, kib)``: write the guest's xenstore ``memory/target`` (its balloon driver follows
#: it); raises LookupError where it has no xenstore.
MemoryTargetSetter = Callable[["Domain", int], None]
MigrateRequester = Callable[["Domain", dict[str, Any], Callable[[int, int, int], None]], dict[str, Any]]


class ControlError(Exception):
    """An error reply: ``code`` (see the module docstring) and a one-line message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Client:
    sock: socket.socket
    inbuf: bytearray = field(default_factory=bytearray)
    out: bytearray = field(default_factory=bytearray)
    discarding: bool = False
    interval_s: float | None = None
    next_sample: float = 0.0
    closing: bool = False


class ControlServer(UnixSocketServer):
    """Serves the control protocol for ``hv`` on a Unix socket at ``path``.

    A stale socket file at ``path`` (nobody listening) is replaced, a live one is an error.

    Args:
        hv: the hypervisor to control.
        path: the socket's path.
        request_shutdown: how to ask a domain to shut down (None: the ``shutdown`` op is ``unsupported``).
        save: how to save a domain (None: the ``save`` op is ``unsupported``).
        migrate: how to migrate a domain (None: the ``migrate`` op is ``unsupported``).
        set_memory_target: how to set a domain's balloon target (None: ``mem-set`` is ``unsupported``).
        info: extra greeting fields (the scheduler, the clock, ...).

    Raises:
        OSError: the socket cannot be created (``EADDRINUSE``: another server listens there).
    """

    def __init__(self, hv: Hypervisor, path: str | os.PathLike[str], *,
                 request_shutdown: ShutdownRequester | None = None, save: SaveRequester | None = None,
                 migrate: MigrateRequester | None = None, set_memory_target: MemoryTargetSetter | None = None,
                 info: dict[str, Any] | None = None) -> None:
        super().__init__(path, mode=0o600, replace_live=False)
        self.hv = hv
        self.request_shutdown = request_shutdown
        self.save = save
        self.migrate = migrate
        self.set_memory_target = set_memory_target
        self.greeting = {"protocol": PROTOCOL, "version": PROTOCOL_VERSION, "pid": os.getpid(),
                         "pcpus": len(hv.pcpus), **(info or {})}
        self.ops: dict[str, Callable[[_Client, dict[str, Any]], Any]] = {
            "list": self._op_list,
            "vcpu-list": self._op_vcpu_list,
            "sample": lambda _c, _r: take_sample(self.hv).to_json(),
            "metrics": lambda _c, _r: prometheus_text(take_sample(self.hv)),
            "pause": self._op_pause,
            "unpause": self._op_unpause,
            "destroy": self._op_destroy,
            "shutdown": self._op_shutdown,
            "sched-credit2": self._op_sched_credit2,
            "save": self._op_save,
            "migrate": self._op_migrate,
            "mem-set": self._op_mem_set,
            "subscribe": self._op_subscribe,
            "unsubscribe": self._op_unsubscribe,
        }

    @property
    def subscribers(self) -> int:
        """Clients subscribed to samples now."""
        return sum(1 for c in self._clients.values() if c.interval_s is not None)

    def poll(self, timeout: float = 0.0) -> None:
        """Accept and answer what is ready (waiting up to ``timeout`` s, less if a sample falls due sooner), send
        the samples that are due and queued output."""
        if self._closed:
            return
        due = [c.next_sample for c in self._clients.values() if c.interval_s is not None]
        if due:
            timeout = max(0.0, min(timeout, min(due) - time.monotonic()))
        for sock, _events in self._ready(timeout):
            client = self._clients.get(sock)
            if client is not None:
                self._receive(client)
        now = time.monotonic()
        sample: Sample | None = None
        for client in list(self._clients.values()):
            if client.interval_s is not None and now >= client.next_sample:
                client.next_sample = max(client.next_sample + client.interval_s, now)
                if len(client.out) < MAX_QUEUED_BYTES:
                    sample = sample or take_sample(self.hv)
                    self._queue(client, {"event": "sample", "sample": sample.to_json()})
            self._send(client)

    # ------------------------------------------------------------------ connections

    def _new_client(self, sock: socket.socket) -> _Client:
        client = _Client(sock)
        _pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
        if uid != os.geteuid():
            self._queue(client, _error_reply(None, "permission", f"uid {uid} may not use this control socket"))
            client.closing = True
        else:
            self._queue(client, self.greeting)
        return client

    def _receive(self, client: _Client) -> None:
        data = self._recv(client)
        if data is None:
            return
        if client.closing:
            return
        client.inbuf += data
        while True:
            end = client.inbuf.find(b"\n")
            if end < 0:
                if len(client.inbuf) > MAX_REQUEST_BYTES:
                    if not client.discarding:
                        self._queue(client, _error_reply(None, "too-large",
                                                         f"request longer than {MAX_REQUEST_BYTES} bytes"))
                    client.discarding = True
                    client.inbuf.clear()
                return
            line = bytes(client.inbuf[:end])
            del client.inbuf[: end + 1]
            if client.discarding:
                client.discarding = False
                continue
            if len(line) > MAX_REQUEST_BYTES:
                self._queue(client, _error_reply(None, "too-large", f"request longer than {MAX_REQUEST_BYTES} bytes"))
                continue
            if line.strip():
                self._queue(client, self.handle(client, line))

    def handle(self, client: _Client, line: bytes) -> dict[str, Any]:
        """The reply to one request line."""
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError) as error:
            return _error_reply(None, "bad-json", f"not JSON: {error}")
        if not isinstance(request, dict):
            return _error_reply(None, "bad-request", "a request is a JSON object")
        req_id = request.get("id")
        op = request.get("op")
        if not isinstance(op, str):
            return _error_reply(req_id, "bad-request", "no \"op\" (a string)")
        handler = self.ops.get(op)
        if handler is None:
            return _error_reply(req_id, "unknown-op", f"unknown op {op!r} (known: {', '.join(self.ops)})")
        try:
            return {"id": req_id, "ok": True, "result": handler(client, request)}
        except ControlError as error:
            return _error_reply(req_id, error.code, str(error))
        except Exception as error:  # a failing op answers an error; the hypervisor keeps running
            return _error_reply(req_id, "internal", f"{op} failed: {type(error).__name__}: {error}")

    def _queue(self, client: _Client, message: dict[str, Any]) -> None:
        client.out += json.dumps(message, separators=(",", ":")).encode() + b"\n"

    def _send(self, client: _Client) -> bool:  # type: ignore[override]
        if not super()._send(client):
            return False
        if client.closing and not client.out:
            self._drop(client)
            return False
        return True

    # ------------------------------------------------------------------ ops

    def _domain(self, request: dict[str, Any]) -> Domain:
        which = request.get("domain")
        if isinstance(which, bool) or not isinstance(which, (int, str)):
            raise ControlError("bad-request", "\"domain\" must be a domid or a name")
        for d in self.hv.domains.values():
            if d.domid == which or d.name == which or (isinstance(which, str) and which.isdigit()
                                                       and d.domid == int(which)):
                return d
        raise ControlError("no-such-domain", f"no domain {which!r}")

    def _op_list(self, _client: _Client, _request: dict[str, Any]) -> list[dict[str, Any]]:
        now = self.hv.now_ns()
        out = []
        for d in sorted(self.hv.domains.values(), key=lambda d: d.domid):
            running_ns = sum(self.hv.runstate(v)[2] for v in d.vcpus)
            reason = d.shutdown_reason
            online = [v for v in d.vcpus if v.is_up]
            memory = d.memory_stats()
            # xl list's State, from XEN_DOMCTL_getdomaininfo's flags: running, blocked (every online vCPU),
            # paused (by the toolstack), shutdown, crashed, dying.
            flags = (
                "r" if any(v.is_running for v in online) else "-",
                "b" if online and all(v.pause_flags & VPF_blocked for v in online) else "-",
                "p" if d.controller_pause_count else "-",
                "s" if d.is_shut_down and d.state is not DomainState.CRASHED else "-",
                "c" if d.state is DomainState.CRASHED else "-",
                "d" if d.is_dying else "-",
            )
            out.append({
                "domid": d.domid, "name": d.name, "state": d.state.value, "xl_state": "".join(flags),
                "lifecycle": lifecycle_of(d).state.value,
                "vcpus": len(d.vcpus),
                "online_vcpus": sum(1 for v in d.vcpus if v.is_up), "memory_kib": memory.total_kib,
                "max_memory_kib": memory.max_kib, "ballooned_kib": memory.ballooned_kib,
                "claimed_kib": memory.claimed_kib,
                "cpu_time_s": running_ns / 1e9, "uptime_s": (now - d.creation_ns) / 1e9,
                "shutdown_reason": None if reason is None else _shutdown_name(reason),
                "crash_reason": d.crash_reason,
            })  # fmt: skip
        return out

    def _op_vcpu_list(self, _client: _Client, request: dict[str, Any]) -> list[dict[str, Any]]:
        domains = [self._domain(request)] if "domain" in request else sorted(self.hv.domains.values(),
                                                                              key=lambda d: d.domid)
        rows = []
        for d in domains:
            for v in d.vcpus:
                state, entry, *times = self.hv.runstate(v)
                online = v.is_up
                running = v.is_running
                blocked = bool(v.pause_flags & VPF_blocked)
                # xl vcpu-list's State: r(unning) b(locked) p(aused: down); its CPU is '-' when down.
                letters = "--p" if not online else ("r" if running else "-") + ("b" if blocked else "-") + "-"
                rows.append({
                    "name": d.name, "domid": d.domid, "vcpu": v.vcpu_id, "cpu": v.processor if online else None,
                    "state": letters, "online": online, "running": running, "blocked": blocked,
                    "time_s": times[0] / 1e9, "affinity_hard": _affinity(v.hard_affinity), "affinity_soft": "all",
                    "runstate": STATE_NAMES[state], "state_entry_ns": entry,
                    **{f"{name}_ns": t for name, t in zip(STATE_NAMES, times, strict=True)},
                })  # fmt: skip
        return rows

    def _op_pause(self, _client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        d = self._domain(request)
        d.pause()
        return {"domid": d.domid, "state": d.state.value}

    def _op_unpause(self, _client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        d = self._domain(request)
        if d.controller_pause_count == 0:
            raise ControlError("invalid", f"domain {d.domid} is not paused")
        d.unpause()
        return {"domid": d.domid, "state": d.state.value}

    def _op_destroy(self, _client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        d = self._domain(request)
        self.hv.destroy_domain(d)
        return {"domid": d.domid, "state": d.state.value}

    def _op_shutdown(self, _client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        d = self._domain(request)
        reason = request.get("reason", "poweroff")
        if reason not in SHUTDOWN_REASONS:
            raise ControlError("bad-request", f"\"reason\" must be one of {', '.join(SHUTDOWN_REASONS)}")
        if d.state in (DomainState.SHUTDOWN, DomainState.CRASHED):
            raise ControlError("invalid", f"domain {d.domid} is already shut down")
        if self.request_shutdown is None:
            raise ControlError("unsupported", "this hypervisor serves no xenstore control nodes")
        try:
            self.request_shutdown(d, reason)
        except LookupError as error:
            raise ControlError("unsupported", str(error)) from None
        return {"domid": d.domid, "requested": reason, "node": "control/shutdown"}

    def _op_save(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        d = self._movable(request)
        path, checkpoint = request.get("path"), request.get("checkpoint", False)
        if not isinstance(path, str) or not os.path.isabs(path):
            raise ControlError("bad-request", "\"path\" must be an absolute path (the server writes the file)")
        if not isinstance(checkpoint, bool):
            raise ControlError("bad-request", "\"checkpoint\" must be true or false")
        if self.save is None:
            raise ControlError("unsupported", "this hypervisor cannot save domains")
        save = self.save
        return self._moving(lambda: save(d, path, checkpoint, self._progress(client, request, "done", "total")))

    def _op_migrate(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        d = self._movable(request)
        if not isinstance(request.get("address"), str):
            raise ControlError("bad-request", "\"address\" must be unix:PATH, tcp:HOST:PORT or HOST")
        for key, low in (("max_downtime_ms", 1), ("max_rounds", 1)):
            value = request.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < low):
                raise ControlError("bad-request", f"\"{key}\" must be a number of at least {low}")
        if self.migrate is None:
            raise ControlError("unsupported", "this hypervisor cannot migrate domains")
        migrate = self.migrate
        return self._moving(lambda: migrate(d, request, self._progress(client, request, "round", "pages", "left")))

    def _op_mem_set(self, _client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        d = self._domain(request)
        kib = request.get("memory_kib")
        most = d.memory_stats().max_kib
        if isinstance(kib, bool) or not isinstance(kib, int) or not 1024 <= kib <= most:
            raise ControlError("bad-request", f"\"memory_kib\" must be a whole number of KiB, 1024-{most} "
                               "(the domain's maximum)")  # fmt: skip
        if d.state not in (DomainState.RUNNING, DomainState.PAUSED):
            raise ControlError("invalid", f"domain {d.domid} is {d.state.value}")
        if self.set_memory_target is None:
            raise ControlError("unsupported", "this hypervisor serves no xenstore memory/target node")
        try:
            self.set_memory_target(d, kib)
        except LookupError as error:
            raise ControlError("unsupported", str(error)) from None
        return {"domid": d.domid, "target_kib": kib, "memory_kib": d.memory_stats().total_kib, "node": "memory/target"}

    def _movable(self, request: dict[str, Any]) -> Domain:
        d = self._domain(request)
        lifecycle = lifecycle_of(d).state
        if lifecycle not in MOVABLE:
            raise ControlError("invalid", f"domain {d.domid} is {lifecycle.value}")
        return d

    def _progress(self, client: _Client, request: dict[str, Any], *fields: str) -> Callable[..., None]:
        def progress(*values: int) -> None:
            self._queue(client, {"event": "progress", "id": request.get("id"), "op": request.get("op"),
                                 **dict(zip(fields, values, strict=True))})  # fmt: skip
            self._send(client)

        return progress

    def _moving(self, op: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return op()
        except LookupError as error:
            raise ControlError("unsupported", str(error)) from None
        except (RuntimeError, ValueError, OSError) as error:
            raise ControlError("failed", str(error)) from None

    def _op_sched_credit2(self, _client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        d = self._domain(request)
        policy = self.hv.scheduler.policy
        if not isinstance(policy, Credit2Scheduler):
            raise ControlError("unsupported", f"the scheduler is {policy.name}, not credit2")
        values = {}
        for name in ("weight", "cap"):
            value = request.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ControlError("bad-request", f"\"{name}\" must be an integer")
            values[name] = value
        # csched2_dom_cntl: the weight first, then the cap (a bad cap leaves the new weight in place).
        try:
            if values["weight"] is not None:
                policy.set_domain_weight(d, values["weight"])
            if values["cap"] is not None:
                policy.set_domain_cap(d, values["cap"])
        except ValueError as error:
            raise ControlError("invalid", str(error)) from None
        return {"domid": d.domid, "name": d.name, "weight": policy.domain_weight(d), "cap": policy.domain_cap(d)}

    def _op_subscribe(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        interval = request.get("interval", DEFAULT_INTERVAL_S)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) \
                or not MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S:
            raise ControlError("bad-request", f"\"interval\" must be {MIN_INTERVAL_S:g}-{MAX_INTERVAL_S:g} s")
        client.interval_s = float(interval)
        client.next_sample = time.monotonic()
        return {"interval": client.interval_s}

    def _op_unsubscribe(self, client: _Client, _request: dict[str, Any]) -> dict[str, Any]:
        client.interval_s = None
        return {}


def _error_reply(req_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"id": req_id, "ok": False, "error": {"code": code, "message": message}}


def _shutdown_name(reason: int) -> str:
    return SHUTDOWN(reason).name.removeprefix("SHUTDOWN_") if reason in SHUTDOWN._value2member_map_ else str(reason)


def _affinity(mask: int | None) -> str:
    return "all" if mask is None else str(mask)


# ---------------------------------------------------------------------------------------------- client


class ControlClient:
    """A connection to a control socket.

    Raises (on connect):
        OSError: nothing listens at ``path``.
        ControlError: the peer does not speak this protocol version, or refused us.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout_s: float = 5.0) -> None:
        self.path = os.fspath(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout_s)
        try:
            self._sock.connect(self.path)
        except OSError:
            self._sock.close()
            raise
        self._file = self._sock.makefile("rb")
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        greeting = self._read()
        if greeting.get("ok") is False:
            self.close()
            error = greeting.get("error", {})
            raise ControlError(error.get("code", "refused"), error.get("message", "refused"))
        if greeting.get("protocol") != PROTOCOL or greeting.get("version") != PROTOCOL_VERSION:
            self.close()
            raise ControlError("version", f"{self.path} speaks {greeting.get('protocol')!r} version "
                               f"{greeting.get('version')!r}, not {PROTOCOL!r} version {PROTOCOL_VERSION}")
        self.greeting = greeting

    def _read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise ConnectionError(f"{self.path}: the hypervisor closed the connection")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ConnectionError(f"{self.path}: not a control message: {line[:80]!r}")
        return message

    def request(self, op: str, *, on_progress: Callable[[dict[str, Any]], None] | None = None,
                timeout_s: float | None = None, **args: Any) -> Any:
        """Send ``op`` with ``args`` and return its result (sample events that arrive meanwhile are kept for
        :meth:`samples`; the op's progress events go to ``on_progress(event)``). ``timeout_s`` bounds the
        wait for each message (default: the connection's).

        Raises:
            ControlError: the error reply.
        """
        self._next_id += 1
        req_id = self._next_id
        self._sock.sendall(json.dumps({"op": op, "id": req_id, **args}).encode() + b"\n")
        previous = self._sock.gettimeout()
        if timeout_s is not None:
            self._sock.settimeout(timeout_s)
        try:
            return self._reply(req_id, on_progress)
        finally:
            self._sock.settimeout(previous)

    def _reply(self, req_id: int, on_progress: Callable[[dict[str, Any]], None] | None) -> Any:
        while True:
            message = self._read()
            if message.get("event") == "progress" and message.get("id") == req_id:
                if on_progress is not None:
                    on_progress(message)
                continue
            if "event" in message:
                self._events.append(message)
                continue
            if message.get("id") != req_id:
                continue
            if not message.get("ok"):
                error = message.get("error", {})
                raise ControlError(error.get("code", "error"), error.get("message", "error"))
            return message.get("result")

    def samples(self, interval_s: float, *, timeout_s: float | None = None) -> Iterator[Sample]:
        """Subscribe at ``interval_s`` and yield each sample as it arrives (the first at once). Ends with
        ConnectionError when the hypervisor goes away."""
        self.request("subscribe", interval=interval_s)
        self._sock.settimeout(timeout_s if timeout_s is not None else max(10.0, 4 * interval_s))
        while True:
            message = self._events.pop(0) if self._events else self._read()
            if message.get("event") == "sample":
                yield Sample.from_json(message["sample"])

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(OSError):
            self._file.close()
            self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def live_control_sockets(directory: Path | None = None) -> list[Path]:
    """The control sockets in ``directory`` (the default one) that a server listens on, newest first; stale
    files of runs that ended are removed."""
    directory = default_control_dir() if directory is None else directory
    live = []
    with contextlib.suppress(OSError):
        for path in directory.glob("*.sock"):
            if is_listening(str(path)):
                live.append(path)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()
    return sorted(live, key=lambda p: p.stat().st_mtime, reverse=True)
