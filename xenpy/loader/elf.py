"""A small, strict ELF reader for Xen PV guest kernels.

Reads what Xen's ``xen/common/libelf`` reads from a PV kernel image (``elf_init``, ``elf_parse_binary``, the
note and section accessors of ``libelf-tools.c``): the file header, the program headers (PT_LOAD, PT_NOTE),
the section headers with their names (SHT_NOTE, the legacy ``__xen_guest`` section) and the notes inside note
segments and sections. ELF64 little-endian x86-64 images are read fully; an ELF32 header is read far enough to
recognise an x86_32 image and refuse it (32-bit PV guests are not supported yet).

Invariants:

* Every structure read lies inside the file: the header, the program and section header tables, the file part
  of every program header, every section that occupies file space, every section name and every note. Anything
  else raises :class:`~xenpy.loader.errors.LoaderError` with one line saying what is wrong and where;
  malformed input never raises ``IndexError``, ``struct.error`` or ``UnicodeDecodeError``.
* The reader is stricter than libelf about structure (libelf reads zeros past the end of a truncated image;
  this reader refuses it) but never about meaning: it does not reject an ``e_type``, ``e_version`` or segment
  layout that libelf would accept.
* Notes are 4-byte aligned in both classes, as libelf (``elf_note_next``) and Linux read them.
* Values are Python ints of the C field's width; nothing is signed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from xenpy.loader.errors import LoaderError

__all__ = [
    "ELFCLASS32",
    "ELFCLASS64",
    "EM_386",
    "EM_X86_64",
    "PF_R",
    "PF_W",
    "PF_X",
    "PT_LOAD",
    "PT_NOTE",
    "SHT_NOBITS",
    "SHT_NOTE",
    "SHT_STRTAB",
    "SHT_SYMTAB",
    "ElfHeader",
    "ElfImage",
    "ElfNote",
    "ProgramHeader",
    "SectionHeader",
    "machine_name",
    "parse_elf",
    "read_elf_header",
]

ELFMAG = b"\x7fELF"
EI_CLASS = 4
EI_DATA = 5
EI_VERSION = 6
EI_OSABI = 7
EI_NIDENT = 16

ELFCLASS32 = 1
ELFCLASS64 = 2
ELFDATA2LSB = 1
ELFDATA2MSB = 2

EM_386 = 3
EM_ARM = 40
EM_X86_64 = 62
EM_AARCH64 = 183

ET_NONE = 0
ET_REL = 1
ET_EXEC = 2
ET_DYN = 3
ET_CORE = 4

PT_NULL = 0
PT_LOAD = 1
PT_DYNAMIC = 2
PT_INTERP = 3
PT_NOTE = 4
PT_SHLIB = 5
PT_PHDR = 6
PT_TLS = 7
PT_GNU_EH_FRAME = 0x6474E550
PT_GNU_STACK = 0x6474E551
PT_GNU_RELRO = 0x6474E552
PT_GNU_PROPERTY = 0x6474E553

PF_X = 1
PF_W = 2
PF_R = 4

SHT_NULL = 0
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_RELA = 4
SHT_HASH = 5
SHT_DYNAMIC = 6
SHT_NOTE = 7
SHT_NOBITS = 8

SHN_UNDEF = 0
SHN_XINDEX = 0xFFFF

#: libelf's ``ELF_MAX_STRING_LENGTH``: longer strings are refused (``elf_strval`` returns NULL).
ELF_MAX_STRING_LENGTH = 4096

_U64 = (1 << 64) - 1

_EHDR64 = struct.Struct("<16sHHIQQQIHHHHHH")
_EHDR32 = struct.Struct("<16sHHIIIIIHHHHHH")
_PHDR64 = struct.Struct("<IIQQQQQQ")
_SHDR64 = struct.Struct("<IIQQQQIIQQ")
_NHDR = struct.Struct("<III")  # Elf32_Nhdr and Elf64_Nhdr are the same 12 bytes

_CLASS_NAMES = {ELFCLASS32: "ELF32", ELFCLASS64: "ELF64"}
_MACHINE_NAMES = {
    EM_386: "EM_386 (x86_32)",
    EM_X86_64: "EM_X86_64 (x86_64)",
    EM_ARM: "EM_ARM (arm32)",
    EM_AARCH64: "EM_AARCH64 (arm64)",
}
_TYPE_NAMES = {ET_NONE: "ET_NONE", ET_REL: "ET_REL", ET_EXEC: "ET_EXEC", ET_DYN: "ET_DYN", ET_CORE: "ET_CORE"}
_PT_NAMES = {
    PT_NULL: "PT_NULL",
    PT_LOAD: "PT_LOAD",
    PT_DYNAMIC: "PT_DYNAMIC",
    PT_INTERP: "PT_INTERP",
    PT_NOTE: "PT_NOTE",
    PT_SHLIB: "PT_SHLIB",
    PT_PHDR: "PT_PHDR",
    PT_TLS: "PT_TLS",
    PT_GNU_EH_FRAME: "PT_GNU_EH_FRAME",
    PT_GNU_STACK: "PT_GNU_STACK",
    PT_GNU_RELRO: "PT_GNU_RELRO",
    PT_GNU_PROPERTY: "PT_GNU_PROPERTY",
}
_SHT_NAMES = {
    SHT_NULL: "SHT_NULL",
    SHT_PROGBITS: "SHT_PROGBITS",
    SHT_SYMTAB: "SHT_SYMTAB",
    SHT_STRTAB: "SHT_STRTAB",
    SHT_RELA: "SHT_RELA",
    SHT_HASH: "SHT_HASH",
    SHT_DYNAMIC: "SHT_DYNAMIC",
    SHT_NOTE: "SHT_NOTE",
    SHT_NOBITS: "SHT_NOBITS",
}


def machine_name(e_machine: int) -> str:
    """A readable name for ``e_machine``, e.g. ``"EM_X86_64 (x86_64)"``."""
    return _MACHINE_NAMES.get(e_machine, f"e_machine {e_machine}")


def _align4(n: int) -> int:
    return (n + 3) & ~3


# --------------------------------------------------------------------------------------------- structures


@dataclass(frozen=True)
class ElfHeader:
    """The ELF file header (``Elf64_Ehdr``; an ``Elf32_Ehdr`` is widened into the same fields).

    Attributes:
        ei_class: ``ELFCLASS32`` or ``ELFCLASS64``.
        ei_data: data encoding (``ELFDATA2LSB`` for every image this reader accepts).
        ei_osabi: OS ABI byte of ``e_ident``.
        e_type .. e_shstrndx: the header fields, named as in ``<elf.h>``.
    """

    ei_class: int
    ei_data: int
    ei_osabi: int
    e_type: int
    e_machine: int
    e_version: int
    e_entry: int
    e_phoff: int
    e_shoff: int
    e_flags: int
    e_ehsize: int
    e_phentsize: int
    e_phnum: int
    e_shentsize: int
    e_shnum: int
    e_shstrndx: int

    @property
    def class_name(self) -> str:
        """``"ELF32"`` or ``"ELF64"``."""
        return _CLASS_NAMES.get(self.ei_class, f"ELFCLASS {self.ei_class}")

    @property
    def machine_name(self) -> str:
        """Readable ``e_machine``, e.g. ``"EM_X86_64 (x86_64)"``."""
        return machine_name(self.e_machine)

    @property
    def type_name(self) -> str:
        """Readable ``e_type``, e.g. ``"ET_EXEC"``."""
        return _TYPE_NAMES.get(self.e_type, f"e_type {self.e_type:#x}")


@dataclass(frozen=True)
class ProgramHeader:
    """One ``Elf64_Phdr``, with its index in the program header table."""

    index: int
    p_type: int
    p_flags: int
    p_offset: int
    p_vaddr: int
    p_paddr: int
    p_filesz: int
    p_memsz: int
    p_align: int

    @property
    def type_name(self) -> str:
        """Readable ``p_type``, e.g. ``"PT_LOAD"``."""
        return _PT_NAMES.get(self.p_type, f"p_type {self.p_type:#x}")

    @property
    def is_loadable(self) -> bool:
        """libelf's ``elf_phdr_is_loadable``: PT_LOAD with at least one of PF_R, PF_W, PF_X."""
        return self.p_type == PT_LOAD and bool(self.p_flags & (PF_R | PF_W | PF_X))

    @property
    def flags_text(self) -> str:
        """``p_flags`` as ``"RWX"`` letters (``-`` for a clear bit)."""
        return "".join(c if self.p_flags & bit else "-" for c, bit in (("R", PF_R), ("W", PF_W), ("X", PF_X)))


