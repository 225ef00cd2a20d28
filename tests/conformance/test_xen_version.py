"""HYPERVISOR_xen_version (spec 6.7, 6.9; ``xen/common/kernel.c:do_xen_version``, ``xenver_varbuf_op``,
``xen/include/xsm/dummy.h:xsm_xen_version``)."""

from __future__ import annotations

import pytest

from xenpy.abi.arch_x86 import HYPERVISOR_VIRT_START
from xenpy.abi.errno import XenErrno
from xenpy.abi.features import XENFEAT
from xenpy.abi.generated.hypercalls import Hypercall, VmAssistCmd, XenVer
from xenpy.abi.xen import VMASST_TYPE_pae_extended_cr3

from .conftest import ALL_PROFILES, HOLE_GVA, UNMAPPED_GVA, Guest

EFAULT = -XenErrno.EFAULT
EINVAL = -XenErrno.EINVAL
ENOSYS = -XenErrno.ENOSYS
EPERM = -XenErrno.EPERM
FILL = 0xAA

#: XENFEAT bits of a PV64 domU at HEAD (see xenpy.hypercall.handlers.xen_version).
HEAD_DOMU_FEATURES = {
    XENFEAT.XENFEAT_mmu_pt_update_preserve_ad,
    XENFEAT.XENFEAT_highmem_assist,
    XENFEAT.XENFEAT_gnttab_map_avail_bits,
    XENFEAT.XENFEAT_memory_op_vnode_supported,
    XENFEAT.XENFEAT_direct_mapped,
    XENFEAT.XENFEAT_runstate_phys_area,
    XENFEAT.XENFEAT_vcpu_time_phys_area,
    XENFEAT.XENFEAT_dm_msix_all_writes,
}


def xen_version(g: Guest, cmd: int, arg: int = 0, *, vcpu: int = 0) -> int:
    return g.call(Hypercall.xen_version, cmd, arg, vcpu=vcpu)


def filled(g: Guest, nbytes: int) -> int:
    """A guest buffer of ``nbytes`` bytes, all FILL."""
    gva = g.dom.alloc_guest(nbytes, 8)
    g.dom.write_guest(gva, bytes([FILL]) * nbytes)
    return gva


def read_only_page(g: Guest) -> int:
    gva = g.page()
    g.dom.pagetables.set_writable(gva, False)
    return gva


def bits(*features: int) -> int:
    return sum(1 << f for f in features)


def get_features(g: Guest, submap_idx: int = 0) -> tuple[int, int]:
    arg = g.put("xen_feature_info", submap_idx=submap_idx, submap=0x5A5A5A5A)
    rc = xen_version(g, XenVer.XENVER_get_features, arg)
    assert rc == 0, rc
    return g.get("xen_feature_info", arg).submap_idx, g.get("xen_feature_info", arg).submap


# ------------------------------------------------------------------------------------------ version


@pytest.mark.parametrize(
    ("profile", "expected"), [("head", 0x40017), ("4.17.3", 0x40011), ("4.17", 0x40011), ("4.10", 0x4000A)]
)
def test_version_is_major_minor(make_guest, profile, expected):
    """spec 6.7: XENVER_version returns (major << 16) | minor of the release; arg is not used."""
    g = make_guest(profile)
    assert xen_version(g, XenVer.XENVER_version) == expected
    assert xen_version(g, XenVer.XENVER_version, UNMAPPED_GVA) == expected


def test_cmd_is_a_c_int(guest: Guest):
    """``do_xen_version(int cmd, ...)``: only the low 32 bits of rdi count."""
    assert xen_version(guest, (5 << 32) | XenVer.XENVER_version) == 0x40017


@pytest.mark.parametrize("cmd", [15, 16, 100, -1, 0x8000_0000])
def test_unknown_cmd_is_enosys(guest: Guest, cmd):
    """spec 6.7: an unknown XENVER_* -> -ENOSYS."""
    assert xen_version(guest, cmd, guest.page()) == ENOSYS


# ------------------------------------------------------------------------------------------ fixed strings


