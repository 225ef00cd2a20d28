"""The generated hypercall table against the spec (sections 1.2, 1.4, 3.4, 3.5, 6.1-6.7, 7.4)."""

from __future__ import annotations

from enum import IntEnum

import pytest

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated import hypercalls as hc
from xenpy.abi.generated.hypercalls import (
    HYPERCALLS,
    PROFILES,
    CallbackOp,
    ConsoleIO,
    EvtchnOp,
    GnttabOp,
    Hypercall,
    MmuextCmd,
    NmiOp,
    SchedOp,
    VcpuOp,
    VmAssistCmd,
    XenMem,
    XenVer,
    hypercall_by_name,
)

# Spec 6.1, copied from the spec's table: the oracle the generated table is checked against.
SPEC_6_1 = {
    0: "set_trap_table", 1: "mmu_update", 2: "set_gdt", 3: "stack_switch", 4: "set_callbacks",
    5: "fpu_taskswitch", 6: "sched_op_compat", 7: "platform_op", 8: "set_debugreg", 9: "get_debugreg",
    10: "update_descriptor", 12: "memory_op", 13: "multicall", 14: "update_va_mapping",
    15: "set_timer_op", 16: "event_channel_op_compat", 17: "xen_version", 18: "console_io",
    19: "physdev_op_compat", 20: "grant_table_op", 21: "vm_assist", 22: "update_va_mapping_otherdomain",
    23: "iret", 24: "vcpu_op", 25: "set_segment_base", 26: "mmuext_op", 27: "xsm_op", 28: "nmi_op",
    29: "sched_op", 30: "callback_op", 31: "xenoprof_op", 32: "event_channel_op", 33: "physdev_op",
    34: "hvm_op", 35: "sysctl", 36: "domctl", 37: "kexec_op", 38: "tmem_op", 39: "argo_op",
    40: "xenpmu_op", 41: "dm_op", 42: "hypfs_op", 48: "mca", 49: "paging_domctl_cont",
}  # fmt: skip

SPEC_6_2_VCPUOP = [
    "initialise", "up", "down", "is_up", "get_runstate_info", "register_runstate_memory_area",
    "set_periodic_timer", "stop_periodic_timer", "set_singleshot_timer", "stop_singleshot_timer",
    "register_vcpu_info", "send_nmi", "get_physid", "register_vcpu_time_memory_area",
    "register_runstate_phys_area", "register_vcpu_time_phys_area",
]  # fmt: skip
SPEC_6_3_SCHEDOP = ["yield", "block", "shutdown", "poll", "remote_shutdown", "shutdown_code", "watchdog",
                    "pin_override"]  # fmt: skip
SPEC_6_5_EVTCHNOP = [
    "bind_interdomain", "bind_virq", "bind_pirq", "close", "send", "status", "alloc_unbound", "bind_ipi",
    "bind_vcpu", "unmask", "reset", "init_control", "expand_array", "set_priority", "reset_cont",
]  # fmt: skip
SPEC_6_7_XENVER = [
    "version", "extraversion", "compile_info", "capabilities", "changeset", "platform_parameters",
    "get_features", "pagesize", "guest_handle", "commandline", "build_id", "extraversion2", "capabilities2",
    "changeset2", "commandline2",
]  # fmt: skip
ERRNO_NAMES = set(XenErrno.__members__)


def test_every_spec_6_1_number_is_present_with_its_name() -> None:
    """Spec 6.1: 0..42 are all listed (11 as unused), and 48/49 are the x86 arch hypercalls."""
    assert set(range(43)) | {48, 49} == set(HYPERCALLS)
    for number, name in SPEC_6_1.items():
        assert HYPERCALLS[number].name == name
        assert Hypercall[name] == number
        assert getattr(Hypercall, name).value == number
    assert Hypercall.vcpu_op == 24
    assert Hypercall.set_trap_table == 0
    assert Hypercall.mca == hc.HYPERCALL_ARCH_FIRST == 48


