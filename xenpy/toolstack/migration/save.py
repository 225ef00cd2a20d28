"""Save a PV domain as Xen's toolstack does: ask the guest to suspend, then write its stream (``xl save``).

:func:`save_domain` writes ``control/shutdown = "suspend"`` into the guest's xenstore and runs the domain until it
shuts down with SHUTDOWN_suspend (the guest clears the node, publishes its p2m and issues SCHEDOP_shutdown with
its start_info frame in rdx). :func:`write_domain_stream` then writes the suspended domain as libxc's x86 PV saver
does (``xg_sr_save_x86_pv.c``), as an xl save file (:mod:`~xenpy.toolstack.migration.stream`):

* the p2m is the guest's own, found through ``shared_info.arch``: the frame tree
  (``pfn_to_mfn_frame_list_list``) or the linear list at ``p2m_vaddr`` in the address space ``p2m_cr3``;
* every pfn up to ``max_pfn`` goes in PAGE_DATA records of 1024, typed from its frame's page type (pinned tables
  marked), an invalid p2m entry as XTAB;
* page tables are canonicalised: each present entry's mfn becomes its pfn, Xen's L4 slots are cleared; an entry
  that maps a frame outside the guest's pseudo-physical map (shared_info, a grant) or a superpage fails the save;
* each online vCPU's context has its cr3, user L4 and GDT frames as pfns, and vCPU 0's rdx (start_info) too,
  and its x87/SSE state (``fpu_ctxt``) from the CPU engine.

Then the domain is destroyed, or with ``checkpoint`` resumed as ``xl save -c`` does: SCHEDOP_shutdown returns 1 in
the same domain; its :mod:`~xenpy.toolstack.lifecycle` goes suspending, suspended, saving, then destroyed (or
running again). A failed save resumes the domain the same way, so nothing is lost.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from xenpy.abi.arch_x86 import VGCF_i387_valid
from xenpy.abi.x86 import PAGE_PRESENT, PAGE_PSE, PAGE_SIZE, PTE_PFN_MASK, XEN_L4_SLOTS
from xenpy.core.domain import DomainState, VPF_down
from xenpy.core.memory import INVALID_M2P_ENTRY
from xenpy.core.pagetable import GuestFault, translate
from xenpy.core.vcpu_context import arch_get_info_guest, pack_vcpu_guest_context
from xenpy.engine.runner import run_domain_until_stopped
from xenpy.toolstack.lifecycle import MOVABLE, LifecycleState, lifecycle_of
from xenpy.toolstack.migration.stream import (
    EXT_VCPUCONTEXT,
    P2M_SLACK,
    PAGE_BATCH,
    PFN_PINNED,
    TSC_INFO,
    TSC_MODE_DEFAULT,
    PfnType,
    Record,
    StreamWriter,
)

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.hypervisor import Hypervisor
    from xenpy.toolstack.xenstore import Store

#: How long the guest has to suspend after the request (wall seconds), as libxl's suspend timeout.
SUSPEND_TIMEOUT_S = 60.0

#: ``progress(pages_done, pages_total)``, called after each PAGE_DATA record.
SaveProgress = Callable[[int, int], None]

_FPP = PAGE_SIZE // 8
#: Pages compared at a time when looking for the pages a guest changed.
_COMPARE_CHUNK = 256
_U64 = (1 << 64) - 1
_PINNED_TYPE = {1: 0x9, 2: 0xA, 3: 0xB, 4: 0xC}


class SaveError(RuntimeError):
    """A domain could not be saved (the guest did not suspend, or its state cannot be written)."""


@dataclass(frozen=True)
class SaveSummary:
    """What a save wrote.

    Attributes:
        pages: pfns written (with data or not).
        bytes: bytes of the file.
        seconds: host seconds the stream took to write.
        suspend_ns: system time the guest took from the request to its suspend.
        saved_at_ns: system time of the save (the stream's TSC info).
    """

    pages: int
    bytes: int
    seconds: float
    suspend_ns: int
    saved_at_ns: int


def domain_config(d: Domain, *, cmdline: str = "", suspend_cancel: bool = False) -> dict[str, Any]:
    """The configuration an xl save file carries, in libxl's ``libxl_domain_config`` JSON shape (the keys restore
    reads), plus xenpy's own under ``"xenpy"``."""
    memkb = d.memory.nr_pages * PAGE_SIZE // 1024
    return {
        "c_info": {"type": "pv", "name": d.name},
        "b_info": {
            "max_vcpus": len(d.vcpus),
            "max_memkb": memkb,
            "target_memkb": d.tot_pages * PAGE_SIZE // 1024,
            "type.pv": {"cmdline": cmdline},
        },
        "xenpy": {"profile": d.profile.name, "suspend_cancel": suspend_cancel},
    }


