"""The PV64 domU builder (spec 7.2-7.5): memory contents, page tables, start_info, hypercall page, vCPU 0."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest

from xenpy.abi import x86_64
from xenpy.abi.xen import SIF_MOD_START_PFN
from xenpy.core.memory import DomainMemory, MachineMemory, PageType
from xenpy.core.pagetable import GuestFault, copy_from_guest, translate
from xenpy.core.vcpu_context import pack_vcpu_guest_context, parse_vcpu_guest_context
from xenpy.loader.builder import BuiltDomain, build_pv64_domain, init_hypercall_page, start_info_bytes
from xenpy.loader.errors import LoaderError
from xenpy.loader.layout import PAGE_SIZE, compute_pv64_layout
from xenpy.loader.xen_notes import XenImageInfo, read_pv_image

from .elfgen import HYPERCALL_PAGE, KSTART, VIRT_BASE, standard_image

DOMID = 3
PRESENT, RW, USER, ACCESSED, DIRTY = 1, 2, 4, 0x20, 0x40
FLAGS_MASK = 0xFFF | (0xFFF << 52)
GUEST_KERNEL = 1 << 52  # Xen's _PAGE_GUEST_KERNEL, on each validated kernel mapping
STANDARD = read_pv_image(standard_image())


@dataclasses.dataclass
class Built:
    machine: MachineMemory
    memory: DomainMemory
    shared_info_mfn: int
    result: BuiltDomain

    def read(self, gva: int, nbytes: int) -> bytes:
        return copy_from_guest(self.machine, self.result.cr3, gva, nbytes, domid=DOMID)


def build(
    info: XenImageInfo = STANDARD, nr_pages: int = 2048, *, dirty: bool = True, **kwargs: object
) -> Built:
    """Build into a domain whose frames hold garbage first, so that anything left unwritten shows."""
    machine = MachineMemory(nr_pages + 16, seed=11)
    memory = DomainMemory(machine, DOMID, nr_pages)
    if dirty:
        machine.frames[memory.p2m.mfns] = 0xAA
    shared_info_mfn = int(machine.alloc_domain_frames(DOMID, 1)[0])
    result = build_pv64_domain(memory, info, shared_info_mfn=shared_info_mfn, **kwargs)  # type: ignore[arg-type]
    return Built(machine, memory, shared_info_mfn, result)


@pytest.fixture(scope="module")
def standard() -> Built:
    return build(cmdline="console=hvc0 loglevel=8", store_evtchn=1, console_evtchn=2)


def test_kernel_is_loaded_with_bss_zeroed(standard: Built) -> None:
    """spec 7.2: segments at kernel + (p_paddr - pstart); memsz beyond filesz is zero."""
    image = STANDARD.elf.segment_data(STANDARD.elf.loadable_segments[0])
    assert standard.read(KSTART, 0x1000) == image[:0x1000]
    assert standard.read(KSTART + 0x2000, len(image) - 0x2000) == image[0x2000:]  # 0x1000: the hypercall page
    assert standard.read(KSTART + len(image), 0x1000) == bytes(0x1000)


def test_region_is_mapped_one_to_one(standard: Built) -> None:
    """spec 7.2: pfn = (va - virt_base) >> 12 over [virt_base, virt_pgtab_end); page tables read-only."""
    layout = standard.result.layout
    tables = set(range(layout.pgtables.pfn, layout.pgtables.pfn_end))
    for pfn in range(layout.region_nr_pages):
        gva = VIRT_BASE + pfn * PAGE_SIZE
        maddr = translate(standard.machine, standard.result.cr3, gva, write=False, domid=DOMID)
        assert maddr == standard.memory.mfn_of(pfn) << 12
        if pfn in tables:
            with pytest.raises(GuestFault, match="read-only mapping at L1"):
                translate(standard.machine, standard.result.cr3, gva, write=True, domid=DOMID)
    with pytest.raises(GuestFault, match="not present"):
        translate(standard.machine, standard.result.cr3, layout.virt_pgtab_end, write=False, domid=DOMID)
    with pytest.raises(GuestFault, match="not present"):
        translate(standard.machine, standard.result.cr3, VIRT_BASE - PAGE_SIZE, write=False, domid=DOMID)


def test_page_table_entry_flags() -> None:
    """spec 7.2: L1 PRESENT|RW|ACCESSED (RW clear for table frames; USER and _PAGE_GUEST_KERNEL added as Xen
    validates a PV64 kernel mapping);
    L2-L4 PRESENT|RW|ACCESSED|DIRTY|USER."""
    built = build(dirty=False)
    layout, tables = built.result.layout, built.result.pagetables
    table_pfns = set(range(layout.pgtables.pfn, layout.pgtables.pfn_end))
    for pfn in (
        0,
        2,
        layout.start_info_pfn,
        *sorted(table_pfns),
        layout.bootstack_pfn,
        layout.region_nr_pages - 1,
    ):
        entry = tables.l1_entry(VIRT_BASE + pfn * PAGE_SIZE)
        assert entry is not None
        expected = PRESENT | ACCESSED | USER | GUEST_KERNEL | (0 if pfn in table_pfns else RW)
        assert entry & FLAGS_MASK == expected, pfn
        assert (entry & ~FLAGS_MASK) >> 12 == built.memory.mfn_of(pfn)
    for level in (4, 3, 2):
        maddr = tables.entry_maddr(KSTART, level)
        assert maddr is not None
        assert built.machine.read_u64(maddr) & FLAGS_MASK == PRESENT | RW | ACCESSED | DIRTY | USER


def test_page_types_and_pin(standard: Built) -> None:
    """Table frames are typed L4..L1 at the layout's pfns (L4 first); the L4's one reference is its pin (vCPU 0's
    cr3 takes the next when the context is loaded)."""
    layout, machine, memory = standard.result.layout, standard.machine, standard.memory
    levels = layout.mappings[0].levels
    for lvl in levels:
        for pfn in range(lvl.pfn, lvl.pfn + lvl.nr_tables):
            assert machine.page_type(memory.mfn_of(pfn)) == PageType(lvl.level)
    assert levels[0].pfn == layout.pgtables.pfn
    assert standard.result.cr3 == memory.mfn_of(layout.l4_pfn) << 12
    assert machine.type_count(memory.mfn_of(layout.l4_pfn)) == 1
    assert machine.page_type(memory.mfn_of(layout.start_info_pfn)) == PageType.writable


def test_p2m_list(standard: Built) -> None:
    """spec 7.2: mfn_list[pfn] == mfn for every pfn."""
    layout = standard.result.layout
    raw = standard.read(layout.mfn_list, standard.memory.nr_pages * 8)
    assert np.array_equal(np.frombuffer(raw, dtype="<u8"), standard.memory.p2m.mfns)


def test_start_info(standard: Built) -> None:
    """spec 7.2 start_info table."""
    layout, memory = standard.result.layout, standard.memory
    si = x86_64.start_info.parse(standard.read(layout.rsi, x86_64.start_info.sizeof()))
    assert si.magic == b"xen-3.0-x86_64".ljust(32, b"\0")
    assert si.nr_pages == 2048
    assert si.shared_info == standard.shared_info_mfn << 12
    assert si.flags == 0
    assert si.pt_base == layout.pt_base == VIRT_BASE + layout.pgtables.pfn * PAGE_SIZE
    assert si.nr_pt_frames == layout.nr_pt_frames == 5
    assert si.mfn_list == layout.mfn_list
    assert (si.store_mfn, si.store_evtchn) == (memory.mfn_of(layout.xenstore_pfn), 1)
    assert (si.console.domU.mfn, si.console.domU.evtchn) == (memory.mfn_of(layout.console_pfn), 2)
    assert (si.mod_start, si.mod_len, si.first_p2m_pfn, si.nr_p2m_frames) == (0, 0, 0, 0)
    assert si.cmd_line == b"console=hvc0 loglevel=8".ljust(1024, b"\0")
    assert standard.result.store_mfn == si.store_mfn and standard.result.console_mfn == si.console.domU.mfn


def test_start_info_is_written_as_construct_builds_it(standard: Built) -> None:
    """The builder packs start_info with its fast codec: the same bytes as the construct definition builds."""
    values = standard.result.start_info
    assert start_info_bytes(values) == x86_64.start_info.build(values)
    assert standard.read(standard.result.layout.rsi, x86_64.start_info.sizeof()) == start_info_bytes(values)


def test_rings_and_stack_are_zero(standard: Built) -> None:
    """The xenstore and console pages are cleared: the console ring's indices start at 0."""
    layout = standard.result.layout
    for region in (layout.xenstore, layout.console, layout.boot_stack):
        assert region.gva is not None
        assert standard.read(region.gva, PAGE_SIZE) == bytes(PAGE_SIZE)
    console = x86_64.xencons_interface.parse(
        standard.read(layout.console.gva, x86_64.xencons_interface.sizeof())
    )
    assert (console.in_cons, console.in_prod, console.out_cons, console.out_prod) == (0, 0, 0, 0)


