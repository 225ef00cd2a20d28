"""The xenpy hypervisor core: clock, domains and vCPUs, scheduler, timers, event channels, hypercalls.

The public Python API lives in :mod:`xenpy.core.hypervisor` and is re-exported here:

* :class:`Hypervisor` (``nr_pcpus``, ``clock``, ``memory_mib``, ...): ``create_domain``, ``hypercall``,
  ``run_for``, hooks;
* :class:`DomainConfig`: what a domain is built from;
* :class:`Domain`, :class:`Vcpu`, :class:`DomainState`, :class:`PauseFlags`;
* :class:`XenProfile` and :func:`get_profile` (Xen version profiles);
* :class:`VirtualClock`, :class:`HostClock`.
"""

from xenpy.core.clock import Clock, HostClock, VirtualClock
from xenpy.core.domain import Domain, DomainState, PauseFlags, Vcpu
from xenpy.core.hypervisor import GUEST_VIRT_BASE, DomainConfig, Hypervisor, VcpuNotRunnable
from xenpy.core.profiles import PROFILES, XenProfile, get_profile

__all__ = [
    "GUEST_VIRT_BASE",
    "PROFILES",
    "Clock",
    "Domain",
    "DomainConfig",
    "DomainState",
    "HostClock",
    "Hypervisor",
    "PauseFlags",
    "Vcpu",
    "VcpuNotRunnable",
    "VirtualClock",
    "XenProfile",
    "get_profile",
]
