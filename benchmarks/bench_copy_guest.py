"""Cost of the hypercall hot path's guest copies: a 48-byte ``copy_to_guest`` / ``copy_from_guest``.

Builds one PV64 domain with a few mapped pages, then times each call with ``time.perf_counter_ns`` and prints
the median and 99th percentile in microseconds. Not a test: run it by hand,
``.venv/bin/python benchmarks/bench_copy_guest.py [iterations]``.
"""

import statistics
import sys
import time
from collections.abc import Callable

from xenpy.core.memory import PAGE_SIZE, DomainMemory, MachineMemory
from xenpy.core.pagetable import PageTableBuilder, copy_from_guest, copy_to_guest, translate

KERNEL_GVA = 0xFFFF_FFFF_8000_0000
DOMID = 1


def measure(call: Callable[[], object], iterations: int) -> list[int]:
    """Run ``call`` ``iterations`` times after a short warm-up; return each duration in ns."""
    for _ in range(200):
        call()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(iterations):
        start = clock()
        call()
        samples.append(clock() - start)
    return samples


def report(name: str, samples: list[int]) -> None:
    """Print median and p99 of ``samples`` (ns) in microseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, (len(ordered) * 99) // 100)]
    print(f"{name:<36} median {statistics.median(ordered) / 1000:7.2f} us   p99 {p99 / 1000:7.2f} us")


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    machine = MachineMemory(4096, seed=0)
    domain = DomainMemory(machine, DOMID, 2048)
    builder = PageTableBuilder(domain, range(2040, 2048))
    builder.map_range(KERNEL_GVA, 0, 16)
    cr3 = builder.cr3
    payload = bytes(range(48))
    inside = KERNEL_GVA + 3 * PAGE_SIZE + 0x100
    straddling = KERNEL_GVA + 4 * PAGE_SIZE - 24

    print(f"{iterations} iterations per figure")
    report(
        "translate (write)",
        measure(lambda: translate(machine, cr3, inside, write=True, domid=DOMID), iterations),
    )
    report(
        "copy_to_guest 48 B",
        measure(lambda: copy_to_guest(machine, cr3, inside, payload, domid=DOMID), iterations),
    )
    report(
        "copy_from_guest 48 B",
        measure(lambda: copy_from_guest(machine, cr3, inside, 48, domid=DOMID), iterations),
    )
    report(
        "copy_to_guest 48 B across a page",
        measure(lambda: copy_to_guest(machine, cr3, straddling, payload, domid=DOMID), iterations),
    )
    report(
        "copy_from_guest 48 B across a page",
        measure(lambda: copy_from_guest(machine, cr3, straddling, 48, domid=DOMID), iterations),
    )


if __name__ == "__main__":
    main()
