"""Every page that names the Xen version profiles names exactly those of ``hypercalls/profiles.toml``, in order.

``docs/reference/profiles.rst`` is generated from the table (its freshness is checked with the other generated
files in ``tests/hypercalls``); the hand-written pages that list the profiles are checked against it here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from xenpy.abi.generated.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[2]
#: Pages and the line that lists the profiles.
LISTS = {
    "docs/usage.md": "--profile NAME",
    "docs/architecture.md": "`profiles.py`: Xen version profiles",
    "docs/reference/profiles.rst": "Field",
    "xenpy/core/profiles.py": "Profiles (",
}
_NAME = re.compile(r"``?(head|[0-9]+(?:\.[0-9]+)+)``?")


def profile_names(text: str) -> list[str]:
    return [m.group(1) for m in _NAME.finditer(text)]


@pytest.mark.parametrize("path", sorted(LISTS))
def test_listed_profiles_are_the_table(path: str) -> None:
    lines = [line for line in (ROOT / path).read_text().splitlines() if LISTS[path] in line]
    assert lines, f"{path}: no line with {LISTS[path]!r}"
    line = lines[0]
    if path.endswith(".rst"):  # the header row of the list-table: one ``name`` cell per profile
        index = (ROOT / path).read_text().splitlines().index(lines[0])
        line = " ".join((ROOT / path).read_text().splitlines()[index : index + len(PROFILES) + 2])
    assert profile_names(line) == list(PROFILES), f"{path}: {line.strip()}"


def test_reference_page_has_a_row_per_field() -> None:
    from dataclasses import fields

    from xenpy.abi.generated.profiles import XenProfile

    text = (ROOT / "docs/reference/profiles.rst").read_text()
    for f in fields(XenProfile):
        if f.name in ("name", "summary", "derived"):
            continue
        assert f"``{f.name}``" in text, f.name
