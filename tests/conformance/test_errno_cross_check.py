"""The conformance errno cross-check (``conftest.errno_table_violations``) covers every profile, loudly."""

from __future__ import annotations

from dataclasses import replace

import pytest

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import PROFILES, Hypercall, VcpuOp
from xenpy.core.profiles import HEAD

from .conftest import errno_table_violations

REGISTER_VCPU_INFO = (Hypercall.vcpu_op, VcpuOp.VCPUOP_register_vcpu_info)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_is_checked(profile: str) -> None:
    """An errno the table does not list for the profile is reported, for every profile (4.10 included)."""
    assert errno_table_violations([(profile, *REGISTER_VCPU_INFO, -XenErrno.ESRCH)]) != []
    assert errno_table_violations([(profile, *REGISTER_VCPU_INFO, -XenErrno.EFAULT)]) == []


def test_4_10_columns_are_xen_4_10s() -> None:
    """Spec 1.4: 4.10.0's map_vcpu_info has no -ENXIO (offset checks are -EINVAL, misalignment accepted)."""
    assert errno_table_violations([("4.10", *REGISTER_VCPU_INFO, -XenErrno.ENXIO)]) != []
    assert errno_table_violations([("4.17", *REGISTER_VCPU_INFO, -XenErrno.ENXIO)]) == []


def test_a_profile_outside_the_table_fails_loudly() -> None:
    """A call from a profile without a column is a violation even when it succeeds: never a silent skip."""
    own = replace(HEAD, name="mine")
    bad = errno_table_violations([(own.name, *REGISTER_VCPU_INFO, 0)])
    assert len(bad) == 1 and "'mine' is not in hypercalls/profiles.toml" in bad[0]