def request_suspend(hv: Hypervisor, d: Domain, store: Store | None = None) -> None:
    """Write ``control/shutdown = "suspend"`` into ``d``'s xenstore (what libxl does for a PV guest)."""
    from xenpy.toolstack.xenstore import store_for

    store = store if store is not None else store_for(hv)
    store.write(f"/local/domain/{d.domid}/control/shutdown", "suspend")


def suspend_domain(hv: Hypervisor, d: Domain, *, store: Store | None = None,
                   timeout_s: float = SUSPEND_TIMEOUT_S) -> int:  # fmt: skip
    """Ask ``d`` to suspend and run it until it has (SHUTDOWN_suspend); returns the system time it took.

    Raises:
        SaveError: the guest shut down for another reason, crashed, or did not suspend within ``timeout_s`` (the
            request is then withdrawn, as libxl does).
    """
    from xenpy.toolstack.xenstore import store_for

    store = store if store is not None else store_for(hv)
    lifecycle = lifecycle_of(d)
    if lifecycle.state not in MOVABLE:
        raise SaveError(f"domain {d.domid} is {lifecycle.state.value}: only a running or paused domain can be saved")
    start = hv.now_ns()
    was_paused = d.controller_pause_count > 0
    with lifecycle.operation(LifecycleState.SUSPENDING):
        request_suspend(hv, d, store)
        summary = run_domain_until_stopped(hv, d, timeout_s=timeout_s)  # a paused guest must run to answer
    if lifecycle.state is LifecycleState.SUSPENDED:
        return hv.now_ns() - start
    if d.state in (DomainState.RUNNING, DomainState.PAUSED):
        store.write(f"/local/domain/{d.domid}/control/shutdown", "")
        if was_paused and not d.controller_pause_count:
            d.pause()
        why = "it stalled" if summary.end.value == "stalled" else f"not within {timeout_s:g} s"
        raise SaveError(f"domain {d.domid} did not suspend ({why}): does the guest support suspend?")
    raise SaveError(f"domain {d.domid} did not suspend: it is {d.state.value} "
                    f"({d.crash_reason or f'shutdown reason {d.shutdown_reason}'})")  # fmt: skip