@pytest.mark.parametrize(
    ("profile", "text"), [("head", b"-unstable"), ("4.17.3", b".3"), ("4.17", b".0"), ("4.10", b".0")]
)
def test_extraversion_writes_exactly_16_bytes(make_guest, profile, text):
    """spec 6.7: XENVER_extraversion copies the whole char[16] (zero-padded), nothing after it."""
    g = make_guest(profile)
    buf = filled(g, 32)
    assert xen_version(g, XenVer.XENVER_extraversion, buf) == 0
    data = g.dom.read_guest(buf, 32)
    assert data[:16] == text + bytes(16 - len(text))
    assert data[16:] == bytes([FILL]) * 16


def test_compile_info_writes_the_whole_struct(guest: Guest):
    """``do_xen_version`` XENVER_compile_info: 144 bytes, four NUL-terminated, zero-padded strings."""
    buf = filled(guest, 160)
    assert xen_version(guest, XenVer.XENVER_compile_info, buf) == 0
    info = guest.get("xen_compile_info", buf)
    assert info.compiler == b"xenpy" + bytes(59)
    assert info.compile_by == b"xenpy" + bytes(11)
    assert info.compile_domain == b"xenpy" + bytes(27)
    assert info.compile_date == bytes(32)
    assert guest.dom.read_guest(buf + 144, 16) == bytes([FILL]) * 16


def test_capabilities_is_pv_only_and_1024_bytes(guest: Guest):
    """spec 6.7: XENVER_capabilities copies char[1024]: "xen-3.0-x86_64 xen-3.0-x86_32p " (no HVM)."""
    buf = filled(guest, 1040)
    assert xen_version(guest, XenVer.XENVER_capabilities, buf) == 0
    text = b"xen-3.0-x86_64 xen-3.0-x86_32p "
    data = guest.dom.read_guest(buf, 1040)
    assert data[:1024] == text + bytes(1024 - len(text))
    assert data[1024:] == bytes([FILL]) * 16


def test_changeset_writes_64_bytes(guest: Guest):
    """spec 6.7: XENVER_changeset copies char[64]."""
    buf = filled(guest, 72)
    assert xen_version(guest, XenVer.XENVER_changeset, buf) == 0
    data = guest.dom.read_guest(buf, 72)
    assert data[:64] == b"unavailable" + bytes(53)
    assert data[64:] == bytes([FILL]) * 8


def test_guest_handle_writes_16_bytes(guest: Guest):
    """``do_xen_version`` XENVER_guest_handle: the 16-byte domain handle (all zero in xenpy)."""
    buf = filled(guest, 24)
    assert xen_version(guest, XenVer.XENVER_guest_handle, buf) == 0
    assert guest.dom.read_guest(buf, 24) == bytes(16) + bytes([FILL]) * 8


def test_platform_parameters_virt_start(guest: Guest):
    """``do_xen_version`` XENVER_platform_parameters: virt_start = HYPERVISOR_VIRT_START for a PV64 guest."""
    buf = filled(guest, 16)
    assert xen_version(guest, XenVer.XENVER_platform_parameters, buf) == 0
    assert guest.get("xen_platform_parameters", buf).virt_start == HYPERVISOR_VIRT_START == 0xFFFF800000000000
    assert guest.dom.read_guest(buf + 8, 8) == bytes([FILL]) * 8


@pytest.mark.parametrize(
    "cmd",
    [
        XenVer.XENVER_extraversion,
        XenVer.XENVER_compile_info,
        XenVer.XENVER_capabilities,
        XenVer.XENVER_changeset,
        XenVer.XENVER_platform_parameters,
        XenVer.XENVER_guest_handle,
        XenVer.XENVER_commandline,
        XenVer.XENVER_get_features,
    ],
)
def test_bad_buffer_is_efault(guest: Guest, cmd):
    """``do_xen_version``: a result buffer that cannot be accessed -> -EFAULT."""
    assert xen_version(guest, cmd, UNMAPPED_GVA) == EFAULT
    assert xen_version(guest, cmd, HOLE_GVA) == EFAULT
    assert xen_version(guest, cmd, 0) == EFAULT


def test_read_only_buffer_is_efault(guest: Guest):
    """``copy_to_guest`` fails on a read-only mapping -> -EFAULT, and the buffer is unchanged."""
    buf = read_only_page(guest)
    before = guest.dom.read_guest(buf, 64)
    assert xen_version(guest, XenVer.XENVER_extraversion, buf) == EFAULT
    assert xen_version(guest, XenVer.XENVER_capabilities, buf) == EFAULT
    assert guest.dom.read_guest(buf, 64) == before


