"""``HYPERVISOR_xen_version(int cmd, void *arg)`` (hypercall 17; spec 6.7, 6.9).

Implements ``xen/common/kernel.c:do_xen_version`` and ``xenver_varbuf_op`` with the XSM dummy policy
(``xen/include/xsm/dummy.h:xsm_xen_version``), as a Xen release build (``CONFIG_DEBUG=n``) reports them.

What xenpy reports where Xen reports facts about its own build comes from the domain's profile record
(:class:`~xenpy.core.profiles.XenProfile`, the table ``hypercalls/profiles.toml``, listed in
``docs/reference/profiles.rst``), the same record that holds the behaviour flags:

* version: ``version`` (``(major, minor)``); extraversion: ``extraversion`` (``"-unstable"`` for ``head``, the
  point release, ``".0"``, ``".3"``, for the release profiles);
* compile info: ``compiler``, ``compile_by``, ``compile_domain``, ``compile_date``; changeset: ``changeset``
  (``"unavailable"``, what Xen reports when built outside git);
* capabilities: ``capabilities`` (``"xen-3.0-x86_64 xen-3.0-x86_32p "``: PV64 and PV32 guests, no HVM; the
  trailing space is Xen's);
* command line: ``commandline`` (empty); build id: none (Xen built without one: -ENODATA to a privileged
  caller);
* guest handle: 16 zero bytes (xenpy's toolstack gives domains no UUID).

Every answer that depends only on the profile (the version number, each fixed-size string, the profile's
XENFEAT bits, the varbuf strings) is computed once per profile record and kept in its ``derived`` cache.

Privilege: the hardware domain is privileged; every other domain is a domU and, under the XSM dummy policy,
is denied XENVER_commandline (it reads ``"<denied>"``), XENVER_build_id and XENVER_commandline2 (-EPERM).

XENFEAT bits of ``XENVER_get_features`` submap 0 for a PV domain (``do_xen_version`` case 6):

* XENFEAT_mmu_pt_update_preserve_ad (5), XENFEAT_highmem_assist (6), XENFEAT_gnttab_map_avail_bits (7): every
  PV domain (x86);
* XENFEAT_memory_op_vnode_supported (13): always;
* XENFEAT_direct_mapped (17): a PV domain is not translated, so always direct-mapped, in profiles with
  ``xenfeat_direct_mapped`` (>= 4.15; 4.10 reports neither 16 nor 17);
* XENFEAT_runstate_phys_area (18), XENFEAT_vcpu_time_phys_area (19): profiles with ``phys_areas`` (>= 4.18);
* XENFEAT_dm_msix_all_writes (20): x86, profiles with ``xenfeat_dm_msix_all_writes`` (releases after 4.17);
* XENFEAT_pae_pgdir_above_4gb (4): only while VMASST_TYPE_pae_extended_cr3 is enabled;
* XENFEAT_dom0 (11): the hardware domain only;
* never for PV: writable_page_tables (0) and auto_translated_physmap (2) (translated guests only),
  writable_descriptor_tables (1), supervisor_mode_kernel (3), the HVM bits (8-10), ARM_SMCCC (14),
  linux_rsdp_unrestricted (15, PVH dom0), not_direct_mapped (16).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xenpy.abi.arch_x86 import HYPERVISOR_COMPAT_VIRT_START, HYPERVISOR_VIRT_START
from xenpy.abi.cstruct import fast_codec
from xenpy.abi.errno import XenErrno
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
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from types import ModuleType

    from xenpy.core.profiles import XenProfile
    from xenpy.hypercall.context import HypercallContext

#: ``xen_deny()``: what a caller denied XENVER_commandline reads.
XEN_DENY = "<denied>"
#: ``xenver_varbuf_op``: strings longer than this return -E2BIG.
_VARBUF_MAX = 64 * 1024

_ENOSYS = -int(XenErrno.ENOSYS)
_EINVAL = -int(XenErrno.EINVAL)
_EPERM = -int(XenErrno.EPERM)
_ENODATA = -int(XenErrno.ENODATA)
_ENOBUFS = -int(XenErrno.ENOBUFS)
_E2BIG = -int(XenErrno.E2BIG)
_DENIED = XEN_DENY.encode() + b"\0"
_GUEST_HANDLE = bytes(XEN_GUEST_HANDLE_LEN)
#: Key of this module's answers in ``XenProfile.derived``.
_KEY = __name__


def _c_string(text: str, size: int) -> bytes:
    """``memset(buf, 0, size); safe_strcpy(buf, text)``: truncated to ``size - 1`` bytes, zero-padded."""
    raw = text.encode()[: size - 1]
    return raw + bytes(size - len(raw))


@dataclass(frozen=True, slots=True)
class XenVersionAnswers:
    """What XENVER_* answers in one profile, independent of the caller (computed once per profile record).

    Attributes:
        version: XENVER_version's result, ``(major << 16) | minor``.
        extraversion, capabilities, changeset, commandline: the whole fixed-size C arrays (zero-padded).
        features: the XENFEAT bits of submap 0 that depend on the profile only.
        varbuf: XENVER_extraversion2 .. commandline2 -> the string (no NUL); empty without ``varbuf_subops``.
        compile_info: ``xen_compile_info`` per ABI module (filled on first use by a domain of that width).
    """

    profile: XenProfile
    version: int
    extraversion: bytes
    capabilities: bytes
    changeset: bytes
    commandline: bytes
    features: int
    varbuf: dict[int, bytes]
    compile_info: dict[ModuleType, bytes]


def xen_version_answers(profile: XenProfile) -> XenVersionAnswers:
    """The :class:`XenVersionAnswers` of ``profile`` (computed on first use, then kept on the record)."""
    answers = profile.derived.get(_KEY)
    if answers is None:
        answers = profile.derived[_KEY] = _compute_answers(profile)
    return answers  # type: ignore[return-value]


def _compute_answers(p: XenProfile) -> XenVersionAnswers:
    major, minor = p.version
    features = (
        (1 << XENFEAT.XENFEAT_memory_op_vnode_supported)
        | (1 << XENFEAT.XENFEAT_mmu_pt_update_preserve_ad)
        | (1 << XENFEAT.XENFEAT_highmem_assist)
        | (1 << XENFEAT.XENFEAT_gnttab_map_avail_bits)
    )
    if p.phys_areas:
        features |= (1 << XENFEAT.XENFEAT_vcpu_time_phys_area) | (1 << XENFEAT.XENFEAT_runstate_phys_area)
    if p.xenfeat_dm_msix_all_writes:
        features |= 1 << XENFEAT.XENFEAT_dm_msix_all_writes
    if p.xenfeat_direct_mapped:
        features |= 1 << XENFEAT.XENFEAT_direct_mapped
    varbuf: dict[int, bytes] = {}
    if p.varbuf_subops:
        varbuf = {
            XenVer.XENVER_extraversion2: p.extraversion.encode(),
            XenVer.XENVER_capabilities2: p.capabilities.encode(),
            XenVer.XENVER_changeset2: p.changeset.encode(),
            XenVer.XENVER_commandline2: p.commandline.encode(),
        }
    return XenVersionAnswers(
        profile=p,
        version=(major << 16) | minor,
        extraversion=_c_string(p.extraversion, XEN_EXTRAVERSION_LEN),
        capabilities=_c_string(p.capabilities, XEN_CAPABILITIES_INFO_LEN),
        changeset=_c_string(p.changeset, XEN_CHANGESET_INFO_LEN),
        commandline=_c_string(p.commandline, XEN_COMMANDLINE_LEN),
        features=features,
        varbuf=varbuf,
        compile_info={},
    )


def xen_features_submap0(ctx: HypercallContext) -> int:
    """XENFEAT_* submap 0 of the calling PV domain (see the module docstring for each bit)."""
    d = ctx.domain
    submap = xen_version_answers(ctx.profile).features
    if d.vm_assist >> VMASST_TYPE_pae_extended_cr3 & 1:
        submap |= 1 << XENFEAT.XENFEAT_pae_pgdir_above_4gb
    if d.is_hardware_domain:
        submap |= 1 << XENFEAT.XENFEAT_dom0
    return submap


def _denied(ctx: HypercallContext, cmd: int) -> bool:
    """``xsm_xen_version`` (dummy policy): True if the caller may not see ``cmd``'s data (a domU)."""
    return cmd in _PRIVILEGED_CMDS and not ctx.domain.is_hardware_domain


