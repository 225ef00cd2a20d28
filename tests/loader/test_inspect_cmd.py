"""``xenpy inspect``: an image's notes, addresses and bootstrap layout; one error line for a bad image."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from xenpy.cli.errors import EXIT_DATAERR, EXIT_USAGE
from xenpy.cli.main import main

from . import elfgen
from .elfgen import standard_image, standard_notes


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exit_:  # argparse usage errors
        status = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "kernel.elf"
    path.write_bytes(standard_image())
    return path


def _row(out: str, name: str) -> str:
    for line in out.splitlines():
        if line.strip().startswith(name + " "):
            return line.strip()
    raise AssertionError(f"no row {name!r} in:\n{out}")


def test_inspect_prints_notes_addresses_and_layout(capsys: pytest.CaptureFixture[str], image: Path) -> None:
    """spec 7.1, 7.2, 7.5 for the typical kernel in the default 32 MiB."""
    status, out, err = run(capsys, "inspect", str(image))
    assert status == 0 and err == ""
    assert out.splitlines()[0] == (
        f"{image}: ELF64 little-endian EM_X86_64 (x86_64), ET_EXEC, e_entry "
        "0xffffffff80002010, guest type xen-3.0-x86_64"
    )
    assert "Xen notes (from PT_NOTE):" in out
    assert _row(out, "GUEST_OS") == "GUEST_OS             'xenpy-test'"
    assert _row(out, "VIRT_BASE") == "VIRT_BASE            0xffffffff80000000"
    assert _row(out, "virt_kstart") == "virt_kstart          0xffffffff80002000"
    assert _row(out, "virt_kend") == "virt_kend            0xffffffff80006000"
    assert _row(out, "hypercall page") == "hypercall page       0xffffffff80003000 (pfn 0x3)"
    assert "Bootstrap layout for 32 MiB (8192 pages):" in out
    assert re.search(r"kernel\s+0xffffffff80002000\s+0xffffffff80006000\s+0x2\s+0x6\s+4\s+16 KiB", out)
    assert re.search(r"page tables\s+0xffffffff80019000\s+0xffffffff8001e000\s+0x19\s+0x1e\s+5\s+20 KiB", out)
    assert (
        "virt_pgtab_end 0xffffffff80400000: 4 MiB mapped (1024 pages), 5 page-table frames "
        "(L4 1, L3 1, L2 1, L1 2)" in out
    )
    assert _row(out, "rip") == "rip    0xffffffff80002010  virt_entry"
    assert _row(out, "rsi") == "rsi    0xffffffff80016000  start_info"
    assert _row(out, "rsp") == "rsp    0xffffffff8001f000  top of the boot stack"


def test_inspect_memory_changes_the_p2m(capsys: pytest.CaptureFixture[str], image: Path) -> None:
    status, out, _ = run(capsys, "inspect", str(image), "--memory", "64")
    assert status == 0
    assert "Bootstrap layout for 64 MiB (16384 pages):" in out
    assert re.search(r"p2m\s+0xffffffff80006000\s+0xffffffff80026000\s+0x6\s+0x26\s+32\s+128 KiB", out)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"MZ\x90\x00" + bytes(100), r"not an ELF file"),
        (standard_image()[:300], r"extends past the end of the file"),
        (elfgen.make_elf32(), r"ELF32 x86_32 image: 32-bit PV guests are not supported yet"),
        (standard_image(notes=b""), r"Not a Xen-ELF image"),
        (standard_image(notes=standard_notes(FEATURES="!dom0")), r"does not support unprivileged \(DomU\)"),
    ],
)
def test_inspect_bad_images(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: bytes, why: str
) -> None:
    """A bad image: exactly one line ``xenpy: error: IMAGE: <why>``, exit 65, no traceback."""
    path = tmp_path / "bad.elf"
    path.write_bytes(data)
    status, out, err = run(capsys, "inspect", str(path))
    assert status == EXIT_DATAERR
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"xenpy: error: {path}: ")
    assert re.search(why, err)


def test_inspect_image_too_big_for_memory(capsys: pytest.CaptureFixture[str], image: Path) -> None:
    status, out, err = run(capsys, "inspect", str(image), "--memory", "2")
    assert status == EXIT_DATAERR and out == ""
    assert err == (
        f"xenpy: error: {image}: image needs 4 MiB of bootstrap region (1024 pages from VIRT_BASE "
        "0xffffffff80000000 to 0xffffffff80400000), domain has 2 MiB (512 pages)\n"
    )


def test_inspect_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = run(capsys, "inspect", str(tmp_path / "nope"))
    assert status == EXIT_DATAERR
    assert err == f"xenpy: error: {tmp_path / 'nope'}: No such file or directory\n"


@pytest.mark.parametrize("memory", ["0", "-4", "lots"])
def test_inspect_bad_memory_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], image: Path, memory: str
) -> None:
    status, _, err = run(capsys, "inspect", str(image), "--memory", memory)
    assert status == EXIT_USAGE
    assert "--memory" in err


def test_inspect_a_bzimage_with_an_initrd(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A bzImage is inspected as the ELF it carries, with a line naming the container; --initrd adds the
    module to the layout and prints start_info.mod_start/mod_len."""
    from .bzimagegen import bzimage_of

    plain, packed, initrd = tmp_path / "vmlinux", tmp_path / "vmlinuz", tmp_path / "initrd.img"
    plain.write_bytes(standard_image())
    packed.write_bytes(bzimage_of(standard_image(), "xz"))
    initrd.write_bytes(bytes(5000))
    _, plain_out, _ = run(capsys, "inspect", str(plain))
    status, out, err = run(capsys, "inspect", str(packed), "--initrd", str(initrd))
    assert status == 0, err
    first, rest = out.split("\n", 1)
    assert first.startswith(f"{packed}: Linux bzImage, boot protocol 2.15, xz payload of ")
    assert rest.split("\n", 1)[1].split("Bootstrap layout")[0] == plain_out.split("\n", 1)[1].split(
        "Bootstrap layout")[0]  # the same notes and addresses
    assert _row(out, "module").split()[-2:] == ["8", "KiB"]
    assert "initrd: start_info.mod_start 0x" in out and "mod_len 0x1388" in out
    status, out, _ = run(capsys, "inspect", str(packed), "--initrd", str(initrd), "--profile", "4.17")
    assert status == 0 and "mod_len 0x2000" in out


