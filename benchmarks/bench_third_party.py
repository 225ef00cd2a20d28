"""Third-party kernels: Debian's Linux booted to a busybox shell on xenpy, and XTF's example test on xenpy and on
real Xen (QEMU + Xen 4.20) in the same run.

Run: ``.venv/bin/python benchmarks/bench_third_party.py [--repeat 3]``. Each part runs when its material is there
and says why not otherwise:

* Linux: Debian's cloud kernel and busybox-static through ``apt-get download`` (cached in
  ``~/.cache/xenpy/debian``); the initramfs's ``/init`` prints a line and starts a shell, the shell is given
  ``poweroff -f``. Figures: wall time to the shell's first output and to the power-off, guest instructions and
  millions of instructions per second (target: boot to a shell and power off in under 60 s); the same kernel
  as dom0 of Xen 4.20 under QEMU, its ``/init`` powering off at once (QEMU and Xen boot included);
* XTF example: ``$XENPY_XTF_DIR`` (default ``~/.cache/xenpy/xtf``, a built XTF tree); boot to its verdict on xenpy
  (in-process), and as dom0 of Xen 4.20 under QEMU when ``qemu-system-x86_64`` and ``xenpy fetch-xen``'s images
  are present (that figure includes QEMU's and Xen's own boot).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from xenpy.engine import DEFAULT_ENGINE, create_engine
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import DEFAULT_MEMORY_MIB, HYPERVISOR_MEMORY_MIB, boot_pv_image
from xenpy.toolstack.conformance.fetch import DEFAULT_DEST
from xenpy.toolstack.conformance.oracle import OracleError, boot_on_xen, find_qemu
from xenpy.toolstack.console_input import ConsoleInput
from xenpy.toolstack.run import Outcome, run_domain

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.thirdparty import debian  # noqa: E402  (the Debian helpers of the third-party tests)

LINUX_TARGET_S = 60.0
LINUX_MEMORY_MIB = 256
SHELL_MARK = b"bench-shell-up"
INIT = f"""/bin/busybox --install -s
echo {SHELL_MARK.decode()}
exec sh
"""
XTF_EXAMPLE = Path(os.environ.get("XENPY_XTF_DIR", Path.home() / ".cache" / "xenpy" / "xtf")) / (
    "tests/example/test-pv64-example"
)
XEN_4_20 = Path(os.environ.get("XENPY_XEN_DIR", DEFAULT_DEST)) / "xen-4.20"


def boot_linux(kernel: bytes, initrd: bytes) -> tuple[float, float, int]:
    """(seconds to the shell's first line, seconds to the power-off, guest instructions) of one boot."""
    start = time.perf_counter()
    hv = Hypervisor(memory_mib=LINUX_MEMORY_MIB + HYPERVISOR_MEMORY_MIB)
    booted = boot_pv_image(hv, kernel, memory_mib=LINUX_MEMORY_MIB, initrd=initrd, cmdline="console=hvc0 quiet")
    shell_at: list[float] = []
    seen = bytearray()

    def watch(data: bytes) -> None:
        seen.extend(data)
        if not shell_at and SHELL_MARK in seen:
            shell_at.append(time.perf_counter() - start)

    unlisten = booted.domain.console.listen(watch)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"poweroff -f\n")
        os.close(write_end)
        engine = create_engine(DEFAULT_ENGINE, hv)
        report = run_domain(hv, booted.domain, timeout_s=120, console_input=ConsoleInput(booted.console, read_end))
    finally:
        os.close(read_end)
        unlisten()
    elapsed = time.perf_counter() - start
    if report.outcome is not Outcome.POWEROFF or not shell_at:
        tail = bytes(seen[-800:]).decode(errors="replace")
        outcome = f"{report.outcome.name} ({report.detail})"
        raise SystemExit(f"Linux did not reach its shell and power off: {outcome}\n{tail}")
    instructions = sum(ctx.instructions_total for ctx in engine.contexts())
    return shell_at[0], elapsed, instructions


