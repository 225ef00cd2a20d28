"""Fixtures of the engine tests: a domain with the hypercall page, guest code from ``guest_code``, an engine."""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from xenpy.core.domain import Domain
from xenpy.engine.base import RunResult
from xenpy.engine.unicorn_engine import UnicornEngine, UnicornVcpu
from xenpy.hypervisor import DomainConfig, Hypervisor
from xenpy.loader import init_hypercall_page

sys.path.insert(0, str(Path(__file__).parent))
import guest_code as gc


class Guest:
    """A PV64 domain running one of ``guest_code.PROGRAMS`` on the Unicorn engine.

    Args:
        program: name in ``guest_code.PROGRAMS``.
        hv: an existing hypervisor (default: a new one with ``nr_pcpus`` pCPUs and ``clock``).
    """

    def __init__(
        self,
        program: str,
        *,
        hv: Hypervisor | None = None,
        nr_pcpus: int = 1,
        clock: str = "virtual",
        max_vcpus: int = 1,
    ) -> None:
        self.hv = hv or Hypervisor(nr_pcpus=nr_pcpus, memory_mib=16, clock=clock)
        self.dom: Domain = self.hv.create_domain(DomainConfig(max_vcpus=max_vcpus, memory_mib=2))
        pages = [self.dom.alloc_guest_page() for _ in range(4)]
        assert pages == [gc.HYPERCALL_PAGE, gc.CODE, gc.DATA, gc.STACK_TOP - 4096]
        self.dom.write_guest(gc.HYPERCALL_PAGE, init_hypercall_page())
        for piece in gc.PROGRAMS[program]:
            self.dom.write_guest(gc.CODE + piece.offset, piece.code)
        self.vcpu = self.dom.vcpus[0]
        regs = self.vcpu.arch.user_regs
        regs["rip"] = gc.CODE
        regs["rsp"] = gc.STACK_TOP
        self.engine = self.hv.scheduler.executor
        if not isinstance(self.engine, UnicornEngine):
            self.engine = UnicornEngine(self.hv)

    def set_regs(self, **values: int) -> None:
        """Initial register values (before the first run)."""
        self.vcpu.arch.user_regs.update(values)

    def trap_table(self, *entries: tuple[int, int, int]) -> None:
        """Write a trap table at DATA: ``(vector, flags, address)`` entries, then the terminator."""
        raw = b"".join(struct.pack("<BBHIQ", vec, flags, 0xE033, 0, addr) for vec, flags, addr in entries)
        self.dom.write_guest(gc.DATA, raw + bytes(16))

    def write_u64(self, gva: int, value: int) -> None:
        self.dom.write_guest(gva, struct.pack("<Q", value))

    def read_u64s(self, gva: int, count: int) -> list[int]:
        return list(struct.unpack(f"<{count}Q", self.dom.read_guest(gva, 8 * count)))

    @property
    def ctx(self) -> UnicornVcpu:
        return self.engine.context(self.vcpu)

    def run(self, ns: int = 2_000_000) -> RunResult | None:
        """Unpause (first time) and run the hypervisor for ``ns`` of virtual time; the last RunResult."""
        if self.dom.controller_pause_count:
            self.dom.unpause()
        self.hv.run_for(ns)
        return self.ctx.last_result

    def regs(self, *names: str) -> dict[str, int]:
        """Registers as the vCPU left them (saved at the end of its last run)."""
        return self.ctx.read_registers(names)


@pytest.fixture
def guest() -> Iterator[Callable[..., Guest]]:
    """Factory: ``guest("program", **options)`` -> :class:`Guest`."""
    yield Guest
