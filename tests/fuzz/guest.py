"""The in-guest fuzzer's harness: ``test-pv64-fuzz`` booted seed after seed, its hypervisor checked after each run.

The guest (``guest/tests/fuzz/main.c``) makes random hypercalls from real guest code, as a hostile kernel would:
``safe`` runs make only calls the guest survives, with random commands among the harmless ones and random
arguments, and must end in SUCCESS with every call made; ``wild`` runs make any hypercall with any arguments
and usually end with the guest destroying itself within a few hundred calls. After each run the hypervisor must
be sound:

* no exception left the hypervisor, and no domain was crashed for a hypervisor error (a handler raised);
* the run loop kept control: a safe run shuts down within its time limit; a wild one ends however the guest
  brings about (shut down, crashed by its own doing, stalled, or still looping in its own code when its wall or
  guest time runs out);
* no page type count is negative, and every vCPU's runstate sums to its age (spec 2.1);
* the same seed gives the same console (the virtual clock makes a run deterministic).

The longest single hypercall invocation (host time) is measured with dispatcher hooks and printed.

Run: ``.venv/bin/python -m tests.fuzz.guest --calls 1000000 --seed 1 [--coverage FILE]`` (``make fuzz``, after
``make -C guest``); the quick suite runs a short campaign (``tests/fuzz/test_fuzz.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from xenpy.core.runstate import vcpu_runstate_get
from xenpy.engine import DEFAULT_ENGINE, create_engine
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import HYPERVISOR_MEMORY_MIB, boot_pv_image
from xenpy.toolstack.run import Outcome, run_domain

from .coverage import CallCoverage

IMAGE = Path(__file__).resolve().parents[2] / "guest" / "build" / "test-pv64-fuzz"
#: Calls of one safe run (the guest's ``calls=``).
SAFE_RUN_CALLS = 20_000
#: Calls a wild run asks for (it rarely lives that long).
WILD_RUN_CALLS = 5_000
#: Wall-clock limit of a safe run (s): it must shut down before.
RUN_TIMEOUT_S = 120.0
#: Limits of a wild run, wall clock (s) and guest time (ns): a guest that wrecked itself may loop in its own
#: code or in event delivery for ever (the hypervisor answering, time going on), which ends the run.
WILD_TIMEOUT_S = 10.0
WILD_GUEST_NS = 1_000_000_000


class GuestFuzzError(AssertionError):
    """The hypervisor broke an invariant; the message names the seed and the mode."""


@dataclass
class RunResult:
    """One boot of the fuzz guest."""

    seed: int
    wild: bool
    calls: int
    outcome: Outcome
    detail: str
    console: str
    longest_s: float
    longest_nr: int


def fuzz_run(seed: int, *, wild: bool, calls: int, image: Path = IMAGE,
             coverage: CallCoverage | None = None) -> RunResult:
    """Boot the fuzz guest with ``seed`` and check the hypervisor afterwards.

    Raises:
        GuestFuzzError: an invariant broke.
    """
    where = f"seed {seed} ({'wild' if wild else 'safe'})"
    hv = Hypervisor(nr_pcpus=2, memory_mib=32 + HYPERVISOR_MEMORY_MIB)
    booted = boot_pv_image(hv, image.read_bytes(), max_vcpus=2, memory_mib=32,
                           cmdline=f"seed={seed} calls={calls} wild={int(wild)}", name="fuzz")
    domain = booted.domain
    create_engine(DEFAULT_ENGINE, hv)
    started: list[float] = []
    longest = [0.0, -1]

    def pre(_vcpu: object, _nr: int, _args: tuple[int, ...]) -> None:
        started.append(time.perf_counter())

    def post(_vcpu: object, nr: int, _args: tuple[int, ...], _result: int) -> None:
        elapsed = time.perf_counter() - started.pop()
        if not started and elapsed > longest[0]:  # not an entry of a multicall
            longest[:] = [elapsed, nr]

    remove = hv.add_hypercall_hook(pre, post)
    remove_coverage = coverage.attach(hv) if coverage is not None else None
    calls_before = hv.dispatcher.count
    try:
        if wild:
            report = run_domain(hv, domain, timeout_s=WILD_TIMEOUT_S, max_guest_ns=WILD_GUEST_NS)
        else:
            report = run_domain(hv, domain, timeout_s=RUN_TIMEOUT_S)
    except Exception as exc:  # the hypervisor let an exception out of a guest's run
        raise GuestFuzzError(f"{where}: the run raised {exc!r}") from exc
    finally:
        remove()
        if remove_coverage is not None:
            remove_coverage()
    booted.console.close()
    domain.console.flush()
    console = domain.console.text()
    made = hv.dispatcher.count - calls_before
    if domain.crash_exception is not None or "hypervisor error" in (domain.crash_reason or ""):
        raise GuestFuzzError(f"{where}: a handler raised: {domain.crash_reason}")
    if not wild and (report.outcome is not Outcome.POWEROFF or "Test result: SUCCESS" not in console):
        raise GuestFuzzError(f"{where}: a safe run ended {report.outcome.name} ({report.detail}):\n{console[-2000:]}")
    counts = hv.machine.type_counts
    if counts.min(initial=0) < 0:
        raise GuestFuzzError(f"{where}: a negative page type count at mfn {int(counts.argmin())}")
    now = hv.now_ns()
    for v in domain.vcpus:
        info = vcpu_runstate_get(v, now)
        if sum(info[2:]) != max(now, info[1]) - v.creation_ns:
            raise GuestFuzzError(f"{where}: vCPU {v.vcpu_id}'s runstate times do not sum up: {info}")
    return RunResult(seed, wild, made, report.outcome, report.detail, console, longest[0], int(longest[1]))


def campaign(total_calls: int, seed: int, *, wild_every: int = 2, progress: bool = True,
             coverage: CallCoverage | None = None) -> list[RunResult]:
    """Runs from ``seed`` on, one in ``wild_every`` of them wild, until ``total_calls`` hypercalls were made; the
    first seed's safe run is repeated to check that it is deterministic."""
    results: list[RunResult] = []
    made = 0
    start = time.perf_counter()
    next_seed = seed
    while made < total_calls:
        wild = (next_seed - seed) % wild_every == wild_every - 1
        run_calls = min(WILD_RUN_CALLS if wild else SAFE_RUN_CALLS, total_calls - made)
        result = fuzz_run(next_seed, wild=wild, calls=run_calls, coverage=coverage)
        results.append(result)
        made += max(result.calls, 1)
        next_seed += 1
        if progress and (len(results) % 10 == 0 or made >= total_calls):
            print(f"{made} calls in {len(results)} runs, {time.perf_counter() - start:.1f} s", file=sys.stderr)
    first_safe = next((r for r in results if not r.wild), None)
    if first_safe is not None:
        again = fuzz_run(first_safe.seed, wild=False, calls=_guest_calls(first_safe))
        if again.console != first_safe.console:
            raise GuestFuzzError(f"seed {first_safe.seed} (safe): a second run printed another console")
    return results


