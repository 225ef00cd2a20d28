"""Guest instructions per second on the Unicorn engine, with and without the deterministic instruction counter.

Run: ``.venv/bin/python benchmarks/bench_engine_ips.py [--instructions 50000000] [--repeat 3]``. A PV64 guest
runs a compute loop with loads and stores and no exits::

    1:  add rax, rcx
        imul rax, rax, 7
        mov [rsp - 8], rax
        mov rdx, [rsp - 8]
        xor rax, rdx
        inc rcx
        dec rbx
        jnz 1b

* deterministic clock: the C code hook counts every instruction; the run stops after exactly the budget;
* host clock: no counter (Unicorn chains translated blocks); the run lasts a fixed wall time and the loop
  counter tells how many instructions ran.

Prints the best of ``--repeat`` runs in millions of guest instructions per second, and the counter's cost.
"""

from __future__ import annotations

import argparse
import time

from xenpy.engine.unicorn_engine import UnicornEngine, UnicornVcpu
from xenpy.hypervisor import DomainConfig, Hypervisor

#: The loop above (8 instructions per iteration), assembled for 0xffffffff80002000.
LOOP = bytes.fromhex("4801c8486bc00748894424f8488b5424f84831d048ffc148ffcb75e40f0b")
INSTRUCTIONS_PER_ITERATION = 8
START = 1 << 62


def make(clock: str) -> UnicornVcpu:
    hv = Hypervisor(memory_mib=16, clock=clock)
    dom = hv.create_domain(DomainConfig(memory_mib=2))
    _page, code, _data, stack = (dom.alloc_guest_page() for _ in range(4))
    dom.write_guest(code, LOOP)
    dom.vcpus[0].arch.user_regs.update(rip=code, rsp=stack + 4096, rbx=START)
    engine = UnicornEngine(hv)
    dom.unpause()
    vcpu = dom.vcpus[0]
    ctx = engine.context(vcpu)
    ctx._pcpu = hv.scheduler.schedule_in(vcpu)
    ctx.run(1000, 0)
    return ctx


def mips(ctx: UnicornVcpu, instructions: int) -> float:
    rbx0 = ctx.read_registers(("rbx",))["rbx"]
    t0 = time.perf_counter()
    if ctx.engine.deterministic:
        result = ctx.run(instructions, ctx.hv.now_ns())
        assert result.instructions == instructions
    else:
        ctx.run(instructions, ctx.hv.now_ns())  # host clock: the budget is 1 ns per instruction of wall time
    elapsed = time.perf_counter() - t0
    done = (rbx0 - ctx.read_registers(("rbx",))["rbx"]) * INSTRUCTIONS_PER_ITERATION
    return done / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instructions", type=int, default=50_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    counted = make("virtual")
    free = make("host")
    with_counter = max(mips(counted, args.instructions) for _ in range(args.repeat))
    without = max(mips(free, args.instructions) for _ in range(args.repeat))
    print(f"compute loop, best of {args.repeat}:")
    print(f"  deterministic clock (C instruction counter): {with_counter:8.1f} M guest instructions/s")
    print(f"  host clock (no counter)                    : {without:8.1f} M guest instructions/s")
    print(f"  cost of exact counting                     : {without / with_counter:8.1f}x")


if __name__ == "__main__":
    main()
