"""``HYPERVISOR_xen_version(int cmd, void *arg)`` (hypercall 17; spec 6.7, 6.9).

Implements ``xen/common/kernel.c:do_xen_version`` and ``xenver_varbuf_op`` with the XSM dummy policy
(``xen/include/xsm/dummy.h:xsm_xen_version``), as a Xen release build (``CONFIG_DEBUG=n``) reports them.

What xenpy reports where Xen reports facts about its own build:

* version: the profile's ``(major, minor)``; extraversion: ``"-unstable"`` for ``head``, the point release
  (``".0"``, ``".3"``) for the release profiles;
* compile info: :data:`XENPY_COMPILER`, :data:`XENPY_COMPILE_BY`, :data:`XENPY_COMPILE_DOMAIN`,
  :data:`XENPY_COMPILE_DATE`; changeset: ``"unavailable"`` (what Xen reports when built outside git);
* capabilities: ``"xen-3.0-x86_64 xen-3.0-x86_32p "`` (PV64 and PV32 guests, no HVM; the trailing space is
  Xen's);
* command line: empty; build id: none (Xen built without one: -ENODATA to a privileged caller);
* guest handle: 16 zero bytes (xenpy's toolstack gives domains no UUID).

Privilege: the hardware domain is privileged; every other domain is a domU and, under the XSM dummy policy,
is denied XENVER_commandline (it reads ``"<denied>"``), XENVER_build_id and XENVER_commandline2 (-EPERM).

XENFEAT bits of ``XENVER_get_features`` submap 0 for a PV domain (``do_xen_version`` case 6):

* XENFEAT_mmu_pt_update_preserve_ad (5), XENFEAT_highmem_assist (6), XENFEAT_gnttab_map_avail_bits (7): every
  PV domain (x86);
* XENFEAT_memory_op_vnode_supported (13): always;
* XENFEAT_direct_mapped (17): a PV domain is not translated, so always direct-mapped (>= 4.15; 4.10 reports
  neither 16 nor 17);
* XENFEAT_runstate_phys_area (18), XENFEAT_vcpu_time_phys_area (19): profiles with ``phys_areas`` (>= 4.18);
* XENFEAT_dm_msix_all_writes (20): x86, releases after 4.17;
* XENFEAT_pae_pgdir_above_4gb (4): only while VMASST_TYPE_pae_extended_cr3 is enabled;
* XENFEAT_dom0 (11): the hardware domain only;
* never for PV: writable_page_tables (0) and auto_translated_physmap (2) (translated guests only),
  writable_descriptor_tables (1), supervisor_mode_kernel (3), the HVM bits (8-10), ARM_SMCCC (14),
  linux_rsdp_unrestricted (15, PVH dom0), not_direct_mapped (16).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from xenpy.abi.arch_x86 import HYPERVISOR_VIRT_START
from xenpy.abi.errno import HypercallError, XenErrno
from xenpy.abi.features import XENFEAT
from xenpy.abi.generated.hypercalls import Hypercall, XenVer
from xenpy.abi.version import (
    XEN_CAPABILITIES_INFO_LEN,
    XEN_CHANGESET_INFO_LEN,
    XEN_COMMANDLINE_LEN,
    XEN_EXTRAVERSION_LEN,
    XEN_GUEST_HANDLE_LEN,
)
from xenpy.abi.xen import VMASST_TYPE_pae_extended_cr3
from xenpy.core.memory import PAGE_SIZE
from xenpy.core.profiles import PROFILES
from xenpy.hypercall.registry import Effect, c_int, c_uint, legacy_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Domain, Vcpu
    from xenpy.core.profiles import XenProfile

#: ``xen_compile_info.compiler`` and friends, as xenpy reports them.
XENPY_COMPILER = "xenpy"
XENPY_COMPILE_BY = "xenpy"
XENPY_COMPILE_DOMAIN = "xenpy"
XENPY_COMPILE_DATE = ""
#: ``XENVER_changeset``: Xen's value for a build outside a git tree.
XENPY_CHANGESET = "unavailable"
#: Xen's saved command line (``XENVER_commandline``).
XENPY_COMMANDLINE = ""
#: ``xen_cap_info`` of an x86 Xen with PV64 and PV32 support and no HVM.
XEN_CAPABILITIES = "xen-3.0-x86_64 xen-3.0-x86_32p "
#: ``xen_deny()``: what a caller denied XENVER_commandline reads.
XEN_DENY = "<denied>"
#: ``__HYPERVISOR_COMPAT_VIRT_START``: ``virt_start`` reported to a PV32 guest.
HYPERVISOR_COMPAT_VIRT_START = 0xF580_0000
#: ``xenver_varbuf_op``: strings longer than this return -E2BIG.
_VARBUF_MAX = 64 * 1024
#: Offset of ``xen_varbuf.buf`` (after ``uint32_t len``).
_VARBUF_BUF_OFFSET = 4


@dataclass(frozen=True)
class XenVersionFacts:
    """What one Xen release reports through XENVER_* beyond the profile's own flags.

    Attributes:
        extraversion: ``XEN_EXTRAVERSION`` (``"-unstable"``, ``".0"``, ...).
        varbuf_subops: XENVER_extraversion2 .. XENVER_commandline2 (11-14) exist and XENVER_build_id goes
            through ``xenver_varbuf_op``; otherwise 11-14 return -ENOSYS and XENVER_build_id uses the older
            ``xen_build_id`` path (releases after 4.17).
        xenfeat_direct_mapped: XENFEAT_direct_mapped / not_direct_mapped are reported (>= 4.15).
        xenfeat_dm_msix_all_writes: XENFEAT_dm_msix_all_writes is reported (releases after 4.17).
    """

    extraversion: str
    varbuf_subops: bool
    xenfeat_direct_mapped: bool
    xenfeat_dm_msix_all_writes: bool


#: Facts per profile name.
XEN_VERSION_FACTS: dict[str, XenVersionFacts] = {
    "head": XenVersionFacts("-unstable", True, True, True),
    "4.17.3": XenVersionFacts(".3", False, True, False),
    "4.17": XenVersionFacts(".0", False, True, False),
    "4.10": XenVersionFacts(".0", False, False, False),
}


def version_facts(profile: XenProfile) -> XenVersionFacts:
    """The :class:`XenVersionFacts` of ``profile``: by name, else by release, else HEAD's."""
    facts = XEN_VERSION_FACTS.get(profile.name)
    if facts is not None:
        return facts
    for name, known in PROFILES.items():
        if known.version == profile.version and name in XEN_VERSION_FACTS:
            return XEN_VERSION_FACTS[name]
    return XEN_VERSION_FACTS["head"]


