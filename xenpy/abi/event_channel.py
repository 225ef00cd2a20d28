"""``public/event_channel.h``: ``HYPERVISOR_event_channel_op`` arguments and constants (spec 3.5, 5.9, 6.5)."""

from enum import IntEnum

from xenpy.abi.cstruct import CStruct, CUnion, Width
from xenpy.abi.generated.hypercalls import EvtchnOp

EVTCHN_2L_NR_CHANNELS_X86_64 = 4096
EVTCHN_2L_NR_CHANNELS_X86_32 = 1024
EVTCHN_FIFO_NR_CHANNELS = 1 << 17
#: ``sizeof(struct evtchn_fifo_control_block)``: ``ready``, ``_rsvd`` and 16 ``event_word_t`` queue heads.
EVTCHN_FIFO_CONTROL_BLOCK_SIZE = 4 + 4 + 16 * 4


class EVTCHNSTAT(IntEnum):
    """``evtchn_status.status`` (spec 6.5)."""

    EVTCHNSTAT_closed = 0
    EVTCHNSTAT_unbound = 1
    EVTCHNSTAT_interdomain = 2
    EVTCHNSTAT_pirq = 3
    EVTCHNSTAT_virq = 4
    EVTCHNSTAT_ipi = 5


globals().update(EVTCHNSTAT.__members__)
globals().update(EvtchnOp.__members__)


def define(w: Width, abi: dict) -> None:
    """Add this header's structures for width ``w`` to ``abi``."""
    port = w.evtchn_port_t
    abi["evtchn_alloc_unbound"] = CStruct(
        "evtchn_alloc_unbound", ("dom", w.domid_t), ("remote_dom", w.domid_t), ("port", port))
    abi["evtchn_bind_interdomain"] = CStruct(
        "evtchn_bind_interdomain", ("remote_dom", w.domid_t), ("remote_port", port), ("local_port", port))
    abi["evtchn_bind_virq"] = CStruct(
        "evtchn_bind_virq", ("virq", w.uint32_t), ("vcpu", w.uint32_t), ("port", port))
    abi["evtchn_bind_pirq"] = CStruct(
        "evtchn_bind_pirq", ("pirq", w.uint32_t), ("flags", w.uint32_t), ("port", port))
    abi["evtchn_bind_ipi"] = CStruct("evtchn_bind_ipi", ("vcpu", w.uint32_t), ("port", port))
    abi["evtchn_close"] = CStruct("evtchn_close", ("port", port))
    abi["evtchn_send"] = CStruct("evtchn_send", ("port", port))
    status_u = CUnion(
        "evtchn_status_u",
        ("unbound", CStruct("evtchn_status_unbound", ("dom", w.domid_t))),
        ("interdomain", CStruct("evtchn_status_interdomain", ("dom", w.domid_t), ("port", port))),
        ("pirq", w.uint32_t),
        ("virq", w.uint32_t),
    )
    abi["evtchn_status"] = CStruct(
        "evtchn_status",
        ("dom", w.domid_t),
        ("port", port),
        ("status", w.uint32_t),
        ("vcpu", w.uint32_t),
        ("u", status_u),
    )
    abi["evtchn_bind_vcpu"] = CStruct("evtchn_bind_vcpu", ("port", port), ("vcpu", w.uint32_t))
    abi["evtchn_unmask"] = CStruct("evtchn_unmask", ("port", port))
    abi["evtchn_reset"] = CStruct("evtchn_reset", ("dom", w.domid_t))
    abi["evtchn_init_control"] = CStruct(
        "evtchn_init_control",
        ("control_gfn", w.uint64_t),
        ("offset", w.uint32_t),
        ("vcpu", w.uint32_t),
        ("link_bits", w.uint8_t),
        ("_pad", w.array(w.uint8_t, 7)),
    )
    abi["evtchn_expand_array"] = CStruct("evtchn_expand_array", ("array_gfn", w.uint64_t))
    abi["evtchn_set_priority"] = CStruct("evtchn_set_priority", ("port", port), ("priority", w.uint32_t))
    legacy_ops = ("bind_interdomain", "bind_virq", "bind_pirq", "close", "send", "status",
                  "alloc_unbound", "bind_ipi", "bind_vcpu", "unmask")
    abi["evtchn_op"] = CStruct(
        "evtchn_op",
        ("cmd", w.uint32_t),
        ("u", CUnion("evtchn_op_u", *((op, abi[f"evtchn_{op}"]) for op in legacy_ops))),
    )
