"""Xen version profiles: the guest-visible behaviour differences between Xen releases (spec 1.4).

A domain is created with one :class:`XenProfile`. Handlers consult its fields; no code compares version numbers.
The profiles, their fields and every value are one table, ``hypercalls/profiles.toml``; the generator turns it
into :mod:`xenpy.abi.generated.profiles` (re-exported here) and the reference page ``docs/reference/profiles.rst``.
The hypercall table's expected errors have one column per profile of the same table.

:data:`PROFILES` lists them, newest first.
"""

from __future__ import annotations

from xenpy.abi.generated.profiles import HEAD, PROFILES, XEN_4_10, XEN_4_17, XEN_4_17_3, XenProfile

__all__ = ["HEAD", "PROFILES", "XEN_4_10", "XEN_4_17", "XEN_4_17_3", "XenProfile", "get_profile"]


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
