"""xenpy.abi constants against the spec's tables (6.2-6.10) and against the guest's C ``#define``s.

The spec tables are transcribed here by hand; the C values come from gcc evaluating every macro in a probe
that includes the guest headers, at the width each constant belongs to.
"""

from __future__ import annotations

from enum import Enum

import pytest

from xenpy.abi import (
    arch_x86,
    callback,
    elfnote,
    event_channel,
    features,
    grant_table,
    io_console,
    io_xs_wire,
    nmi,
    sched,
    vcpu,
    version,
    xen,
)
from xenpy.abi.errno import XenErrno

from .cprobe import ARCHES, arch_params, run_probe


def _members(enum: type[Enum]) -> dict[str, int]:
    """Every name of ``enum``, aliases included, with its value."""
    return {name: int(member.value) for name, member in enum.__members__.items()}


# --- spec tables, transcribed -------------------------------------------------------------------------------

SPEC_RUNSTATE = {"RUNSTATE_running": 0, "RUNSTATE_runnable": 1, "RUNSTATE_blocked": 2, "RUNSTATE_offline": 3}
SPEC_SHUTDOWN = {
    "SHUTDOWN_poweroff": 0,
    "SHUTDOWN_reboot": 1,
    "SHUTDOWN_suspend": 2,
    "SHUTDOWN_crash": 3,
    "SHUTDOWN_watchdog": 4,
    "SHUTDOWN_soft_reset": 5,
}
SPEC_VIRQ = {
    "VIRQ_TIMER": (0, "V"),
    "VIRQ_DEBUG": (1, "V"),
    "VIRQ_CONSOLE": (2, "G"),
    "VIRQ_DOM_EXC": (3, "G"),
    "VIRQ_TBUF": (4, "G"),
    "VIRQ_DEBUGGER": (6, "G"),
    "VIRQ_XENOPROF": (7, "V"),
    "VIRQ_CON_RING": (8, "G"),
    "VIRQ_PCPU_STATE": (9, "G"),
    "VIRQ_MEM_EVENT": (10, "G"),
    "VIRQ_ARGO": (11, "D"),
    "VIRQ_ENOMEM": (12, "G"),
    "VIRQ_XENPMU": (13, "V"),
    "VIRQ_ARCH_0": (16, "G"),
}
SPEC_EVTCHNSTAT = {
    "EVTCHNSTAT_closed": 0,
    "EVTCHNSTAT_unbound": 1,
    "EVTCHNSTAT_interdomain": 2,
    "EVTCHNSTAT_pirq": 3,
    "EVTCHNSTAT_virq": 4,
    "EVTCHNSTAT_ipi": 5,
}
SPEC_CALLBACKTYPE = {
    "CALLBACKTYPE_event": 0,
    "CALLBACKTYPE_failsafe": 1,
    "CALLBACKTYPE_syscall": 2,
    "CALLBACKTYPE_sysenter_deprecated": 3,
    "CALLBACKTYPE_nmi": 4,
    "CALLBACKTYPE_sysenter": 5,
    "CALLBACKTYPE_syscall32": 7,
}
SPEC_VMASST_TYPE = {
    "VMASST_TYPE_4gb_segments": 0,
    "VMASST_TYPE_4gb_segments_notify": 1,
    "VMASST_TYPE_writable_pagetables": 2,
    "VMASST_TYPE_pae_extended_cr3": 3,
    "VMASST_TYPE_architectural_iopl": 4,
    "VMASST_TYPE_runstate_update_flag": 5,
    "VMASST_TYPE_m2p_strict": 32,
}
SPEC_ELFNOTE = {
    "XEN_ELFNOTE_INFO": 0,
    "XEN_ELFNOTE_ENTRY": 1,
    "XEN_ELFNOTE_HYPERCALL_PAGE": 2,
    "XEN_ELFNOTE_VIRT_BASE": 3,
    "XEN_ELFNOTE_PADDR_OFFSET": 4,
    "XEN_ELFNOTE_XEN_VERSION": 5,
    "XEN_ELFNOTE_GUEST_OS": 6,
    "XEN_ELFNOTE_GUEST_VERSION": 7,
    "XEN_ELFNOTE_LOADER": 8,
    "XEN_ELFNOTE_PAE_MODE": 9,
    "XEN_ELFNOTE_FEATURES": 10,
    "XEN_ELFNOTE_BSD_SYMTAB": 11,
    "XEN_ELFNOTE_HV_START_LOW": 12,
    "XEN_ELFNOTE_L1_MFN_VALID": 13,
    "XEN_ELFNOTE_SUSPEND_CANCEL": 14,
    "XEN_ELFNOTE_INIT_P2M": 15,
    "XEN_ELFNOTE_MOD_START_PFN": 16,
    "XEN_ELFNOTE_SUPPORTED_FEATURES": 17,
    "XEN_ELFNOTE_PHYS32_ENTRY": 18,
    "XEN_ELFNOTE_PHYS32_RELOC": 19,
    "XEN_ELFNOTE_CRASH_INFO": 0x1000001,
    "XEN_ELFNOTE_CRASH_REGS": 0x1000002,
    "XEN_ELFNOTE_DUMPCORE_NONE": 0x2000000,
    "XEN_ELFNOTE_DUMPCORE_HEADER": 0x2000001,
    "XEN_ELFNOTE_DUMPCORE_XEN_VERSION": 0x2000002,
    "XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION": 0x2000003,
}
SPEC_SIF = {
    "SIF_PRIVILEGED": 1,
    "SIF_INITDOMAIN": 2,
    "SIF_MULTIBOOT_MOD": 4,
    "SIF_MOD_START_PFN": 8,
    "SIF_VIRT_P2M_4TOOLS": 0x10,
    "SIF_PM_MASK": 0xFF00,
}
SPEC_XENFEAT = {
    "XENFEAT_writable_page_tables": 0,
    "XENFEAT_writable_descriptor_tables": 1,
    "XENFEAT_auto_translated_physmap": 2,
    "XENFEAT_supervisor_mode_kernel": 3,
    "XENFEAT_pae_pgdir_above_4gb": 4,
    "XENFEAT_mmu_pt_update_preserve_ad": 5,
    "XENFEAT_highmem_assist": 6,
    "XENFEAT_gnttab_map_avail_bits": 7,
    "XENFEAT_hvm_callback_vector": 8,
    "XENFEAT_hvm_safe_pvclock": 9,
    "XENFEAT_hvm_pirqs": 10,
    "XENFEAT_dom0": 11,
    "XENFEAT_grant_map_identity": 12,
    "XENFEAT_memory_op_vnode_supported": 13,
    "XENFEAT_ARM_SMCCC_supported": 14,
    "XENFEAT_linux_rsdp_unrestricted": 15,
    "XENFEAT_not_direct_mapped": 16,
    "XENFEAT_direct_mapped": 17,
    "XENFEAT_runstate_phys_area": 18,
    "XENFEAT_vcpu_time_phys_area": 19,
    "XENFEAT_dm_msix_all_writes": 20,
}
SPEC_DOMID = {
    "DOMID_SELF": 0x7FF0,
    "DOMID_FIRST_RESERVED": 0x7FF0,
    "DOMID_IO": 0x7FF1,
    "DOMID_XEN": 0x7FF2,
    "DOMID_COW": 0x7FF3,
    "DOMID_INVALID": 0x7FF4,
    "DOMID_ANY": 0x7FF5,
    "DOMID_IDLE": 0x7FFF,
}
SPEC_VGCF = {
    "VGCF_i387_valid": 1 << 0,
    "VGCF_in_kernel": 1 << 2,
    "VGCF_failsafe_disables_events": 1 << 3,
    "VGCF_syscall_disables_events": 1 << 4,
    "VGCF_online": 1 << 5,
    "VGCF_in_syscall": 1 << 8,
}
SPEC_ERRNO = {
    "EPERM": 1,
    "ENOENT": 2,
    "ESRCH": 3,
    "EINTR": 4,
    "EIO": 5,
    "ENXIO": 6,
    "E2BIG": 7,
    "ENOEXEC": 8,
    "EBADF": 9,
    "ECHILD": 10,
    "EAGAIN": 11,
    "EWOULDBLOCK": 11,
    "ENOMEM": 12,
    "EACCES": 13,
    "EFAULT": 14,
    "EBUSY": 16,
    "EEXIST": 17,
    "EXDEV": 18,
    "ENODEV": 19,
    "ENOTDIR": 20,
    "EISDIR": 21,
    "EINVAL": 22,
    "ENFILE": 23,
    "EMFILE": 24,
    "ENOSPC": 28,
    "EROFS": 30,
    "EMLINK": 31,
    "EDOM": 33,
    "ERANGE": 34,
    "EDEADLK": 35,
    "EDEADLOCK": 35,
    "ENAMETOOLONG": 36,
    "ENOLCK": 37,
    "ENOSYS": 38,
    "ENOTEMPTY": 39,
    "ENODATA": 61,
    "ETIME": 62,
    "EBADMSG": 74,
    "EOVERFLOW": 75,
    "EILSEQ": 84,
    "ERESTART": 85,
    "ENOTSOCK": 88,
    "EMSGSIZE": 90,
    "EOPNOTSUPP": 95,
    "EADDRINUSE": 98,
    "EADDRNOTAVAIL": 99,
    "ENOBUFS": 105,
    "EISCONN": 106,
    "ENOTCONN": 107,
    "ETIMEDOUT": 110,
    "ECONNREFUSED": 111,
}