def test_cmdline_is_cut_to_1023_bytes() -> None:
    built = build(cmdline="x" * 2000)
    layout = built.result.layout
    cmd = x86_64.start_info.parse(built.read(layout.rsi, x86_64.start_info.sizeof())).cmd_line
    assert cmd == b"x" * 1023 + b"\0"


def test_init_hypercall_page() -> None:
    """spec 7.3: 0xCC fill, 128 stubs of 32 bytes, stub 23 is the iret stub."""
    page = init_hypercall_page()
    assert len(page) == PAGE_SIZE
    assert page[0:32] == bytes.fromhex("514153b8000000000f05415b59c3") + b"\xcc" * 18
    assert page[32 * 1 : 32 * 1 + 14] == bytes.fromhex("514153b8010000000f05415b59c3")
    assert page[32 * 29 : 32 * 29 + 14] == bytes.fromhex("514153b81d0000000f05415b59c3")
    assert page[32 * 127 : 32 * 127 + 14] == bytes.fromhex("514153b87f0000000f05415b59c3")
    assert page[32 * 23 : 32 * 24] == bytes.fromhex("51415350b8170000000f05") + b"\xcc" * 21
    for i in range(128):
        stub = page[32 * i : 32 * i + 32]
        assert stub.rstrip(b"\xcc") and set(stub[14 if i != 23 else 11 :]) == {0xCC}


