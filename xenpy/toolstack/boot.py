"""Boot a PV kernel (ELF or Linux bzImage, with an optional initrd) into a new domain, as ``xl create`` does for
a PV domU (spec 7).

:func:`boot_pv_image` reads the image's Xen notes (:mod:`xenpy.loader`), creates a paused domain whose builder
allocates the xenstore and console event channels (unbound, for a backend in domain 0, as libxl
does), lays the memory out as libxenguest does (kernel, p2m list, start_info, xenstore and console pages, page
tables, boot stack, hypercall page), loads vCPU 0's entry state through ``arch_set_info_guest`` and attaches the
console ring backend. The domain is returned paused; unpause it (or run it) to start the guest.

The xenstore ring (``start_info.store_mfn``/``store_evtchn``) is served from the hypervisor's store
(:func:`~xenpy.toolstack.xenstore.store_for`, or the one given), into which the domain is introduced with the
nodes libxl writes for a PV domU (:mod:`xenpy.toolstack.xenstore`).
"""

from __future__ import annotations

from dataclasses import dataclass

from xenpy.core.domain import Domain
from xenpy.hypervisor import DomainConfig, Hypervisor
from xenpy.loader import LoaderError
from xenpy.loader.builder import AddressSpace, BuiltDomain, build_pv64_domain
from xenpy.loader.xen_notes import read_pv_image
from xenpy.toolstack.console import ConsoleRingBackend
from xenpy.toolstack.lifecycle import lifecycle_of
from xenpy.toolstack.xenstore import Store, XenstoreRingBackend, attach_pv_domain

#: The domain that runs the xenstore and console backends (dom0 in a Xen system).
BACKEND_DOMID = 0
#: A guest's memory when none is given (MiB).
DEFAULT_MEMORY_MIB = 32
#: Machine memory beyond a guest's own, for shared_info and the hypervisor's own frames (MiB).
HYPERVISOR_MEMORY_MIB = 8


@dataclass
class BootedDomain:
    """A domain built from a PV image, with what the toolstack keeps about it.

    Attributes:
        domain: the (paused) domain.
        built: the loader's result (layout, start_info values, vCPU 0 context).
        console: the console ring backend.
        store_port, console_port: the guest's xenstore and console event channels.
        xenstore: the xenstore ring backend (its ``store``, its ``request_shutdown``).
    """

    domain: Domain
    built: BuiltDomain
    console: ConsoleRingBackend
    store_port: int
    console_port: int
    xenstore: XenstoreRingBackend | None = None
    cmdline: str = ""

    @property
    def suspend_cancel(self) -> bool:
        """The kernel can be resumed in place after a suspend (its XEN_ELFNOTE_SUSPEND_CANCEL)."""
        return self.built.info.suspend_cancel


def boot_pv_image(
    hv: Hypervisor,
    image: bytes,
    *,
    max_vcpus: int = 1,
    memory_mib: int = DEFAULT_MEMORY_MIB,
    cmdline: str = "",
    profile: str = "head",
    name: str = "",
    initrd: bytes | None = None,
    xenstore: Store | None = None,
) -> BootedDomain:
    """Create a paused domain running the PV64 kernel ``image``.

    ``image`` is an ELF kernel, a Linux bzImage or a gzipped ELF (:func:`~xenpy.loader.bzimage.unpack_kernel`).
    ``initrd`` is loaded as module 0 (``start_info.mod_start``/``mod_len``), as libxenguest places it (spec 7.2):
    after the kernel in the bootstrap region, or after the region with SIF_MOD_START_PFN when the kernel's
    MOD_START_PFN note asks for that.

    ``xenstore`` is the store the domain is introduced into (default: the hypervisor's,
    :func:`~xenpy.toolstack.xenstore.store_for`).

    Raises:
        LoaderError: the image is not a bootable PV64 kernel, or does not fit in ``memory_mib``. Nothing is left
            behind: a domain created before the error is destroyed.
        ValueError: a bad configuration (vCPU count, memory size, profile).
    """
    info = read_pv_image(image)
    domid = free_domu_id(hv)
    config = DomainConfig(max_vcpus=max_vcpus, memory_mib=memory_mib, profile=profile, name=name, domid=domid)
    made: dict[str, object] = {}

    def image_builder(domain: Domain) -> tuple[AddressSpace, dict[str, int]]:
        made["store_port"], made["console_port"] = _ring_ports(domain)
        built = made["built"] = build_pv64_domain(
            domain.memory,
            info,
            shared_info_mfn=domain.shared_info_mfn,
            cmdline=cmdline,
            module=initrd,
            module_len_exact=domain.profile.module_len_exact,
            store_evtchn=made["store_port"],
            console_evtchn=made["console_port"],
        )
        return built.address_space, built.vcpu_context

    try:
        domain = hv.create_domain(config, builder=image_builder)
    except RuntimeError as error:  # arch_set_info_guest refused vCPU 0 (the domain is destroyed)
        raise LoaderError(str(error)) from error
    lifecycle_of(domain)  # created: the lifecycle follows the domain from here
    built: BuiltDomain = made["built"]  # type: ignore[assignment]
    store_port: int = made["store_port"]  # type: ignore[assignment]
    console_port: int = made["console_port"]  # type: ignore[assignment]
    console = ConsoleRingBackend(hv, domain, built.console_mfn, console_port)
    store_ring = attach_pv_domain(hv, domain, store_mfn=built.store_mfn, store_port=store_port,
                                  console_mfn=built.console_mfn, console_port=console_port, cmdline=cmdline,
                                  store=xenstore)  # fmt: skip
    return BootedDomain(domain, built, console, store_port, console_port, xenstore=store_ring, cmdline=cmdline)


def free_domu_id(hv: Hypervisor) -> int:
    """The lowest free domid of a domU (domain 0 is the absent control domain that runs the backends)."""
    domid = 1
    while domid in hv.domains:
        domid += 1
    return domid


def ring_ports(domain: Domain) -> tuple[int, int] | None:
    """The xenstore and console event channels of a new domU, unbound for the backends' domain, as libxl
    allocates them; None if the domain has no free port."""
    ports = (domain.evtchn.alloc_unbound(domain, BACKEND_DOMID), domain.evtchn.alloc_unbound(domain, BACKEND_DOMID))
    return None if min(ports) < 0 else ports


def _ring_ports(domain: Domain) -> tuple[int, int]:
    ports = ring_ports(domain)
    if ports is None:
        raise LoaderError(f"cannot allocate the ring event channels of domain {domain.domid}")
    return ports