def test_unused_and_dropped_hypercalls_are_enosys() -> None:
    """Spec 6.1: 11 is unused, xenoprof_op (31) was dropped in 4.22, tmem_op (38) is not wired."""
    enosys = {n for n, d in HYPERCALLS.items() if d.implemented_as_enosys}
    assert enosys == {11, 31, 38}
    assert not HYPERCALLS[11].defined and 11 not in {h.value for h in Hypercall}
    assert HYPERCALLS[31].removed_in == "4.22"
    assert HYPERCALLS[49].internal


def test_arguments_follow_the_pv64_convention() -> None:
    """Spec 7.4: rdi, rsi, rdx, r10, r8; vcpu_op is (int cmd, unsigned int vcpuid, void *arg)."""
    assert hc.PV64_ARG_REGISTERS == ("rdi", "rsi", "rdx", "r10", "r8")
    assert hc.HYPERCALL_STUB_SIZE == 32
    vcpu_op = HYPERCALLS[Hypercall.vcpu_op]
    assert [(r, a.name, a.c_type) for r, a in vcpu_op.registers] == [
        ("rdi", "cmd", "int"),
        ("rsi", "vcpuid", "unsigned int"),
        ("rdx", "arg", "void *"),
    ]
    assert vcpu_op.prototype == "long HYPERVISOR_vcpu_op(int cmd, unsigned int vcpuid, void *arg)"
    assert HYPERCALLS[Hypercall.iret].args == ()
    assert HYPERCALLS[Hypercall.set_timer_op].args[0].c_type == "s_time_t"
    for defn in HYPERCALLS.values():
        assert len(defn.args) <= 5
        for arg in defn.args:
            assert arg.direction in ("in", "out", "inout")
            if not arg.c_type.endswith("*"):
                assert arg.direction == "in", (defn.name, arg.name)


def test_pv32_argument_forms_follow_xen_compat_prototypes() -> None:
    """hypercall-defs.c, compat column: ``set_timer_op(uint32_t lo, int32_t hi)`` and ``set_callbacks(unsigned
    long event_selector, event_address, failsafe_selector, failsafe_address)``; each such entry has a
    registered PV32 form whose argument types decode with PV32 widths."""
    import xenpy.hypercall.handlers  # noqa: F401 (registers the handlers)
    from xenpy.hypercall.registry import c_width, registrations

    assert hc.PV32_ARG_REGISTERS == ("ebx", "ecx", "edx", "esi", "edi")
    forms = {d.name: [(a.name, a.c_type) for a in d.compat_args] for d in HYPERCALLS.values() if d.compat_args}
    assert forms == {
        "set_callbacks": [
            ("event_selector", "unsigned long"),
            ("event_address", "unsigned long"),
            ("failsafe_selector", "unsigned long"),
            ("failsafe_address", "unsigned long"),
        ],
        "set_timer_op": [("lo", "uint32_t"), ("hi", "int32_t")],
    }
    for defn in HYPERCALLS.values():
        if defn.compat_args is not None:
            reg = registrations()[defn.number]
            assert reg.compat_fn is not None, defn.name
            assert reg.compat_c_types == tuple(a.c_type for a in defn.compat_args)
            assert all(c_width(t, compat=True)[0] <= 32 for t in reg.compat_c_types)


def test_vcpuop_values_match_spec_6_2() -> None:
    assert [m.value for m in VcpuOp] == list(range(16))
    for value, suffix in enumerate(SPEC_6_2_VCPUOP):
        assert VcpuOp(value).name == f"VCPUOP_{suffix}"
    subops = HYPERCALLS[Hypercall.vcpu_op].subops
    assert [(s.value, s.name) for s in subops] == [(m.value, m.name) for m in VcpuOp]


