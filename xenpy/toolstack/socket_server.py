"""A single-threaded server on a Unix stream socket: the plumbing the xenstore and control sockets share.

:class:`UnixSocketServer` binds the socket (replacing a stale socket file; a live one is refused or replaced,
as the subclass says), accepts clients, tells the subclass which sockets are readable, sends each client's
queued output without blocking, and closes everything (removing the socket file). The subclass makes the client
records (anything with ``sock`` and ``out``) and answers what they send.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
from collections.abc import Iterator
from typing import Any, Protocol, Self

_RECV_SIZE = 65536


class SocketClient(Protocol):
    """A connected client: its socket and the output queued for it."""

    sock: socket.socket
    out: bytearray


def is_listening(path: str) -> bool:
    """Whether a server accepts connections on the Unix socket at ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


class UnixSocketServer:
    """Listens on ``path``.

    Args:
        path: the socket's path.
        mode: the socket file's mode (None: as the umask leaves it).
        replace_live: True replaces a socket another server listens on; False refuses it.

    Raises:
        OSError: the socket cannot be made (``EADDRINUSE``: another server listens there and ``replace_live`` is
            False).
    """

    def __init__(self, path: str | os.PathLike[str], *, mode: int | None = None, replace_live: bool = True) -> None:
        self.path = os.fspath(path)
        if os.path.exists(self.path):
            if not replace_live and is_listening(self.path):
                raise OSError(errno.EADDRINUSE, "another server listens on this socket", self.path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o777 & ~mode) if mode is not None else None
        try:
            self._listener.bind(self.path)
        except OSError:
            self._listener.close()
            raise
        finally:
            if old_umask is not None:
                os.umask(old_umask)
        if mode is not None:
            os.chmod(self.path, mode)
        self._listener.listen(16)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._clients: dict[socket.socket, Any] = {}
        self._own_sockets: list[socket.socket] = [self._listener]
        self._closed = False

    @property
    def clients(self) -> int:
        """Clients connected now."""
        return len(self._clients)

    def _new_client(self, sock: socket.socket) -> SocketClient:
        """The record of a client just accepted (its greeting, if any, queued in ``out``)."""
        raise NotImplementedError

    def _ready(self, timeout: float | None) -> Iterator[tuple[socket.socket, int]]:
        """Accept what waits (waiting up to ``timeout`` s) and yield every other readable socket and its events."""
        for key, events in self._selector.select(timeout):
            sock = key.fileobj
            if sock is self._listener:
                self._accept()
            else:
                yield sock, events  # type: ignore[misc]

    def _accept(self) -> None:
        try:
            sock, _address = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setblocking(False)
        self._clients[sock] = self._new_client(sock)
        self._selector.register(sock, selectors.EVENT_READ, None)

    def _recv(self, client: SocketClient) -> bytes | None:
        """What ``client`` sent, or None: nothing yet, or the client went away (then it is dropped)."""
        try:
            data = client.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return None
        return data

    def _send(self, client: SocketClient) -> bool:
        """Send what the socket takes of ``client.out``; False if the client was dropped (its socket failed)."""
        if client.out:
            try:
                sent = client.sock.send(client.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._drop(client)
                return False
            del client.out[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.out else 0)
        self._selector.modify(client.sock, events, None)
        return True

    def _drop(self, client: SocketClient) -> None:
        """Disconnect ``client``."""
        self._clients.pop(client.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(client.sock)
        client.sock.close()

    def close(self) -> None:
        """Disconnect every client and remove the socket."""
        if self._closed:
            return
        self._closed = True
        for client in list(self._clients.values()):
            self._drop(client)
        self._selector.close()
        for sock in self._own_sockets:
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