def test_hypercall_page_is_written(standard: Built) -> None:
    """spec 7.3: Xen writes the page named by HYPERCALL_PAGE (pfn (va - virt_base) >> 12)."""
    assert standard.result.hypercall_page_pfn == 3
    assert standard.read(HYPERCALL_PAGE, PAGE_SIZE) == init_hypercall_page()
    # The type reference the domctl takes is dropped again.
    mfn = standard.memory.mfn_of(3)
    assert standard.machine.type_count(mfn) == 1  # only the writable mapping's


def test_no_hypercall_page_note() -> None:
    built = build(dataclasses.replace(STANDARD, virt_hypercall=None))
    assert built.result.hypercall_page_pfn is None
    segment = STANDARD.elf.segment_data(STANDARD.elf.loadable_segments[0])
    assert built.read(HYPERCALL_PAGE, 16) == segment[0x1000:0x1010]


def test_hypercall_page_outside_the_domain_is_einval() -> None:
    """spec 7.3: no page -> -EINVAL."""
    info = dataclasses.replace(STANDARD, virt_hypercall=VIRT_BASE + 4096 * PAGE_SIZE)
    with pytest.raises(
        LoaderError,
        match=r"HYPERCALL_INIT failed: -22 \(-EINVAL\).*pfn 0x1000, outside the "
        r"domain's 2048 pages",
    ):
        build(info)


def test_hypercall_page_on_a_page_table_is_eperm() -> None:
    """spec 7.3: page not writable -> -EPERM (here: the L4)."""
    l4_pfn = compute_pv64_layout(STANDARD, 2048).l4_pfn
    info = dataclasses.replace(STANDARD, virt_hypercall=VIRT_BASE + l4_pfn * PAGE_SIZE)
    with pytest.raises(
        LoaderError, match=r"HYPERCALL_INIT failed: -1 \(-EPERM\).*is a l4 page, not writable"
    ):
        build(info)


