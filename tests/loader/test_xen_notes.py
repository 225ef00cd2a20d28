"""Xen ELF notes as libelf reads them (spec 7.1): sources, note kinds, checks, addresses, domU refusals."""

from __future__ import annotations

import struct

import pytest

from xenpy.abi.features import XENFEAT
from xenpy.loader.elf import PT_NOTE, parse_elf
from xenpy.loader.errors import LoaderError
from xenpy.loader.xen_notes import (
    UNSET_ADDR,
    _strtoull,
    elf_xen_parse,
    parse_features,
    read_pv_image,
)

from . import elfgen
from .elfgen import (
    ENTRY,
    HYPERCALL_PAGE,
    KSTART,
    VIRT_BASE,
    N,
    Section,
    Segment,
    make_elf,
    note,
    standard_image,
    standard_notes,
    standard_spec,
)


def _legacy_image(guest: bytes, *, paddr: int | None = None) -> bytes:
    """A kernel whose only Xen information is the ``__xen_guest`` string (p_paddr = vaddr by default)."""
    return make_elf(
        standard_spec(
            notes=b"",
            segments=[Segment(KSTART, bytes(0x3000), memsz=0x4000, paddr=paddr)],
            sections=[Section("__xen_guest", elfgen.SHT_PROGBITS, guest + b"\0")],
        )
    )


def test_pt_note_image() -> None:
    """spec 7.1: notes from the PT_NOTE segment; addresses from VIRT_BASE, p_paddr, ENTRY, HYPERCALL_PAGE."""
    info = read_pv_image(standard_image())
    assert info.note_source == "PT_NOTE"
    assert [n.name for n in info.notes] == [
        "GUEST_OS",
        "GUEST_VERSION",
        "XEN_VERSION",
        "LOADER",
        "VIRT_BASE",
        "ENTRY",
        "HYPERCALL_PAGE",
        "FEATURES",
    ]
    assert (info.loader, info.guest_os, info.guest_version, info.xen_version) == (
        "generic",
        "xenpy-test",
        "1.0",
        "xen-3.0",
    )
    assert info.virt_base == VIRT_BASE
    assert info.elf_paddr_offset == 0  # notes: default 0
    assert info.virt_offset == VIRT_BASE
    assert (info.pstart, info.pend) == (0x2000, 0x6000)
    assert info.virt_kstart == KSTART and info.virt_kend == VIRT_BASE + 0x6000
    assert info.virt_entry == ENTRY
    assert info.virt_hypercall == HYPERCALL_PAGE
    assert info.p2m_base is None and not info.unmapped_initrd
    assert info.guest_type == "xen-3.0-x86_64"
    assert info.feature_supported(XENFEAT.XENFEAT_writable_page_tables)
    assert not info.feature_required(XENFEAT.XENFEAT_writable_page_tables)
    assert info.feature_required(XENFEAT.XENFEAT_writable_descriptor_tables)
    assert info.features_text == "writable_page_tables|!writable_descriptor_tables"


def test_sht_note_only_image() -> None:
    """spec 7.1: without a PT_NOTE segment the SHT_NOTE sections are read."""
    info = read_pv_image(standard_image(note_segment=False))
    assert info.note_source == "SHT_NOTE"
    assert info.virt_entry == ENTRY


def test_pt_note_with_zero_offset_is_skipped() -> None:
    """libelf skips PT_NOTE segments with p_offset == 0 (a binutils bug) and falls back to SHT_NOTE."""
    data = bytearray(standard_image())
    phdr1 = elfgen.EHDR64.size + elfgen.PHDR64.size
    assert struct.unpack_from("<I", data, phdr1)[0] == PT_NOTE
    struct.pack_into("<Q", data, phdr1 + 8, 0)
    assert read_pv_image(bytes(data)).note_source == "SHT_NOTE"


def test_sections_are_not_read_when_segments_have_xen_notes() -> None:
    """Only when the PT_NOTE segments hold no Xen note are the SHT_NOTE sections read."""
    other = standard_notes(ENTRY=ENTRY + 4)
    spec = standard_spec(note_section=False, sections=[Section(".note.other", elfgen.SHT_NOTE, other)])
    assert read_pv_image(make_elf(spec)).virt_entry == ENTRY


