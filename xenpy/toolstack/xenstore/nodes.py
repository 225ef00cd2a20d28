"""The nodes a toolstack writes for a PV domU, as libxl does (``xl create``), and domain 0's few.

Followed: ``libxl__domain_make`` (libxl_create.c: the domain's directories and their permissions),
``libxl__build_post`` (libxl_dom.c: memory, domid, store, vCPU availability), the PV ``/vm`` entries of
``libxl__domain_build``, ``libxl__device_console_add`` and ``libxl__device_generic_add`` (libxl_console.c,
libxl_device.c: the primary console's frontend and backend), and xen-init-dom0 (domain 0's name and id);
:func:`request_shutdown` is ``libxl__domain_pvcontrol`` (``xl shutdown``, ``xl reboot``).

Permissions, in libxl's names (the toolstack, domain 0, owns everything it writes unless said otherwise):

* ``noperm`` (``n0``): only the toolstack sees it (``/libxl/<domid>``).
* ``roperm`` (``n0 r<domid>``): the guest reads (its home ``/local/domain/<domid>`` and what inherits from it:
  ``name``, ``domid``, ``vm``, ``memory/``, ``cpu/``, ``store/``, ``device/``, ``control/``; ``/vm/<uuid>``).
* ``rwperm`` (``n<domid>``): the guest owns it (``control/shutdown``, ``control/feature-*``,
  ``control/sysrq``, ``data``, ``drivers``, ``feature``, ``attr``, ``error``,
  ``device/suspend/event-channel``, the console's ``backend-id``).
"""

from __future__ import annotations

from dataclasses import dataclass

from xenpy.toolstack.xenstore.store import XS_PERM_NONE, XS_PERM_READ, Perm, Store, XsError

#: ``LIBXL_XENCONSOLE_LIMIT`` and ``LIBXL_XENCONSOLE_PROTOCOL``.
CONSOLE_LIMIT = 1048576
CONSOLE_PROTOCOL = "vt100"
#: ``XenbusStateInitialising``.
XENBUS_STATE_INITIALISING = 1
#: The guest-owned nodes libxl creates empty under ``control/`` for a PV guest.
CONTROL_NODES = ("shutdown", "feature-poweroff", "feature-reboot", "feature-suspend", "sysrq")
#: The other guest-owned directories of a domain's home.
GUEST_DIRECTORIES = ("data", "drivers", "feature", "attr", "error")
#: What ``control/shutdown`` may ask of a PV guest (the commands Linux's ``shutdown_handlers`` know).
SHUTDOWN_COMMANDS = ("poweroff", "reboot", "halt", "suspend")


@dataclass(frozen=True)
class PvDomainInfo:
    """What libxl knows of a PV domU when it writes its nodes.

    Attributes:
        domid, name, uuid: the domain (``uuid`` as ``xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``).
        memory_kib: ``memory/static-max`` and ``memory/target``.
        max_vcpus: ``cpu/<n>/availability`` for each (all online).
        store_mfn, store_port: ``store/ring-ref`` and ``store/port``.
        console_mfn, console_port: the primary console's ``ring-ref`` and ``port``.
        cmdline: ``/vm/<uuid>/image/cmdline`` (written if not empty).
        kernel: ``/vm/<uuid>/image/kernel`` (written if not empty).
        start_time: ``/vm/<uuid>/start_time``.
        backend_domid: the console backend's domain.
    """

    domid: int
    name: str
    uuid: str
    memory_kib: int
    max_vcpus: int
    store_mfn: int
    store_port: int
    console_mfn: int
    console_port: int
    cmdline: str = ""
    kernel: str = ""
    start_time: str = "0.00"
    backend_domid: int = 0


def write_dom0_nodes(store: Store) -> None:
    """Domain 0's ``name`` and ``domid`` and the CPU pool's name, as xen-init-dom0 writes them."""
    store.write("/local/domain/0/domid", "0")
    store.write("/local/domain/0/name", "Domain-0")
    store.write("/local/pool/0/name", "Pool-0")


