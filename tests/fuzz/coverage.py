"""What a fuzz campaign reached: every hypercall and sub-op of the hypercall table, with its results.

:class:`CallCoverage` counts, after every hypercall of a hypervisor, the call by number and sub-op (the first
argument, for the families the table gives sub-ops), and its result: success (>= 0) or the errno. Its report
is a Markdown table with one row per hypercall and per sub-op of the table (calls, successes, the errnos seen),
then what no call reached. ``make fuzz`` writes it for each fuzzer (``--coverage FILE``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import HYPERCALLS

if TYPE_CHECKING:
    from xenpy.hypervisor import Hypervisor

_U32 = 0xFFFF_FFFF
#: The key of a call of a hypercall without sub-ops (or of a sub-op outside the table).
OTHER = -1


class CallCoverage:
    """Counts of calls by ``(nr, sub-op)`` and of their results (0 for success, else the errno)."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[int, int]] = Counter()
        self.results: defaultdict[tuple[int, int], Counter[int]] = defaultdict(Counter)
        self._subops = {nr: {s.value for s in d.subops} for nr, d in HYPERCALLS.items()}

    def attach(self, hv: Hypervisor) -> Callable[[], None]:
        """Count every hypercall of ``hv`` from now on; returns the function that stops it."""
        return hv.add_hypercall_hook(post=self.record)

    def record(self, _vcpu: object, nr: int, args: tuple[int, ...], result: int) -> None:
        subops = self._subops.get(nr)
        sub = args[0] & _U32 if subops and args and args[0] & _U32 in subops else OTHER
        key = (nr, sub)
        self.calls[key] += 1
        self.results[key][0 if result >= 0 else -result] += 1

    def merge(self, other: CallCoverage) -> None:
        """Add ``other``'s counts."""
        self.calls.update(other.calls)
        for key, counts in other.results.items():
            self.results[key].update(counts)

    def report(self, title: str) -> str:
        """The Markdown report."""

        def errnos(key: tuple[int, int]) -> str:
            counts = self.results.get(key, Counter())
            names = [XenErrno(e).name if e in XenErrno._value2member_map_ else str(e) for e in sorted(counts) if e]
            return ", ".join(names)

        lines = [f"# {title}", "", "| hypercall | sub-op | calls | successes | errnos |", "|---|---|---|---|---|"]
        missed = []
        for nr, definition in sorted(HYPERCALLS.items()):
            rows = [(OTHER, "")] + [(s.value, s.name) for s in definition.subops]
            for sub, name in rows:
                key = (nr, sub)
                calls = self.calls.get(key, 0)
                if sub == OTHER and definition.subops and not calls:
                    continue
                if not calls:
                    missed.append(f"{definition.name}{' ' + name if name else ''}")
                    continue
                ok = self.results[key].get(0, 0)
                lines.append(f"| {definition.name} | {name or ('(other)' if definition.subops else '')} | {calls} "
                             f"| {ok} | {errnos(key)} |")
        outside = sum(n for (nr, _sub), n in self.calls.items() if nr not in HYPERCALLS)
        reached = sum(1 for key in self.calls if key[0] in HYPERCALLS)
        lines += ["", f"{sum(self.calls.values())} calls; {reached} hypercalls and sub-ops of the table reached; "
                  f"{outside} calls to numbers outside it.", ""]
        lines.append("Never reached: " + (", ".join(missed) if missed else "nothing") + ".")
        return "\n".join(lines) + "\n"
