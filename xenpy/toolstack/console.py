"""The PV console backend: serves a domain's console ring both ways (xenconsoled's job).

Output: the guest writes into ``xencons_interface.out`` (a 2048-byte ring, ``public/io/console.h``), advances
``out_prod`` and notifies the console event channel. The backend copies the bytes between ``out_cons`` and
``out_prod`` into :attr:`Domain.console`, advances ``out_cons`` and notifies the guest back, so a guest waiting
for space can continue.

Input: :meth:`ConsoleRingBackend.feed` queues bytes for the guest (keyboard input, in ``xenpy run``) and moves as
many as fit into ``xencons_interface.in`` (1024 bytes): written at ``in_prod`` modulo the ring size, then
``in_prod`` advanced, then the guest notified, as xenconsoled's ``handle_tty_read`` does. The guest consumes
them by advancing ``in_cons`` and notifies the port; the backend then moves the next queued bytes. Nothing is
dropped: bytes that do not fit stay queued, in order. When ``in_prod - in_cons`` exceeds the ring size the ring
is corrupt and, as xenconsoled does, nothing more is written until the guest repairs it.

In xenpy the backend runs inside the hypervisor process, attached to the guest's unbound console port
(:meth:`EventChannels.attach_backend`): it serves the ring when the guest sends on that port, and drains it
once more when the domain stops, so no byte the guest produced is lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.toolstack.ring import FlexRing, notify_guest

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.hypervisor import Hypervisor


class ConsoleRingBackend:
    """Serves the console ring of one domain.

    Args:
        hv: the hypervisor.
        domain: the guest.
        ring_mfn: machine frame of the guest's ``xencons_interface`` (``start_info.console.domU.mfn``).
        port: the guest's console event channel (``start_info.console.domU.evtchn``), unbound.

    Attributes:
        total_bytes: bytes taken from the ring so far.
        bad_indices: the guest left ``out_prod - out_cons`` larger than the ring; the backend stopped reading
            (xenconsoled does the same and marks the console broken).
        total_input_bytes: bytes put into the input ring so far.
    """

    def __init__(self, hv: Hypervisor, domain: Domain, ring_mfn: int, port: int) -> None:
        self.hv = hv
        self.domain = domain
        self.port = port
        self.total_bytes = 0
        self.bad_indices = False
        self.total_input_bytes = 0
        self._input = bytearray()
        layout = domain.abi.xencons_interface
        self._out = FlexRing(hv.machine, ring_mfn, layout, "out", "out_cons", "out_prod")
        self._in = FlexRing(hv.machine, ring_mfn, layout, "in", "in_cons", "in_prod")
        domain.evtchn.attach_backend(port, self._on_event)

    def _on_event(self) -> None:
        """The guest notified the console port: take its output, and give it more input if it made room."""
        self.drain()
        self._push_input()

    def drain(self) -> int:
        """Move everything the guest produced into the console stream; returns the number of bytes moved."""
        if self.bad_indices or self.domain.is_dying:
            return 0
        ring = self._out
        cons, prod = ring.cons, ring.prod
        pending = ring.used(cons, prod)
        if pending == 0:
            return 0
        if pending > ring.size:
            self.bad_indices = True
            return 0
        data = ring.read(cons, pending)
        self.domain.console.write(data)
        ring.cons = prod
        self.total_bytes += len(data)
        notify_guest(self.domain, self.port)
        return len(data)

    @property
    def pending_input(self) -> int:
        """Bytes fed but not yet in the input ring (waiting for the guest to make room)."""
        return len(self._input)

    def feed(self, data: bytes) -> int:
        """Queue ``data`` for the guest's console input and move what fits into the input ring.

        Returns:
            The number of bytes put into the ring now (queued bytes from earlier calls first); the rest stays
            queued (:attr:`pending_input`) until the guest consumes input and notifies the port.
        """
        self._input += data
        return self._push_input()

    def _push_input(self) -> int:
        """``handle_tty_read``: as many queued bytes as the ring has room for, then ``in_prod``, then notify."""
        if not self._input or self.domain.is_dying:
            return 0
        ring = self._in
        cons, prod = ring.cons, ring.prod
        used = ring.used(cons, prod)
        if used >= ring.size:  # full, or corrupt indices (xenconsoled: "ring is screwed: ignore it")
            return 0
        length = min(ring.size - used, len(self._input))
        ring.write(prod, self._input[:length])
        ring.prod = prod + length
        del self._input[:length]
        self.total_input_bytes += length
        notify_guest(self.domain, self.port)
        return length

    def close(self) -> None:
        """Drain what is left and stop serving (queued input is dropped)."""
        self.drain()
        self._input.clear()
        evtchn = self.domain.evtchn
        if evtchn.port_is_valid(self.port) and evtchn.ports[self.port].backend == self._on_event:
            evtchn.ports[self.port].backend = None