def xen_features_submap0(d: Domain) -> int:
    """XENFEAT_* submap 0 of PV domain ``d`` (see the module docstring for each bit)."""
    facts = version_facts(d.profile)
    submap = 1 << XENFEAT.XENFEAT_memory_op_vnode_supported
    if d.profile.phys_areas:
        submap |= (1 << XENFEAT.XENFEAT_vcpu_time_phys_area) | (1 << XENFEAT.XENFEAT_runstate_phys_area)
    if d.vm_assist >> VMASST_TYPE_pae_extended_cr3 & 1:
        submap |= 1 << XENFEAT.XENFEAT_pae_pgdir_above_4gb
    if d.is_hardware_domain:
        submap |= 1 << XENFEAT.XENFEAT_dom0
    submap |= (
        (1 << XENFEAT.XENFEAT_mmu_pt_update_preserve_ad)
        | (1 << XENFEAT.XENFEAT_highmem_assist)
        | (1 << XENFEAT.XENFEAT_gnttab_map_avail_bits)
    )
    if facts.xenfeat_dm_msix_all_writes:
        submap |= 1 << XENFEAT.XENFEAT_dm_msix_all_writes
    if facts.xenfeat_direct_mapped:
        submap |= 1 << XENFEAT.XENFEAT_direct_mapped
    return submap


def _c_string(text: str, size: int) -> bytes:
    """``memset(buf, 0, size); safe_strcpy(buf, text)``: truncated to ``size - 1`` bytes, zero-padded."""
    raw = text.encode()[: size - 1]
    return raw + bytes(size - len(raw))


def _is_privileged(d: Domain) -> bool:
    return d.is_hardware_domain


def _denied(d: Domain, cmd: int) -> bool:
    """``xsm_xen_version`` (dummy policy): True if ``d`` may not see ``cmd``'s data."""
    return cmd in _PRIVILEGED_CMDS and not _is_privileged(d)