def test_notes_of_other_owners_are_ignored() -> None:
    """spec 7.1: only notes named "Xen" count; a GNU note with a Xen type number changes nothing."""
    notes = note(N.XEN_ELFNOTE_ENTRY, ENTRY + 8, owner=b"GNU") + standard_notes()
    assert read_pv_image(standard_image(notes=notes)).virt_entry == ENTRY
    notes = note(N.XEN_ELFNOTE_ENTRY, ENTRY + 8, owner=b"Xenx") + standard_notes()
    assert read_pv_image(standard_image(notes=notes)).virt_entry == ENTRY


def test_only_foreign_notes_is_not_a_xen_image() -> None:
    notes = note(3, b"\x01" * 20, owner=b"GNU")
    with pytest.raises(LoaderError, match=r"Not a Xen-ELF image"):
        read_pv_image(standard_image(notes=notes))


def test_missing_notes_is_not_a_xen_image() -> None:
    """spec 7.1: no notes and no __xen_guest on EM_X86_64 -> "Not a Xen-ELF image"."""
    with pytest.raises(
        LoaderError, match=r"^Not a Xen-ELF image: no Xen ELF notes or '__xen_guest' section found$"
    ):
        read_pv_image(standard_image(notes=b""))


def test_legacy_xen_guest_string() -> None:
    """spec 7.1: the legacy string; HYPERCALL_PAGE is a pfn; PADDR_OFFSET defaults to VIRT_BASE."""
    guest = (
        b"GUEST_OS=linux,GUEST_VER=2.6,XEN_VER=xen-3.0,VIRT_BASE=0xffffffff80000000,HYPERCALL_PAGE=0x3,"
        b"LOADER=generic,FEATURES=writable_page_tables"
    )
    info = read_pv_image(_legacy_image(guest))
    assert info.note_source == "__xen_guest"
    assert [(n.name, n.value) for n in info.notes][:3] == [
        ("GUEST_OS", "linux"),
        ("GUEST_VER", "2.6"),
        ("XEN_VER", "xen-3.0"),
    ]
    assert info.virt_hypercall == (3 << 12) + VIRT_BASE
    assert info.elf_paddr_offset == VIRT_BASE
    assert info.virt_offset == 0
    assert info.virt_kstart == KSTART  # p_paddr == p_vaddr, as old kernels had it
    assert info.virt_entry == ENTRY  # no VIRT_ENTRY: e_entry
    assert info.feature_supported(XENFEAT.XENFEAT_writable_page_tables)


def test_legacy_hypercall_page_without_virt_base_is_a_plain_pfn() -> None:
    """Without VIRT_BASE the pfn is only shifted (virt_base defaults to 0 afterwards)."""
    guest = b"GUEST_OS=linux,XEN_VER=xen-3.0,HYPERCALL_PAGE=2"
    data = make_elf(
        standard_spec(
            notes=b"",
            entry=0x3010,
            segments=[Segment(0x3000, bytes(0x100), memsz=0x2000)],
            sections=[Section("__xen_guest", elfgen.SHT_PROGBITS, guest + b"\0")],
        )
    )
    info = read_pv_image(data)
    assert (info.virt_base, info.virt_hypercall, info.elf_paddr_offset) == (0, 0x2000, 0)


def test_legacy_values_parse_like_strtoull() -> None:
    guest = (
        b"GUEST_OS=linux,XEN_VER=xen-3.0,VIRT_BASE=18446744071562067968,VIRT_ENTRY=0xffffffff80002020,"
        b"ELF_PADDR_OFFSET=0xffffffff80000000junk"
    )
    info = read_pv_image(_legacy_image(guest))
    assert info.virt_base == VIRT_BASE
    assert info.virt_entry == ENTRY + 0x10
    assert info.elf_paddr_offset == VIRT_BASE


def test_strtoull() -> None:
    assert _strtoull("0x10") == 16
    assert _strtoull("010") == 8
    assert _strtoull("  +42z") == 42
    assert _strtoull("-1") == UNSET_ADDR
    assert _strtoull("0x") == 0
    assert _strtoull("") == 0
    assert _strtoull("99999999999999999999999") == UNSET_ADDR