def bench_linux(repeat: int) -> None:
    if not debian.apt_available():
        print("linux: skipped (apt-get is not available)")
        return
    try:
        kernel, busybox = debian.kernel_image(), debian.busybox_binary()
    except debian.FetchError as exc:
        print(f"linux: skipped ({exc})")
        return
    initrd = debian.initramfs(INIT, busybox)
    runs = [boot_linux(kernel, initrd) for _ in range(repeat)]
    to_shell = statistics.median(r[0] for r in runs)
    to_off = statistics.median(r[1] for r in runs)
    instructions = statistics.median(r[2] for r in runs)
    verdict = "meets" if to_off < LINUX_TARGET_S else "MISSES"
    on_xen = linux_on_xen(kernel, busybox)
    print(f"linux boot to shell     median {to_shell:7.2f} s  (best {min(r[0] for r in runs):.2f} s)")
    print(f"linux boot to poweroff  median {to_off:7.2f} s  ({verdict} the {LINUX_TARGET_S:g} s target)")
    print(f"linux guest instructions {instructions / 1e9:6.2f} G, {instructions / to_off / 1e6:6.1f} M/s")
    print(f"linux on QEMU + Xen      {on_xen}")


def linux_on_xen(kernel: bytes, busybox: bytes) -> str:
    """The wall time of the kernel booted as dom0 of Xen 4.20 under QEMU to its /init's power-off, as text."""
    if find_qemu() is None or not XEN_4_20.is_file():
        return "skipped (needs qemu-system-x86_64 and `xenpy fetch-xen`)"
    with tempfile.TemporaryDirectory() as tmp:
        image, initrd = Path(tmp, "vmlinuz"), Path(tmp, "initrd.gz")
        image.write_bytes(kernel)
        initrd.write_bytes(debian.initramfs("/bin/busybox poweroff -f\n", busybox))
        try:
            boot = boot_on_xen(XEN_4_20, image, "console=hvc0", initrd=initrd, dom0_mem_mib=LINUX_MEMORY_MIB,
                               timeout_s=300)
        except OracleError as exc:
            return f"skipped ({exc})"
    if boot.ending != "halted":
        return f"did not power off ({boot.ending})"
    return f"{boot.seconds:7.2f} s to the power-off (QEMU and Xen boot included)"


def run_xtf_on_xenpy(image: bytes) -> float:
    start = time.perf_counter()
    hv = Hypervisor(memory_mib=DEFAULT_MEMORY_MIB + HYPERVISOR_MEMORY_MIB)
    booted = boot_pv_image(hv, image, name="test-pv64-example")
    create_engine(DEFAULT_ENGINE, hv)
    report = run_domain(hv, booted.domain, timeout_s=60)
    elapsed = time.perf_counter() - start
    if report.outcome is not Outcome.POWEROFF:
        raise SystemExit(f"XTF example did not power off on xenpy: {report.outcome.name}")
    return elapsed


def bench_xtf(repeat: int) -> None:
    if not XTF_EXAMPLE.is_file():
        print(f"xtf example: skipped (no {XTF_EXAMPLE}; set XENPY_XTF_DIR to a built XTF tree)")
        return
    image = XTF_EXAMPLE.read_bytes()
    run_xtf_on_xenpy(image)  # warm-up (the engine's native helper)
    times = [run_xtf_on_xenpy(image) for _ in range(repeat)]
    print(f"xtf example on xenpy       median {statistics.median(times) * 1e3:8.1f} ms")
    if find_qemu() is None or not XEN_4_20.is_file():
        print("xtf example on QEMU + Xen: skipped (needs qemu-system-x86_64 and `xenpy fetch-xen`)")
        return
    seconds = []
    for _ in range(repeat):
        try:
            boot = boot_on_xen(XEN_4_20, XTF_EXAMPLE, timeout_s=60)
        except OracleError as exc:
            print(f"xtf example on QEMU + Xen: skipped ({exc})")
            return
        if "Test result: SUCCESS" not in boot.console:
            raise SystemExit(f"XTF example did not succeed on Xen 4.20: {boot.ending}")
        seconds.append(boot.seconds)
    print(f"xtf example on QEMU + Xen  median {statistics.median(seconds) * 1e3:8.1f} ms (QEMU and Xen boot included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bench_xtf(args.repeat)
    bench_linux(args.repeat)


if __name__ == "__main__":
    main()