@dataclass(frozen=True)
class SectionHeader:
    """One ``Elf64_Shdr``, with its index and its name from the section-name table (``""`` if none)."""

    index: int
    name: str
    sh_name: int
    sh_type: int
    sh_flags: int
    sh_addr: int
    sh_offset: int
    sh_size: int
    sh_link: int
    sh_info: int
    sh_addralign: int
    sh_entsize: int

    @property
    def type_name(self) -> str:
        """Readable ``sh_type``, e.g. ``"SHT_NOTE"``."""
        return _SHT_NAMES.get(self.sh_type, f"sh_type {self.sh_type:#x}")

    @property
    def occupies_file(self) -> bool:
        """True if the section's bytes are in the file (not SHT_NULL or SHT_NOBITS)."""
        return self.sh_type not in (SHT_NULL, SHT_NOBITS)


@dataclass(frozen=True)
class ElfNote:
    """One note of a note segment or section.

    Attributes:
        owner: the note's name up to its first NUL (e.g. ``b"Xen"``, ``b"GNU"``).
        n_type: note type.
        desc: the descriptor bytes (``descsz`` of them).
        offset: file offset of the note header.
        desc_offset: file offset of the descriptor.
        where: the containing segment or section, e.g. ``"program header 2 (PT_NOTE)"``.
    """

    owner: bytes
    n_type: int
    desc: bytes
    offset: int
    desc_offset: int
    where: str