@pytest.mark.parametrize(
    ("enum", "prefix", "names"),
    [
        (SchedOp, "SCHEDOP_", SPEC_6_3_SCHEDOP),
        (EvtchnOp, "EVTCHNOP_", SPEC_6_5_EVTCHNOP),
        (XenVer, "XENVER_", SPEC_6_7_XENVER),
        (CallbackOp, "CALLBACKOP_", ["register", "unregister"]),
        (NmiOp, "XENNMI_", ["register_callback", "unregister_callback"]),
        (VmAssistCmd, "VMASST_CMD_", ["enable", "disable"]),
        (ConsoleIO, "CONSOLEIO_", ["write", "read"]),
    ],
)
def test_subop_values_match_the_spec(enum: type[IntEnum], prefix: str, names: list[str]) -> None:
    """Spec 6.3, 6.5, 6.6, 6.7: consecutive values from 0, spelled as Xen."""
    assert [(m.value, m.name) for m in enum] == [(i, prefix + n) for i, n in enumerate(names)]


def test_xen_header_values_sample() -> None:
    """Values from public/memory.h, public/xen.h and public/grant_table.h."""
    assert XenMem.XENMEM_increase_reservation == 0
    assert XenMem.XENMEM_populate_physmap == 6
    assert XenMem.XENMEM_add_to_physmap == 7
    assert 8 not in {m.value for m in XenMem}  # XENMEM_translate_gpfn_list, removed
    assert XenMem.XENMEM_acquire_resource == 28
    assert MmuextCmd.MMUEXT_PIN_L1_TABLE == 0
    assert MmuextCmd.MMUEXT_PIN_L4_TABLE == 3
    assert MmuextCmd.MMUEXT_NEW_USER_BASEPTR == 15
    assert 14 not in {m.value for m in MmuextCmd}
    assert GnttabOp.GNTTABOP_setup_table == 2
    assert GnttabOp.GNTTABOP_query_size == 6
    assert GnttabOp.GNTTABOP_cache_flush == 12


def test_every_subop_enum_member_has_a_module_alias() -> None:
    enums = [
        v for v in vars(hc).values() if isinstance(v, type) and issubclass(v, IntEnum) and v is not IntEnum
    ]
    assert len(enums) == 13  # Hypercall and 12 sub-op families
    for enum in enums:
        if enum is Hypercall:
            continue
        for name, member in enum.__members__.items():
            assert getattr(hc, name) is member


def test_subop_tables_agree_with_their_enums() -> None:
    families = {d.name: d for d in HYPERCALLS.values() if d.subop_enum is not None}
    assert set(families) == {
        "memory_op",
        "xen_version",
        "console_io",
        "grant_table_op",
        "vm_assist",
        "vcpu_op",
        "mmuext_op",
        "nmi_op",
        "sched_op",
        "callback_op",
        "event_channel_op",
        "physdev_op",
    }
    for defn in families.values():
        assert defn.subop_enum is not None
        assert {s.name: s.value for s in defn.subops} == {m.name: m.value for m in defn.subop_enum}
        assert defn.unknown_subop_errno == "ENOSYS"
        first = defn.subops[0]
        assert defn.subop(first.value) is first
    assert HYPERCALLS[Hypercall.vcpu_op].subop(16) is None


def test_argument_structs_are_xen_names() -> None:
    """Spec 5.1, 5.9: sample of the argument structs the ABI layer defines."""

    def struct(enum_member: IntEnum) -> str | None:
        for defn in HYPERCALLS.values():
            if defn.subop_enum is type(enum_member):
                sub = defn.subop(enum_member.value)
                assert sub is not None
                return sub.arg_struct
        raise AssertionError(enum_member)

    assert struct(VcpuOp.VCPUOP_initialise) == "vcpu_guest_context"
    assert struct(VcpuOp.VCPUOP_get_runstate_info) == "vcpu_runstate_info"
    assert struct(VcpuOp.VCPUOP_register_vcpu_info) == "vcpu_register_vcpu_info"
    assert struct(VcpuOp.VCPUOP_set_singleshot_timer) == "vcpu_set_singleshot_timer"
    assert struct(VcpuOp.VCPUOP_up) is None
    assert struct(SchedOp.SCHEDOP_poll) == "sched_poll"
    assert struct(SchedOp.SCHEDOP_remote_shutdown) == "sched_remote_shutdown"
    assert struct(EvtchnOp.EVTCHNOP_bind_virq) == "evtchn_bind_virq"
    assert struct(EvtchnOp.EVTCHNOP_alloc_unbound) == "evtchn_alloc_unbound"
    assert struct(CallbackOp.CALLBACKOP_register) == "callback_register"
    assert struct(NmiOp.XENNMI_register_callback) == "xennmi_callback"
    assert struct(GnttabOp.GNTTABOP_setup_table) == "gnttab_setup_table"