_PRIVILEGED_CMDS = frozenset({XenVer.XENVER_commandline, XenVer.XENVER_build_id, XenVer.XENVER_commandline2})

_Op = Callable[["Vcpu", int], int]
_SUBOPS: dict[int, _Op] = {}


def _subop(cmd: XenVer) -> Callable[[_Op], _Op]:
    def register(fn: _Op) -> _Op:
        _SUBOPS[int(cmd)] = fn
        return fn

    return register


@legacy_handler(Hypercall.xen_version, effects=Effect.NONE)
def do_xen_version(current: Vcpu, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    """Report the hypervisor's version, build and features to the calling domain.

    Arguments (PV64): rdi = ``cmd`` (``XENVER_*``, C ``int``), rsi = ``arg`` (guest pointer or NULL).

    Results (every string result is copied as the whole fixed-size C array, zero-padded, truncated to leave
    a NUL; a copy that faults returns -EFAULT, with the bytes before the fault written):

    * XENVER_version (0): ``(major << 16) | minor``; ``arg`` unused.
    * XENVER_extraversion (1): char[16]. XENVER_compile_info (2): ``xen_compile_info`` (144 bytes).
    * XENVER_capabilities (3): char[1024]. XENVER_changeset (4): char[64].
    * XENVER_platform_parameters (5): ``virt_start`` = HYPERVISOR_VIRT_START (PV64) or
      ``0xF5800000`` (PV32).
    * XENVER_get_features (6): reads ``xen_feature_info`` (-EFAULT); ``submap_idx != 0`` -> -EINVAL; writes
      the struct back with ``submap`` set (-EFAULT).
    * XENVER_pagesize (7): ``arg != NULL`` -> -EINVAL, else 4096.
    * XENVER_guest_handle (8): 16 bytes.
    * XENVER_commandline (9): privileged: char[1024]; a domU gets ``"<denied>\\0"`` (9 bytes, the rest of its
      buffer untouched).
    * XENVER_build_id (10): a domU gets -EPERM; privileged callers get -ENODATA (no build id), after
      (profiles without ``varbuf_subops``) -EFAULT / -EINVAL (``len == 0``) checks of a non-NULL ``arg``.
    * XENVER_extraversion2 / capabilities2 / changeset2 / commandline2 (11-14, profiles with
      ``varbuf_subops``): commandline2 is -EPERM for a domU; ``arg == NULL`` returns the string length;
      otherwise reads ``xen_varbuf.len`` (-EFAULT), -ENOBUFS if the string is longer, else writes it (no
      NUL) at ``arg + 4`` and returns its length.
    * Any other ``cmd``: -ENOSYS.

    No hypervisor state changes.
    """
    fn = _SUBOPS.get(c_int(a1))
    if fn is None:
        raise HypercallError(XenErrno.ENOSYS)
    return fn(current, a2)


@_subop(XenVer.XENVER_version)
def _xenver_version(current: Vcpu, arg: int) -> int:
    major, minor = current.domain.profile.version
    return (major << 16) | minor


@_subop(XenVer.XENVER_extraversion)
def _xenver_extraversion(current: Vcpu, arg: int) -> int:
    text = version_facts(current.domain.profile).extraversion
    current.copy_to_guest_or_fault(arg, _c_string(text, XEN_EXTRAVERSION_LEN))
    return 0


@_subop(XenVer.XENVER_compile_info)
def _xenver_compile_info(current: Vcpu, arg: int) -> int:
    info = current.domain.abi.xen_compile_info
    data = b"".join(
        _c_string(text, info.type_of(field).size)
        for field, text in (
            ("compiler", XENPY_COMPILER),
            ("compile_by", XENPY_COMPILE_BY),
            ("compile_domain", XENPY_COMPILE_DOMAIN),
            ("compile_date", XENPY_COMPILE_DATE),
        )
    )
    current.copy_to_guest_or_fault(arg, data)
    return 0


@_subop(XenVer.XENVER_capabilities)
def _xenver_capabilities(current: Vcpu, arg: int) -> int:
    current.copy_to_guest_or_fault(arg, _c_string(XEN_CAPABILITIES, XEN_CAPABILITIES_INFO_LEN))
    return 0


@_subop(XenVer.XENVER_changeset)
def _xenver_changeset(current: Vcpu, arg: int) -> int:
    current.copy_to_guest_or_fault(arg, _c_string(XENPY_CHANGESET, XEN_CHANGESET_INFO_LEN))
    return 0


@_subop(XenVer.XENVER_platform_parameters)
def _xenver_platform_parameters(current: Vcpu, arg: int) -> int:
    d = current.domain
    virt_start = HYPERVISOR_COMPAT_VIRT_START if d.is_compat else HYPERVISOR_VIRT_START
    current.copy_to_guest_or_fault(arg, d.abi.xen_platform_parameters.build({"virt_start": virt_start}))
    return 0


@_subop(XenVer.XENVER_get_features)
def _xenver_get_features(current: Vcpu, arg: int) -> int:
    d = current.domain
    struct = d.abi.xen_feature_info
    fi = struct.parse(current.copy_from_guest(arg, struct.sizeof()))
    if fi.submap_idx != 0:
        raise HypercallError(XenErrno.EINVAL)
    current.copy_to_guest_or_fault(arg, struct.build({"submap_idx": 0, "submap": xen_features_submap0(d)}))
    return 0


@_subop(XenVer.XENVER_pagesize)
def _xenver_pagesize(current: Vcpu, arg: int) -> int:
    if arg != 0:
        raise HypercallError(XenErrno.EINVAL)
    return PAGE_SIZE


@_subop(XenVer.XENVER_guest_handle)
def _xenver_guest_handle(current: Vcpu, arg: int) -> int:
    current.copy_to_guest_or_fault(arg, bytes(XEN_GUEST_HANDLE_LEN))
    return 0


@_subop(XenVer.XENVER_commandline)
def _xenver_commandline(current: Vcpu, arg: int) -> int:
    if _denied(current.domain, XenVer.XENVER_commandline):
        data = XEN_DENY.encode() + b"\0"
    else:
        data = _c_string(XENPY_COMMANDLINE, XEN_COMMANDLINE_LEN)
    current.copy_to_guest_or_fault(arg, data)
    return 0


@_subop(XenVer.XENVER_build_id)
def _xenver_build_id(current: Vcpu, arg: int) -> int:
    d = current.domain
    if _denied(d, XenVer.XENVER_build_id):
        raise HypercallError(XenErrno.EPERM)
    if not version_facts(d.profile).varbuf_subops and arg != 0:
        # xen_build_id_t {uint32_t len; unsigned char buf[]}: len is read and checked first.
        if c_uint(int.from_bytes(current.copy_from_guest(arg, 4), "little")) == 0:
            raise HypercallError(XenErrno.EINVAL)
    # xen_build_id(): xenpy has no build id.
    raise HypercallError(XenErrno.ENODATA)


def _xenver_varbuf(current: Vcpu, arg: int, *, cmd: XenVer) -> int:
    """``xenver_varbuf_op`` for the string sub-ops 11-14."""
    d = current.domain
    facts = version_facts(d.profile)
    if not facts.varbuf_subops:
        raise HypercallError(XenErrno.ENOSYS)
    if _denied(d, cmd):
        raise HypercallError(XenErrno.EPERM)
    text = {
        XenVer.XENVER_extraversion2: facts.extraversion,
        XenVer.XENVER_capabilities2: XEN_CAPABILITIES,
        XenVer.XENVER_changeset2: XENPY_CHANGESET,
        XenVer.XENVER_commandline2: XENPY_COMMANDLINE,
    }[cmd].encode()
    if len(text) > _VARBUF_MAX:
        raise HypercallError(XenErrno.E2BIG)
    if arg == 0:
        return len(text)
    buf_len = int.from_bytes(current.copy_from_guest(arg, 4), "little")
    if len(text) > buf_len:
        raise HypercallError(XenErrno.ENOBUFS)
    current.copy_to_guest_or_fault(arg + _VARBUF_BUF_OFFSET, text)
    return len(text)


for _cmd in (
    XenVer.XENVER_extraversion2,
    XenVer.XENVER_capabilities2,
    XenVer.XENVER_changeset2,
    XenVer.XENVER_commandline2,
):
    _SUBOPS[int(_cmd)] = partial(_xenver_varbuf, cmd=_cmd)
