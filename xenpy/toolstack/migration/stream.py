"""Xen's save and migration stream: xl's save-file header, the libxl stream v2 around the libxc stream v3.

The formats are Xen's ``docs/specs/libxl-migration-stream.pandoc`` and ``libxc-migration-stream.pandoc`` and
xl's ``struct save_file_header`` (``tools/xl/xl.h``). A file xenpy writes is, in order::

    xl header     32-byte magic, byte order 0x01020304, mandatory flags JSON|STREAMv2, optional data:
                  u32 length + the domain configuration (JSON)
    libxl header  "LibxlFmt", version 2, options 0                      (big endian)
    libxl record  LIBXC_CONTEXT (empty), then the libxc stream:
      image header    marker ~0, "XENF", version 3, options 0           (big endian)
      domain header   x86 PV, page shift 12, the Xen version saved from
      records         X86_PV_INFO, STATIC_DATA_END, X86_PV_P2M_FRAMES, PAGE_DATA..., X86_TSC_INFO,
                      SHARED_INFO, per online vCPU X86_PV_VCPU_BASIC and _EXTENDED, END
    libxl record  END

Every record is a ``u32 type, u32 body length`` header, the body, and zero padding to 8 bytes. The reader checks
each header, length and reserved field as Xen's ``verify-stream-v2`` does and raises :class:`SaveFileError` with
the byte offset of the first bad one.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, BinaryIO

import numpy as np

from xenpy.abi.x86 import PAGE_SHIFT, PAGE_SIZE

XL_MAGIC = b"Xen saved domain, xl format\n \0 \r"
XL_BYTEORDER = 0x01020304
#: ``XL_MANDATORY_FLAG_JSON``: the configuration is JSON.
XL_FLAG_JSON = 1 << 0
#: ``XL_MANDATORY_FLAG_STREAMv2``: a libxl stream v2 follows.
XL_FLAG_STREAMV2 = 1 << 1

LIBXL_IDENT = 0x4C6962786C466D74  # "LibxlFmt"
LIBXL_VERSION = 2

LIBXC_MARKER = 0xFFFF_FFFF_FFFF_FFFF
LIBXC_IDENT = 0x58454E46  # "XENF"
LIBXC_VERSION = 3
DOMAIN_TYPE_X86_PV = 1

#: How far past its pages a guest's p2m may run in a stream (Linux leaves room to grow; a bound against a garbled
#: max_pfn): at most this many times the domain's pages.
P2M_SLACK = 16
#: Most pfns in one PAGE_DATA record (libxc's MAX_BATCH_SIZE).
PAGE_BATCH = 1024
#: Longest record body the reader accepts (a PAGE_DATA record of a full batch, with room to spare).
MAX_RECORD_BODY = 8 + PAGE_BATCH * (8 + PAGE_SIZE) + PAGE_SIZE
#: Longest configuration in the xl header.
MAX_CONFIG_BYTES = 1 << 20


class LibxlRecord(IntEnum):
    """libxl stream record types."""

    END = 0
    LIBXC_CONTEXT = 1
    EMULATOR_XENSTORE_DATA = 2
    EMULATOR_CONTEXT = 3
    CHECKPOINT_END = 4
    CHECKPOINT_STATE = 5


class Record(IntEnum):
    """libxc stream record types."""

    END = 0x00
    PAGE_DATA = 0x01
    X86_PV_INFO = 0x02
    X86_PV_P2M_FRAMES = 0x03
    X86_PV_VCPU_BASIC = 0x04
    X86_PV_VCPU_EXTENDED = 0x05
    X86_PV_VCPU_XSAVE = 0x06
    SHARED_INFO = 0x07
    X86_TSC_INFO = 0x08
    HVM_CONTEXT = 0x09
    HVM_PARAMS = 0x0A
    TOOLSTACK = 0x0B
    X86_PV_VCPU_MSRS = 0x0C
    VERIFY = 0x0D
    CHECKPOINT = 0x0E
    CHECKPOINT_DIRTY_PFN_LIST = 0x0F
    STATIC_DATA_END = 0x10
    X86_CPUID_POLICY = 0x11
    X86_MSR_POLICY = 0x12


class PfnType(IntEnum):
    """A PAGE_DATA pfn's type (``XEN_DOMCTL_PFINFO_*`` in bits 63-60); bit 3 of a table type means pinned."""

    NOTAB = 0x0
    L1TAB = 0x1
    L2TAB = 0x2
    L3TAB = 0x3
    L4TAB = 0x4
    BROKEN = 0xD
    XALLOC = 0xE
    XTAB = 0xF