# --------------------------------------------------------------------------------------------- reading


def read_elf_header(data: bytes) -> ElfHeader:
    """Read and check the ELF file header of either class.

    Checks the magic, the class and the data encoding (little-endian only), and that the whole header is in
    the file. The machine is not checked here.

    Raises:
        LoaderError: not an ELF file, unknown class or encoding, truncated header.
    """
    if len(data) < EI_NIDENT or data[:4] != ELFMAG:
        if len(data) >= 4 and data[:4] == ELFMAG:
            raise LoaderError(
                f"truncated ELF header: the file is {len(data)} bytes, e_ident needs {EI_NIDENT}"
            )
        raise LoaderError("not an ELF file (no \\x7fELF magic at offset 0)")
    ei_class = data[EI_CLASS]
    ei_data = data[EI_DATA]
    if ei_class not in (ELFCLASS32, ELFCLASS64):
        raise LoaderError(
            f"unknown ELF class {ei_class} in e_ident[EI_CLASS] (expected 1 = ELF32 or 2 = ELF64)"
        )
    if ei_data != ELFDATA2LSB:
        what = "big-endian (ELFDATA2MSB)" if ei_data == ELFDATA2MSB else f"unknown data encoding {ei_data}"
        raise LoaderError(f"{what} ELF file: x86 PV guests are little-endian (ELFDATA2LSB)")
    layout = _EHDR64 if ei_class == ELFCLASS64 else _EHDR32
    if len(data) < layout.size:
        raise LoaderError(
            f"truncated ELF header: the file is {len(data)} bytes, an {_CLASS_NAMES[ei_class]} header needs "
            f"{layout.size}"
        )
    ident, *fields = layout.unpack_from(data, 0)
    return ElfHeader(ei_class, ei_data, ident[EI_OSABI], *fields)


