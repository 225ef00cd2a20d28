"""The ``xenpy`` command: argument parsing and error reporting for every sub-command."""

from __future__ import annotations

import argparse
import ctypes
import importlib
import os
import sys
from collections.abc import Sequence

from xenpy import __version__
from xenpy.cli.errors import EXIT_USAGE, CliError

#: Each command and the module of :mod:`xenpy.cli` whose ``add_parser`` registers it, in the order of
#: ``xenpy --help``. A command's module is imported only when that command runs (or the full parser is built).
COMMANDS: dict[str, str] = {
    "abi": "abi_cmd",
    "conformance": "conformance_cmd",
    "fetch-xen": "conformance_cmd",
    "inspect": "inspect_cmd",
    "run": "run_cmd",
    "ctl": "ctl_cmd",
    "top": "top_cmd",
    "runstate": "runstate_cmd",
    "save": "migration_cmd",
    "restore": "migration_cmd",
    "migrate": "migration_cmd",
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one ``xenpy: error:`` line and exit :data:`EXIT_USAGE`.

    0-5 are guest outcomes. The line names the command's ``--help`` instead of printing the usage block.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"xenpy: error: {message} (see '{self.prog} --help')\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``xenpy`` argument parser: with every command, or, for a ``command`` of :data:`COMMANDS`, with only
    the commands of its module (which parses that command's arguments exactly as the full parser does)."""
    parser = _Parser(
        prog="xenpy",
        description="xenpy: a Xen-compatible paravirtual hypercall layer and guest toolkit.",
    )
    parser.add_argument("--version", action="version", version=f"xenpy {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=_Parser)
    modules = [COMMANDS[command]] if command in COMMANDS else dict.fromkeys(COMMANDS.values())
    for module in modules:
        importlib.import_module(f"xenpy.cli.{module}").add_parser(subparsers)
    return parser


#: ``prctl(PR_SET_THP_DISABLE)``.
_PR_SET_THP_DISABLE = 41


def _host_settings() -> None:
    """What the ``xenpy`` process asks of its host before the command's imports: one BLAS thread (xenpy does no
    linear algebra; numpy's BLAS would start a thread per core at import), and no transparent huge pages, so a
    guest's touched byte, or a vCPU's Unicorn code buffer (which asks for huge pages), costs 4 KiB, not 2 MiB."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if sys.platform == "linux":
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_THP_DISABLE, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``xenpy``; return the exit status."""
    _host_settings()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return int(args.handler(args))
    except CliError as error:
        print(f"xenpy: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("xenpy: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
