"""What a CPU engine does after each hypercall, derived from the handlers' declared effects.

Every handler declares its :class:`~xenpy.hypercall.registry.Effect` flags when it registers. An engine's
hypercall path needs two answers per hypercall number, in the cheapest form to test:

* must the clock be brought up to the guest's time before the handler runs (it declares
  :attr:`~xenpy.hypercall.registry.Effect.CLOCK`, or it has no handler)?
* must the engine re-synchronise its CPU state afterwards (page tables and TLB, cr3, GDT, CR0.TS) and re-check
  whether the caller may keep running (any of :meth:`Effect.resync
  <xenpy.hypercall.registry.Effect.resync>`)?

:meth:`EffectTables.from_registry` computes both from the registry; nothing lists hypercalls by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import xenpy.hypercall.handlers  # noqa: F401 (registers every handler)
from xenpy.hypercall.registry import NR_HYPERCALLS, Effect, effects_of


@dataclass(frozen=True)
class EffectTables:
    """Per-number answers for an engine's hypercall path.

    Attributes:
        clock_free: one byte per hypercall number (``NR_hypercalls``): 1 if its handler never reads the
            clock (the clock update can be skipped), 0 otherwise. Numbers past the table read the clock.
        resync: the numbers after which the engine re-synchronises its CPU state and re-checks the caller.
    """

    clock_free: bytes
    resync: frozenset[int]

    @classmethod
    def from_registry(cls) -> EffectTables:
        """The tables of the handlers registered now (unhandled numbers: ``UNHANDLED_EFFECTS``)."""
        effects = [int(effects_of(nr)) for nr in range(NR_HYPERCALLS)]  # plain ints: cheap to test
        clock, resync = int(Effect.CLOCK), int(Effect.resync())
        return cls(
            clock_free=bytes(0 if e & clock else 1 for e in effects),
            resync=frozenset(nr for nr, e in enumerate(effects) if e & resync),
        )

    def reads_clock(self, nr: int) -> bool:
        """True if hypercall ``nr`` needs the clock brought up to date first."""
        return nr >= len(self.clock_free) or nr < 0 or not self.clock_free[nr]
