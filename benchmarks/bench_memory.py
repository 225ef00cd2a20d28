"""Guest memory that costs what the guest touches: peak RSS, wall time and build time of ``xenpy run hello`` by guest
size, and the RSS of each extra vCPU (targets: ``--memory 1024`` under 160 MiB peak RSS and built as fast as
``--memory 32``; at most 1 MiB of RSS per extra vCPU).

Run: ``.venv/bin/python benchmarks/bench_memory.py [--repeat 3] [--json]`` (builds the guests with
``make -C guest`` first). Every figure comes from fresh processes, best of ``--repeat``; the baseline is
``python -c pass`` measured the same way in the same run. The children share a bytecode cache of their own (as an
installed xenpy has its modules compiled), filled by a first run. Per size (32, 1024 and 16384 MiB; 16384 only on a host
with the memory to map it):

* ``wall``, ``peak RSS``: the whole ``xenpy run hello --memory N`` (``wait4``'s ``ru_maxrss``);
* ``build``: the domain build alone (``Hypervisor`` and ``boot_pv_image``), in a process of its own.

Per vCPU: the peak RSS of ``test-pv64-smp`` (every vCPU brought up and running) with 8 vCPUs against 1, over 7.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUESTS = ROOT / "guest" / "build"
HELLO = GUESTS / "test-pv64-hello"
SMP = GUESTS / "test-pv64-smp"
SIZES_MIB = (32, 1024, 16384)
TARGET_RSS_MIB = 160
#: "As fast as --memory 32": within this factor of its wall time.
TARGET_WALL_FACTOR = 1.1
TARGET_MIB_PER_VCPU = 1.0
VCPUS = 8

BUILD = """
import json, sys, time
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import HYPERVISOR_MEMORY_MIB, boot_pv_image
image = open(sys.argv[1], "rb").read()
mib = int(sys.argv[2])
start = time.perf_counter()
hv = Hypervisor(memory_mib=mib + HYPERVISOR_MEMORY_MIB)
boot_pv_image(hv, image, memory_mib=mib)
print(json.dumps((time.perf_counter() - start) * 1e3))
"""


#: The children's environment: a bytecode cache (main sets its directory).
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}


def measure(argv: list[str]) -> tuple[float, float, bytes]:
    """(wall seconds, peak RSS in MiB, standard output) of one child process running ``argv``."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             env=ENV)  # fmt: skip
    out = child.stdout.read() if child.stdout else b""
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(argv)} failed (status {status})")
    return elapsed, usage.ru_maxrss / 1024, out  # ru_maxrss is in KiB on Linux


def best(argv: list[str], repeat: int) -> tuple[float, float, bytes]:
    """The least wall time and the least peak RSS of ``repeat`` runs (and the last output)."""
    runs = [measure(argv) for _ in range(repeat)]
    return min(r[0] for r in runs), min(r[1] for r in runs), runs[-1][2]


def host_mib() -> int:
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    return int(fields["MemTotal"].split()[0]) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="processes per figure (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    subprocess.run(["make", "-s", "-C", str(ROOT / "guest")], check=True)
    with tempfile.TemporaryDirectory() as cache:
        ENV["PYTHONPYCACHEPREFIX"] = cache
        figures = run(args.repeat)
    report(figures, args.json)


def run(repeat: int) -> dict[str, object]:
    """Every figure, with the targets met or not."""
    xenpy = [sys.executable, "-m", "xenpy", "run"]
    measure([*xenpy, str(SMP), "--no-input"])  # fills the bytecode cache
    wall, rss, _ = best([sys.executable, "-c", "pass"], repeat)
    figures: dict[str, object] = {"baseline": {"what": "python -c pass", "wall_ms": wall * 1e3, "peak_rss_mib": rss}}
    sizes: dict[str, object] = {}
    for mib in SIZES_MIB:
        if mib + 1024 > host_mib():
            sizes[str(mib)] = {"skipped": f"the host has {host_mib()} MiB"}
            continue
        wall, rss, _ = best([*xenpy, str(HELLO), "--memory", str(mib), "--no-input"], repeat)
        builds = [json.loads(measure([sys.executable, "-c", BUILD, str(HELLO), str(mib)])[2])
                  for _ in range(repeat)]  # fmt: skip
        sizes[str(mib)] = {"wall_ms": wall * 1e3, "peak_rss_mib": rss, "build_ms": min(builds)}
    figures["sizes"] = sizes
    one = best([*xenpy, str(SMP), "--vcpus", "1", "--no-input"], repeat)[1]
    many = best([*xenpy, str(SMP), "--vcpus", str(VCPUS), "--no-input"], repeat)[1]
    figures["vcpus"] = {"guest": SMP.name, "peak_rss_mib_1": one, f"peak_rss_mib_{VCPUS}": many,
                        "mib_per_extra_vcpu": (many - one) / (VCPUS - 1)}  # fmt: skip
    small, large = sizes["32"], sizes["1024"]
    assert isinstance(small, dict) and isinstance(large, dict)
    figures["targets"] = {
        "rss_1024_under_160_mib": large["peak_rss_mib"] < TARGET_RSS_MIB,
        "wall_1024_as_32": large["wall_ms"] <= TARGET_WALL_FACTOR * small["wall_ms"],
        "mib_per_vcpu_at_most_1": figures["vcpus"]["mib_per_extra_vcpu"] <= TARGET_MIB_PER_VCPU,  # type: ignore[index]
    }
    return figures


def report(figures: dict[str, object], as_json: bool) -> None:
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    sizes = figures["sizes"]
    assert isinstance(sizes, dict)
    small = sizes["32"]
    base = figures["baseline"]
    assert isinstance(base, dict)
    print(f"python -c pass             {base['wall_ms']:7.1f} ms  {base['peak_rss_mib']:7.1f} MiB peak RSS")
    for mib, f in sizes.items():
        assert isinstance(f, dict)
        if "skipped" in f:
            print(f"xenpy run hello {int(mib):6} MiB  skipped: {f['skipped']}")
            continue
        note = ""
        if mib == "1024":
            rss_ok = "meets" if f["peak_rss_mib"] < TARGET_RSS_MIB else "MISSES"
            wall_ok = "meets" if f["wall_ms"] <= TARGET_WALL_FACTOR * small["wall_ms"] else "MISSES"
            note = (f"  ({rss_ok} the {TARGET_RSS_MIB} MiB target; {f['wall_ms'] / small['wall_ms']:.2f}x the "
                    f"32 MiB run: {wall_ok} 'as fast')")
        print(f"xenpy run hello {int(mib):6} MiB {f['wall_ms']:7.1f} ms  {f['peak_rss_mib']:7.1f} MiB peak RSS  "
              f"build {f['build_ms']:6.1f} ms{note}")
    v = figures["vcpus"]
    assert isinstance(v, dict)
    verdict = "meets" if v["mib_per_extra_vcpu"] <= TARGET_MIB_PER_VCPU else "MISSES"
    print(f"{v['guest']} --vcpus 1 {v['peak_rss_mib_1']:.1f} MiB, --vcpus {VCPUS} {v[f'peak_rss_mib_{VCPUS}']:.1f} "
          f"MiB peak RSS: {v['mib_per_extra_vcpu']:.2f} MiB per extra vCPU ({verdict} the "
          f"{TARGET_MIB_PER_VCPU:g} MiB target)")


if __name__ == "__main__":
    main()