@pytest.mark.parametrize("hypercall", ["vcpu_op", "sched_op", "event_channel_op", "grant_table_op"])
def test_expected_errors_cover_every_profile_with_xen_errnos(hypercall: str) -> None:
    defn = hypercall_by_name(hypercall)
    for sub in defn.subops:
        assert tuple(sub.errors) == PROFILES, sub.name
        for profile, names in sub.errors.items():
            assert set(names) <= ERRNO_NAMES, (sub.name, profile)
            assert "ERESTART" not in names  # internal, never reaches a guest (spec 6.10)
            assert len(set(names)) == len(names)


def test_vcpu_op_errors_and_who_follow_spec_1() -> None:
    """Spec 1.1, 1.2, 1.4, 4.1."""
    subs = {s.name: s for s in hypercall_by_name("vcpu_op").subops}
    for sub in subs.values():
        for names in sub.errors.values():
            assert names[0] == "ENOENT"  # spec 1.1: a bad vcpuid is checked before the command
    assert {n for n, s in subs.items() if s.who == "self"} == {
        "VCPUOP_set_singleshot_timer",
        "VCPUOP_stop_singleshot_timer",
    }
    assert all(s.who in ("self", "any") for s in subs.values())
    # Spec 1.4: cmds 14 and 15 exist since 4.18 (the profile field phys_areas); before, -ENOSYS.
    for name in ("VCPUOP_register_runstate_phys_area", "VCPUOP_register_vcpu_time_phys_area"):
        assert subs[name].profile_flag == "phys_areas"
        assert subs[name].errors["4.17"] == ("ENOENT", "ENOSYS")
        assert "ENOSYS" not in subs[name].errors["head"]
    # Spec 1.4 / 4.1: -EBUSY and -EACCES only since 4.18; -ENXIO since 4.16.
    reg = subs["VCPUOP_register_vcpu_info"].errors
    assert {"EBUSY", "EACCES", "ENXIO"} <= set(reg["head"])
    assert not {"EBUSY", "EACCES"} & set(reg["4.17"])
    assert "ENXIO" in reg["4.17"]
    # Spec 1.4: 4.10.0 gives -EINVAL for offset > 4032 and accepts a misaligned offset: no -ENXIO at all.
    assert reg["4.10"] == ("ENOENT", "EFAULT", "EINVAL", "ENOMEM")
    for name in ("VCPUOP_register_runstate_phys_area", "VCPUOP_register_vcpu_time_phys_area"):
        assert subs[name].errors["4.10"] == ("ENOENT", "ENOSYS")
    # Spec 1.2: PV64 checks v == current before copying.
    assert subs["VCPUOP_set_singleshot_timer"].errors["head"] == ("ENOENT", "EINVAL", "EFAULT")
    # Spec 1.4: -ETIME only before the 4.17.3 backport.
    assert "ETIME" in subs["VCPUOP_set_singleshot_timer"].errors["4.17"]
    assert "ETIME" not in subs["VCPUOP_set_singleshot_timer"].errors["4.17.3"]
    assert "ETIME" in subs["VCPUOP_set_singleshot_timer"].errors["4.10"]
    assert subs["VCPUOP_set_periodic_timer"].errors["head"] == ("ENOENT", "EFAULT", "EINVAL")
    assert subs["VCPUOP_down"].errors["head"] == ("ENOENT",)


