"""Save and restore throughput (MiB of guest memory per second) and live-migration downtime for a 64 MiB and a
512 MiB guest, beside a plain copy of the same bytes in the same run.

For each size the bundled suspend guest boots, is saved (``save_domain``: the suspend, then the stream) to a file
in a temporary directory and restored (``restore_domain``) into another hypervisor, and the restored guest runs
to its verdict. The baseline writes the guest's frames to a file of the same directory and reads them back into
the machine memory, in the scrambled order of its p2m, as the save and restore must. Then a second boot of the
guest migrates live over a socket pair to a receiver thread (``migrate_domain``, ``receive_domain``): the rounds,
the pages resent and the downtime, from the guest's suspend to the receiver's answer. Prints one line per size;
``--json`` prints them as one JSON object instead.

    .venv/bin/python benchmarks/bench_save_restore.py [--sizes 64,512] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from xenpy.core.clock import VirtualClock
from xenpy.engine.runner import run_domain_until_stopped
from xenpy.engine.unicorn_engine import UnicornEngine
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import HYPERVISOR_MEMORY_MIB, boot_pv_image
from xenpy.toolstack.migration.migrate import migrate_domain, receive_domain
from xenpy.toolstack.migration.restore import restore_domain
from xenpy.toolstack.migration.save import save_domain
from xenpy.toolstack.migration.transport import Link

GUEST = Path(__file__).resolve().parent.parent / "guest" / "build" / "test-pv64-suspend"


def boot_ready(mib: int) -> tuple[Hypervisor, object]:
    """The suspend guest booted and waiting for the toolstack."""
    hv = Hypervisor(memory_mib=mib + HYPERVISOR_MEMORY_MIB)
    booted = boot_pv_image(hv, GUEST.read_bytes(), max_vcpus=2, memory_mib=mib, cmdline="wait=60000")
    UnicornEngine(hv)
    node = f"/local/domain/{booted.domain.domid}/data/suspend"
    while booted.xenstore.store.read(node) != b"ready":
        run_domain_until_stopped(hv, booted.domain, max_guest_ns=1_000_000)
    return hv, booted


def migrate_once(mib: int) -> dict[str, float]:
    hv, booted = boot_ready(mib)
    a, b = socket.socketpair()
    sender = Link(a.makefile("wb"), a.makefile("rb"), [a.close])
    receiver = Link(b.makefile("wb"), b.makefile("rb"), [b.close])
    received: dict[str, object] = {}

    def receive() -> None:
        received["result"] = receive_domain(receiver, lambda cfg, sent_at: Hypervisor(
            memory_mib=cfg.memory_mib + 2 * HYPERVISOR_MEMORY_MIB, seed=2, clock=VirtualClock(start_ns=sent_at)))

    thread = threading.Thread(target=receive)
    thread.start()
    start = time.perf_counter()
    summary = migrate_domain(hv, booted.domain, sender)
    total = time.perf_counter() - start
    thread.join()
    sender.close()
    receiver.close()
    return {"rounds": summary.rounds, "resent": summary.pages_resent, "final_pages": summary.final_pages,
            "downtime_ms": summary.downtime_ms, "max_downtime_ms": summary.max_downtime_ms,
            "migrate_mib_s": mib / total}


def measure(mib: int, directory: Path) -> dict[str, float]:
    hv, booted = boot_ready(mib)
    d = booted.domain
    mfns = d.memory.p2m.mfns.copy()

    # Baseline: the same bytes to a file and back, page by page in p2m order.
    plain = directory / "plain.bin"
    start = time.perf_counter()
    with open(plain, "wb") as out:
        for first in range(0, len(mfns), 1024):
            out.write(hv.system.machine.frames[mfns[first : first + 1024]].tobytes())
    plain_write = time.perf_counter() - start
    start = time.perf_counter()
    with open(plain, "rb") as source:
        for first in range(0, len(mfns), 1024):
            chunk = np.frombuffer(source.read(1024 * 4096), dtype=np.uint8).reshape(-1, 4096)
            hv.system.machine.frames[mfns[first : first + len(chunk)]] = chunk
    plain_read = time.perf_counter() - start
    plain.unlink()

    saved = directory / "guest.xl"
    start = time.perf_counter()
    with open(saved, "wb") as out:
        summary = save_domain(hv, d, out)
    save_s = time.perf_counter() - start
    size = saved.stat().st_size

    hv2 = Hypervisor(memory_mib=mib + 2 * HYPERVISOR_MEMORY_MIB, seed=1,
                     clock=VirtualClock(start_ns=summary.saved_at_ns))  # fmt: skip
    start = time.perf_counter()
    with open(saved, "rb") as source:
        restored = restore_domain(hv2, source)
    restore_s = time.perf_counter() - start
    UnicornEngine(hv2)
    lines: list[bytes] = []
    restored.domain.console.listen(lines.append)
    run_domain_until_stopped(hv2, restored.domain, timeout_s=120)
    saved.unlink()
    verdict = lines[-1].decode().strip() if lines else "(no output)"
    return {
        "mib": mib,
        "file_mib": size / (1 << 20),
        "save_mib_s": mib / save_s,
        "stream_mib_s": mib / summary.seconds,
        "restore_mib_s": mib / restore_s,
        "plain_write_mib_s": mib / plain_write,
        "plain_read_mib_s": mib / plain_read,
        "suspend_ms": summary.suspend_ns / 1e6,
        "verdict": verdict,
        **migrate_once(mib),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,512", help="guest sizes in MiB (default 64,512)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if not GUEST.is_file():
        raise SystemExit(f"{GUEST} is missing: make -C guest")
    results = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        for mib in (int(s) for s in args.sizes.split(",")):
            results.append(measure(mib, Path(tmp)))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(f"{r['mib']:4d} MiB guest: save {r['save_mib_s']:7.0f} MiB/s (stream alone {r['stream_mib_s']:.0f}; "
              f"plain write {r['plain_write_mib_s']:.0f}, {r['save_mib_s'] / r['plain_write_mib_s']:.2f}x), "
              f"restore {r['restore_mib_s']:7.0f} MiB/s (plain read {r['plain_read_mib_s']:.0f}, "
              f"{r['restore_mib_s'] / r['plain_read_mib_s']:.2f}x); file {r['file_mib']:.1f} MiB; suspend "
              f"{r['suspend_ms']:.3f} ms; restored guest: {r['verdict']}")
        print(f"{r['mib']:4d} MiB guest: live migration {r['migrate_mib_s']:7.0f} MiB/s, {r['rounds']} round(s), "
              f"{r['resent']} pages resent, {r['final_pages']} sent paused, downtime {r['downtime_ms']:.1f} ms "
              f"(bound {r['max_downtime_ms']:g} ms)")


if __name__ == "__main__":
    main()
