"""All of Xen's public structures for one guest width, defined once (docs/architecture.md, the ABI layer).

:func:`build_abi` runs every header module's ``define`` in dependency order and returns the structures by their
Xen C name. :mod:`xenpy.abi.x86_64` and :mod:`xenpy.abi.x86_32` are the two instances.
"""

from functools import cache
from types import MappingProxyType, ModuleType

from xenpy.abi import (
    arch_x86,
    callback,
    event_channel,
    grant_table,
    io_console,
    io_xs_wire,
    memory,
    nmi,
    sched,
    vcpu,
    version,
    xen,
)
from xenpy.abi.cstruct import CStruct, CUnion, Width

# Header modules in definition order (a header may use structures of the ones before it), with Xen's path.
HEADERS: tuple[tuple[ModuleType, str], ...] = (
    (arch_x86, "public/arch-x86/xen.h"),
    (xen, "public/xen.h"),
    (vcpu, "public/vcpu.h"),
    (sched, "public/sched.h"),
    (event_channel, "public/event_channel.h"),
    (callback, "public/callback.h"),
    (nmi, "public/nmi.h"),
    (version, "public/version.h"),
    (memory, "public/memory.h"),
    (grant_table, "public/grant_table.h"),
    (io_console, "public/io/console.h"),
    (io_xs_wire, "public/io/xs_wire.h"),
)

ARCHES = ("x86_64", "x86_32")


@cache
def _build(arch: str) -> tuple[MappingProxyType[str, CStruct | CUnion], MappingProxyType[str, str]]:
    if arch not in ARCHES:
        raise ValueError(f"unknown architecture {arch!r} (expected one of {', '.join(ARCHES)})")
    width = Width(64 if arch == "x86_64" else 32)
    abi: dict[str, CStruct | CUnion] = {}
    origin: dict[str, str] = {}
    for module, path in HEADERS:
        module.define(width, abi)
        for name in abi:
            origin.setdefault(name, path)
    return MappingProxyType(abi), MappingProxyType(origin)


def build_abi(arch: str) -> MappingProxyType[str, CStruct | CUnion]:
    """The structures of ``arch`` (``"x86_64"`` or ``"x86_32"``), keyed by Xen C name. Built once."""
    return _build(arch)[0]


def header_of(arch: str, name: str) -> str:
    """The Xen public header that defines structure ``name``, e.g. ``public/vcpu.h``."""
    return _build(arch)[1][name]
