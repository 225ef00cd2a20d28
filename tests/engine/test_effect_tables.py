"""The engine's per-hypercall tables come from the handlers' declared effects (xenpy.engine.effects)."""

from __future__ import annotations

from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.engine.effects import EffectTables
from xenpy.hypercall.registry import NR_HYPERCALLS, Effect, effects_of

H = Hypercall

#: Hypercalls after which the engine re-synchronises page tables, TLB, GDT and CR0.TS and re-checks the caller.
RESYNC = {
    H.mmu_update, H.set_gdt, H.fpu_taskswitch, H.memory_op, H.multicall, H.update_va_mapping,
    H.update_va_mapping_otherdomain, H.grant_table_op, H.vcpu_op, H.mmuext_op,
}  # fmt: skip
#: Hypercalls whose handlers never read the clock.
CLOCK_FREE = {
    H.set_trap_table, H.mmu_update, H.set_gdt, H.stack_switch, H.set_callbacks, H.fpu_taskswitch,
    H.memory_op, H.update_va_mapping, H.xen_version, H.console_io, H.grant_table_op, H.vm_assist, H.iret,
    H.set_segment_base, H.mmuext_op, H.nmi_op, H.callback_op, H.set_debugreg, H.get_debugreg, H.physdev_op,
    H.update_descriptor, H.platform_op, H.sysctl, H.domctl, H.kexec_op,
}  # fmt: skip


def test_resync_set_is_derived_from_the_declared_effects():
    tables = EffectTables.from_registry()
    assert tables.resync == frozenset(int(h) for h in RESYNC)
    for nr in range(NR_HYPERCALLS):
        assert (nr in tables.resync) == bool(effects_of(nr) & Effect.resync())


def test_clock_free_table_is_derived_from_the_declared_effects():
    tables = EffectTables.from_registry()
    assert len(tables.clock_free) == NR_HYPERCALLS
    assert {nr for nr in range(NR_HYPERCALLS) if tables.clock_free[nr]} == {int(h) for h in CLOCK_FREE}
    for nr in range(NR_HYPERCALLS):
        assert tables.reads_clock(nr) == bool(effects_of(nr) & Effect.CLOCK)


def test_numbers_without_a_handler_read_the_clock_and_need_no_resync():
    tables = EffectTables.from_registry()
    assert tables.reads_clock(int(H.xenpmu_op)) and int(H.xenpmu_op) not in tables.resync
    assert tables.reads_clock(NR_HYPERCALLS) and tables.reads_clock(-1)


def test_the_cpu_bound_hypercalls_declare_what_the_engine_applies():
    assert effects_of(H.set_gdt) == Effect.GDT
    assert effects_of(H.fpu_taskswitch) == Effect.CR0
    assert effects_of(H.iret) == Effect.NONE
    assert effects_of(H.set_segment_base) == Effect.NONE
