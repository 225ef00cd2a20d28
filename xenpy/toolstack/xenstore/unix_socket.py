"""The store on a Unix stream socket, as xenstored serves its socket (``tools/xenstored/posix.c``, ``core.c``).

Xen's own clients (libxenstore: ``xenstore-read``, ``xenstore-ls``, ``test-xenstore``...) connect to the socket
``XENSTORED_PATH`` names and speak the ring's protocol over it. Socket clients are privileged, as xenstored's
are: every right on every node, no quota, relative paths under ``/local/domain/0``. A client that announces a
payload longer than ``XENSTORE_PAYLOAD_MAX`` is disconnected.

The server is single-threaded: :meth:`XenstoreSocketServer.poll` does one round of I/O and answers what
arrived, :meth:`~XenstoreSocketServer.serve_forever` loops on it. Serve it from the thread that runs the
hypervisor while guests run (a request can fire a watch on a guest's ring, which the ring backend writes at
once); a thread of its own is fine while no guest CPU runs.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
from dataclasses import dataclass, field

from xenpy.toolstack.socket_server import UnixSocketServer
from xenpy.toolstack.xenstore.store import Connection, Store
from xenpy.toolstack.xenstore.wire import MessageReader, ProtocolError


@dataclass
class _Client:
    sock: socket.socket
    conn: Connection
    reader: MessageReader = field(default_factory=MessageReader)
    out: bytearray = field(default_factory=bytearray)


class XenstoreSocketServer(UnixSocketServer):
    """Serves ``store`` on a Unix socket at ``path`` (an existing socket file there is replaced).

    Attributes:
        path: the socket's path.
        clients: clients connected now.
    """

    def __init__(self, store: Store, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        self.store = store
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._own_sockets += [self._wake_r, self._wake_w]

    def poll(self, timeout: float | None = 0.0) -> None:
        """Accept, read and answer what is ready (waiting up to ``timeout`` seconds), then send queued output."""
        for sock, events in self._ready(timeout):
            if sock is self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    while self._wake_r.recv(4096):
                        pass
            else:
                client = self._clients.get(sock)
                if client is not None and events & selectors.EVENT_READ:
                    self._receive(client)
        for client in list(self._clients.values()):
            self._send(client)

    def serve_forever(self, stop: threading.Event, interval_s: float = 0.1) -> None:
        """:meth:`poll` until ``stop`` is set."""
        while not stop.is_set() and not self._closed:
            self.poll(interval_s)

    # ------------------------------------------------------------------ per client

    def _new_client(self, sock: socket.socket) -> _Client:
        conn = self.store.connect_socket()
        conn.on_output = self._wake
        return _Client(sock, conn)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _receive(self, client: _Client) -> None:
        data = self._recv(client)
        if data is None:
            return
        try:
            messages = client.reader.feed(data)
        except ProtocolError:
            self._drop(client)
            return
        for message in messages:
            try:
                client.conn.handle(message.type, message.req_id, message.tx_id, message.payload)
            except Exception:  # a failure in the store drops this client, never the server
                self._drop(client)
                return

    def _send(self, client: _Client) -> bool:  # type: ignore[override]
        with self.store.lock:
            while (message := client.conn.pop_output()) is not None:
                client.out += message
        return super()._send(client)

    def _drop(self, client: _Client) -> None:  # type: ignore[override]
        super()._drop(client)
        self.store.disconnect(client.conn)
