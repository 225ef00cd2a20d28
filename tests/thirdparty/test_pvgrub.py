"""Debian's PV GRUB on xenpy: a GRUB 2 image for the ``x86_64-xen`` platform, made with Debian's own
``grub-mkimage`` from ``grub-xen-bin``'s modules, boots to its ``grub>`` prompt, runs a command typed on the
console and halts the domain.

Slow: the packages come from Debian's archive with ``apt-get download``. Skipped where ``apt-get`` is absent,
the packages cannot be fetched, or ``grub-mkimage`` does not run here.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from xenpy.engine import DEFAULT_ENGINE, create_engine
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import HYPERVISOR_MEMORY_MIB, boot_pv_image
from xenpy.toolstack.console_input import ConsoleInput
from xenpy.toolstack.run import Outcome, run_domain

from . import debian

pytestmark = pytest.mark.slow

MEMORY_MIB = 64
MODULES = ("normal", "echo", "ls", "cat", "configfile", "halt")
PLATFORM = "x86_64-xen"


@pytest.fixture(scope="module")
def grub_image(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if not debian.apt_available():
        pytest.skip("apt-get is not available: cannot fetch Debian's GRUB")
    try:
        tools = debian.deb_files(debian.fetch("grub-common"))
        modules = debian.deb_files(debian.fetch("grub-xen-bin"))
    except debian.FetchError as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("grub")
    mkimage = root / "grub-mkimage"
    mkimage.write_bytes(tools["usr/bin/grub-mkimage"])
    mkimage.chmod(0o755)
    prefix = f"usr/lib/grub/{PLATFORM}/"
    for path, data in modules.items():
        if path.startswith(prefix):
            target = root / PLATFORM / path.removeprefix(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    image = root / "grub.xen"
    result = subprocess.run(
        [str(mkimage), "-O", PLATFORM, "-d", str(root / PLATFORM), "-o", str(image), "-p", "(xen/xvda)/boot/grub",
         *MODULES],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0 or not image.is_file():
        pytest.skip(f"grub-mkimage does not run here: {result.stderr.strip()[-200:]}")
    return Path(image).read_bytes()


def test_pv_grub_reaches_its_prompt_runs_a_command_and_halts(grub_image):
    hv = Hypervisor(memory_mib=MEMORY_MIB + HYPERVISOR_MEMORY_MIB)
    booted = boot_pv_image(hv, grub_image, memory_mib=MEMORY_MIB)
    chunks: list[bytes] = []
    unlisten = booted.domain.console.listen(chunks.append)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"echo grub-says-hello\rhalt\r")
        os.close(write_end)
        create_engine(DEFAULT_ENGINE, hv)
        report = run_domain(hv, booted.domain, timeout_s=60.0, console_input=ConsoleInput(booted.console, read_end))
        booted.console.close()
        booted.domain.console.flush()
    finally:
        os.close(read_end)
        unlisten()
    console = b"".join(chunks).decode(errors="replace")
    assert "GNU GRUB" in console and "grub> " in console, console[-1500:]
    assert "\ngrub-says-hello" in console.replace("\r", ""), console[-1500:]
    assert report.outcome is Outcome.POWEROFF, (report, console[-1500:])
