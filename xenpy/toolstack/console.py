"""The PV console backend: drains a domain's console ring into its console stream (xenconsoled's job).

The guest writes into ``xencons_interface.out`` (a 2048-byte ring, ``public/io/console.h``), advances
``out_prod`` and notifies the console event channel. The backend copies the bytes between ``out_cons`` and
``out_prod`` into :attr:`Domain.console`, advances ``out_cons`` and notifies the guest back, so a guest waiting
for space can continue. In xenpy the backend runs inside the hypervisor process, attached to the guest's
unbound console port (:meth:`EventChannels.attach_backend`): it drains the ring when the guest sends on that
port, and once more when the domain stops, so no byte the guest produced is lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.io_console import XENCONS_OUT_SIZE
from xenpy.core.memory import PAGE_SHIFT

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.hypervisor import Hypervisor

_U32 = 0xFFFF_FFFF


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
    """

    def __init__(self, hv: Hypervisor, domain: Domain, ring_mfn: int, port: int) -> None:
        self.hv = hv
        self.domain = domain
        self.port = port
        self.total_bytes = 0
        self.bad_indices = False
        layout = domain.abi.xencons_interface
        base = ring_mfn << PAGE_SHIFT
        self._out_maddr = base + layout.offset_of("out")
        self._out_cons_maddr = base + layout.offset_of("out_cons")
        self._out_prod_maddr = base + layout.offset_of("out_prod")
        domain.evtchn.attach_backend(port, self.drain)

    def drain(self) -> int:
        """Move everything the guest produced into the console stream; returns the number of bytes moved."""
        if self.bad_indices or self.domain.is_dying:
            return 0
        machine = self.hv.machine
        cons = machine.read_u32(self._out_cons_maddr)
        prod = machine.read_u32(self._out_prod_maddr)
        pending = (prod - cons) & _U32
        if pending == 0:
            return 0
        if pending > XENCONS_OUT_SIZE:
            self.bad_indices = True
            return 0
        chunks = []
        while cons != prod:
            index = cons % XENCONS_OUT_SIZE
            length = min(XENCONS_OUT_SIZE - index, (prod - cons) & _U32)
            chunks.append(machine.read(self._out_maddr + index, length))
            cons = (cons + length) & _U32
        data = b"".join(chunks)
        self.domain.console.write(data)
        machine.write_u32(self._out_cons_maddr, cons)
        self.total_bytes += len(data)
        self._notify_guest()
        return len(data)

    def _notify_guest(self) -> None:
        evtchn = self.domain.evtchn
        if evtchn.port_is_valid(self.port):
            chn = evtchn.ports[self.port]
            if chn.usable:
                evtchn.port_set_pending(chn.notify_vcpu_id, chn)

    def close(self) -> None:
        """Drain what is left and stop serving."""
        self.drain()
        evtchn = self.domain.evtchn
        if evtchn.port_is_valid(self.port) and evtchn.ports[self.port].backend == self.drain:
            evtchn.ports[self.port].backend = None
