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

Beside them, the baseline the performance issue names: Unicorn's own Python binding running the same loop
(``xor edi, edi; syscall; dec rbx; jnz``, no paging) with a Python ``UC_HOOK_INSN`` syscall hook that does
nothing (target: ``xen_version`` at most 0.3x of it; reading registers through the binding costs several
microseconds each here, so its hook reads none).

With the deterministic clock, each measurement runs exactly ``--iterations`` iterations (11 instructions
each, counted); with the host clock (no counter) the loop runs for a fixed wall time and the exits are
counted. The best of ``--repeat`` measurements is printed, with the ratios (target: at most 3x the engine's
bare exit); ``--json`` prints the figures as one JSON object.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time

from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_64, UC_PROT_ALL, Uc
from unicorn import x86_const as ux

from xenpy.engine._native import SF_NOUT
from xenpy.engine.unicorn_engine import UnicornEngine, UnicornVcpu
from xenpy.hypervisor import DomainConfig, Hypervisor
from xenpy.loader import init_hypercall_page

#: The loop above, assembled for 0xffffffff80002000 with the hypercall page at 0xffffffff80001000.
LOOP = bytes.fromhex("31ffe819f2ffff48ffcb75f40f0b")
INSTRUCTIONS_PER_ITERATION = 11
#: The binding's loop: ``1: xor edi, edi; syscall; dec rbx; jnz 1b; hlt``, at BINDING_BASE.
BINDING_LOOP = bytes.fromhex("31ff0f0548ffcb75f7f4")
BINDING_BASE = 0x10000
TARGET_VS_ENGINE_EXIT = 3.0
TARGET_VS_BINDING_EXIT = 0.3


def binding_exit(iterations: int) -> float:
    """Seconds per iteration of the loop under Unicorn's Python binding, its syscall hook a Python no-op."""
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(BINDING_BASE, 0x1000, UC_PROT_ALL)
    uc.mem_write(BINDING_BASE, BINDING_LOOP)
    uc.hook_add(UC_HOOK_INSN, lambda _uc, _data: None, None, 1, 0, ux.UC_X86_INS_SYSCALL)
    uc.reg_write(ux.UC_X86_REG_RBX, iterations)
    t0 = time.perf_counter()
    uc.emu_start(BINDING_BASE, BINDING_BASE + len(BINDING_LOOP) - 1)
    return (time.perf_counter() - t0) / iterations


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
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    binding = min(binding_exit(args.iterations) for _ in range(args.repeat))
    figures: dict[str, object] = {"binding_exit_us": binding * 1e6}
    for clock in ("virtual", "host"):
        ctx = make(clock)
        exits = Exits(ctx)
        bare = min(per_iteration(ctx, exits, True, args.iterations) for _ in range(args.repeat))
        real = min(per_iteration(ctx, exits, False, args.iterations) for _ in range(args.repeat))
        figures[clock] = {
            "engine_exit_us": bare * 1e6,
            "xen_version_us": real * 1e6,
            "vs_engine_exit": real / bare,
            "vs_binding_exit": real / binding,
        }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"Unicorn binding, no-op Python syscall hook: {binding * 1e6:6.2f} us per loop iteration")
    for clock, name in (("virtual", "deterministic clock (instruction counter)"), ("host", "host clock (no counter)")):
        f = figures[clock]
        assert isinstance(f, dict)
        met = "met" if f["vs_binding_exit"] <= TARGET_VS_BINDING_EXIT else "NOT met"
        print(f"{name}, best of {args.repeat}:")
        print(f"  bare engine exit : {f['engine_exit_us']:6.2f} us per loop iteration")
        print(f"  xen_version      : {f['xen_version_us']:6.2f} us per loop iteration")
        print(f"  vs engine exit   : {f['vs_engine_exit']:6.2f}x (target <= {TARGET_VS_ENGINE_EXIT:g}x)")
        print(f"  vs binding exit  : {f['vs_binding_exit']:6.2f}x (target <= {TARGET_VS_BINDING_EXIT:g}x, {met})")


if __name__ == "__main__":
    main()