def test_inspect_bad_bzimage_and_missing_initrd(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                image: Path) -> None:
    from .bzimagegen import make_bzimage

    bad = tmp_path / "vmlinuz"
    bad.write_bytes(make_bzimage(b"\x42" * 64))
    status, out, err = run(capsys, "inspect", str(bad))
    assert status == EXIT_DATAERR and out == ""
    assert err == f"xenpy: error: {bad}: bzImage: unknown compression format (payload starts with 42 42 42 42 42 42)\n"
    status, _, err = run(capsys, "inspect", str(image), "--initrd", str(tmp_path / "absent"))
    assert status == EXIT_DATAERR and err.startswith("xenpy: error: --initrd ") and err.count("\n") == 1


@pytest.mark.slow
def test_inspect_debian_vmlinuz(capsys: pytest.CaptureFixture[str]) -> None:
    """Debian's cloud kernel as it ships (an LZ4 bzImage): its Xen notes and the layout of a 256 MiB domU."""
    vmlinuz = Path("/work/dl/linux/boot/vmlinuz-6.1.0-50-cloud-amd64")
    if not vmlinuz.exists():
        pytest.skip(f"{vmlinuz} is absent (apt-get download linux-image-6.1.0-50-cloud-amd64, then dpkg -x)")
    status, out, err = run(capsys, "inspect", str(vmlinuz), "--memory", "256", "--initrd", str(vmlinuz))
    assert status == 0, err
    assert "Linux bzImage, boot protocol 2.15, lz4 payload" in out and "version '6.1.0-50-cloud-amd64" in out
    assert _row(out, "GUEST_OS") == "GUEST_OS             'linux'"
    assert _row(out, "MOD_START_PFN") == "MOD_START_PFN        0x1"
    assert "(SIF_MOD_START_PFN)" in out  # Linux asks for its initrd unmapped