def test_legacy_unknown_required_feature_stops_the_walk_without_error() -> None:
    """elf_xen_parse ignores elf_xen_parse_guest_info's result: later items are simply not read."""
    guest = b"GUEST_OS=linux,XEN_VER=xen-3.0,FEATURES=!no_such_feature,VIRT_ENTRY=0xffffffff80002020"
    info = read_pv_image(_legacy_image(guest))
    assert info.virt_entry == ENTRY  # VIRT_ENTRY after the bad FEATURES was never read


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"LOADER": "linux-loader", "GUEST_OS": "minios"},
            r"^Will only load images built for the generic loader or Linux images "
            r"\(LOADER is 'linux-loader', GUEST_OS is 'minios'\)$",
        ),
        ({"LOADER": None, "GUEST_OS": "Linux"}, r"generic loader or Linux images"),
        (
            {"XEN_VERSION": "xen-2.0"},
            r"^Xen will only load images built for Xen v3.0 \(XEN_VERSION is 'xen-2.0'\)$",
        ),
        ({"XEN_VERSION": None}, r"Xen v3.0 \(XEN_VERSION is ''\)"),
    ],
)
def test_note_check_rejections(override: dict[str, str | None], message: str) -> None:
    """spec 7.1: LOADER "generic" or GUEST_OS "linux"; XEN_VERSION "xen-3.0"."""
    with pytest.raises(LoaderError, match=message):
        read_pv_image(standard_image(notes=standard_notes(**override)))


def test_guest_os_linux_without_loader_is_accepted() -> None:
    info = read_pv_image(standard_image(notes=standard_notes(LOADER=None, GUEST_OS="linux-6.1")))
    assert info.loader == "" and info.guest_os == "linux-6.1"


def test_xen_version_prefix_is_enough() -> None:
    assert (
        read_pv_image(standard_image(notes=standard_notes(XEN_VERSION="xen-3.0.4"))).xen_version
        == "xen-3.0.4"
    )


def test_parsed_strings_are_cut_like_xens_buffers() -> None:
    info = read_pv_image(standard_image(notes=standard_notes(GUEST_VERSION="0123456789abcdefXYZ")))
    assert info.guest_version == "0123456789abcde"
    assert [n.value for n in info.notes if n.name == "GUEST_VERSION"] == ["0123456789abcdefXYZ"]


def test_unknown_required_feature_fails() -> None:
    """spec 7.1: an unknown '!feature' fails the parse."""
    notes = standard_notes(FEATURES="writable_page_tables|!fancy_new_thing")
    with pytest.raises(LoaderError, match=r"FEATURES note .* requires unknown feature 'fancy_new_thing'"):
        read_pv_image(standard_image(notes=notes))


def test_unknown_supported_feature_is_ignored() -> None:
    info = read_pv_image(standard_image(notes=standard_notes(FEATURES="fancy_new_thing|dom0")))
    assert info.features_supported == 1 << XENFEAT.XENFEAT_dom0
    assert info.features_required == 0


def test_required_dom0_is_rejected_for_a_domu() -> None:
    """spec 7.1: the domU builder rejects `!dom0`."""
    data = standard_image(notes=standard_notes(FEATURES="!dom0"))
    assert elf_xen_parse(parse_elf(data)).feature_required(XENFEAT.XENFEAT_dom0)  # libelf itself accepts it
    with pytest.raises(LoaderError, match=r"Kernel does not support unprivileged \(DomU\) operation"):
        read_pv_image(data)


def test_required_auto_translated_physmap_is_rejected() -> None:
    """spec 7.1: bootearly rejects (required) auto_translated_physmap; merely supported is fine."""
    with pytest.raises(LoaderError, match=r"PV Autotranslate guests no longer supported"):
        read_pv_image(standard_image(notes=standard_notes(FEATURES="!auto_translated_physmap")))
    read_pv_image(standard_image(notes=standard_notes(FEATURES="auto_translated_physmap")))


