"""x86 architecture structures (``public/arch-x86/xen.h``, ``xen-x86_64.h``, ``xen-x86_32.h``; spec 5.3-5.9).

``cpu_user_regs``, ``trap_info``, ``vcpu_guest_context``, ``arch_vcpu_info``, ``arch_shared_info`` and the x86_64
``iret_context``; the flat segment selectors and the ``VGCF_*`` flags. Where the two widths' headers differ in
shape (not just in the size of ``unsigned long``), the definition branches exactly where Xen's headers do.
"""

from enum import IntEnum, IntFlag

from xenpy.abi.cstruct import CStruct, Width


class FlatSelector(IntEnum):
    """PV flat segment selectors (spec 7.5)."""

    FLAT_RING3_CS32 = 0xE023
    FLAT_RING3_CS64 = 0xE033
    FLAT_RING3_DS32 = 0xE02B
    FLAT_RING3_DS64 = 0x0000
    FLAT_RING3_SS32 = 0xE02B
    FLAT_RING3_SS64 = 0xE02B
    # PV64 kernel and user aliases share the ring-3 values.
    FLAT_KERNEL_CS = 0xE033
    FLAT_KERNEL_DS = 0x0000
    FLAT_KERNEL_SS = 0xE02B
    FLAT_USER_CS = 0xE033
    FLAT_USER_DS = 0x0000
    FLAT_USER_SS = 0xE02B


class FlatSelector32(IntEnum):
    """PV32 (x86_32) flat selectors (spec 7.5)."""

    FLAT_RING1_CS = 0xE019
    FLAT_RING1_DS = 0xE021
    FLAT_RING1_SS = 0xE021
    FLAT_RING3_CS = 0xE02B
    FLAT_RING3_DS = 0xE033
    FLAT_RING3_SS = 0xE033


class VGCF(IntFlag):
    """``vcpu_guest_context.flags`` (spec 5.8)."""

    VGCF_i387_valid = 1 << 0
    VGCF_in_kernel = 1 << 2
    VGCF_failsafe_disables_events = 1 << 3
    VGCF_syscall_disables_events = 1 << 4
    VGCF_online = 1 << 5
    VGCF_in_syscall = 1 << 8  # iret ``flags`` only


class TrapInfoFlags(IntFlag):
    """``trap_info.flags``: bits 0-1 are the DPL, bit 2 masks events on entry (spec 5.7)."""

    TI_DPL_MASK = 3
    TI_IF = 4


class SegBase(IntEnum):
    """``HYPERVISOR_set_segment_base`` selectors (``xen-x86_64.h``)."""

    SEGBASE_fs = 0
    SEGBASE_gs_user = 1
    SEGBASE_gs_kernel = 2
    SEGBASE_gs_user_sel = 3


# Not an enum: the PV64 hypervisor hole and machine-to-phys table (spec 6.9).
HYPERVISOR_VIRT_START = 0xFFFF800000000000
HYPERVISOR_VIRT_END = 0xFFFF880000000000
MACH2PHYS_VIRT_START = 0xFFFF800000000000
#: ``__HYPERVISOR_COMPAT_VIRT_START``: where the hypervisor hole starts for a PV32 guest (its default).
HYPERVISOR_COMPAT_VIRT_START = 0xF5800000
MACH2PHYS_VIRT_END = 0xFFFF804000000000

globals().update(FlatSelector.__members__)
globals().update(FlatSelector32.__members__)
globals().update(VGCF.__members__)
globals().update(TrapInfoFlags.__members__)
globals().update(SegBase.__members__)


