"""Hypercall handlers, one module per hypercall family.

Importing this package registers every handler with :func:`xenpy.core.hypercall.hypercall_handler`; each module
is imported explicitly below (one line each), never discovered by name. :func:`handled_hypercalls` lists which
entries of the generated hypercall table have a handler.
"""

from __future__ import annotations

from xenpy.abi.generated.hypercalls import HYPERCALLS
from xenpy.core.handlers import callback_op as callback_op
from xenpy.core.handlers import console_io as console_io
from xenpy.core.handlers import event_channel_op as event_channel_op
from xenpy.core.handlers import nmi_op as nmi_op
from xenpy.core.handlers import sched_op as sched_op
from xenpy.core.handlers import set_callbacks as set_callbacks
from xenpy.core.handlers import set_timer_op as set_timer_op
from xenpy.core.handlers import set_trap_table as set_trap_table
from xenpy.core.handlers import vcpu_op as vcpu_op
from xenpy.core.handlers import vm_assist as vm_assist
from xenpy.core.handlers import xen_version as xen_version
from xenpy.core.hypercall import registered_handlers


def handled_hypercalls() -> list[tuple[int, str, bool]]:
    """Every hypercall of the generated table as ``(number, name, has_handler)``, by number."""
    handlers = registered_handlers()
    return [(int(nr), str(getattr(defn, "name", defn)), int(nr) in handlers) for nr, defn in sorted(HYPERCALLS.items())]


__all__ = [
    "callback_op",
    "console_io",
    "event_channel_op",
    "handled_hypercalls",
    "nmi_op",
    "sched_op",
    "set_callbacks",
    "set_timer_op",
    "set_trap_table",
    "vcpu_op",
    "vm_assist",
    "xen_version",
]
