"""Errors the command line reports as one line, and its exit codes.

Exit codes 0-3 are reserved for guest outcomes (``xenpy run``: poweroff, crash, other shutdown, timeout), so
errors in the command line itself use the ``sysexits.h`` values.
"""

EXIT_USAGE = 64  # EX_USAGE: bad flags or arguments
EXIT_DATAERR = 65  # EX_DATAERR: bad input (unknown name, wrong length, not a Xen image, unreadable file)


class CliError(Exception):
    """A user-facing error: printed as ``xenpy: error: <message>``, then exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_DATAERR) -> None:
        super().__init__(message)
        self.exit_code = exit_code
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: no running xenpy to attach to, or it went away
