"""xenstore for xenpy's domains: the database, its ring backend, a Unix-socket front and libxl's nodes.

* :mod:`~xenpy.toolstack.xenstore.store`: the tree, permissions, watches and transactions, answering requests
  as Xen 4.20's C xenstored does (:class:`Store`, :class:`Connection`).
* :mod:`~xenpy.toolstack.xenstore.wire`: the message header of ``public/io/xs_wire.h`` and a stream reassembler.
* :mod:`~xenpy.toolstack.xenstore.ring`: a domain's ring page served from the host (:class:`XenstoreRingBackend`).
* :mod:`~xenpy.toolstack.xenstore.unix_socket`: the store on a Unix socket for Xen's own clients
  (:class:`XenstoreSocketServer`).
* :mod:`~xenpy.toolstack.xenstore.nodes`: what libxl writes for a PV domU and for domain 0; shutdown requests.
* :mod:`~xenpy.toolstack.xenstore.service`: one store per hypervisor; a domU introduced into it.
"""

from typing import Any

from xenpy.toolstack.xenstore.nodes import (
    PvDomainInfo,
    request_shutdown,
    shutdown_acknowledged,
    write_dom0_nodes,
    write_pv_domain_nodes,
)
from xenpy.toolstack.xenstore.ring import XenstoreRingBackend
from xenpy.toolstack.xenstore.service import attach_pv_domain, store_for
from xenpy.toolstack.xenstore.store import Connection, Node, Perm, Store, XsError, parse_perms


def __getattr__(name: str) -> Any:
    """``XenstoreSocketServer``, imported (with the socket modules) when first named."""
    if name == "XenstoreSocketServer":
        from xenpy.toolstack.xenstore.unix_socket import XenstoreSocketServer

        return XenstoreSocketServer
    raise AttributeError(f"module 'xenpy.toolstack.xenstore' has no attribute {name!r}")

__all__ = [
    "Connection",
    "Node",
    "Perm",
    "PvDomainInfo",
    "Store",
    "XenstoreRingBackend",
    "XenstoreSocketServer",
    "XsError",
    "attach_pv_domain",
    "parse_perms",
    "request_shutdown",
    "shutdown_acknowledged",
    "store_for",
    "write_dom0_nodes",
    "write_pv_domain_nodes",
]
