"""HYPERVISOR_set_debugreg / get_debugreg (hypercalls 8, 9) and the debug registers of VCPUOP_initialise
(spec 1.3 steps 1, 2 and 13; ``xen/arch/x86/pv/misc-hypercalls.c:set_debugreg``, ``x86emul_read_dr``,
``x86_adj_dr6_rsvd`` / ``x86_adj_dr7_rsvd``). The values are those real Xen 4.20 and 4.17.7 gave
(guest/tests/debugreg, guest/tests/vcpu-lifecycle)."""

from __future__ import annotations

import pytest

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall, VcpuOp
from xenpy.abi.x86 import X86_CR4_DE

from .conftest import HOLE_GVA, Guest

EINVAL = -int(XenErrno.EINVAL)
EPERM = -int(XenErrno.EPERM)
ENODEV = -int(XenErrno.ENODEV)
NONCANONICAL = 0x0000_8000_0000_0000
U64 = (1 << 64) - 1


def set_dr(guest: Guest, reg: int, value: int, vcpu: int = 0) -> int:
    return guest.call(Hypercall.set_debugreg, reg & U64, value, vcpu=vcpu)


def get_dr(guest: Guest, reg: int, vcpu: int = 0) -> int:
    return guest.call(Hypercall.get_debugreg, reg & U64, vcpu=vcpu)


def test_reset_values(guest: Guest):
    """spec 7.5: DR0-DR3 = 0, DR6 = 0xffff0ff0, DR7 = 0x400 at boot."""
    assert [get_dr(guest, r) for r in (0, 1, 2, 3, 6, 7)] == [0, 0, 0, 0, 0xFFFF0FF0, 0x400]


@pytest.mark.parametrize(
    ("reg", "value", "rc"),
    [
        pytest.param(0, 0x40_0000, 0, id="dr0-kernel"),
        pytest.param(3, 0xFFFF_8800_0000_0000, 0, id="dr3-above-xen"),
        pytest.param(1, HOLE_GVA, EPERM, id="dr1-xen-range"),
        pytest.param(2, NONCANONICAL, EPERM, id="dr2-noncanonical"),
        pytest.param(6, 1 << 32, EINVAL, id="dr6-wide"),
        pytest.param(7, 1 << 32, EINVAL, id="dr7-wide"),
        pytest.param(7, 1 << 13, EPERM, id="dr7-gd"),
        pytest.param(7, 0x1 | (2 << 16), EPERM, id="dr7-io-without-de"),
        pytest.param(8, 0, ENODEV, id="dr8"),
        pytest.param(-1, 0, ENODEV, id="negative"),
    ],
)
def test_set_debugreg_errors(guest: Guest, reg, value, rc):
    """set_debugreg: -EPERM for an address failing __addr_ok, DR7.GD or an I/O breakpoint without CR4.DE;
    -EINVAL for DR6/DR7 wider than 32 bits; -ENODEV for no such register. A refused write changes nothing."""
    before = get_dr(guest, reg) if 0 <= reg <= 7 else None
    assert set_dr(guest, reg, value) == rc
    if rc == 0:
        assert get_dr(guest, reg) & U64 == value
    elif before is not None:
        assert get_dr(guest, reg) == before


def test_get_debugreg_upper_half_reads_negative(guest: Guest):
    """get_debugreg returns a long: an upper-half address comes back as a negative number."""
    assert set_dr(guest, 3, 0xFFFF_8800_0000_0000) == 0
    assert get_dr(guest, 3) == 0xFFFF_8800_0000_0000 - (1 << 64)


@pytest.mark.parametrize(
    ("reg", "value", "read"),
    [
        pytest.param(6, 0, 0xFFFF0FF0, id="dr6-ones"),
        pytest.param(6, 0xF00F, 0xFFFFEFFF, id="dr6-bit12-zero"),
        pytest.param(7, 0, 0x400, id="dr7-bit10-one"),
        pytest.param(7, 0xD800, 0x400, id="dr7-zeros"),
        pytest.param(7, 0x1, 0x401, id="dr7-l0"),
    ],
)
def test_reserved_bits(guest: Guest, reg, value, read):
    """x86_adj_dr6_rsvd / x86_adj_dr7_rsvd (no RTM, no BusLock Detect): DR6 bits 4-11, 16-31 read 1, bit 12
    reads 0; DR7 bit 10 reads 1, bits 11, 12, 14, 15 read 0."""
    assert set_dr(guest, reg, value) == 0
    assert get_dr(guest, reg) == read


