"""Debian's Linux saved at its busybox shell and restored into another hypervisor, still answering.

The toolstack's request (xenstore ``control/shutdown = suspend``) reaches Linux's xenbus watch; Linux suspends
(``xen_suspend``: its p2m published, shared_info and the grant frames unmapped, SCHEDOP_shutdown with start_info
in rdx); xenpy writes the xl save file; the restore in a hypervisor with another machine-frame layout resumes
Linux, which rebinds its event channels and reconnects xenbus and the console, and the shell answers a command
typed on the console. Xen's ``verify-stream-v2`` checks the file where ``xenpy fetch-xen`` unpacked it.

Slow, and skipped without Debian's packages, as ``test_linux.py``.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xenpy.core.clock import VirtualClock
from xenpy.engine import DEFAULT_ENGINE, create_engine
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import HYPERVISOR_MEMORY_MIB, boot_pv_image
from xenpy.toolstack.conformance.fetch import DEFAULT_DEST, tools_dir
from xenpy.toolstack.console_input import ConsoleInput
from xenpy.toolstack.migration.restore import restore_domain
from xenpy.toolstack.migration.save import save_domain
from xenpy.toolstack.run import Outcome, run_domain

from . import debian

pytestmark = pytest.mark.slow

MEMORY_MIB = 256
INIT = """/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
echo init-ready
exec sh
"""
VERIFY = tools_dir(Path(os.environ.get("XENPY_XEN_DIR", DEFAULT_DEST))) / "usr" / "lib" / "xen-4.17" / "bin"


@pytest.fixture(scope="module")
def packages() -> tuple[bytes, bytes]:
    if not debian.apt_available():
        pytest.skip("apt-get is not available: cannot fetch Debian's kernel and busybox")
    try:
        return debian.kernel_image(), debian.busybox_binary()
    except debian.FetchError as exc:
        pytest.skip(str(exc))


def test_linux_saved_at_its_shell_restores_and_answers(packages, tmp_path: Path) -> None:
    kernel, busybox = packages
    hv = Hypervisor(memory_mib=MEMORY_MIB + HYPERVISOR_MEMORY_MIB)
    booted = boot_pv_image(hv, kernel, memory_mib=MEMORY_MIB, initrd=debian.initramfs(INIT, busybox),
                           cmdline="console=hvc0 quiet")  # fmt: skip
    chunks: list[bytes] = []
    booted.domain.console.listen(chunks.append)
    create_engine(DEFAULT_ENGINE, hv)
    for _ in range(30):  # up to 30 s of guest time to reach the shell
        report = run_domain(hv, booted.domain, timeout_s=120, max_guest_ns=10**9)
        if b"init-ready" in b"".join(chunks) or report.outcome is not Outcome.TIMEOUT:
            break
    console = b"".join(chunks).decode(errors="replace")
    assert "init-ready" in console, console[-2000:]
    run_domain(hv, booted.domain, timeout_s=60, max_guest_ns=200_000_000)  # the shell settles at its prompt

    out = io.BytesIO()
    summary = save_domain(hv, booted.domain, out, cmdline="console=hvc0 quiet",
                          suspend_cancel=booted.suspend_cancel, store=booted.xenstore.store, timeout_s=120)  # fmt: skip
    assert not hv.domains
    assert summary.pages >= MEMORY_MIB * 256  # Linux's p2m runs past its pages (XTAB)
    saved = tmp_path / "linux.xl"
    saved.write_bytes(out.getvalue())
    verify = VERIFY / "verify-stream-v2"
    if verify.is_file():
        env = {**os.environ, "PYTHONPATH": str(VERIFY.parent / "lib" / "python")}
        done = subprocess.run([sys.executable, str(verify), "-f", "xl", "-i", str(saved)], env=env,
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr

    hv2 = Hypervisor(memory_mib=MEMORY_MIB + 2 * HYPERVISOR_MEMORY_MIB, seed=9,
                     clock=VirtualClock(start_ns=summary.saved_at_ns))  # fmt: skip
    restored = restore_domain(hv2, io.BytesIO(out.getvalue()))
    after: list[bytes] = []
    restored.domain.console.listen(after.append)
    create_engine(DEFAULT_ENGINE, hv2)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"echo restored-says-$((6 * 7))\npoweroff -f\n")
        os.close(write_end)
        typed = ConsoleInput(restored.console, read_end)
        report = run_domain(hv2, restored.domain, timeout_s=300, console_input=typed)
    finally:
        os.close(read_end)
    console = b"".join(after).decode(errors="replace")
    assert "restored-says-42" in console, console[-3000:]
    assert report.outcome is Outcome.POWEROFF, (report, console[-2000:])
