"""Boot-to-shutdown wall time of the bundled ``hello`` guest (target: under 1 s).

Run: ``.venv/bin/python benchmarks/bench_boot.py [--repeat 5]`` (builds the guests with ``make -C guest``
first). Two figures, best and median of ``--repeat`` runs:

* ``in-process``: boot_pv_image (parse the ELF, lay the domain out, build page tables, load vCPU 0) plus the
  run to SHUTDOWN_poweroff on the Unicorn engine, in an already-started Python;
* ``xenpy run``: the whole command as a user runs it, including Python start-up and imports.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from xenpy.engine.unicorn_engine import UnicornEngine
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import boot_pv_image
from xenpy.toolstack.run import Outcome, run_domain

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "guest" / "build" / "test-pv64-hello"
TARGET_S = 1.0


def in_process(image: bytes) -> float:
    start = time.perf_counter()
    hv = Hypervisor(memory_mib=40)
    booted = boot_pv_image(hv, image, memory_mib=32)
    UnicornEngine(hv)
    report = run_domain(hv, booted.domain, timeout_s=30)
    elapsed = time.perf_counter() - start
    if report.outcome is not Outcome.POWEROFF:
        raise SystemExit(f"hello did not power off: {report.outcome.name} ({report.detail})")
    return elapsed


def command() -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "xenpy", "run", str(IMAGE)], capture_output=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"xenpy run failed ({result.returncode}): {result.stderr.decode()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    subprocess.run(["make", "-s", "-C", str(ROOT / "guest")], check=True)
    image = IMAGE.read_bytes()
    in_process(image)  # warm-up: compiles the engine's native helper on first use
    for label, measure in (("in-process", lambda: in_process(image)), ("xenpy run", command)):
        times = [measure() for _ in range(args.repeat)]
        best, median = min(times), statistics.median(times)
        verdict = "meets" if median < TARGET_S else "MISSES"
        print(f"{label:11} best {best * 1e3:8.1f} ms  median {median * 1e3:8.1f} ms  "
              f"({verdict} the {TARGET_S:g} s target)")


if __name__ == "__main__":
    main()
