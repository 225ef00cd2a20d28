"""``public/io/console.h``: the PV console ring shared with the console backend."""

from xenpy.abi.cstruct import CStruct, Width

XENCONS_IN_SIZE = 1024
XENCONS_OUT_SIZE = 2048


def define(w: Width, abi: dict) -> None:
    """Add this header's structures for width ``w`` to ``abi`` (the layout is the same on both widths)."""
    abi["xencons_interface"] = CStruct(
        "xencons_interface",
        ("in", w.array(w.char, XENCONS_IN_SIZE)),
        ("out", w.array(w.char, XENCONS_OUT_SIZE)),
        ("in_cons", w.uint32_t),
        ("in_prod", w.uint32_t),
        ("out_cons", w.uint32_t),
        ("out_prod", w.uint32_t),
    )
