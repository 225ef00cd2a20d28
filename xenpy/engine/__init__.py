"""CPU engines: what executes PV guest code, behind one narrow interface.

* :mod:`xenpy.engine.base`: the interface (:class:`Engine`, :class:`VcpuContext`, :class:`RunResult`,
  :class:`ExitReason`, :class:`TrapBounce`);
* :mod:`xenpy.engine.pv64`: the PV64 CPU semantics every engine shares (bounce frames, iret, traps, events,
  NMIs, privileged-instruction emulation, cr3 loads, the CPUID policy), and the vCPU's CPU port;
* :mod:`xenpy.engine.effects`: what an engine does around each hypercall, from the handlers' declared effects;
* :mod:`xenpy.engine.unicorn_engine`: the Unicorn engine (:class:`~xenpy.engine.unicorn_engine.UnicornEngine`),
  with :mod:`~xenpy.engine.unicorn_area` (the hypervisor area it maps into every guest) and
  :mod:`~xenpy.engine.unicorn_lib` (its direct calls into Unicorn's library, hooks and calibration);
* the hypercalls that need the CPU (iret, set_segment_base, set_gdt, fpu_taskswitch) are ordinary handlers
  (:mod:`xenpy.hypercall.handlers.cpu`) that reach the CPU through the vCPU context as their
  :class:`~xenpy.hypercall.cpu.CpuPort`;
* :mod:`xenpy.engine.runner`: running a domain on the scheduler until it shuts down.

Engines are created by name with :func:`create_engine` (:func:`available_engines` lists the names,
:data:`DEFAULT_ENGINE` is the one ``xenpy run`` uses unless told otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from xenpy.engine.base import Engine, ExitReason, RunResult, TrapBounce, TrapBounceFlags, VcpuContext

if TYPE_CHECKING:
    from xenpy.hypervisor import Hypervisor

#: The engine used when none is named.
DEFAULT_ENGINE = "unicorn"


class UnknownEngine(ValueError):  # noqa: N818 (names the condition)
    """No engine of that name."""


def _unicorn(hv: Hypervisor, **options: Any) -> Engine:
    from xenpy.engine.unicorn_engine import UnicornEngine

    return UnicornEngine(hv, **options)


#: Engine name -> (factory, one-line description). Each factory imports its engine only when called.
_ENGINES: Mapping[str, tuple[Callable[..., Engine], str]] = MappingProxyType(
    {
        "unicorn": (_unicorn, "Unicorn's x86-64 emulator, in the xenpy process"),
    }
)


def available_engines() -> dict[str, str]:
    """Every engine name with its one-line description, by name."""
    return {name: description for name, (_, description) in sorted(_ENGINES.items())}


def create_engine(name: str, hv: Hypervisor, **options: Any) -> Engine:
    """Create engine ``name`` and attach it to ``hv`` (it becomes the scheduler's executor).

    ``options`` go to the engine's constructor (for ``unicorn``: ``deterministic``,
    ``instructions_per_second``, ``native``, ``counting``).

    Raises:
        UnknownEngine: no engine is called ``name``.
    """
    entry = _ENGINES.get(name)
    if entry is None:
        raise UnknownEngine(f"unknown engine {name!r} (available: {', '.join(available_engines())})")
    return entry[0](hv, **options)


__all__ = [
    "DEFAULT_ENGINE",
    "Engine",
    "ExitReason",
    "RunResult",
    "TrapBounce",
    "TrapBounceFlags",
    "UnknownEngine",
    "VcpuContext",
    "available_engines",
    "create_engine",
]
