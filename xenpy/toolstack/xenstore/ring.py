"""A domain's xenstore ring, served from the host as xenstored serves it (``tools/xenstored/domain.c``).

The guest writes requests into ``xenstore_domain_interface.req`` (``public/io/xs_wire.h``), advances
``req_prod`` and notifies its store event channel (``start_info.store_evtchn``); replies and watch events come
back through ``rsp``/``rsp_prod``. The backend is attached to the guest's unbound store port
(:meth:`EventChannels.attach_backend`): on each notification it writes what output it holds back into ``rsp``,
consumes every whole or partial request from ``req`` (a message may wrap around the ring and arrive over many
notifications), answers each through the :class:`~xenpy.toolstack.xenstore.store.Store` and notifies the guest
when it moved anything. Output the ring has no room for waits for the guest's next notification, and while
``QUOTA_OUTSTANDING`` replies wait no request is read (xenstored's ``domain_can_read``).

Like Xen 4.20's xenstored, the backend leaves ``server_features`` and ``connection`` as the domain builder left
them (0: no feature, ``XENSTORE_CONNECTED``). A guest that breaks the protocol (``prod - cons`` larger than the
ring on either side, a header announcing more than ``XENSTORE_PAYLOAD_MAX`` bytes) gets its connection ignored
as xenstored's ``ignore_connection`` does: ``error`` in the page is set (``XENSTORE_ERROR_RINGIDX``,
``XENSTORE_ERROR_PROTO``), its watches and transactions are dropped and the ring is no longer read or written.
Nothing the guest puts in the page raises into the hypervisor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from xenpy.abi.io_xs_wire import (
    XENSTORE_ERROR_COMM,
    XENSTORE_ERROR_NONE,
    XENSTORE_ERROR_PROTO,
    XENSTORE_ERROR_RINGIDX,
)
from xenpy.core.domain import DomainState
from xenpy.core.memory import PAGE_SHIFT
from xenpy.toolstack.ring import FlexRing, notify_guest
from xenpy.toolstack.xenstore.nodes import request_shutdown
from xenpy.toolstack.xenstore.store import QUOTA_OUTSTANDING, Store
from xenpy.toolstack.xenstore.wire import MessageReader, ProtocolError

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.hypervisor import Hypervisor


class XenstoreRingBackend:
    """Serves the xenstore ring of one domain from a :class:`Store`.

    Args:
        hv: the hypervisor.
        domain: the guest.
        ring_mfn: machine frame of the guest's ``xenstore_domain_interface`` (``start_info.store_mfn``).
        port: the guest's store event channel (``start_info.store_evtchn``), unbound.
        store: the store; the domain is connected to it (introduced) here.

    Attributes:
        connection: the domain's connection to the store.
        error: ``XENSTORE_ERROR_*``: not NONE once the connection is ignored.
        fault: the exception, if serving the ring failed unexpectedly (the connection is then ignored with
            ``XENSTORE_ERROR_COMM``; the hypervisor never sees it).
        requests: requests answered so far.

    Raises:
        ValueError: ``port`` is not an unbound port of ``domain``.
    """

    def __init__(self, hv: Hypervisor, domain: Domain, ring_mfn: int, port: int, store: Store) -> None:
        self.hv = hv
        self.domain = domain
        self.port = port
        self.store = store
        self.error = XENSTORE_ERROR_NONE
        self.fault: BaseException | None = None
        self.requests = 0
        layout = domain.abi.xenstore_domain_interface
        self._req = FlexRing(hv.machine, ring_mfn, layout, "req", "req_cons", "req_prod")
        self._rsp = FlexRing(hv.machine, ring_mfn, layout, "rsp", "rsp_cons", "rsp_prod")
        self._error = (ring_mfn << PAGE_SHIFT) + layout.offset_of("error")
        self._reader = MessageReader()
        self._partial_out = b""  # the rest of the message being written into rsp
        self._serving = False
        self._closed = False
        domain.evtchn.attach_backend(port, self.notify)
        self.connection = store.connect_domain(domain.domid)
        self.connection.on_output = self._on_output
        self._unwatch = domain.watch(self._on_domain_state)

    # ------------------------------------------------------------------ entry points

    def notify(self) -> None:
        """The guest sent on the store port: write held-back output, answer the requests in the ring."""
        self._run(self._serve)

    def _on_output(self) -> None:
        """The store queued output for this domain (a reply, or a watch event fired by another client)."""
        if not self._serving:
            self._run(self._serve_output)

    def _run(self, work: Callable[[], bool]) -> None:
        if self._closed or self.error != XENSTORE_ERROR_NONE or self.domain.is_dying:
            return
        self._serving = True
        try:
            if work():
                notify_guest(self.domain, self.port)
        except Exception as error:  # a guest-controlled ring never raises into the hypervisor
            self.fault = error
            self._ignore(XENSTORE_ERROR_COMM)
        finally:
            self._serving = False

    def _serve(self) -> bool:
        moved = False
        while self.error == XENSTORE_ERROR_NONE:
            progress = self._write_output()
            progress = self._read_requests() or progress
            if not progress:
                break
            moved = True
        return moved

    def _serve_output(self) -> bool:
        return self._write_output()

    # ------------------------------------------------------------------ the two rings

    def _write_output(self) -> bool:
        """``writechn``: as much queued output as ``rsp`` has room for; True if any was written."""
        ring = self._rsp
        cons, prod = ring.cons, ring.prod
        if ring.used(cons, prod) > ring.size:
            self._ignore(XENSTORE_ERROR_RINGIDX)
            return False
        written = 0
        while True:
            space = ring.size - ring.used(cons, prod)
            if space == 0:
                break
            if not self._partial_out:
                message = self.connection.pop_output()
                if message is None:
                    break
                self._partial_out = message
            piece = self._partial_out[:space]
            ring.write(prod, piece)
            self._partial_out = self._partial_out[len(piece) :]
            prod += len(piece)
            written += len(piece)
        if written:
            ring.prod = prod
        return written > 0

    def _read_requests(self) -> bool:
        """``readchn``: consume what ``req`` holds, answering each request it completes; True if any byte was
        consumed."""
        if self.connection.outstanding >= QUOTA_OUTSTANDING:
            return False
        ring = self._req
        cons, prod = ring.cons, ring.prod
        available = ring.used(cons, prod)
        if available > ring.size:
            self._ignore(XENSTORE_ERROR_RINGIDX)
            return False
        consumed = 0
        while available and self.connection.outstanding < QUOTA_OUTSTANDING and self.error == XENSTORE_ERROR_NONE:
            length = min(available, self._reader.wanted)
            data = ring.read(cons, length)
            cons += length
            available -= length
            consumed += length
            try:
                messages = self._reader.feed(data)
            except ProtocolError:
                ring.cons = cons
                self._ignore(XENSTORE_ERROR_PROTO)
                return True
            for message in messages:
                self.requests += 1
                self.connection.handle(message.type, message.req_id, message.tx_id, message.payload)
                self._write_output()  # the answer goes out before the next request is read, as in xenstored
        if consumed:
            ring.cons = cons
        return consumed > 0

    # ------------------------------------------------------------------ state

    def _ignore(self, error: int) -> None:
        """``ignore_connection``: record ``error`` in the page, drop watches, transactions and output."""
        self.error = error
        if not self.domain.is_dying:
            self.hv.machine.write_u32(self._error, error)
        self.connection.reset()
        self.connection.closed = True
        self._reader.reset()
        self._partial_out = b""

    def _on_domain_state(self, _domain: Domain, _old: DomainState, new: DomainState) -> None:
        """xenstored's ``check_domains``: a domain that shut down fires ``@releaseDomain``; a destroyed one is
        released."""
        if new is DomainState.DESTROYED:
            self.close()
        elif new in (DomainState.SHUTDOWN, DomainState.CRASHED):
            self.store.fire_release_domain()

    def request_shutdown(self, command: str = "poweroff") -> None:
        """Ask the guest to ``command`` (``poweroff``, ``reboot``, ...) through its ``control/shutdown``."""
        request_shutdown(self.store, self.domain.domid, command)

    def close(self) -> None:
        """Stop serving and release the domain from the store (its watches and transactions go)."""
        if self._closed:
            return
        self._closed = True
        self._unwatch()
        evtchn = self.domain.evtchn
        if evtchn.port_is_valid(self.port) and evtchn.ports[self.port].backend == self.notify:
            evtchn.ports[self.port].backend = None
        self.store.disconnect(self.connection)