def test_copy_stops_at_the_fault(guest: Guest):
    """``copy_to_guest`` writes up to the first byte it cannot write: the first page gets its part."""
    first = guest.page()
    second = guest.page()
    assert second == first + 4096
    guest.dom.pagetables.unmap(second)
    buf = second - 100
    assert xen_version(guest, XenVer.XENVER_capabilities, buf) == EFAULT
    assert guest.dom.read_guest(buf, 100) == b"xen-3.0-x86_64 xen-3.0-x86_32p " + bytes(69)


# ------------------------------------------------------------------------------------------ pagesize


def test_pagesize(guest: Guest):
    """``do_xen_version`` XENVER_pagesize: 4096 with a NULL arg, -EINVAL otherwise."""
    assert xen_version(guest, XenVer.XENVER_pagesize, 0) == 4096
    assert xen_version(guest, XenVer.XENVER_pagesize, guest.page()) == EINVAL


# ------------------------------------------------------------------------------------------ features


def test_get_features_head_domu(guest: Guest):
    """spec 6.9 / ``do_xen_version`` XENVER_get_features: the PV64 domU bits at HEAD; submap_idx written back."""
    idx, submap = get_features(guest)
    assert idx == 0
    assert submap == bits(*HEAD_DOMU_FEATURES)
    for never in (
        XENFEAT.XENFEAT_writable_page_tables,
        XENFEAT.XENFEAT_writable_descriptor_tables,
        XENFEAT.XENFEAT_auto_translated_physmap,
        XENFEAT.XENFEAT_supervisor_mode_kernel,
        XENFEAT.XENFEAT_hvm_callback_vector,
        XENFEAT.XENFEAT_hvm_safe_pvclock,
        XENFEAT.XENFEAT_hvm_pirqs,
        XENFEAT.XENFEAT_dom0,
        XENFEAT.XENFEAT_not_direct_mapped,
    ):
        assert not submap >> never & 1, never.name


@pytest.mark.parametrize(
    ("profile", "missing"),
    [
        (
            "4.17",
            {
                XENFEAT.XENFEAT_runstate_phys_area,
                XENFEAT.XENFEAT_vcpu_time_phys_area,
                XENFEAT.XENFEAT_dm_msix_all_writes,
            },
        ),
        (
            "4.17.3",
            {
                XENFEAT.XENFEAT_runstate_phys_area,
                XENFEAT.XENFEAT_vcpu_time_phys_area,
                XENFEAT.XENFEAT_dm_msix_all_writes,
            },
        ),
        (
            "4.10",
            {
                XENFEAT.XENFEAT_runstate_phys_area,
                XENFEAT.XENFEAT_vcpu_time_phys_area,
                XENFEAT.XENFEAT_dm_msix_all_writes,
                XENFEAT.XENFEAT_direct_mapped,
            },
        ),
    ],
)
def test_get_features_older_releases(make_guest, profile, missing):
    """spec 6.9: the phys-area bits exist from 4.18, direct_mapped from 4.15, dm_msix_all_writes after 4.17."""
    _, submap = get_features(make_guest(profile))
    assert submap == bits(*(HEAD_DOMU_FEATURES - missing))


def test_get_features_pae_pgdir_follows_vm_assist(guest: Guest):
    """``do_xen_version``: XENFEAT_pae_pgdir_above_4gb is reported while VMASST_TYPE_pae_extended_cr3 is on."""
    pae = 1 << XENFEAT.XENFEAT_pae_pgdir_above_4gb
    assert not get_features(guest)[1] & pae
    assert guest.call(Hypercall.vm_assist, VmAssistCmd.VMASST_CMD_enable, VMASST_TYPE_pae_extended_cr3) == 0
    assert get_features(guest)[1] & pae
    assert guest.call(Hypercall.vm_assist, VmAssistCmd.VMASST_CMD_disable, VMASST_TYPE_pae_extended_cr3) == 0
    assert not get_features(guest)[1] & pae


def test_get_features_dom0_bit_for_the_hardware_domain(make_guest):
    """``do_xen_version``: XENFEAT_dom0 only for the hardware domain."""
    hwdom = make_guest(hardware_domain=True)
    domu = make_guest()
    assert get_features(hwdom)[1] == bits(*HEAD_DOMU_FEATURES, XENFEAT.XENFEAT_dom0)
    assert get_features(domu)[1] == bits(*HEAD_DOMU_FEATURES)


