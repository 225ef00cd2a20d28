"""Booting and running guests end to end: the bundled in-guest tests, ``xenpy run``'s contract, determinism.

Guests here are real machine code on the Unicorn engine: the bundled kernels built with gcc, and tiny kernels
assembled in the test for the crash and timeout paths.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from loader.elfgen import ElfSpec, Segment, make_elf, note

from xenpy.abi.elfnote import XEN_ELFNOTE as N
from xenpy.abi.vcpu import RUNSTATE_offline
from xenpy.cli.errors import EXIT_DATAERR
from xenpy.engine.unicorn_engine import UnicornEngine
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import boot_pv_image
from xenpy.toolstack.run import Outcome, run_domain
from xenpy.toolstack.trace import HypercallTracer

VIRT_BASE = 0x400000


def run_image(image: bytes, *, vcpus: int = 1, pcpus: int = 1, trace=None, timeout_s: float = 30.0):
    hv = Hypervisor(nr_pcpus=pcpus, memory_mib=48)
    booted = boot_pv_image(hv, image, max_vcpus=vcpus, memory_mib=32)
    if trace is not None:
        HypercallTracer(hv, trace)
    UnicornEngine(hv)
    report = run_domain(hv, booted.domain, timeout_s=timeout_s)
    booted.console.close()
    booted.domain.console.flush()
    return report, booted.domain.console.data.decode()


GUEST_TESTS = [
    ("hello", 1, 1),
    ("traps", 1, 1),
    ("pagefault", 1, 1),
    ("timer", 1, 1),
    ("ipi", 1, 1),
    ("smp", 2, 1),
    ("smp", 4, 2),
]


@pytest.mark.needs_gcc
@pytest.mark.parametrize(("name", "vcpus", "pcpus"), GUEST_TESTS, ids=[f"{n}-{v}v{p}p" for n, v, p in GUEST_TESTS])
def test_bundled_guest_passes(guest_build_dir: Path, name: str, vcpus: int, pcpus: int) -> None:
    """Each in-guest test boots through the PV boot protocol and reports SUCCESS as its last line."""
    report, console = run_image((guest_build_dir / f"test-pv64-{name}").read_bytes(), vcpus=vcpus, pcpus=pcpus)
    assert console.rstrip("\n").splitlines()[-1] == "Test result: SUCCESS", console
    assert report.outcome is Outcome.POWEROFF


@pytest.mark.needs_gcc
def test_same_image_same_options_same_everything(guest_build_dir: Path, tmp_path: Path) -> None:
    """Deterministic clock: console, hypercall trace and runstate figures are identical on every run."""
    image = (guest_build_dir / "test-pv64-smp").read_bytes()
    results = []
    for attempt in range(2):
        with open(tmp_path / f"trace{attempt}", "w") as trace:
            report, console = run_image(image, vcpus=4, pcpus=2, trace=trace)
        results.append((console, (tmp_path / f"trace{attempt}").read_text(), report.runstates, report.guest_ns))
    assert results[0] == results[1]
    assert results[0][1].count("\n") > 100


def tiny_kernel(code: bytes) -> bytes:
    """A PV64 kernel whose entry point is ``code`` (no hypercall page; it never makes a hypercall)."""
    notes = b"".join([
        note(N.XEN_ELFNOTE_XEN_VERSION, "xen-3.0"),
        note(N.XEN_ELFNOTE_LOADER, "generic"),
        note(N.XEN_ELFNOTE_VIRT_BASE, VIRT_BASE),
        note(N.XEN_ELFNOTE_PADDR_OFFSET, VIRT_BASE),
        note(N.XEN_ELFNOTE_ENTRY, VIRT_BASE),
    ])
    return make_elf(ElfSpec(segments=[Segment(VIRT_BASE, code.ljust(4096, b"\x90"))], entry=VIRT_BASE, notes=notes))


def test_fault_with_no_handler_crashes_the_domain_saying_where() -> None:
    """A #UD with an empty trap table crashes the domain with the vCPU, RIP and vector named."""
    report, _ = run_image(tiny_kernel(b"\x90\x90\x0f\x0b"))
    assert report.outcome is Outcome.CRASH
    assert "vCPU 0" in report.detail and "0x400002" in report.detail and "#UD" in report.detail, report.detail


def test_guest_that_never_stops_times_out() -> None:
    report, _ = run_image(tiny_kernel(b"\xeb\xfe"), timeout_s=0.5)  # jmp .
    assert report.outcome is Outcome.TIMEOUT
    assert report.runstates[0][0] != RUNSTATE_offline


def xenpy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xenpy", *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)  # a terminal's keys would be console input


@pytest.mark.needs_gcc
def test_cli_run_contract(guest_build_dir: Path, tmp_path: Path) -> None:
    """``xenpy run``: console on stdout, one summary line on stderr, a JSON trace, exit 0 on poweroff."""
    trace = tmp_path / "trace.jsonl"
    result = xenpy("run", str(guest_build_dir / "test-pv64-hello"), "--trace", str(trace), "--cmdline", "x=1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("Test result: SUCCESS")
    assert "x=1" in result.stdout  # the guest prints its command line
    [summary] = result.stderr.splitlines()
    assert summary.startswith("xenpy: d1 test-pv64-hello powered off after ")
    calls = [json.loads(line) for line in trace.read_text().splitlines()]
    assert calls[-1]["name"] == "sched_op" and calls[-1]["op"] == "SCHEDOP_shutdown"
    assert {"t_ns", "domid", "vcpu", "nr", "name", "args", "result"} <= calls[0].keys()


def test_cli_run_exit_codes(tmp_path: Path) -> None:
    """1 for a crash, 3 for a timeout, 65 for a bad image: one clear line, no traceback."""
    crash, loop, bad = tmp_path / "crash", tmp_path / "loop", tmp_path / "bad"
    crash.write_bytes(tiny_kernel(b"\x0f\x0b"))
    loop.write_bytes(tiny_kernel(b"\xeb\xfe"))
    bad.write_bytes(b"#!/bin/sh\necho not a kernel\n")
    result = xenpy("run", str(crash))
    assert result.returncode == 1 and "crashed" in result.stderr
    result = xenpy("run", str(loop), "--timeout", "0.5")
    assert result.returncode == 3 and "timed out" in result.stderr
    result = xenpy("run", str(bad))
    assert result.returncode == EXIT_DATAERR
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"xenpy: error: {bad}: ")
    assert "Traceback" not in result.stderr
