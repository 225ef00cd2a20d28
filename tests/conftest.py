"""Fixtures shared across test folders: the bundled guest kernels, built once per session."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def guest_build_dir() -> Path:
    """``guest/build`` after ``make -C guest`` (skips where gcc, ld or make are missing)."""
    missing = [tool for tool in ("gcc", "ld", "make") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"building the guest kernels needs {', '.join(missing)} on PATH")
    result = subprocess.run(["make", "-s", "-C", str(ROOT / "guest")], capture_output=True, text=True)
    assert result.returncode == 0, f"make -C guest failed:\n{result.stdout}{result.stderr}"
    return ROOT / "guest" / "build"
