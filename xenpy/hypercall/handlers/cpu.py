"""The hypercalls that need the CPU: iret, set_segment_base, set_gdt, fpu_taskswitch.

These act on live CPU state (registers, segment bases, the GDT the CPU uses, CR0.TS), so they live in the
engine layer; an engine installs them in its hypervisor's dispatcher with :func:`install`. Every other
hypercall is CPU-independent and lives in :mod:`xenpy.hypercall.handlers`.

* ``HYPERVISOR_iret`` (23; ``xen/arch/x86/pv/iret.c:do_iret``; spec 3.3, 7.3): see
  :meth:`~xenpy.engine.pv64.Any.do_iret`.
* ``HYPERVISOR_set_segment_base`` (25; ``xen/arch/x86/pv/misc-hypercalls.c:do_set_segment_base``).
* ``HYPERVISOR_set_gdt`` (2; ``xen/arch/x86/pv/descriptor-tables.c:do_set_gdt`` / ``pv_set_gdt``, with
  ``check_descriptor`` from ``xen/arch/x86/x86_64/mm.c``).
* ``HYPERVISOR_fpu_taskswitch`` (5; ``do_fpu_taskswitch``).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.core.memory import PAGE_SHIFT, PageType
from xenpy.core.pagetable import GuestFault, is_canonical

if TYPE_CHECKING:
    from xenpy.core.memory import MachineMemory
    from xenpy.hypercall.context import HypercallContext

SEGBASE_FS = 0
SEGBASE_GS_USER = 1
SEGBASE_GS_KERNEL = 2
SEGBASE_GS_USER_SEL = 3
#: ``FIRST_RESERVED_GDT_ENTRY``: a guest GDT has at most this many entries (14 pages).
FIRST_RESERVED_GDT_ENTRY = 7168
_ENOSYS = -int(XenErrno.ENOSYS)
_EINVAL = -int(XenErrno.EINVAL)
_EFAULT = -int(XenErrno.EFAULT)
_SEGMENT_P = 1 << 15
_SEGMENT_DPL = 3 << 13
_SEGMENT_S = 1 << 12
_SEGMENT_TYPE = 0xF << 8


def check_descriptor(a: int, b: int) -> tuple[int, int] | None:
    """Xen's ``check_descriptor`` for a PV64 guest: the descriptor as stored, or None if refused.

    Not-present descriptors and type 0 are kept; code and data segments get their DPL raised to 3 (the guest
    kernel's RPL); call gates are refused (xenpy does not emulate them); every other system descriptor is
    refused.

    Args:
        a: the descriptor's low 32 bits.
        b: its high 32 bits.
    """
    if not b & _SEGMENT_P:
        return a, b
    dpl = (b >> 13) & 3
    if dpl < 3:
        dpl = 3
    b = (b & ~_SEGMENT_DPL) | (dpl << 13)
    if b & _SEGMENT_S:
        return a, b
    if b & _SEGMENT_TYPE == 0:
        return a, b
    return None


def get_seg_desc_page(machine: MachineMemory, mfn: int) -> bool:
    """Take a ``PageType.seg_desc`` reference on ``mfn``, validating its 512 descriptors on first typing.

    Validation rewrites each descriptor as :func:`check_descriptor` returns it (``alloc_segdesc_page``).

    Returns:
        False (nothing changed) if the frame has another type or holds a refused descriptor.
    """
    if machine.type_count(mfn) == 0:
        base = mfn << PAGE_SHIFT
        raw = machine.read(base, 4096)
        fixed = bytearray(raw)
        for i in range(512):
            a, b = struct.unpack_from("<II", raw, 8 * i)
            checked = check_descriptor(a, b)
            if checked is None:
                return False
            struct.pack_into("<II", fixed, 8 * i, *checked)
        if not machine.get_page_type(mfn, PageType.seg_desc):
            return False
        if fixed != raw:
            machine.write(base, bytes(fixed))
        return True
    return machine.get_page_type(mfn, PageType.seg_desc)


def do_set_gdt(ctx: Any, frame_list: int, entries: int) -> int:
    """``HYPERVISOR_set_gdt(frame_list, entries)``: load a new GDT for the calling vCPU.

    Arguments: rdi = guest pointer to ``ceil(entries / 512)`` frame numbers (mfns), esi = entries.

    * -EINVAL: ``entries`` > 7168 (FIRST_RESERVED_GDT_ENTRY);
    * -EFAULT: the frame list cannot be read;
    * -EINVAL: a frame is not the caller's, or cannot be typed as a descriptor page (it is a page table or
      mapped writable, or holds a descriptor :func:`check_descriptor` refuses). Nothing changes.

    On success the old frames' references are dropped, the new frames are mapped as GDT pages 0-13 of the
    vCPU and the TLB is flushed; returns 0.
    """
    v = ctx.vcpu
    d = v.domain
    machine = d.system.machine
    entries &= 0xFFFF_FFFF
    if entries > FIRST_RESERVED_GDT_ENTRY:
        return _EINVAL
    nr_frames = (entries + 511) // 512
    try:
        raw = v.copy_from_guest(frame_list, 8 * nr_frames) if nr_frames else b""
    except GuestFault:
        return _EFAULT
    frames = list(struct.unpack(f"<{nr_frames}Q", raw))
    taken: list[int] = []
    for mfn in frames:
        if not (0 <= mfn < machine.nr_frames and machine.owner_of(mfn) == d.domid) or not get_seg_desc_page(
            machine, mfn
        ):
            for t in taken:
                machine.put_page_type(t)
            return _EINVAL
        taken.append(mfn)
    arch = v.arch
    refs: list[int] = getattr(arch, "page_refs", [])
    old_nr = (arch.gdt_ents + 511) // 512
    for mfn in arch.gdt_frames[:old_nr]:
        if mfn in refs:
            refs.remove(mfn)
            machine.put_page_type(mfn)
    refs.extend(taken)
    arch.page_refs = refs
    arch.gdt_frames = frames + [0] * (16 - len(frames))
    arch.gdt_ents = entries
    return 0


def do_set_segment_base(ctx: Any, which: int, base: int) -> int:
    """``HYPERVISOR_set_segment_base(which, base)`` (called from guest kernel mode).

    * SEGBASE_fs (0), SEGBASE_gs_user (1), SEGBASE_gs_kernel (2): -EINVAL for a non-canonical ``base``;
      otherwise the FS base, the user GS base (the shadow base in kernel mode) or the kernel GS base (the
      active one) is set and recorded in ``vcpu.arch``.
    * SEGBASE_gs_user_sel (3): load ``base & 0xffff`` (RPL forced to 3 unless null) as the user GS selector;
      the user GS base becomes the descriptor's base. A selector that cannot be loaded loads the null selector
      instead (Xen's fix-up; the hypercall still returns 0).
    * any other ``which``: -EINVAL. A PV32 guest: -ENOSYS.
    """
    v = ctx.vcpu
    arch = v.arch
    if v.domain.is_compat:
        return _ENOSYS
    which &= 0xFFFF_FFFF
    if which in (SEGBASE_FS, SEGBASE_GS_USER, SEGBASE_GS_KERNEL):
        if not is_canonical(base):
            return _EINVAL
        if which == SEGBASE_FS:
            arch.fs_base = base
            ctx.write_registers({"fs_base": base})
        elif which == SEGBASE_GS_USER:
            arch.gs_base_user = base
            ctx.write_registers({"shadow_gs_base": base})
        else:
            arch.gs_base_kernel = base
            ctx.write_registers({"gs_base": base})
        return 0
    if which == SEGBASE_GS_USER_SEL:
        sel = base & 0xFFFF
        if sel > 3:
            sel |= 3
        kernel_base = ctx.read_registers(("gs_base",))["gs_base"]
        try:
            ctx.write_registers({"gs": sel})
        except Exception:
            ctx.write_registers({"gs": 0})
        user_base = ctx.read_registers(("gs_base",))["gs_base"]
        arch.gs_base_user = user_base
        ctx.write_registers({"shadow_gs_base": user_base, "gs_base": kernel_base})
        return 0
    return _EINVAL


def do_fpu_taskswitch(ctx: Any, set_ts: int) -> int:
    """``HYPERVISOR_fpu_taskswitch(set)``: set (non-zero) or clear the guest's CR0.TS; returns 0."""
    ctx.set_fpu_taskswitch(bool(set_ts & 0xFFFF_FFFF))
    return 0


def install(engine: Any) -> None:
    """Install the CPU-dependent hypercalls of ``engine`` in its hypervisor's dispatcher."""
    dispatcher = engine.hv.dispatcher

    def iret(hctx: HypercallContext, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
        ctx = engine.context_of(hctx.vcpu)
        rax = ctx.do_iret()
        ctx._sf[14] = 0  # the registers are set: the syscall shim writes nothing back
        if rax is None:
            ctx._request_stop()
            return 0
        return rax

    def set_segment_base(hctx: HypercallContext, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
        return do_set_segment_base(engine.context_of(hctx.vcpu), a1, a2)

    def set_gdt(hctx: HypercallContext, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
        return do_set_gdt(engine.context_of(hctx.vcpu), a1, a2)

    def fpu_taskswitch(hctx: HypercallContext, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
        return do_fpu_taskswitch(engine.context_of(hctx.vcpu), a1)

    dispatcher.set_entry(int(Hypercall.iret), iret)
    dispatcher.set_entry(int(Hypercall.set_segment_base), set_segment_base)
    dispatcher.set_entry(int(Hypercall.set_gdt), set_gdt)
    dispatcher.set_entry(int(Hypercall.fpu_taskswitch), fpu_taskswitch)
