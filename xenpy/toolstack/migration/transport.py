"""The links a migration stream travels on: a Unix socket, TCP, or ssh to another host (as ``xl migrate HOST``).

An address is ``unix:PATH``, ``tcp:HOST:PORT``, ``-`` (the receiver's standard input and output, what ssh
connects to) or, for the sender only, a plain ``HOST`` (or ``USER@HOST``): then ``ssh HOST xenpy restore
--incoming -`` carries it. The sender writes the xl save file; once the receiver has restored the domain it
answers one line, :data:`VERDICT_OK` or ``xenpy-migrate: error: MESSAGE``, and only then is the source destroyed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from typing import BinaryIO

#: The receiver's answer when the domain is restored and ready to run.
VERDICT_OK = b"xenpy-migrate: ok\n"
VERDICT_ERROR = b"xenpy-migrate: error: "
#: What runs on the other host for a ``HOST`` address.
REMOTE_COMMAND = "xenpy restore --incoming -"


class MigrationError(RuntimeError):
    """A migration link could not be made, or the receiver refused the domain."""


@dataclass(frozen=True)
class Address:
    """A parsed migration address: ``kind`` is ``unix``, ``tcp``, ``stdio`` or ``ssh``."""

    kind: str
    target: str = ""
    port: int = 0

    def __str__(self) -> str:
        return {"unix": f"unix:{self.target}", "tcp": f"tcp:{self.target}:{self.port}", "stdio": "-",
                "ssh": self.target}[self.kind]  # fmt: skip


def parse_address(text: str) -> Address:
    """An :class:`Address` from its text.

    Raises:
        ValueError: not an address (the message says what one looks like).
    """
    if text == "-":
        return Address("stdio")
    if text.startswith("unix:") and len(text) > 5:
        return Address("unix", text[5:])
    if text.startswith("tcp:"):
        host, _, port = text[4:].rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r}: a TCP address is tcp:HOST:PORT (PORT 1-65535)")
        return Address("tcp", host or "127.0.0.1", int(port))
    if text and not text.startswith(("-", "/")) and ":" not in text and " " not in text:
        return Address("ssh", text)
    raise ValueError(f"{text!r} is not a migration address: unix:PATH, tcp:HOST:PORT, HOST (over ssh) or -")


@dataclass
class Link:
    """Both directions of a migration link."""

    wfile: BinaryIO
    rfile: BinaryIO
    _closers: list = field(default_factory=list)

    def send_verdict(self, error: str | None = None) -> None:
        """The receiver's answer."""
        line = VERDICT_OK if error is None else VERDICT_ERROR + error.replace("\n", " ").encode() + b"\n"
        self.wfile.write(line)
        self.wfile.flush()

    def read_verdict(self) -> None:
        """Wait for the receiver's answer.

        Raises:
            MigrationError: the receiver refused the domain, or the link closed first.
        """
        try:
            line = self.rfile.readline(4096)
        except OSError as error:
            raise MigrationError(f"no answer from the receiver: {error}") from None
        if line == VERDICT_OK:
            return
        if line.startswith(VERDICT_ERROR):
            raise MigrationError("the receiver refused the domain: " + line[len(VERDICT_ERROR) :].decode(
                errors="replace").strip())  # fmt: skip
        raise MigrationError("the receiver closed the link without restoring the domain")

    def close(self) -> None:
        """Close both directions."""
        for close in reversed(self._closers):
            with contextlib.suppress(OSError):
                close()
        self._closers.clear()


def _socket_link(sock: socket.socket) -> Link:
    link = Link(sock.makefile("wb"), sock.makefile("rb"))
    link._closers += [sock.close, link.rfile.close, link.wfile.close]
    return link


def connect(address: Address, *, timeout_s: float = 30.0, ssh_command: str = "ssh",
            remote_command: str = REMOTE_COMMAND) -> Link:  # fmt: skip
    """The sender's end of a link to ``address``.

    Raises:
        MigrationError: nothing listens there, or ssh cannot be started.
    """
    try:
        if address.kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout_s)
            sock.connect(address.target)
            return _socket_link(sock)
        if address.kind == "tcp":
            return _socket_link(socket.create_connection((address.target, address.port), timeout=timeout_s))
    except OSError as error:
        raise MigrationError(f"cannot connect to {address}: {error.strerror or error}") from None
    if address.kind == "ssh":
        argv = [*shlex.split(ssh_command), address.target, *shlex.split(remote_command)]
        try:
            process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except OSError as error:
            raise MigrationError(f"cannot run {argv[0]}: {error.strerror or error}") from None
        assert process.stdin is not None and process.stdout is not None
        link = Link(process.stdin, process.stdout)  # type: ignore[arg-type]
        link._closers += [process.stdout.close, process.stdin.close]
        return link
    raise MigrationError(f"cannot send to {address}: the sender needs unix:PATH, tcp:HOST:PORT or HOST")


class Listener:
    """The receiver's end: listens on ``address`` (``stdio``: standard input and output) for one sender."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        if address.kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address.target)
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.bind(address.target)
            os.chmod(address.target, 0o600)
        elif address.kind == "tcp":
            self._sock = socket.create_server((address.target, address.port))
        elif address.kind != "stdio":
            raise MigrationError(f"cannot listen on {address}: use unix:PATH, tcp:HOST:PORT or -")
        if self._sock is not None:
            self._sock.listen(1)

    def accept(self) -> Link:
        """Wait for the sender."""
        if self._sock is None:
            return Link(sys.stdout.buffer, sys.stdin.buffer)
        conn, _peer = self._sock.accept()
        return _socket_link(conn)

    def close(self) -> None:
        """Stop listening (and remove a Unix socket's file)."""
        if self._sock is not None:
            self._sock.close()
            if self.address.kind == "unix":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.address.target)
