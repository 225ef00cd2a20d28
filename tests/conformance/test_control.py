"""The toolstack and platform hypercalls for a domain without privilege: platform_op, sysctl, domctl, kexec_op
(``xen/arch/x86/platform_hypercall.c``, ``xen/common/sysctl.c``, ``xen/common/domctl.c``, ``xen/common/kexec.c``
with ``xen/include/xsm/dummy.h``; spec 6, "hypercalls a domU is refused")."""

from __future__ import annotations

import struct

import pytest

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.abi.xen import DOMID_INVALID, DOMID_IO, DOMID_SELF
from xenpy.core.profiles import PROFILES
from xenpy.hypercall.handlers.control import DOMCTL_SIZE, PLATFORM_OP_SIZE, SYSCTL_SIZE, XENPF_INTERFACE_VERSION

from .conftest import UNMAPPED_GVA, Guest

EFAULT, EACCES, EPERM, ESRCH, ENOSYS = (-e for e in (XenErrno.EFAULT, XenErrno.EACCES, XenErrno.EPERM,
                                                     XenErrno.ESRCH, XenErrno.ENOSYS))  # fmt: skip
XEN_SYSCTL_physinfo = 3
XEN_DOMCTL_createdomain, XEN_DOMCTL_getdomaininfo = 1, 5
XEN_DOMCTL_assign_device, XEN_DOMCTL_test_assign_device = 37, 45


def put_op(g: Guest, size: int, head: bytes) -> int:
    gva = g.dom.alloc_guest(size, 8)
    g.dom.write_guest(gva, head.ljust(size, b"\0"))
    return gva


def sysctl(g: Guest, cmd: int, version: int) -> int:
    return g.call(Hypercall.sysctl, put_op(g, SYSCTL_SIZE, struct.pack("<II", cmd, version)))


def domctl(g: Guest, cmd: int, version: int, domid: int) -> int:
    return g.call(Hypercall.domctl, put_op(g, DOMCTL_SIZE, struct.pack("<IIH", cmd, version, domid)))


@pytest.mark.parametrize("profile", list(PROFILES))
def test_sysctl_checks_the_interface_version_then_refuses_a_domu(make_guest, profile):
    g = make_guest(profile=profile)
    version = PROFILES[profile].sysctl_interface_version
    assert g.call(Hypercall.sysctl, UNMAPPED_GVA) == EFAULT
    assert sysctl(g, XEN_SYSCTL_physinfo, version + 1) == EACCES
    assert sysctl(g, XEN_SYSCTL_physinfo, version) == EPERM


def test_sysctl_interface_versions_of_the_releases():
    """The values of each release's public/sysctl.h and domctl.h."""
    got = {name: (p.sysctl_interface_version, p.domctl_interface_version) for name, p in PROFILES.items()}
    assert got["4.10"] == (0x10, 0x0E)
    assert got["4.17.7"] == got["4.17"] == (0x15, 0x15)
    assert got["4.20"] == (0x15, 0x17)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_domctl_checks_version_then_the_domain_then_refuses(make_guest, profile):
    g = make_guest(profile=profile)
    version = PROFILES[profile].domctl_interface_version
    me = g.dom.domid
    assert g.call(Hypercall.domctl, UNMAPPED_GVA) == EFAULT
    assert domctl(g, XEN_DOMCTL_getdomaininfo, version - 1, me) == EACCES
    assert domctl(g, XEN_DOMCTL_getdomaininfo, version, 0x1234) == ESRCH
    assert domctl(g, XEN_DOMCTL_getdomaininfo, version, DOMID_SELF) == ESRCH  # not special to do_domctl
    assert domctl(g, XEN_DOMCTL_getdomaininfo, version, me) == EPERM
    assert domctl(g, XEN_DOMCTL_createdomain, version, 0x1234) == EPERM  # no domain looked up
    assert domctl(g, XEN_DOMCTL_assign_device, version, DOMID_IO) == EPERM
    assert domctl(g, XEN_DOMCTL_assign_device, version, DOMID_INVALID) == ESRCH
    assert domctl(g, XEN_DOMCTL_test_assign_device, version, DOMID_INVALID) == EPERM


def test_platform_op_and_kexec_refuse_a_domu(guest: Guest):
    op = put_op(guest, PLATFORM_OP_SIZE, struct.pack("<II", 1, XENPF_INTERFACE_VERSION))
    assert guest.call(Hypercall.platform_op, UNMAPPED_GVA) == EFAULT
    assert guest.call(Hypercall.platform_op, put_op(guest, PLATFORM_OP_SIZE, struct.pack("<II", 1, 0))) == EACCES
    assert guest.call(Hypercall.platform_op, op) == EPERM
    assert guest.call(Hypercall.kexec_op, 0, UNMAPPED_GVA) == EPERM  # before the argument is read


def test_the_hardware_domain_passes_the_privilege_check(make_guest):
    """xenpy implements none of these operations: past the privilege check, the hardware domain gets -ENOSYS."""
    g = make_guest(hardware_domain=True, domid=0)
    assert sysctl(g, XEN_SYSCTL_physinfo, PROFILES["head"].sysctl_interface_version) == ENOSYS
    assert sysctl(g, XEN_SYSCTL_physinfo, 0) == EACCES
    assert domctl(g, XEN_DOMCTL_getdomaininfo, PROFILES["head"].domctl_interface_version, 0) == ENOSYS
    assert g.call(Hypercall.kexec_op, 0, 0) == ENOSYS
