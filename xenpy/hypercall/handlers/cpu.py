"""The hypercalls that act on the live CPU (iret, set_segment_base, set_gdt, fpu_taskswitch) and on descriptor
tables (update_descriptor).

Each is a registered handler like any other (``needs_cpu=True``): it takes the caller's
:class:`~xenpy.hypercall.context.HypercallContext` and the table-decoded arguments, and reaches the CPU only
through ``ctx.cpu``, the :class:`~xenpy.hypercall.cpu.CpuPort` of the CPU engine running the vCPU. Without
one (``ctx.cpu`` is None) the dispatcher answers -ENOSYS and the handler is not called.

* ``HYPERVISOR_iret`` (23; ``xen/arch/x86/pv/iret.c:do_iret``; spec 3.3, 7.3): the port pops the
  ``iret_context`` and returns through it (:meth:`CpuPort.do_iret <xenpy.hypercall.cpu.CpuPort.do_iret>`).
* ``HYPERVISOR_set_segment_base`` (25; ``xen/arch/x86/pv/misc-hypercalls.c:do_set_segment_base``).
* ``HYPERVISOR_set_gdt`` (2; ``xen/arch/x86/pv/descriptor-tables.c:do_set_gdt`` / ``pv_set_gdt``, with
  ``check_descriptor`` from ``xen/arch/x86/x86_64/mm.c``).
* ``HYPERVISOR_fpu_taskswitch`` (5; ``do_fpu_taskswitch``).
* ``HYPERVISOR_update_descriptor`` (10; ``xen/arch/x86/pv/descriptor-tables.c:do_update_descriptor``): needs no
  CPU; the engine maps GDT frames onto machine memory, so the next segment load sees the new descriptor.

Declared effects: ``iret`` and ``set_segment_base`` change the CPU only through the port, live (the mode
switch of an iret loads its page table there), so the engine has nothing to re-synchronise after them;
``set_gdt`` changes the vCPU's GDT frames (:attr:`~xenpy.hypercall.registry.Effect.GDT`), which the engine
maps before the guest runs again; ``fpu_taskswitch`` changes CR0.TS (:attr:`~xenpy.hypercall.registry.Effect.CR0`).
``update_descriptor`` writes guest memory only. None of them reads the clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xenpy.abi.arch_x86 import SegBase
from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.abi.x86 import (
    FIRST_RESERVED_GDT_ENTRY,
    GDT_ENTRIES_PER_PAGE,
    SEGMENT_DPL,
    SEGMENT_P,
    SEGMENT_S,
    SEGMENT_TYPE,
)
from xenpy.core.memory import PAGE_SHIFT, PAGE_SIZE, PageType
from xenpy.core.pagetable import is_canonical
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from xenpy.core.memory import MachineMemory
    from xenpy.hypercall.context import HypercallContext

_ENOSYS = -int(XenErrno.ENOSYS)
_EINVAL = -int(XenErrno.EINVAL)
#: Frames of a vCPU's GDT (``arch.gdt_frames``): the guest's 14, then Xen's reserved ones.
_GDT_FRAMES = 16
#: A descriptor page as 512 ``(low, high)`` 32-bit word pairs.
_DESCRIPTOR_PAGE = np.dtype([("a", "<u4"), ("b", "<u4")])
#: A ``xen_ulong_t`` frame list.
_FRAME_LIST = np.dtype("<u8")


def check_descriptor(a: int, b: int) -> tuple[int, int] | None:
    """Xen's ``check_descriptor`` for a PV64 guest: the descriptor as stored, or None if refused.

    Not-present descriptors and type 0 are kept; code and data segments get their DPL raised to 3 (the guest
    kernel's RPL); call gates are refused (xenpy does not emulate them); every other system descriptor is
    refused.

    Args:
        a: the descriptor's low 32 bits.
        b: its high 32 bits.
    """
    if not b & SEGMENT_P:
        return a, b
    b |= SEGMENT_DPL
    if b & SEGMENT_S or b & SEGMENT_TYPE == 0:
        return a, b
    return None


def check_descriptor_page(page: np.ndarray) -> np.ndarray | None:
    """:func:`check_descriptor` over a page of descriptors (an array of :data:`_DESCRIPTOR_PAGE`).

    Returns:
        The page as stored (a new array), or None if any descriptor is refused.
    """
    b = page["b"]
    present = (b & SEGMENT_P) != 0
    if np.any(present & ((b & SEGMENT_S) == 0) & ((b & SEGMENT_TYPE) != 0)):
        return None
    fixed = page.copy()
    fixed["b"] = np.where(present, b | SEGMENT_DPL, b)
    return fixed


def get_seg_desc_page(machine: MachineMemory, mfn: int) -> bool:
    """Take a ``PageType.seg_desc`` reference on ``mfn``, validating its 512 descriptors on first typing.

    Validation rewrites each descriptor as :func:`check_descriptor` returns it (``alloc_segdesc_page``).

    Returns:
        False (nothing changed) if the frame has another type or holds a refused descriptor.
    """
    if machine.type_count(mfn) != 0:
        return machine.get_page_type(mfn, PageType.seg_desc)
    base = mfn << PAGE_SHIFT
    page = np.frombuffer(machine.read(base, PAGE_SIZE), dtype=_DESCRIPTOR_PAGE)
    fixed = check_descriptor_page(page)
    if fixed is None or not machine.get_page_type(mfn, PageType.seg_desc):
        return False
    if not np.array_equal(fixed, page):
        machine.write(base, fixed.tobytes())
    return True


@hypercall_handler(Hypercall.set_gdt, effects=Effect.GDT, needs_cpu=True)
def do_set_gdt(ctx: HypercallContext, frame_list: int, entries: int) -> int:
    """``HYPERVISOR_set_gdt(frame_list, entries)``: load a new GDT for the calling vCPU.

    ``frame_list`` points to ``ceil(entries / 512)`` frame numbers (mfns).

    * -EINVAL: ``entries`` > FIRST_RESERVED_GDT_ENTRY (7168);
    * -EFAULT: the frame list cannot be read;
    * -EINVAL: a frame is not the caller's, or cannot be typed as a descriptor page (it is a page table or
      mapped writable, or holds a descriptor :func:`check_descriptor` refuses). Nothing changes.

    On success the old frames' references are dropped and the new frames become GDT pages 0-13 of the vCPU
    (the engine maps them before the guest runs again); returns 0.
    """
    if ctx.cpu is None:
        return _ENOSYS
    if entries > FIRST_RESERVED_GDT_ENTRY:
        return _EINVAL
    nr_frames = -(-entries // GDT_ENTRIES_PER_PAGE)
    raw = ctx.copy_from_guest(frame_list, _FRAME_LIST.itemsize * nr_frames) if nr_frames else b""
    frames: list[int] = np.frombuffer(raw, dtype=_FRAME_LIST).tolist()
    machine = ctx.machine
    domid = ctx.domain.domid
    taken: list[int] = []
    for mfn in frames:
        if not (0 <= mfn < machine.nr_frames and machine.owner_of(mfn) == domid) or not get_seg_desc_page(
            machine, mfn
        ):
            for t in taken:
                machine.put_page_type(t)
            return _EINVAL
        taken.append(mfn)
    arch = ctx.vcpu.arch
    refs: list[int] = getattr(arch, "page_refs", [])
    old_nr = -(-arch.gdt_ents // GDT_ENTRIES_PER_PAGE)
    for mfn in arch.gdt_frames[:old_nr]:
        if mfn in refs:
            refs.remove(mfn)
            machine.put_page_type(mfn)
    refs.extend(taken)
    arch.page_refs = refs
    arch.gdt_frames = frames + [0] * (_GDT_FRAMES - len(frames))
    arch.gdt_ents = entries
    return 0


@hypercall_handler(Hypercall.set_segment_base, effects=Effect.NONE, needs_cpu=True)
def do_set_segment_base(ctx: HypercallContext, which: int, base: int) -> int:
    """``HYPERVISOR_set_segment_base(which, base)`` (called from guest kernel mode).

    * SEGBASE_fs, SEGBASE_gs_user, SEGBASE_gs_kernel: -EINVAL for a non-canonical ``base``; otherwise the FS
      base, the user GS base (the shadow base in kernel mode) or the kernel GS base (the active one) is set
      and recorded in ``vcpu.arch``.
    * SEGBASE_gs_user_sel: load ``base & 0xffff`` (RPL forced to 3 unless null) as the user GS selector; the
      user GS base becomes the descriptor's base. A selector that cannot be loaded loads the null selector
      instead (Xen's fix-up; the hypercall still returns 0).
    * any other ``which``: -EINVAL. A PV32 guest: -ENOSYS.
    """
    cpu = ctx.cpu
    if cpu is None or ctx.domain.is_compat:
        return _ENOSYS
    arch = ctx.vcpu.arch
    if which in (SegBase.SEGBASE_fs, SegBase.SEGBASE_gs_user, SegBase.SEGBASE_gs_kernel):
        if not is_canonical(base):
            return _EINVAL
        if which == SegBase.SEGBASE_fs:
            arch.fs_base = base
            cpu.write_registers({"fs_base": base})
        elif which == SegBase.SEGBASE_gs_user:
            arch.gs_base_user = base
            cpu.write_registers({"shadow_gs_base": base})
        else:
            arch.gs_base_kernel = base
            cpu.write_registers({"gs_base": base})
        return 0
    if which == SegBase.SEGBASE_gs_user_sel:
        sel = base & 0xFFFF
        if sel > 3:
            sel |= 3
        kernel_base = cpu.read_registers(("gs_base",))["gs_base"]
        if not cpu.load_selector("gs", sel):
            cpu.load_selector("gs", 0)
        user_base = cpu.read_registers(("gs_base",))["gs_base"]
        arch.gs_base_user = user_base
        cpu.write_registers({"shadow_gs_base": user_base, "gs_base": kernel_base})
        return 0
    return _EINVAL


@hypercall_handler(Hypercall.fpu_taskswitch, effects=Effect.CR0, needs_cpu=True)
def do_fpu_taskswitch(ctx: HypercallContext, set_ts: int) -> int:
    """``HYPERVISOR_fpu_taskswitch(set)``: set (non-zero) or clear the guest's CR0.TS; returns 0."""
    cpu = ctx.cpu
    if cpu is None:
        return _ENOSYS
    cpu.set_fpu_taskswitch(bool(set_ts))
    return 0


@hypercall_handler(Hypercall.iret, effects=Effect.NONE, needs_cpu=True)
def do_iret(ctx: HypercallContext) -> int:
    """``HYPERVISOR_iret``: return from the guest kernel's exception or event frame at RSP.

    The port restores the interrupted registers itself (the engine writes no result back): the value returned
    is the saved RAX the guest resumes with. If the frame cannot be used the port has crashed the domain; the
    vCPU then leaves the guest (returns 0, which no guest sees).
    """
    cpu = ctx.cpu
    if cpu is None:
        return _ENOSYS
    rax = cpu.do_iret()
    cpu.registers_written()
    if rax is None:
        cpu.request_stop()
        return 0
    return rax


@hypercall_handler(Hypercall.update_descriptor, effects=Effect.NONE)
def do_update_descriptor(ctx: HypercallContext, gaddr: int, desc: int) -> int:
    """``HYPERVISOR_update_descriptor(gaddr, desc)``: write the descriptor ``desc`` at machine address ``gaddr``.

    * -EINVAL: ``gaddr`` is not 8-byte aligned, or :func:`check_descriptor` refuses ``desc``;
    * -EINVAL: the frame is not the caller's, or it is neither a descriptor page (one of a GDT or LDT) nor
      free to be typed writable (it is a page table).

    The descriptor is stored as :func:`check_descriptor` returns it (DPL raised to 3); returns 0.
    """
    if gaddr & 7:
        return _EINVAL
    checked = check_descriptor(desc & 0xFFFF_FFFF, desc >> 32)
    if checked is None:
        return _EINVAL
    machine = ctx.machine
    mfn = gaddr >> PAGE_SHIFT
    if not (0 <= mfn < machine.nr_frames and machine.owner_of(mfn) == ctx.domain.domid):
        return _EINVAL
    in_use = machine.type_count(mfn) and machine.page_type(mfn) == PageType.seg_desc
    if not machine.get_page_type(mfn, PageType.seg_desc if in_use else PageType.writable):
        return _EINVAL
    machine.write_u64(gaddr, checked[0] | checked[1] << 32)
    machine.put_page_type(mfn)
    return 0
