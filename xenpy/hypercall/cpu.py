"""The CPU port: what a hypercall that acts on the live CPU may ask of the engine running the vCPU.

Most hypercalls change hypervisor state only. A few act on the CPU the calling vCPU runs on (``iret``,
``set_segment_base``, ``set_gdt``, ``fpu_taskswitch``): they are written against this small interface, which
every CPU engine implements for each vCPU it runs, and find it as ``ctx.cpu`` (None when no engine runs the
vCPU; such a handler then returns -ENOSYS, as a hypercall that cannot be served).

Register names are those of :data:`xenpy.engine.base.REGISTER_NAMES` (lower-case x86 names).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence


class CpuPort(ABC):
    """The live CPU of one vCPU, as hypercall handlers see it."""

    @abstractmethod
    def read_registers(self, names: Sequence[str]) -> dict[str, int]:
        """The live values of the registers ``names``."""

    @abstractmethod
    def write_registers(self, values: Mapping[str, int]) -> None:
        """Set live registers. A segment selector that cannot be loaded raises ``ValueError``."""

    @abstractmethod
    def registers_written(self) -> None:
        """The handler has set the guest's registers itself (``iret``): the engine writes no result back."""

    @abstractmethod
    def request_stop(self) -> None:
        """Leave the guest after this hypercall: the vCPU cannot continue here (its state is already saved)."""
