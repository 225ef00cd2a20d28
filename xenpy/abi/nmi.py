"""``public/nmi.h``: ``HYPERVISOR_nmi_op`` argument (spec 4.2, 5.9)."""

from xenpy.abi.cstruct import CStruct, Width
from xenpy.abi.generated.hypercalls import NmiOp

# Bits of shared_info.arch.nmi_reason.
_XEN_NMIREASON_io_error = 0
_XEN_NMIREASON_pci_serr = 1

globals().update(NmiOp.__members__)


def define(w: Width, abi: dict) -> None:
    """Add this header's structures for width ``w`` to ``abi``."""
    abi["xennmi_callback"] = CStruct(
        "xennmi_callback", ("handler_address", w.unsigned_long), ("pad", w.unsigned_long))
