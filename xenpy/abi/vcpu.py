"""``public/vcpu.h``: the argument structures of ``HYPERVISOR_vcpu_op`` and runstate constants (spec 5.1, 6.2).

The ``VCPUOP_*`` values come from the generated hypercall table and are re-exported here.
"""

from enum import IntEnum

from xenpy.abi.cstruct import CStruct, CUnion, Width
from xenpy.abi.generated.hypercalls import VcpuOp

XEN_RUNSTATE_UPDATE = 1 << 63
VCPU_SSHOTTMR_future = 1 << 0


class RUNSTATE(IntEnum):
    """``vcpu_runstate_info.state`` (spec 2.1)."""

    RUNSTATE_running = 0
    RUNSTATE_runnable = 1
    RUNSTATE_blocked = 2
    RUNSTATE_offline = 3


globals().update(RUNSTATE.__members__)
globals().update(VcpuOp.__members__)


def define(w: Width, abi: dict) -> None:
    """Add this header's structures for width ``w`` to ``abi``."""
    abi["vcpu_runstate_info"] = CStruct(
        "vcpu_runstate_info",
        ("state", w.int),
        ("state_entry_time", w.uint64_t),
        ("time", w.array(w.uint64_t, 4)),
    )

    def guest_area(name: str, target: str) -> CStruct:
        address = CUnion(f"{name}_addr", ("h", w.handle(target)), ("v", w.pointer), ("p", w.uint64_t))
        return CStruct(name, ("addr", address))

    abi["vcpu_register_runstate_memory_area"] = guest_area(
        "vcpu_register_runstate_memory_area", "vcpu_runstate_info_t")
    abi["vcpu_set_periodic_timer"] = CStruct("vcpu_set_periodic_timer", ("period_ns", w.uint64_t))
    abi["vcpu_set_singleshot_timer"] = CStruct(
        "vcpu_set_singleshot_timer", ("timeout_abs_ns", w.uint64_t), ("flags", w.uint32_t))
    abi["vcpu_register_vcpu_info"] = CStruct(
        "vcpu_register_vcpu_info", ("mfn", w.uint64_t), ("offset", w.uint32_t), ("rsvd", w.uint32_t))
    abi["vcpu_get_physid"] = CStruct("vcpu_get_physid", ("phys_id", w.uint64_t))
    abi["vcpu_register_time_memory_area"] = guest_area(
        "vcpu_register_time_memory_area", "vcpu_time_info_t")
