"""The handler registry covers the generated hypercall table.

Every hypercall number of ``xenpy.abi.generated.hypercalls.HYPERCALLS`` that Xen dispatches (not
``implemented_as_enosys``) either has a handler or is listed, with a reason, in
``xenpy.hypercall.handlers.NOT_IMPLEMENTED`` (hypercalls xenpy does not implement yet; they return -ENOSYS).
"""

from __future__ import annotations

import pytest

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import HYPERCALLS, Hypercall
from xenpy.hypercall.handlers import NOT_IMPLEMENTED, hypercall_coverage
from xenpy.hypercall.registry import registered_handlers
from xenpy.hypervisor import DomainConfig, Hypervisor

ENOSYS = -XenErrno.ENOSYS


def test_every_dispatched_hypercall_has_a_handler_or_a_reason():
    """Each hypercall Xen dispatches is handled, or listed in NOT_IMPLEMENTED."""
    handlers = registered_handlers()
    missing = [
        f"{nr} {defn.name}"
        for nr, defn in sorted(HYPERCALLS.items())
        if not defn.implemented_as_enosys and nr not in handlers and nr not in NOT_IMPLEMENTED
    ]
    assert not missing, f"no handler and not listed as not implemented: {missing}"


def test_not_implemented_table_is_accurate():
    """A listed hypercall exists in the table, is dispatched by Xen, has a reason and no handler."""
    handlers = registered_handlers()
    for nr, reason in NOT_IMPLEMENTED.items():
        defn = HYPERCALLS.get(nr)
        assert defn is not None, f"{nr} is not in the generated table"
        assert not defn.implemented_as_enosys, f"{defn.name} is -ENOSYS in Xen itself: do not list it"
        assert reason.strip(), f"{defn.name} needs a reason"
        assert nr not in handlers, f"{defn.name} now has a handler: remove it from NOT_IMPLEMENTED"


def test_handlers_only_for_hypercalls_xen_dispatches():
    """No handler for a number Xen does not have, or answers with -ENOSYS."""
    for nr, fn in registered_handlers().items():
        defn = HYPERCALLS.get(nr)
        assert defn is not None, f"{fn.__qualname__} handles {nr}, which is not in the table"
        assert not defn.implemented_as_enosys, f"{fn.__qualname__} handles {defn.name}, -ENOSYS in Xen"


def test_coverage_shows_every_number_with_its_status():
    """``hypercall_coverage`` lists the whole table; no dispatched number lacks a handler or a reason."""
    rows = hypercall_coverage()
    assert [nr for nr, _, _ in rows] == sorted(HYPERCALLS)
    status = {nr: text for nr, _, text in rows}
    assert status[Hypercall.xen_version] == "handled"
    assert status[11] == "-ENOSYS in Xen"
    for nr, reason in NOT_IMPLEMENTED.items():
        assert status[nr] == f"not implemented: {reason}"
    assert not [row for row in rows if row[2].endswith("no reason given")]


@pytest.fixture(scope="module")
def running_vcpu():
    hv = Hypervisor(nr_pcpus=1, memory_mib=8)
    dom = hv.create_domain(DomainConfig(memory_mib=1))
    dom.unpause()
    return hv, dom.vcpus[0]


@pytest.mark.parametrize("nr", sorted(NOT_IMPLEMENTED))
def test_not_implemented_hypercalls_return_enosys(running_vcpu, nr):
    """spec 6.1: a hypercall without a handler returns -ENOSYS to the guest."""
    hv, vcpu = running_vcpu
    assert hv.hypercall(vcpu, nr, 1, 2, 3, 4, 5) == ENOSYS
