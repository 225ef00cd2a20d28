"""xenpy's own guest kernel (``guest/build/test-pv64-hello``, built with gcc) through loader and builder."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from xenpy.cli.main import main
from xenpy.core.memory import DomainMemory, MachineMemory
from xenpy.core.pagetable import copy_from_guest
from xenpy.loader.builder import build_pv64_domain, init_hypercall_page
from xenpy.loader.layout import compute_pv64_layout
from xenpy.loader.xen_notes import XenImageInfo, read_pv_image

GUEST = Path(__file__).resolve().parents[2] / "guest"
IMAGE = GUEST / "build" / "test-pv64-hello"


@pytest.fixture(scope="module")
def hello() -> bytes:
    """The hello kernel's bytes, built on demand (skipped with the reason when it cannot be built)."""
    if not IMAGE.exists():
        if not (GUEST / "Makefile").exists():
            pytest.skip("guest/Makefile is missing: the guest kernels are not in this tree")
        if shutil.which("gcc") is None or shutil.which("make") is None:
            pytest.skip("gcc and make are needed to build guest/build/test-pv64-hello")
        try:
            done = subprocess.run(
                ["make", "-C", str(GUEST), "build/test-pv64-hello"],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("building the guest kernel took more than 300 s")
        if done.returncode != 0 or not IMAGE.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            pytest.skip(f"make -C guest build/test-pv64-hello failed: {tail[0]}")
    return IMAGE.read_bytes()


def test_hello_notes(hello: bytes) -> None:
    """spec 7.1: the guest's notes: a generic-loader xen-3.0 image, its hypercall page in the kernel."""
    info = read_pv_image(hello)
    assert info.note_source == "PT_NOTE"
    assert (info.loader, info.xen_version, info.guest_os) == ("generic", "xen-3.0", "xenpy-guest")
    assert info.virt_entry == info.elf.header.e_entry
    assert info.virt_hypercall is not None
    assert info.virt_kstart <= info.virt_hypercall < info.virt_kend
    assert info.virt_hypercall % 4096 == 0


def _load(hello: bytes) -> tuple[XenImageInfo, MachineMemory, int]:
    info = read_pv_image(hello)
    machine = MachineMemory(8192 + 8, seed=5)
    memory = DomainMemory(machine, 1, 8192)
    built = build_pv64_domain(memory, info, shared_info_mfn=int(machine.alloc_domain_frames(1, 1)[0]))
    return info, machine, built.cr3


def test_hello_builds_with_code_and_hypercall_page_in_place(hello: bytes) -> None:
    """spec 7.2/7.3: the code at the entry point is the ELF's, the hypercall page is Xen's."""
    info, machine, cr3 = _load(hello)
    assert info.virt_hypercall is not None
    first = info.elf.loadable_segments[0]
    entry_bytes = info.elf.segment_data(first)[info.virt_entry - first.p_vaddr :][:64]
    assert copy_from_guest(machine, cr3, info.virt_entry, len(entry_bytes), domid=1) == entry_bytes
    assert copy_from_guest(machine, cr3, info.virt_hypercall, 4096, domid=1) == init_hypercall_page()
    layout = compute_pv64_layout(info, 8192)
    assert layout.virt_pgtab_end % (4 << 20) == 0


def test_hello_inspect(hello: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(IMAGE)]) == 0
    out = capsys.readouterr().out
    assert "GUEST_OS             'xenpy-guest'" in out
    assert "Entry registers (vCPU 0):" in out
