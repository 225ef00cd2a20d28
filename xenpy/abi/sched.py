"""``public/sched.h``: ``HYPERVISOR_sched_op`` arguments and ``SHUTDOWN_*`` reasons (spec 3.4, 5.9, 6.3)."""

from enum import IntEnum

from xenpy.abi.cstruct import CStruct, Width
from xenpy.abi.generated.hypercalls import SchedOp


class SHUTDOWN(IntEnum):
    """Domain shutdown reasons (spec 6.3)."""

    SHUTDOWN_poweroff = 0
    SHUTDOWN_reboot = 1
    SHUTDOWN_suspend = 2
    SHUTDOWN_crash = 3
    SHUTDOWN_watchdog = 4
    SHUTDOWN_soft_reset = 5


SHUTDOWN_MAX = 5
# Inside Xen: no shutdown code latched yet.
SHUTDOWN_CODE_INVALID = 0xFFFFFFFF

globals().update(SHUTDOWN.__members__)
globals().update(SchedOp.__members__)


def define(w: Width, abi: dict) -> None:
    """Add this header's structures for width ``w`` to ``abi``."""
    abi["sched_shutdown"] = CStruct("sched_shutdown", ("reason", w.unsigned_int))
    abi["sched_poll"] = CStruct(
        "sched_poll",
        ("ports", w.handle("evtchn_port_t")),
        ("nr_ports", w.unsigned_int),
        ("timeout", w.uint64_t),
    )
    abi["sched_remote_shutdown"] = CStruct(
        "sched_remote_shutdown", ("domain_id", w.domid_t), ("reason", w.unsigned_int))
    abi["sched_watchdog"] = CStruct("sched_watchdog", ("id", w.uint32_t), ("timeout", w.uint32_t))
    abi["sched_pin_override"] = CStruct("sched_pin_override", ("pcpu", w.int32_t))
