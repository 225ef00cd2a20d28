"""docs/reference/conformance.md is the current suite's page: every test in its matrix, and its checks-by-sub-op
section exactly as the suite gives it now (regenerate with the command the page names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xenpy.toolstack.conformance import report
from xenpy.toolstack.conformance.suite import load_suite, run_suite

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "conformance.md"
SECTION = "## Checks by sub-op"


@pytest.mark.needs_gcc
def test_page_is_current(guest_build_dir: Path) -> None:
    text = PAGE.read_text(encoding="utf-8")
    tests = load_suite()
    for test in tests:
        assert f"| `{test.name}` |" in text, f"{test.name} is not in {PAGE.name}'s matrix"
    now = report.docs_page(run_suite(tests, ["head"]))
    assert text[text.index(SECTION):] == now[now.index(SECTION):], (
        f"{PAGE.name} is stale: run `xenpy conformance --markdown docs/reference/conformance.md --xen ... --xen ...`"
    )
