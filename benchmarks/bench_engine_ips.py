"""Guest instructions per second on the Unicorn engine: exact counting per block and per instruction, against
bare Unicorn running the same machine code.

Run: ``.venv/bin/python benchmarks/bench_engine_ips.py [--instructions 50000000] [--repeat 3] [--json]``. Three
loops of a PV64 guest with no exits (8, 8 and 5 instructions per iteration)::

    register: add rax, rcx; imul rax, rax, 7; xor rax, rdx; inc rcx; add rdx, rax; ror rax, 3; dec rbx; jnz
    memory:   add rax, rcx; imul rax, rax, 7; mov [rsp-8], rax; mov rdx, [rsp-8]; xor rax, rdx; inc rcx;
              dec rbx; jnz
    call:     call f; dec rbx; jnz; ...  f: add rax, 1; ret

* block counting (the default): instructions counted per translation block, the run stops after exactly the
  budget (a deadline inside a block is reached per instruction);
* instruction counting: a hook on every instruction;
* bare Unicorn: the same bytes on a ``Uc`` with nothing hooked (64-bit mode, no paging), until the loop ends.

Targets (the performance issue): block counting within 2x of bare Unicorn on the register loop, within 1.5x on
the memory and call loops. Prints the best of ``--repeat`` runs in millions of instructions per second.
"""

from __future__ import annotations

import argparse
import json
import time

from unicorn import UC_ARCH_X86, UC_MODE_64, UC_PROT_ALL, Uc
from unicorn import x86_const as ux

from xenpy.engine.unicorn_engine import UnicornEngine, UnicornVcpu
from xenpy.hypervisor import DomainConfig, Hypervisor

#: name -> (code, instructions per iteration, target ratio to bare Unicorn). Each loop ends with ``ud2``.
LOOPS = {
    "register": (bytes.fromhex("4801c8486bc0074831d048ffc14801c248c1c80348ffcb75e7") + b"\x0f\x0b", 8, 2.0),
    "memory": (bytes.fromhex("4801c8486bc00748894424f8488b5424f84831d048ffc148ffcb75e4") + b"\x0f\x0b", 8, 1.5),
    "call": (bytes.fromhex("e80700000048ffcb75f60f0b4883c001c3"), 5, 1.5),
}
START = 1 << 40


def make(clock: str, counting: str, code: bytes) -> UnicornVcpu:
    hv = Hypervisor(memory_mib=16, clock=clock)
    dom = hv.create_domain(DomainConfig(memory_mib=2))
    _page, page, _data, stack = (dom.alloc_guest_page() for _ in range(4))
    dom.write_guest(page, code)
    dom.vcpus[0].arch.user_regs.update(rip=page, rsp=stack + 4096, rbx=START)
    engine = UnicornEngine(hv, counting=counting)
    dom.unpause()
    vcpu = dom.vcpus[0]
    ctx = engine.context(vcpu)
    ctx._pcpu = hv.scheduler.schedule_in(vcpu)
    ctx.run(1000, 0)
    return ctx


def engine_mips(ctx: UnicornVcpu, instructions: int, per_iteration: int) -> float:
    rbx0 = ctx.read_registers(("rbx",))["rbx"]
    t0 = time.perf_counter()
    result = ctx.run(instructions, ctx.hv.now_ns())
    elapsed = time.perf_counter() - t0
    assert result.instructions == instructions, result
    done = (rbx0 - ctx.read_registers(("rbx",))["rbx"]) * per_iteration
    assert abs(done - instructions) <= per_iteration, (done, instructions)
    return instructions / elapsed / 1e6


def bare_mips(code: bytes, instructions: int, per_iteration: int) -> float:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0x100000, 0x10000, UC_PROT_ALL)
    uc.mem_write(0x100000, code)
    iterations = instructions // per_iteration
    uc.reg_write(ux.UC_X86_REG_RBX, iterations)
    uc.reg_write(ux.UC_X86_REG_RSP, 0x10F000)
    end = 0x100000 + code.index(b"\x0f\x0b")
    t0 = time.perf_counter()
    uc.emu_start(0x100000, end)
    elapsed = time.perf_counter() - t0
    assert uc.reg_read(ux.UC_X86_REG_RBX) == 0
    return iterations * per_iteration / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instructions", type=int, default=50_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    figures: dict[str, dict[str, float]] = {}
    for name, (code, per_iteration, target) in LOOPS.items():
        by_block = make("virtual", "block", code)
        by_insn = make("virtual", "instruction", code)
        block = max(engine_mips(by_block, args.instructions, per_iteration) for _ in range(args.repeat))
        insn = max(engine_mips(by_insn, args.instructions, per_iteration) for _ in range(args.repeat))
        bare = max(bare_mips(code, args.instructions, per_iteration) for _ in range(args.repeat))
        figures[name] = {"block_mips": block, "instruction_mips": insn, "bare_mips": bare,
                         "ratio": bare / block, "target": target}  # fmt: skip
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"exact-time loops, best of {args.repeat} (M guest instructions/s):")
    print(f"  {'loop':10s} {'block':>9s} {'per insn':>9s} {'bare':>9s}  bare/block  target")
    for name, f in figures.items():
        met = "met" if f["ratio"] <= f["target"] else "NOT met"
        print(f"  {name:10s} {f['block_mips']:9.1f} {f['instruction_mips']:9.1f} {f['bare_mips']:9.1f}  "
              f"{f['ratio']:8.2f}x  <= {f['target']}x {met}")  # fmt: skip


if __name__ == "__main__":
    main()
