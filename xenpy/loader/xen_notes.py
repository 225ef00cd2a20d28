"""Xen ELF notes and the PV kernel's addresses, as Xen's libelf reads them (spec 7.1).

Implements ``xen/common/libelf/libelf-dominfo.c`` for a PV guest (``hvm == false``): ``elf_xen_parse`` (where
the notes come from), ``elf_xen_parse_note``, ``elf_xen_parse_features``, ``elf_xen_parse_guest_info`` (the
legacy ``__xen_guest`` string), ``elf_xen_note_check`` and ``elf_xen_addr_calc_check``; then the domU
builder's own checks (``tools/libs/guest/xg_dom_elfloader.c:xc_dom_parse_elf_kernel`` and
``xg_dom_x86.c:bootearly``) and the guest type (``xc_dom_guest_type``).

Invariants:

* Notes come from PT_NOTE segments with ``p_offset != 0``; only if those hold no note named ``"Xen"``, from
  SHT_NOTE sections (index 1 upwards); only if those hold none either, from the ``__xen_guest`` section
  string.
* Only notes whose owner is exactly ``"Xen"`` are read; unknown types are kept in the note list and otherwise
  ignored. A later note of a type overrides an earlier one; FEATURES and SUPPORTED_FEATURES accumulate.
* A numeric note is a little-endian integer of 1, 2, 4 or 8 bytes; any other size reads as 0 (as in libelf).
* A value equal to libelf's ``UNSET_ADDR`` (``2**64 - 1``) counts as unset, as it does in Xen.
* The parsed strings LOADER, GUEST_OS, GUEST_VERSION and XEN_VERSION are kept as Xen keeps them in
  ``struct elf_dom_parms`` (at most 15 characters); the note list has the full strings.
* Strings are decoded as latin-1, so every byte maps to one character and prefix checks behave as on bytes.
* Every address is a 64-bit unsigned value and the arithmetic wraps modulo 2**64, as in C.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from xenpy.abi.elfnote import XEN_ELFNOTE
from xenpy.abi.features import XENFEAT
from xenpy.loader.bzimage import KernelImage, unpack_kernel
from xenpy.loader.elf import EM_X86_64, PT_NOTE, SHT_NOTE, SHT_SYMTAB, ElfImage, ElfNote, parse_elf
from xenpy.loader.errors import LoaderError

__all__ = [
    "KNOWN_FEATURES",
    "UNSET_ADDR",
    "XenImageInfo",
    "XenNote",
    "check_pv_domu",
    "elf_xen_parse",
    "parse_features",
    "read_pv_image",
    "read_pv_kernel",
]

#: libelf's ``UNSET_ADDR``: the value meaning "not given".
UNSET_ADDR = (1 << 64) - 1
#: libelf's ``UNSET_ADDR32`` (``phys_entry``).
UNSET_ADDR32 = (1 << 32) - 1
_U64 = UNSET_ADDR

#: Feature names ``elf_xen_parse_features`` knows (``elf_xen_feature_names``), by XENFEAT bit.
KNOWN_FEATURES: dict[int, str] = {
    XENFEAT.XENFEAT_writable_page_tables: "writable_page_tables",
    XENFEAT.XENFEAT_writable_descriptor_tables: "writable_descriptor_tables",
    XENFEAT.XENFEAT_auto_translated_physmap: "auto_translated_physmap",
    XENFEAT.XENFEAT_supervisor_mode_kernel: "supervisor_mode_kernel",
    XENFEAT.XENFEAT_pae_pgdir_above_4gb: "pae_pgdir_above_4gb",
    XENFEAT.XENFEAT_hvm_callback_vector: "hvm_callback_vector",
    XENFEAT.XENFEAT_dom0: "dom0",
}
_FEATURE_BITS = {name: bit for bit, name in KNOWN_FEATURES.items()}
_FEATURE_CHUNK = 63  # ``unsigned char feature[64]`` holds at most 63 characters

# Note kinds of ``elf_xen_parse_note``'s ``note_desc`` table.
NUMERIC = "numeric"
STRING = "string"
NAME = "name"
UNKNOWN = "unknown"
LEGACY = "legacy"

_N = XEN_ELFNOTE
_NOTE_KINDS: dict[int, str] = {
    _N.XEN_ELFNOTE_ENTRY: NUMERIC,
    _N.XEN_ELFNOTE_HYPERCALL_PAGE: NUMERIC,
    _N.XEN_ELFNOTE_VIRT_BASE: NUMERIC,
    _N.XEN_ELFNOTE_INIT_P2M: NUMERIC,
    _N.XEN_ELFNOTE_PADDR_OFFSET: NUMERIC,
    _N.XEN_ELFNOTE_HV_START_LOW: NUMERIC,
    _N.XEN_ELFNOTE_XEN_VERSION: STRING,
    _N.XEN_ELFNOTE_GUEST_OS: STRING,
    _N.XEN_ELFNOTE_GUEST_VERSION: STRING,
    _N.XEN_ELFNOTE_LOADER: STRING,
    _N.XEN_ELFNOTE_PAE_MODE: STRING,
    _N.XEN_ELFNOTE_FEATURES: STRING,
    _N.XEN_ELFNOTE_SUPPORTED_FEATURES: NUMERIC,
    _N.XEN_ELFNOTE_BSD_SYMTAB: STRING,
    _N.XEN_ELFNOTE_L1_MFN_VALID: NAME,
    _N.XEN_ELFNOTE_SUSPEND_CANCEL: NUMERIC,
    _N.XEN_ELFNOTE_MOD_START_PFN: NUMERIC,
    _N.XEN_ELFNOTE_PHYS32_ENTRY: NUMERIC,
    _N.XEN_ELFNOTE_PHYS32_RELOC: NAME,
}

# ``parms->pae`` values (``XEN_PAE_*`` in libelf.h).
XEN_PAE_NO = 0
XEN_PAE_YES = 1
XEN_PAE_EXTCR3 = 2
XEN_PAE_BIMODAL = 3
_PAE_NAMES = {
    XEN_PAE_NO: "no",
    XEN_PAE_YES: "yes",
    XEN_PAE_EXTCR3: "extended-cr3",
    XEN_PAE_BIMODAL: "bimodal",
}

#: Where the notes were found.
SOURCE_PT_NOTE = "PT_NOTE"
SOURCE_SHT_NOTE = "SHT_NOTE"
SOURCE_XEN_GUEST = "__xen_guest"

#: ``xc_dom_guest_type`` for EM_X86_64.
GUEST_TYPE_X86_64 = "xen-3.0-x86_64"


def _note_name(n_type: int) -> str:
    try:
        return XEN_ELFNOTE(n_type).name.removeprefix("XEN_ELFNOTE_")
    except ValueError:
        return f"type {n_type:#x}"


@dataclass(frozen=True)
class XenNote:
    """One Xen note as read, or one ``KEY=VALUE`` item of the legacy ``__xen_guest`` string.

    Attributes:
        n_type: the XEN_ELFNOTE_* type, or None for a legacy item.
        name: ``"ENTRY"``, ``"GUEST_OS"``, ... (or the legacy key).
        kind: ``"numeric"``, ``"string"``, ``"name"``, ``"unknown"`` (ignored type) or ``"legacy"``.
        value: the number (numeric), the string (string, legacy), or None (name-only, unknown, or a string
            note libelf could not read).
        desc: the raw descriptor bytes (empty for a legacy item).
    """

    n_type: int | None
    name: str
    kind: str
    value: int | str | None
    desc: bytes = b""

    @property
    def value_text(self) -> str:
        """The value as ``xenpy inspect`` prints it."""
        if self.value is None:
            return (
                "(present)" if self.kind == NAME else "(ignored)" if self.kind == UNKNOWN else "(unreadable)"
            )
        if isinstance(self.value, int):
            return f"{self.value:#x}"
        return repr(self.value)


@dataclass(frozen=True)
class XenImageInfo:
    """Everything Xen's libelf and the domU builder learn from a PV kernel (``struct elf_dom_parms``).

    Addresses are guest virtual addresses unless named otherwise; unset optional values are None.

    Attributes:
        elf: the parsed ELF image.
        note_source: ``"PT_NOTE"``, ``"SHT_NOTE"`` or ``"__xen_guest"``.
        notes: every Xen note (or legacy item) in the order read.
        guest_type: ``"xen-3.0-x86_64"``.
        loader, guest_os, guest_version, xen_version: the strings as Xen keeps them (15 characters at most).
        pae_mode: ``"no"``, ``"yes"``, ``"extended-cr3"`` or ``"bimodal"`` (meaningful for 32-bit guests).
        bsd_symtab: BSD_SYMTAB asked for the symbol table to be loaded.
        features_supported, features_required: XENFEAT bitmaps (``f_supported[0]``, ``f_required[0]``).
        virt_base: VIRT_BASE (0 by default).
        elf_paddr_offset: PADDR_OFFSET (default 0 with notes, ``virt_base`` with the legacy string).
        virt_offset: ``virt_base - elf_paddr_offset``.
        pstart, pend: lowest ``p_paddr`` and highest ``p_paddr + p_memsz`` of the loadable segments.
        virt_kstart, virt_kend: the kernel's virtual range, ``pstart/pend + virt_offset``.
        virt_entry: ENTRY, or ``e_entry``.
        virt_hypercall: HYPERCALL_PAGE (a VA; the legacy pfn already converted), or None.
        virt_hv_start_low: HV_START_LOW, or None.
        p2m_base: INIT_P2M, or None.
        unmapped_initrd: MOD_START_PFN was non-zero.
        phys_entry: PHYS32_ENTRY (PVH only), or None.
        phys32_reloc: the PHYS32_RELOC note is present (PVH only).
        l1_mfn_valid: the L1_MFN_VALID note is present.
    """

    elf: ElfImage
    note_source: str
    notes: tuple[XenNote, ...]
    guest_type: str
    loader: str
    guest_os: str
    guest_version: str
    xen_version: str
    pae_mode: str
    bsd_symtab: bool
    features_supported: int
    features_required: int
    virt_base: int
    elf_paddr_offset: int
    virt_offset: int
    pstart: int
    pend: int
    virt_kstart: int
    virt_kend: int
    virt_entry: int
    virt_hypercall: int | None
    virt_hv_start_low: int | None
    p2m_base: int | None
    unmapped_initrd: bool
    phys_entry: int | None
    phys32_reloc: bool
    l1_mfn_valid: bool

    @property
    def suspend_cancel(self) -> bool:
        """The SUSPEND_CANCEL note says SCHEDOP_shutdown(SHUTDOWN_suspend) may return 1 (resumed in place)."""
        return any(n.n_type == _N.XEN_ELFNOTE_SUSPEND_CANCEL and n.value for n in self.notes)

    def feature_supported(self, xenfeat: int) -> bool:
        """True if FEATURES/SUPPORTED_FEATURES name ``xenfeat`` (a XENFEAT_* bit)."""
        return bool(self.features_supported >> xenfeat & 1)

    def feature_required(self, xenfeat: int) -> bool:
        """True if FEATURES requires ``xenfeat`` (``!name``)."""
        return bool(self.features_required >> xenfeat & 1)

    @property
    def features_text(self) -> str:
        """Known features as ``"name|!required_name"`` (unknown supported bits as ``bitN``)."""
        parts = []
        for bit in range(32):
            if self.features_supported >> bit & 1:
                name = KNOWN_FEATURES.get(bit, f"bit{bit}")
                parts.append(("!" if self.features_required >> bit & 1 else "") + name)
        return "|".join(parts)


# --------------------------------------------------------------------------------------------- helpers


def parse_features(text: str) -> tuple[int, int, str | None]:
    """``elf_xen_parse_features``: a ``|``-separated feature list into (supported, required) bitmaps.

    A name with a leading ``!`` is required (and supported). Names are compared in chunks of at most 63
    characters, as Xen's fixed buffer cuts them. Unknown supported names are ignored.

    Returns:
        ``(supported, required, bad)``: ``bad`` is the first unknown required feature (parsing stops there,
        and Xen rejects the image), else None.
    """
    supported = required = 0
    pos = 0
    while pos < len(text):
        length = 0
        chars = []
        while length < _FEATURE_CHUNK and pos + length < len(text):
            char = text[pos + length]
            length += 1
            if char == "|":
                break
            chars.append(char)
        pos += length
        feature = "".join(chars)
        if feature.startswith("!"):
            bit = _FEATURE_BITS.get(feature[1:])
            if bit is None:
                return supported, required, feature[1:]
            supported |= 1 << bit
            required |= 1 << bit
        else:
            bit = _FEATURE_BITS.get(feature)
            if bit is not None:
                supported |= 1 << bit
    return supported, required, None


def _strtoull(text: str) -> int:
    """C ``strtoull(text, NULL, 0)``: optional space and sign, then 0x-hex, 0-octal or decimal digits."""
    s = text.lstrip(" \t\n\v\f\r")
    negative = False
    if s[:1] in ("+", "-"):
        negative = s[0] == "-"
        s = s[1:]
    if s[:2] in ("0x", "0X") and s[2:3] and s[2] in string.hexdigits:
        base, s, valid = 16, s[2:], string.hexdigits
    elif s[:1] == "0":
        base, valid = 8, string.octdigits
    else:
        base, valid = 10, string.digits
    end = 0
    while end < len(s) and s[end] in valid:
        end += 1
    if end == 0:
        return 0
    value = int(s[:end], base)
    if value > _U64:
        return _U64  # ERANGE: ULLONG_MAX, whatever the sign
    return (-value) & _U64 if negative else value


def _legacy_items(text: bytes) -> list[tuple[str, str]]:
    """Split the ``__xen_guest`` string exactly as ``elf_xen_parse_guest_info`` walks it.

    Names are cut at 31 characters and values at 127 (Xen's ``name[32]``/``value[128]`` buffers); a cut name
    carries on as the next item, as it does in Xen.
    """

    def star(i: int) -> int:
        return text[i] if i < len(text) else 0

    items = []
    h = 0
    while star(h):
        name = bytearray()
        value = bytearray()
        while len(name) < 31:
            c = star(h)
            if c == 0:
                break
            if c == ord(","):
                h += 1
                break
            if c == ord("="):
                h += 1
                while len(value) < 127:
                    c = star(h)
                    if c == 0:
                        break
                    if c == ord(","):
                        h += 1
                        break
                    value.append(c)
                    h += 1
                break
            name.append(c)
            h += 1
        items.append((name.decode("latin-1"), value.decode("latin-1")))
    return items


@dataclass
class _Parms:
    """Mutable working copy of ``struct elf_dom_parms`` while parsing."""

    notes: list[XenNote] = field(default_factory=list)
    loader: str = ""
    guest_os: str = ""
    guest_version: str = ""
    xen_version: str = ""
    pae: int = XEN_PAE_NO
    bsd_symtab: bool = False
    virt_base: int = UNSET_ADDR
    virt_entry: int = UNSET_ADDR
    virt_hypercall: int = UNSET_ADDR
    virt_hv_start_low: int = UNSET_ADDR
    p2m_base: int = UNSET_ADDR
    elf_paddr_offset: int = UNSET_ADDR
    phys_entry: int = UNSET_ADDR32
    phys32_reloc: bool = False
    l1_mfn_valid: bool = False
    unmapped_initrd: bool = False
    f_supported: int = 0
    f_required: int = 0


def _xen_str(value: str) -> str:
    """``safe_strcpy`` into a ``char[16]`` field of ``elf_dom_parms``."""
    return value[:15]


def _numeric(desc: bytes) -> int:
    """``elf_note_numeric``: 1, 2, 4 or 8 little-endian bytes, else 0."""
    return int.from_bytes(desc, "little") if len(desc) in (1, 2, 4, 8) else 0


def _parse_note(elf: ElfImage, parms: _Parms, note: ElfNote) -> None:
    """``elf_xen_parse_note`` for one note owned by "Xen"."""
    n_type = note.n_type
    kind = _NOTE_KINDS.get(n_type, UNKNOWN)
    name = _note_name(n_type)
    if kind == UNKNOWN:
        parms.notes.append(XenNote(n_type, name, UNKNOWN, None, note.desc))
        return
    if kind == STRING:
        raw = elf.read_cstring(note.desc_offset)
        if raw is None:
            # elf_strval failed (no NUL before the end of the file): the note is skipped.
            parms.notes.append(XenNote(n_type, name, STRING, None, note.desc))
            return
        text = raw.decode("latin-1")
        parms.notes.append(XenNote(n_type, name, STRING, text, note.desc))
        if n_type == _N.XEN_ELFNOTE_LOADER:
            parms.loader = _xen_str(text)
        elif n_type == _N.XEN_ELFNOTE_GUEST_OS:
            parms.guest_os = _xen_str(text)
        elif n_type == _N.XEN_ELFNOTE_GUEST_VERSION:
            parms.guest_version = _xen_str(text)
        elif n_type == _N.XEN_ELFNOTE_XEN_VERSION:
            parms.xen_version = _xen_str(text)
        elif n_type == _N.XEN_ELFNOTE_PAE_MODE:
            if text == "yes":
                parms.pae = XEN_PAE_EXTCR3
            if "bimodal" in text:
                parms.pae = XEN_PAE_BIMODAL
        elif n_type == _N.XEN_ELFNOTE_BSD_SYMTAB:
            if text == "yes":
                parms.bsd_symtab = True
        elif n_type == _N.XEN_ELFNOTE_FEATURES:
            supported, required, bad = parse_features(text)
            parms.f_supported |= supported
            parms.f_required |= required
            if bad is not None:
                raise LoaderError(f"FEATURES note {text!r} requires unknown feature {bad!r}")
        return
    if kind == NAME:
        parms.notes.append(XenNote(n_type, name, NAME, None, note.desc))
        if n_type == _N.XEN_ELFNOTE_L1_MFN_VALID:
            parms.l1_mfn_valid = True
        elif n_type == _N.XEN_ELFNOTE_PHYS32_RELOC:
            parms.phys32_reloc = True
        return
    value = _numeric(note.desc)
    parms.notes.append(XenNote(n_type, name, NUMERIC, value, note.desc))
    if n_type == _N.XEN_ELFNOTE_VIRT_BASE:
        parms.virt_base = value
    elif n_type == _N.XEN_ELFNOTE_ENTRY:
        parms.virt_entry = value
    elif n_type == _N.XEN_ELFNOTE_INIT_P2M:
        parms.p2m_base = value
    elif n_type == _N.XEN_ELFNOTE_MOD_START_PFN:
        parms.unmapped_initrd = value != 0
    elif n_type == _N.XEN_ELFNOTE_PADDR_OFFSET:
        parms.elf_paddr_offset = value
    elif n_type == _N.XEN_ELFNOTE_HYPERCALL_PAGE:
        parms.virt_hypercall = value
    elif n_type == _N.XEN_ELFNOTE_HV_START_LOW:
        parms.virt_hv_start_low = value
    elif n_type == _N.XEN_ELFNOTE_SUPPORTED_FEATURES:
        # elf_note_numeric_array(note, 4, 0): the first 32-bit word, if descsz is a multiple of 4.
        if note.desc and len(note.desc) % 4 == 0:
            parms.f_supported |= int.from_bytes(note.desc[:4], "little")
    elif n_type == _N.XEN_ELFNOTE_PHYS32_ENTRY:
        parms.phys_entry = value & UNSET_ADDR32


def _parse_guest_info(parms: _Parms, text: bytes) -> None:
    """``elf_xen_parse_guest_info``: the legacy ``KEY=VALUE,...`` string.

    As in Xen, an unknown required feature stops the walk but is not an error (``elf_xen_parse`` ignores the
    result), and HYPERCALL_PAGE is a pfn, converted to ``(pfn << 12) + virt_base`` when VIRT_BASE is given.
    """
    for key, value in _legacy_items(text):
        parms.notes.append(XenNote(None, key, LEGACY, value))
        if key == "LOADER":
            parms.loader = _xen_str(value)
        if key == "GUEST_OS":
            parms.guest_os = _xen_str(value)
        if key == "GUEST_VER":
            parms.guest_version = _xen_str(value)
        if key == "XEN_VER":
            parms.xen_version = _xen_str(value)
        if key == "PAE":
            if value == "yes[extended-cr3]":
                parms.pae = XEN_PAE_EXTCR3
            elif value.startswith("yes"):
                parms.pae = XEN_PAE_YES
        if key == "BSD_SYMTAB":
            parms.bsd_symtab = True
        if key == "VIRT_BASE":
            parms.virt_base = _strtoull(value)
        if key == "VIRT_ENTRY":
            parms.virt_entry = _strtoull(value)
        if key == "ELF_PADDR_OFFSET":
            parms.elf_paddr_offset = _strtoull(value)
        if key == "HYPERCALL_PAGE":
            parms.virt_hypercall = (_strtoull(value) << 12) & _U64
        if key == "FEATURES":
            supported, required, bad = parse_features(value)
            parms.f_supported |= supported
            parms.f_required |= required
            if bad is not None:
                break
    if parms.virt_base != UNSET_ADDR and parms.virt_hypercall != UNSET_ADDR:
        parms.virt_hypercall = (parms.virt_hypercall + parms.virt_base) & _U64


# --------------------------------------------------------------------------------------------- elf_xen_parse


def _find_notes(elf: ElfImage, parms: _Parms) -> str | None:
    """The note search of ``elf_xen_parse``: parse the notes into ``parms``; return where they came from.

    Returns None when no segment or section holds a note owned by "Xen" and there is no ``__xen_guest``
    section. Xen rejects such an image either as "Not a Xen-ELF image" (no note segment or section at all) or
    through ``elf_xen_note_check`` (LOADER and GUEST_OS unset); xenpy reports both as "Not a Xen-ELF image".
    """
    found = 0
    for ph in elf.program_headers:
        if ph.p_type != PT_NOTE or ph.p_offset == 0:
            continue  # some binutils leave p_offset 0 in note segments
        for note in elf.notes_in_segment(ph):
            if note.owner == b"Xen":
                _parse_note(elf, parms, note)
                found += 1
    if found:
        return SOURCE_PT_NOTE
    for sh in elf.section_headers[1:]:
        if sh.sh_type != SHT_NOTE:
            continue
        for note in elf.notes_in_section(sh):
            if note.owner == b"Xen":
                _parse_note(elf, parms, note)
                found += 1
    if found:
        return SOURCE_SHT_NOTE
    guest = elf.section_by_name("__xen_guest")
    if guest is not None:
        _parse_guest_info(parms, elf.section_data(guest))
        return SOURCE_XEN_GUEST
    return None


def elf_xen_parse(elf: ElfImage) -> XenImageInfo:
    """Read a PV kernel's Xen notes and check them as ``elf_xen_parse(elf, parms, hvm=false)`` does.

    Args:
        elf: the parsed image (EM_X86_64).

    Returns:
        The notes and the addresses Xen derives from them.

    Raises:
        LoaderError: with the reason Xen would give: no Xen notes ("Not a Xen-ELF image"); a FEATURES note
            requiring an unknown feature; neither LOADER "generic" nor GUEST_OS "linux"; XEN_VERSION not
            "xen-3.0"; PADDR_OFFSET without VIRT_BASE; no loadable segment; entry, kernel start or INIT_P2M
            out of bounds. Also BSD_SYMTAB with a symbol table, which xenpy does not load yet.
    """
    parms = _Parms()
    source = _find_notes(elf, parms)
    if source is None or not parms.notes:
        raise LoaderError("Not a Xen-ELF image: no Xen ELF notes or '__xen_guest' section found")
    _note_check(parms)
    pstart, pend = elf.paddr_range()
    return _addr_calc_check(elf, parms, source, pstart, pend)


def _note_check(parms: _Parms) -> None:
    """``elf_xen_note_check`` (PV)."""
    if not parms.loader.startswith("generic") and not parms.guest_os.startswith("linux"):
        raise LoaderError(
            "Will only load images built for the generic loader or Linux images "
            f"(LOADER is {parms.loader!r}, GUEST_OS is {parms.guest_os!r})"
        )
    if not parms.xen_version.startswith("xen-3.0"):
        raise LoaderError(
            f"Xen will only load images built for Xen v3.0 (XEN_VERSION is {parms.xen_version!r})"
        )


def _addr_calc_check(elf: ElfImage, parms: _Parms, source: str, pstart: int, pend: int) -> XenImageInfo:
    """``elf_xen_addr_calc_check`` (PV)."""
    if parms.elf_paddr_offset != UNSET_ADDR and parms.virt_base == UNSET_ADDR:
        raise LoaderError("ELF_PADDR_OFFSET set, VIRT_BASE unset")
    virt_base = 0 if parms.virt_base == UNSET_ADDR else parms.virt_base
    if parms.elf_paddr_offset == UNSET_ADDR:
        paddr_offset = virt_base if source == SOURCE_XEN_GUEST else 0
    else:
        paddr_offset = parms.elf_paddr_offset
    virt_offset = (virt_base - paddr_offset) & _U64
    kstart = (pstart + virt_offset) & _U64
    kend = (pend + virt_offset) & _U64
    entry = elf.header.e_entry if parms.virt_entry == UNSET_ADDR else parms.virt_entry
    if parms.bsd_symtab and any(sh.sh_type == SHT_SYMTAB for sh in elf.section_headers):
        raise LoaderError("BSD_SYMTAB (loading the symbol table after the kernel) is not supported yet")

    bounds = f"kernel {kstart:#x}-{kend:#x}, entry {entry:#x}, VIRT_BASE {virt_base:#x}"
    if kstart > kend:
        raise LoaderError(f"ELF start or entries are out of bounds: kernel start above its end ({bounds})")
    if entry < kstart or entry > kend:
        raise LoaderError(f"ELF start or entries are out of bounds: entry outside the kernel ({bounds})")
    if virt_base > kstart:
        raise LoaderError(
            f"ELF start or entries are out of bounds: VIRT_BASE above the kernel start ({bounds})"
        )
    if parms.p2m_base != UNSET_ADDR and kstart <= parms.p2m_base < kend:
        raise LoaderError(
            f"P->M table base is out of bounds: INIT_P2M {parms.p2m_base:#x} is inside the kernel "
            f"{kstart:#x}-{kend:#x}"
        )

    def opt(value: int, unset: int = UNSET_ADDR) -> int | None:
        return None if value == unset else value

    return XenImageInfo(
        elf=elf,
        note_source=source,
        notes=tuple(parms.notes),
        guest_type=_guest_type(elf),
        loader=parms.loader,
        guest_os=parms.guest_os,
        guest_version=parms.guest_version,
        xen_version=parms.xen_version,
        pae_mode=_PAE_NAMES[parms.pae],
        bsd_symtab=parms.bsd_symtab,
        features_supported=parms.f_supported,
        features_required=parms.f_required,
        virt_base=virt_base,
        elf_paddr_offset=paddr_offset,
        virt_offset=virt_offset,
        pstart=pstart,
        pend=pend,
        virt_kstart=kstart,
        virt_kend=kend,
        virt_entry=entry,
        virt_hypercall=opt(parms.virt_hypercall),
        virt_hv_start_low=opt(parms.virt_hv_start_low),
        p2m_base=opt(parms.p2m_base),
        unmapped_initrd=parms.unmapped_initrd,
        phys_entry=opt(parms.phys_entry, UNSET_ADDR32),
        phys32_reloc=parms.phys32_reloc,
        l1_mfn_valid=parms.l1_mfn_valid,
    )


def _guest_type(elf: ElfImage) -> str:
    """``xc_dom_guest_type`` for a PV container."""
    if elf.header.e_machine != EM_X86_64:  # parse_elf admits nothing else; kept for clarity
        raise LoaderError(f"unknown image type {elf.header.e_machine}")
    return GUEST_TYPE_X86_64


# --------------------------------------------------------------------------------------------- domU builder


def check_pv_domu(info: XenImageInfo) -> None:
    """The domU builder's refusals after ``elf_xen_parse`` (spec 7.1).

    ``xc_dom_parse_elf_kernel`` refuses a kernel that requires ``dom0``; ``bootearly`` refuses one that
    requires ``auto_translated_physmap`` (PV autotranslate is gone). Only *required* features are active: the
    toolstack requests none, so ``f_active == f_required``.

    Raises:
        LoaderError: one of these.
    """
    if info.feature_required(XENFEAT.XENFEAT_dom0):
        raise LoaderError("Kernel does not support unprivileged (DomU) operation (FEATURES requires !dom0)")
    if info.feature_required(XENFEAT.XENFEAT_auto_translated_physmap):
        raise LoaderError(
            "PV Autotranslate guests no longer supported (FEATURES requires !auto_translated_physmap)"
        )


def read_pv_image(data: bytes) -> XenImageInfo:
    """Parse an image file as the PV domU builder does: unpack, ELF, Xen notes, address checks, domU checks.

    ``data`` is an ELF kernel, or a Linux bzImage or gzipped ELF that :func:`~xenpy.loader.bzimage.unpack_kernel`
    unpacks to one.

    Raises:
        LoaderError: the image cannot be built as a PV64 domU; the message says why.
    """
    return read_pv_kernel(unpack_kernel(data))


def read_pv_kernel(kernel: KernelImage) -> XenImageInfo:
    """:func:`read_pv_image` of an unpacked kernel file.

    Raises:
        LoaderError: the image cannot be built as a PV64 domU; for an unpacked container the message says that
            the problem is in what it held.
    """
    try:
        info = elf_xen_parse(parse_elf(kernel.elf))
    except LoaderError as error:
        if kernel.container == "ELF":
            raise
        what = f"{kernel.codec} payload of the bzImage" if kernel.codec else "gunzipped kernel"
        raise LoaderError(f"the {what} ({len(kernel.elf)} bytes): {error}") from None
    check_pv_domu(info)
    return info