@dataclass(frozen=True)
class ElfImage:
    """A parsed ELF64 x86-64 image: the file bytes, its header, program headers and section headers.

    Build it with :func:`parse_elf`, which checks every structure is inside the file.
    """

    data: bytes
    header: ElfHeader
    program_headers: tuple[ProgramHeader, ...]
    section_headers: tuple[SectionHeader, ...]

    @property
    def file_size(self) -> int:
        """Size of the image file in bytes."""
        return len(self.data)

    @property
    def loadable_segments(self) -> tuple[ProgramHeader, ...]:
        """The program headers libelf loads (``elf_phdr_is_loadable``), in table order."""
        return tuple(ph for ph in self.program_headers if ph.is_loadable)

    def paddr_range(self) -> tuple[int, int]:
        """libelf's ``elf_parse_binary``: ``(pstart, pend)``, the lowest ``p_paddr`` and the highest
        ``p_paddr + p_memsz`` over the loadable segments.

        Raises:
            LoaderError: the image has no loadable segment.
        """
        loadable = self.loadable_segments
        if not loadable:
            raise LoaderError("no loadable segment (PT_LOAD with R, W or X set): nothing to load")
        return min(ph.p_paddr for ph in loadable), max(ph.p_paddr + ph.p_memsz for ph in loadable)

    def segment_data(self, ph: ProgramHeader) -> bytes:
        """The ``p_filesz`` bytes of a segment's file image."""
        return self.data[ph.p_offset : ph.p_offset + ph.p_filesz]

    def section_data(self, sh: SectionHeader) -> bytes:
        """The bytes of a section (empty for SHT_NOBITS and SHT_NULL)."""
        if not sh.occupies_file:
            return b""
        return self.data[sh.sh_offset : sh.sh_offset + sh.sh_size]

    def section_by_name(self, name: str) -> SectionHeader | None:
        """The first section called ``name`` (libelf's ``elf_shdr_by_name``), or None."""
        for sh in self.section_headers:
            if sh.name == name:
                return sh
        return None

    def read_cstring(self, offset: int) -> bytes | None:
        """libelf's ``elf_strval``: the NUL-terminated string at file ``offset`` (without the NUL).

        Returns None, as libelf does, when no NUL comes before the end of the file or the string is longer
        than ``ELF_MAX_STRING_LENGTH``.
        """
        if not 0 <= offset < len(self.data):
            return None
        end = self.data.find(b"\0", offset, offset + ELF_MAX_STRING_LENGTH + 1)
        return None if end < 0 else self.data[offset:end]

    def notes_in_segment(self, ph: ProgramHeader) -> tuple[ElfNote, ...]:
        """The notes of a segment's file image (normally a PT_NOTE)."""
        return _parse_notes(
            self.data, ph.p_offset, ph.p_filesz, f"program header {ph.index} ({ph.type_name})"
        )

    def notes_in_section(self, sh: SectionHeader) -> tuple[ElfNote, ...]:
        """The notes of a section (normally a SHT_NOTE); none for a section without file bytes."""
        if not sh.occupies_file:
            return ()
        return _parse_notes(
            self.data, sh.sh_offset, sh.sh_size, f"section {sh.index} ({sh.name or 'unnamed'})"
        )


def parse_elf(data: bytes) -> ElfImage:
    """Parse an ELF64 little-endian x86-64 image, checking that every structure is inside the file.

    Args:
        data: the whole image file.

    Returns:
        The parsed image.

    Raises:
        LoaderError: not ELF; ELF32 (an x86_32 image: "32-bit PV guests are not supported yet"); another
            machine; a header table, segment, section, section name or overflowing address that is malformed
            or runs past the end of the file. The message says what and where.
    """
    data = bytes(data)
    header = read_elf_header(data)
    if header.ei_class == ELFCLASS32:
        if header.e_machine == EM_386:
            raise LoaderError("ELF32 x86_32 image: 32-bit PV guests are not supported yet")
        raise LoaderError(f"ELF32 image for {header.machine_name}: xenpy runs x86-64 PV guests only")
    if header.e_machine != EM_X86_64:
        raise LoaderError(f"ELF64 image for {header.machine_name}: xenpy runs x86-64 PV guests only")
    program_headers = _read_program_headers(data, header)
    section_headers = _read_section_headers(data, header)
    return ElfImage(data, header, program_headers, section_headers)


def _check_table(
    data: bytes, what: str, field: str, offset: int, entsize: int, count: int, expected: int
) -> None:
    if count == 0:
        return
    if entsize != expected:
        raise LoaderError(
            f"{what} entries are {entsize} bytes (e_{field}entsize), an ELF64 entry is {expected}"
        )
    end = offset + entsize * count
    if end > len(data):
        raise LoaderError(
            f"{what} table extends past the end of the file (offset {offset:#x}, {count} entries of "
            f"{entsize} bytes, end {end:#x}, file size {len(data):#x})"
        )


