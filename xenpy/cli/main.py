"""The ``xenpy`` command: argument parsing and error reporting for every sub-command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xenpy import __version__
from xenpy.cli import abi_cmd, conformance_cmd, ctl_cmd, inspect_cmd, migration_cmd, run_cmd, runstate_cmd, top_cmd
from xenpy.cli.errors import EXIT_USAGE, CliError


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one ``xenpy: error:`` line and exit :data:`EXIT_USAGE`.

    0-5 are guest outcomes. The line names the command's ``--help`` instead of printing the usage block.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"xenpy: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The full ``xenpy`` argument parser."""
    parser = _Parser(
        prog="xenpy",
        description="xenpy: a Xen-compatible paravirtual hypercall layer and guest toolkit.",
    )
    parser.add_argument("--version", action="version", version=f"xenpy {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=_Parser)
    abi_cmd.add_parser(subparsers)
    conformance_cmd.add_parser(subparsers)
    inspect_cmd.add_parser(subparsers)
    run_cmd.add_parser(subparsers)
    ctl_cmd.add_parser(subparsers)
    top_cmd.add_parser(subparsers)
    runstate_cmd.add_parser(subparsers)
    migration_cmd.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``xenpy``; return the exit status."""
    args = build_parser().parse_args(argv)
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