def save_domain(
    hv: Hypervisor,
    d: Domain,
    out: BinaryIO,
    *,
    cmdline: str = "",
    suspend_cancel: bool = True,
    checkpoint: bool = False,
    store: Store | None = None,
    timeout_s: float = SUSPEND_TIMEOUT_S,
    progress: SaveProgress | None = None,
) -> SaveSummary:
    """Suspend ``d``, write it to ``out`` and destroy it (or, with ``checkpoint``, let it run on).

    A paused domain is unpaused for the request (the guest must run to suspend) and is paused again if it
    resumes here. ``suspend_cancel`` says whether the guest can be resumed in the same domain (its
    XEN_ELFNOTE_SUSPEND_CANCEL):
    a checkpoint, or a failed save, resumes it there with SCHEDOP_shutdown returning 1. Without it a failed save
    leaves the domain suspended, as Xen's toolstack must.

    Raises:
        SaveError: the domain did not suspend, or cannot be written (it is resumed if it can be).
        ValueError: ``checkpoint`` for a guest without suspend cancellation.
    """
    if checkpoint and not suspend_cancel:
        raise ValueError("a checkpoint needs a guest that supports suspend cancellation (XEN_ELFNOTE_SUSPEND_CANCEL)")
    was_paused = d.controller_pause_count > 0
    suspend_ns = suspend_domain(hv, d, store=store, timeout_s=timeout_s)
    config = domain_config(d, cmdline=cmdline, suspend_cancel=suspend_cancel)
    with lifecycle_of(d).operation(LifecycleState.SAVING):
        try:
            pages, nbytes, seconds = write_domain_stream(hv, d, out, config, progress=progress)
        except (SaveError, OSError):
            if suspend_cancel:
                resume_cancelled(d, paused=was_paused)
            raise
        summary = SaveSummary(pages, nbytes, seconds, suspend_ns, hv.now_ns())
        if checkpoint:
            resume_cancelled(d, paused=was_paused)
        else:
            hv.destroy_domain(d)
    return summary


def resume_cancelled(d: Domain, *, paused: bool = False) -> None:
    """Resume a suspended domain in place: SCHEDOP_shutdown returns 1 (``xc_domain_resume``'s fast path); paused
    again if it was paused before the suspend request (its guest ran to answer it)."""
    arch = d.vcpus[0].arch
    # A new register dict: the engine reloads the vCPU from it instead of keeping its live registers.
    arch.user_regs = {**arch.user_regs, "rax": 1}
    if paused and not d.controller_pause_count:
        d.pause()
    d.resume()


# ---------------------------------------------------------------------------------------------------- the stream


class _Pseudophysmap:
    """The guest's p2m and Xen's m2p, and libxc's ``mfn_in_pseudophysmap``."""

    def __init__(self, d: Domain, p2m: np.ndarray) -> None:
        self.machine = d.system.machine
        self.domid = d.domid
        self.p2m = p2m
        self.max_pfn = len(p2m) - 1

    def valid(self, mfns: np.ndarray) -> np.ndarray:
        """Per mfn: the domain's own frame, whose m2p entry is a pfn whose p2m entry is that mfn."""
        machine = self.machine
        mfns = mfns.astype(np.int64)
        ok = (mfns > 0) & (mfns < machine.nr_frames)
        safe = np.where(ok, mfns, 0)
        pfns = machine.m2p[safe]
        ok &= (pfns != INVALID_M2P_ENTRY) & (pfns >= 0) & (pfns <= self.max_pfn)
        ok &= np.asarray(machine.mv_owner)[safe] == self.domid
        ok &= self.p2m[np.where(ok, pfns, 0)] == mfns
        return ok

    def to_pfn(self, mfn: int, what: str) -> int:
        if not self.valid(np.array([mfn]))[0]:
            raise SaveError(f"bad mfn {mfn:#x} for {what}: not a frame of the guest's pseudo-physical map")
        return int(self.machine.m2p[mfn])


