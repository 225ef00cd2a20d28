"""The byte rings of Xen's PV protocols (``public/io/ring.h``'s flex rings), as a backend in the host sees them.

A ring is a data array of a power-of-two size in a page the guest shares, with two free-running 32-bit
indices, ``cons`` and ``prod``: the bytes ``[cons, prod)`` (modulo the size) are the ones written and not yet
consumed. The console (``xencons_interface``: ``in`` and ``out``) and the xenstore (``xenstore_domain_interface``:
``req`` and ``rsp``) each have two, one per direction. The guest may write anything into the indices; a backend
checks ``used()`` against the size before it trusts them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.core.memory import PAGE_SHIFT

if TYPE_CHECKING:
    from xenpy.abi.cstruct import CStruct
    from xenpy.core.domain import Domain
    from xenpy.core.memory import MachineMemory

_U32 = 0xFFFF_FFFF


class FlexRing:
    """One direction of a byte ring in the guest frame ``mfn``: the array member ``data`` and the index members
    ``cons`` and ``prod`` of ``layout``.

    Attributes:
        size: bytes of the data array.
    """

    def __init__(self, machine: MachineMemory, mfn: int, layout: CStruct, data: str, cons: str, prod: str) -> None:
        base = mfn << PAGE_SHIFT
        self._machine = machine
        self._data = base + layout.offset_of(data)
        self._cons = base + layout.offset_of(cons)
        self._prod = base + layout.offset_of(prod)
        self.size: int = layout.type_of(data).size

    @property
    def cons(self) -> int:
        return self._machine.read_u32(self._cons)

    @cons.setter
    def cons(self, value: int) -> None:
        self._machine.write_u32(self._cons, value & _U32)

    @property
    def prod(self) -> int:
        return self._machine.read_u32(self._prod)

    @prod.setter
    def prod(self, value: int) -> None:
        self._machine.write_u32(self._prod, value & _U32)

    def used(self, cons: int, prod: int) -> int:
        """Bytes between the indices ``cons`` and ``prod`` (more than :attr:`size` if the guest broke them)."""
        return (prod - cons) & _U32

    def read(self, cons: int, length: int) -> bytes:
        """The ``length`` bytes from index ``cons`` (wrapping around the array)."""
        chunks = []
        while length:
            index = cons % self.size
            piece = min(length, self.size - index)
            chunks.append(self._machine.read(self._data + index, piece))
            cons, length = cons + piece, length - piece
        return b"".join(chunks)

    def write(self, prod: int, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` from index ``prod`` (wrapping around the array); the indices are not moved."""
        data = memoryview(data)
        while data:
            index = prod % self.size
            piece = min(len(data), self.size - index)
            self._machine.write(self._data + index, bytes(data[:piece]))
            prod, data = prod + piece, data[piece:]


def notify_guest(domain: Domain, port: int) -> None:
    """Set the guest's event channel ``port`` pending, if it is still usable (the backend's notify)."""
    evtchn = domain.evtchn
    if evtchn.port_is_valid(port):
        chn = evtchn.ports[port]
        if chn.usable:
            evtchn.port_set_pending(chn.notify_vcpu_id, chn)