def _guest_calls(result: RunResult) -> int:
    """The ``calls=`` a safe run was given (from its console's first fuzz line)."""
    for line in result.console.splitlines():
        if line.startswith("fuzz: seed "):
            return int(line.split(", ")[1].split()[0])
    return SAFE_RUN_CALLS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz xenpy from inside a guest: test-pv64-fuzz, seed after seed.")
    parser.add_argument("--calls", type=int, default=200_000, help="hypercalls to make in all (default 200000)")
    parser.add_argument("--seed", type=int, default=1, help="the first seed (default 1)")
    parser.add_argument("--wild-every", type=int, default=2,
                        help="one run in this many is wild (default 2: every other run)")
    parser.add_argument("--coverage", metavar="FILE", help="write the hypercalls and sub-ops reached (Markdown)")
    args = parser.parse_args(argv)
    if not IMAGE.exists():
        print(f"{IMAGE} is missing: run 'make -C guest' first", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        coverage = CallCoverage()
        results = campaign(args.calls, args.seed, wild_every=max(1, args.wild_every), coverage=coverage)
    except GuestFuzzError as failure:
        print(f"FAIL: {failure}", file=sys.stderr)
        return 1
    safe = [r for r in results if not r.wild]
    wild = [r for r in results if r.wild]
    if args.coverage:
        Path(args.coverage).write_text(coverage.report(f"In-guest fuzzer: {len(results)} runs from seed {args.seed}"))
    longest = max(results, key=lambda r: r.longest_s)
    endings: dict[str, int] = {}
    for r in wild:
        endings[r.outcome.name] = endings.get(r.outcome.name, 0) + 1
    seconds = time.perf_counter() - start
    print(f"{sum(r.calls for r in results)} in-guest calls in {len(results)} runs ({seconds:.1f} s): "
          f"{sum(r.calls for r in safe)} safe in {len(safe)} runs, all SUCCESS; {sum(r.calls for r in wild)} wild in "
          f"{len(wild)} runs, ended " + ", ".join(f"{n} {k}" for k, n in sorted(endings.items())) + "; "
          f"no invariant broken; longest single invocation {longest.longest_s * 1e3:.2f} ms "
          f"(hypercall {longest.longest_nr}, seed {longest.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
