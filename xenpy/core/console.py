"""A domain's console stream: the bytes a guest prints, in order, split into lines for listeners.

Xen sends what a domain writes with ``CONSOLEIO_write`` (``xen/drivers/char/console.c:guest_console_write``)
to its own console: the hardware domain's bytes go out raw, a domU's are buffered up to a newline, stripped of
non-printable characters and printed by ``guest_printk`` with a ``(d<domid>)`` prefix. xenpy keeps each
domain's bytes exactly as the guest wrote them (no prefix, no filtering) in a :class:`ConsoleStream`; how they
are shown (prefixed, to a terminal, to a file) is up to whoever listens.

Invariants:

* Bytes are kept in the order they were written; :attr:`ConsoleStream.total_bytes` counts every byte ever
  written. The history keeps the most recent ``history_limit`` bytes; older ones are counted in
  :attr:`ConsoleStream.dropped_bytes`, so a guest that prints without end cannot exhaust host memory.
* Listeners receive the stream as chunks: each complete line with its ``b"\\n"``, as soon as it is complete.
  An unterminated last line is held back (never lost) until it is completed or :meth:`ConsoleStream.flush`
  is called. A line longer than ``max_line_bytes`` is delivered in pieces of ``max_line_bytes`` bytes (only
  the last one ends in ``b"\\n"``), so no chunk is longer than ``max_line_bytes``.
* The concatenation of every chunk a listener received since it subscribed, followed by
  :attr:`ConsoleStream.partial_line`, is exactly the bytes written since then.
"""

from __future__ import annotations

from collections.abc import Callable

#: ``listener(chunk)``: a complete line (ending in ``b"\\n"``) or a flushed / overlong partial line.
ConsoleListener = Callable[[bytes], None]

#: Default number of most recent bytes a stream keeps.
DEFAULT_HISTORY_LIMIT = 1 << 20
#: Default longest chunk given to listeners.
DEFAULT_MAX_LINE_BYTES = 4096


class ConsoleStream:
    """The console output of one domain.

    Args:
        history_limit: the most recent bytes kept for :attr:`data` (> 0).
        max_line_bytes: the longest chunk given to listeners: longer lines are delivered in pieces, and a
            partial line this long is delivered without waiting for its ``b"\\n"`` (> 0).

    Attributes:
        total_bytes: bytes written since creation (including dropped ones).
        dropped_bytes: bytes no longer in the history (``total_bytes - len(data)``).
    """

    def __init__(
        self, *, history_limit: int = DEFAULT_HISTORY_LIMIT, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    ) -> None:
        if history_limit <= 0 or max_line_bytes <= 0:
            raise ValueError("history_limit and max_line_bytes must be positive")
        self.history_limit = history_limit
        self.max_line_bytes = max_line_bytes
        self.total_bytes = 0
        self.dropped_bytes = 0
        self._history = bytearray()
        self._pending = bytearray()  # written, not yet delivered to listeners (no b"\n" in it)
        self._listeners: list[ConsoleListener] = []

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` and deliver every line it completes to the listeners, in order."""
        chunk = bytes(data)
        if not chunk:
            return
        self.total_bytes += len(chunk)
        history = self._history
        history += chunk
        excess = len(history) - self.history_limit
        if excess > 0:
            del history[:excess]
            self.dropped_bytes += excess
        pending = self._pending
        pending += chunk
        out: list[bytes] = []
        start = 0
        while True:
            nl = pending.find(b"\n", start)
            if nl < 0:
                break
            line_end = nl + 1
            # An overlong line is cut into max_line_bytes pieces before its newline.
            while line_end - start > self.max_line_bytes:
                out.append(bytes(pending[start : start + self.max_line_bytes]))
                start += self.max_line_bytes
            out.append(bytes(pending[start:line_end]))
            start = line_end
        while len(pending) - start >= self.max_line_bytes:
            out.append(bytes(pending[start : start + self.max_line_bytes]))
            start += self.max_line_bytes
        del pending[:start]
        self._deliver(out)

    def flush(self) -> None:
        """Deliver the held-back partial line (if any) to the listeners now, e.g. when the domain dies.

        A later write that continues the same line delivers only its new bytes.
        """
        if self._pending:
            chunk = bytes(self._pending)
            self._pending.clear()
            self._deliver([chunk])

    def _deliver(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            for listener in list(self._listeners):
                listener(chunk)

    # ------------------------------------------------------------------ listeners

    def listen(self, listener: ConsoleListener) -> Callable[[], None]:
        """Call ``listener(chunk)`` for every chunk from now on (see the module docstring).

        Returns:
            A function that removes the listener.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # ------------------------------------------------------------------ reading

    @property
    def data(self) -> bytes:
        """The kept history: the last ``history_limit`` bytes written, in order."""
        return bytes(self._history)

    @property
    def partial_line(self) -> bytes:
        """The bytes written since the last delivered chunk (an unterminated line, held back)."""
        return bytes(self._pending)

    def lines(self) -> list[bytes]:
        """The kept history split into lines, without their ``b"\\n"``; an unterminated last line is included."""
        parts = bytes(self._history).split(b"\n")
        if parts and parts[-1] == b"":
            parts.pop()
        return parts

    def text(self, encoding: str = "utf-8", errors: str = "replace") -> str:
        """The kept history decoded (undecodable bytes replaced by default)."""
        return bytes(self._history).decode(encoding, errors)

    def __len__(self) -> int:
        return len(self._history)

    def __repr__(self) -> str:
        return f"<ConsoleStream {self.total_bytes} bytes, {len(self._listeners)} listeners>"
