"""Where the control socket of a ``xenpy run --control`` lives when given no path (what ``xenpy top`` and
``xenpy ctl`` search); apart from :mod:`xenpy.toolstack.control` so that naming it costs no import of the
server."""

from __future__ import annotations

import os
from pathlib import Path


def default_control_dir() -> Path:
    """Where ``xenpy run --control`` puts its socket when given no path, and where ``xenpy top`` looks:
    ``$XDG_RUNTIME_DIR/xenpy``, or ``/tmp/xenpy-<uid>``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "xenpy" if runtime else Path(f"/tmp/xenpy-{os.getuid()}")


def default_control_path(pid: int | None = None) -> Path:
    """The default socket of the ``xenpy run`` with process id ``pid`` (this process by default); its directory
    is made (mode 0700) if missing."""
    directory = default_control_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory / f"run-{os.getpid() if pid is None else pid}.sock"
