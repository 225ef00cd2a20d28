"""Mini-OS's test application on xenpy, as far as a domU without devices gets: its xenbus test against the
xenstore service, its threads and timers, then a power-off asked for through ``control/shutdown``.

Mini-OS is not packaged anywhere this project installs from: build its sources
(https://xenbits.xen.org/git-http/mini-os.git) with ``CONFIG_TEST=y`` and point ``$XENPY_MINIOS_DIR`` at the
tree (default ``~/.cache/xenpy/mini-os``); without a ``mini-os`` binary there the test skips.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from xenpy.engine import DEFAULT_ENGINE, create_engine
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import HYPERVISOR_MEMORY_MIB, boot_pv_image
from xenpy.toolstack.run import Outcome, run_domain

MINIOS = Path(os.environ.get("XENPY_MINIOS_DIR", Path.home() / ".cache" / "xenpy" / "mini-os")) / "mini-os"
MEMORY_MIB = 64
#: Guest time the test application runs before it is asked to power off.
RUN_NS = 3_000_000_000


@pytest.mark.skipif(not MINIOS.is_file(), reason=f"no Mini-OS build at {MINIOS} (set XENPY_MINIOS_DIR)")
def test_minios_test_app_runs_its_xenbus_test_and_powers_off_on_request():
    hv = Hypervisor(memory_mib=MEMORY_MIB + HYPERVISOR_MEMORY_MIB)
    booted = boot_pv_image(hv, MINIOS.read_bytes(), memory_mib=MEMORY_MIB, name="mini-os")
    chunks: list[bytes] = []
    unlisten = booted.domain.console.listen(chunks.append)
    try:
        create_engine(DEFAULT_ENGINE, hv)
        first = run_domain(hv, booted.domain, timeout_s=60.0, max_guest_ns=RUN_NS)
        assert booted.xenstore is not None
        booted.xenstore.request_shutdown("poweroff")
        second = run_domain(hv, booted.domain, timeout_s=60.0)
        booted.console.close()
        booted.domain.console.flush()
    finally:
        unlisten()
    console = b"".join(chunks).decode(errors="replace")
    assert first.outcome is Outcome.TIMEOUT, first  # still running its threads when asked
    # xenbus: the directory of the domain's own device/ node (empty but for what the kernel wrote), reads of
    # nodes a domU without devices does not have, and writes under device/, which libxl makes read-only for it.
    for line in (
        "Doing xenbus test.",
        "Doing ls test.",
        "Error in xenbus ls: ENOENT",
        "Read device/vif/0/mac...",
        "Error in xenbus read: ENOENT",
        "Write flobble to device/vif/0/flibble...",
        "Result EACCES",
        "Periodic thread started.",
    ):
        assert line in console, (line, console[-3000:])
    assert "T(s=" in console, console[-1000:]  # the periodic thread's timer ticks
    assert second.outcome is Outcome.POWEROFF, (second, console[-1000:])


@pytest.mark.skipif(not MINIOS.is_file(), reason=f"no Mini-OS build at {MINIOS} (set XENPY_MINIOS_DIR)")
def test_ctrl_c_in_xenpy_run_powers_minios_off():
    """``xenpy run``'s first Ctrl-C writes control/shutdown; Mini-OS's shutdown thread powers the domain off."""
    proc = subprocess.Popen([sys.executable, "-m", "xenpy", "run", str(MINIOS), "--memory", str(MEMORY_MIB),
                             "--no-input", "--timeout", "60"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    out = b""
    while b"Periodic thread started" not in out:  # its xenbus thread has set its watches by then
        chunk = proc.stdout.read1(4096) if proc.stdout else b""
        assert chunk, "Mini-OS ended before its threads started"
        out += chunk
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert b"asked d1 to power off" in err and b"powered off" in err
