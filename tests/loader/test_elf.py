"""The strict ELF reader (``xenpy.loader.elf``): what it reads, and a clear LoaderError for bad input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenpy.loader.elf import (
    ELFCLASS64,
    EM_X86_64,
    PT_LOAD,
    PT_NOTE,
    SHT_NOTE,
    parse_elf,
    read_elf_header,
)
from xenpy.loader.errors import LoaderError
from xenpy.loader.xen_notes import read_pv_image

from . import elfgen
from .elfgen import EHDR64, PHDR64, SHDR64, Segment, standard_image, standard_spec


def _patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def _ehdr_field(name: str) -> int:
    """Byte offset of an Elf64_Ehdr field."""
    offsets = {
        "e_phoff": 32,
        "e_shoff": 40,
        "e_phentsize": 54,
        "e_phnum": 56,
        "e_shentsize": 58,
        "e_shnum": 60,
        "e_shstrndx": 62,
    }
    return offsets[name]


def test_reads_header_segments_sections_and_notes() -> None:
    data = standard_image()
    elf = parse_elf(data)
    assert elf.header.ei_class == ELFCLASS64
    assert elf.header.e_machine == EM_X86_64
    assert elf.header.e_entry == elfgen.ENTRY
    assert [ph.p_type for ph in elf.program_headers] == [PT_LOAD, PT_NOTE]
    load = elf.loadable_segments[0]
    assert (load.p_vaddr, load.p_paddr, load.p_filesz, load.p_memsz) == (
        elfgen.KSTART,
        0x2000,
        0x3000,
        0x4000,
    )
    assert load.flags_text == "RWX"
    assert elf.segment_data(load) == bytes(range(256)) * 48
    assert elf.paddr_range() == (0x2000, 0x6000)
    names = [sh.name for sh in elf.section_headers]
    assert names == ["", ".seg0", ".note.Xen", ".shstrtab"]
    note_section = elf.section_by_name(".note.Xen")
    assert note_section is not None and note_section.sh_type == SHT_NOTE
    notes = elf.notes_in_section(note_section)
    assert [n.owner for n in notes] == [b"Xen"] * 8
    assert notes[0].n_type == elfgen.N.XEN_ELFNOTE_GUEST_OS and notes[0].desc == b"xenpy-test\0"
    from_segment = elf.notes_in_segment(elf.program_headers[1])
    assert [(n.owner, n.n_type, n.desc, n.offset) for n in from_segment] == [
        (n.owner, n.n_type, n.desc, n.offset) for n in notes
    ]
    assert from_segment[0].where == "program header 1 (PT_NOTE)" and notes[0].where == "section 2 (.note.Xen)"


def test_elf32_x86_32_is_refused_as_not_supported_yet() -> None:
    with pytest.raises(LoaderError, match=r"^ELF32 x86_32 image: 32-bit PV guests are not supported yet$"):
        parse_elf(elfgen.make_elf32())
    assert read_elf_header(elfgen.make_elf32()).e_machine == elfgen.EM_386


def test_elf32_other_machine_is_refused() -> None:
    with pytest.raises(LoaderError, match=r"ELF32 image for EM_ARM .*x86-64 PV guests only"):
        parse_elf(elfgen.make_elf32(machine=40))


def test_truncated_elf32_header() -> None:
    with pytest.raises(
        LoaderError, match=r"truncated ELF header: the file is 40 bytes, an ELF32 header needs 52"
    ):
        parse_elf(elfgen.make_elf32()[:40])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"not an ELF file"),
        (b"#!/bin/sh\necho hello\n" * 4, r"not an ELF file"),
        (b"\x7fELF\x02\x01", r"truncated ELF header: the file is 6 bytes, e_ident needs 16"),
        (b"\x7fELF\x03\x01\x01" + bytes(57), r"unknown ELF class 3"),
        (b"\x7fELF\x02\x02\x01" + bytes(57), r"big-endian \(ELFDATA2MSB\) ELF file"),
    ],
)
def test_not_a_usable_elf_file(data: bytes, message: str) -> None:
    with pytest.raises(LoaderError, match=message):
        parse_elf(data)


def test_other_machine_is_refused() -> None:
    data = elfgen.make_elf(standard_spec(machine=183))
    with pytest.raises(
        LoaderError, match=r"ELF64 image for EM_AARCH64 \(arm64\): xenpy runs x86-64 PV guests only"
    ):
        parse_elf(data)


def test_program_header_table_past_end() -> None:
    data = _patch(standard_image(), _ehdr_field("e_phnum"), "<H", 400)
    with pytest.raises(
        LoaderError,
        match=r"program header table extends past the end of the file \(offset 0x40, "
        r"400 entries of 56 bytes",
    ):
        parse_elf(data)


def test_program_header_entry_size_must_be_elf64() -> None:
    data = _patch(standard_image(), _ehdr_field("e_phentsize"), "<H", 32)
    with pytest.raises(
        LoaderError, match=r"program header entries are 32 bytes \(e_phentsize\), an ELF64 entry is 56"
    ):
        parse_elf(data)


def test_segment_past_end_names_the_header() -> None:
    data = standard_image()
    phdr1 = EHDR64.size + PHDR64.size  # the PT_NOTE header
    data = _patch(data, phdr1 + 32, "<Q", 0x100000)  # p_filesz
    with pytest.raises(
        LoaderError,
        match=r"^program header 1 \(PT_NOTE\) extends past the end of the file \(offset "
        r"0x[0-9a-f]+, p_filesz 0x100000, file size 0x[0-9a-f]+\)$",
    ):
        parse_elf(data)


def test_load_segment_filesz_above_memsz() -> None:
    data = elfgen.make_elf(
        standard_spec(segments=[Segment(elfgen.KSTART, bytes(64), memsz=16, paddr=0x2000)])
    )
    with pytest.raises(
        LoaderError, match=r"program header 0 \(PT_LOAD\): p_filesz 0x40 is larger than p_memsz 0x10"
    ):
        parse_elf(data)


def test_load_segment_address_overflow() -> None:
    spec = standard_spec(segments=[Segment(0xFFFFFFFFFFFFF000, bytes(16), memsz=0x2000, paddr=0x2000)])
    with pytest.raises(LoaderError, match=r"p_vaddr 0xfffffffffffff000 \+ p_memsz 0x2000 overflows 64 bits"):
        parse_elf(elfgen.make_elf(spec))


def test_section_header_table_past_end() -> None:
    data = _patch(standard_image(), _ehdr_field("e_shnum"), "<H", 50)
    with pytest.raises(LoaderError, match=r"section header table extends past the end of the file"):
        parse_elf(data)


def test_section_past_end() -> None:
    data = standard_image()
    shoff = struct.unpack_from("<Q", data, _ehdr_field("e_shoff"))[0]
    data = _patch(data, shoff + 2 * SHDR64.size + 32, "<Q", 0x7FFFFF)  # section 2's sh_size
    with pytest.raises(LoaderError, match=r"^section 2 \(SHT_NOTE\) extends past the end of the file"):
        parse_elf(data)


def test_bad_section_name_table_index() -> None:
    data = _patch(standard_image(), _ehdr_field("e_shstrndx"), "<H", 9)
    with pytest.raises(LoaderError, match=r"e_shstrndx 9 is not a section \(e_shnum 4\)"):
        parse_elf(data)


def test_section_name_outside_the_name_table() -> None:
    data = standard_image()
    shoff = struct.unpack_from("<Q", data, _ehdr_field("e_shoff"))[0]
    data = _patch(data, shoff + SHDR64.size, "<I", 0x5000)  # section 1's sh_name
    with pytest.raises(LoaderError, match=r"section 1 name offset 0x5000 is outside the section-name table"):
        parse_elf(data)


def test_note_running_past_its_segment() -> None:
    notes = elfgen.note(elfgen.N.XEN_ELFNOTE_LOADER, "generic")
    bad = bytearray(notes)
    struct.pack_into("<I", bad, 4, 0x400)  # descsz
    data = elfgen.make_elf(standard_spec(notes=bytes(bad), note_section=False))
    with pytest.raises(
        LoaderError,
        match=r"program header 1 \(PT_NOTE\): note at offset 0x[0-9a-f]+ \(namesz 0x4, "
        r"descsz 0x400\) extends past the end of its segment",
    ):
        read_pv_image(data)


def test_note_header_cut_short() -> None:
    data = elfgen.make_elf(standard_spec(notes=elfgen.standard_notes() + b"\0" * 8, note_section=False))
    with pytest.raises(
        LoaderError,
        match=r"note at offset 0x[0-9a-f]+ is truncated \(8 bytes left, a note header "
        r"needs 12\)",
    ):
        read_pv_image(data)


_IMAGES = {
    "pt_note": standard_image(),
    "sht_note_only": standard_image(note_segment=False),
    "legacy": elfgen.make_elf(
        standard_spec(
            notes=b"",
            sections=[
                elfgen.Section(
                    "__xen_guest",
                    elfgen.SHT_PROGBITS,
                    b"GUEST_OS=linux,XEN_VER=xen-3.0,VIRT_BASE=0xffffffff80000000,"
                    b"ELF_PADDR_OFFSET=0xffffffff80000000,HYPERCALL_PAGE=0x3\0",
                )
            ],
            segments=[Segment(elfgen.KSTART, bytes(0x3000), memsz=0x4000)],
        )
    ),
}


@pytest.mark.parametrize("name", sorted(_IMAGES))
def test_whole_test_images_parse(name: str) -> None:
    """The images the truncation property cuts are themselves valid PV images."""
    assert read_pv_image(_IMAGES[name]).guest_type == "xen-3.0-x86_64"


@pytest.mark.parametrize("name", sorted(_IMAGES))
@settings(max_examples=150, deadline=None)
@given(fraction=st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_any_truncation_is_a_loader_error(name: str, fraction: float) -> None:
    """Property: cutting a valid image anywhere gives LoaderError, never another exception."""
    data = _IMAGES[name]
    cut = int(len(data) * fraction)
    with pytest.raises(LoaderError):
        read_pv_image(data[:cut])


@pytest.mark.parametrize("cut", [0, 3, 15, 16, 63, 64, 100, 0x40 + 2 * 56 - 1])
def test_truncation_at_structure_boundaries(cut: int) -> None:
    with pytest.raises(LoaderError):
        read_pv_image(standard_image()[:cut])


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0, max_value=len(_IMAGES["pt_note"]) - 1), value=st.integers(0, 255))
def test_corrupting_any_byte_never_raises_anything_but_loader_error(position: int, value: int) -> None:
    """Property: one corrupted byte anywhere either still parses or gives LoaderError."""
    data = bytearray(_IMAGES["pt_note"])
    data[position] = value
    try:
        read_pv_image(bytes(data))
    except LoaderError:
        pass