def test_vcpu_context(standard: Built) -> None:
    """spec 7.5: rip, rsi = start_info, rsp = top of the boot stack, flat selectors, cr3, debug registers."""
    ctx = standard.result.vcpu_context
    layout = standard.result.layout
    assert ctx["user_regs.rip"] == STANDARD.virt_entry
    assert ctx["user_regs.rsi"] == VIRT_BASE + layout.start_info_pfn * PAGE_SIZE
    assert ctx["user_regs.rsp"] == ctx["kernel_sp"] == VIRT_BASE + (layout.bootstack_pfn + 1) * PAGE_SIZE
    assert ctx["user_regs.rflags"] == 0x202
    assert (ctx["user_regs.cs"], ctx["user_regs.ss"], ctx["kernel_ss"]) == (0xE033, 0xE02B, 0xE02B)
    assert all(ctx[f"user_regs.{seg}"] == 0 for seg in ("ds", "es", "fs", "gs"))
    assert ctx["ctrlreg[3]"] == standard.result.cr3
    assert ctx["flags"] == (1 << 2) | (1 << 5)  # VGCF_in_kernel | VGCF_online
    assert (ctx["debugreg[6]"], ctx["debugreg[7]"]) == (0xFFFF0FF0, 0x400)
    # It is a vcpu_guest_context: every other field is 0.
    flat = parse_vcpu_guest_context(x86_64, pack_vcpu_guest_context(x86_64, ctx))
    assert {k: v for k, v in flat.items() if k != "fpu_ctxt" and v} == {k: v for k, v in ctx.items() if v}
    # The stack page is mapped, writable, and the stack top is its end.
    translate(standard.machine, standard.result.cr3, ctx["user_regs.rsp"] - 8, write=True, domid=DOMID)


def test_module_inside_the_region() -> None:
    module = bytes(range(256)) * 20
    built = build(module=module)
    layout = built.result.layout
    assert built.result.start_info["mod_start"] == layout.mod_start == KSTART + 4 * PAGE_SIZE
    assert built.result.start_info["mod_len"] == len(module)
    assert built.read(layout.mod_start, 2 * PAGE_SIZE) == module + bytes(2 * PAGE_SIZE - len(module))
    assert build(module=module, module_len_exact=False).result.start_info["mod_len"] == 2 * PAGE_SIZE


def test_module_unmapped() -> None:
    """spec 7.2: with MOD_START_PFN the module is after the region, given by pfn, with SIF_MOD_START_PFN."""
    module = b"initrd" * 1000
    built = build(dataclasses.replace(STANDARD, unmapped_initrd=True), module=module, flags=0x100)
    si = built.result.start_info
    assert si["flags"] == 0x100 | SIF_MOD_START_PFN
    assert si["mod_start"] == 1024 and si["mod_len"] == 2 * PAGE_SIZE
    assert built.memory.read_pfn(1024, 0, 4096) + built.memory.read_pfn(1025, 0, len(module) - 4096) == module
    with pytest.raises(GuestFault):  # not mapped
        translate(built.machine, built.result.cr3, VIRT_BASE + 1024 * PAGE_SIZE, write=False, domid=DOMID)


def test_init_p2m() -> None:
    """spec 7.2: INIT_P2M maps the list at its own VA with its own tables; first_p2m_pfn/nr_p2m_frames."""
    p2m_base = 0x80_0000_0000
    built = build(dataclasses.replace(STANDARD, p2m_base=p2m_base))
    layout, si = built.result.layout, built.result.start_info
    assert si["mfn_list"] == p2m_base
    assert (si["first_p2m_pfn"], si["nr_p2m_frames"]) == (1024, 4 + 3)  # 2048 * 8 bytes, L3 + L2 + L1
    raw = built.read(p2m_base, built.memory.nr_pages * 8)
    assert np.array_equal(np.frombuffer(raw, dtype="<u8"), built.memory.p2m.mfns)
    for lvl in layout.mappings[1].levels:
        for pfn in range(lvl.pfn, lvl.pfn + lvl.nr_tables):
            assert built.machine.page_type(built.memory.mfn_of(pfn)) == PageType(lvl.level)
    assert [(lvl.level, lvl.pfn) for lvl in layout.mappings[1].levels if lvl.nr_tables] == [
        (3, 1028),
        (2, 1029),
        (1, 1030),
    ]


def test_image_too_big_for_the_domain() -> None:
    with pytest.raises(LoaderError, match=r"image needs 4 MiB of bootstrap region .* domain has 2 MiB"):
        build(nr_pages=512)


def test_start_info_bytes_match_the_returned_values(standard: Built) -> None:
    layout = standard.result.layout
    raw = standard.memory.read_pfn(layout.start_info_pfn, 0, x86_64.start_info.sizeof())
    assert raw == x86_64.start_info.build(standard.result.start_info)
    console_mfn_offset = x86_64.start_info.offset_of("console.domU.mfn")
    assert struct.unpack_from("<Q", raw, console_mfn_offset)[0] == standard.result.console_mfn
