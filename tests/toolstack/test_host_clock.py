"""``--clock host``: a slice ends even when Unicorn's own timeout fails to stop the emulation.

Unicorn stops a timed ``uc_emu_start`` from a helper thread, and that stop can be lost; a guest spinning in one
translation block (``jmp .``) then never returned to the scheduler and ``--timeout`` never fired.
"""

from __future__ import annotations

import threading

import pytest

from toolstack.test_run import tiny_kernel
from xenpy.engine import unicorn_lib
from xenpy.engine.unicorn_engine import UnicornEngine
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import boot_pv_image
from xenpy.toolstack.run import Outcome, run_domain


def test_spinning_guest_times_out_with_host_clock_even_if_unicorn_timeout_is_lost(monkeypatch) -> None:
    real_start = unicorn_lib.lib.uc_emu_start

    def start_without_timeout(uch, begin, until, _timeout_us, count):  # a lost uc_emu_stop, every time
        return real_start(uch, begin, until, 0, count)

    monkeypatch.setattr(unicorn_lib.lib, "uc_emu_start", start_without_timeout)
    hv = Hypervisor(clock="host", memory_mib=48)
    booted = boot_pv_image(hv, tiny_kernel(b"\xeb\xfe"), memory_mib=32)  # jmp .
    engine = UnicornEngine(hv)
    if engine.native is None:
        pytest.skip("the backstop needs the native counter (no C compiler)")
    reports = []
    runner = threading.Thread(target=lambda: reports.append(run_domain(hv, booted.domain, timeout_s=0.3)), daemon=True)
    runner.start()
    runner.join(timeout=15)
    assert not runner.is_alive(), "the run never returned: the slice did not end"
    assert reports[0].outcome is Outcome.TIMEOUT
    assert reports[0].wall_s < 5
