"""Console input: the host's standard input to a guest's console ring, as ``xl console`` and xenconsoled do.

:class:`ConsoleInput` reads a file descriptor (a terminal, a pipe, a file) without blocking the guest: the run
loop (:func:`xenpy.toolstack.run.run_domain`) calls :meth:`ConsoleInput.poll` between scheduler steps, which
reads what is ready (``select`` with a zero or short timeout) and hands it to the console backend's
:meth:`~xenpy.toolstack.console.ConsoleRingBackend.feed`. On a terminal, :func:`raw_terminal` turns off echo,
line buffering and the signal keys for the run, so each key goes to the guest as typed (Ctrl-C included), and
the escape character (Ctrl-], as ``xl console``) ends the run.

Invariants:

* Input is read only while the backend holds fewer than :data:`MAX_QUEUED_INPUT` bytes the guest has not taken,
  so a guest that reads slowly (or never) leaves the rest unread in the pipe or terminal, as xenconsoled does,
  and host memory stays bounded.
* Bytes reach the guest in the order read; the escape byte and everything after it in the same read are not
  sent. After end of file nothing more is read.
* :func:`raw_terminal` restores the terminal's attributes on exit, however the run ends.
"""

from __future__ import annotations

import os
import select
import stat
import termios
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from xenpy.abi.io_console import XENCONS_IN_SIZE

if TYPE_CHECKING:
    from xenpy.toolstack.console import ConsoleRingBackend

__all__ = [
    "ESCAPE_CHAR",
    "MAX_QUEUED_INPUT",
    "ConsoleInput",
    "input_kind",
    "raw_terminal",
]

#: Ctrl-] (0x1d), ``xl console``'s escape character: ends the run when typed on a terminal.
ESCAPE_CHAR = 0x1D
#: Most bytes waiting for room in the guest's input ring before reading stops (one ring's worth).
MAX_QUEUED_INPUT = XENCONS_IN_SIZE
_READ_NR_BYTES = 4096


def input_kind(fd: int) -> str | None:
    """What ``fd`` is, as far as console input goes: ``"tty"`` (a terminal whose foreground job this process is
    in), ``"pipe"`` (a FIFO or socket), ``"file"``, or None (closed, ``/dev/null`` or another device, or the
    terminal of a background job: nothing to forward)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return None
    if os.isatty(fd):
        return None if _in_background_of(fd) else "tty"
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "pipe"
    if stat.S_ISREG(mode):
        return "file"
    return None


def _in_background_of(fd: int) -> bool:
    """True if the terminal ``fd`` is this process's controlling terminal and another process group is in its
    foreground (a background job may neither read its terminal nor change its modes)."""
    try:
        foreground = os.tcgetpgrp(fd)
        return foreground != os.getpgrp() and os.getsid(foreground) == os.getsid(0)
    except OSError:  # not our controlling terminal, or no foreground group
        return False


@contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Put the terminal ``fd`` in raw input mode for the block, then restore it.

    Input: no echo, no line editing, no signal keys (Ctrl-C, Ctrl-Z, Ctrl-\\ reach the guest), no CR-to-NL or
    flow-control translation; reads return as soon as one byte is there. Output processing is kept, so the
    guest's bare newlines still start a new line.
    """
    saved = termios.tcgetattr(fd)
    raw = termios.tcgetattr(fd)
    raw[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON)
    raw[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
    raw[6][termios.VMIN] = 1
    raw[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, raw)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class ConsoleInput:
    """Forwards what can be read from ``fd`` to a guest's console input ring.

    Args:
        backend: the guest's console backend.
        fd: the file descriptor to read (left open; the caller owns it).
        escape: the byte that ends the run (:data:`ESCAPE_CHAR` on a terminal), or None for none.
        flush_output: deliver the guest's unterminated output line after each poll (an interactive session
            then shows prompts at once).

    Attributes:
        detached: the escape byte was read.
        at_eof: ``fd`` reached end of file (or could not be read).
        total_bytes: bytes read and given to the backend.
    """

    def __init__(
        self, backend: ConsoleRingBackend, fd: int, *, escape: int | None = None, flush_output: bool = False
    ) -> None:
        self.backend = backend
        self.fd = fd
        self.escape = escape
        self.flush_output = flush_output
        self.detached = False
        self.at_eof = False
        self.total_bytes = 0

    @property
    def is_open(self) -> bool:
        """More input may come (neither end of file nor the escape yet)."""
        return not (self.detached or self.at_eof)

    def poll(self, wait_s: float = 0.0) -> int:
        """Read what is ready (waiting up to ``wait_s`` seconds for it) and feed it to the guest.

        Returns:
            The number of bytes read and queued for the guest.
        """
        if self.flush_output:
            self.backend.domain.console.flush()
        if not self.is_open:
            return 0
        room = MAX_QUEUED_INPUT - self.backend.pending_input
        if room <= 0:
            return 0
        try:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, wait_s))
            if not ready:
                return 0
            data = os.read(self.fd, min(room, _READ_NR_BYTES))
        except (OSError, ValueError):
            self.at_eof = True
            return 0
        if not data:
            self.at_eof = True
            return 0
        if self.escape is not None:
            cut = data.find(bytes([self.escape]))
            if cut >= 0:
                data = data[:cut]
                self.detached = True
        if data:
            self.total_bytes += len(data)
            self.backend.feed(data)
        return len(data)
