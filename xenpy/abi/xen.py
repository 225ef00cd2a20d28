"""Core structures and constants of ``public/xen.h`` (spec 5.2-5.5, 5.9, 6.4, 6.6, 6.9).

Structures: ``vcpu_time_info``, ``vcpu_info``, ``shared_info``, ``start_info``, ``mmu_update``, ``mmuext_op``,
``multicall_entry``. Hypercall numbers and the ``MMUEXT_*``/``VMASST_CMD_*`` sub-op values are generated from
``hypercalls/`` (see :mod:`xenpy.abi.generated.hypercalls`); this module re-exports them.
"""

from enum import IntEnum, IntFlag

from xenpy.abi.cstruct import CStruct, CUnion, Width

XEN_LEGACY_MAX_VCPUS = 32
NR_VIRQS = 24
XEN_PVCLOCK_TSC_STABLE_BIT = 1 << 0
XEN_PVCLOCK_GUEST_STOPPED = 1 << 1
START_INFO_MAGIC_X86_64 = b"xen-3.0-x86_64"
START_INFO_MAGIC_X86_32P = b"xen-3.0-x86_32p"


class VIRQ(IntEnum):
    """Virtual interrupts (spec 6.4). See :data:`VIRQ_KIND` for per-vCPU / per-domain / global."""

    VIRQ_TIMER = 0
    VIRQ_DEBUG = 1
    VIRQ_CONSOLE = 2
    VIRQ_DOM_EXC = 3
    VIRQ_TBUF = 4
    VIRQ_DEBUGGER = 6
    VIRQ_XENOPROF = 7
    VIRQ_CON_RING = 8
    VIRQ_PCPU_STATE = 9
    VIRQ_MEM_EVENT = 10
    VIRQ_ARGO = 11
    VIRQ_ENOMEM = 12
    VIRQ_XENPMU = 13
    VIRQ_ARCH_0 = 16
    VIRQ_ARCH_1 = 17
    VIRQ_ARCH_2 = 18
    VIRQ_ARCH_3 = 19
    VIRQ_ARCH_4 = 20
    VIRQ_ARCH_5 = 21
    VIRQ_ARCH_6 = 22
    VIRQ_ARCH_7 = 23


VIRQ_MCA = VIRQ.VIRQ_ARCH_0


class VirqKind(IntEnum):
    """How a VIRQ is bound: per vCPU (V), per domain (D) or global (G) (spec 6.4)."""

    PER_VCPU = 0
    PER_DOMAIN = 1
    GLOBAL = 2


VIRQ_KIND: dict[int, VirqKind] = {
    VIRQ.VIRQ_TIMER: VirqKind.PER_VCPU,
    VIRQ.VIRQ_DEBUG: VirqKind.PER_VCPU,
    VIRQ.VIRQ_CONSOLE: VirqKind.GLOBAL,
    VIRQ.VIRQ_DOM_EXC: VirqKind.GLOBAL,
    VIRQ.VIRQ_TBUF: VirqKind.GLOBAL,
    VIRQ.VIRQ_DEBUGGER: VirqKind.GLOBAL,
    VIRQ.VIRQ_XENOPROF: VirqKind.PER_VCPU,
    VIRQ.VIRQ_CON_RING: VirqKind.GLOBAL,
    VIRQ.VIRQ_PCPU_STATE: VirqKind.GLOBAL,
    VIRQ.VIRQ_MEM_EVENT: VirqKind.GLOBAL,
    VIRQ.VIRQ_ARGO: VirqKind.PER_DOMAIN,
    VIRQ.VIRQ_ENOMEM: VirqKind.GLOBAL,
    VIRQ.VIRQ_XENPMU: VirqKind.PER_VCPU,
    VIRQ.VIRQ_ARCH_0: VirqKind.GLOBAL,
}


class VMASST_TYPE(IntEnum):
    """VM assist types (spec 6.6)."""

    VMASST_TYPE_4gb_segments = 0
    VMASST_TYPE_4gb_segments_notify = 1
    VMASST_TYPE_writable_pagetables = 2
    VMASST_TYPE_pae_extended_cr3 = 3
    VMASST_TYPE_architectural_iopl = 4
    VMASST_TYPE_runstate_update_flag = 5
    VMASST_TYPE_m2p_strict = 32


# Valid VM assists for a PV64 domain: bits {0, 1, 2, 3, 4, 5, 32} (spec 1.3 step 9).
PV64_VM_ASSIST_MASK = sum(1 << t for t in VMASST_TYPE)


class DOMID(IntEnum):
    """Reserved domain ids (spec 6.9)."""

    DOMID_FIRST_RESERVED = 0x7FF0
    DOMID_SELF = 0x7FF0
    DOMID_IO = 0x7FF1
    DOMID_XEN = 0x7FF2
    DOMID_COW = 0x7FF3
    DOMID_INVALID = 0x7FF4
    DOMID_ANY = 0x7FF5
    DOMID_IDLE = 0x7FFF


