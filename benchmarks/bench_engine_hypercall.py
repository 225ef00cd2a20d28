"""Hypercall round trip from guest code on the Unicorn engine, against a bare engine exit, in the same run.

Run: ``.venv/bin/python benchmarks/bench_engine_hypercall.py [--iterations 100000] [--repeat 5]``. A PV64 guest
loops::

    1:  xor edi, edi
        call hypercall_page + 17 * 32      # xen_version(XENVER_version): stub push/push/mov/syscall/pop/pop/ret
        dec rbx
        jnz 1b

The same guest loop runs with two exits, alternately, in the same process and on the same vCPU:

* ``bare engine exit``: the ``syscall`` leaves emulation for the engine's Python callback, which does nothing
  (the cost of the exit itself: the native shim's batch register read and write plus the Python call);
* ``xen_version``: the real path, through the dispatcher to the ``xen_version`` handler, with the
  return-to-guest checks.

With the deterministic clock, each measurement runs exactly ``--iterations`` iterations (11 instructions
each, counted); with the host clock (no counter) the loop runs for a fixed wall time and the exits are
counted. The best of ``--repeat`` measurements is printed, with the ratio (target: at most 3).
"""

from __future__ import annotations

import argparse
import ctypes
import time

from xenpy.engine._native import SF_NOUT
from xenpy.engine.unicorn_engine import UnicornEngine, UnicornVcpu
from xenpy.hypervisor import DomainConfig, Hypervisor
from xenpy.loader import init_hypercall_page

#: The loop above, assembled for 0xffffffff80002000 with the hypercall page at 0xffffffff80001000.
LOOP = bytes.fromhex("31ffe819f2ffff48ffcb75f40f0b")
INSTRUCTIONS_PER_ITERATION = 11


def make(clock: str) -> UnicornVcpu:
    hv = Hypervisor(memory_mib=16, clock=clock)
    dom = hv.create_domain(DomainConfig(memory_mib=2))
    page, code, _data, stack = (dom.alloc_guest_page() for _ in range(4))
    dom.write_guest(page, init_hypercall_page())
    dom.write_guest(code, LOOP)
    dom.vcpus[0].arch.user_regs.update(rip=code, rsp=stack + 4096, rbx=1 << 62)
    engine = UnicornEngine(hv)
    dom.unpause()
    vcpu = dom.vcpus[0]
    ctx = engine.context(vcpu)
    ctx._pcpu = hv.scheduler.schedule_in(vcpu)
    ctx.run(1000, 0)  # enter CPL3, translate the loop
    return ctx


class Exits:
    """Swaps the shim's Python callback between the engine's and a counting no-op."""

    def __init__(self, ctx: UnicornVcpu) -> None:
        self.ctx = ctx
        self.real = ctx._frame.callback
        self.count = 0
        sf, nout = ctx._sf, SF_NOUT

        def bare() -> None:
            self.count += 1
            sf[nout] = 0  # write nothing back

        self._bare = ctypes.CFUNCTYPE(None)(bare)

    def use(self, bare: bool) -> None:
        self.ctx._frame.callback = ctypes.cast(self._bare, ctypes.c_void_p).value if bare else self.real


def per_iteration(ctx: UnicornVcpu, exits: Exits, bare: bool, iterations: int) -> float:
    exits.use(bare)
    hv = ctx.hv
    if ctx.engine.deterministic:
        t0 = time.perf_counter()
        result = ctx.run(iterations * INSTRUCTIONS_PER_ITERATION, hv.now_ns())
        elapsed = time.perf_counter() - t0
        assert result.instructions == iterations * INSTRUCTIONS_PER_ITERATION, result
        done = iterations
    else:
        before = exits.count if bare else hv.dispatcher.count
        t0 = time.perf_counter()
        ctx.run(ctx.engine.ns_to_instructions(200_000_000), hv.now_ns())  # 0.2 s of host time
        elapsed = time.perf_counter() - t0
        done = (exits.count if bare else hv.dispatcher.count) - before
    exits.use(False)
    return elapsed / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for clock in ("virtual", "host"):
        ctx = make(clock)
        exits = Exits(ctx)
        bare = min(per_iteration(ctx, exits, True, args.iterations) for _ in range(args.repeat))
        real = min(per_iteration(ctx, exits, False, args.iterations) for _ in range(args.repeat))
        name = (
            "deterministic clock (instruction counter)" if clock == "virtual" else "host clock (no counter)"
        )
        print(f"{name}, best of {args.repeat}:")
        print(f"  bare engine exit : {bare * 1e6:6.2f} us per loop iteration")
        print(f"  xen_version      : {real * 1e6:6.2f} us per loop iteration")
        print(f"  ratio            : {real / bare:6.2f}x (target <= 3x)")


if __name__ == "__main__":
    main()
