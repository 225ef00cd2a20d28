"""Block counting gives the per-instruction counter's results exactly (the Unicorn engine's ``counting``).

Each suite kernel runs twice, with ``counting="instruction"`` (a hook on every instruction) and with
``counting="block"`` (per translation block, per instruction only to land on a deadline or around port I/O):
the guest time at every hypercall and handled exception, each vCPU's instruction count and runstate, and the
console must be the same. The instruction-length decoder block counting relies on must agree with objdump on
every instruction of the bundled kernels.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import guest_code as gc
import pytest
from conftest import Guest
from counting_trace import trace

from xenpy.abi.sched import SHUTDOWN_poweroff
from xenpy.engine._native import load_native
from xenpy.engine.unicorn_engine import COUNTING_MODES, UnicornEngine, UnicornVcpu
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.conformance.suite import GUEST_DIR, load_suite

#: Quick kernels: exceptions, rdtsc, page-table writes, multicalls, events, several vCPUs and pCPUs.
QUICK = ("hello", "traps", "pagefault", "ptwr", "multicall", "evtchn", "smp", "msr", "fuzz", "vcpu-lifecycle")
SUITE = {t.name: t for t in load_suite()} if (GUEST_DIR / "build").is_dir() else {}

#: The I/O block of guest_code's "portio" loop, one translation block: ``1: mov eax, ...`` to its ``call``.
_PORTIO = gc.PROGRAMS["portio"][0].code
PORTIO_LOOP = _PORTIO[_PORTIO.index(bytes.fromhex("b800563412")) : _PORTIO.index(bytes.fromhex("e8d5f1ffff")) + 5]

needs_native = pytest.mark.skipif(load_native() is None, reason="no C compiler for the engine's helpers")


def _same(name: str) -> None:
    test = SUITE.get(name)
    if test is None or not test.image(GUEST_DIR).exists():
        pytest.skip(f"guest/build/test-pv64-{name} is not built (make -C guest)")
    by_insn, by_block = trace(test, "instruction"), trace(test, "block")
    assert by_block.console == by_insn.console
    for i, (a, b) in enumerate(zip(by_insn.events, by_block.events, strict=False)):
        assert b == a, f"event {i} differs"
    assert len(by_block.events) == len(by_insn.events)
    assert by_block.vcpus == by_insn.vcpus


@needs_native
@pytest.mark.parametrize("name", QUICK)
def test_block_counting_gives_the_instruction_counters_trace(name: str) -> None:
    _same(name)


@needs_native
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(SUITE) - set(QUICK)))
def test_block_counting_gives_the_instruction_counters_trace_slow(name: str) -> None:
    _same(name)


@needs_native
def test_a_vcpu_counting_per_instruction_for_a_while_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Switch every vCPU to per-instruction counting after its first run, and back every other run.
    monkeypatch.setattr(UnicornVcpu, "_COUNTING_WINDOW", 1)
    monkeypatch.setattr(UnicornVcpu, "_COUNTING_MAX_SHARE", -1.0)
    monkeypatch.setattr(UnicornVcpu, "_COUNTING_BACKOFF", 2)
    _same("smp")


def test_counting_must_be_a_known_mode() -> None:
    with pytest.raises(ValueError, match="counting must be one of"):
        UnicornEngine(Hypervisor(memory_mib=16), counting="sometimes")


_OBJDUMP_LINE = re.compile(r"^\s*[0-9a-f]+:\t((?:[0-9a-f]{2} )+)\s*\t(\S.*)$")


@needs_native
@pytest.mark.skipif(shutil.which("objdump") is None, reason="no objdump")
def test_instruction_lengths_agree_with_objdump_on_the_bundled_kernels() -> None:
    native = load_native()
    assert native is not None
    images = sorted(p for p in (GUEST_DIR / "build").glob("test-pv64-*") if not p.suffix)
    if not images:
        pytest.skip("no guest kernels built (make -C guest)")
    checked = 0
    for image in images[:6]:
        listing = subprocess.run(["objdump", "-d", "-w", str(image)], capture_output=True, text=True, check=True)
        for line in listing.stdout.splitlines():
            m = _OBJDUMP_LINE.match(line)
            if m is None or "(bad)" in m[2] or m[2].startswith("."):
                continue
            code = bytes.fromhex(m[1].replace(" ", ""))
            length, _io, _ends = native.insn_length(code + b"\x90" * 15)
            assert length == len(code), f"{image.name}: {m[1]}{m[2]}: decoded {length} bytes"
            checked += 1
    assert checked > 10_000


@needs_native
def test_port_io_is_flagged_and_lengths_end_with_the_code() -> None:
    native = load_native()
    assert native is not None
    assert native.insn_length(b"\xee") == (1, True, False)  # out %al, (%dx)
    assert native.insn_length(b"\xe6\x80") == (2, True, False)  # out %al, $0x80
    assert native.insn_length(b"\x66\x6d") == (2, True, False)  # insw
    assert native.insn_length(b"\x48\xb8" + bytes(8)) == (10, False, False)  # movabs $imm64, %rax
    assert native.insn_length(b"\x66\xb8\x01\x00") == (4, False, False)  # mov $imm16, %ax
    assert native.insn_length(b"\x62\xf1\xfe\x48\x6f\x01")[2]  # EVEX: QEMU raises #UD
    assert native.insn_length(b"\x48\x8b") == (-1, False, False)  # truncated
    assert native.count_insns(bytes.fromhex("4801c8486bc00748ffcb75f4")) == 4
    assert native.count_insns(bytes.fromhex("4801c8486bc00748ffcb75f4"), upto=7) == 2
    assert native.count_insns(bytes.fromhex("4801c8486bc007")[:-1]) == -1


def _portio(counting: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Guest, list[int]]:
    hv = Hypervisor(memory_mib=16, clock="virtual")
    UnicornEngine(hv, counting=counting)
    g = Guest("portio", hv=hv)
    exits: list[int] = []
    original = UnicornVcpu.emulate_privileged_op

    def emulate_privileged_op(ctx: UnicornVcpu) -> bool:
        exits.append(ctx.read_registers(("rip",))["rip"])
        return original(ctx)

    monkeypatch.setattr(UnicornVcpu, "emulate_privileged_op", emulate_privileged_op)
    g.run()
    assert g.dom.shutdown_code == SHUTDOWN_poweroff, g.dom.crash_reason
    return g, exits


@needs_native
def test_port_io_a_domu_may_do_completes_in_place_and_counts_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """spec 3.3 (port I/O under the virtual IOPL): with IOPL 1, ``in``/``out`` of a domU read all ones and drop
    writes (``in al`` keeps the upper bits, ``in eax`` zero-extends) without leaving the emulation; block
    counting hooks the loop's I/O block after its second landing and counts exactly as per instruction."""
    by_insn, insn_exits = _portio("instruction", monkeypatch)
    by_block, block_exits = _portio("block", monkeypatch)
    expected = 1000 * (0x1234_56FF + 0xFFFF_FFFF)
    for g in (by_insn, by_block):
        assert g.regs("r12")["r12"] == expected
    assert insn_exits == block_exits == []
    assert by_block.ctx.instructions_total == by_insn.ctx.instructions_total
    assert by_block.ctx.guest_time_ns() == by_insn.ctx.guest_time_ns()
    assert [size for _pc, size, _handle in by_block.ctx._hooked] == [len(PORTIO_LOOP)]


@needs_native
def test_port_io_the_virtual_iopl_forbids_faults_at_the_instruction_in_both_countings(guest) -> None:
    """spec 3.3: with IOPL 0, the same ``in`` is #GP(0) at its own RIP in a block that would otherwise be hooked."""
    for counting in COUNTING_MODES:
        hv = Hypervisor(memory_mib=16, clock="virtual")
        UnicornEngine(hv, counting=counting)
        g = guest("priv", hv=hv)
        g.trap_table((13, 4, gc.HANDLER))
        g.set_regs(r12=3)
        g.run()
        assert g.dom.shutdown_code == SHUTDOWN_poweroff, g.dom.crash_reason
        frame = g.read_u64s(gc.DATA + 0x800, 4)
        assert frame[3] == gc.CODE + gc.PROGRAMS["priv"][0].code.index(b"\xe4\x60", 0x20), counting
