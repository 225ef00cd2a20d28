"""Linux bzImages as libxenguest loads them (``xg_dom_bzimageloader.c``): the setup header, each payload codec,
and the one-line refusals of bad, truncated and oversized images."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from xenpy.loader.bzimage import SETUP_HEADER_NR_BYTES, unpack_kernel
from xenpy.loader.decompress import XC_DOM_DECOMPRESS_MAX, decompress_payload, detect_codec
from xenpy.loader.errors import LoaderError
from xenpy.loader.xen_notes import read_pv_image

from .bzimagegen import CODECS, bzimage_of, compress, lz4_legacy, make_bzimage
from .elfgen import standard_image

ELF = standard_image()
DEBIAN_VMLINUZ = Path("/work/dl/linux/boot/vmlinuz-6.1.0-50-cloud-amd64")


def refused(data: bytes, match: str, **kwargs: int) -> str:
    """The LoaderError ``unpack_kernel`` raises: one line matching ``match``."""
    with pytest.raises(LoaderError, match=match) as caught:
        read_pv_image(data) if not kwargs else unpack_kernel(data, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and message, message
    return message


@pytest.mark.parametrize("codec", CODECS)
def test_each_codec_unpacks_to_the_same_elf(codec: str) -> None:
    image = bzimage_of(ELF, codec)
    kernel = unpack_kernel(image)
    assert kernel.elf == ELF
    assert (kernel.container, kernel.codec) == ("bzImage", codec)
    assert kernel.setup is not None and kernel.setup.version_text == "2.15"
    assert kernel.setup.kernel_version == "6.1.0-xenpy-test (test@xenpy) #1"
    assert codec in kernel.description and "2.15" in kernel.description
    plain, packed = read_pv_image(ELF), read_pv_image(image)
    assert (packed.virt_entry, packed.virt_kstart, packed.virt_kend, packed.notes) == (
        plain.virt_entry, plain.virt_kstart, plain.virt_kend, plain.notes)


def test_payload_offset_counts_setup_sects_plus_one_sectors() -> None:
    """payload_offset is relative to the protected-mode part, (setup_sects + 1) * 512 bytes in."""
    payload = compress("lz4", ELF)
    for setup_sects in (1, 4, 30):
        image = make_bzimage(payload, setup_sects=setup_sects, relative_offset=0x2CC)
        setup = unpack_kernel(image).setup
        assert setup is not None and setup.payload_offset == (setup_sects + 1) * 512 + 0x2CC
        assert image[setup.payload_offset : setup.payload_offset + 4] == payload[:4]


def test_a_plain_and_a_gzipped_elf_are_accepted() -> None:
    assert unpack_kernel(ELF).container == "ELF"
    kernel = unpack_kernel(gzip.compress(ELF))
    assert (kernel.container, kernel.elf) == ("gzip", ELF)  # xc_dom_kernel_file inflates a gzip file
    assert read_pv_image(gzip.compress(ELF)).virt_entry == read_pv_image(ELF).virt_entry


def test_lz4_legacy_blocks_and_repeated_magic() -> None:
    """Several blocks, and a magic repeated between blocks (concatenated frames), as xc_try_lz4_decode reads."""
    data = bytes(range(256)) * 300
    blocks = lz4_legacy(data, block_nr_bytes=10_000)
    twice = blocks + lz4_legacy(data, block_nr_bytes=7_000)
    size = struct.pack("<I", 2 * len(data))
    assert decompress_payload(twice + size) == ("lz4", data + data)


@pytest.mark.parametrize(
    ("magic", "codec"),
    [(b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\0", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
     (b"\x5d\x00", "lzma"), (b"\x89LZO\0", "LZO"), (b"\x02\x21", "lz4"), (b"\x7fELF", None)],
)
def test_codec_by_magic(magic: bytes, codec: str | None) -> None:
    assert detect_codec(magic + bytes(16)) == codec


# ------------------------------------------------------------------------------------------ refusals


def test_setup_header_refusals() -> None:
    payload = compress("gzip", ELF)
    good = make_bzimage(payload)
    refused(good[:SETUP_HEADER_NR_BYTES - 1], r"^bzImage is truncated: .* shorter than its setup header")
    refused(make_bzimage(payload, version=0x0207), r"^bzImage boot protocol too old \(0207")
    past_end = bytearray(good)
    struct.pack_into("<I", past_end, 0x248, len(good))
    refused(bytes(past_end), r"^bzImage payload offset overflow: the payload starts at 0x")
    refused(make_bzimage(payload, payload_length=len(payload) + 65), r"^bzImage payload length overflow")
    refused(good[: len(good) - 100], r"^bzImage payload length overflow: .* \(truncated\?\)")
    refused(make_bzimage(b"\x42" * 64), r"^bzImage: unknown compression format \(payload starts with 42 42")
    refused(make_bzimage(b"\x89LZO\0" + bytes(64)), r"^bzImage: LZO-compressed kernels are not supported")


def test_not_an_elf_and_not_a_bzimage() -> None:
    bad = bytearray(make_bzimage(compress("gzip", ELF)))
    bad[0x202:0x206] = b"HdrX"
    refused(bytes(bad), r"^not an ELF")


@pytest.mark.parametrize("codec", CODECS)
def test_truncated_payload_is_one_line(codec: str) -> None:
    """A payload cut short (its length field matching the cut, so the header is consistent) is refused."""
    payload = compress(codec, ELF)
    for keep in (len(payload) // 2, 12):
        cut = payload[:keep] + payload[-4:]  # keep the size trailer: the stream itself ends early
        message = refused(make_bzimage(cut), rf"^bzImage: {codec} payload")
        assert "truncated" in message or "corrupt" in message or "instead of" in message, message


@pytest.mark.parametrize("codec", CODECS)
def test_corrupt_payload_is_one_line(codec: str) -> None:
    payload = bytearray(compress(codec, ELF))
    for i in range(40, len(payload) - 8, 97):
        payload[i] ^= 0x5A
    # lz4's legacy frame has no checksum: garbage may decode, and then the ELF reader refuses it
    refused(make_bzimage(bytes(payload)), rf"^(bzImage: |the ){codec} payload")


@pytest.mark.parametrize("codec", CODECS)
def test_payload_that_is_not_an_elf(codec: str) -> None:
    message = refused(make_bzimage(compress(codec, b"hello, not an ELF" * 10)), r"not an ELF")
    assert message.startswith(f"the {codec} payload of the bzImage (170 bytes): ")


@pytest.mark.parametrize("codec", CODECS)
def test_declared_size_above_libxenguest_limit(codec: str) -> None:
    """A size field above XC_DOM_DECOMPRESS_MAX is refused before decompressing ("kernel image too large")."""
    payload = compress(codec, ELF)[:-4] + struct.pack("<I", XC_DOM_DECOMPRESS_MAX + 1)
    if codec == "gzip":  # the size is gzip's own ISIZE
        payload = compress(codec, ELF)[:-4] + struct.pack("<I", 0xFFFF_FFFF)
    refused(make_bzimage(payload), rf"^bzImage: {codec} payload declares \d+ bytes uncompressed, more than the "
            r"1 GiB limit \(kernel image too large\)")


@pytest.mark.parametrize("codec", CODECS)
def test_bomb_expanding_past_its_size_field(codec: str) -> None:
    """16 MiB of zeros declaring 1 MiB: decoding stops after 1 MiB + 1 byte and the payload is refused."""
    bomb = compress(codec, bytes(16 << 20))[:-4] + struct.pack("<I", 1 << 20)
    refused(make_bzimage(bomb), rf"^bzImage: {codec} payload decompresses to more than the 1048576 bytes its "
            "size field declares$")


def test_limit_is_a_parameter() -> None:
    image = bzimage_of(ELF, "zstd")
    refused(image, r"^bzImage: zstd payload declares .* more than the \d+ bytes limit", max_nr_bytes=len(ELF) - 1)
    refused(image, r"^kernel image too large", max_nr_bytes=len(image) - 1)
    assert unpack_kernel(image, max_nr_bytes=len(ELF)).elf == ELF


# ------------------------------------------------------------------------------------------ a real kernel


@pytest.mark.slow
def test_debian_vmlinuz_notes() -> None:
    """Debian's cloud kernel (CONFIG_KERNEL_LZ4) unpacks to a Xen PV ELF whose notes the builder reads."""
    if not DEBIAN_VMLINUZ.exists():
        pytest.skip(f"{DEBIAN_VMLINUZ} is absent (apt-get download linux-image-6.1.0-50-cloud-amd64)")
    kernel = unpack_kernel(DEBIAN_VMLINUZ.read_bytes())
    assert (kernel.container, kernel.codec) == ("bzImage", "lz4")
    assert kernel.setup is not None and kernel.setup.version >= 0x020F
    assert kernel.elf.startswith(b"\x7fELF")
    info = read_pv_image(DEBIAN_VMLINUZ.read_bytes())
    assert (info.guest_os, info.xen_version, info.loader) == ("linux", "xen-3.0", "generic")
    assert info.virt_base == 0xFFFF_FFFF_8000_0000 and info.unmapped_initrd and info.p2m_base is not None
