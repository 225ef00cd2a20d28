"""Restore a saved PV domain into a new domain, as libxc's x86 PV restore does (``xg_sr_restore_x86_pv.c``).

:func:`restore_domain` reads an xl save file or migration stream record by record
(:class:`~xenpy.toolstack.migration.stream.StreamReader`) into a new, paused domain of the configuration its xl
header carries. The new domain's frames are its own (a different machine layout from the saver's):

* PAGE_DATA pages land in the frames of their pfns; page tables are localised (each present entry's pfn becomes
  the new frame) and the ones marked pinned are pinned, which validates them as Xen does;
* an XTAB pfn (ballooned out when saved) is ballooned out again;
* vCPU 0's rdx names start_info: its xenstore and console frames (pfns, as the guest left them) become the new
  frames, with the new domain's ring ports, its page count and shared_info's new address;
* each vCPU's context gets its frames back as mfns and is loaded through ``arch_set_info_guest``, online;
* shared_info keeps the saved vcpu_info and arch fields, with every port masked and nothing pending, and the
  frame-list-list cleared (the guest publishes its p2m again);
* the guest's p2m frames receive the new p2m.

The xenstore and console backends are attached as for a booted domain. The domain's
:mod:`~xenpy.toolstack.lifecycle` is restoring meanwhile, then paused. The domain is returned paused; when it
runs, the guest returns from SCHEDOP_shutdown with 0 (resumed in a new domain). Any error raises
:class:`~xenpy.toolstack.migration.stream.SaveFileError` and leaves no domain behind.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from xenpy.abi.arch_x86 import VGCF_online
from xenpy.abi.x86 import PAGE_PRESENT, PAGE_SIZE, PTE_PFN_MASK, XEN_L4_SLOTS
from xenpy.core.memory import INVALID_M2P_ENTRY
from xenpy.core.mm import pin_table
from xenpy.core.profiles import PROFILES
from xenpy.core.system import DomainConfig
from xenpy.core.vcpu_context import arch_set_info_guest, parse_vcpu_guest_context
from xenpy.toolstack.boot import free_domu_id, ring_ports
from xenpy.toolstack.console import ConsoleRingBackend
from xenpy.toolstack.lifecycle import LifecycleState, lifecycle_of
from xenpy.toolstack.migration.stream import (
    EXT_VCPUCONTEXT,
    P2M_SLACK,
    PFN_PINNED,
    TSC_INFO,
    PfnType,
    Record,
    SaveFileError,
    StreamHeader,
    StreamReader,
    parse_page_data,
    vcpu_record,
)
from xenpy.toolstack.xenstore import Store, XenstoreRingBackend, attach_pv_domain

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.hypervisor import Hypervisor

#: ``progress(pages_done, pages_total)``, called after each PAGE_DATA record.
RestoreProgress = Callable[[int, int], None]

_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class SavedConfig:
    """The configuration of a saved domain, from its xl header."""

    name: str
    max_vcpus: int
    nr_pages: int
    profile: str
    cmdline: str
    suspend_cancel: bool

    @property
    def memory_mib(self) -> int:
        """Memory in MiB."""
        return self.nr_pages * PAGE_SIZE >> 20


def saved_config(header: StreamHeader, offset: int = 36) -> SavedConfig:
    """The :class:`SavedConfig` of a stream's xl header.

    Raises:
        SaveFileError: a configuration without the fields restore needs.
    """
    config = header.config
    try:
        c_info, b_info = config["c_info"], config["b_info"]
        extra = config.get("xenpy", {})
        name = str(c_info.get("name", ""))
        max_vcpus = int(b_info["max_vcpus"])
        memkb = int(b_info["max_memkb"])
        profile = str(extra.get("profile", "head"))
        cmdline = str(b_info.get("type.pv", {}).get("cmdline", ""))
        suspend_cancel = bool(extra.get("suspend_cancel", False))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SaveFileError(offset, f"the domain configuration lacks or garbles {exc}") from None
    if c_info.get("type", "pv") != "pv":
        raise SaveFileError(offset, f"a {c_info.get('type')} domain: only PV domains can be restored")
    if profile not in PROFILES:
        raise SaveFileError(offset, f"the configuration names Xen profile {profile!r}, which xenpy does not know "
                            f"({', '.join(PROFILES)})")  # fmt: skip
    if not 1 <= max_vcpus <= 128:
        raise SaveFileError(offset, f"the configuration has {max_vcpus} vCPUs (1..128)")
    if memkb <= 0 or memkb % 1024:
        raise SaveFileError(offset, f"the configuration's memory ({memkb} KiB) is not a whole number of MiB")
    return SavedConfig(name, max_vcpus, memkb * 1024 // PAGE_SIZE, profile, cmdline, suspend_cancel)


@dataclass(frozen=True)
class StreamSummary:
    """What :func:`scan_stream` found in a save file, without restoring it."""

    config: SavedConfig
    xen_version: tuple[int, int]
    pages: int
    vcpus: int
    saved_at_ns: int


def scan_stream(source: BinaryIO) -> StreamSummary:
    """Read a whole save file and check its structure (headers, record framing, page data, vCPU records) without
    restoring it: what ``xenpy restore`` knows before it creates the hypervisor.

    Raises:
        SaveFileError: the file is truncated, corrupt, or not a PV save file.
    """
    reader = StreamReader(source)
    header = reader.headers()
    cfg = saved_config(header)
    pages = 0
    vcpus: set[int] = set()
    saved_at = 0
    for at, rtype, body in reader.records():
        if rtype == Record.PAGE_DATA:
            pages += len(parse_page_data(at, body)[0])
        elif rtype == Record.X86_PV_VCPU_BASIC:
            vcpus.add(vcpu_record(at, body)[0])
        elif rtype == Record.X86_TSC_INFO and len(body) == TSC_INFO.size:
            saved_at = TSC_INFO.unpack(body)[2]
    return StreamSummary(cfg, (header.xen_major, header.xen_minor), pages, len(vcpus), saved_at)


@dataclass
class RestoredDomain:
    """A domain restored from a stream, with what the toolstack keeps about it (as for a booted domain).

    Attributes:
        domain: the (paused) domain.
        config: the saved configuration.
        console: the console ring backend.
        xenstore: the xenstore ring backend.
        store_port, console_port: the new domain's ring ports.
        saved_at_ns: system time of the save (the stream's TSC info).
        pages: pfns the stream carried.
    """

    domain: Domain
    config: SavedConfig
    console: ConsoleRingBackend
    xenstore: XenstoreRingBackend
    store_port: int
    console_port: int
    saved_at_ns: int
    pages: int

    @property
    def cmdline(self) -> str:
        """The saved kernel command line."""
        return self.config.cmdline

    @property
    def suspend_cancel(self) -> bool:
        """The guest can be resumed in place after a suspend (as saved)."""
        return self.config.suspend_cancel


@dataclass
class _State:
    """What the records said so far."""

    max_pfn: int = -1
    seen_pv_info: bool = False
    p2m_pfns: np.ndarray | None = None
    pfn_types: np.ndarray | None = None
    pages: int = 0
    tsc: tuple[int, int, int, int] | None = None
    shared_info: bytes | None = None
    basic: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    extended: dict[int, tuple[int, bytes]] = field(default_factory=dict)


def restore_domain(
    hv: Hypervisor,
    source: BinaryIO,
    *,
    xenstore: Store | None = None,
    name: str | None = None,
    progress: RestoreProgress | None = None,
) -> RestoredDomain:
    """Restore the domain of the xl save file (or migration stream) ``source`` into ``hv``; it is returned
    paused.

    Raises:
        SaveFileError: the stream is truncated, corrupt or not restorable; no domain is left behind.
        OutOfMachineMemory: ``hv`` has too little free memory.
    """
    reader = StreamReader(source)
    header = reader.headers()
    return restore_stream(hv, reader, header, xenstore=xenstore, name=name, progress=progress)


def restore_stream(
    hv: Hypervisor,
    reader: StreamReader,
    header: StreamHeader,
    *,
    xenstore: Store | None = None,
    name: str | None = None,
    progress: RestoreProgress | None = None,
) -> RestoredDomain:
    """:func:`restore_domain` of a stream whose headers ``reader`` has read already (``header``)."""
    cfg = saved_config(header)
    domid = free_domu_id(hv)
    config = DomainConfig(max_vcpus=cfg.max_vcpus, memory_mib=cfg.memory_mib, profile=cfg.profile,
                          name=name if name is not None else cfg.name, domid=domid)  # fmt: skip
    try:
        d = hv.create_domain(config, builder=lambda _d: None)
    except ValueError as exc:  # the configuration's profile or sizes
        raise SaveFileError(36, f"the domain configuration cannot be created: {exc}") from None
    lifecycle = lifecycle_of(d)
    try:
        lifecycle.move(LifecycleState.RESTORING)
        ports = ring_ports(d)
        if ports is None:
            raise SaveFileError(0, f"cannot allocate the ring event channels of domain {d.domid}")
        store_port, console_port = ports
        st = _State()
        for at, rtype, body in reader.records():
            _record(d, st, at, rtype, body, progress)
        end = reader.offset
        if st.p2m_pfns is None or st.shared_info is None or 0 not in st.basic:
            missing = [what for what, ok in (("X86_PV_P2M_FRAMES", st.p2m_pfns is not None),
                                             ("SHARED_INFO", st.shared_info is not None),
                                             ("vCPU 0's X86_PV_VCPU_BASIC", 0 in st.basic)) if not ok]  # fmt: skip
            raise SaveFileError(end, f"the stream ended without {', '.join(missing)}")
        store_mfn, console_mfn = _finish(d, st, store_port, console_port, end)
    except BaseException:
        hv.destroy_domain(d)
        raise
    lifecycle.move(LifecycleState.PAUSED)
    console = ConsoleRingBackend(hv, d, console_mfn, console_port)
    ring = attach_pv_domain(hv, d, store_mfn=store_mfn, store_port=store_port, console_mfn=console_mfn,
                            console_port=console_port, cmdline=cfg.cmdline, store=xenstore)  # fmt: skip
    saved_at = st.tsc[2] if st.tsc else 0
    return RestoredDomain(d, cfg, console, ring, store_port, console_port, saved_at, st.pages)


def _record(d: Domain, st: _State, at: int, rtype: int, body: bytes, progress: RestoreProgress | None) -> None:
    """Apply one record (``x86_pv_process_record`` and the common PAGE_DATA handling)."""
    if rtype == Record.X86_PV_INFO:
        if len(body) != 8:
            raise SaveFileError(at, f"X86_PV_INFO of {len(body)} bytes (expected 8)")
        width, levels, res1, res2 = struct.unpack("<BBHI", body)
        if res1 or res2:
            raise SaveFileError(at + 10, "reserved bits set in X86_PV_INFO")
        if (width, levels) != (8, 4):
            raise SaveFileError(at + 8, f"a {width * 8}-bit guest with {levels} page-table levels: only 64-bit "
                                "guests with 4 levels can be restored")  # fmt: skip
        st.seen_pv_info = True
    elif rtype in (Record.STATIC_DATA_END, Record.VERIFY, Record.X86_CPUID_POLICY, Record.X86_MSR_POLICY):
        if rtype in (Record.STATIC_DATA_END, Record.VERIFY) and body:
            raise SaveFileError(at, f"{Record(rtype).name} with a body")
    elif rtype == Record.X86_PV_P2M_FRAMES:
        _p2m_frames(d, st, at, body)
    elif rtype == Record.PAGE_DATA:
        _page_data(d, st, at, body)
        if progress is not None:
            progress(st.pages, st.max_pfn + 1)
    elif rtype == Record.X86_TSC_INFO:
        if len(body) != TSC_INFO.size:
            raise SaveFileError(at, f"X86_TSC_INFO of {len(body)} bytes (expected {TSC_INFO.size})")
        mode, khz, nsec, incarnation, res = TSC_INFO.unpack(body)
        if res:
            raise SaveFileError(at + 28, "reserved bits set in X86_TSC_INFO")
        st.tsc = (mode, khz, nsec, incarnation)
    elif rtype == Record.SHARED_INFO:
        if not st.seen_pv_info:
            raise SaveFileError(at, "SHARED_INFO before X86_PV_INFO")
        if len(body) != PAGE_SIZE:
            raise SaveFileError(at, f"SHARED_INFO of {len(body)} bytes (expected 4096)")
        st.shared_info = body
    elif rtype in (Record.X86_PV_VCPU_BASIC, Record.X86_PV_VCPU_EXTENDED,
                   Record.X86_PV_VCPU_XSAVE, Record.X86_PV_VCPU_MSRS):  # fmt: skip
        _vcpu_blob(d, st, at, rtype, body)
    elif rtype == Record.END:
        pass
    else:
        raise SaveFileError(at, f"record {Record(rtype).name} cannot be restored into a PV domain")


def _p2m_frames(d: Domain, st: _State, at: int, body: bytes) -> None:
    if not st.seen_pv_info:
        raise SaveFileError(at, "X86_PV_P2M_FRAMES before X86_PV_INFO")
    if st.p2m_pfns is not None:
        raise SaveFileError(at, "a second X86_PV_P2M_FRAMES record")
    if len(body) < 8 or len(body) % 8:
        raise SaveFileError(at, f"X86_PV_P2M_FRAMES of {len(body)} bytes")
    start, end = struct.unpack_from("<II", body)
    if start != 0:
        raise SaveFileError(at + 8, f"X86_PV_P2M_FRAMES starts at pfn {start:#x}, not 0")
    if end + 1 < d.memory.nr_pages or end >= P2M_SLACK * d.memory.nr_pages:
        raise SaveFileError(at + 12, f"the stream's p2m covers {end + 1} pfns but the configuration gives the "
                            f"domain {d.memory.nr_pages} pages")  # fmt: skip
    frames = np.frombuffer(body, dtype="<u8", offset=8).astype(np.int64)
    want = (end + 1 + PAGE_SIZE // 8 - 1) // (PAGE_SIZE // 8)
    if len(frames) != want or (frames < 0).any() or (frames > end).any():
        raise SaveFileError(at + 16, f"X86_PV_P2M_FRAMES lists {len(frames)} frames ({want} pfns <= {end:#x} "
                            "expected)")  # fmt: skip
    st.max_pfn = end
    st.p2m_pfns = frames
    st.pfn_types = np.full(end + 1, -1, dtype=np.int64)


def _page_data(d: Domain, st: _State, at: int, body: bytes) -> None:
    if st.pfn_types is None:
        raise SaveFileError(at, "PAGE_DATA before X86_PV_P2M_FRAMES")
    pfns, types, pages = parse_page_data(at, body)
    if (pfns > st.max_pfn).any():
        raise SaveFileError(at + 16, f"PAGE_DATA pfn {int(pfns.max()):#x} beyond max_pfn {st.max_pfn:#x}")
    machine = d.system.machine
    with_data = ~np.isin(types, [PfnType.BROKEN, PfnType.XALLOC, PfnType.XTAB])
    beyond = with_data & (pfns >= d.memory.nr_pages)
    if beyond.any():
        raise SaveFileError(at + 16, f"PAGE_DATA for pfn {int(pfns[beyond][0]):#x}, beyond the configuration's "
                            f"{d.memory.nr_pages} pages")  # fmt: skip
    mfns = d.memory.p2m.mfns[pfns[with_data]].astype(np.int64)
    machine.frames[mfns] = pages
    st.pfn_types[pfns] = types
    st.pages += len(pfns)


def _vcpu_blob(d: Domain, st: _State, at: int, rtype: int, body: bytes) -> None:
    vcpu_id, context = vcpu_record(at, body)
    if vcpu_id >= len(d.vcpus):
        raise SaveFileError(at + 8, f"a record of vCPU {vcpu_id}, but the domain has {len(d.vcpus)}")
    if rtype == Record.X86_PV_VCPU_BASIC:
        size = d.abi.vcpu_guest_context.sizeof()
        if len(context) != size:
            raise SaveFileError(at + 16, f"vCPU {vcpu_id}'s basic context has {len(context)} bytes (expected {size})")
        st.basic[vcpu_id] = (at, context)
    elif rtype == Record.X86_PV_VCPU_EXTENDED:
        if len(context) < 8 or len(context) > EXT_VCPUCONTEXT.size:
            raise SaveFileError(at + 16, f"vCPU {vcpu_id}'s extended context has {len(context)} bytes")
        st.extended[vcpu_id] = (at, context)
    elif context:
        raise SaveFileError(at, f"{Record(rtype).name} state of vCPU {vcpu_id} cannot be restored by xenpy")


# ---------------------------------------------------------------------------------------------------- finishing


def _finish(d: Domain, st: _State, store_port: int, console_port: int, end: int) -> tuple[int, int]:
    """``x86_pv_stream_complete``: balloon, localise and pin the page tables, vCPU contexts, shared_info, p2m.
    Returns the new xenstore and console frames."""
    assert st.pfn_types is not None and st.p2m_pfns is not None and st.shared_info is not None
    machine = d.system.machine
    types = st.pfn_types
    missing = np.flatnonzero(types < 0)
    if len(missing):
        raise SaveFileError(end, f"the stream has no PAGE_DATA for {len(missing)} pfns (the first is {missing[0]:#x})")
    p2m = np.full(st.max_pfn + 1, -1, dtype=np.int64)
    p2m[: d.memory.nr_pages] = d.memory.p2m.mfns
    guest_p2m = p2m.copy()
    for pfn in np.flatnonzero((types == PfnType.XTAB) & (p2m >= 0)):
        mfn = int(p2m[pfn])
        machine.m2p[mfn] = INVALID_M2P_ENTRY
        machine.zero_frame(mfn)
        d.ballooned_mfns[mfn] = None
        d.tot_pages -= 1
        guest_p2m[pfn] = -1

    def mfn_of(pfn: int, what: str, want_type: int | None = None) -> int:
        if not 0 <= pfn <= st.max_pfn:
            raise SaveFileError(end, f"{what}: pfn {pfn:#x} out of range")
        if want_type is not None and int(types[pfn]) & 0x7 != want_type:
            raise SaveFileError(end, f"{what}: pfn {pfn:#x} has type {int(types[pfn]):#x}, expected {want_type}")
        if guest_p2m[pfn] < 0:
            raise SaveFileError(end, f"{what}: pfn {pfn:#x} has no frame")
        return int(p2m[pfn])

    # Localise every page table, then pin (validating) the pinned ones.
    tables = np.flatnonzero((types & 0x7 >= 1) & (types & 0x7 <= 4) & (types <= 0xC))
    for pfn in tables:
        _localise(machine, int(p2m[pfn]), int(types[pfn]) & 0x7, guest_p2m, int(pfn), end)
    for pfn in tables:
        if int(types[pfn]) & PFN_PINNED:
            level = int(types[pfn]) & 0x7
            rc = pin_table(d, int(p2m[pfn]), level)
            if rc:
                raise SaveFileError(end, f"the L{level} table at pfn {pfn:#x} does not validate ({rc})")

    # start_info (vCPU 0's rdx).
    abi = d.abi
    _at0, ctx0 = st.basic[0]
    c0 = parse_vcpu_guest_context(abi, ctx0)
    si_mfn = mfn_of(c0["user_regs.rdx"], "start_info (vCPU 0's rdx)", 0)
    c0["user_regs.rdx"] = si_mfn
    si_maddr = si_mfn << 12
    si = abi.start_info.parse(machine.read(si_maddr, abi.start_info.sizeof()))
    store_mfn = mfn_of(int(si.store_mfn), "the xenstore ring", 0)
    console_mfn = mfn_of(int(si.console.domU.mfn), "the console ring", 0)
    si.store_mfn = store_mfn
    si.store_evtchn = store_port
    si.console = {"domU": {"mfn": console_mfn, "evtchn": console_port}}
    si.nr_pages = st.max_pfn + 1
    si.shared_info = d.shared_info_maddr
    si.flags = 0
    machine.write(si_maddr, abi.start_info.build(si))

    # vCPU contexts.
    for vcpu_id in sorted(st.basic):
        at, raw = st.basic[vcpu_id]
        c = c0 if vcpu_id == 0 else parse_vcpu_guest_context(abi, raw)
        c["flags"] |= int(VGCF_online)
        for i in range((c["gdt_ents"] + 511) // 512):
            c[f"gdt_frames[{i}]"] = mfn_of(c[f"gdt_frames[{i}]"], f"vCPU {vcpu_id}'s GDT frame {i}", 0)
        c["ctrlreg[3]"] = mfn_of(c["ctrlreg[3]"] >> 12, f"vCPU {vcpu_id}'s cr3", 4) << 12
        if c["ctrlreg[1]"] & 1:
            c["ctrlreg[1]"] = mfn_of(c["ctrlreg[1]"] >> 12, f"vCPU {vcpu_id}'s cr1", 4) << 12
        v = d.vcpus[vcpu_id]
        rc = arch_set_info_guest(v, c)
        if rc:
            raise SaveFileError(at, f"vCPU {vcpu_id}'s context is refused by arch_set_info_guest ({rc})")
        if vcpu_id in st.extended:
            _extended(v, st.extended[vcpu_id][1])

    # shared_info: the saved vcpu_info and arch fields; ports masked, nothing pending.
    old = st.shared_info
    base = d.shared_info_maddr
    shared = abi.shared_info
    vi_off, vi_len = shared.offset_of("vcpu_info"), shared.type_of("vcpu_info").size
    arch_off, arch_len = shared.offset_of("arch"), abi.arch_shared_info.sizeof()
    machine.write(base + vi_off, old[vi_off : vi_off + vi_len])
    machine.write(base + arch_off, old[arch_off : arch_off + arch_len])
    machine.write_u64(base + arch_off + abi.arch_shared_info.offset_of("pfn_to_mfn_frame_list_list"), 0)
    bitmap_len = shared.type_of("evtchn_pending").size
    machine.write(base + shared.offset_of("evtchn_pending"), bytes(bitmap_len))
    machine.write(base + shared.offset_of("evtchn_mask"), b"\xff" * bitmap_len)
    sel = abi.vcpu_info.offset_of("evtchn_pending_sel")
    for i in range(shared.type_of("vcpu_info").count):
        machine.write_u64(base + vi_off + i * abi.vcpu_info.sizeof() + sel, 0)

    # The guest's p2m frames get the new p2m.
    entries = np.where(guest_p2m < 0, np.uint64(_U64), guest_p2m.astype(np.uint64)).astype("<u8")
    padded = np.full(len(st.p2m_pfns) * (PAGE_SIZE // 8), _U64, dtype="<u8")
    padded[: len(entries)] = entries
    for i, pfn in enumerate(st.p2m_pfns):
        mfn = mfn_of(int(pfn), f"p2m frame {i}", 0)
        machine.frames[mfn] = padded[i * 512 : (i + 1) * 512].view(np.uint8)
    if st.tsc is not None:
        d.tsc_incarnation = st.tsc[3] + 1
    return store_mfn, console_mfn


def _localise(machine: Any, mfn: int, level: int, guest_p2m: np.ndarray, pfn: int, end: int) -> None:
    """``x86_pv_localise_page``: each present entry's pfn becomes the new domain's frame."""
    entries = machine.frames[mfn].view("<u8")
    if level == 4:
        entries[XEN_L4_SLOTS.start : XEN_L4_SLOTS.stop] = 0
    present = (entries & np.uint64(PAGE_PRESENT)) != 0
    if not present.any():
        return
    pfns = ((entries & np.uint64(PTE_PFN_MASK)) >> np.uint64(12)).astype(np.int64)
    bad = present & ((pfns >= len(guest_p2m)) | (guest_p2m[np.minimum(pfns, len(guest_p2m) - 1)] < 0))
    if bad.any():
        slot = int(np.argmax(bad))
        raise SaveFileError(end, f"L{level}[{slot}] of pfn {pfn:#x} maps pfn {int(pfns[slot]):#x}, which has no frame")
    mask = np.uint64(PTE_PFN_MASK)
    new = guest_p2m[np.where(present, pfns, 0)].astype(np.uint64) << np.uint64(12)
    entries[:] = np.where(present, (entries & ~mask) | new, entries)


def _extended(v: Any, context: bytes) -> None:
    """``process_vcpu_extended``: the 32-bit syscall and sysenter callbacks."""
    raw = context.ljust(EXT_VCPUCONTEXT.size, b"\0")
    _vid, _size, sc32_eip, se_eip, sc32_cs, se_cs, sc32_mask, se_mask, _vmce = EXT_VCPUCONTEXT.unpack(raw)
    arch = v.arch
    arch.syscall32_callback_eip, arch.sysenter_callback_eip = sc32_eip, se_eip
    arch.syscall32_callback_cs, arch.sysenter_callback_cs = sc32_cs, se_cs
    arch.syscall32_disables_events, arch.sysenter_disables_events = bool(sc32_mask), bool(se_mask)