@pytest.mark.parametrize("submap_idx", [1, 2, 0xFFFF_FFFF])
def test_get_features_bad_submap_is_einval(guest: Guest, submap_idx):
    """``do_xen_version``: submap_idx != 0 (XENFEAT_NR_SUBMAPS = 1) -> -EINVAL; the struct is not written."""
    arg = guest.put("xen_feature_info", submap_idx=submap_idx, submap=0x12345678)
    assert xen_version(guest, XenVer.XENVER_get_features, arg) == EINVAL
    info = guest.get("xen_feature_info", arg)
    assert (info.submap_idx, info.submap) == (submap_idx, 0x12345678)


def test_get_features_read_only_struct_is_efault(guest: Guest):
    """``do_xen_version``: the struct is read (succeeds), then written back (faults) -> -EFAULT."""
    buf = read_only_page(guest)
    assert xen_version(guest, XenVer.XENVER_get_features, buf) == EFAULT


# ------------------------------------------------------------------------------------------ privileged


def test_commandline_is_denied_to_a_domu(guest: Guest):
    """``xsm_xen_version``: a domU reads "<denied>\\0" (9 bytes); the rest of its buffer is untouched."""
    buf = filled(guest, 1024)
    assert xen_version(guest, XenVer.XENVER_commandline, buf) == 0
    data = guest.dom.read_guest(buf, 1024)
    assert data[:9] == b"<denied>\0"
    assert data[9:] == bytes([FILL]) * 1015


def test_commandline_for_the_hardware_domain(make_guest):
    """``do_xen_version`` XENVER_commandline: the privileged caller gets the whole char[1024] (empty)."""
    g = make_guest(hardware_domain=True)
    buf = filled(g, 1032)
    assert xen_version(g, XenVer.XENVER_commandline, buf) == 0
    assert g.dom.read_guest(buf, 1032) == bytes(1024) + bytes([FILL]) * 8


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_build_id_is_eperm_for_a_domu(make_guest, profile):
    """``do_xen_version`` XENVER_build_id: denied -> -EPERM before arg is looked at."""
    g = make_guest(profile)
    assert xen_version(g, XenVer.XENVER_build_id, 0) == EPERM
    assert xen_version(g, XenVer.XENVER_build_id, UNMAPPED_GVA) == EPERM


def test_build_id_head_hardware_domain_has_no_build_id(make_guest):
    """``xenver_varbuf_op`` XENVER_build_id: no build id -> -ENODATA, before arg is read."""
    g = make_guest(hardware_domain=True)
    assert xen_version(g, XenVer.XENVER_build_id, 0) == -XenErrno.ENODATA
    assert xen_version(g, XenVer.XENVER_build_id, UNMAPPED_GVA) == -XenErrno.ENODATA


def test_build_id_4_17_hardware_domain_checks_arg_first(make_guest):
    """4.17 ``do_xen_version`` XENVER_build_id: -EFAULT, then len == 0 -> -EINVAL, then -ENODATA."""
    g = make_guest("4.17", hardware_domain=True)
    assert xen_version(g, XenVer.XENVER_build_id, UNMAPPED_GVA) == EFAULT
    assert xen_version(g, XenVer.XENVER_build_id, g.put("xen_varbuf", len=0)) == EINVAL
    assert xen_version(g, XenVer.XENVER_build_id, g.put("xen_varbuf", len=64)) == -XenErrno.ENODATA
    assert xen_version(g, XenVer.XENVER_build_id, 0) == -XenErrno.ENODATA


# ------------------------------------------------------------------------------------------ varbuf (11-14)

VARBUF_STRINGS = {
    XenVer.XENVER_extraversion2: b"-unstable",
    XenVer.XENVER_capabilities2: b"xen-3.0-x86_64 xen-3.0-x86_32p ",
    XenVer.XENVER_changeset2: b"unavailable",
}


@pytest.mark.parametrize(("cmd", "text"), list(VARBUF_STRINGS.items()))
def test_varbuf_length_request(guest: Guest, cmd, text):
    """``xenver_varbuf_op``: a NULL arg returns the string length."""
    assert xen_version(guest, cmd, 0) == len(text)


