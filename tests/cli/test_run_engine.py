"""``xenpy run --engine NAME``: the engine is chosen by name; its help lists the engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from xenpy.cli.main import main
from xenpy.engine import DEFAULT_ENGINE, available_engines


def test_run_with_the_named_engine(capfd, guest_build_dir: Path) -> None:
    image = guest_build_dir / "test-pv64-hello"
    assert main(["run", str(image), "--engine", "unicorn"]) == 0
    out, err = capfd.readouterr()
    assert out and "powered off" in err


def test_run_help_lists_every_engine(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--engine NAME" in out
    for name in available_engines():
        assert f"{name}:" in out
    assert f"(default {DEFAULT_ENGINE})" in out
