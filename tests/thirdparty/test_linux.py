"""Debian's Linux kernel on xenpy: the cloud kernel (a bzImage, CONFIG_XEN_PV) boots with a busybox initramfs
to a shell, runs what it is given on the console and powers off.

Slow: the packages come from Debian's archive with ``apt-get download`` (cached in ``~/.cache/xenpy/debian``) and
the boot executes a few billion guest instructions. Skipped where ``apt-get`` is absent or cannot fetch.
"""

from __future__ import annotations

import os

import pytest

from xenpy.engine import DEFAULT_ENGINE, create_engine
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import HYPERVISOR_MEMORY_MIB, boot_pv_image
from xenpy.toolstack.console_input import ConsoleInput
from xenpy.toolstack.run import Outcome, run_domain

from . import debian

pytestmark = pytest.mark.slow

MEMORY_MIB = 256
TIMEOUT_S = 300.0
INIT = """/bin/busybox --install -s
mount -t proc proc /proc
echo "init: $(uname -sr) on $(cat /proc/cpuinfo | grep -c ^processor) CPU"
exec sh
"""


@pytest.fixture(scope="module")
def packages() -> tuple[bytes, bytes]:
    if not debian.apt_available():
        pytest.skip("apt-get is not available: cannot fetch Debian's kernel and busybox")
    try:
        return debian.kernel_image(), debian.busybox_binary()
    except debian.FetchError as exc:
        pytest.skip(str(exc))


def boot_to_shell(kernel: bytes, initrd: bytes, commands: bytes) -> tuple[str, object]:
    """Boot ``kernel`` with ``initrd``; ``commands`` are typed on the console (through a pipe, as
    ``printf ... | xenpy run`` would). Returns the console and the run's report."""
    hv = Hypervisor(memory_mib=MEMORY_MIB + HYPERVISOR_MEMORY_MIB)
    booted = boot_pv_image(hv, kernel, memory_mib=MEMORY_MIB, initrd=initrd, cmdline="console=hvc0 quiet")
    chunks: list[bytes] = []
    unlisten = booted.domain.console.listen(chunks.append)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, commands)
        os.close(write_end)
        create_engine(DEFAULT_ENGINE, hv)
        typed = ConsoleInput(booted.console, read_end)
        report = run_domain(hv, booted.domain, timeout_s=TIMEOUT_S, console_input=typed)
        booted.console.close()
        booted.domain.console.flush()
    finally:
        os.close(read_end)
        unlisten()
    return b"".join(chunks).decode(errors="replace"), report


def test_debian_kernel_boots_to_a_busybox_shell_and_powers_off(packages):
    kernel, busybox = packages
    console, report = boot_to_shell(
        kernel, debian.initramfs(INIT, busybox), b"echo shell-says-$((6 * 7))\npoweroff -f\n"
    )
    assert "init: Linux 6." in console and "on 1 CPU" in console, console[-2000:]
    assert "shell-says-42" in console, console[-2000:]
    assert report.outcome is Outcome.POWEROFF, (report, console[-2000:])