@pytest.mark.parametrize(("cmd", "text"), list(VARBUF_STRINGS.items()))
def test_varbuf_copies_string_without_nul(guest: Guest, cmd, text):
    """``xenver_varbuf_op``: writes the string at buf (offset 4, no NUL), returns its length, len untouched."""
    buf = filled(guest, 80)
    guest.dom.write_guest(buf, (64).to_bytes(4, "little"))
    assert xen_version(guest, cmd, buf) == len(text)
    data = guest.dom.read_guest(buf, 80)
    assert data[:4] == (64).to_bytes(4, "little")
    assert data[4 : 4 + len(text)] == text
    assert data[4 + len(text) :] == bytes([FILL]) * (76 - len(text))


def test_varbuf_too_small_is_enobufs(guest: Guest):
    """``xenver_varbuf_op``: a buffer shorter than the string -> -ENOBUFS, nothing written."""
    buf = filled(guest, 40)
    guest.dom.write_guest(buf, (8).to_bytes(4, "little"))
    assert xen_version(guest, XenVer.XENVER_extraversion2, buf) == -XenErrno.ENOBUFS
    assert guest.dom.read_guest(buf + 4, 36) == bytes([FILL]) * 36
    guest.dom.write_guest(buf, (9).to_bytes(4, "little"))
    assert xen_version(guest, XenVer.XENVER_extraversion2, buf) == 9


def test_varbuf_faults(guest: Guest):
    """``xenver_varbuf_op``: unreadable len -> -EFAULT; unwritable buf -> -EFAULT."""
    assert xen_version(guest, XenVer.XENVER_capabilities2, UNMAPPED_GVA) == EFAULT
    buf = read_only_page(guest)
    assert xen_version(guest, XenVer.XENVER_capabilities2, buf) == -XenErrno.ENOBUFS  # len reads as 0
    guest.dom.pagetables.set_writable(buf, True)
    guest.dom.write_guest(buf, (64).to_bytes(4, "little"))
    guest.dom.pagetables.set_writable(buf, False)
    assert xen_version(guest, XenVer.XENVER_capabilities2, buf) == EFAULT


def test_commandline2_is_eperm_for_a_domu_only(make_guest):
    """``xsm_xen_version``: XENVER_commandline2 is privileged; the hardware domain reads an empty line (0)."""
    domu = make_guest()
    hwdom = make_guest(hardware_domain=True)
    assert xen_version(domu, XenVer.XENVER_commandline2, 0) == EPERM
    assert xen_version(hwdom, XenVer.XENVER_commandline2, 0) == 0
    buf = hwdom.put("xen_varbuf", len=16)
    assert xen_version(hwdom, XenVer.XENVER_commandline2, buf) == 0


@pytest.mark.parametrize("profile", ["4.17.3", "4.17", "4.10"])
@pytest.mark.parametrize(
    "cmd",
    [XenVer.XENVER_extraversion2, XenVer.XENVER_capabilities2, XenVer.XENVER_changeset2, XenVer.XENVER_commandline2],
)
def test_varbuf_subops_do_not_exist_before(make_guest, profile, cmd):
    """spec 6.7: XENVER_*2 (11-14) are newer than 4.17: -ENOSYS there, even for a domU."""
    g = make_guest(profile)
    assert xen_version(g, cmd, 0) == ENOSYS


# ------------------------------------------------------------------------------------------ profile record


def test_answers_come_from_the_profile_record_once(make_guest):
    """Every fact reported is a field of the domain's profile; the answers are computed once per record."""
    from xenpy.hypercall.handlers.xen_version import xen_version_answers

    g = make_guest("4.17.3")
    assert xen_version(g, XenVer.XENVER_version) == 0x40011
    answers = xen_version_answers(g.dom.profile)
    assert xen_version_answers(g.dom.profile) is answers
    assert answers.extraversion.rstrip(b"\0") == g.dom.profile.extraversion.encode() == b".3"


def test_a_derived_profile_reports_its_own_facts(make_guest):
    """``dataclasses.replace`` gives a record with its own values and its own cache of answers."""
    from dataclasses import replace

    from xenpy.core.profiles import HEAD

    g = make_guest("head")
    assert xen_version(g, XenVer.XENVER_version) == 0x40017  # fills HEAD's cache first
    mine = make_guest(replace(HEAD, name="head", version=(4, 99), changeset="abc"))
    assert xen_version(mine, XenVer.XENVER_version) == 0x40063
    buf = filled(mine, 64)
    assert xen_version(mine, XenVer.XENVER_changeset, buf) == 0
    assert mine.dom.read_guest(buf, 64) == b"abc" + bytes(61)