def _guest_p2m(d: Domain) -> tuple[np.ndarray, np.ndarray]:
    """The guest's p2m (mfn of each pfn ``0..max_pfn``) and the mfns of its frames, as libxc's ``map_p2m`` finds
    them."""
    machine = d.system.machine
    arch = d.shared_info().arch
    nr = int(arch.max_pfn)
    # The p2m may run past the domain's pages (Linux leaves room to grow); those entries are invalid (XTAB).
    if not 0 < nr <= P2M_SLACK * d.memory.nr_pages:
        raise SaveError(f"shared_info.arch.max_pfn is {nr}: the guest has not published its p2m "
                        f"(it must be 1..{P2M_SLACK * d.memory.nr_pages})")  # fmt: skip
    p2m_frames = (nr + _FPP - 1) // _FPP
    owned = d.memory.owns

    def frame(mfn: int, what: str) -> np.ndarray:
        if not owned(mfn):
            raise SaveError(f"bad mfn {mfn:#x} for {what}")
        return machine.frames[mfn].view("<u8")

    if arch.p2m_cr3:
        vaddr = int(arch.p2m_vaddr)
        mfns = []
        for i in range(p2m_frames):
            try:
                maddr = translate(machine, int(arch.p2m_cr3) & ~0xFFF, vaddr + i * PAGE_SIZE, write=False,
                                  domid=d.domid)  # fmt: skip
            except GuestFault as fault:
                raise SaveError(f"the linear p2m at {vaddr:#x} is not mapped at page {i}: {fault}") from None
            mfns.append(maddr >> 12)
    else:
        fll = int(arch.pfn_to_mfn_frame_list_list)
        if fll in (0, _U64):
            raise SaveError("the guest has not published its p2m (shared_info.arch.pfn_to_mfn_frame_list_list is "
                            f"{fll:#x} and p2m_cr3 is 0)")  # fmt: skip
        fl_pages = frame(fll, "the p2m frame list list")[: (p2m_frames + _FPP - 1) // _FPP]
        mfns = []
        for j, fl in enumerate(fl_pages):
            entries = frame(int(fl), f"p2m frame list {j}")
            mfns.extend(int(m) for m in entries[: min(_FPP, p2m_frames - j * _FPP)])
    p2m = np.concatenate([frame(m, f"p2m frame {i}") for i, m in enumerate(mfns)])[:nr].astype(np.int64)
    return p2m, np.array(mfns, dtype=np.int64)


def _normalise_table(page: np.ndarray, level: int, pmap: _Pseudophysmap, pfn: int) -> np.ndarray:
    """A page-table page with each present entry's mfn replaced by its pfn (``normalise_pagetable``)."""
    entries = page.view("<u8").astype(np.uint64).copy()
    if level == 4:
        entries[XEN_L4_SLOTS.start : XEN_L4_SLOTS.stop] = 0
    present = (entries & np.uint64(PAGE_PRESENT)) != 0
    if not present.any():
        return entries.view(np.uint8)
    if level > 1:
        pse = present & ((entries & np.uint64(PAGE_PSE)) != 0)
        if pse.any():
            slot = int(np.argmax(pse))
            raise SaveError(f"cannot save a superpage (pfn {pfn:#x}, L{level}[{slot}] = {int(entries[slot]):#x})")
    mfns = ((entries & np.uint64(PTE_PFN_MASK)) >> np.uint64(12)).astype(np.int64)
    ok = pmap.valid(mfns) | ~present
    if not ok.all():
        slot = int(np.argmax(~ok))
        raise SaveError(f"bad mfn {int(mfns[slot]):#x} for L{level}[{slot}] of pfn {pfn:#x}: the guest maps a "
                        "frame that is not its own (shared_info or a grant must be unmapped before a suspend)")
    pfns = pmap.machine.m2p[np.where(present, mfns, 0)].astype(np.uint64)
    mask = np.uint64(PTE_PFN_MASK)
    entries = np.where(present, (entries & ~mask) | (pfns << np.uint64(12)), entries)
    return entries.view(np.uint8)


def _vcpu_basic(v: Any, pmap: _Pseudophysmap, fpu: bytes | None) -> bytes:
    c = arch_get_info_guest(v)
    if fpu is not None:
        c["fpu_ctxt"] = fpu
        c["flags"] |= int(VGCF_i387_valid)
    vid = v.vcpu_id
    if vid == 0:
        c["user_regs.rdx"] = pmap.to_pfn(c["user_regs.rdx"], "the suspend record (vCPU 0's rdx)")
    for i in range((c["gdt_ents"] + 511) // 512):
        c[f"gdt_frames[{i}]"] = pmap.to_pfn(c[f"gdt_frames[{i}]"], f"frame {i} of vCPU {vid}'s GDT")
    c["ctrlreg[3]"] = pmap.to_pfn(c["ctrlreg[3]"] >> 12, f"vCPU {vid}'s cr3") << 12
    if c["ctrlreg[1]"]:
        c["ctrlreg[1]"] = 1 | pmap.to_pfn(c["ctrlreg[1]"] >> 12, f"vCPU {vid}'s cr1") << 12
    return pack_vcpu_guest_context(v.domain.abi, c)


def _vcpu_extended(v: Any) -> bytes:
    arch = v.arch
    return EXT_VCPUCONTEXT.pack(v.vcpu_id, EXT_VCPUCONTEXT.size, arch.syscall32_callback_eip,
                                arch.sysenter_callback_eip, arch.syscall32_callback_cs, arch.sysenter_callback_cs,
                                int(arch.syscall32_disables_events), int(arch.sysenter_disables_events), bytes(32))


class StreamSaver:
    """Writes a PV64 domain as libxc's saver does, in the order of the stream: :meth:`start` (headers, PV info,
    p2m frames), :meth:`send_pages` (PAGE_DATA, as often as pages change), :meth:`finish` (TSC info, shared info,
    vCPU contexts, END).

    Raises (on construction):
        SaveError: the domain is PV32 or has not published its p2m.
    """

    def __init__(self, hv: Hypervisor, d: Domain, out: BinaryIO, *, progress: SaveProgress | None = None) -> None:
        if d.is_compat:
            raise SaveError("saving a PV32 domain is not supported")
        self.hv = hv
        self.domain = d
        self.machine = d.system.machine
        self.p2m, self._p2m_frame_mfns = _guest_p2m(d)
        self.pmap = _Pseudophysmap(d, self.p2m)
        frames_ok = self.pmap.valid(self._p2m_frame_mfns)
        if not frames_ok.all():
            raise SaveError(f"bad mfn {int(self._p2m_frame_mfns[~frames_ok][0]):#x} for a frame of the p2m")
        self.writer = StreamWriter(out)
        self.progress = progress
        self.nr_pages = len(self.p2m)
        self.pages_sent = 0
        #: The frame of each pfn (0 where the p2m entry is invalid), for finding the pages the guest changed.
        self._frames_of_pfns = np.where(self.pmap.valid(self.p2m), self.p2m, 0)

    def start(self, config: dict[str, Any]) -> None:
        """The headers, X86_PV_INFO, STATIC_DATA_END and X86_PV_P2M_FRAMES."""
        w = self.writer
        version = self.domain.profile.version
        w.headers(config, version[0], version[1])
        w.record(Record.X86_PV_INFO, struct.pack("<BBHI", 8, 4, 0, 0))
        w.record(Record.STATIC_DATA_END)
        w.record(Record.X86_PV_P2M_FRAMES, struct.pack("<II", 0, self.pmap.max_pfn),
                 self.machine.m2p[self._p2m_frame_mfns].astype("<u8").tobytes())  # fmt: skip

    def send_pages(self, pfns: np.ndarray, *, live: bool = False) -> np.ndarray:
        """PAGE_DATA records for ``pfns`` (ascending); returns the pfns not sent. While the guest still runs
        (``live``), a page table that cannot be canonicalised yet (it maps a frame that is not the guest's, such
        as shared_info) is left for later, as libxc's saver does; otherwise that is a :class:`SaveError`."""
        machine, pmap = self.machine, self.pmap
        pinned = np.array(sorted(self.domain.pinned_tables), dtype=np.int64)
        deferred: list[int] = []
        for first in range(0, len(pfns), PAGE_BATCH):
            batch = pfns[first : first + PAGE_BATCH]
            mfns = self.p2m[batch]
            valid = pmap.valid(mfns)
            safe = np.where(valid, mfns, 0)
            types = machine.page_types(safe)
            types = np.where((types >= 1) & (types <= 4), types, 0)
            types = np.where(np.isin(safe, pinned) & (types > 0), types | PFN_PINNED, types)
            types = np.where(valid, types, int(PfnType.XTAB))
            pages = machine.frames[safe].copy()
            keep = np.ones(len(batch), dtype=bool)
            for row in np.flatnonzero(valid & (types & 0x7 > 0)):
                level = int(types[row]) & 0x7
                try:
                    pages[row] = _normalise_table(pages[row], level, pmap, int(batch[row]))
                except SaveError:
                    if not live:
                        raise
                    keep[row] = False
                    deferred.append(int(batch[row]))
            if keep.any():
                sent = keep & valid
                self.writer.page_data(batch[keep], types[keep], pages[sent])
                self.pages_sent += int(keep.sum())
            if self.progress is not None:
                self.progress(min(self.nr_pages, int(batch[-1]) + 1), self.nr_pages)
        return np.array(deferred, dtype=np.int64)

    def finish(self) -> None:
        """X86_TSC_INFO, SHARED_INFO, each online vCPU's BASIC and EXTENDED records (its FPU state from the CPU
        engine, if one is attached, as Xen's getvcpucontext gives ``fpu_ctxt``), END."""
        hv, d, w, machine = self.hv, self.domain, self.writer, self.machine
        khz = d.system.clock.tsc_hz // 1000  # type: ignore[attr-defined]
        w.record(Record.X86_TSC_INFO, TSC_INFO.pack(TSC_MODE_DEFAULT, khz, hv.now_ns(), d.tsc_incarnation, 0))
        w.record(Record.SHARED_INFO, machine.read(d.shared_info_maddr, PAGE_SIZE))
        engine = hv.scheduler.executor
        for v in d.vcpus:
            if v.pause_flags & VPF_down:  # offline vCPUs are not sent
                continue
            fpu = engine.context(v).fpu_state() if engine is not None else None
            w.record(Record.X86_PV_VCPU_BASIC, struct.pack("<II", v.vcpu_id, 0), _vcpu_basic(v, self.pmap, fpu))
            w.record(Record.X86_PV_VCPU_EXTENDED, struct.pack("<II", v.vcpu_id, 0), _vcpu_extended(v))
        w.end()

    def frames(self) -> np.ndarray:
        """A copy of every page's contents now (``nr_pages`` rows of 4096), to find the pages a guest changes."""
        return self.machine.frames[self._frames_of_pfns].copy()

    def changed_since(self, snapshot: np.ndarray) -> np.ndarray:
        """The pfns whose contents differ from ``snapshot`` (ascending)."""
        mfns = self._frames_of_pfns
        frames = self.machine.frames
        changed = []
        for first in range(0, len(mfns), _COMPARE_CHUNK):  # in chunks: no copy of the whole memory
            now = frames[mfns[first : first + _COMPARE_CHUNK]].view(np.uint64)
            was = snapshot[first : first + _COMPARE_CHUNK].view(np.uint64)
            changed.append(first + np.flatnonzero((now != was).any(axis=1)))
        return np.concatenate(changed).astype(np.int64) if changed else np.empty(0, dtype=np.int64)


def write_domain_stream(
    hv: Hypervisor, d: Domain, out: BinaryIO, config: dict[str, Any], *, progress: SaveProgress | None = None
) -> tuple[int, int, float]:
    """Write the suspended (or paused) PV64 domain ``d`` to ``out`` as an xl save file; returns
    ``(pfns written, bytes written, host seconds)``.

    Raises:
        SaveError: the domain is PV32, has not published its p2m, or maps frames that cannot be saved.
    """
    start = time.monotonic()
    saver = StreamSaver(hv, d, out, progress=progress)
    saver.start(config)
    saver.send_pages(np.arange(saver.nr_pages, dtype=np.int64))
    saver.finish()
    return saver.nr_pages, saver.writer.bytes_written, time.monotonic() - start