def test_parse_features() -> None:
    assert parse_features("") == (0, 0, None)
    assert parse_features("writable_page_tables||dom0|") == (0b1000_0000_0001, 0, None)
    assert parse_features("!pae_pgdir_above_4gb|hvm_callback_vector") == (0b1_0001_0000, 0b1_0000, None)
    assert parse_features("dom0|!bogus|!dom0") == (1 << 11, 0, "bogus")
    assert parse_features("!") == (0, 0, "")
    # Xen compares at most 63 characters at a time: a longer name is cut, its tail read as the next name.
    assert parse_features("x" * 63 + "dom0") == (1 << 11, 0, None)


def test_features_accumulate_with_supported_features_note() -> None:
    notes = standard_notes() + note(N.XEN_ELFNOTE_SUPPORTED_FEATURES, 1 << 9, numeric_size=4)
    info = read_pv_image(standard_image(notes=notes))
    assert info.features_supported == (1 << 9) | 0b11


def test_entry_outside_the_kernel() -> None:
    """spec 7.1: entry outside [kstart, kend] fails."""
    with pytest.raises(
        LoaderError,
        match=r"^ELF start or entries are out of bounds: entry outside the kernel \("
        r"kernel 0xffffffff80002000-0xffffffff80006000, entry 0xffffffff80007000",
    ):
        read_pv_image(standard_image(notes=standard_notes(ENTRY=VIRT_BASE + 0x7000)))
    with pytest.raises(LoaderError, match=r"entry outside the kernel"):
        read_pv_image(standard_image(notes=standard_notes(ENTRY=KSTART - 1)))


def test_entry_at_kernel_end_is_accepted() -> None:
    """Xen's bound is inclusive: entry == virt_kend passes."""
    kend = VIRT_BASE + 0x6000
    assert read_pv_image(standard_image(notes=standard_notes(ENTRY=kend))).virt_entry == kend


def test_entry_defaults_to_e_entry() -> None:
    info = read_pv_image(standard_image(notes=standard_notes(ENTRY=None), entry=KSTART + 0x123))
    assert info.virt_entry == KSTART + 0x123


def test_virt_base_above_kernel_start() -> None:
    """spec 7.1: virt_base > kstart fails (here PADDR_OFFSET moves the kernel below VIRT_BASE)."""
    notes = standard_notes(
        PADDR_OFFSET=0x4000, ENTRY=VIRT_BASE - 0x2000 + 0x10
    )  # kernel at VIRT_BASE - 0x2000
    with pytest.raises(LoaderError, match=r"VIRT_BASE above the kernel start"):
        read_pv_image(standard_image(notes=notes))


def test_paddr_offset_without_virt_base() -> None:
    with pytest.raises(LoaderError, match=r"^ELF_PADDR_OFFSET set, VIRT_BASE unset$"):
        read_pv_image(standard_image(notes=standard_notes(VIRT_BASE=None, PADDR_OFFSET=0)))


def test_paddr_offset_shifts_the_kernel() -> None:
    """virt_kstart = pstart + virt_base - paddr_offset (here the layout of xenpy's own guest)."""
    notes = standard_notes(VIRT_BASE=0x400000, PADDR_OFFSET=0x400000, ENTRY=0x400000, HYPERCALL_PAGE=0x401000)
    spec = standard_spec(
        notes=notes, entry=0x400000, segments=[Segment(0x400000, bytes(0x2000), paddr=0x400000)]
    )
    info = read_pv_image(make_elf(spec))
    assert (info.virt_offset, info.virt_kstart, info.virt_kend) == (0, 0x400000, 0x402000)


def test_virt_base_defaults_to_zero() -> None:
    notes = standard_notes(VIRT_BASE=None, ENTRY=0x2010, HYPERCALL_PAGE=0x3000)
    spec = standard_spec(notes=notes, entry=0x2010, segments=[Segment(0x2000, bytes(0x2000))])
    info = read_pv_image(make_elf(spec))
    assert (info.virt_base, info.virt_kstart, info.virt_kend) == (0, 0x2000, 0x4000)


def test_init_p2m_inside_the_kernel() -> None:
    notes = standard_notes() + note(N.XEN_ELFNOTE_INIT_P2M, KSTART + 0x1000)
    with pytest.raises(LoaderError, match=r"P->M table base is out of bounds"):
        read_pv_image(standard_image(notes=notes))