class SIF(IntFlag):
    """``start_info.flags`` (spec 6.9)."""

    SIF_PRIVILEGED = 1 << 0
    SIF_INITDOMAIN = 1 << 1
    SIF_MULTIBOOT_MOD = 1 << 2
    SIF_MOD_START_PFN = 1 << 3
    SIF_VIRT_P2M_4TOOLS = 1 << 4
    SIF_PM_MASK = 0xFF << 8


class MMU(IntEnum):
    """``mmu_update.ptr`` low-bit command types (``public/xen.h``)."""

    MMU_NORMAL_PT_UPDATE = 0
    MMU_MACHPHYS_UPDATE = 1
    MMU_PT_UPDATE_PRESERVE_AD = 2
    MMU_PT_UPDATE_NO_TRANSLATE = 3


class UVMF(IntFlag):
    """``update_va_mapping`` flags (``public/xen.h``)."""

    UVMF_NONE = 0
    UVMF_TLB_FLUSH = 1
    UVMF_INVLPG = 2
    UVMF_FLUSHTYPE_MASK = 3
    UVMF_MULTI = 0
    UVMF_LOCAL = 0
    UVMF_ALL = 1 << 2


for _enum in (VIRQ, VMASST_TYPE, DOMID, SIF, MMU, UVMF):
    globals().update(_enum.__members__)
del _enum


def define(w: Width, abi: dict) -> None:
    """Add this header's structures for width ``w`` to ``abi`` (needs ``arch_x86`` defined first)."""
    ul = w.unsigned_long
    abi["vcpu_time_info"] = CStruct(
        "vcpu_time_info",
        ("version", w.uint32_t),
        ("pad0", w.uint32_t),
        ("tsc_timestamp", w.uint64_t),
        ("system_time", w.uint64_t),
        ("tsc_to_system_mul", w.uint32_t),
        ("tsc_shift", w.int8_t),
        ("flags", w.uint8_t),
        ("pad1", w.array(w.uint8_t, 2)),
    )
    abi["vcpu_info"] = CStruct(
        "vcpu_info",
        ("evtchn_upcall_pending", w.uint8_t),
        ("evtchn_upcall_mask", w.uint8_t),
        ("evtchn_pending_sel", w.xen_ulong_t),
        ("arch", abi["arch_vcpu_info"]),
        ("time", abi["vcpu_time_info"]),
    )
    nr_words = w.xen_ulong_t.size * 8
    wallclock = [("wc_version", w.uint32_t), ("wc_sec", w.uint32_t), ("wc_nsec", w.uint32_t)]
    if w.bits == 64:
        wallclock.append(("wc_sec_hi", w.uint32_t))
    abi["shared_info"] = CStruct(
        "shared_info",
        ("vcpu_info", w.array(abi["vcpu_info"], XEN_LEGACY_MAX_VCPUS)),
        ("evtchn_pending", w.array(w.xen_ulong_t, nr_words)),
        ("evtchn_mask", w.array(w.xen_ulong_t, nr_words)),
        *wallclock,
        ("arch", abi["arch_shared_info"]),
    )
    domu = CStruct("start_info_console_domU", ("mfn", w.xen_pfn_t), ("evtchn", w.uint32_t))
    dom0 = CStruct("start_info_console_dom0", ("info_off", w.uint32_t), ("info_size", w.uint32_t))
    abi["start_info"] = CStruct(
        "start_info",
        ("magic", w.array(w.char, 32)),
        ("nr_pages", ul),
        ("shared_info", ul),
        ("flags", w.uint32_t),
        ("store_mfn", w.xen_pfn_t),
        ("store_evtchn", w.uint32_t),
        ("console", CUnion("start_info_console", ("domU", domu), ("dom0", dom0))),
        ("pt_base", ul),
        ("nr_pt_frames", ul),
        ("mfn_list", ul),
        ("mod_start", ul),
        ("mod_len", ul),
        ("cmd_line", w.array(w.int8_t, 1024)),
        ("first_p2m_pfn", ul),
        ("nr_p2m_frames", ul),
    )
    abi["mmu_update"] = CStruct("mmu_update", ("ptr", w.uint64_t), ("val", w.uint64_t))
    abi["mmuext_op"] = CStruct(
        "mmuext_op",
        ("cmd", w.unsigned_int),
        ("arg1", CUnion("mmuext_op_arg1", ("mfn", w.xen_pfn_t), ("linear_addr", ul))),
        ("arg2", CUnion("mmuext_op_arg2", ("nr_ents", w.unsigned_int), ("vcpumask", w.handle("const_void")),
                        ("src_mfn", w.xen_pfn_t))),
    )
    abi["multicall_entry"] = CStruct(
        "multicall_entry",
        ("op", w.xen_ulong_t),
        ("result", w.xen_ulong_t),
        ("args", w.array(w.xen_ulong_t, 6)),
    )
