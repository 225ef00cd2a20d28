"""The CPU port: what a hypercall that acts on the live CPU may ask of the engine running the vCPU.

Most hypercalls change hypervisor state only. A few act on the CPU the calling vCPU runs on (``iret``,
``set_segment_base``, ``set_gdt``, ``fpu_taskswitch``): they are written against this small interface, which
every CPU engine implements for each vCPU it runs (the PV64 engines through
:class:`xenpy.engine.pv64.Pv64Context`), and find it as ``ctx.cpu`` (None when no engine runs the
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

    @abstractmethod
    def load_selector(self, segment: str, selector: int) -> bool:
        """Load ``selector`` into segment register ``segment`` (``"gs"``...), its base from the descriptor.

        Returns:
            False if the CPU refuses the selector (nothing is loaded).
        """

    @abstractmethod
    def set_fpu_taskswitch(self, ts: bool) -> None:
        """Set (True) or clear the guest's CR0.TS, in ``vcpu.arch`` and on the live CPU."""

    @abstractmethod
    def do_iret(self) -> int | None:
        """Pop the guest's ``iret_context`` at RSP and return through it, as ``HYPERVISOR_iret`` does.

        Sets RIP, RSP, RFLAGS, RCX, R11 and RAX, the guest mode (with its page table and GS base) and the
        event and NMI masks (spec 3.3, 4.2, 7.3).

        Returns:
            The saved RAX, or None if the frame could not be used and the domain was crashed.
        """