def _read_program_headers(data: bytes, header: ElfHeader) -> tuple[ProgramHeader, ...]:
    count = header.e_phnum
    _check_table(data, "program header", "ph", header.e_phoff, header.e_phentsize, count, _PHDR64.size)
    headers = []
    for index in range(count):
        ph = ProgramHeader(index, *_PHDR64.unpack_from(data, header.e_phoff + index * _PHDR64.size))
        where = f"program header {index} ({ph.type_name})"
        if ph.p_filesz and ph.p_offset + ph.p_filesz > len(data):
            raise LoaderError(
                f"{where} extends past the end of the file (offset {ph.p_offset:#x}, "
                f"p_filesz {ph.p_filesz:#x}, file size {len(data):#x})"
            )
        if ph.p_type == PT_LOAD:
            if ph.p_filesz > ph.p_memsz:
                raise LoaderError(
                    f"{where}: p_filesz {ph.p_filesz:#x} is larger than p_memsz {ph.p_memsz:#x}"
                )
            for field, addr in (("p_paddr", ph.p_paddr), ("p_vaddr", ph.p_vaddr)):
                if addr + ph.p_memsz > _U64 + 1:
                    raise LoaderError(
                        f"{where}: {field} {addr:#x} + p_memsz {ph.p_memsz:#x} overflows 64 bits"
                    )
        headers.append(ph)
    return tuple(headers)


def _read_section_headers(data: bytes, header: ElfHeader) -> tuple[SectionHeader, ...]:
    count = header.e_shnum
    _check_table(data, "section header", "sh", header.e_shoff, header.e_shentsize, count, _SHDR64.size)
    raw = [_SHDR64.unpack_from(data, header.e_shoff + i * _SHDR64.size) for i in range(count)]

    for index, fields in enumerate(raw):
        _name, sh_type, _flags, _addr, sh_offset, sh_size = fields[:6]
        kind = _SHT_NAMES.get(sh_type, f"sh_type {sh_type:#x}")
        if sh_type not in (SHT_NULL, SHT_NOBITS) and sh_offset + sh_size > len(data):
            raise LoaderError(
                f"section {index} ({kind}) extends past the end of the file (offset {sh_offset:#x}, "
                f"sh_size {sh_size:#x}, file size {len(data):#x})"
            )

    names_index = header.e_shstrndx
    if names_index == SHN_XINDEX and count:
        names_index = raw[0][6]  # the real index is in section 0's sh_link
    names: bytes | None = None  # the section-name table, if there is one
    if names_index != SHN_UNDEF and count:
        if names_index >= count:
            raise LoaderError(f"e_shstrndx {header.e_shstrndx} is not a section (e_shnum {count})")
        table = raw[names_index]
        if table[1] in (SHT_NULL, SHT_NOBITS):
            raise LoaderError(f"section-name table (section {names_index}) has no bytes in the file")
        names = data[table[4] : table[4] + table[5]]

    headers = []
    for index, fields in enumerate(raw):
        name = ""
        if names is not None and (index or fields[0]):
            name = _section_name(names, fields[0], index, names_index)
        headers.append(SectionHeader(index, name, *fields))
    return tuple(headers)


def _section_name(names: bytes, sh_name: int, index: int, names_index: int) -> str:
    if sh_name >= len(names):
        raise LoaderError(
            f"section {index} name offset {sh_name:#x} is outside the section-name table "
            f"(section {names_index}, {len(names):#x} bytes)"
        )
    end = names.find(b"\0", sh_name)
    if end < 0:
        raise LoaderError(
            f"section {index} name at offset {sh_name:#x} of the section-name table is not terminated"
        )
    return names[sh_name:end].decode("latin-1")


def _parse_notes(data: bytes, offset: int, size: int, where: str) -> tuple[ElfNote, ...]:
    end = offset + size
    pos = offset
    notes = []
    while pos < end:
        if end - pos < _NHDR.size:
            raise LoaderError(
                f"{where}: note at offset {pos:#x} is truncated ({end - pos} bytes left, "
                "a note header needs 12)"
            )
        namesz, descsz, n_type = _NHDR.unpack_from(data, pos)
        name_offset = pos + _NHDR.size
        desc_offset = name_offset + _align4(namesz)
        if desc_offset + descsz > end:
            raise LoaderError(
                f"{where}: note at offset {pos:#x} (namesz {namesz:#x}, descsz {descsz:#x}) extends past "
                f"the end of its {'segment' if where.startswith('program') else 'section'} at {end:#x}"
            )
        owner = data[name_offset : name_offset + namesz].split(b"\0", 1)[0]
        desc = data[desc_offset : desc_offset + descsz]
        notes.append(ElfNote(owner, n_type, desc, pos, desc_offset, where))
        pos = desc_offset + _align4(descsz)
    return tuple(notes)
