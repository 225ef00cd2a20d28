"""Start-up cost of the ``xenpy`` command: the whole process of ``xenpy run hello`` against ``python -c pass``
(target: at most 6 times as long).

Run: ``.venv/bin/python benchmarks/bench_startup.py [--repeat 10] [--json]`` (builds the guests with
``make -C guest`` first). Each figure is the best and the median of ``--repeat`` fresh processes, the commands
taking turns so that a busy machine slows them alike:

* ``python -c pass``: the interpreter's own start-up (the baseline of the ratio);
* ``import numpy, unicorn``: the third-party imports a run cannot avoid (the Unicorn engine's), with the one BLAS
  thread ``xenpy`` asks for, for reference;
* ``xenpy run hello``: the console script booting ``test-pv64-hello`` to its poweroff, as a user runs it, with
  xenpy's modules compiled once (the children get a bytecode cache of their own, as an installed xenpy has);
* ``xenpy run hello, no bytecode``: the same with ``PYTHONDONTWRITEBYTECODE=1`` and no cache of xenpy's modules
  (as in a shell that sets it over a source tree), compiling every xenpy module it imports at each start (for
  reference).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "guest" / "build" / "test-pv64-hello"
TARGET_RATIO = 6.0


def xenpy_command() -> list[str]:
    """The ``xenpy`` console script next to this interpreter, else ``python -m xenpy``."""
    script = Path(sys.executable).with_name("xenpy")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "xenpy"]


def wall(argv: list[str], env: dict[str, str]) -> float:
    """Seconds of one child process running ``argv`` (stdin /dev/null, output discarded); it must succeed."""
    start = time.perf_counter()
    status = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env).returncode  # fmt: skip
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(argv)} failed (status {status})")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="processes per command (default 10)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    subprocess.run(["make", "-s", "-C", str(ROOT / "guest")], check=True)
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    run = [*xenpy_command(), "run", str(IMAGE)]
    with tempfile.TemporaryDirectory() as cached:
        compiled = {**base, "PYTHONPYCACHEPREFIX": cached}
        uncompiled = {**base, "PYTHONDONTWRITEBYTECODE": "1"}
        commands = {
            "python -c pass": ([sys.executable, "-c", "pass"], compiled),
            # With the one BLAS thread xenpy asks for (xenpy.cli.main).
            "import numpy, unicorn": ([sys.executable, "-c", "import numpy, unicorn"],
                                      {**compiled, "OPENBLAS_NUM_THREADS": "1"}),
            "xenpy run hello": (run, compiled),
            "xenpy run hello, no bytecode": (run, uncompiled),
        }
        for argv, env in commands.values():
            wall(argv, env)  # fills the cache
        times: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(args.repeat):
            for label, (argv, env) in commands.items():
                times[label].append(wall(argv, env))
    figures: dict[str, object] = {
        label: {"best_ms": min(t) * 1e3, "median_ms": statistics.median(t) * 1e3} for label, t in times.items()
    }
    baseline = min(times["python -c pass"])
    ratio = min(times["xenpy run hello"]) / baseline
    figures["ratio"] = ratio
    figures["ratio_no_bytecode"] = min(times["xenpy run hello, no bytecode"]) / baseline
    figures["ratio_numpy_unicorn"] = min(times["import numpy, unicorn"]) / baseline
    figures["target_ratio"] = TARGET_RATIO
    figures["meets_target"] = ratio <= TARGET_RATIO
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for label in commands:
        f = figures[label]
        assert isinstance(f, dict)
        print(f"{label:29} best {f['best_ms']:7.1f} ms  median {f['median_ms']:7.1f} ms  "
              f"({min(times[label]) / baseline:4.1f}x python -c pass)")
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"xenpy run hello / python -c pass: {ratio:.1f}x ({verdict} the {TARGET_RATIO:g}x target)")


if __name__ == "__main__":
    main()
