"""The loader's one exception type.

Every problem with a guest image (not an ELF file, truncated or malformed, not a Xen PV image, rejected by the
domain builder's checks, too big for the domain) is a :class:`LoaderError` carrying one line that says what is
wrong and where. The loader never lets ``IndexError``, ``struct.error`` or similar escape for bad input.
"""

from __future__ import annotations


class LoaderError(Exception):
    """A guest image cannot be loaded; ``str(error)`` is a one-line explanation."""
