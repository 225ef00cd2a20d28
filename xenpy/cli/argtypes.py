"""Argument types of the ``xenpy`` command line: numbers in a range, each refused with one clear message."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer (any base ``int(text, 0)`` takes) in ``[low, high]`` (no upper bound if ``high`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}" if high is not None
                                             else f"must be at least {low}")
        return value

    return parse


def float_range(low: float, high: float = math.inf, *, low_open: bool = False) -> Callable[[str], float]:
    """A number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (value > low if low_open else value >= low) or not value <= high:
            if low_open and high == math.inf:
                raise argparse.ArgumentTypeError("must be positive")
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse
