"""The xenstore wire protocol (``public/io/xs_wire.h``): message headers and a byte-stream reassembler.

The same byte stream runs over a domain's ring page and over xenstored's Unix socket: each message is an
``xsd_sockmsg`` header (little endian on every guest width) and ``len`` bytes of payload. A stream whose header
announces more than ``XENSTORE_PAYLOAD_MAX`` bytes is broken beyond repair (xenstored's ``handle_input`` drops
the connection): :class:`MessageReader` reports it and accepts nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenpy.abi import x86_64
from xenpy.abi.cstruct import fast_codec
from xenpy.abi.io_xs_wire import XENSTORE_PAYLOAD_MAX

_HEADER = fast_codec(x86_64.xsd_sockmsg)
#: Bytes of a message header.
HEADER_SIZE = _HEADER.size


@dataclass(frozen=True)
class Message:
    """One message: the header fields and the payload."""

    type: int
    req_id: int
    tx_id: int
    payload: bytes

    def encode(self) -> bytes:
        """Header and payload, as they go on the wire."""
        return encode(self.type, self.req_id, self.tx_id, self.payload)


def encode(msg_type: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    """One message as bytes: ``xsd_sockmsg`` then ``payload``."""
    return _HEADER.pack(msg_type, req_id, tx_id, len(payload)) + payload


def decode_header(data: bytes) -> tuple[int, int, int, int]:
    """``(type, req_id, tx_id, len)`` of the header at the start of ``data``."""
    return _HEADER.unpack_from(data)


class ProtocolError(Exception):
    """The peer announced a payload longer than ``XENSTORE_PAYLOAD_MAX``."""


class MessageReader:
    """Reassembles messages from a byte stream that arrives in pieces of any size.

    Attributes:
        broken: a header announced too long a payload; :meth:`feed` accepts nothing more.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.broken = False

    @property
    def wanted(self) -> int:
        """Bytes still missing to complete the message being received (a header first)."""
        if len(self._buffer) < HEADER_SIZE:
            return HEADER_SIZE - len(self._buffer)
        return HEADER_SIZE + decode_header(self._buffer)[3] - len(self._buffer)

    @property
    def partial(self) -> bool:
        """Part of a message has arrived."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        """Take ``data`` (at most :attr:`wanted` bytes are useful at a time, more is fine) and return the
        messages it completes.

        Raises:
            ProtocolError: a header announced a payload longer than ``XENSTORE_PAYLOAD_MAX``; the reader is
                :attr:`broken` from then on.
        """
        if self.broken:
            raise ProtocolError("the stream is broken")
        messages = []
        view = memoryview(data)
        while view:
            take = min(self.wanted, len(view))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) == HEADER_SIZE:
                length = decode_header(self._buffer)[3]
                if length > XENSTORE_PAYLOAD_MAX:
                    self.broken = True
                    raise ProtocolError(f"payload of {length} bytes announced (at most {XENSTORE_PAYLOAD_MAX})")
            if len(self._buffer) >= HEADER_SIZE and self.wanted == 0:
                msg_type, req_id, tx_id, _length = decode_header(self._buffer)
                messages.append(Message(msg_type, req_id, tx_id, bytes(self._buffer[HEADER_SIZE:])))
                self._buffer.clear()
        return messages

    def reset(self) -> None:
        """Forget a partial message."""
        self._buffer.clear()
