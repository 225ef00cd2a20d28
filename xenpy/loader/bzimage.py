"""Kernel containers: a Linux bzImage or a gzipped ELF, unpacked to the ELF ``vmlinux`` (spec 7.1).

Implements what libxenguest does with a kernel file before its ELF loader sees it:
``xg_dom_core.c:xc_dom_kernel_file`` (a whole file that is gzip is inflated, ``xc_dom_try_gunzip``) and
``xg_dom_bzimageloader.c:xc_dom_probe_bzimage_kernel`` (a bzImage's setup header gives the compressed
payload, which :mod:`xenpy.loader.decompress` inflates). The result is the ELF kernel that
:mod:`xenpy.loader.xen_notes` reads; a Linux bzImage built with ``CONFIG_XEN_PV`` carries the Xen notes there.

Invariants:

* A file is unpacked in libxenguest's order: a file with the gzip magic is inflated once, as a whole; then
  what it is (or held) is an ELF file if it has the ELF magic, else a bzImage if it has the setup header's
  "HdrS" at 0x202 (else it is handed to the ELF reader, which says what is wrong). A bzImage's payload is
  decompressed once and must be the ELF kernel.
* The setup header is ``struct setup_header`` of ``xg_dom_bzimageloader.c`` (0x250 bytes); it needs boot
  protocol 2.08 or later (``payload_offset``/``payload_length``). The payload starts at
  ``(setup_sects + 1) * 512 + payload_offset``, with ``setup_sects`` as stored: libxenguest does not apply
  the boot protocol's "0 means 4" rule, and neither does xenpy (every 2.08+ kernel stores a non-zero value).
  The payload must lie inside the file.
* No file larger than ``XC_DOM_DECOMPRESS_MAX`` (1 GiB) is accepted, and no payload may decompress past it.
* Every problem is a :class:`~xenpy.loader.errors.LoaderError` with one line.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from xenpy.loader.decompress import XC_DOM_DECOMPRESS_MAX, decompress_payload, gunzip
from xenpy.loader.errors import LoaderError

__all__ = [
    "BOOT_PROTOCOL_MIN",
    "HDR_MAGIC",
    "SETUP_HEADER_NR_BYTES",
    "KernelImage",
    "SetupHeader",
    "is_bzimage",
    "parse_setup_header",
    "unpack_kernel",
]

#: ``sizeof(struct setup_header)`` as libxenguest declares it (up to ``payload_length``).
SETUP_HEADER_NR_BYTES = 0x250
#: The setup header's magic, at offset 0x202.
HDR_MAGIC = b"HdrS"
#: ``VERSION(2, 8)``: the first boot protocol with ``payload_offset``/``payload_length``.
BOOT_PROTOCOL_MIN = 0x0208
_OFF_SETUP_SECTS = 0x1F1
_OFF_HEADER = 0x202
_OFF_VERSION = 0x206
_OFF_KERNEL_VERSION = 0x20E
_OFF_PAYLOAD = 0x248
_SECTOR_NR_BYTES = 512
_ELF_MAGIC = b"\x7fELF"
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class SetupHeader:
    """What libxenguest reads from a bzImage's setup header.

    Attributes:
        setup_sects: the real-mode setup's size in 512-byte sectors, less one (the byte at 0x1f1).
        version: the boot protocol, ``(major << 8) | minor`` (0x20f is 2.15).
        payload_offset: file offset of the compressed payload, ``(setup_sects + 1) * 512 + payload_offset``.
        payload_length: the payload's size in bytes.
        kernel_version: the kernel's version string (``kernel_version`` points to it), or None.
    """

    setup_sects: int
    version: int
    payload_offset: int
    payload_length: int
    kernel_version: str | None

    @property
    def version_text(self) -> str:
        """The boot protocol as ``"2.15"``."""
        return f"{self.version >> 8}.{self.version & 0xFF:02d}"


@dataclass(frozen=True)
class KernelImage:
    """A kernel file unpacked to its ELF image.

    Attributes:
        elf: the ELF ``vmlinux`` bytes.
        file_nr_bytes: size of the file as given.
        container: ``"ELF"``, ``"gzip"`` (a gzipped ELF) or ``"bzImage"``.
        codec: the bzImage payload's compression (``"lz4"``, ``"gzip"``, ...), or None.
        setup: the bzImage setup header, or None.
    """

    elf: bytes
    file_nr_bytes: int
    container: str
    codec: str | None = None
    setup: SetupHeader | None = None

    @property
    def description(self) -> str:
        """One line for ``xenpy inspect``: the container and what it held."""
        if self.setup is not None:
            text = (
                f"Linux bzImage, boot protocol {self.setup.version_text}, {self.codec} payload of "
                f"{self.setup.payload_length} bytes at {self.setup.payload_offset:#x}, {len(self.elf)} bytes of ELF"
            )
            if self.setup.kernel_version:
                text += f"; version {self.setup.kernel_version!r}"
            return text
        if self.container == "gzip":
            return f"gzip-compressed ELF, {self.file_nr_bytes} -> {len(self.elf)} bytes"
        return f"ELF, {self.file_nr_bytes} bytes"


def is_bzimage(data: bytes) -> bool:
    """True if ``data`` has the setup header magic "HdrS" at 0x202."""
    return data[_OFF_HEADER : _OFF_HEADER + len(HDR_MAGIC)] == HDR_MAGIC


def _kernel_version(data: bytes) -> str | None:
    """The string ``kernel_version`` points to (an offset from 0x200), if it is inside the setup code."""
    (pointer,) = struct.unpack_from("<H", data, _OFF_KERNEL_VERSION)
    start = pointer + 0x200
    if pointer == 0 or start >= len(data):
        return None
    end = data.find(b"\0", start, start + 256)
    if end < 0:
        return None
    text = data[start:end].decode("latin-1")
    return text if text.isprintable() else None


def parse_setup_header(data: bytes) -> SetupHeader:
    """``xc_dom_probe_bzimage_kernel``'s checks of the setup header.

    Raises:
        LoaderError: the file is shorter than the header, lacks "HdrS", has a boot protocol older than 2.08,
            or its payload does not lie inside the file.
    """
    if len(data) < SETUP_HEADER_NR_BYTES:
        raise LoaderError(
            f"bzImage is truncated: {len(data)} bytes, shorter than its setup header ({SETUP_HEADER_NR_BYTES})"
        )
    if not is_bzimage(data):
        raise LoaderError("kernel is not a bzImage (no HdrS at 0x202)")
    (version,) = struct.unpack_from("<H", data, _OFF_VERSION)
    if version < BOOT_PROTOCOL_MIN:
        raise LoaderError(f"bzImage boot protocol too old ({version:04x}; 2.08 or later carries a payload)")
    setup_sects = data[_OFF_SETUP_SECTS]
    relative_offset, payload_length = struct.unpack_from("<II", data, _OFF_PAYLOAD)
    payload_offset = (setup_sects + 1) * _SECTOR_NR_BYTES + relative_offset
    if payload_offset >= len(data):
        raise LoaderError(
            f"bzImage payload offset overflow: the payload starts at {payload_offset:#x}, the file has "
            f"{len(data):#x} bytes"
        )
    if payload_offset + payload_length > len(data):
        raise LoaderError(
            f"bzImage payload length overflow: the payload ends at {payload_offset + payload_length:#x}, the "
            f"file has {len(data):#x} bytes (truncated?)"
        )
    return SetupHeader(setup_sects, version, payload_offset, payload_length, _kernel_version(data))


def unpack_kernel(data: bytes, *, max_nr_bytes: int = XC_DOM_DECOMPRESS_MAX) -> KernelImage:
    """Unpack a kernel file to its ELF image as libxenguest does before its ELF loader.

    A plain ELF file is returned as it is; a gzip file is inflated (``xc_dom_kernel_file``); a bzImage's payload
    is located by its setup header and decompressed by its magic (``xc_dom_probe_bzimage_kernel``).

    Args:
        data: the kernel file.
        max_nr_bytes: the largest file, and the largest decompressed kernel, accepted (libxenguest's
            ``max_kernel_size``, by default ``XC_DOM_DECOMPRESS_MAX``).

    Raises:
        LoaderError: the file is too large, a bad bzImage header, or a payload that does not decompress
            within the limit.
    """
    if len(data) > max_nr_bytes:
        raise LoaderError(f"kernel image too large ({len(data)} bytes, the limit is {max_nr_bytes})")
    container = "ELF"
    blob = data
    if data.startswith(_GZIP_MAGIC):
        try:
            blob = gunzip(data, max_nr_bytes=max_nr_bytes)
        except LoaderError as error:
            raise LoaderError(f"gzip-compressed kernel: {error}") from None
        container = "gzip"
    if blob.startswith(_ELF_MAGIC) or not is_bzimage(blob):
        return KernelImage(blob, len(data), container)
    setup = parse_setup_header(blob)
    payload = blob[setup.payload_offset : setup.payload_offset + setup.payload_length]
    try:
        codec, elf = decompress_payload(payload, max_nr_bytes=max_nr_bytes)
    except LoaderError as error:
        raise LoaderError(f"bzImage: {error}") from None
    return KernelImage(elf, len(data), "bzImage", codec, setup)
