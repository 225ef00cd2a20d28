"""Xen's public structures as laid out for an x86_64 (PV64) guest.

Each attribute is a construct object named exactly as Xen's C struct, e.g. ``x86_64.vcpu_runstate_info``;
``.sizeof()`` is the C size. See :mod:`xenpy.abi.cstruct` for the layout metadata they carry.
"""

from xenpy.abi.structs import build_abi

STRUCTS = build_abi("x86_64")
globals().update(STRUCTS)
