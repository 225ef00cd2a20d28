"""The differential tier: every suite test booted as dom0 of Debian's real Xen builds, compared with xenpy.

Needs ``qemu-system-x86_64`` and the hypervisor images ``xen-4.17`` and ``xen-4.20`` that ``xenpy fetch-xen``
puts in ``$XENPY_XEN_DIR`` (default ``~/.cache/xenpy/xen``); each test skips, saying which, where one is
absent (or fails, where ``XENPY_REQUIRE_ORACLE=1`` says the tier must run, as in CI). A check line whose
value differs from Xen's fails, unless the kernel declares it scheduler-dependent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xenpy.toolstack.conformance import report
from xenpy.toolstack.conformance.fetch import DEFAULT_DEST
from xenpy.toolstack.conformance.oracle import find_qemu
from xenpy.toolstack.conformance.suite import load_suite, run_suite

XEN_DIR = Path(os.environ.get("XENPY_XEN_DIR", DEFAULT_DEST))
RELEASES = ("4.20", "4.17")

pytestmark = [pytest.mark.oracle, pytest.mark.needs_gcc]


REQUIRED = os.environ.get("XENPY_REQUIRE_ORACLE") == "1"


def _xen_image(release: str) -> Path:
    missing = pytest.fail if REQUIRED else pytest.skip
    if find_qemu() is None:
        missing("qemu-system-x86_64 is not on PATH (Debian: apt-get install qemu-system-x86)")
    image = XEN_DIR / f"xen-{release}"
    if not image.is_file():
        missing(f"no {image} (run `xenpy fetch-xen --dest {XEN_DIR}`)")
    return image


@pytest.mark.parametrize("test", [t for t in load_suite() if t.oracle], ids=lambda t: t.name)
@pytest.mark.parametrize("release", RELEASES)
def test_xenpy_agrees_with_real_xen(guest_build_dir: Path, release: str, test) -> None:  # type: ignore[no-untyped-def]
    xen = _xen_image(release)
    # Real Xen under QEMU's TCG keeps time by the host's clock: on a loaded host a timer can fire late enough to
    # break a timing bound (the timers and contention kernels). A kernel that fails on Xen is booted up to twice
    # more.
    for _attempt in range(3):
        result = run_suite([test], [], xen=[xen])
        column = result.xen[0]
        assert not column.error, column.error
        got = column.results[test.name]
        if got.outcome == "SUCCESS" and not column.disagreements:
            break
    assert got.outcome == "SUCCESS", f"on Xen {column.version}:\n{got.console}"
    assert not column.disagreements, report.matrix_text(result)
