"""The Xen public ABI: structures for both guest widths, constants and errno, named exactly as in Xen.

* :mod:`xenpy.abi.x86_64`, :mod:`xenpy.abi.x86_32`: construct structures by Xen C name.
* One module per Xen public header for its constants: :mod:`~xenpy.abi.xen`, :mod:`~xenpy.abi.vcpu`,
  :mod:`~xenpy.abi.sched`, :mod:`~xenpy.abi.event_channel`, :mod:`~xenpy.abi.callback`, :mod:`~xenpy.abi.nmi`,
  :mod:`~xenpy.abi.arch_x86`, :mod:`~xenpy.abi.features`, :mod:`~xenpy.abi.elfnote`, :mod:`~xenpy.abi.version`,
  :mod:`~xenpy.abi.memory`, :mod:`~xenpy.abi.grant_table`, :mod:`~xenpy.abi.io_console`,
  :mod:`~xenpy.abi.io_xs_wire`.
* :mod:`xenpy.abi.errno`: Xen's public errno values.
* :mod:`xenpy.abi.generated.hypercalls`: hypercall and sub-op numbers, generated from ``hypercalls/``.

This layer has no state and does no I/O.
"""

import importlib
from typing import Any

from xenpy.abi.errno import HypercallError, XenErrno
from xenpy.abi.structs import ARCHES, build_abi


def __getattr__(name: str) -> Any:
    """``x86_64`` and ``x86_32``, each built when first named."""
    if name in ARCHES:
        return importlib.import_module(f"xenpy.abi.{name}")
    raise AttributeError(f"module 'xenpy.abi' has no attribute {name!r}")


__all__ = ["ARCHES", "HypercallError", "XenErrno", "build_abi", "x86_32", "x86_64"]
