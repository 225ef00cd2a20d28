"""The guest kernel's vsnprintf (guest/common/vsnprintf.c) formats like the C library.

The file is compiled for the host with its functions renamed, and host/vsnprintf_check.c compares it with the C
library's snprintf over the conversions, flags, widths, precisions and length modifiers the guest supports.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUEST = ROOT / "guest"
CHECK = Path(__file__).resolve().parent / "host" / "vsnprintf_check.c"

pytestmark = [
    pytest.mark.needs_gcc,
    pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc on PATH"),
]


def test_guest_vsnprintf_matches_the_c_library(tmp_path: Path) -> None:
    obj = tmp_path / "vsnprintf.o"
    exe = tmp_path / "vsnprintf_check"
    rename = ["-Dvsnprintf=guest_vsnprintf", "-Dsnprintf=guest_snprintf"]
    include = [f"-I{GUEST / 'include'}", f"-I{GUEST / 'arch' / 'x86_64' / 'include'}"]
    compile_guest = subprocess.run(
        [
            "gcc",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            *include,
            *rename,
            "-c",
            str(GUEST / "common" / "vsnprintf.c"),
            "-o",
            str(obj),
        ],
        capture_output=True,
        text=True,
    )
    assert compile_guest.returncode == 0, compile_guest.stderr
    compile_check = subprocess.run(
        [
            "gcc",
            "-O2",
            "-Wall",
            "-Wno-format",
            "-Wno-format-truncation",
            str(CHECK),
            str(obj),
            "-o",
            str(exe),
        ],
        capture_output=True,
        text=True,
    )
    assert compile_check.returncode == 0, compile_check.stderr

    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)

    assert run.returncode == 0, run.stdout
    assert "failed 0" in run.stdout
    assert int(run.stdout.split("checked ")[1].split(",")[0]) >= 40