def test_sched_and_evtchn_errors_follow_spec_3() -> None:
    """Spec 3.4, 3.5."""
    sched = {s.name: s.errors["head"] for s in hypercall_by_name("sched_op").subops}
    assert sched["SCHEDOP_yield"] == ()
    assert sched["SCHEDOP_shutdown"] == ("EFAULT",)
    assert sched["SCHEDOP_poll"] == ("EFAULT", "EINVAL")
    assert sched["SCHEDOP_watchdog"] == ("EFAULT", "EINVAL", "ENOSPC")
    assert sched["SCHEDOP_pin_override"][0] == "EPERM"
    evtchn = {s.name: s.errors["head"] for s in hypercall_by_name("event_channel_op").subops}
    assert evtchn["EVTCHNOP_bind_virq"] == ("EFAULT", "EINVAL", "ENOENT", "EBUSY", "EEXIST", "ENOSPC")
    assert evtchn["EVTCHNOP_send"] == ("EFAULT", "EINVAL")
    assert evtchn["EVTCHNOP_bind_ipi"][:2] == ("EFAULT", "ENOENT")
    assert all(names[0] == "EFAULT" for names in evtchn.values())


def test_grant_table_op_errors_follow_xen() -> None:
    """xen/common/grant_table.c (the spec only numbers the hypercall, 6.1): do_grant_table_op's -EINVAL first;
    -EAGAIN of set_version is XSA-501 (4.17.7, 4.20.4, HEAD); 4.10.0's set_version has neither -ENOSYS nor the
    XSA-255 -EBUSY (its -EBUSY is the pinned-entry one)."""
    subs = {s.name: s.errors for s in hypercall_by_name("grant_table_op").subops}
    assert all(names[0] == "EINVAL" for errors in subs.values() for names in errors.values())
    set_version = subs["GNTTABOP_set_version"]
    assert set_version["head"] == ("EINVAL", "EFAULT", "ENOSYS", "EBUSY", "ENOMEM", "EAGAIN", "ERANGE")
    assert set_version["4.20"] == set_version["4.17.7"] == set_version["head"]
    assert "EAGAIN" not in set_version["4.17.3"] and "EAGAIN" not in set_version["4.17"]
    assert set_version["4.10"] == ("EINVAL", "EFAULT", "EBUSY", "ENOMEM", "ERANGE")
    assert subs["GNTTABOP_get_status_frames"]["4.20"] == ("EINVAL", "EFAULT")
    assert subs["GNTTABOP_get_version"]["4.17.7"] == ("EINVAL", "EFAULT", "ESRCH", "EPERM")
    assert subs["GNTTABOP_dump_table"]["head"] == ("EINVAL", "ENOSYS")


def test_profiles_are_the_core_profiles() -> None:
    """One list of profiles: the error tables have a column for exactly the profiles a domain can have."""
    from xenpy.core.profiles import PROFILES as CORE_PROFILES

    assert PROFILES[0] == "head"
    assert PROFILES == tuple(CORE_PROFILES)
    assert "4.10" in PROFILES


def test_table_is_read_only_and_looked_up_by_name() -> None:
    with pytest.raises(TypeError):
        HYPERCALLS[99] = HYPERCALLS[0]  # type: ignore[index]
    with pytest.raises(TypeError):
        hypercall_by_name("vcpu_op").subops[0].errors["head"] = ()  # type: ignore[index]
    assert hypercall_by_name("vcpu_op") is HYPERCALLS[24]
    assert hypercall_by_name("__HYPERVISOR_sched_op").number == 29
    with pytest.raises(KeyError, match="no hypercall named"):
        hypercall_by_name("no_such_op")
    assert all(d.doc for d in HYPERCALLS.values())