def test_init_p2m_and_mod_start_pfn_are_read() -> None:
    notes = (
        standard_notes() + note(N.XEN_ELFNOTE_INIT_P2M, 0x8000000000) + note(N.XEN_ELFNOTE_MOD_START_PFN, 1)
    )
    info = read_pv_image(standard_image(notes=notes))
    assert info.p2m_base == 0x8000000000 and info.unmapped_initrd


@pytest.mark.parametrize(
    ("size", "expected"),
    [(1, 0x10), (2, 0x3010), (4, 0x80003010), (8, HYPERCALL_PAGE + 0x10), (3, 0), (16, 0)],
)
def test_numeric_note_sizes(size: int, expected: int) -> None:
    """spec 7.1: numeric notes are 1, 2, 4 or 8 little-endian bytes; other sizes read as 0 (libelf)."""
    raw = (HYPERCALL_PAGE + 0x10).to_bytes(8, "little").ljust(16, b"\0")[:size]
    notes = standard_notes(HYPERCALL_PAGE=None) + note(N.XEN_ELFNOTE_HYPERCALL_PAGE, raw)
    info = read_pv_image(standard_image(notes=notes))
    assert [n.value for n in info.notes if n.name == "HYPERCALL_PAGE"] == [expected]
    assert info.virt_hypercall == expected


def test_later_note_overrides_earlier() -> None:
    notes = standard_notes() + note(N.XEN_ELFNOTE_ENTRY, ENTRY + 0x20)
    assert read_pv_image(standard_image(notes=notes)).virt_entry == ENTRY + 0x20


def test_unset_addr_value_counts_as_unset() -> None:
    notes = standard_notes(HYPERCALL_PAGE=UNSET_ADDR)
    assert read_pv_image(standard_image(notes=notes)).virt_hypercall is None


def test_unknown_and_name_only_notes() -> None:
    """spec 7.1: unknown types are ignored; L1_MFN_VALID and PHYS32_RELOC are name-only."""
    notes = (
        standard_notes()
        + note(0x1234, 7)
        + note(N.XEN_ELFNOTE_INFO, "info")
        + note(N.XEN_ELFNOTE_L1_MFN_VALID, b"")
        + note(N.XEN_ELFNOTE_PHYS32_RELOC, b"")
    )
    info = read_pv_image(standard_image(notes=notes))
    kinds = {n.name: (n.kind, n.value_text) for n in info.notes}
    assert kinds["type 0x1234"] == ("unknown", "(ignored)")
    assert kinds["INFO"] == ("unknown", "(ignored)")
    assert kinds["L1_MFN_VALID"] == ("name", "(present)")
    assert info.l1_mfn_valid and info.phys32_reloc


def test_a_string_note_without_nul_reads_on_like_elf_strval() -> None:
    """libelf reads a string note up to the next NUL in the file, past its descsz."""
    notes = standard_notes(GUEST_OS=None) + note(N.XEN_ELFNOTE_GUEST_OS, b"abc")
    info = read_pv_image(standard_image(notes=notes))
    assert info.guest_os == "abc"  # the note's padding supplies the NUL


def test_pae_and_bsd_symtab_notes() -> None:
    notes = standard_notes() + note(N.XEN_ELFNOTE_PAE_MODE, "bimodal") + note(N.XEN_ELFNOTE_BSD_SYMTAB, "yes")
    info = read_pv_image(standard_image(notes=notes))
    assert info.pae_mode == "bimodal" and info.bsd_symtab  # no symbol table: nothing to load, accepted


def test_bsd_symtab_with_a_symbol_table_is_not_supported_yet() -> None:
    notes = standard_notes() + note(N.XEN_ELFNOTE_BSD_SYMTAB, "yes")
    spec = standard_spec(notes=notes, sections=[Section(".symtab", elfgen.SHT_SYMTAB, bytes(48))])
    with pytest.raises(LoaderError, match=r"BSD_SYMTAB .* not supported yet"):
        read_pv_image(make_elf(spec))


def test_no_loadable_segment() -> None:
    with pytest.raises(LoaderError, match=r"no loadable segment"):
        read_pv_image(standard_image(segments=[]))
