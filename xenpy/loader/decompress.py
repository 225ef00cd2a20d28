"""Kernel payload decompression, as libxenguest's bzImage loader does it (``xg_dom_bzimageloader.c``).

A Linux bzImage carries its ELF ``vmlinux`` compressed with one of the kernel's codecs
(``CONFIG_KERNEL_GZIP`` ... ``CONFIG_KERNEL_ZSTD``). ``xc_dom_probe_bzimage_kernel`` tells the codec by the
payload's first bytes and decompresses it with ``xc_dom_try_gunzip``, ``xc_try_bzip2_decode``,
``xc_try_xz_decode``, ``xc_try_zstd_decode``, ``xc_try_lzma_decode``, ``xc_try_lzo1x_decode`` or
``xc_try_lz4_decode``; :func:`decompress_payload` does the same, with the standard library (gzip, bzip2, xz,
lzma) and the ``lz4`` and ``zstandard`` packages.

Invariants:

* The codec is chosen by magic in libxenguest's order: gzip ``1f 8b``, bzip2 ``BZh``, xz ``fd 37 7a 58 5a 00``,
  zstd ``28 b5 2f fd``, lzma ``5d 00``, LZO ``89 4c 5a 4f 00``, lz4 ``02 21``. Anything else is an unknown
  compression format. LZO is recognised and refused (xenpy has no LZO decoder).
* The uncompressed size is the little-endian u32 in the payload's last four bytes: Linux appends it to every
  payload (``*_with_size`` in ``scripts/Makefile.lib``), and gzip's own trailer ends with it (ISIZE). Except
  for gzip, those four bytes are not part of the compressed stream.
* A size above the limit (libxenguest's ``XC_DOM_DECOMPRESS_MAX``, 1 GiB, the default ``max_kernel_size``) is
  refused before anything is decompressed ("kernel image too large"), and no decoder ever produces more than
  the declared size plus one byte: a payload that would expand further (a decompression bomb) is refused
  without being expanded. The result must be exactly the declared size, as libxenguest requires.
* Every failure is a :class:`~xenpy.loader.errors.LoaderError` with one line naming the codec and the reason;
  no decoder's exception escapes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

from xenpy.loader.errors import LoaderError

__all__ = [
    "CODECS",
    "LZ4_LEGACY_BLOCK_NR_BYTES",
    "LZ4_LEGACY_MAGIC",
    "XC_DOM_DECOMPRESS_MAX",
    "decompress_payload",
    "detect_codec",
    "gunzip",
]

#: ``XC_DOM_DECOMPRESS_MAX`` (``tools/include/xenguest.h``): the largest kernel or module libxenguest accepts,
#: and the largest size a compressed payload may declare.
XC_DOM_DECOMPRESS_MAX = 1 << 30
#: ``ARCHIVE_MAGICNUMBER``: the lz4 legacy frame's magic (little-endian ``02 21 4c 18``).
LZ4_LEGACY_MAGIC = 0x184C2102
#: Most bytes one block of the lz4 legacy format decompresses to (``LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE``).
LZ4_LEGACY_BLOCK_NR_BYTES = 8 << 20
#: liblzma's memory limit in ``lzma_stream_decoder``/``lzma_alone_decoder`` (``LZMA_BLOCK_SIZE``).
LZMA_MEMLIMIT_NR_BYTES = 256 << 20
#: Largest zstd window accepted (no window need be larger than the largest output).
ZSTD_MAX_WINDOW_NR_BYTES = XC_DOM_DECOMPRESS_MAX

#: ``(name, magic)`` in the order ``xc_dom_probe_bzimage_kernel`` tries them.
CODECS: tuple[tuple[str, bytes], ...] = (
    ("gzip", b"\x1f\x8b"),
    ("bzip2", b"BZh"),
    ("xz", b"\xfd7zXZ\x00"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
    ("lzma", b"\x5d\x00"),
    ("LZO", b"\x89LZO\x00"),
    ("lz4", b"\x02\x21"),
)

_READ_NR_BYTES = 1 << 20


def _size_text(nr_bytes: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20)):
        if nr_bytes >= 1 << shift and nr_bytes % (1 << shift) == 0:
            return f"{nr_bytes >> shift} {unit}"
    return f"{nr_bytes} bytes"


def detect_codec(data: bytes) -> str | None:
    """The codec whose magic ``data`` starts with (a name of :data:`CODECS`), or None."""
    for name, magic in CODECS:
        if data.startswith(magic):
            return name
    return None


def _declared_size(codec: str, data: bytes, min_nr_bytes: int, max_nr_bytes: int) -> int:
    """The trailing u32 uncompressed size, checked against libxenguest's limit."""
    if len(data) < min_nr_bytes:
        raise LoaderError(f"{codec} payload is truncated: {len(data)} bytes, too short for a compressed kernel")
    (nr_bytes,) = struct.unpack_from("<I", data, len(data) - 4)
    if nr_bytes > max_nr_bytes:
        raise LoaderError(
            f"{codec} payload declares {nr_bytes} bytes uncompressed, more than the {_size_text(max_nr_bytes)} "
            "limit (kernel image too large)"
        )
    return nr_bytes