_PRIVILEGED_CMDS = frozenset({XenVer.XENVER_commandline, XenVer.XENVER_build_id, XenVer.XENVER_commandline2})

#: ``subop(ctx, arg, answers) -> result``: one XENVER_* command.
_Op = Callable[["HypercallContext", int, XenVersionAnswers], int]
_SUBOPS: dict[int, _Op] = {}


def _subop(*cmds: XenVer) -> Callable[[_Op], _Op]:
    def register(fn: _Op) -> _Op:
        for cmd in cmds:
            _SUBOPS[int(cmd)] = fn
        return fn

    return register


@hypercall_handler(Hypercall.xen_version, effects=Effect.NONE)
def do_xen_version(ctx: HypercallContext, cmd: int, arg: int) -> int:
    """Report the hypervisor's version, build and features to the calling domain.

    Arguments: ``cmd`` (``XENVER_*``, C ``int``), ``arg`` (guest pointer or NULL).

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
    answers = ctx.profile.derived.get(_KEY)
    if answers is None:
        answers = xen_version_answers(ctx.profile)
    if cmd == 0:  # XENVER_version: the hot path
        return answers.version  # type: ignore[no-any-return, union-attr]
    fn = _SUBOPS.get(cmd)
    if fn is None:
        return _ENOSYS
    return fn(ctx, arg, answers)  # type: ignore[arg-type]


@_subop(XenVer.XENVER_version)
def _xenver_version(ctx: HypercallContext, arg: int, answers: XenVersionAnswers) -> int:
    return answers.version


@_subop(XenVer.XENVER_extraversion)
def _xenver_extraversion(ctx: HypercallContext, arg: int, answers: XenVersionAnswers) -> int:
    ctx.copy_to_guest(arg, answers.extraversion)
    return 0


@_subop(XenVer.XENVER_compile_info)
def _xenver_compile_info(ctx: HypercallContext, arg: int, answers: XenVersionAnswers) -> int:
    abi = ctx.abi
    data = answers.compile_info.get(abi)
    if data is None:
        p = answers.profile
        info = abi.xen_compile_info
        data = answers.compile_info[abi] = b"".join(
            _c_string(text, info.type_of(field).size)
            for field, text in (
                ("compiler", p.compiler),
                ("compile_by", p.compile_by),
                ("compile_domain", p.compile_domain),
                ("compile_date", p.compile_date),
            )
        )
    ctx.copy_to_guest(arg, data)
    return 0


@_subop(XenVer.XENVER_capabilities)
def _xenver_capabilities(ctx: HypercallContext, arg: int, answers: XenVersionAnswers) -> int:
    ctx.copy_to_guest(arg, answers.capabilities)
    return 0


@_subop(XenVer.XENVER_changeset)
def _xenver_changeset(ctx: HypercallContext, arg: int, answers: XenVersionAnswers) -> int:
    ctx.copy_to_guest(arg, answers.changeset)
    return 0


@_subop(XenVer.XENVER_platform_parameters)
def _xenver_platform_parameters(ctx: HypercallContext, arg: int, answers: XenVersionAnswers) -> int:
    virt_start = HYPERVISOR_COMPAT_VIRT_START if ctx.domain.is_compat else HYPERVISOR_VIRT_START
    ctx.copy_to_guest(arg, fast_codec(ctx.abi.xen_platform_parameters).pack(virt_start))
    return 0


@_subop(XenVer.XENVER_get_features)
def _xenver_get_features(ctx: HypercallContext, arg: int, answers: XenVersionAnswers) -> int:
    codec = fast_codec(ctx.abi.xen_feature_info)
    submap_idx, _submap = codec.unpack(ctx.copy_from_guest(arg, codec.size))
    if submap_idx != 0:
        return _EINVAL
    ctx.copy_to_guest(arg, codec.pack(0, xen_features_submap0(ctx)))
    return 0


@_subop(XenVer.XENVER_pagesize)
def _xenver_pagesize(ctx: HypercallContext, arg: int, answers: XenVersionAnswers) -> int:
    if arg != 0:
        return _EINVAL
    return PAGE_SIZE


@_subop(XenVer.XENVER_guest_handle)
def _xenver_guest_handle(ctx: HypercallContext, arg: int, answers: XenVersionAnswers) -> int:
    ctx.copy_to_guest(arg, _GUEST_HANDLE)
    return 0


@_subop(XenVer.XENVER_commandline)
def _xenver_commandline(ctx: HypercallContext, arg: int, answers: XenVersionAnswers) -> int:
    ctx.copy_to_guest(arg, _DENIED if _denied(ctx, XenVer.XENVER_commandline) else answers.commandline)
    return 0


@_subop(XenVer.XENVER_build_id)
def _xenver_build_id(ctx: HypercallContext, arg: int, answers: XenVersionAnswers) -> int:
    if _denied(ctx, XenVer.XENVER_build_id):
        return _EPERM
    if not answers.profile.varbuf_subops and arg != 0:
        # xen_build_id_t {uint32_t len; unsigned char buf[]}: len is read and checked first.
        if ctx.read_struct(arg, "xen_build_id")["len"] == 0:
            return _EINVAL
    # xen_build_id(): xenpy has no build id.
    return _ENODATA


def _varbuf_op(cmd: XenVer) -> _Op:
    """``xenver_varbuf_op`` for the string sub-op ``cmd`` (11-14)."""

    def op(ctx: HypercallContext, arg: int, answers: XenVersionAnswers) -> int:
        text = answers.varbuf.get(cmd)
        if text is None:  # profiles without varbuf_subops
            return _ENOSYS
        if _denied(ctx, cmd):
            return _EPERM
        if len(text) > _VARBUF_MAX:
            return _E2BIG
        if arg == 0:
            return len(text)
        if len(text) > ctx.read_struct(arg, "xen_varbuf")["len"]:
            return _ENOBUFS
        ctx.copy_to_guest(arg + ctx.abi.xen_varbuf.size, text)  # buf[] follows the header
        return len(text)

    op.__name__ = op.__qualname__ = f"_xenver_varbuf_{int(cmd)}"
    return op


for _cmd in (
    XenVer.XENVER_extraversion2,
    XenVer.XENVER_capabilities2,
    XenVer.XENVER_changeset2,
    XenVer.XENVER_commandline2,
):
    _SUBOPS[int(_cmd)] = _varbuf_op(_cmd)
