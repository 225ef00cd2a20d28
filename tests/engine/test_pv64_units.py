"""Pieces of the PV64 semantics and of the Unicorn engine that need no guest: decoding, CPUID, descriptors,
calibration, the hypervisor area; and the guest code blobs against their source."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import guest_code as gc
import pytest

from xenpy.abi.x86 import PERDOMAIN_VIRT_START
from xenpy.engine.pv64 import cpuid_policy, decode_privileged, instruction_length_of_syscall
from xenpy.engine.unicorn_area import HypervisorArea
from xenpy.engine.unicorn_lib import calibration
from xenpy.hypercall.handlers.cpu import check_descriptor
from xenpy.hypervisor import DomainConfig, Hypervisor


def test_decode_privileged_instructions():
    """The decoder of pv_emulate_privileged_op's subset: lengths, registers (REX), kinds."""
    op = decode_privileged(bytes.fromhex("0f20d8"))  # mov rax, cr3
    assert (op.kind, op.length, op.control, op.gpr) == ("mov_from_cr", 3, 3, "rax")
    op = decode_privileged(bytes.fromhex("410f22d8"))  # mov cr3, r8
    assert (op.kind, op.length, op.control, op.gpr) == ("mov_to_cr", 4, 3, "r8")
    assert decode_privileged(bytes.fromhex("0f31")).kind == "rdtsc"
    assert decode_privileged(bytes.fromhex("0f01f9")).length == 3
    assert decode_privileged(bytes.fromhex("e460")).kind == "io"
    io = {code: decode_privileged(bytes.fromhex(code)) for code in ("e460", "66e5", "ed", "ee", "66ef", "6c", "e760")}
    assert {c: (o.length, o.control, o.gpr) for c, o in io.items()} == {
        "e460": (2, 1, "in"), "66e5": (3, 2, "in"), "ed": (1, 4, "in"), "ee": (1, 1, "out"), "66ef": (2, 2, "out"),
        "6c": (1, 1, "string"), "e760": (2, 4, "out"),
    }
    assert decode_privileged(bytes.fromhex("f4")).kind == "other"
    assert instruction_length_of_syscall(bytes.fromhex("0f05")) == 2
    assert instruction_length_of_syscall(bytes.fromhex("480f05")) == 3


def test_cpuid_policy():
    """Xen's leaves at 0x40000000 (signature, version, one hypercall page); leaf 1 has the hypervisor bit and
    the vCPU id as APIC id; features the engine cannot run are hidden."""
    hv = Hypervisor(memory_mib=8)
    d = hv.create_domain(DomainConfig(max_vcpus=2, memory_mib=1))
    v1 = d.vcpus[1]
    native = (0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF)
    eax, ebx, ecx, edx = cpuid_policy(v1, 0x4000_0000, 0, native)
    assert eax >= 0x4000_0002
    assert (ebx, ecx, edx) == (0x566E6558, 0x65584D4D, 0x4D4D566E)  # "XenVMMXenVMM"
    assert cpuid_policy(v1, 0x4000_0001, 0, native)[0] == (4 << 16) | 23
    assert cpuid_policy(v1, 0x4000_0002, 0, native)[0] == 1
    _, ebx, ecx, edx = cpuid_policy(v1, 1, 0, native)
    assert ebx >> 24 == 1 and ecx >> 31 == 1
    assert not ecx & (1 << 28) and not ecx & (1 << 27)  # AVX, OSXSAVE hidden
    assert not edx & (1 << 9)  # APIC hidden from PV
    assert cpuid_policy(v1, 1, 0, (0, 0, 0, 0))[2] == 1 << 31
    assert cpuid_policy(v1, 0x1234, 0, native) == (0, 0, 0, 0)


def test_check_descriptor():
    """Xen's check_descriptor for PV64: code/data DPL raised to 3, not-present kept, system segments refused."""
    assert check_descriptor(0x0000FFFF, 0x00AF9B00) == (0x0000FFFF, 0x00AFFB00)  # ring-0 code -> DPL 3
    assert check_descriptor(0, 0x00008B00 & ~(1 << 15)) == (0, 0x00000B00)  # not present
    assert check_descriptor(0x0000FFFF, 0x00008900) is None  # a present TSS
    assert check_descriptor(0, 0x0000E000 | (1 << 15)) == (0, 0x0000E000 | (1 << 15))  # type 0


def test_calibration_offsets_are_consistent():
    """The calibrated QEMU context offsets: error_code, exception_is_int after it, old_exception 112 further."""
    cal = calibration()
    assert cal.exception_is_int == cal.error_code + 4
    assert cal.old_exception == cal.error_code + 112
    assert 0 < cal.old_exception < cal.context_size


def test_hypervisor_area_layout():
    """Each vCPU's slot in Xen's per-domain area: 16 GDT pages (Xen's flat descriptors in page 14),
    supervisor-only mappings, and the L4 entry of slot 260."""
    area = HypervisorArea(0x4000_0000, max_vcpus=20)
    assert area.nr_l1 == 2
    assert HypervisorArea.vcpu_va(1) == PERDOMAIN_VIRT_START + 32 * 4096
    q = memoryview(area.buffer).cast("Q")
    xen_gdt = area.page_xen_gdt * 512
    assert q[xen_gdt + 6] == 0x00AF_FB00_0000_FFFF  # 0xe033
    assert q[xen_gdt + 5] == 0x00CF_F300_0000_FFFF  # 0xe02b
    entry = q[2 * 512 + 14]  # vCPU 0, page 14
    assert entry & 0xFFF == 0x63 and entry >> 12 == (0x4000_0000 >> 12) + area.page_xen_gdt
    assert not area.l4_entry & 4  # not user-accessible
    area.map_gdt(1, [0x123])
    assert q[2 * 512 + 32] >> 12 == 0x123 and q[2 * 512 + 33] == 0


@pytest.mark.needs_gcc
def test_guest_code_matches_source():
    """Every hex blob of guest_code is what its source assembles to (GNU as + ld)."""
    tools = [shutil.which(t) for t in ("as", "ld", "objcopy")]
    if not all(tools):
        pytest.skip("binutils (as, ld, objcopy) not available")
    for name, pieces in gc.PROGRAMS.items():
        for piece in pieces:
            with tempfile.TemporaryDirectory() as tmp:
                d = Path(tmp)
                (d / "a.s").write_text(
                    ".intel_syntax noprefix\n.text\n.globl _start\n_start:\n" + piece.source
                )
                subprocess.run(["as", "--64", "-o", d / "a.o", d / "a.s"], check=True)
                base = gc.CODE + piece.offset
                subprocess.run(
                    ["ld", "-Ttext", hex(base), "-e", "_start", "-o", d / "a.elf", d / "a.o"], check=True
                )
                subprocess.run(
                    ["objcopy", "-O", "binary", "-j", ".text", d / "a.elf", d / "a.bin"], check=True
                )
                assert (d / "a.bin").read_bytes() == piece.code, (name, piece.offset)
