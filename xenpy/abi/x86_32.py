"""Xen's public structures as laid out for an x86_32 (PV32) guest.

Each attribute is a construct object named exactly as Xen's C struct, e.g. ``x86_32.vcpu_runstate_info``;
``.sizeof()`` is the C size. See :mod:`xenpy.abi.cstruct` for the layout metadata they carry.
"""

from xenpy.abi.structs import build_abi

STRUCTS = build_abi("x86_32")
globals().update(STRUCTS)