PFN_TYPE_SHIFT = 60
PFN_MASK = (1 << 52) - 1
PFN_RESERVED_MASK = ((1 << 60) - 1) & ~PFN_MASK
#: The pinned bit of a page-table type (``XEN_DOMCTL_PFINFO_LPINTAB``, before shifting).
PFN_PINNED = 0x8
#: Types that carry no page data.
TYPES_WITHOUT_DATA = frozenset({PfnType.BROKEN, PfnType.XALLOC, PfnType.XTAB})
#: Every type a restore accepts (the table types, pinned or not, and the three without data).
VALID_TYPES = frozenset({0, 1, 2, 3, 4, 9, 10, 11, 12, 0xD, 0xE, 0xF})

#: ``struct xen_domctl_ext_vcpucontext`` (x86): vcpu, size, syscall32/sysenter callbacks and their flags, then
#: the 32-byte vMCE union.
EXT_VCPUCONTEXT = struct.Struct("<IIQQHHBB2x32s")
#: ``X86_TSC_INFO``: mode, kHz, elapsed ns, incarnation, reserved.
TSC_INFO = struct.Struct("<IIQII")
#: ``TSC_MODE_DEFAULT``.
TSC_MODE_DEFAULT = 0


class SaveFileError(ValueError):
    """A save file or migration stream that is not one xenpy can restore: truncated, corrupt, or of another kind.

    ``offset`` is the byte offset in the stream where the problem is.
    """

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(f"at byte {offset}: {message}")
        self.offset = offset
        self.reason = message


def _padded(length: int) -> int:
    return (length + 7) & ~7


# ---------------------------------------------------------------------------------------------------- writing


class StreamWriter:
    """Writes an xl save file (or the stream of a migration) to a binary file object.

    Attributes:
        bytes_written: bytes written so far.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.bytes_written = 0

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        self._out.write(data)
        self.bytes_written += memoryview(data).nbytes

    def headers(self, config: dict[str, Any], xen_major: int, xen_minor: int) -> None:
        """The xl header with ``config`` as JSON, the libxl header, LIBXC_CONTEXT, the libxc image and domain
        headers."""
        blob = json.dumps(config, sort_keys=True).encode()
        self._write(XL_MAGIC)
        self._write(struct.pack("=IIII", XL_BYTEORDER, XL_FLAG_JSON | XL_FLAG_STREAMV2, 0, 4 + len(blob)))
        self._write(struct.pack("=I", len(blob)) + blob)
        self._write(struct.pack("!QII", LIBXL_IDENT, LIBXL_VERSION, 0))
        self._write(struct.pack("<II", LibxlRecord.LIBXC_CONTEXT, 0))
        self._write(struct.pack("!QIIHHI", LIBXC_MARKER, LIBXC_IDENT, LIBXC_VERSION, 0, 0, 0))
        self._write(struct.pack("<IHHII", DOMAIN_TYPE_X86_PV, PAGE_SHIFT, 0, xen_major, xen_minor))

    def record(self, rtype: int, *parts: bytes | bytearray | memoryview) -> None:
        """One libxc record whose body is ``parts`` joined, padded to 8 bytes."""
        length = sum(memoryview(p).nbytes for p in parts)
        self._write(struct.pack("<II", rtype, length))
        for part in parts:
            self._write(part)
        pad = _padded(length) - length
        if pad:
            self._write(bytes(pad))

    def page_data(self, pfns: np.ndarray, types: np.ndarray, pages: np.ndarray) -> None:
        """A PAGE_DATA record: ``pfns`` with their ``types`` (PfnType values, pinned bit included) and the
        contents of those that carry data, in order (``pages``: ``uint8`` rows of 4096)."""
        words = pfns.astype(np.uint64) | (types.astype(np.uint64) << np.uint64(PFN_TYPE_SHIFT))
        self.record(Record.PAGE_DATA, struct.pack("<II", len(pfns), 0), words.astype("<u8").tobytes(),
                    np.ascontiguousarray(pages).reshape(-1).data)  # fmt: skip

    def end(self) -> None:
        """The libxc END record, then libxl's END record."""
        self.record(Record.END)
        self._write(struct.pack("<II", LibxlRecord.END, 0))


