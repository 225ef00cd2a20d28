"""Build small ELF files for the loader tests with ``struct`` (no compiler).

File layout: ELF header, program headers, segment data, the note blob, extra section data, the section-name
table, and the section header table LAST, so that cutting any byte off the end breaks a structure the reader
must check.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from xenpy.abi.elfnote import XEN_ELFNOTE

PT_LOAD, PT_NOTE = 1, 4
PF_X, PF_W, PF_R = 1, 2, 4
SHT_PROGBITS, SHT_STRTAB, SHT_NOTE, SHT_NOBITS, SHT_SYMTAB = 1, 3, 7, 8, 2
EM_386, EM_X86_64 = 3, 62

EHDR64 = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR64 = struct.Struct("<IIQQQQQQ")
SHDR64 = struct.Struct("<IIQQQQIIQQ")
EHDR32 = struct.Struct("<16sHHIIIIIHHHHHH")

N = XEN_ELFNOTE


def note(n_type: int, desc: bytes | int | str, *, owner: bytes = b"Xen", numeric_size: int = 8) -> bytes:
    """One note: an int is a little-endian number of ``numeric_size`` bytes, a str is NUL-terminated."""
    if isinstance(desc, int):
        desc = desc.to_bytes(numeric_size, "little")
    elif isinstance(desc, str):
        desc = desc.encode() + b"\0"
    name = owner + b"\0"
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(desc), n_type) + pad(name) + pad(desc)


@dataclass
class Segment:
    """A PT_LOAD segment: ``data`` at ``vaddr`` (``paddr`` defaults to ``vaddr``), ``memsz`` >= len(data)."""

    vaddr: int
    data: bytes
    memsz: int | None = None
    paddr: int | None = None
    flags: int = PF_R | PF_W | PF_X


@dataclass
class Section:
    """An extra section with its bytes."""

    name: str
    sh_type: int
    data: bytes
    link: int = 0


@dataclass
class ElfSpec:
    """What :func:`make_elf` writes."""

    segments: list[Segment]
    entry: int
    notes: bytes = b""
    note_segment: bool = True
    note_section: bool = True
    sections: list[Section] = field(default_factory=list)
    machine: int = EM_X86_64


def make_elf(spec: ElfSpec) -> bytes:
    """An ELF64 little-endian image as described by ``spec``."""
    nr_phdrs = len(spec.segments) + (1 if spec.notes and spec.note_segment else 0)
    offset = EHDR64.size + nr_phdrs * PHDR64.size
    body = bytearray()

    def place(data: bytes, align: int = 16) -> int:
        nonlocal body
        start = offset + len(body)
        pad = -start % align
        body += bytes(pad) + data
        return start + pad

    phdrs = []
    sections: list[tuple[str, int, int, int, int]] = []  # name, type, offset, size, link
    for i, seg in enumerate(spec.segments):
        at = place(seg.data)
        memsz = len(seg.data) if seg.memsz is None else seg.memsz
        paddr = seg.vaddr if seg.paddr is None else seg.paddr
        phdrs.append(PHDR64.pack(PT_LOAD, seg.flags, at, seg.vaddr, paddr, len(seg.data), memsz, 0x1000))
        sections.append(
            (
                f".seg{i}",
                SHT_PROGBITS if seg.data else SHT_NOBITS,
                at,
                memsz if not seg.data else len(seg.data),
                0,
            )
        )
    if spec.notes:
        at = place(spec.notes, 4)
        if spec.note_segment:
            phdrs.append(PHDR64.pack(PT_NOTE, PF_R, at, 0, 0, len(spec.notes), len(spec.notes), 4))
        if spec.note_section:
            sections.append((".note.Xen", SHT_NOTE, at, len(spec.notes), 0))
    for extra in spec.sections:
        at = place(extra.data, 1)
        sections.append((extra.name, extra.sh_type, at, len(extra.data), extra.link))

    names = bytearray(b"\0")
    name_offsets = []
    for name, *_ in [*sections, (".shstrtab", 0, 0, 0, 0)]:
        name_offsets.append(len(names))
        names += name.encode() + b"\0"
    strtab_at = place(bytes(names), 1)
    shdr_at = place(b"", 8)
    shdrs = [SHDR64.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)]
    for (_name, sh_type, at, size, link), name_off in zip(sections, name_offsets, strict=False):
        shdrs.append(SHDR64.pack(name_off, sh_type, 0, 0, at, size, link, 0, 1, 0))
    shdrs.append(SHDR64.pack(name_offsets[-1], SHT_STRTAB, 0, 0, strtab_at, len(names), 0, 0, 1, 0))
    body += b"".join(shdrs)

    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = EHDR64.pack(
        ident,
        2,
        spec.machine,
        1,
        spec.entry,
        EHDR64.size if phdrs else 0,
        shdr_at,
        0,
        EHDR64.size,
        PHDR64.size,
        len(phdrs),
        SHDR64.size,
        len(shdrs),
        len(shdrs) - 1,
    )
    return ehdr + b"".join(phdrs) + bytes(body)


def make_elf32(machine: int = EM_386) -> bytes:
    """A minimal ELF32 little-endian header (an x86_32 kernel's, by default)."""
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
    return EHDR32.pack(ident, 2, machine, 1, 0xC0100000, 0, 0, 0, EHDR32.size, 32, 0, 40, 0, 0)


# A typical small PV64 kernel: one 3-page segment at VIRT_BASE 0xffffffff80000000 (p_paddr from 0x2000),
# entry at its start, a hypercall page in its second page.
VIRT_BASE = 0xFFFFFFFF80000000
KERNEL_PADDR = 0x2000
KSTART = VIRT_BASE + KERNEL_PADDR
ENTRY = KSTART + 0x10
HYPERCALL_PAGE = KSTART + 0x1000


def standard_notes(**override: bytes | int | str | None) -> bytes:
    """The notes of the typical kernel; ``NAME=value`` replaces one, ``NAME=None`` drops it."""
    values: dict[str, bytes | int | str | None] = {
        "GUEST_OS": "xenpy-test",
        "GUEST_VERSION": "1.0",
        "XEN_VERSION": "xen-3.0",
        "LOADER": "generic",
        "VIRT_BASE": VIRT_BASE,
        "ENTRY": ENTRY,
        "HYPERCALL_PAGE": HYPERCALL_PAGE,
        "FEATURES": "writable_page_tables|!writable_descriptor_tables",
    }
    values.update(override)
    return b"".join(note(N[f"XEN_ELFNOTE_{k}"], v) for k, v in values.items() if v is not None)


def standard_spec(**override: object) -> ElfSpec:
    """An :class:`ElfSpec` for the typical kernel (3 pages of data + 1 page of bss)."""
    spec = ElfSpec(
        segments=[Segment(KSTART, bytes(range(256)) * 48, memsz=0x4000, paddr=KERNEL_PADDR)],
        entry=ENTRY,
        notes=standard_notes(),
    )
    for key, value in override.items():
        setattr(spec, key, value)
    return spec


def standard_image(**override: object) -> bytes:
    """The bytes of :func:`standard_spec`."""
    return make_elf(standard_spec(**override))


TINY_VIRT_BASE = 0x400000


def tiny_kernel(code: bytes) -> bytes:
    """A PV64 kernel at 0x400000 whose entry point is ``code`` (one page; no hypercall page)."""
    notes = b"".join([
        note(N.XEN_ELFNOTE_XEN_VERSION, "xen-3.0"),
        note(N.XEN_ELFNOTE_LOADER, "generic"),
        note(N.XEN_ELFNOTE_VIRT_BASE, TINY_VIRT_BASE),
        note(N.XEN_ELFNOTE_PADDR_OFFSET, TINY_VIRT_BASE),
        note(N.XEN_ELFNOTE_ENTRY, TINY_VIRT_BASE),
    ])
    segment = Segment(TINY_VIRT_BASE, code.ljust(4096, b"\x90"))
    return make_elf(ElfSpec(segments=[segment], entry=TINY_VIRT_BASE, notes=notes))


def wait_for_input_kernel(memory_mib: int) -> bytes:
    """A tiny kernel that spins until its console ring's ``in_prod`` moves, then executes ``ud2``:
    ``mov rax, &in_prod; 1: mov ecx, [rax]; test ecx, ecx; jz 1b; ud2`` (for a domain of ``memory_mib``)."""
    from xenpy.abi import x86_64
    from xenpy.loader.layout import compute_pv64_layout
    from xenpy.loader.xen_notes import read_pv_image

    layout = compute_pv64_layout(read_pv_image(tiny_kernel(b"")), memory_mib * 256)
    assert layout.console.gva is not None
    in_prod = layout.console.gva + x86_64.xencons_interface.offset_of("in_prod")
    return tiny_kernel(b"\x48\xb8" + in_prod.to_bytes(8, "little") + bytes.fromhex("8b08" "85c9" "74fa" "0f0b"))