def test_runstate_constants() -> None:
    """RUNSTATE_*, XEN_RUNSTATE_UPDATE and VCPU_SSHOTTMR_future (spec 6.2)."""
    assert _members(vcpu.RUNSTATE) == SPEC_RUNSTATE
    assert vcpu.XEN_RUNSTATE_UPDATE == 1 << 63
    assert vcpu.VCPU_SSHOTTMR_future == 1


def test_shutdown_reasons() -> None:
    """SHUTDOWN_* and SHUTDOWN_MAX; SHUTDOWN_CODE_INVALID is ~0u (spec 6.3)."""
    assert _members(sched.SHUTDOWN) == SPEC_SHUTDOWN
    assert sched.SHUTDOWN_MAX == 5
    assert sched.SHUTDOWN_CODE_INVALID == 0xFFFFFFFF


def test_virqs() -> None:
    """VIRQ_* values, ARCH_0..7 = 16..23, NR_VIRQS = 24, and each VIRQ's binding kind (spec 6.4)."""
    expected = {name: value for name, (value, _) in SPEC_VIRQ.items()}
    expected |= {f"VIRQ_ARCH_{n}": 16 + n for n in range(8)}
    assert _members(xen.VIRQ) == expected
    assert xen.NR_VIRQS == 24
    assert xen.VIRQ_MCA == 16
    kinds = {"V": xen.VirqKind.PER_VCPU, "D": xen.VirqKind.PER_DOMAIN, "G": xen.VirqKind.GLOBAL}
    for name, (value, kind) in SPEC_VIRQ.items():
        assert xen.VIRQ_KIND[value] == kinds[kind], name


