"""CPU engines: what executes PV guest code, behind one narrow interface (DESIGN decision 3).

* :mod:`xenpy.engine.base`: the interface (:class:`Engine`, :class:`VcpuContext`, :class:`RunResult`,
  :class:`ExitReason`, :class:`TrapBounce`);
* :mod:`xenpy.engine.pv64`: the PV64 CPU semantics every engine shares (bounce frames, iret, traps, events,
  NMIs, privileged-instruction emulation, the CPUID policy);
* :mod:`xenpy.engine.unicorn_engine`: the Unicorn engine (:class:`UnicornEngine`);
* the hypercalls that need the CPU (iret, set_segment_base, set_gdt, fpu_taskswitch) are ordinary handlers
  (:mod:`xenpy.hypercall.handlers.cpu`) that reach the CPU through the vCPU context as their
  :class:`~xenpy.hypercall.cpu.CpuPort`;
* :mod:`xenpy.engine.runner`: running a domain on the scheduler until it shuts down.
"""

from xenpy.engine.base import Engine, ExitReason, RunResult, TrapBounce, TrapBounceFlags, VcpuContext

__all__ = ["Engine", "ExitReason", "RunResult", "TrapBounce", "TrapBounceFlags", "VcpuContext"]
