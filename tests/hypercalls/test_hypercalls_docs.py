"""The generated reference page ``docs/reference/hypercalls.rst`` builds with Sphinx ``-W``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xenpy.abi.generated.hypercalls import HYPERCALLS, PROFILES

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "reference" / "hypercalls.rst"


@pytest.mark.slow  # the quick path builds the whole documentation (tests/docs) with this page in it
def test_page_builds_without_warnings(tmp_path: Path) -> None:
    """The page alone, in a bare Sphinx project: no warning, anchors for cross-references."""
    pytest.importorskip("sphinx")
    src = tmp_path / "src"
    (src / "reference").mkdir(parents=True)
    shutil.copy(PAGE, src / "reference" / "hypercalls.rst")
    (src / "conf.py").write_text('project = "probe"\nextensions = []\n')
    (src / "index.rst").write_text("Probe\n=====\n\n.. toctree::\n\n   reference/hypercalls\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(src),
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "out" / "reference" / "hypercalls.html").read_text()
    assert "VCPUOP_register_runstate_phys_area" in html
    assert 'id="hypercall-vcpu_op"' in html or 'id="hypercall-vcpu-op"' in html


def test_page_has_a_section_per_hypercall_and_error_columns_per_profile() -> None:
    text = PAGE.read_text()
    for defn in HYPERCALLS.values():
        title = f"{defn.name} ({defn.number})"
        assert f"\n{title}\n{'-' * len(title)}\n" in text
        if defn.defined:
            assert f"   {defn.prototype};" in text
    for profile in PROFILES:
        assert f"Errors ({profile})" in text
