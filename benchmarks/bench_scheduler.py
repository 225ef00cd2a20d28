"""Scheduler throughput: 256 busy vCPUs on 16 pCPUs for 10 s of virtual time, with exact accounting.

Run: ``.venv/bin/python benchmarks/bench_scheduler.py [--vcpus 256] [--pcpus 16] [--seconds 10]``. The vCPUs
are spread over domains of 32 vCPUs, all brought up with VCPUOP_initialise/VCPUOP_up, and never block (no CPU
engine: a running vCPU consumes its whole slice). Prints the wall time, the number of context switches and
timer events, and checks to the nanosecond that:

* every vCPU's runstate sums to NOW - creation (spec 2.3);
* the running time of all vCPUs adds up to pCPUs x elapsed time (no pCPU is ever idle);
* the runnable (steal) time adds up to (vCPUs - pCPUs) x elapsed time.
"""

from __future__ import annotations

import argparse
import time

from xenpy.core.runstate import RUNSTATE_runnable, RUNSTATE_running
from xenpy.hypervisor import DomainConfig, Hypervisor

#: vCPUs >= 32 would need VCPUOP_register_vcpu_info before VCPUOP_initialise (spec 1.2 cmd 0).
VCPUS_PER_DOMAIN = 32
NSEC_PER_SEC = 1_000_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vcpus", type=int, default=256)
    parser.add_argument("--pcpus", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    hv = Hypervisor(nr_pcpus=args.pcpus, memory_mib=64 + args.vcpus // 4)
    domains = []
    left = args.vcpus
    while left > 0:
        n = min(VCPUS_PER_DOMAIN, left)
        dom = hv.create_domain(DomainConfig(max_vcpus=n, memory_mib=2))
        dom.unpause()
        hv.bring_up_vcpus(dom)
        domains.append(dom)
        left -= n
    vcpus = [v for d in domains for v in d.vcpus]
    start_ns = hv.now_ns()
    switches0 = hv.scheduler.nr_context_switches
    fired0 = hv.timers.nr_fired
    duration = int(args.seconds * NSEC_PER_SEC)

    wall0 = time.perf_counter()
    hv.run_for(duration)
    wall = time.perf_counter() - wall0

    now = hv.now_ns()
    elapsed = now - start_ns
    exact = True
    running = runnable = 0
    for v in vcpus:
        info = hv.runstate(v)
        if sum(info[2:]) != now - v.creation_ns:
            exact = False
        running += info[2 + RUNSTATE_running]
        runnable += info[2 + RUNSTATE_runnable]
    busy_ok = running == args.pcpus * elapsed
    print(
        f"{len(vcpus)} vCPUs in {len(domains)} domains on {args.pcpus} pCPUs, {elapsed / NSEC_PER_SEC:g} s of "
        f"virtual time"
    )
    print(f"wall time: {wall:.3f} s ({elapsed / NSEC_PER_SEC / wall:.1f}x real time)")
    print(
        f"context switches: {hv.scheduler.nr_context_switches - switches0}, "
        f"timer events: {hv.timers.nr_fired - fired0}, set-up hypercalls: {hv.dispatcher.count}"
    )
    print(f"sum(time) == NOW - creation for every vCPU: {'exact' if exact else 'MISMATCH'}")
    print(
        f"running time == pCPUs x elapsed ({args.pcpus * elapsed} ns): {running} ns "
        f"{'exact' if busy_ok else 'MISMATCH'}"
    )
    expected_steal = (len(vcpus) - args.pcpus) * elapsed
    print(
        f"runnable (steal) time == (vCPUs - pCPUs) x elapsed ({expected_steal} ns): {runnable} ns "
        f"{'exact' if runnable == expected_steal else 'MISMATCH'}"
    )
    if not (exact and busy_ok and runnable == expected_steal):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
