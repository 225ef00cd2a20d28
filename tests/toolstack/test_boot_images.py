"""Booting what distributions ship: a bzImage boots as its ELF does, and an initrd lands where libxenguest puts
it (spec 7.2: start_info.mod_start/mod_len, SIF_MOD_START_PFN)."""

from __future__ import annotations

from pathlib import Path

import pytest
from loader.bzimagegen import CODECS, bzimage_of, compress, make_bzimage
from loader.elfgen import standard_image, standard_notes

from xenpy.abi.xen import SIF_MOD_START_PFN
from xenpy.core.memory import PAGE_SIZE
from xenpy.engine.unicorn_engine import UnicornEngine
from xenpy.hypervisor import Hypervisor
from xenpy.loader import LoaderError
from xenpy.toolstack.boot import boot_pv_image
from xenpy.toolstack.run import Outcome, run_domain

INITRD = bytes(range(251)) * 41  # 10291 bytes: not a whole number of pages


@pytest.fixture(scope="module")
def hello(guest_build_dir: Path) -> bytes:
    return (guest_build_dir / "test-pv64-hello").read_bytes()


def run(image: bytes, **boot: object) -> tuple[Outcome, str]:
    hv = Hypervisor(memory_mib=48)
    booted = boot_pv_image(hv, image, memory_mib=32, **boot)  # type: ignore[arg-type]
    UnicornEngine(hv)
    report = run_domain(hv, booted.domain, timeout_s=30)
    booted.console.close()
    booted.domain.console.flush()
    return report.outcome, booted.domain.console.text()


@pytest.mark.needs_gcc
@pytest.mark.parametrize("codec", CODECS)
def test_bzimage_boots_like_its_elf(hello: bytes, codec: str) -> None:
    """The hello guest wrapped in a bzImage (each codec) prints exactly what the plain ELF prints."""
    plain = run(hello, cmdline="root=/dev/xvda")
    packed = run(bzimage_of(hello, codec), cmdline="root=/dev/xvda")
    assert plain[0] is Outcome.POWEROFF
    assert packed == plain


@pytest.mark.needs_gcc
def test_initrd_in_the_bootstrap_region(hello: bytes) -> None:
    """Without MOD_START_PFN the initrd follows the kernel (mapped): mod_start is its VA, mod_len its size."""
    hv = Hypervisor(memory_mib=40)
    booted = boot_pv_image(hv, hello, memory_mib=16, initrd=INITRD)
    d, layout = booted.domain, booted.built.layout
    si = d.get_struct("start_info", layout.rsi)
    assert layout.module is not None and layout.module.gva == si.mod_start
    assert layout.module.pfn == layout.kernel.pfn_end  # right after the kernel
    assert si.mod_len == len(INITRD)  # exact since Xen 4.19 (profile head)
    assert si.flags & SIF_MOD_START_PFN == 0
    assert d.read_guest(si.mod_start, len(INITRD)) == INITRD
    assert d.read_guest(si.mod_start + len(INITRD), 3 * PAGE_SIZE - len(INITRD)) == bytes(3 * PAGE_SIZE - len(INITRD))


@pytest.mark.needs_gcc
def test_initrd_length_in_whole_pages_on_older_profiles(hello: bytes) -> None:
    hv = Hypervisor(memory_mib=40)
    booted = boot_pv_image(hv, hello, memory_mib=16, initrd=INITRD, profile="4.17")
    si = booted.domain.get_struct("start_info", booted.built.layout.rsi)
    assert si.mod_len == 3 * PAGE_SIZE


def test_initrd_after_the_region_with_mod_start_pfn() -> None:
    """MOD_START_PFN (as Linux sets it): the initrd is placed after the mapped region; mod_start is its pfn,
    mod_len whole pages, and start_info.flags has SIF_MOD_START_PFN."""
    image = standard_image(notes=standard_notes(MOD_START_PFN=1))
    hv = Hypervisor(memory_mib=40)
    booted = boot_pv_image(hv, image, memory_mib=16, initrd=INITRD)
    d, layout = booted.domain, booted.built.layout
    si = d.get_struct("start_info", layout.rsi)
    assert si.flags & SIF_MOD_START_PFN
    assert si.mod_start == layout.region_nr_pages  # the first pfn after [virt_base, virt_pgtab_end)
    assert si.mod_len == 3 * PAGE_SIZE
    got = b"".join(d.memory.read_pfn(si.mod_start + i, 0, PAGE_SIZE) for i in range(3))
    assert got == INITRD + bytes(3 * PAGE_SIZE - len(INITRD))


@pytest.mark.needs_gcc
def test_hello_reports_the_initrd(hello: bytes) -> None:
    """The guest itself sees the module: hello prints start_info.mod_start and mod_len."""
    outcome, console = run(bzimage_of(hello, "lz4"), initrd=INITRD)
    assert outcome is Outcome.POWEROFF
    assert f", {len(INITRD)} bytes" in console


def test_bad_bzimage_leaves_no_domain() -> None:
    hv = Hypervisor(memory_mib=40)
    with pytest.raises(LoaderError, match=r"^bzImage: zstd payload decompresses to 0 bytes instead of the 4096"):
        boot_pv_image(hv, make_bzimage(compress("zstd", standard_image())[:40] + b"\0\x10\0\0"), memory_mib=16)
    assert hv.domains == {}


def test_initrd_too_big_for_the_domain_leaves_no_domain() -> None:
    hv = Hypervisor(memory_mib=40)
    free_before = hv.machine.nr_free_frames
    with pytest.raises(LoaderError, match="domain has 4 MiB"):
        boot_pv_image(hv, standard_image(), memory_mib=4, initrd=bytes(5 << 20))
    assert hv.domains == {} and hv.machine.nr_free_frames == free_before