def test_event_channel_constants() -> None:
    """EVTCHNSTAT_* and the channel counts of the 2-level and FIFO ABIs (spec 6.5)."""
    assert _members(event_channel.EVTCHNSTAT) == SPEC_EVTCHNSTAT
    assert event_channel.EVTCHN_2L_NR_CHANNELS_X86_64 == 4096
    assert event_channel.EVTCHN_2L_NR_CHANNELS_X86_32 == 1024
    assert event_channel.EVTCHN_FIFO_NR_CHANNELS == 2**17


def test_callbacks_and_vm_assists() -> None:
    """CALLBACKTYPE_*, CALLBACKF_mask_events and VMASST_TYPE_*; the PV64 assist mask (spec 6.6, 1.3)."""
    assert _members(callback.CALLBACKTYPE) == SPEC_CALLBACKTYPE
    assert callback.CALLBACKF_mask_events == 1
    assert _members(xen.VMASST_TYPE) == SPEC_VMASST_TYPE
    assert xen.PV64_VM_ASSIST_MASK == sum(1 << bit for bit in (0, 1, 2, 3, 4, 5, 32))


def test_elfnotes() -> None:
    """XEN_ELFNOTE_* and XEN_ELFNOTE_MAX = PHYS32_RELOC (spec 6.8)."""
    assert _members(elfnote.XEN_ELFNOTE) == SPEC_ELFNOTE
    assert elfnote.XEN_ELFNOTE_MAX == 19


def test_misc_constants() -> None:
    """SIF_*, XENFEAT_*, DOMID_*, XEN_LEGACY_MAX_VCPUS, PV64 hole, pvclock flags (spec 6.9); VGCF (5.8)."""
    assert _members(xen.SIF) == SPEC_SIF
    assert _members(features.XENFEAT) == SPEC_XENFEAT
    assert _members(xen.DOMID) == SPEC_DOMID
    assert xen.XEN_LEGACY_MAX_VCPUS == 32
    assert (arch_x86.HYPERVISOR_VIRT_START, arch_x86.HYPERVISOR_VIRT_END) == (
        0xFFFF800000000000,
        0xFFFF880000000000,
    )
    assert (arch_x86.MACH2PHYS_VIRT_START, arch_x86.MACH2PHYS_VIRT_END) == (
        0xFFFF800000000000,
        0xFFFF804000000000,
    )
    assert (xen.XEN_PVCLOCK_TSC_STABLE_BIT, xen.XEN_PVCLOCK_GUEST_STOPPED) == (1, 2)
    assert _members(arch_x86.VGCF) == SPEC_VGCF


