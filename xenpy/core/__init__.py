"""The xenpy domain model: clock, domains and vCPUs, scheduler, timers, event channels, memory management.

This layer is what Xen keeps in ``struct domain``/``struct vcpu`` and its globals; the machine-wide state is
:class:`~xenpy.core.system.System`. It knows nothing of hypercall dispatch (:mod:`xenpy.hypercall`), CPU engines
or domain builders; the documented Python API is :class:`xenpy.hypervisor.Hypervisor`. Re-exported here:

* :class:`System` and :class:`DomainConfig` (what a domain is created from);
* :class:`Domain`, :class:`Vcpu`, :class:`DomainState`, :class:`PauseFlags`;
* :class:`XenProfile` and :func:`get_profile` (Xen version profiles);
* :class:`VirtualClock`, :class:`HostClock`.
"""

from xenpy.core.clock import Clock, HostClock, VirtualClock
from xenpy.core.domain import Domain, DomainState, PauseFlags, Vcpu
from xenpy.core.profiles import PROFILES, XenProfile, get_profile
from xenpy.core.system import DomainConfig, System

__all__ = [
    "PROFILES",
    "Clock",
    "Domain",
    "DomainConfig",
    "DomainState",
    "HostClock",
    "PauseFlags",
    "System",
    "Vcpu",
    "VirtualClock",
    "XenProfile",
    "get_profile",
]
