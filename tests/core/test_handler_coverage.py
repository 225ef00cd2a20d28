"""The handler registry covers the generated hypercall table (DESIGN decision 1).

Every hypercall number of ``xenpy.abi.generated.hypercalls.HYPERCALLS`` that Xen dispatches (not
``implemented_as_enosys``) either has a handler or is listed, with a reason, in the table of hypercalls xenpy
does not implement yet (they return -ENOSYS).
"""

from __future__ import annotations

import pytest

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import HYPERCALLS, Hypercall
from xenpy.core import DomainConfig, Hypervisor
from xenpy.core.handlers import (  # noqa: F401 (registers the handlers)
    callback_op,
    console_io,
    nmi_op,
    set_callbacks,
    set_trap_table,
    vm_assist,
    xen_version,
)
from xenpy.core.hypercall import NR_HYPERCALLS, registered_handlers

#: Hypercalls Xen dispatches that xenpy does not implement yet: each returns -ENOSYS, with the reason.
NOT_IMPLEMENTED: dict[int, str] = {
    Hypercall.mmu_update: "page-table entry updates need xenpy's page-type validation of guest writes",
    Hypercall.set_gdt: "GDT frames are only loaded by VCPUOP_initialise so far",
    Hypercall.stack_switch: "kernel stack switch: no CPU engine state to update yet",
    Hypercall.fpu_taskswitch: "CR0.TS emulation needs the CPU engine",
    Hypercall.platform_op: "platform control for the hardware domain (a domU gets -EPERM in Xen)",
    Hypercall.set_debugreg: "debug registers need the CPU engine",
    Hypercall.get_debugreg: "debug registers need the CPU engine",
    Hypercall.update_descriptor: "GDT/LDT descriptor writes need descriptor validation",
    Hypercall.memory_op: "XENMEM_* reservation, physmap and machphys operations",
    Hypercall.multicall: "batched hypercalls",
    Hypercall.update_va_mapping: "single PTE updates need xenpy's page-type validation",
    Hypercall.physdev_op_compat: "physical devices and IRQs (no devices in xenpy)",
    Hypercall.grant_table_op: "grant tables",
    Hypercall.update_va_mapping_otherdomain: "foreign PTE updates need grant and page-type models",
    Hypercall.iret: "return from a bounce frame needs the CPU engine",
    Hypercall.set_segment_base: "FS/GS bases need the CPU engine",
    Hypercall.mmuext_op: "pinning, base pointers and TLB flushes need the page-type model",
    Hypercall.xsm_op: "XSM/FLASK operations (a Xen without FLASK returns -ENOSYS too)",
    Hypercall.physdev_op: "physical devices and IRQs (no devices in xenpy)",
    Hypercall.hvm_op: "HVM operations and parameters",
    Hypercall.sysctl: "toolstack operations (a domU gets -EPERM in Xen)",
    Hypercall.domctl: "toolstack operations (a domU gets -EPERM in Xen)",
    Hypercall.kexec_op: "kexec (a domU gets -EPERM in Xen)",
    Hypercall.argo_op: "Argo messaging (a Xen without CONFIG_ARGO returns -ENOSYS too)",
    Hypercall.xenpmu_op: "virtual PMU",
    Hypercall.dm_op: "device-model operations",
    Hypercall.hypfs_op: "hypervisor filesystem",
    Hypercall.mca: "machine-check architecture",
    Hypercall.paging_domctl_cont: "Xen-internal continuation of a paging domctl",
}

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


def enosys_numbers() -> list[int]:
    outside = [nr for nr in range(NR_HYPERCALLS) if nr not in HYPERCALLS]
    by_xen = [nr for nr, defn in HYPERCALLS.items() if defn.implemented_as_enosys]
    return sorted({*NOT_IMPLEMENTED, *outside, *by_xen})


@pytest.mark.parametrize("nr", [*enosys_numbers(), NR_HYPERCALLS, 1000])
def test_unhandled_numbers_return_enosys(nr):
    """spec 6.1: a number without a handler returns -ENOSYS to the guest."""
    hv = Hypervisor(nr_pcpus=1, memory_mib=8)
    dom = hv.create_domain(DomainConfig(memory_mib=1))
    dom.unpause()
    assert hv.hypercall(dom.vcpus[0], nr, 0, 0, 0, 0, 0) == ENOSYS
