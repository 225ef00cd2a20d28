"""Finding the control socket of a running ``xenpy run`` (for ``xenpy top``, ``xenpy ctl``, ``xenpy runstate``).

``--control PATH``, else ``$XENPY_CONTROL``, else the one live socket in the default directory
(:func:`~xenpy.toolstack.control_path.default_control_dir`); none, or several, is a one-line error.
"""

from __future__ import annotations

import argparse
import os

from xenpy.cli.errors import EXIT_UNAVAILABLE, CliError
from xenpy.toolstack.control import ControlClient, ControlError, live_control_sockets
from xenpy.toolstack.control_path import default_control_dir


def add_control_argument(parser: argparse.ArgumentParser) -> None:
    """``--control PATH``."""
    parser.add_argument("--control", metavar="PATH",
                        help="the control socket of the 'xenpy run --control' to attach to (default: $XENPY_CONTROL, "
                        f"else the one running xenpy with a socket in {default_control_dir()})")


def connect(args: argparse.Namespace) -> ControlClient:
    """A client of the control socket ``args.control`` names (see the module docstring).

    Raises:
        CliError: no running xenpy, several, or one that does not answer as it should.
    """
    path = args.control or os.environ.get("XENPY_CONTROL")
    if not path:
        live = live_control_sockets()
        if not live:
            raise CliError("no running xenpy to attach to (start one with 'xenpy run IMAGE --control')",
                           EXIT_UNAVAILABLE)
        if len(live) > 1:
            raise CliError(f"{len(live)} running xenpy: pick one with --control PATH ("
                           + ", ".join(str(p) for p in live) + ")", EXIT_UNAVAILABLE)
        path = str(live[0])
    try:
        return ControlClient(path)
    except (FileNotFoundError, ConnectionRefusedError):
        raise CliError(f"no running xenpy at {path}", EXIT_UNAVAILABLE) from None
    except OSError as error:
        raise CliError(f"{path}: {error.strerror or error}", EXIT_UNAVAILABLE) from None
    except (ControlError, ConnectionError, ValueError) as error:
        raise CliError(f"{path}: {error}", EXIT_UNAVAILABLE) from None