# public/io/xs_wire.h of Xen 4.17 to 4.20: enum xsd_sockmsg_type (20, XS_RESTRICT, was removed) and xsd_errors.
XS_WIRE_TYPES = {
    "XS_CONTROL": 0, "XS_DEBUG": 0, "XS_DIRECTORY": 1, "XS_READ": 2, "XS_GET_PERMS": 3, "XS_WATCH": 4,
    "XS_UNWATCH": 5, "XS_TRANSACTION_START": 6, "XS_TRANSACTION_END": 7, "XS_INTRODUCE": 8, "XS_RELEASE": 9,
    "XS_GET_DOMAIN_PATH": 10, "XS_WRITE": 11, "XS_MKDIR": 12, "XS_RM": 13, "XS_SET_PERMS": 14,
    "XS_WATCH_EVENT": 15, "XS_ERROR": 16, "XS_IS_DOMAIN_INTRODUCED": 17, "XS_RESUME": 18, "XS_SET_TARGET": 19,
    "XS_RESET_WATCHES": 21, "XS_DIRECTORY_PART": 22, "XS_INVALID": 0xFFFF,
}  # fmt: skip
XS_WIRE_ERRORS = (
    "EINVAL EACCES EEXIST EISDIR ENOENT ENOMEM ENOSPC EIO ENOTEMPTY ENOSYS EROFS EBUSY EAGAIN EISCONN E2BIG EPERM"
).split()


def test_xs_wire_constants() -> None:
    """The xenstore message types, XS_TYPE_COUNT and the error names a server may send, in the header's order."""
    assert _members(io_xs_wire.XsdSockmsgType) == XS_WIRE_TYPES
    assert io_xs_wire.XS_TYPE_COUNT == 23
    assert list(io_xs_wire.XSD_ERRORS) == XS_WIRE_ERRORS
    assert _members(io_xs_wire.XsWatchType) == {"XS_WATCH_PATH": 0, "XS_WATCH_TOKEN": 1}


def test_errno() -> None:
    """Xen's public errno values, aliases included (spec 6.10)."""
    assert _members(XenErrno) == SPEC_ERRNO
    assert XenErrno.EWOULDBLOCK is XenErrno.EAGAIN
    assert XenErrno.EDEADLOCK is XenErrno.EDEADLK


# --- the guest's C headers agree --------------------------------------------------------------------------


