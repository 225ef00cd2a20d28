"""The bundled guest kernels build with ``make -C guest`` and carry what Xen's PV domain builder needs.

Each image is checked statically, the way the builder reads it (spec 7.1-7.3): a PT_NOTE segment of "Xen"
notes, the address calculation that places the kernel at VIRT_BASE, an entry point inside the kernel and a
page-aligned hypercall page still poisoned with ``ret`` (0xC3). The ELF reading here is a minimal stdlib
parser, independent of xenpy's loader.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUEST = ROOT / "guest"

TOOLS = ("gcc", "ld", "make")
pytestmark = [
    pytest.mark.needs_gcc,
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in TOOLS), reason="needs gcc, GNU ld and make on PATH"
    ),
]

# Values the guest's build is expected to produce (guest/include/xenpy-guest/layout.h, notes.S).
VIRT_BASE = 0x400000
PAGE_SIZE = 4096
EXPECTED_TESTS = {"hello", "ipi", "pagefault", "smp", "timer", "traps"}

# ELF constants (System V gABI).
ELFCLASS64 = 2
ELFDATA2LSB = 1
ET_EXEC = 2
EM_X86_64 = 62
PT_LOAD = 1
PT_NOTE = 4
PF_X = 1
SHT_SYMTAB = 2

# Xen ELF note types (spec 6.8).
XEN_ELFNOTE_ENTRY = 1
XEN_ELFNOTE_HYPERCALL_PAGE = 2
XEN_ELFNOTE_VIRT_BASE = 3
XEN_ELFNOTE_PADDR_OFFSET = 4
XEN_ELFNOTE_XEN_VERSION = 5
XEN_ELFNOTE_GUEST_OS = 6
XEN_ELFNOTE_GUEST_VERSION = 7
XEN_ELFNOTE_LOADER = 8
XEN_ELFNOTE_FEATURES = 10


@dataclass(frozen=True)
class Segment:
    p_type: int
    p_flags: int
    p_offset: int
    p_vaddr: int
    p_paddr: int
    p_filesz: int
    p_memsz: int
    p_align: int


@dataclass(frozen=True)
class Elf:
    """The parts of an ELF64 image the PV builder looks at."""

    data: bytes
    e_type: int
    e_machine: int
    e_entry: int
    segments: tuple[Segment, ...]
    symbols: dict[str, int]

    @classmethod
    def read(cls, path: Path) -> Elf:
        data = path.read_bytes()
        assert data[:4] == b"\x7fELF", f"{path} is not an ELF file"
        assert data[4] == ELFCLASS64 and data[5] == ELFDATA2LSB, f"{path} is not ELF64 little-endian"
        header = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
        e_type, e_machine, _, e_entry, e_phoff, e_shoff = header[:6]
        e_phentsize, e_phnum, e_shentsize, e_shnum = header[8:12]
        segments = tuple(Segment(*_phdr(data, e_phoff + i * e_phentsize)) for i in range(e_phnum))
        sections = [
            struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize) for i in range(e_shnum)
        ]
        symbols: dict[str, int] = {}
        for _, sh_type, _, _, sh_offset, sh_size, sh_link, _, _, sh_entsize in sections:
            if sh_type != SHT_SYMTAB:
                continue
            strtab_offset = sections[sh_link][4]
            for off in range(sh_offset, sh_offset + sh_size, sh_entsize):
                st_name, _, _, _, st_value, _ = struct.unpack_from("<IBBHQQ", data, off)
                end = data.index(b"\0", strtab_offset + st_name)
                name = data[strtab_offset + st_name : end].decode()
                if name:
                    symbols[name] = st_value
        return cls(data, e_type, e_machine, e_entry, segments, symbols)

    def loads(self) -> list[Segment]:
        return [s for s in self.segments if s.p_type == PT_LOAD]

    def notes(self) -> list[tuple[str, int, bytes]]:
        """(name, type, desc) of every note in the PT_NOTE segments the builder reads (p_offset != 0)."""
        notes = []
        for seg in self.segments:
            if seg.p_type != PT_NOTE or seg.p_offset == 0:
                continue
            off, end = seg.p_offset, seg.p_offset + seg.p_filesz
            while off < end:
                namesz, descsz, n_type = struct.unpack_from("<III", self.data, off)
                name_off = off + 12
                desc_off = name_off + _align4(namesz)
                name = self.data[name_off : name_off + namesz].rstrip(b"\0").decode()
                notes.append((name, n_type, self.data[desc_off : desc_off + descsz]))
                off = desc_off + _align4(descsz)
        return notes

    def xen_notes(self) -> dict[int, bytes]:
        notes: dict[int, bytes] = {}
        for name, n_type, desc in self.notes():
            if name == "Xen":
                assert n_type not in notes, f"duplicate Xen note type {n_type}"
                notes[n_type] = desc
        return notes

    def file_bytes_at(self, vaddr: int, size: int) -> bytes:
        """Bytes the loader copies to vaddr..vaddr+size (must be file-backed, not .bss)."""
        for seg in self.loads():
            if seg.p_vaddr <= vaddr and vaddr + size <= seg.p_vaddr + seg.p_filesz:
                start = seg.p_offset + vaddr - seg.p_vaddr
                return self.data[start : start + size]
        raise AssertionError(f"{vaddr:#x}+{size:#x} is not file-backed by a PT_LOAD segment")


def _phdr(data: bytes, off: int) -> tuple[int, ...]:
    p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align = struct.unpack_from(
        "<IIQQQQQQ", data, off
    )
    return p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _number(desc: bytes) -> int:
    """A numeric note: 1, 2, 4 or 8 bytes, little-endian (spec 7.1)."""
    assert len(desc) in (1, 2, 4, 8), f"numeric note of {len(desc)} bytes"
    return int.from_bytes(desc, "little")


def _string(desc: bytes) -> str:
    assert desc.endswith(b"\0"), "string note is not NUL-terminated"
    return desc[:-1].decode()


def _make(*args: str, cwd: Path = GUEST) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C"}
    env.pop("MAKEFLAGS", None)
    return subprocess.run(
        ["make", "-C", str(cwd), *args], capture_output=True, text=True, env=env, timeout=300
    )


def _image_names(guest_dir: Path) -> set[str]:
    return {p.parent.name for p in (guest_dir / "tests").glob("*/main.c")}


@pytest.fixture(scope="module")
def built() -> dict[str, Elf]:
    """``make -C guest`` (the default build directory), then every image parsed."""
    result = _make("-j2")
    assert result.returncode == 0, result.stdout + result.stderr
    return {name: Elf.read(GUEST / "build" / f"test-pv64-{name}") for name in sorted(_image_names(GUEST))}


@pytest.fixture(params=sorted(EXPECTED_TESTS))
def image(request: pytest.FixtureRequest, built: dict[str, Elf]) -> Elf:
    return built[request.param]


def test_every_test_directory_gives_an_image(built: dict[str, Elf]) -> None:
    assert EXPECTED_TESTS <= set(built)
    for name in built:
        assert (GUEST / "build" / f"test-pv64-{name}").is_file()


def test_elf64_x86_64_static_executable(image: Elf) -> None:
    assert image.e_type == ET_EXEC
    assert image.e_machine == EM_X86_64
    assert image.e_entry == image.symbols["_start"]
    assert not any(name.startswith("_GLOBAL_OFFSET_TABLE_") for name in image.symbols), "linked as PIC"


def test_load_segments_sit_at_virt_base_with_paddr_equal_vaddr(image: Elf) -> None:
    """Spec 7.1-7.2: the kernel is linked where the builder puts it; the NULL page stays unmapped."""
    loads = image.loads()
    assert loads, "no PT_LOAD segment"
    for seg in loads:
        assert seg.p_paddr == seg.p_vaddr
        assert seg.p_vaddr % PAGE_SIZE == 0
        assert seg.p_offset % PAGE_SIZE == seg.p_vaddr % PAGE_SIZE
        assert seg.p_filesz <= seg.p_memsz
    assert min(seg.p_vaddr for seg in loads) == VIRT_BASE
    assert any(seg.p_flags & PF_X for seg in loads)


def test_xen_notes_describe_a_generic_pv_kernel(image: Elf) -> None:
    """Spec 7.1: the notes the builder requires or uses, with the values the guest documents."""
    notes = image.xen_notes()
    assert _string(notes[XEN_ELFNOTE_GUEST_OS]) == "xenpy-guest"
    assert _string(notes[XEN_ELFNOTE_GUEST_VERSION])
    assert _string(notes[XEN_ELFNOTE_XEN_VERSION]).startswith("xen-3.0")
    assert _string(notes[XEN_ELFNOTE_LOADER]).startswith("generic")
    assert _number(notes[XEN_ELFNOTE_VIRT_BASE]) == VIRT_BASE
    assert _number(notes[XEN_ELFNOTE_PADDR_OFFSET]) == VIRT_BASE
    assert _number(notes[XEN_ELFNOTE_ENTRY]) == image.e_entry
    assert _number(notes[XEN_ELFNOTE_HYPERCALL_PAGE]) == image.symbols["hypercall_page"]
    assert XEN_ELFNOTE_FEATURES not in notes, "the guest requires no features"


def test_builder_address_calculation_places_the_kernel_at_its_link_address(image: Elf) -> None:
    """Spec 7.1 (elf_xen_addr_calc_check): virt_kstart == link address, entry inside the kernel."""
    notes = image.xen_notes()
    virt_base = _number(notes[XEN_ELFNOTE_VIRT_BASE])
    virt_offset = virt_base - _number(notes[XEN_ELFNOTE_PADDR_OFFSET])
    loads = image.loads()
    pstart = min(seg.p_paddr for seg in loads)
    pend = max(seg.p_paddr + seg.p_memsz for seg in loads)
    virt_kstart, virt_kend = pstart + virt_offset, pend + virt_offset
    virt_entry = _number(notes[XEN_ELFNOTE_ENTRY])

    assert virt_kstart == min(seg.p_vaddr for seg in loads)
    assert virt_kstart <= virt_kend
    assert virt_base <= virt_kstart
    assert virt_kstart <= virt_entry <= virt_kend


def test_hypercall_page_is_an_aligned_page_poisoned_with_ret(image: Elf) -> None:
    """Spec 7.3: one page, page-aligned, inside the loaded kernel; 0xC3 until the hypervisor fills it."""
    va = _number(image.xen_notes()[XEN_ELFNOTE_HYPERCALL_PAGE])
    assert va % PAGE_SIZE == 0
    assert image.file_bytes_at(va, PAGE_SIZE) == b"\xc3" * PAGE_SIZE
    seg = next(s for s in image.loads() if s.p_vaddr <= va < s.p_vaddr + s.p_memsz)
    assert seg.p_flags & PF_X, "the hypercall page must be in an executable segment"


def test_notes_segment_is_also_loaded(image: Elf) -> None:
    """Spec 7.1: notes come from a PT_NOTE segment with p_offset != 0; ours also lies inside a PT_LOAD."""
    note_segments = [s for s in image.segments if s.p_type == PT_NOTE]
    assert len(note_segments) == 1
    note = note_segments[0]
    assert note.p_offset != 0
    assert any(
        s.p_offset <= note.p_offset and note.p_offset + note.p_filesz <= s.p_offset + s.p_filesz
        for s in image.loads()
    )


def test_reserved_pages_and_stacks_are_aligned_inside_the_image(image: Elf) -> None:
    """shared_info is mapped over a page-aligned .bss page (spec 7.2); vCPU stacks are size-aligned."""
    loads = image.loads()
    end = max(seg.p_vaddr + seg.p_memsz for seg in loads)
    shared_info_va = image.symbols["shared_info_page"]
    assert shared_info_va % PAGE_SIZE == 0
    assert VIRT_BASE <= shared_info_va and shared_info_va + PAGE_SIZE <= end
    stacks = image.symbols["cpu_stacks"]
    stack_size = 1 << 14
    assert stacks % stack_size == 0
    assert stacks + 32 * stack_size <= end


def test_second_make_is_a_no_op(built: dict[str, Elf]) -> None:
    images = [GUEST / "build" / f"test-pv64-{name}" for name in built]
    before = {p: p.stat().st_mtime_ns for p in images}
    question = _make("-q")
    assert question.returncode == 0, "make -q says something is out of date"
    again = _make()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "CC" not in again.stdout and "LD" not in again.stdout, again.stdout
    assert {p: p.stat().st_mtime_ns for p in images} == before


@pytest.fixture
def guest_copy(tmp_path: Path) -> Path:
    """A private copy of guest/ (without build/), so that touching sources leaves the tree alone."""
    dest = tmp_path / "guest"
    shutil.copytree(GUEST, dest, ignore=shutil.ignore_patterns("build"))
    result = _make("-j2", cwd=dest)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", f"the build warns:\n{result.stderr}"
    return dest


def _settle_mtimes(guest_dir: Path) -> None:
    """Sources 20 s old, build outputs 10 s old: a file touched now is newer than everything."""
    now = time.time_ns()
    for path in guest_dir.rglob("*"):
        if path.is_file():
            age = 10 if (guest_dir / "build") in path.parents else 20
            os.utime(path, ns=(now - age * 1_000_000_000,) * 2)


def _touch(path: Path) -> None:
    os.utime(path, ns=(time.time_ns(),) * 2)


def test_header_change_rebuilds_every_image_and_test_change_only_its_own(guest_copy: Path) -> None:
    images = {name: guest_copy / "build" / f"test-pv64-{name}" for name in _image_names(guest_copy)}
    _settle_mtimes(guest_copy)
    assert _make("-q", cwd=guest_copy).returncode == 0

    _touch(guest_copy / "include" / "xenpy-guest" / "layout.h")
    assert _make("-q", cwd=guest_copy).returncode != 0
    result = _make(cwd=guest_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in images:
        assert f"LD      build/test-pv64-{name}" in result.stdout, result.stdout

    _settle_mtimes(guest_copy)
    _touch(guest_copy / "tests" / "hello" / "main.c")
    result = _make(cwd=guest_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    linked = {line.split()[-1] for line in result.stdout.splitlines() if line.strip().startswith("LD")}
    assert linked == {"build/test-pv64-hello"}


def test_clean_removes_the_build_directory(guest_copy: Path) -> None:
    assert (guest_copy / "build").is_dir()
    result = _make("clean", cwd=guest_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (guest_copy / "build").exists()
