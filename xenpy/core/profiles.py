"""Xen version profiles: the guest-visible behaviour differences between Xen releases (spec 1.4).

A domain is created with one :class:`XenProfile`. Handlers consult its flags; no code compares version numbers.
Every field is a difference the spec lists in section 1.4 (or 4.1 for ``register_vcpu_info``), with the release
that introduced it.

Profiles:

* ``head``: Xen at the spec's HEAD (4.23-unstable; everything of 4.18/4.19 and later).
* ``4.17.3``: 4.17 with the single-shot-timer backport (``7b5155a79e``).
* ``4.17``: 4.17.0-4.17.2.
* ``4.10``: 4.10.0 (before the XSA-327 backport, so misaligned vcpu_info offsets are accepted).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from xenpy.abi.errno import XenErrno


def _vmassist_mask(*types: int) -> int:
    return sum(1 << t for t in types)


@dataclass(frozen=True)
class XenProfile:
    """Feature flags and values of one Xen release, as a guest can observe them.

    Attributes:
        name: profile name (``"head"``, ``"4.17"``, ...).
        version: ``(major, minor)``, reported by ``XENVER_version``.
        down_last_vcpu_powers_off: VCPUOP_down of the last up vCPU calls ``domain_shutdown(poweroff)`` and
            leaves it up (>= 4.11, ``d3b230fc46``); otherwise it only marks it down.
        singleshot_past_injects: VCPUOP_set_singleshot_timer with a deadline in the past injects VIRQ_TIMER at
            once and ignores the flags (4.17.3+, 4.18); otherwise ``VCPU_SSHOTTMR_future`` gives -ETIME.
        periodic_timer_force_reschedule: VCPUOP_set/stop_periodic_timer only store the period and force a
            reschedule of the target (<= 4.12); otherwise ``vcpu_set_periodic_timer`` runs at once (>= 4.13).
        vcpu_info_map_guest_area: register_vcpu_info goes through ``map_guest_area`` (>= 4.18): gaddr
            overflow check, -EBUSY, remote targets paused, -EACCES. Otherwise the ``map_vcpu_info`` order of
            spec 4.1 applies, with the errnos below.
        vcpu_info_offset_errno: ``map_vcpu_info``: errno for ``offset > 4096 - 64`` (-ENXIO since 4.16).
        vcpu_info_misaligned_errno: ``map_vcpu_info``: errno for a misaligned offset, or None if accepted.
        vcpu_info_time_refresh: register_vcpu_info rewrites ``vcpu_info.time`` (>= 4.16, ``b67f09721f``).
        vcpu_info_kick: register_vcpu_info sets all selector bits with ``write_atomic(~0)`` and calls
            ``vcpu_mark_events_pending`` (4.17+); otherwise it sets ``upcall_pending`` and the selector bits
            without a kick (4.4, 4.10).
        phys_areas: VCPUOP_register_runstate_phys_area / register_vcpu_time_phys_area exist (>= 4.18);
            otherwise they return -ENOSYS.
        vm_assist_valid_mask: VM assist types a PV64 domain may enable (XEN_RUNSTATE_UPDATE's type 5 since
            4.8).
    """

    name: str
    version: tuple[int, int]
    down_last_vcpu_powers_off: bool
    singleshot_past_injects: bool
    periodic_timer_force_reschedule: bool
    vcpu_info_map_guest_area: bool
    vcpu_info_offset_errno: XenErrno
    vcpu_info_misaligned_errno: XenErrno | None
    vcpu_info_time_refresh: bool
    vcpu_info_kick: bool
    phys_areas: bool
    vm_assist_valid_mask: int

    @property
    def runstate_update_flag(self) -> bool:
        """True if VMASST_TYPE_runstate_update_flag (5) exists in this release."""
        return bool(self.vm_assist_valid_mask & (1 << 5))


HEAD = XenProfile(
    name="head",
    version=(4, 23),
    down_last_vcpu_powers_off=True,
    singleshot_past_injects=True,
    periodic_timer_force_reschedule=False,
    vcpu_info_map_guest_area=True,
    vcpu_info_offset_errno=XenErrno.ENXIO,
    vcpu_info_misaligned_errno=XenErrno.ENXIO,
    vcpu_info_time_refresh=True,
    vcpu_info_kick=True,
    phys_areas=True,
    vm_assist_valid_mask=_vmassist_mask(0, 1, 2, 3, 4, 5, 32),
)

XEN_4_17 = XenProfile(
    name="4.17",
    version=(4, 17),
    down_last_vcpu_powers_off=True,
    singleshot_past_injects=False,
    periodic_timer_force_reschedule=False,
    vcpu_info_map_guest_area=False,
    vcpu_info_offset_errno=XenErrno.ENXIO,
    vcpu_info_misaligned_errno=XenErrno.ENXIO,
    vcpu_info_time_refresh=True,
    vcpu_info_kick=True,
    phys_areas=False,
    vm_assist_valid_mask=_vmassist_mask(0, 1, 2, 3, 4, 5, 32),
)

XEN_4_17_3 = replace(XEN_4_17, name="4.17.3", singleshot_past_injects=True)

XEN_4_10 = XenProfile(
    name="4.10",
    version=(4, 10),
    down_last_vcpu_powers_off=False,
    singleshot_past_injects=False,
    periodic_timer_force_reschedule=True,
    vcpu_info_map_guest_area=False,
    vcpu_info_offset_errno=XenErrno.EINVAL,
    vcpu_info_misaligned_errno=None,
    vcpu_info_time_refresh=False,
    vcpu_info_kick=False,
    phys_areas=False,
    vm_assist_valid_mask=_vmassist_mask(0, 1, 2, 3, 4, 5, 32),
)

#: Every profile by name.
PROFILES: dict[str, XenProfile] = {p.name: p for p in (HEAD, XEN_4_17_3, XEN_4_17, XEN_4_10)}


def get_profile(profile: str | XenProfile) -> XenProfile:
    """The profile called ``profile`` (or ``profile`` itself if it already is one).

    Raises:
        KeyError: unknown profile name.
    """
    if isinstance(profile, XenProfile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise KeyError(f"unknown Xen profile {profile!r} (known: {', '.join(PROFILES)})") from None