def python_constants(arch: str) -> dict[str, int]:
    """Every constant xenpy.abi defines that the guest headers must also define, by C name, for ``arch``."""
    constants: dict[str, int] = {}
    for enum in (
        vcpu.RUNSTATE,
        sched.SHUTDOWN,
        xen.VIRQ,
        event_channel.EVTCHNSTAT,
        callback.CALLBACKTYPE,
        callback.CALLBACKF,
        xen.VMASST_TYPE,
        elfnote.XEN_ELFNOTE,
        xen.SIF,
        features.XENFEAT,
        xen.DOMID,
        xen.MMU,
        xen.UVMF,
        arch_x86.VGCF,
    ):
        constants |= _members(enum)
    constants |= {f"XEN_{name}": value for name, value in _members(XenErrno).items() if name != "ERESTART"}
    # The negative GNTST_* as the probe reads them (64-bit two's complement).
    constants |= {name: value & (2**64 - 1) for name, value in vars(grant_table).items() if name.startswith("GNTST_")}
    for module, names in (
        (vcpu, ("XEN_RUNSTATE_UPDATE", "VCPU_SSHOTTMR_future")),
        (sched, ("SHUTDOWN_MAX",)),
        (
            xen,
            (
                "NR_VIRQS",
                "VIRQ_MCA",
                "XEN_LEGACY_MAX_VCPUS",
                "XEN_PVCLOCK_TSC_STABLE_BIT",
                "XEN_PVCLOCK_GUEST_STOPPED",
            ),
        ),
        (event_channel, ("EVTCHN_FIFO_NR_CHANNELS",)),
        (grant_table, tuple(name for name in vars(grant_table) if name.startswith(("GNTMAP_", "GTF_", "GNTTAB_")))),
        (features, ("XENFEAT_NR_SUBMAPS",)),
        (elfnote, ("XEN_ELFNOTE_MAX",)),
        (nmi, ("_XEN_NMIREASON_io_error", "_XEN_NMIREASON_pci_serr")),
        (
            version,
            (
                "XEN_EXTRAVERSION_LEN",
                "XEN_CAPABILITIES_INFO_LEN",
                "XEN_CHANGESET_INFO_LEN",
                "XEN_COMMANDLINE_LEN",
                "XEN_GUEST_HANDLE_LEN",
            ),
        ),
        (io_console, ("XENCONS_IN_SIZE", "XENCONS_OUT_SIZE")),
        (
            io_xs_wire,
            (
                "XENSTORE_RING_SIZE",
                "XENSTORE_PAYLOAD_MAX",
                "XENSTORE_ABS_PATH_MAX",
                "XENSTORE_REL_PATH_MAX",
                "XENSTORE_SERVER_FEATURE_RECONNECTION",
                "XENSTORE_SERVER_FEATURE_ERROR",
                "XENSTORE_CONNECTED",
                "XENSTORE_RECONNECT",
                "XENSTORE_ERROR_NONE",
                "XENSTORE_ERROR_COMM",
                "XENSTORE_ERROR_RINGIDX",
                "XENSTORE_ERROR_PROTO",
            ),
        ),
    ):
        constants |= {name: int(getattr(module, name)) for name in names}
    if arch == "x86_64":
        constants |= _members(arch_x86.FlatSelector)
        constants |= {
            name: getattr(arch_x86, name)
            for name in (
                "HYPERVISOR_VIRT_START",
                "HYPERVISOR_VIRT_END",
                "MACH2PHYS_VIRT_START",
                "MACH2PHYS_VIRT_END",
            )
        }
        constants["EVTCHN_2L_NR_CHANNELS"] = event_channel.EVTCHN_2L_NR_CHANNELS_X86_64
    else:
        constants |= _members(arch_x86.FlatSelector32)
        constants["EVTCHN_2L_NR_CHANNELS"] = event_channel.EVTCHN_2L_NR_CHANNELS_X86_32
        del constants["VGCF_in_syscall"]  # xen-x86_64.h only
    return constants


# Names the guest headers must not define at that width.
C_ABSENT = {
    "x86_64": ("XEN_ERESTART", "FLAT_RING1_CS"),
    "x86_32": ("XEN_ERESTART", "VGCF_in_syscall", "FLAT_RING3_CS64", "HYPERVISOR_VIRT_START"),
}


# A 64-bit constant is probed in 16-bit pieces: an asm immediate must fit a sign-extended 32-bit field.
_PIECES = (0, 16, 32, 48)


def _constants_probe_body(names: list[str]) -> list[str]:
    body = []
    for name in names:
        body.append(f"#ifdef {name}")
        body += [
            f'    PROBE("{name} {shift}", ((unsigned long long)({name}) >> {shift}) & 0xffff);'
            for shift in _PIECES
        ]
        body += ["#else", f'    PROBE_MISSING("{name}");', "#endif"]
    return body


def _c_value(values: dict[str, int], name: str) -> int:
    return sum(values[f"{name} {shift}"] << shift for shift in _PIECES)


@pytest.mark.parametrize("arch", arch_params())
def test_c_headers_define_the_same_constants(arch: str) -> None:
    """Every Python constant is #defined by the guest headers with the same value at that width (spec 6)."""
    expected = python_constants(arch)
    names = sorted(expected) + list(C_ABSENT[arch])
    values, missing = run_probe(_constants_probe_body(names), arch)
    c_values = {name: _c_value(values, name) for name in expected if name not in missing}
    assert missing == set(C_ABSENT[arch]), (
        f"missing in C: {sorted(missing - set(C_ABSENT[arch]))}, "
        f"wrongly present: {sorted(set(C_ABSENT[arch]) - missing)}"
    )
    wrong = {name: (value, c_values[name]) for name, value in expected.items() if c_values[name] != value}
    assert not wrong, f"python != C on {arch}: {wrong}"


def test_probe_reads_large_values() -> None:
    """The constants probe is exact above 32 bits (XEN_RUNSTATE_UPDATE, the PV64 hole) on both widths."""
    assert python_constants("x86_64")["XEN_RUNSTATE_UPDATE"] == 1 << 63
    assert python_constants("x86_64")["HYPERVISOR_VIRT_START"] > 1 << 32
    assert set(ARCHES) == set(C_ABSENT)