# ---------------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class StreamHeader:
    """What the headers of a save file say."""

    config: dict[str, Any]
    xen_major: int
    xen_minor: int


class StreamReader:
    """Reads a save file or migration stream record by record, checking it as it goes (:class:`SaveFileError`)."""

    def __init__(self, source: BinaryIO) -> None:
        self._in = source
        self.offset = 0

    def _exact(self, n: int, what: str) -> bytes:
        data = self._in.read(n)
        if data is None or len(data) != n:
            got = 0 if not data else len(data)
            raise SaveFileError(self.offset + got, f"the stream ends inside {what} ({n - got} more bytes expected)")
        self.offset += n
        return data

    def headers(self) -> StreamHeader:
        """The xl, libxl and libxc headers, up to the first libxc record."""
        magic = self._exact(len(XL_MAGIC), "the xl header")
        if magic != XL_MAGIC:
            raise SaveFileError(0, "not an xl save file (no \"Xen saved domain, xl format\" header)")
        byteorder, mandatory, optional, optlen = struct.unpack("=IIII", self._exact(16, "the xl header"))
        if byteorder != XL_BYTEORDER:
            raise SaveFileError(32, f"byte order mark {byteorder:#010x} is not this machine's")
        if mandatory & ~(XL_FLAG_JSON | XL_FLAG_STREAMV2) or optional:
            raise SaveFileError(36, f"unknown xl header flags (mandatory {mandatory:#x}, optional {optional:#x})")
        if not mandatory & XL_FLAG_STREAMV2:
            raise SaveFileError(36, "a legacy (pre-v2) stream: convert it with Xen's convert-legacy-stream")
        if not mandatory & XL_FLAG_JSON:
            raise SaveFileError(36, "the domain configuration is not JSON")
        if not 4 <= optlen <= MAX_CONFIG_BYTES + 4:
            raise SaveFileError(44, f"optional data of {optlen} bytes cannot hold a configuration")
        start = self.offset
        (config_len,) = struct.unpack("=I", self._exact(4, "the configuration length"))
        if config_len > optlen - 4:
            raise SaveFileError(start, f"configuration of {config_len} bytes overruns the optional data")
        blob = self._exact(config_len, "the configuration")
        self._exact(optlen - 4 - config_len, "the optional data")
        try:
            config = json.loads(blob.rstrip(b"\0"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise SaveFileError(start + 4, f"the configuration is not valid JSON ({exc})") from None
        if not isinstance(config, dict):
            raise SaveFileError(start + 4, "the configuration is not a JSON object")

        at = self.offset
        ident, version, options = struct.unpack("!QII", self._exact(16, "the libxl header"))
        if ident != LIBXL_IDENT:
            raise SaveFileError(at, f"libxl header ident {ident:#x} is not \"LibxlFmt\"")
        if version != LIBXL_VERSION:
            raise SaveFileError(at + 8, f"libxl stream version {version}, expected {LIBXL_VERSION}")
        if options:
            raise SaveFileError(at + 12, f"libxl header options {options:#x} (big endian or legacy) are not supported")
        rtype, body = self.libxl_record()
        if rtype != LibxlRecord.LIBXC_CONTEXT or body:
            raise SaveFileError(at + 16, f"libxl record {rtype} where an empty LIBXC_CONTEXT (1) was expected")

        at = self.offset
        marker, ident, version, options, res1, res2 = struct.unpack("!QIIHHI", self._exact(24, "the image header"))
        if marker != LIBXC_MARKER or ident != LIBXC_IDENT:
            raise SaveFileError(at, "no libxc image header (marker ~0 and \"XENF\")")
        if not 2 <= version <= 3:
            raise SaveFileError(at + 12, f"libxc stream version {version}, expected 2 or 3")
        if options or res1 or res2:
            raise SaveFileError(at + 16, "big endian stream or reserved bits set in the image header")
        at = self.offset
        dtype, page_shift, res, major, minor = struct.unpack("<IHHII", self._exact(16, "the domain header"))
        if dtype != DOMAIN_TYPE_X86_PV:
            raise SaveFileError(at, f"domain type {dtype} is not x86 PV (1)")
        if page_shift != PAGE_SHIFT or res:
            raise SaveFileError(at + 4, f"page shift {page_shift} (expected 12) or reserved bits set")
        return StreamHeader(config, major, minor)

    def libxl_record(self) -> tuple[int, bytes]:
        """One libxl record: ``(type, body)``."""
        at = self.offset
        rtype, length = struct.unpack("<II", self._exact(8, "a libxl record header"))
        if rtype not in LibxlRecord._value2member_map_:
            raise SaveFileError(at, f"unknown libxl record type {rtype:#x}")
        return rtype, self._body(at, length, f"libxl record {LibxlRecord(rtype).name}")

    def _body(self, at: int, length: int, what: str) -> bytes:
        if length > MAX_RECORD_BODY:
            raise SaveFileError(at + 4, f"{what}: a body of {length} bytes is too long")
        body = self._exact(_padded(length), what)
        if any(body[length:]):
            raise SaveFileError(at + 8 + length, f"{what}: non-zero padding")
        return body[:length]

    def records(self) -> Iterator[tuple[int, int, bytes]]:
        """The libxc records up to and including END, as ``(offset, type, body)``; then libxl's END is read."""
        while True:
            at = self.offset
            rtype, length = struct.unpack("<II", self._exact(8, "a record header"))
            if rtype not in Record._value2member_map_:
                what = "optional" if rtype & 0x8000_0000 else "mandatory"
                if rtype & 0x8000_0000:
                    self._body(at, length, f"record {rtype:#x}")
                    continue
                raise SaveFileError(at, f"unknown {what} record type {rtype:#x}")
            body = self._body(at, length, f"record {Record(rtype).name}")
            yield at, rtype, body
            if rtype == Record.END:
                break
        at = self.offset
        rtype, body = self.libxl_record()
        if rtype != LibxlRecord.END or body:
            raise SaveFileError(at, f"libxl record {rtype} where END was expected")


def parse_page_data(at: int, body: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A PAGE_DATA body as ``(pfns, types, pages)``: ``pages`` holds the data of the pfns whose type has data, in
    order (``uint8`` rows of 4096).

    Raises:
        SaveFileError: a count of 0, reserved bits, an invalid type, or a length that does not match.
    """
    if len(body) < 8:
        raise SaveFileError(at, "PAGE_DATA record shorter than its header")
    count, res = struct.unpack_from("<II", body)
    if count == 0 or res:
        raise SaveFileError(at + 8, f"PAGE_DATA with count {count} or reserved bits {res:#x}")
    if len(body) < 8 + 8 * count:
        raise SaveFileError(at + 8, f"PAGE_DATA of {count} pfns is shorter than its pfn list")
    words = np.frombuffer(body, dtype="<u8", count=count, offset=8).astype(np.uint64)
    types = (words >> np.uint64(PFN_TYPE_SHIFT)).astype(np.int64)
    if np.any(words & np.uint64(PFN_RESERVED_MASK)):
        raise SaveFileError(at + 16, "reserved bits set in a PAGE_DATA pfn")
    bad = ~np.isin(types, sorted(VALID_TYPES))
    if bad.any():
        raise SaveFileError(at + 16 + 8 * int(np.argmax(bad)), f"invalid page type {int(types[bad][0]):#x}")
    with_data = ~np.isin(types, sorted(int(t) for t in TYPES_WITHOUT_DATA))
    nr_data = int(with_data.sum())
    if len(body) != 8 + 8 * count + PAGE_SIZE * nr_data:
        raise SaveFileError(at + 4, f"PAGE_DATA of {count} pfns ({nr_data} with data) has {len(body)} bytes")
    pages = np.frombuffer(body, dtype=np.uint8, offset=8 + 8 * count).reshape(nr_data, PAGE_SIZE)
    return (words & np.uint64(PFN_MASK)).astype(np.int64), types, pages


def vcpu_record(at: int, body: bytes) -> tuple[int, bytes]:
    """An X86_PV_VCPU_* body as ``(vcpu_id, context)``."""
    if len(body) < 8:
        raise SaveFileError(at, "vCPU record shorter than its header")
    vcpu_id, res = struct.unpack_from("<II", body)
    if res:
        raise SaveFileError(at + 12, "reserved bits set in a vCPU record")
    return vcpu_id, body[8:]
