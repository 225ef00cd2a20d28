"""HYPERVISOR_vm_assist (spec 6.6; ``xen/common/domain.c:vm_assist``)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall, VmAssistCmd
from xenpy.abi.xen import VMASST_TYPE
from xenpy.core.profiles import HEAD

from .conftest import ALL_PROFILES, Guest

EINVAL = -XenErrno.EINVAL
ENOSYS = -XenErrno.ENOSYS
ENABLE = VmAssistCmd.VMASST_CMD_enable
DISABLE = VmAssistCmd.VMASST_CMD_disable
VALID_TYPES = [int(t) for t in VMASST_TYPE]


def vm_assist(g: Guest, cmd: int, vmassist_type: int, *, vcpu: int = 0) -> int:
    return g.call(Hypercall.vm_assist, cmd, vmassist_type, vcpu=vcpu)


@pytest.mark.parametrize("profile", ALL_PROFILES)
@pytest.mark.parametrize("vmassist_type", VALID_TYPES)
def test_enable_then_disable_each_valid_type(make_guest, profile, vmassist_type):
    """spec 6.6: enable sets bit ``type`` of the domain's vm_assist, disable clears it; both return 0."""
    g = make_guest(profile)
    assert g.dom.vm_assist == 0
    assert vm_assist(g, ENABLE, vmassist_type) == 0
    assert g.dom.vm_assist == 1 << vmassist_type
    assert vm_assist(g, DISABLE, vmassist_type) == 0
    assert g.dom.vm_assist == 0


def test_enable_is_idempotent_and_bits_accumulate(guest: Guest):
    """spec 6.6: enabling an enabled assist is not an error; other bits are left alone."""
    assert vm_assist(guest, ENABLE, VMASST_TYPE.VMASST_TYPE_writable_pagetables) == 0
    assert vm_assist(guest, ENABLE, VMASST_TYPE.VMASST_TYPE_writable_pagetables) == 0
    assert vm_assist(guest, ENABLE, VMASST_TYPE.VMASST_TYPE_m2p_strict) == 0
    assert guest.dom.vm_assist == (1 << 2) | (1 << 32)
    assert vm_assist(guest, DISABLE, VMASST_TYPE.VMASST_TYPE_architectural_iopl) == 0
    assert guest.dom.vm_assist == (1 << 2) | (1 << 32)


@pytest.mark.parametrize("vmassist_type", [64, 65, 127, 0xFFFF_FFFF])
def test_type_at_or_above_64_is_einval(guest: Guest, vmassist_type):
    """spec 6.6: type >= 64 -> -EINVAL (BITS_PER_LONG), state untouched."""
    guest.dom.vm_assist = 1 << 2
    for cmd in (ENABLE, DISABLE):
        assert vm_assist(guest, cmd, vmassist_type) == EINVAL
    assert guest.dom.vm_assist == 1 << 2


@pytest.mark.parametrize("vmassist_type", [6, 7, 31, 33, 63])
def test_type_outside_valid_mask_is_einval(guest: Guest, vmassist_type):
    """spec 6.6: a type below 64 that is not in the valid mask -> -EINVAL."""
    assert vm_assist(guest, ENABLE, vmassist_type) == EINVAL
    assert vm_assist(guest, DISABLE, vmassist_type) == EINVAL
    assert guest.dom.vm_assist == 0


def test_type_is_checked_before_cmd(guest: Guest):
    """spec 6.6: the type check happens before the command check (bad type + bad cmd -> -EINVAL)."""
    assert vm_assist(guest, 2, 64) == EINVAL
    assert vm_assist(guest, 7, 6) == EINVAL


@pytest.mark.parametrize("cmd", [2, 3, 0xFFFF_FFFF])
def test_unknown_cmd_with_valid_type_is_enosys(guest: Guest, cmd):
    """spec 6.6: unknown cmd -> -ENOSYS; nothing changes."""
    guest.dom.vm_assist = 1 << 5
    assert vm_assist(guest, cmd, VMASST_TYPE.VMASST_TYPE_runstate_update_flag) == ENOSYS
    assert vm_assist(guest, cmd, VMASST_TYPE.VMASST_TYPE_writable_pagetables) == ENOSYS
    assert guest.dom.vm_assist == 1 << 5


def test_arguments_are_unsigned_int(guest: Guest):
    """``do_vm_assist(unsigned int cmd, unsigned int type)``: the upper halves of rdi and rsi are ignored."""
    assert vm_assist(guest, (1 << 32) | ENABLE, (7 << 32) | 2) == 0
    assert guest.dom.vm_assist == 1 << 2


def test_valid_mask_comes_from_the_profile(make_guest):
    """spec 6.6: the valid mask is the release's (type 5 did not exist before 4.8)."""
    old = replace(HEAD, name="no-runstate-flag", vm_assist_valid_mask=HEAD.vm_assist_valid_mask & ~(1 << 5))
    g = make_guest(old)
    assert vm_assist(g, ENABLE, VMASST_TYPE.VMASST_TYPE_runstate_update_flag) == EINVAL
    assert g.dom.vm_assist == 0
    assert vm_assist(g, ENABLE, VMASST_TYPE.VMASST_TYPE_architectural_iopl) == 0


def test_assists_are_per_domain(make_guest):
    """spec 6.6: the assist is a domain property: set from vCPU 1, seen by the domain; other domains unaffected."""
    g = make_guest()
    other = make_guest()
    g.bring_up(1)
    assert vm_assist(g, ENABLE, VMASST_TYPE.VMASST_TYPE_pae_extended_cr3, vcpu=1) == 0
    assert g.dom.vm_assist == 1 << 3
    assert other.dom.vm_assist == 0
    assert vm_assist(g, DISABLE, VMASST_TYPE.VMASST_TYPE_pae_extended_cr3, vcpu=0) == 0
    assert g.dom.vm_assist == 0