def define(w: Width, abi: dict) -> None:
    """Add this header's structures for width ``w`` to ``abi``."""
    ul = w.unsigned_long
    if w.bits == 64:
        regs = [(name, w.uint64_t) for name in (
            "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
            "rax", "rcx", "rdx", "rsi", "rdi")]
        abi["cpu_user_regs"] = CStruct(
            "cpu_user_regs",
            *regs,
            ("error_code", w.uint32_t),
            ("entry_vector", w.uint32_t),
            ("rip", w.uint64_t),
            ("cs", w.uint16_t),
            ("_pad0", w.array(w.uint16_t, 1)),
            ("saved_upcall_mask", w.uint8_t),
            ("_pad1", w.array(w.uint8_t, 3)),
            ("rflags", w.uint64_t),
            ("rsp", w.uint64_t),
            ("ss", w.uint16_t), ("_pad2", w.array(w.uint16_t, 3)),
            ("es", w.uint16_t), ("_pad3", w.array(w.uint16_t, 3)),
            ("ds", w.uint16_t), ("_pad4", w.array(w.uint16_t, 3)),
            ("fs", w.uint16_t), ("_pad5", w.array(w.uint16_t, 3)),
            ("gs", w.uint16_t), ("_pad6", w.array(w.uint16_t, 3)),
        )
    else:
        abi["cpu_user_regs"] = CStruct(
            "cpu_user_regs",
            *[(name, w.uint32_t) for name in ("ebx", "ecx", "edx", "esi", "edi", "ebp", "eax")],
            ("error_code", w.uint16_t),
            ("entry_vector", w.uint16_t),
            ("eip", w.uint32_t),
            ("cs", w.uint16_t),
            ("saved_upcall_mask", w.uint8_t),
            ("_pad0", w.uint8_t),
            ("eflags", w.uint32_t),
            ("esp", w.uint32_t),
            ("ss", w.uint16_t), ("_pad1", w.uint16_t),
            ("es", w.uint16_t), ("_pad2", w.uint16_t),
            ("ds", w.uint16_t), ("_pad3", w.uint16_t),
            ("fs", w.uint16_t), ("_pad4", w.uint16_t),
            ("gs", w.uint16_t), ("_pad5", w.uint16_t),
        )

    abi["trap_info"] = CStruct(
        "trap_info",
        ("vector", w.uint8_t),
        ("flags", w.uint8_t),
        ("cs", w.uint16_t),
        ("address", ul),
    )

    tail = (
        [
            ("event_callback_eip", ul),
            ("failsafe_callback_eip", ul),
            ("syscall_callback_eip", ul),
            ("vm_assist", ul),
            ("fs_base", w.uint64_t),
            ("gs_base_kernel", w.uint64_t),
            ("gs_base_user", w.uint64_t),
        ]
        if w.bits == 64
        else [
            ("event_callback_cs", ul),
            ("event_callback_eip", ul),
            ("failsafe_callback_cs", ul),
            ("failsafe_callback_eip", ul),
            ("vm_assist", ul),
        ]
    )
    abi["vcpu_guest_context"] = CStruct(
        "vcpu_guest_context",
        ("fpu_ctxt", w.array(w.char, 512)),
        ("flags", ul),
        ("user_regs", abi["cpu_user_regs"]),
        ("trap_ctxt", w.array(abi["trap_info"], 256)),
        ("ldt_base", ul),
        ("ldt_ents", ul),
        ("gdt_frames", w.array(ul, 16)),
        ("gdt_ents", ul),
        ("kernel_ss", ul),
        ("kernel_sp", ul),
        ("ctrlreg", w.array(ul, 8)),
        ("debugreg", w.array(ul, 8)),
        *tail,
    )

    abi["arch_vcpu_info"] = CStruct(
        "arch_vcpu_info",
        ("cr2", ul),
        ("pad", w.array(ul, 1 if w.bits == 64 else 5)),
    )

    arch_shared = [
        ("max_pfn", ul),
        ("pfn_to_mfn_frame_list_list", w.xen_pfn_t),
        ("nmi_reason", ul),
        ("p2m_cr3", ul),
        ("p2m_vaddr", ul),
        ("p2m_generation", ul),
    ]
    if w.bits == 32:
        arch_shared.append(("wc_sec_hi", w.uint32_t))
    abi["arch_shared_info"] = CStruct("arch_shared_info", *arch_shared)

    if w.bits == 64:
        abi["iret_context"] = CStruct(
            "iret_context",
            *[(name, w.uint64_t) for name in ("rax", "r11", "rcx", "flags", "rip", "cs", "rflags", "rsp", "ss")],
        )
