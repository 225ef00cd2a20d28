"""One store per hypervisor, and a PV domU introduced into it as ``xl create`` does.

:func:`store_for` gives the hypervisor's store (created on first use with domain 0's nodes; domain ids that
name no live domain, other than 0, are ignored in permissions as xenstored ignores dead domains).
:func:`attach_pv_domain` writes libxl's nodes for a new domU and serves its ring.
"""

from __future__ import annotations

import uuid
import weakref
from typing import TYPE_CHECKING

from xenpy.core.memory import PAGE_SIZE
from xenpy.toolstack.xenstore.nodes import PvDomainInfo, write_dom0_nodes, write_pv_domain_nodes
from xenpy.toolstack.xenstore.ring import XenstoreRingBackend
from xenpy.toolstack.xenstore.store import Store

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.hypervisor import Hypervisor

#: Domain UUIDs are derived from the domain id and name (runs are deterministic).
_UUID_NAMESPACE = uuid.UUID("6b1f43f2-5a39-4c7e-9a54-58a1b3c0e7d1")

_stores: weakref.WeakKeyDictionary[Hypervisor, Store] = weakref.WeakKeyDictionary()


def store_for(hv: Hypervisor) -> Store:
    """The store of ``hv``'s domains (one per hypervisor, made on first use)."""
    store = _stores.get(hv)
    if store is None:
        store = _stores[hv] = Store(domain_exists=lambda domid: domid == 0 or domid in hv.domains)
        write_dom0_nodes(store)
    return store


def domain_uuid(domain: Domain) -> str:
    """The UUID under which the domain's ``/vm`` entries are written."""
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{domain.domid}:{domain.name}"))


def attach_pv_domain(
    hv: Hypervisor,
    domain: Domain,
    *,
    store_mfn: int,
    store_port: int,
    console_mfn: int,
    console_port: int,
    cmdline: str = "",
    store: Store | None = None,
) -> XenstoreRingBackend:
    """Write libxl's nodes for the PV domU ``domain`` into ``store`` (default: :func:`store_for`) and serve its
    xenstore ring (``store_mfn``, on the unbound ``store_port``)."""
    store = store if store is not None else store_for(hv)
    now_ns = hv.now_ns()
    info = PvDomainInfo(
        domid=domain.domid,
        name=domain.name,
        uuid=domain_uuid(domain),
        memory_kib=domain.max_pages * (PAGE_SIZE // 1024),
        max_vcpus=len(domain.vcpus),
        store_mfn=store_mfn,
        store_port=store_port,
        console_mfn=console_mfn,
        console_port=console_port,
        cmdline=cmdline,
        start_time=f"{now_ns // 10**9}.{now_ns // 10**7 % 100:02d}",
    )
    write_pv_domain_nodes(store, info)
    return XenstoreRingBackend(hv, domain, store_mfn, store_port, store)
