"""Watch steal time with xenpy's Python API: boot the load guest and print each vCPU's shares as it runs.

Run from the repository after ``make setup`` and ``make -C guest``::

    .venv/bin/python examples/watch_steal.py [--load spin,spin,spin] [--pcpus 2] [--every-ms 5] [--for-ms 40]

The hypervisor runs in this process: :func:`xenpy.toolstack.monitor.take_sample` reads every vCPU's runstate
between steps of guest time, and :func:`~xenpy.toolstack.monitor.shares` turns two samples into each vCPU's
running, runnable, blocked and offline shares and its steal. To watch a ``xenpy run --control`` in another
process instead, take the samples from :class:`xenpy.toolstack.control.ControlClient` (``client.samples(0.1)``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from xenpy.engine import DEFAULT_ENGINE, create_engine
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import HYPERVISOR_MEMORY_MIB, boot_pv_image
from xenpy.toolstack.monitor import shares, take_sample
from xenpy.toolstack.run import run_domain

IMAGE = Path(__file__).resolve().parent.parent / "guest" / "build" / "test-pv64-runstate-load"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", default="spin,spin,spin", help="the guest's load= pattern (vCPUs 1, 2, 3)")
    parser.add_argument("--pcpus", type=int, default=2, help="simulated pCPUs (default 2)")
    parser.add_argument("--every-ms", type=float, default=5.0, help="guest ms between samples (default 5)")
    parser.add_argument("--for-ms", type=float, default=40.0, help="guest ms to watch (default 40)")
    args = parser.parse_args()

    hv = Hypervisor(nr_pcpus=args.pcpus, memory_mib=32 + HYPERVISOR_MEMORY_MIB)
    booted = boot_pv_image(hv, IMAGE.read_bytes(), max_vcpus=4, memory_mib=32, cmdline=f"load={args.load}")
    create_engine(DEFAULT_ENGINE, hv)  # attaches itself to the scheduler
    domain = booted.domain

    step_ns = int(args.every_ms * 1e6)
    print(f"{'guest ms':>9} {'vcpu':>4} {'state':<9} {'run%':>6} {'wait%':>6} {'block%':>6} {'off%':>6} {'steal%':>7}")
    before = take_sample(hv)
    while before.time_ns < args.for_ms * 1e6:
        run_domain(hv, domain, timeout_s=60, max_guest_ns=step_ns)
        after = take_sample(hv)
        for row in shares(before, after):
            steal = "-" if row.steal is None else f"{row.steal:.1f}"
            print(f"{after.time_ns / 1e6:9.1f} {row.vcpu:>4} {row.state:<9}"
                  + "".join(f"{p:6.1f} " for p in row.percent) + f"{steal:>6}")
        before = after
    hv.destroy_domain(domain)


if __name__ == "__main__":
    main()
