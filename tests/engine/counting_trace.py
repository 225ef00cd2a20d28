"""Traces of a suite kernel under each of the Unicorn engine's ways of counting instructions.

A trace holds what the counting decides: the guest time at every hypercall and at every exception the engine
handles (vCPU, number or vector, RIP, time), each vCPU's instructions and runstate at the end, and the console.
Block counting is exact when its trace equals the per-instruction counter's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xenpy.core.runstate import vcpu_runstate_get
from xenpy.engine import create_engine
from xenpy.engine.unicorn_engine import UnicornVcpu
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import DEFAULT_MEMORY_MIB, HYPERVISOR_MEMORY_MIB, boot_pv_image
from xenpy.toolstack.conformance.suite import GUEST_DIR, SuiteTest
from xenpy.toolstack.run import run_domain


@dataclass
class Trace:
    """What one run decided (see the module docstring)."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    vcpus: list[tuple[Any, ...]] = field(default_factory=list)
    console: str = ""


def trace(test: SuiteTest, counting: str, *, cmdline: str = "profile=4.20") -> Trace:
    """Boot ``test`` (virtual clock) with ``counting`` and record its :class:`Trace`."""
    hv = Hypervisor(nr_pcpus=test.pcpus, memory_mib=DEFAULT_MEMORY_MIB + HYPERVISOR_MEMORY_MIB)
    image = test.image(GUEST_DIR).read_bytes()
    booted = boot_pv_image(hv, image, max_vcpus=test.vcpus, memory_mib=DEFAULT_MEMORY_MIB, cmdline=cmdline,
                           profile="4.20", name=f"test-pv64-{test.name}")  # fmt: skip
    engine = create_engine("unicorn", hv, counting=counting)
    out = Trace()

    def on_hypercall(vcpu: Any, nr: int, args: tuple[int, ...]) -> None:
        ctx = engine.context(vcpu)
        out.events.append(("hypercall", vcpu.vcpu_id, nr, args, ctx.guest_time_ns()))

    hv.add_hypercall_hook(pre=on_hypercall)
    original = UnicornVcpu.handle_exception

    def handle_exception(ctx: UnicornVcpu, vector: int, error_code: int, cr2: int, is_int: bool) -> bool:
        rip = ctx.read_registers(("rip",))["rip"]
        out.events.append(("exception", ctx.vcpu.vcpu_id, vector, error_code, cr2, rip, ctx.guest_time_ns()))
        return original(ctx, vector, error_code, cr2, is_int)

    chunks: list[bytes] = []
    booted.domain.console.listen(chunks.append)
    UnicornVcpu.handle_exception = handle_exception  # type: ignore[method-assign]
    try:
        run_domain(hv, booted.domain, timeout_s=test.timeout)
    finally:
        UnicornVcpu.handle_exception = original  # type: ignore[method-assign]
    booted.domain.console.flush()
    now = hv.now_ns()
    for v in booted.domain.vcpus:
        ctx = engine.context(v)
        out.vcpus.append((v.vcpu_id, ctx.instructions_total, tuple(vcpu_runstate_get(v, now))))
    out.console = b"".join(chunks).decode(errors="replace")
    return out