def _check_size(codec: str, got: int, want: int) -> None:
    if got > want:
        raise LoaderError(f"{codec} payload decompresses to more than the {want} bytes its size field declares")
    if got != want:
        raise LoaderError(f"{codec} payload decompresses to {got} bytes instead of the {want} it declares")


def _stream_decode(
    codec: str,
    make: Callable[[], Any],
    data: bytes,
    nr_bytes: int,
    errors: tuple[type[Exception], ...],
) -> bytes:
    """Run a standard-library decompressor over ``data``, producing at most ``nr_bytes + 1`` bytes."""
    decoder = make()
    try:
        out = decoder.decompress(data, nr_bytes + 1)
    except errors as error:
        raise LoaderError(f"{codec} payload is corrupt: {error}") from None
    _check_size(codec, len(out), nr_bytes)
    if not decoder.eof:
        raise LoaderError(f"{codec} payload is truncated: the compressed stream does not end")
    return out


def gunzip(data: bytes, *, max_nr_bytes: int = XC_DOM_DECOMPRESS_MAX) -> bytes:
    """``xc_dom_try_gunzip``: inflate one gzip member whose trailer (ISIZE) gives the size.

    Raises:
        LoaderError: truncated, corrupt (zlib's CRC and length checks included), or larger than
            ``max_nr_bytes``.
    """
    nr_bytes = _declared_size("gzip", data, 18, max_nr_bytes)
    return _stream_decode("gzip", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), data, nr_bytes, (zlib.error,))


def _bunzip2(data: bytes, max_nr_bytes: int) -> bytes:
    """``xc_try_bzip2_decode``."""
    import bz2  # each codec's module is imported when a payload needs it

    nr_bytes = _declared_size("bzip2", data, 9, max_nr_bytes)
    return _stream_decode("bzip2", bz2.BZ2Decompressor, data[:-4], nr_bytes, (OSError, ValueError))


def _unxz(data: bytes, max_nr_bytes: int) -> bytes:
    """``xc_try_xz_decode`` (``lzma_stream_decoder``)."""
    import lzma

    nr_bytes = _declared_size("xz", data, 8, max_nr_bytes)
    return _stream_decode(
        "xz",
        lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=LZMA_MEMLIMIT_NR_BYTES),
        data[:-4],
        nr_bytes,
        (lzma.LZMAError,),
    )


def _unlzma(data: bytes, max_nr_bytes: int) -> bytes:
    """``xc_try_lzma_decode`` (``lzma_alone_decoder``)."""
    import lzma

    nr_bytes = _declared_size("lzma", data, 8, max_nr_bytes)
    return _stream_decode(
        "lzma",
        lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE, memlimit=LZMA_MEMLIMIT_NR_BYTES),
        data[:-4],
        nr_bytes,
        (lzma.LZMAError,),
    )


