"""Every page that names the Xen version profiles names exactly those of ``hypercalls/profiles.toml``, in order.

``docs/reference/profiles.rst`` is generated from the table (its freshness is checked with the other generated
files in ``tests/hypercalls``); the hand-written pages that list the profiles are checked against it here.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from xenpy.abi.generated.profiles import PROFILES
from xenpy.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
#: Pages and the line that lists the profiles.
LISTS = {
    "docs/usage.md": "--profile NAME",
    "docs/reference/profiles.rst": "Field",
    "README.md": "[--profile ",
}
_NAME = re.compile(r"``?(head|[0-9]+(?:\.[0-9]+)+)``?")
#: The usage line of README's ``xenpy run``: ``[--profile head|4.17.3|...]``.
_USAGE = re.compile(r"\[--profile ([^\]]+)\]")


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
    usage = _USAGE.search(line)
    names = usage.group(1).split("|") if usage else profile_names(line)
    assert names == list(PROFILES), f"{path}: {line.strip()}"


def test_reference_page_has_a_row_per_field() -> None:
    from dataclasses import fields

    from xenpy.abi.generated.profiles import XenProfile

    text = (ROOT / "docs/reference/profiles.rst").read_text()
    for f in fields(XenProfile):
        if f.name in ("name", "summary", "derived"):
            continue
        assert f"``{f.name}``" in text, f.name


def test_run_help_offers_the_profiles_newest_first() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(["run", "--help"])
    assert "{" + ",".join(PROFILES) + "}" in out.getvalue()