def test_dr4_dr5_alias_dr6_dr7_without_cr4_de(guest: Guest):
    """DR4/DR5 are DR6/DR7 while CR4.DE is clear, and do not exist (-ENODEV) while it is set."""
    assert set_dr(guest, 4, 0) == 0
    assert get_dr(guest, 6) == 0xFFFF0FF0
    assert set_dr(guest, 5, 0x1) == 0
    assert get_dr(guest, 7) == 0x401
    assert get_dr(guest, 5) == 0x401
    guest.v[0].arch.ctrlreg[4] |= X86_CR4_DE
    assert get_dr(guest, 4) == ENODEV
    assert set_dr(guest, 5, 0) == ENODEV


def test_io_breakpoint_with_cr4_de_is_emulated(guest: Guest):
    """With CR4.DE an I/O breakpoint is accepted; its enables are kept apart (dr7_emul) and read back."""
    guest.v[0].arch.ctrlreg[4] |= X86_CR4_DE
    value = 0x8 | 0x1 | (2 << 20)  # G1 with breakpoint 1 R/W = I/O, and L0 (an execute breakpoint)
    assert set_dr(guest, 7, value) == 0
    assert guest.v[0].arch.debugreg[7] == (value & ~0x8) | 0x400
    assert guest.v[0].arch.dr7_emul == 0x8
    assert get_dr(guest, 7) == value | 0x400


def test_debugregs_are_per_vcpu(guest: Guest):
    """Each vCPU has its own registers (the hypercalls act on the caller)."""
    guest.bring_up(1)
    assert set_dr(guest, 0, 0x1000, vcpu=1) == 0
    assert get_dr(guest, 0, vcpu=1) == 0x1000
    assert get_dr(guest, 0, vcpu=0) == 0


def test_initialise_applies_set_debugreg(guest: Guest):
    """spec 1.3 step 13: the context's debug registers go through set_debugreg (reserved bits forced)."""
    ctx = guest.context(**{"debugreg[0]": 0x2000, "debugreg[6]": 0, "debugreg[7]": 0xD801})
    assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 1, ctx) == 0
    assert guest.v[1].arch.debugreg == [0x2000, 0, 0, 0, 0, 0, 0xFFFF0FF0, 0x401]


def test_initialise_drops_refused_debugregs_in_4_17(make_guest):
    """Xen 4.17 has no steps 1-2 (15987cb03f, 4.18): a bad value is dropped by set_debugreg and the reset value
    stays, and the context is accepted (seen on real Xen 4.17.7 not refusing it)."""
    guest = make_guest(profile="4.17.7")
    ctx = guest.context(**{"debugreg[0]": HOLE_GVA, "debugreg[7]": (1 << 32) | 1})
    assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 1, ctx) == 0
    assert guest.v[1].arch.debugreg[0] == 0
    assert guest.v[1].arch.debugreg[7] == 0x400


@pytest.mark.parametrize("profile", ["head", "4.20"])
def test_initialise_refuses_bad_debugregs(make_guest, profile):
    """spec 1.3 steps 1-2 (>= 4.18): DR6/DR7 wider than 32 bits or DR0-DR3 failing __addr_ok -> -EINVAL."""
    guest = make_guest(profile=profile)
    for fields in ({"debugreg[6]": 1 << 32}, {"debugreg[7]": 1 << 32}, {"debugreg[2]": HOLE_GVA}):
        assert guest.vcpu_op(VcpuOp.VCPUOP_initialise, 1, guest.context(**fields)) == EINVAL
    assert not guest.v[1].is_initialised
