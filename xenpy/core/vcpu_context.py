"""A vCPU's register and control state as ``vcpu_guest_context``: ``arch_set_info_guest`` for PV (spec 1.3), and
``arch_get_info_guest``, what XEN_DOMCTL_getvcpucontext gives the toolstack's saver.

Used by VCPUOP_initialise and by the domain builder (as Xen's toolstack uses DOMCTL_setvcpucontext). The
checks run in the order of spec 1.3 and the state is stored on ``vcpu.arch`` (:class:`~xenpy.core.domain.VcpuArch`)
as Xen stores it, including the partial update that step 9 can leave behind.

What is validated for memory (steps 15-16), given xenpy's page model (``xenpy.core.memory``):

* GDT frames (``pv_set_gdt``): ``gdt_ents <= 7168``; each of the ``ceil(gdt_ents / 512)`` frames must be owned
  by the domain and take a ``PageType.seg_desc`` type reference (so a frame that is a page table or mapped
  writable is refused). Descriptor contents are not inspected.
* cr3 (``ctrlreg[3]``, ``mfn << 12``) and a non-zero user L4 (``ctrlreg[1]``): the frame must be owned by the
  domain and take a ``PageType.l4`` type reference. A frame already typed L4 (e.g. built by
  ``PageTableBuilder``) passes; an untyped frame is validated shallowly: every present entry outside Xen's slots
  (256..271) must reference a frame owned by the domain and have no reserved (PSE) bit. Failure: -EINVAL.

Type references taken here are held by the vCPU (``arch.page_refs``) until it is re-initialised or destroyed.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from xenpy.abi.arch_x86 import (
    FLAT_KERNEL_CS,
    FLAT_KERNEL_DS,
    FLAT_KERNEL_SS,
    VGCF_i387_valid,
    VGCF_in_kernel,
    VGCF_online,
)
from xenpy.abi.cstruct import fast_codec
from xenpy.abi.errno import XenErrno
from xenpy.abi.x86 import (
    FIRST_RESERVED_GDT_ENTRY,
    MAX_LDT_ENTS,
    PAGE_PRESENT,
    PAGE_PSE,
    X86_DR6_DEFAULT,
    X86_DR7_DEFAULT,
    X86_EFLAGS_ALL,
    X86_EFLAGS_IF,
    X86_EFLAGS_IOPL,
    X86_EFLAGS_MBS,
    X86_EFLAGS_VM,
    XEN_L4_SLOTS,
)
from xenpy.core.debugreg import reset_debugregs, set_debugreg
from xenpy.core.memory import PAGE_SHIFT, PageType
from xenpy.core.pagetable import PAGE_OFFSET_MASK, PTE_PFN_MASK, gva_ok, is_canonical

if TYPE_CHECKING:
    from xenpy.core.domain import Vcpu


_GPRS_64 = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi")


def context_names(abi: ModuleType) -> tuple[str, ...]:
    """Flattened ``vcpu_guest_context`` field names, e.g. ``"user_regs.rip"``, ``"trap_ctxt[2].address"``."""
    return fast_codec(abi.vcpu_guest_context).names


def parse_vcpu_guest_context(abi: ModuleType, data: bytes) -> dict[str, Any]:
    """Flatten a raw ``vcpu_guest_context`` into ``{field name: value}``."""
    codec = fast_codec(abi.vcpu_guest_context)
    return dict(zip(codec.names, codec.unpack(data), strict=True))


def pack_vcpu_guest_context(abi: ModuleType, values: dict[str, Any]) -> bytes:
    """Build a raw ``vcpu_guest_context`` from flattened field values (missing fields are zero).

    Raises:
        KeyError: an unknown field name.
    """
    codec = fast_codec(abi.vcpu_guest_context)
    unknown = set(values) - set(codec.names)
    if unknown:
        raise KeyError(f"unknown vcpu_guest_context fields: {sorted(unknown)}")
    out = []
    for name in codec.names:
        default: Any = bytes(512) if name == "fpu_ctxt" else 0
        out.append(values.get(name, default))
    return codec.pack(*out)


def _fixup_selector(sel: int, rpl: int) -> int:
    """``fixup_guest_{stack,code}_selector``: raise the RPL to the guest kernel RPL."""
    return sel if (sel & 3) >= rpl else (sel & ~3) | rpl


def _release_refs(v: Vcpu, refs: list[int]) -> None:
    machine = v.domain.system.machine
    for mfn in refs:
        machine.put_page_type(mfn)
    refs.clear()


def _validate_root(v: Vcpu, mfn: int) -> bool:
    """Take an L4 type reference on ``mfn`` (validating an untyped frame shallowly)."""
    d = v.domain
    machine = d.system.machine
    if not (0 <= mfn < machine.nr_frames and machine.owner_of(mfn) == d.domid):
        return False
    if machine.type_count(mfn) == 0:
        table = machine.mv_u64
        base = mfn << 9
        for slot in range(512):
            if slot in XEN_L4_SLOTS:
                continue
            entry = table[base + slot]
            if not entry & PAGE_PRESENT:
                continue
            child = (entry & PTE_PFN_MASK) >> PAGE_SHIFT
            if entry & PAGE_PSE or child >= machine.nr_frames or machine.owner_of(child) != d.domid:
                return False
    return machine.get_page_type(mfn, PageType.l4)


def arch_set_info_guest(v: Vcpu, c: dict[str, Any]) -> int:
    """``arch_set_info_guest(v, c)`` for a PV vCPU (spec 1.3); returns 0 or ``-errno``.

    ``c`` is a flattened ``vcpu_guest_context`` (:func:`parse_vcpu_guest_context`).
    """
    d = v.domain
    compat = d.is_compat
    einval = -int(XenErrno.EINVAL)
    arch = v.arch
    flags = c["flags"]
    dr = [c[f"debugreg[{i}]"] for i in range(8)]

    # 1-2. Debug registers (>= 4.18, 15987cb03f; before it, step 13's set_debugreg drops a bad value).
    if d.profile.initialise_checks_debugregs:
        if not compat and (dr[6] >> 32 or dr[7] >> 32):
            return einval
        for i in range(4):
            if not gva_ok(dr[i]):
                return einval

    # 3-4. Canonical addresses and selector RPL fix-ups (on a local copy).
    rpl = 1 if compat else 3
    ip_name, sp_name, fl_name = (
        ("user_regs.eip", "user_regs.esp", "user_regs.eflags")
        if compat
        else ("user_regs.rip", "user_regs.rsp", "user_regs.rflags")
    )
    user_ss = _fixup_selector(c["user_regs.ss"], rpl)
    kernel_ss = _fixup_selector(c["kernel_ss"], rpl)
    user_cs = _fixup_selector(c["user_regs.cs"], rpl)
    # PV32 only: the callback selectors (PV64 callbacks have no selector).
    event_cs = _fixup_selector(c["event_callback_cs"], rpl) if compat else 0
    failsafe_cs = _fixup_selector(c["failsafe_callback_cs"], rpl) if compat else 0
    traps = [
        (
            c[f"trap_ctxt[{i}].vector"],
            c[f"trap_ctxt[{i}].flags"],
            _fixup_selector(c[f"trap_ctxt[{i}].cs"], rpl),
            c[f"trap_ctxt[{i}].address"],
        )
        for i in range(256)
    ]
    if not compat:
        addrs = [
            c[ip_name],
            c[sp_name],
            c["kernel_sp"],
            c["fs_base"],
            c["gs_base_kernel"],
            c["gs_base_user"],
            c["event_callback_eip"],
            c["syscall_callback_eip"],
            c["failsafe_callback_eip"],
        ]
        if c["ldt_ents"]:
            addrs.append(c["ldt_base"])
        if not all(is_canonical(a) for a in addrs):
            return einval
        if not all(is_canonical(t[3]) for t in traps):
            return einval

    # 5-6. LDT.
    if not compat and not gva_ok(c["ldt_base"]):
        return einval
    rflags = c[fl_name] & ~X86_EFLAGS_VM
    if c["ldt_base"] & PAGE_OFFSET_MASK or c["ldt_ents"] > MAX_LDT_ENTS:
        return einval

    # 7. Flags, kernel mode, FPU.
    arch.vgc_flags = flags
    arch.kernel_mode = bool(flags & VGCF_in_kernel) or compat
    if flags & VGCF_i387_valid:
        arch.fpu_ctxt = bytes(c["fpu_ctxt"])
        arch.fpu_initialised = True
    else:
        arch.fpu_ctxt = bytes(512)
        arch.fpu_initialised = False

    # 8. General registers, rflags, segments, trap table.
    regs: dict[str, int] = {}
    for name, value in c.items():
        if name.startswith("user_regs.") and not name.startswith("user_regs._pad"):
            regs[name[len("user_regs.") :]] = value
    regs["ss"] = user_ss
    regs["cs"] = user_cs
    fl_key = fl_name[len("user_regs.") :]
    regs[fl_key] = (rflags & X86_EFLAGS_ALL) | X86_EFLAGS_MBS
    arch.user_regs = regs
    arch.trap_ctxt = traps

    # 9. VM assists of vCPU 0 (after step 8 already changed the register state).
    vm_assist = c["vm_assist"]
    if v.vcpu_id == 0 and vm_assist & ~d.profile.vm_assist_valid_mask:
        return einval

    # 10. Virtual IOPL; IF forced on.
    arch.iopl = regs[fl_key] & X86_EFLAGS_IOPL
    regs[fl_key] = (regs[fl_key] & ~X86_EFLAGS_IOPL) | X86_EFLAGS_IF

    # 11. GDT size.
    gdt_ents = c["gdt_ents"]
    if ((gdt_ents + 511) & ((1 << 64) - 1)) // 512 > 16:
        return einval

    # 12. User page table needed for user mode; LDT stored.
    ctrlreg = [c[f"ctrlreg[{i}]"] for i in range(8)]
    if not v.is_initialised:
        if not compat and not flags & VGCF_in_kernel and ctrlreg[1] == 0:
            return einval
        arch.ldt_base = c["ldt_base"]
        arch.ldt_ents = c["ldt_ents"]

    # 13. Remaining control state.
    arch.kernel_ss = kernel_ss
    arch.kernel_sp = c["kernel_sp"]
    arch.ctrlreg = list(ctrlreg)
    # Debug registers: reset, then set_debugreg of DR0-DR3, DR6, DR7, ignoring its errors (a refused
    # value keeps the reset one).
    reset_debugregs(v)
    for i in (0, 1, 2, 3, 6, 7):
        set_debugreg(v, i, dr[i])
    arch.event_callback_eip = c["event_callback_eip"]
    arch.failsafe_callback_eip = c["failsafe_callback_eip"]
    if compat:
        arch.event_callback_cs = event_cs
        arch.failsafe_callback_cs = failsafe_cs
    else:
        arch.syscall_callback_eip = c["syscall_callback_eip"]
        arch.fs_base = c["fs_base"]
        arch.gs_base_kernel = c["gs_base_kernel"]
        arch.gs_base_user = c["gs_base_user"]

    # 14. The domain's VM assists come from vCPU 0.
    if v.vcpu_id == 0:
        d.vm_assist = vm_assist

    # 15. GDT frames.
    machine = d.system.machine
    refs: list[int] = getattr(arch, "page_refs", [])
    _release_refs(v, refs)
    if gdt_ents > FIRST_RESERVED_GDT_ENTRY:
        return einval
    nr_frames = (gdt_ents + 511) // 512
    frames = [c[f"gdt_frames[{i}]"] for i in range(16)]
    for mfn in frames[:nr_frames]:
        if not (0 <= mfn < machine.nr_frames and machine.owner_of(mfn) == d.domid) or not machine.get_page_type(
            mfn, PageType.seg_desc
        ):
            _release_refs(v, refs)
            return einval
        refs.append(mfn)
    arch.gdt_frames = frames
    arch.gdt_ents = gdt_ents

    # 16. Page tables: kernel cr3, then the user L4 if any.
    if compat:
        cr3_mfn = ((ctrlreg[3] >> 12) | (ctrlreg[3] << 20)) & 0xFFFF_FFFF
    else:
        cr3_mfn = ctrlreg[3] >> PAGE_SHIFT
    roots = [cr3_mfn]
    if not compat and ctrlreg[1]:
        roots.append(ctrlreg[1] >> PAGE_SHIFT)
    for mfn in roots:
        if not _validate_root(v, mfn):
            _release_refs(v, refs)
            return einval
        refs.append(mfn)
    arch.page_refs = refs

    # 17. Initialised; vCPU 0 refreshes the wallclock.
    v.is_initialised = True
    if v.vcpu_id == 0:
        d.system.update_domain_wallclock_time(d)

    # 18. VGCF_online.
    if flags & VGCF_online:
        v.pause_flags &= ~2
    else:
        v.pause_flags |= 2
    return 0


def arch_get_info_guest(v: Vcpu) -> dict[str, Any]:
    """``arch_get_info_guest(v, c)`` for a PV64 vCPU: its state as flattened ``vcpu_guest_context`` fields.

    What :func:`arch_set_info_guest` loads gives the same context back: the flags say i387-valid, in-kernel
    and online as the vCPU is, rflags carries the virtual IOPL, DR7 its emulated I/O enables, ``ctrlreg[3]`` and
    ``ctrlreg[1]`` the kernel and user L4 (``mfn << 12``), and the registers are those the engine last saved.

    Raises:
        ValueError: ``v`` belongs to a PV32 domain.
    """
    if v.domain.is_compat:
        raise ValueError("arch_get_info_guest: PV32 vCPUs are not supported")
    arch = v.arch
    c: dict[str, Any] = {f"user_regs.{name}": value for name, value in arch.user_regs.items()}
    flags = arch.vgc_flags & ~(VGCF_i387_valid | VGCF_in_kernel | VGCF_online)
    if arch.fpu_initialised:
        flags |= VGCF_i387_valid
    if arch.kernel_mode:
        flags |= VGCF_in_kernel
    if not v.pause_flags & 2:  # not _VPF_down
        flags |= VGCF_online
    c["flags"] = int(flags)
    c["fpu_ctxt"] = bytes(arch.fpu_ctxt)
    c["user_regs.rflags"] = (arch.user_regs.get("rflags", 0) & ~X86_EFLAGS_IOPL) | arch.iopl
    for i, (vector, tflags, cs, address) in enumerate(arch.trap_ctxt):
        c[f"trap_ctxt[{i}].vector"] = vector
        c[f"trap_ctxt[{i}].flags"] = tflags
        c[f"trap_ctxt[{i}].cs"] = cs
        c[f"trap_ctxt[{i}].address"] = address
    c["ldt_base"] = arch.ldt_base
    c["ldt_ents"] = arch.ldt_ents
    for i, frame in enumerate(arch.gdt_frames):
        c[f"gdt_frames[{i}]"] = frame
    c["gdt_ents"] = arch.gdt_ents
    c["kernel_ss"] = arch.kernel_ss
    c["kernel_sp"] = arch.kernel_sp
    for i, value in enumerate(arch.ctrlreg):
        c[f"ctrlreg[{i}]"] = value
    for i, value in enumerate(arch.debugreg):
        c[f"debugreg[{i}]"] = value | (arch.dr7_emul if i == 7 else 0)
    c["event_callback_eip"] = arch.event_callback_eip
    c["failsafe_callback_eip"] = arch.failsafe_callback_eip
    c["syscall_callback_eip"] = arch.syscall_callback_eip
    c["vm_assist"] = v.domain.vm_assist
    c["fs_base"] = arch.fs_base
    c["gs_base_kernel"] = arch.gs_base_kernel
    c["gs_base_user"] = arch.gs_base_user
    names = set(context_names(v.domain.abi))
    return {name: value for name, value in c.items() if name in names}


#: rflags at entry: IF, plus the always-one bit 1 that ``arch_set_info_guest`` adds (spec 7.5).
ENTRY_RFLAGS = 0x202


def pv64_entry_context(*, rip: int, rsp: int, rsi: int, cr3: int) -> dict[str, int]:
    """vCPU 0's state at a PV64 kernel's entry (spec 7.5, ``xg_dom_x86.c:vcpu_x86_64``), as flattened
    ``vcpu_guest_context`` fields for :func:`pack_vcpu_guest_context` (every other field is 0)."""
    return {
        "flags": int(VGCF_in_kernel | VGCF_online),
        "user_regs.rip": rip,
        "user_regs.rsp": rsp,
        "user_regs.rsi": rsi,
        "user_regs.rflags": ENTRY_RFLAGS,
        "user_regs.cs": int(FLAT_KERNEL_CS),
        "user_regs.ss": int(FLAT_KERNEL_SS),
        "user_regs.ds": int(FLAT_KERNEL_DS),
        "user_regs.es": int(FLAT_KERNEL_DS),
        "user_regs.fs": int(FLAT_KERNEL_DS),
        "user_regs.gs": int(FLAT_KERNEL_DS),
        "kernel_ss": int(FLAT_KERNEL_SS),
        "kernel_sp": rsp,
        "ctrlreg[3]": cr3,
        "debugreg[6]": X86_DR6_DEFAULT,
        "debugreg[7]": X86_DR7_DEFAULT,
    }
