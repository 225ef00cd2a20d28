"""Hypercall handlers, one module per hypercall family.

Importing this package registers every handler with :func:`xenpy.hypercall.registry.hypercall_handler`; each module
is imported explicitly below (one line each), never discovered by name. :func:`handled_hypercalls` lists which
entries of the generated hypercall table have a handler.

Invariant (checked by ``tests/core/test_handler_coverage.py``): every hypercall of the generated table that Xen
dispatches (not ``implemented_as_enosys``) has a handler or is in :data:`NOT_IMPLEMENTED`, the one table of
hypercalls xenpy does not implement yet, each with its reason; those return -ENOSYS. :func:`hypercall_coverage`
shows the whole table with each number's status.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from xenpy.abi.generated.hypercalls import HYPERCALLS, Hypercall
from xenpy.hypercall.handlers import callback_op as callback_op
from xenpy.hypercall.handlers import console_io as console_io
from xenpy.hypercall.handlers import control as control
from xenpy.hypercall.handlers import cpu as cpu
from xenpy.hypercall.handlers import debugreg as debugreg
from xenpy.hypercall.handlers import event_channel_op as event_channel_op
from xenpy.hypercall.handlers import grant_table_op as grant_table_op
from xenpy.hypercall.handlers import memory_op as memory_op
from xenpy.hypercall.handlers import mmu_update as mmu_update
from xenpy.hypercall.handlers import mmuext_op as mmuext_op
from xenpy.hypercall.handlers import multicall as multicall
from xenpy.hypercall.handlers import nmi_op as nmi_op
from xenpy.hypercall.handlers import physdev_op as physdev_op
from xenpy.hypercall.handlers import sched_op as sched_op
from xenpy.hypercall.handlers import set_callbacks as set_callbacks
from xenpy.hypercall.handlers import set_timer_op as set_timer_op
from xenpy.hypercall.handlers import set_trap_table as set_trap_table
from xenpy.hypercall.handlers import stack_switch as stack_switch
from xenpy.hypercall.handlers import update_va_mapping as update_va_mapping
from xenpy.hypercall.handlers import vcpu_op as vcpu_op
from xenpy.hypercall.handlers import vm_assist as vm_assist
from xenpy.hypercall.handlers import xen_version as xen_version
from xenpy.hypercall.registry import registered_handlers

#: Hypercalls Xen dispatches that xenpy does not implement yet (they return -ENOSYS), with the reason.
NOT_IMPLEMENTED: Mapping[int, str] = MappingProxyType(
    {
        Hypercall.physdev_op_compat: "physical devices and IRQs (xenpy has no devices)",
        Hypercall.xsm_op: "XSM/FLASK operations (a Xen without FLASK returns -ENOSYS too)",
        Hypercall.hvm_op: "HVM operations and parameters",
        Hypercall.argo_op: "Argo messaging (a Xen without CONFIG_ARGO returns -ENOSYS too)",
        Hypercall.xenpmu_op: "virtual PMU",
        Hypercall.dm_op: "device-model operations",
        Hypercall.hypfs_op: "hypervisor filesystem",
        Hypercall.mca: "machine-check architecture",
        Hypercall.paging_domctl_cont: "Xen-internal continuation of a paging domctl",
    }
)


def hypercall_coverage() -> list[tuple[int, str, str]]:
    """Every hypercall of the generated table as ``(number, name, status)``, by number.

    ``status`` is ``"handled"``, ``"-ENOSYS in Xen"`` (Xen itself does not dispatch it) or
    ``"not implemented: <reason>"`` (from :data:`NOT_IMPLEMENTED`; a number in neither reads
    ``"not implemented: no reason given"``, which the coverage test refuses).
    """
    handlers = registered_handlers()
    rows = []
    for nr, defn in sorted(HYPERCALLS.items()):
        if int(nr) in handlers:
            status = "handled"
        elif defn.implemented_as_enosys:
            status = "-ENOSYS in Xen"
        else:
            status = f"not implemented: {NOT_IMPLEMENTED.get(int(nr), 'no reason given')}"
        rows.append((int(nr), defn.name, status))
    return rows


def handled_hypercalls() -> list[tuple[int, str, bool]]:
    """Every hypercall of the generated table as ``(number, name, has_handler)``, by number."""
    handlers = registered_handlers()
    return [(int(nr), str(getattr(defn, "name", defn)), int(nr) in handlers) for nr, defn in sorted(HYPERCALLS.items())]


__all__ = [
    "NOT_IMPLEMENTED",
    "callback_op",
    "console_io",
    "cpu",
    "debugreg",
    "event_channel_op",
    "grant_table_op",
    "handled_hypercalls",
    "hypercall_coverage",
    "memory_op",
    "mmu_update",
    "mmuext_op",
    "multicall",
    "nmi_op",
    "sched_op",
    "set_callbacks",
    "set_timer_op",
    "set_trap_table",
    "stack_switch",
    "update_va_mapping",
    "vcpu_op",
    "vm_assist",
    "xen_version",
]