def write_pv_domain_nodes(store: Store, info: PvDomainInfo) -> None:
    """Write what libxl writes for the PV domU ``info`` (its home, ``/vm/<uuid>``, ``/libxl/<domid>`` and its
    primary console's frontend and backend)."""
    domid = info.domid
    noperm = (Perm(0, XS_PERM_NONE),)
    roperm = (Perm(0, XS_PERM_NONE), Perm(domid, XS_PERM_READ))
    rwperm = (Perm(domid, XS_PERM_NONE),)
    home = store.domain_path(domid)
    vm = f"/vm/{info.uuid}"
    libxl = f"/libxl/{domid}"

    def mknod(path: str, perms: tuple[Perm, ...]) -> None:  # libxl__xs_mknod
        store.write(path, b"", perms)

    # libxl__domain_make
    for path, perms in ((home, roperm), (vm, roperm), (libxl, noperm)):
        _rm(store, path)
        mknod(path, perms)
    mknod(f"{libxl}/device", noperm)
    store.write(f"{home}/vm", vm)
    store.write(f"{home}/name", info.name)
    store.write(f"{vm}/name", info.name)
    mknod(f"{home}/cpu", roperm)
    mknod(f"{home}/memory", roperm)
    mknod(f"{home}/device", roperm)
    mknod(f"{home}/device/suspend/event-channel", rwperm)
    mknod(f"{home}/control", roperm)
    for leaf in CONTROL_NODES:
        mknod(f"{home}/control/{leaf}", rwperm)
    for leaf in GUEST_DIRECTORIES:
        mknod(f"{home}/{leaf}", rwperm)
    store.write(f"{vm}/uuid", info.uuid)
    store.write(f"{vm}/name", info.name)
    store.write(f"{home}/control/platform-feature-multiprocessor-suspend", "1")
    store.write(f"{home}/control/platform-feature-xs_reset_watches", "1")
    store.write(f"{libxl}/type", "pv")

    # libxl__build_post (with the PV /vm entries of libxl__domain_build)
    entries = {
        "memory/static-max": str(info.memory_kib),
        "memory/target": str(info.memory_kib),
        "memory/videoram": "0",
        "domid": str(domid),
        "store/port": str(info.store_port),
        "store/ring-ref": str(info.store_mfn),
    } | {f"cpu/{n}/availability": "online" for n in range(info.max_vcpus)}
    for key, value in entries.items():
        store.write(f"{home}/{key}", value)
    vm_entries = {"image/ostype": "linux", "image/kernel": info.kernel, "start_time": info.start_time}
    vm_entries |= {"image/cmdline": info.cmdline} if info.cmdline else {}
    for key, value in vm_entries.items():
        if key != "image/kernel" or value:
            store.write(f"{vm}/{key}", value)

    _write_console(store, info)


def _write_console(store: Store, info: PvDomainInfo) -> None:
    """``libxl__device_console_add`` of console 0 through ``libxl__device_generic_add``."""
    domid, backend = info.domid, info.backend_domid
    frontend_perms = (Perm(domid, XS_PERM_NONE), Perm(backend, XS_PERM_READ))
    ro_frontend_perms = (Perm(backend, XS_PERM_NONE), Perm(domid, XS_PERM_READ))
    backend_perms = ro_frontend_perms
    frontend = f"{store.domain_path(domid)}/console"  # console 0's frontend is not under device/
    backend_path = f"{store.domain_path(backend)}/backend/console/{domid}/0"
    libxl = f"/libxl/{domid}/device/console/0"

    _rm(store, libxl)
    store.write(f"{libxl}/frontend", frontend)
    store.write(f"{libxl}/backend", backend_path)
    _rm(store, frontend)
    store.mkdir(frontend, ro_frontend_perms)
    store.write(f"{frontend}/backend", backend_path)
    store.write(f"{frontend}/backend-id", str(backend), frontend_perms)
    ro_entries = {
        "limit": str(CONSOLE_LIMIT),
        "type": "xenconsoled",
        "output": "pty",
        "tty": "",
        "port": str(info.console_port),
        "ring-ref": str(info.console_mfn),
    }
    for key, value in ro_entries.items():
        store.write(f"{frontend}/{key}", value, ro_frontend_perms)
    _rm(store, backend_path)
    store.mkdir(backend_path, backend_perms)
    store.write(f"{backend_path}/frontend", frontend)
    back_entries = {
        "frontend-id": str(domid),
        "online": "1",
        "state": str(XENBUS_STATE_INITIALISING),
        "protocol": CONSOLE_PROTOCOL,
    }
    for key, value in back_entries.items():
        store.write(f"{backend_path}/{key}", value)


def remove_domain_nodes(store: Store, domid: int, uuid: str, backend_domid: int = 0) -> None:
    """Remove what :func:`write_pv_domain_nodes` wrote, as libxl does when it destroys the domain."""
    for path in (
        store.domain_path(domid),
        f"/vm/{uuid}",
        f"/libxl/{domid}",
        f"{store.domain_path(backend_domid)}/backend/console/{domid}",
    ):
        _rm(store, path)


def _rm(store: Store, path: str) -> None:
    """``xs_rm``, whose failure (a missing parent) libxl ignores."""
    try:
        store.rm(path)
    except XsError:
        pass


def request_shutdown(store: Store, domid: int, command: str = "poweroff") -> None:
    """Ask domain ``domid`` to shut down: write ``command`` into its ``control/shutdown``, as libxl's
    ``libxl__domain_pvcontrol`` does. A PV guest watching the node acts on it and acknowledges by writing it
    empty (:func:`shutdown_acknowledged`).

    Raises:
        ValueError: ``command`` is not one of :data:`SHUTDOWN_COMMANDS`.
    """
    if command not in SHUTDOWN_COMMANDS:
        raise ValueError(f"unknown shutdown command {command!r} (expected one of {', '.join(SHUTDOWN_COMMANDS)})")
    store.write(f"{store.domain_path(domid)}/control/shutdown", command)


def shutdown_acknowledged(store: Store, domid: int) -> bool:
    """The guest took the request: its ``control/shutdown`` is empty (or gone) again."""
    return not store.read(f"{store.domain_path(domid)}/control/shutdown")
