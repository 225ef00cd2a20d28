"""Build small Linux bzImages around an ELF kernel for the loader tests (no kernel build needed).

A bzImage here is what ``arch/x86/boot`` makes, reduced to what libxenguest reads: ``setup_sects + 1`` sectors
of real-mode setup holding the setup header (``HdrS``, the boot protocol, ``kernel_version``,
``payload_offset``/``payload_length``), then the protected-mode part with the payload: the ELF compressed by
one of the kernel's codecs, followed (except for gzip, whose trailer holds it) by its size as a little-endian
u32, as ``scripts/Makefile.lib``'s ``*_with_size`` commands append it.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct

import lz4.block
import zstandard

CODECS = ("gzip", "bzip2", "xz", "lzma", "lz4", "zstd")
LZ4_MAGIC = struct.pack("<I", 0x184C2102)
LZ4_BLOCK = 8 << 20


def lz4_legacy(data: bytes, *, block_nr_bytes: int = LZ4_BLOCK) -> bytes:
    """The lz4 legacy frame (``lz4 -l``): the magic, then ``u32 size`` + block for each 8 MiB of input."""
    out = [LZ4_MAGIC]
    for start in range(0, len(data), block_nr_bytes):
        block = lz4.block.compress(data[start : start + block_nr_bytes], store_size=False, mode="high_compression")
        out += [struct.pack("<I", len(block)), block]
    return b"".join(out)


def compress(codec: str, data: bytes) -> bytes:
    """``data`` as the kernel's build compresses a payload, with the trailing size where Linux appends it."""
    size = struct.pack("<I", len(data) & 0xFFFF_FFFF)
    if codec == "gzip":
        return gzip.compress(data, 9, mtime=0)
    if codec == "bzip2":
        return bz2.compress(data, 9) + size
    if codec == "xz":
        filters = [{"id": lzma.FILTER_X86}, {"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 1 << 20}]
        return lzma.compress(data, lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=filters) + size
    if codec == "lzma":
        return lzma.compress(data, lzma.FORMAT_ALONE) + size
    if codec == "lz4":
        return lz4_legacy(data) + size
    if codec == "zstd":
        return zstandard.ZstdCompressor(level=19).compress(data) + size
    raise ValueError(codec)


def make_bzimage(
    payload: bytes,
    *,
    setup_sects: int = 3,
    version: int = 0x020F,
    relative_offset: int = 0x100,
    payload_length: int | None = None,
    kernel_version: bytes = b"6.1.0-xenpy-test (test@xenpy) #1",
    tail: bytes = b"\0" * 64,
) -> bytes:
    """A bzImage carrying ``payload`` (already compressed) ``relative_offset`` bytes into its protected-mode
    part; ``payload_length`` overrides the header's length field."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x1FE:0x200] = b"\x55\xaa"
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, version)
    version_at = 0x300
    setup[version_at : version_at + len(kernel_version) + 1] = kernel_version + b"\0"
    struct.pack_into("<H", setup, 0x20E, version_at - 0x200)
    struct.pack_into("<II", setup, 0x248, relative_offset, len(payload) if payload_length is None else payload_length)
    return bytes(setup) + b"\x90" * relative_offset + payload + tail


def bzimage_of(elf: bytes, codec: str) -> bytes:
    """A bzImage whose payload is ``elf`` compressed with ``codec``."""
    return make_bzimage(compress(codec, elf))
