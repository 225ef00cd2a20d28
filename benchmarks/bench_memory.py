"""Guest memory that costs what the guest touches: peak RSS and wall time of ``xenpy run hello`` by guest size
(target: ``--memory 1024`` under 160 MiB peak RSS, and built about as fast as ``--memory 32``).

Run: ``.venv/bin/python benchmarks/bench_memory.py`` (builds the guests with ``make -C guest`` first). Each size
runs in a fresh process; the baseline is ``python -c pass`` measured the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "guest" / "build" / "test-pv64-hello"
SIZES_MIB = (32, 1024, 4096)
TARGET_RSS_MIB = 160


def measure(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process running ``argv``."""
    start = time.perf_counter()
    pid = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(argv)} failed (status {status})")
    return elapsed, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    subprocess.run(["make", "-s", "-C", str(ROOT / "guest")], check=True)
    wall, rss = measure([sys.executable, "-c", "pass"])
    print(f"python -c pass            {wall * 1e3:7.1f} ms  {rss:7.1f} MiB peak RSS")
    for size in SIZES_MIB:
        wall, rss = measure([sys.executable, "-m", "xenpy", "run", str(IMAGE), "--memory", str(size), "--no-input"])
        verdict = "meets" if rss < TARGET_RSS_MIB else "MISSES"
        note = f"  ({verdict} the {TARGET_RSS_MIB} MiB target)" if size == 1024 else ""
        print(f"xenpy run hello {size:5} MiB {wall * 1e3:7.1f} ms  {rss:7.1f} MiB peak RSS{note}")


if __name__ == "__main__":
    main()
