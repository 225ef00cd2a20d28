"""Hypercall tracing: one JSON object per line for every hypercall a guest makes (``xenpy run --trace``).

Each line holds ``t_ns`` (system time when the call returned), ``domid``, ``vcpu``, ``nr``, ``name`` (Xen's
hypercall name), ``op`` (the sub-op name, for hypercalls whose first argument selects one, when known),
``args`` (the hypercall's own arguments, as many as its C prototype has, unsigned) and ``result`` (the signed
value returned in rax). With the deterministic clock, the same image and options give the same trace.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, TextIO

from xenpy.abi.generated.hypercalls import HYPERCALLS

if TYPE_CHECKING:
    from collections.abc import Callable

    from xenpy.core.domain import Vcpu
    from xenpy.hypervisor import Hypervisor

_U32 = 0xFFFF_FFFF


def _describe(nr: int) -> tuple[str, int, dict[int, str]]:
    definition = HYPERCALLS.get(nr)
    if definition is None:
        return f"hypercall_{nr}", 5, {}
    subops = {subop.value: subop.name for subop in definition.subops}
    return definition.name, len(definition.args), subops


class HypercallTracer:
    """Writes a JSON line to ``stream`` after every hypercall of ``hv``.

    Attributes:
        count: lines written.
    """

    def __init__(self, hv: Hypervisor, stream: TextIO) -> None:
        self.hv = hv
        self.stream = stream
        self.count = 0
        self._names = {nr: _describe(nr) for nr in range(64)}
        self._remove: Callable[[], None] | None = hv.add_hypercall_hook(post=self._record)

    def _record(self, vcpu: Vcpu, nr: int, args: tuple[int, ...], result: int) -> None:
        name, arity, subops = self._names.get(nr) or _describe(nr)
        entry: dict[str, object] = {
            "t_ns": self.hv.now_ns(),
            "domid": vcpu.domain.domid,
            "vcpu": vcpu.vcpu_id,
            "nr": nr,
            "name": name,
        }
        if subops and args:
            op = subops.get(args[0] & _U32)
            if op is not None:
                entry["op"] = op
        entry["args"] = list(args[:arity])
        entry["result"] = result
        self.stream.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self.count += 1

    def close(self) -> None:
        """Stop tracing and flush the stream."""
        if self._remove is not None:
            self._remove()
            self._remove = None
        self.stream.flush()