def _unzstd(data: bytes, max_nr_bytes: int) -> bytes:
    """``xc_try_zstd_decode`` (``ZSTD_decompress``: every frame of the payload, its size field excluded)."""
    import zstandard

    nr_bytes = _declared_size("zstd", data, 10, max_nr_bytes)
    dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW_NR_BYTES)
    chunks: list[bytes] = []
    got = 0
    try:
        with dctx.stream_reader(data[:-4], read_across_frames=True) as reader:
            while got <= nr_bytes:
                chunk = reader.read(min(_READ_NR_BYTES, nr_bytes + 1 - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
    except zstandard.ZstdError as error:
        raise LoaderError(f"zstd payload is corrupt: {error}") from None
    _check_size("zstd", got, nr_bytes)
    return b"".join(chunks)


def _unlz4(data: bytes, max_nr_bytes: int) -> bytes:
    """``xc_try_lz4_decode``: the lz4 legacy frame.

    After the magic, blocks of ``u32 compressed size`` + LZ4 block data, each decompressing to at most 8 MiB;
    a repeated magic between blocks (concatenated frames) is skipped. The blocks must use up the payload
    exactly (its size field excluded).
    """
    import lz4.block

    nr_bytes = _declared_size("lz4", data, 9, max_nr_bytes)
    end = len(data) - 4
    (magic,) = struct.unpack_from("<I", data, 0)
    if magic != LZ4_LEGACY_MAGIC:
        raise LoaderError(f"lz4 payload has an invalid header ({magic:#010x}, not the legacy frame magic)")
    pos = 4
    chunks: list[bytes] = []
    got = 0
    while True:
        if end - pos < 4:
            raise LoaderError(f"lz4 payload is truncated: no block size at offset {pos:#x}")
        (block_nr_bytes,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if block_nr_bytes == LZ4_LEGACY_MAGIC:
            continue
        if block_nr_bytes > end - pos:
            raise LoaderError(
                f"lz4 payload is truncated: the block at offset {pos - 4:#x} needs {block_nr_bytes} bytes, "
                f"{end - pos} are left"
            )
        room = nr_bytes - got
        block = data[pos : pos + block_nr_bytes]
        try:
            out = lz4.block.decompress(block, uncompressed_size=max(1, min(LZ4_LEGACY_BLOCK_NR_BYTES, room)))
        except lz4.block.LZ4BlockError:
            if room < LZ4_LEGACY_BLOCK_NR_BYTES and _lz4_block_decodes(block):
                raise LoaderError(
                    f"lz4 payload decompresses to more than the {nr_bytes} bytes its size field declares"
                ) from None
            raise LoaderError(f"lz4 payload is corrupt: the block at offset {pos - 4:#x} does not decode") from None
        chunks.append(out)
        got += len(out)
        pos += block_nr_bytes
        if got > nr_bytes:
            break
        if pos == end:
            break
    _check_size("lz4", got, nr_bytes)
    return b"".join(chunks)


def _lz4_block_decodes(block: bytes) -> bool:
    """True if ``block`` is a valid LZ4 block of at most 8 MiB (it only overflowed the room left)."""
    import lz4.block

    try:
        lz4.block.decompress(block, uncompressed_size=LZ4_LEGACY_BLOCK_NR_BYTES)
    except lz4.block.LZ4BlockError:
        return False
    return True


_DECODERS: dict[str, Callable[[bytes, int], bytes]] = {
    "gzip": lambda data, limit: gunzip(data, max_nr_bytes=limit),
    "bzip2": _bunzip2,
    "xz": _unxz,
    "zstd": _unzstd,
    "lzma": _unlzma,
    "lz4": _unlz4,
}


def decompress_payload(data: bytes, *, max_nr_bytes: int = XC_DOM_DECOMPRESS_MAX) -> tuple[str, bytes]:
    """Decompress a bzImage payload by its magic, as ``xc_dom_probe_bzimage_kernel`` does.

    Args:
        data: the payload (``payload_length`` bytes at the setup header's ``payload_offset``).
        max_nr_bytes: the largest uncompressed size accepted (libxenguest's ``max_kernel_size``).

    Returns:
        ``(codec name, uncompressed bytes)``.

    Raises:
        LoaderError: unknown or unsupported compression format, a truncated or corrupt payload, or one whose
            uncompressed size is above ``max_nr_bytes`` or differs from the size it declares.
    """
    codec = detect_codec(data)
    if codec is None:
        raise LoaderError(f"unknown compression format (payload starts with {data[:6].hex(' ') or 'nothing'})")
    decoder = _DECODERS.get(codec)
    if decoder is None:
        raise LoaderError(f"{codec}-compressed kernels are not supported by xenpy (no {codec} decoder)")
    return codec, decoder(data, max_nr_bytes)
