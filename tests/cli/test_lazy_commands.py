"""``xenpy`` imports only the module of the command it runs: the one-command parser is the full parser's
command, and a plain run leaves the other commands' modules (and construct) unimported."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xenpy.cli.main import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "guest" / "build" / "test-pv64-hello"


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_the_table_names_every_command_in_help_order() -> None:
    assert list(_commands(build_parser())) == list(COMMANDS)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_one_command_parser_is_the_full_parsers_command(command: str) -> None:
    alone = _commands(build_parser(command))
    assert command in alone and set(alone) <= set(COMMANDS)
    assert alone[command].format_help() == _commands(build_parser())[command].format_help()


def test_run_parses_as_with_the_full_parser() -> None:
    argv = ["run", "img", "--memory", "64", "--vcpus", "2", "--sched", "fifo", "--no-input"]
    assert build_parser("run").parse_args(argv) == build_parser().parse_args(argv)


def test_a_run_imports_neither_other_commands_nor_construct() -> None:
    if not HELLO.is_file():
        pytest.skip("make -C guest builds the hello guest")
    watched = ("xenpy.cli.", "xenpy.toolstack.conformance", "xenpy.toolstack.migration", "xenpy.toolstack.control",
               "xenpy.abi.x86_32", "construct")
    probe = (
        "import json, sys\nfrom xenpy.cli.main import main\n"
        f"status = main(['run', {str(HELLO)!r}, '--no-input'])\n"
        f"print(json.dumps([status, sorted(m for m in sys.modules if m.startswith({watched!r}))]))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    status, modules = json.loads(result.stdout.splitlines()[-1])
    assert status == 0
    assert modules == ["xenpy.cli.argtypes", "xenpy.cli.errors", "xenpy.cli.main", "xenpy.cli.run_cmd",
                             "xenpy.toolstack.control_path"]


def test_xenpy_asks_for_one_blas_thread_and_no_huge_pages() -> None:
    probe = (
        "import os\nfrom xenpy.cli.main import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "thp = [line for line in open('/proc/self/status') if line.startswith('THP_enabled:')]\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'], thp[0].split()[1] if thp else 'unknown')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    threads, thp = result.stdout.splitlines()[-1].split()
    assert threads == "1" and thp in ("0", "unknown")
