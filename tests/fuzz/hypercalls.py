"""A structure-aware fuzzer of the hypercall layer, through the Python API.

Every call picks a hypercall of the table (or a number outside it), a sub-op of its family (or a random
command), a calling vCPU, and arguments built for the C types the table gives: a pointer argument names a
buffer in guest memory holding the sub-op's argument structure (``xenpy.abi`` layouts) with each field drawn from
values that matter to Xen's checks (0, 1, boundaries, the caller's domid and DOMID_SELF, its own mfns and
gvas, unmapped and hypervisor-hole addresses, random), or random bytes, or an address that faults. After each
call the invariants are checked:

* no exception leaves the hypervisor, and no domain is crashed for a hypervisor error (the dispatcher's
  ``crash_caller``: a handler raised);
* no page type count is negative;
* every vCPU's runstate sums to ``max(now, state_entry_time) - creation`` (spec 2.1).

A domain that the calls shut down or crash legitimately (SCHEDOP_shutdown, a vCPU_op on the last vCPU), or
leave with no vCPU that can run (all down, blocked or paused), is replaced by a fresh one. Calls come from a vCPU
that can run, as a guest's would. A failure raises :class:`InvariantError` with the seed, the call number and the call.

Run: ``.venv/bin/python -m tests.fuzz.hypercalls --calls 1000000 --seed 1 [--coverage FILE]`` (``make fuzz``);
the quick test suite runs a short campaign (``tests/fuzz/test_fuzz.py``).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from xenpy.abi.cstruct import CStruct, CUnion, layout_rows
from xenpy.abi.generated.hypercalls import HYPERCALLS
from xenpy.abi.xen import DOMID_SELF
from xenpy.core.domain import Domain, DomainState
from xenpy.core.runstate import vcpu_runstate_get
from xenpy.hypervisor import DomainConfig, Hypervisor

from .coverage import CallCoverage

#: Hypercall numbers outside the table that are tried too.
OUT_OF_TABLE = (64, 65, 255, 0xFFFF_FFFF, 1 << 63)
#: Addresses that fault: unmapped lower half, Xen's hole, non-canonical, the top page.
BAD_GVAS = (0, 0x1000, 0x0000_4000_0000_0000, 0xFFFF_8000_0000_1000, 0x0000_8000_0000_0000, 0xFFFF_FFFF_FFFF_F000)
NR_VCPUS = 4
BUFFER_PAGES = 4
_U64 = (1 << 64) - 1


class InvariantError(AssertionError):
    """An invariant broke; the message names the seed, the call and what broke."""


@dataclass
class Call:
    """One fuzzed hypercall: the vCPU, the number and the five raw argument registers."""

    vcpu: int
    nr: int
    args: tuple[int, ...]

    def __str__(self) -> str:
        name = HYPERCALLS[self.nr].name if self.nr in HYPERCALLS else "?"
        return f"vCPU {self.vcpu}: hypercall {self.nr} ({name}) args {', '.join(hex(a) for a in self.args)}"


class HypercallFuzzer:
    """Issues random hypercalls against a fresh hypervisor and checks the invariants after each."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.hv = Hypervisor(nr_pcpus=2, memory_mib=64)
        self.domain = self._new_domain()
        self.calls = 0
        self.slowest = (0.0, "")
        #: The longest single invocation (a continued call is several): seconds, hypercall number.
        self.slowest_invocation = (0.0, -1)
        self._started: list[float] = []
        self.hv.add_hypercall_hook(pre=self._pre, post=self._post)

    def _new_domain(self) -> Domain:
        dom = self.hv.create_domain(DomainConfig(max_vcpus=NR_VCPUS, memory_mib=4))
        dom.unpause()
        self.buffers = [dom.alloc_guest_page() for _ in range(BUFFER_PAGES)]
        self.buffer_mfns = [dom.gva_to_mfn(gva) for gva in self.buffers]
        return dom

    # ---------------------------------------------------------------- values

    def _scalar(self, nbytes: int) -> int:
        rng, dom = self.rng, self.domain
        bits = 8 * nbytes
        choice = rng.randrange(12)
        if choice == 0:
            value = 0
        elif choice == 1:
            value = 1
        elif choice == 2:
            value = rng.randrange(NR_VCPUS + 2)
        elif choice == 3:
            value = (1 << bits) - 1
        elif choice == 4:
            value = 1 << (bits - 1)
        elif choice == 5:
            value = (1 << (bits - 1)) - 1
        elif choice == 6:
            value = rng.choice((dom.domid, DOMID_SELF, 0, 0x7FF1, 0x7FF2, 0x7FF4))
        elif choice == 7:
            value = rng.choice(self.buffers) + rng.randrange(0, 4096, 8)
        elif choice == 8:
            value = rng.choice(BAD_GVAS)
        elif choice == 9:
            value = rng.choice(self.buffer_mfns)
        elif choice == 10:
            value = rng.randrange(1 << min(bits, 16))
        else:
            value = rng.getrandbits(bits)
        return value & ((1 << bits) - 1)

    def _struct_bytes(self, name: str | None) -> bytes:
        """A buffer for argument structure ``name``: field by field from the value pool, or random bytes."""
        rng = self.rng
        layout = getattr(self.domain.abi, name, None) if name else None
        if not isinstance(layout, CStruct | CUnion) or rng.random() < 0.2:
            return rng.randbytes(rng.choice((8, 16, 64, 256, 4096)))
        out = bytearray(rng.randbytes(layout.size) if rng.random() < 0.3 else bytes(layout.size))
        for row in layout_rows(layout):
            if row.c_type.startswith(("struct ", "union ")) or "[" in row.c_type or row.size > 8:
                continue
            if rng.random() < 0.7:
                out[row.offset : row.offset + row.size] = self._scalar(row.size).to_bytes(row.size, "little")
        return bytes(out)

    def _pointer(self, struct_name: str | None) -> int:
        rng = self.rng
        pick = rng.random()
        if pick < 0.15:
            return rng.choice(BAD_GVAS)
        data = self._struct_bytes(struct_name)[: BUFFER_PAGES * 4096]
        page = rng.randrange(BUFFER_PAGES - (len(data) - 1) // 4096)
        gva = self.buffers[page]
        if pick < 0.25 and len(data) <= 4096:  # end at the last byte of the buffers: the next page is not ours
            gva = self.buffers[-1] + 4096 - len(data)
        self._fill(gva, data)
        return gva

    def _fill(self, gva: int, data: bytes) -> None:
        """Write ``data`` at ``gva`` of the buffers through their frames (the calls may have unmapped them)."""
        machine = self.hv.machine
        while data:
            page, offset = divmod(gva - self.buffers[0], 4096)
            chunk = data[: 4096 - offset]
            machine.write((self.buffer_mfns[page] << 12) + offset, chunk)
            data, gva = data[len(chunk):], gva + len(chunk)

    def next_call(self) -> Call:
        rng = self.rng
        nr = rng.choice(OUT_OF_TABLE) if rng.random() < 0.02 else rng.choice(list(HYPERCALLS))
        definition = HYPERCALLS.get(nr)
        args = [self._scalar(8) for _ in range(5)]
        if definition is not None:
            subop = rng.choice(definition.subops) if definition.subops and rng.random() < 0.9 else None
            for i, arg in enumerate(definition.args[:5]):
                if i == 0 and definition.subops and subop is not None:
                    args[i] = subop.value
                elif arg.c_type.endswith("*"):
                    args[i] = self._pointer(subop.arg_struct if subop else arg.c_type.rstrip(" *").removesuffix("_t"))
        callers = [v.vcpu_id for v in self.domain.vcpus if v.is_running or v.runnable]
        return Call(rng.choice(callers) if callers else 0, nr, tuple(a & _U64 for a in args))

    # ---------------------------------------------------------------- running

    def _pre(self, _vcpu: object, _nr: int, _args: tuple[int, ...]) -> None:
        self._started.append(time.perf_counter())

    def _post(self, _vcpu: object, nr: int, _args: tuple[int, ...], _result: int) -> None:
        elapsed = time.perf_counter() - self._started.pop()
        if not self._started and elapsed > self.slowest_invocation[0]:  # not a call nested in a multicall
            self.slowest_invocation = (elapsed, nr)

    def step(self) -> None:
        call = self.next_call()
        dom = self.domain
        start = time.perf_counter()
        try:
            self.hv.hypercall(dom.vcpus[call.vcpu], call.nr, *call.args)
        except Exception as exc:  # the hypervisor let an exception out
            raise InvariantError(self._where(call, f"raised {exc!r}")) from exc
        elapsed = time.perf_counter() - start
        if elapsed > self.slowest[0]:
            self.slowest = (elapsed, str(call))
        self.calls += 1
        self._check(call)

    def _check(self, call: Call) -> None:
        dom, hv = self.domain, self.hv
        reason = dom.crash_reason or ""
        if "hypervisor error" in reason:
            raise InvariantError(self._where(call, reason))
        counts = hv.machine.type_counts
        if counts.min(initial=0) < 0:
            raise InvariantError(self._where(call, f"a negative page type count at mfn {int(counts.argmin())}"))
        now = hv.now_ns()
        for v in dom.vcpus:
            info = vcpu_runstate_get(v, now)
            if sum(info[2:]) != max(now, info[1]) - v.creation_ns:
                raise InvariantError(self._where(call, f"vCPU {v.vcpu_id}'s runstate times do not sum up: {info}"))
        stuck = not any(v.is_running or v.runnable for v in dom.vcpus)  # every vCPU down, blocked or paused
        if dom.state in (DomainState.SHUTDOWN, DomainState.CRASHED) or dom.is_dying or stuck:
            hv.destroy_domain(dom)
            self.domain = self._new_domain()

    def _where(self, call: Call, what: str) -> str:
        return f"seed {self.seed}, call {self.calls + 1}: {call}: {what}"

    def run(self, calls: int) -> None:
        for _ in range(calls):
            self.step()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz xenpy's hypercalls through the Python API.")
    parser.add_argument("--calls", type=int, default=100_000, help="hypercalls to issue (default 100000)")
    parser.add_argument("--seed", type=int, default=1, help="the random seed (default 1)")
    parser.add_argument("--coverage", metavar="FILE", help="write the hypercalls and sub-ops reached (Markdown)")
    args = parser.parse_args(argv)
    fuzzer = HypercallFuzzer(args.seed)
    coverage = CallCoverage()
    coverage.attach(fuzzer.hv)
    start = time.perf_counter()
    step = max(1, args.calls // 10)
    try:
        for done in range(0, args.calls, step):
            fuzzer.run(min(step, args.calls - done))
            print(f"{fuzzer.calls} calls, {time.perf_counter() - start:.1f} s", file=sys.stderr)
    except InvariantError as failure:
        print(f"FAIL: {failure}", file=sys.stderr)
        return 1
    if args.coverage:
        Path(args.coverage).write_text(coverage.report(f"Python-API fuzzer: {fuzzer.calls} calls, seed {args.seed}"))
    seconds, call = fuzzer.slowest
    longest, nr = fuzzer.slowest_invocation
    print(f"{fuzzer.calls} calls, no invariant broken; slowest {seconds * 1e3:.2f} ms: {call}; "
          f"longest single invocation {longest * 1e3:.2f} ms (hypercall {nr})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
