"""The x86-64 decoder of memory accesses (xenpy.engine.x86_decode) and its #SS/#GP verdict for non-canonical
addresses (Intel SDM vol. 3 6.14; XTF's memop-seg test).

The encodings are GNU as output; ``test_encodings_match_the_assembler`` (needs binutils) re-assembles every
source and checks the bytes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenpy.abi.x86 import X86_EXC_GP, X86_EXC_SS
from xenpy.engine.x86_decode import (
    GPR_NAMES,
    BranchCheck,
    MemoryAccess,
    OpcodeMap,
    Segment,
    decode,
    linear_address,
    noncanonical_fault,
)

SS, DS, FS, GS = Segment.SS, Segment.DS, Segment.FS, Segment.GS

#: (AT&T source, GNU as encoding, segments of the accesses in order). The segment of a stack access is SS.
ENCODINGS: list[tuple[str, str, tuple[Segment, ...]]] = [
    # XTF memop-seg's forms: a base of %rsp/%rbp is %ss unless %fs/%gs overrides; es/cs/ss/ds are ignored.
    ("movb $0, (%rsp)", "c6042400", (SS,)),
    ("movb $0, (%rbp)", "c6450000", (SS,)),
    ("movb $0, (%rax)", "c60000", (DS,)),
    ("movb $0, (%r12)", "41c6042400", (DS,)),
    ("movb $0, (%r13)", "41c6450000", (DS,)),
    ("movb $0, %fs:(%rsp)", "64c6042400", (FS,)),
    ("movb $0, %gs:(%rbp)", "65c6450000", (GS,)),
    ("movb $0, %ss:(%rax)", "36c60000", (DS,)),
    ("movb $0, %ds:(%rsp)", "3ec6042400", (SS,)),
    ("movb $0, %es:(%rbp)", "26c6450000", (SS,)),
    ("movb $0, %cs:(%rsp)", "2ec6042400", (SS,)),
    ("movabsb %al, 0x8000000040000000", "a20000004000000080", (DS,)),
    ("movabsb %al, %ss:0x8000000040000000", "36a20000004000000080", (DS,)),
    ("movabsb %al, %fs:0x8000000040000000", "64a20000004000000080", (FS,)),
    # SIB: the base decides; index 4 is none; base 5 with mod 0 is no base; REX.X/B reach r8-r15.
    ("mov 8(%rsp,%rax,4), %rcx", "488b4c8408", (SS,)),
    ("mov (%rsp,%rax), %rcx", "488b0c04", (SS,)),
    ("mov (,%rbp,2), %rcx", "488b0c6d00000000", (DS,)),
    ("mov 0x10(,%rax,8), %rcx", "488b0cc510000000", (DS,)),
    ("mov (%rbp,%rax), %rcx", "488b4c0500", (SS,)),
    ("mov (%r13,%rax), %rcx", "498b4c0500", (DS,)),
    ("mov (%rax,%r12,1), %rcx", "4a8b0c20", (DS,)),
    ("movq $0x12345678, 0x11223344(%rsp,%rax,8)", "48c784c44433221178563412", (SS,)),
    # RIP-relative is %ds (an %ss override is ignored).
    ("mov 0x12345678(%rip), %rax", "488b0578563412", (DS,)),
    ("mov %ss:0x10(%rip), %rax", "36488b0510000000", (DS,)),
    # Address-size override: %esp/%ebp are the stack too.
    ("addr32 mov (%esp), %eax", "678b0424", (SS,)),
    ("addr32 mov (%ebp), %eax", "678b4500", (SS,)),
    ("addr32 mov (%r12d), %eax", "67418b0424", (DS,)),
    # No access.
    ("lea (%rsp), %rax", "488d0424", ()),
    ("lea 8(%rbp), %rax", "488d4508", ()),
    ("prefetcht0 (%rsp)", "0f180c24", ()),
    ("nopl 0(%rax,%rax,1)", "0f1f0400", ()),
    ("nopw (%rbp)", "660f1f4500", ()),
    ("prefetchw (%rsp)", "0f0d0c24", ()),
    ("mov %cr3, %rax", "0f20d8", ()),
    ("mov %rax, %cr0", "0f22c0", ()),
    ("mov %db7, %rax", "0f21f8", ()),
    ("int3", "cc", ()),
    ("syscall", "0f05", ()),
    ("rdtsc", "0f31", ()),
    ("rdmsr", "0f32", ()),
    ("wrmsr", "0f30", ()),
    ("in $0x60, %al", "e460", ()),
    ("cpuid", "0fa2", ()),
    ("hlt", "f4", ()),
    ("cli", "fa", ()),
    ("ud2", "0f0b", ()),
    ("movabs $0x1122334455667788, %rax", "48b88877665544332211", ()),
    ("test $1, %dil", "40f6c701", ()),
    ("vzeroupper", "c5f877", ()),
    ("rep movsb", "f3a4", ()),
    ("xlat", "d7", ()),
    # Implicit stack accesses.
    ("push %rax", "50", (SS,)),
    ("push %r12", "4154", (SS,)),
    ("pushw %ax", "6650", (SS,)),
    ("push $0x12345678", "6878563412", (SS,)),
    ("push $1", "6a01", (SS,)),
    ("pop %rbx", "5b", (SS,)),
    ("pop %r15", "415f", (SS,)),
    ("pushfq", "9c", (SS,)),
    ("popfq", "9d", (SS,)),
    ("push (%rax)", "ff30", (DS, SS)),
    ("push (%rsp)", "ff3424", (SS, SS)),
    ("pop (%rax)", "8f00", (SS, DS)),
    ("pop 8(%rsp)", "8f442408", (SS, SS)),
    ("push %fs", "0fa0", (SS,)),
    ("pop %gs", "0fa9", (SS,)),
    ("call *%rax", "ffd0", (SS,)),
    ("call *(%rax)", "ff10", (DS, SS)),
    ("call *8(%rsp)", "ff542408", (SS, SS)),
    ("lcall *(%rax)", "ff18", (DS, SS)),
    ("rex.W lcall *(%rax)", "48ff18", (DS, SS)),
    ("ret", "c3", (SS,)),
    ("ret $8", "c20800", (SS,)),
    ("lretl", "cb", (SS,)),
    ("lretq", "48cb", (SS,)),
    ("iretq", "48cf", (SS,)),
    ("iretl", "cf", (SS,)),
    ("enter $16, $0", "c8100000", (SS,)),
    ("enter $32, $3", "c8200003", (SS, SS)),
    ("leave", "c9", (SS,)),
    ("jmp *(%rsp)", "ff2424", (SS,)),
    # Privileged instructions with a memory operand: #GP(0) at CPL 3 before any access.
    ("lgdt (%rsp)", "0f011424", ()),
    ("lidt (%rbp)", "0f015d00", ()),
    ("lldt (%rsp)", "0f001424", ()),
    ("ltr (%rbp)", "0f005d00", ()),
    ("invlpg (%rsp)", "0f013c24", ()),
    ("lmsw (%rbp)", "0f017500", ()),
    ("xsaves (%rsp)", "0fc72c24", ()),
    ("xrstors (%rsp)", "0fc71c24", ()),
    ("invpcid (%rsp), %rax", "660f38820424", ()),
    # ...and their unprivileged neighbours.
    ("sgdt (%rsp)", "0f010424", (SS,)),
    ("sldt (%rsp)", "0f000424", (SS,)),
    ("smsw (%rsp)", "0f012424", (SS,)),
    ("xsave (%rsp)", "0fae2424", (SS,)),
    # Common instructions, across the maps, with immediates of every size.
    ("clflush (%rsp)", "0fae3c24", (SS,)),
    ("fxsave (%rbp)", "0fae4500", (SS,)),
    ("fldl (%rbp)", "dd4500", (SS,)),
    ("cmpxchg16b (%rsp)", "480fc70c24", (SS,)),
    ("lock addl $1, (%rsp)", "f083042401", (SS,)),
    ("addl $0x12345678, 0x100(%rsp)", "8184240001000078563412", (SS,)),
    ("imul $0x12345678, (%rbp), %eax", "69450078563412", (SS,)),
    ("shld $3, %eax, (%rsp)", "0fa4042403", (SS,)),
    ("pshufd $1, (%rsp), %xmm0", "660f70042401", (SS,)),
    ("palignr $3, (%rbp), %xmm1", "660f3a0f4d0003", (SS,)),
    ("pshufb (%rsp), %xmm2", "660f38001424", (SS,)),
    ("crc32b (%rbp), %eax", "f20f38f04500", (SS,)),
    ("movbe (%rsp), %eax", "0f38f00424", (SS,)),
    ("movaps (%rsp), %xmm0", "0f280424", (SS,)),
    ("movq (%rbp), %mm0", "0f6f4500", (SS,)),
    ("cmovz (%rsp), %rax", "480f440424", (SS,)),
    ("setz (%rbp)", "0f944500", (SS,)),
    ("bt %eax, (%rsp)", "0fa30424", (SS,)),
    ("mov %ss, (%rsp)", "8c1424", (SS,)),
    ("mov (%rbp), %ds", "8e5d00", (SS,)),
    ("movw $0x1234, (%rsp)", "66c704243412", (SS,)),
    ("testb $1, (%rsp)", "f6042401", (SS,)),
    ("testl $1, (%rbp)", "f7450001000000", (SS,)),
    ("notl (%rsp)", "f71424", (SS,)),
    ("xchg %rax, (%rsp)", "48870424", (SS,)),
    # VEX and EVEX: REX.B is stored inverted; gathers (VSIB) are not modelled.
    ("vmovups (%rsp), %ymm0", "c5fc100424", (SS,)),
    ("vmovups (%r12), %ymm0", "c4c17c100424", (DS,)),
    ("vpshufd $1, (%rbp), %ymm1", "c5fd704d0001", (SS,)),
    ("vpermq $1, (%rsp), %ymm2", "c4e3fd00142401", (SS,)),
    ("vpgatherdd %xmm3, (%rsp,%xmm1,4), %xmm2", "c4e26190148c", ()),
    ("vmovups (%rsp), %zmm0", "62f17c48100424", (SS,)),
    ("vmovups 64(%rsp), %zmm0", "62f17c4810442401", (SS,)),
    ("vmovups 0x40(%r13), %zmm0", "62d17c48104501", (DS,)),
]


@pytest.mark.parametrize(("source", "code", "segments"), ENCODINGS, ids=[e[0] for e in ENCODINGS])
def test_decode_lengths_and_segments(source, code, segments):
    """Each encoding decodes to its whole length and the segments of its accesses, in order."""
    raw = bytes.fromhex(code)
    insn = decode(raw + bytes.fromhex("cc" * 4))  # what follows does not change it
    assert insn is not None, source
    assert insn.length == len(raw), source
    assert insn.segments == segments, source


def test_operand_fields():
    """ModRM/SIB fields: base, index, scale, displacement, address size, RIP-relative, REX.X/B."""

    def operand(code: str) -> MemoryAccess:
        insn = decode(bytes.fromhex(code))
        assert insn is not None
        (access,) = insn.accesses
        return access

    assert operand("488b4c8408") == MemoryAccess(SS, 4, 0, 4, 8)  # 8(%rsp,%rax,4)
    assert operand("488b0c6d00000000") == MemoryAccess(DS, None, 5, 2, 0)  # (,%rbp,2)
    assert operand("4a8b0c20") == MemoryAccess(DS, 0, 12, 1, 0)  # (%rax,%r12,1)
    assert operand("4b8b0c24") == MemoryAccess(DS, 12, 12, 1, 0)  # (%r12,%r12,1): REX.X makes index 4 real
    assert operand("488b0578563412") == MemoryAccess(DS, None, None, 1, 0x12345678, rip_relative=True)
    assert operand("678b4500") == MemoryAccess(SS, 5, None, 1, 0, address_bits=32)
    assert operand("8b8424f0ffffff") == MemoryAccess(SS, 4, None, 1, -16)  # disp32, sign-extended
    assert operand("8b45f0") == MemoryAccess(SS, 5, None, 1, -16)  # disp8
    assert operand("8b042578563412") == MemoryAccess(DS, None, None, 1, 0x12345678)  # SIB, no base, no index
    assert operand("a20000004000000080") == MemoryAccess(DS, None, None, 1, 0x8000_0000_4000_0000)
    assert operand("67a278563412") == MemoryAccess(DS, None, None, 1, 0x12345678, address_bits=32)
    assert operand("62f17c4810442401").disp_scale == 64  # EVEX's compressed disp8
    assert operand("62f17c48100424").disp_scale == 1


def test_prefixes():
    """REX counts only right before the opcode; the last %fs/%gs override wins, the others are ignored."""
    assert decode(bytes.fromhex("4166c6042400")).segments == (SS,)  # REX.B then 66: REX ignored -> %rsp
    assert decode(bytes.fromhex("6641c6042400")).segments == (DS,)  # 66 then REX.B -> %r12
    assert decode(bytes.fromhex("4140c6042400")).segments == (SS,)  # two REX: the last one (no B) counts
    assert decode(bytes.fromhex("6465c6042400")).segments == (GS,)
    assert decode(bytes.fromhex("643ec6042400")).segments == (FS,)  # %ds after %fs is still ignored
    assert decode(bytes.fromhex("66666666c6042400")).length == 8
    assert decode(bytes.fromhex("66b83412")).length == 4  # imm16 under 66
    assert decode(bytes.fromhex("6648b88877665544332211")).length == 11  # REX.W wins over 66: imm64
    assert decode(bytes.fromhex("66481d78563412")).length == 7  # ... and imm32 for sbb
    assert decode(bytes.fromhex("f3480fb8c0")).length == 5  # popcnt
    assert decode(bytes.fromhex("0f20ff")).length == 3  # mov %cr7-ish: mod is ignored, no SIB/disp


def test_stack_access_shapes():
    """Implicit stack accesses: where they are relative to %rsp and how many bytes they cover."""

    def steps(code: str):
        insn = decode(bytes.fromhex(code))
        assert insn is not None
        return insn.steps

    push = MemoryAccess(SS, 4, None, 1, -8, nbytes=8)
    assert steps("50") == (push,)
    assert steps("6650") == (MemoryAccess(SS, 4, None, 1, -2, nbytes=2),)
    assert steps("c3") == (MemoryAccess(SS, 4, None, 1, 0, nbytes=8),)
    assert steps("cb") == (MemoryAccess(SS, 4, None, 1, 0, nbytes=8),)  # lret: two 4-byte slots
    assert steps("48cb") == (MemoryAccess(SS, 4, None, 1, 0, nbytes=16),)
    assert steps("48cf") == (MemoryAccess(SS, 4, None, 1, 0, nbytes=40),)  # iretq: five slots
    assert steps("c9") == (MemoryAccess(SS, 5, None, 1, 0, nbytes=8),)  # leave reads at %rbp
    assert steps("c8200003") == (
        MemoryAccess(SS, 4, None, 1, -32, nbytes=32),
        MemoryAccess(SS, 5, None, 1, -16, nbytes=16),
    )
    # pop to memory based on %rsp: the address uses %rsp after the pop.
    assert steps("8f442408")[1] == MemoryAccess(SS, 4, None, 1, 16)
    # Near call: the target's check comes before the push of the return address.
    assert steps("ffd0") == (BranchCheck("near", register=0), push)
    assert steps("41ffd4") == (BranchCheck("near", register=12), push)
    assert steps("e810000000") == (BranchCheck("near", relative=0x10), push)
    deref = MemoryAccess(DS, 0, None, 1, 0)
    assert steps("ff10") == (deref, BranchCheck("near", memory=deref), push)
    assert steps("ff18") == (
        deref,
        BranchCheck("far", memory=deref, offset_bytes=4),
        MemoryAccess(SS, 4, None, 1, -8, nbytes=8),
    )


def test_maps_and_privileged_flag():
    insn = decode(bytes.fromhex("660f3a0f4d0003"))
    assert (insn.opcode_map, insn.opcode, insn.modrm) == (OpcodeMap.MAP_0F3A, 0x0F, 0x4D)
    assert decode(bytes.fromhex("0f011424")).privileged
    assert not decode(bytes.fromhex("0f010424")).privileged
    assert decode(bytes.fromhex("8f6878a2c000")).opcode_map == OpcodeMap.XOP8  # AMD's vpcmov, imm8


def test_none_for_truncated_overlong_and_invalid():
    """Bytes that end inside the instruction, an instruction over 15 bytes, opcodes #UD in 64-bit mode."""
    for _, code, _ in ENCODINGS:
        raw = bytes.fromhex(code)
        for cut in range(len(raw)):
            assert decode(raw[:cut]) is None, (code, cut)
    assert decode(bytes.fromhex("66" * 11 + "c6042400")).length == 15
    assert decode(bytes.fromhex("66" * 12 + "c6042400")) is None  # 16 bytes: #GP(0) for the length
    assert decode(bytes.fromhex("66" * 8 + "48c784c44433221178563412")) is None  # 20 bytes
    for invalid in ("06", "1f", "27", "60", "9a00000000", "ce", "d40a", "ea", "ffff", "fe10", "8f2000", "c4e000"):
        assert decode(bytes.fromhex(invalid) + bytes(12)) is None, invalid


# ------------------------------------------------------------------------------------------------ verdicts

NONCANONICAL = 0x8000_0000_4000_0000  # XTF memop-seg's address: top bit set + 1 GiB
STACK = 0xFFFF_FFFF_8000_5000
RIP = 0xFFFF_FFFF_8000_2000


_OVERRIDES = (("", ""), ("es:", "26"), ("cs:", "2e"), ("ss:", "36"), ("ds:", "3e"), ("fs:", "64"), ("gs:", "65"))
_LEGACY_PREFIXES = (0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3)


def _regs(**values: int) -> dict[str, int]:
    regs = dict.fromkeys(GPR_NAMES, 0x1000)
    regs.update(rsp=STACK, rbp=STACK, fs_base=0, gs_base=0)
    regs.update(values)
    return regs


def _memory(contents: dict[int, bytes]):
    def read(gva: int, nbytes: int) -> bytes | None:
        for base, data in contents.items():
            if base <= gva and gva + nbytes <= base + len(data):
                return data[gva - base : gva - base + nbytes]
        return None

    return read


VERDICTS = [
    # XTF memop-seg, every register and override (the %rsp/%rbp forms are #SS unless %fs/%gs).
    *(
        (f"{seg}{reg}", prefix + code, {reg: NONCANONICAL}, X86_EXC_SS if ss else X86_EXC_GP)
        for reg, code, base_is_stack in (
            ("rax", "c60000", False),
            ("rsp", "c6042400", True),
            ("rbp", "c6450000", True),
            ("r12", "41c6042400", False),
            ("r13", "41c6450000", False),
        )
        for seg, prefix in _OVERRIDES
        for ss in (base_is_stack and seg not in ("fs:", "gs:"),)
    ),
    ("abs", "a20000004000000080", {}, X86_EXC_GP),
    ("ss:abs", "36a20000004000000080", {}, X86_EXC_GP),
    # An explicit operand off a canonical %rsp/%rbp: the SIB index or displacement makes it non-canonical.
    ("(%rsp,%rax)", "488b0c04", {"rax": (NONCANONICAL - STACK) % (1 << 64)}, X86_EXC_SS),
    ("(%rbp,%rax)", "488b4c0500", {"rax": (NONCANONICAL - STACK) % (1 << 64)}, X86_EXC_SS),
    ("(,%rbp,2) has no base", "488b0c6d00000000", {"rbp": NONCANONICAL // 2}, X86_EXC_GP),
    ("canonical (%rsp)", "c6042400", {}, None),
    ("canonical (%rax)", "c60000", {"rax": 0x7FFF_FFFF_F000}, None),
    # %fs/%gs bases are part of the linear address.
    ("fs:(%rax) by base", "64c60000", {"fs_base": NONCANONICAL}, X86_EXC_GP),
    ("gs:(%rsp) canonical", "65c6042400", {"rsp": NONCANONICAL, "gs_base": 1 << 63}, None),
    # Under an address-size override the effective address is 32 bits: always canonical.
    ("addr32 (%esp)", "678b0424", {"rsp": NONCANONICAL}, None),
    # Implicit stack accesses: the bytes written or read, below or above %rsp.
    ("push, bad rsp", "50", {"rsp": NONCANONICAL}, X86_EXC_SS),
    ("push, rsp at the hole's start: writes below it", "50", {"rsp": 0x8000_0000_0000}, None),
    ("push, crossing into the hole", "50", {"rsp": 0x8000_0000_0004}, X86_EXC_SS),
    ("pop, bad rsp", "5b", {"rsp": NONCANONICAL}, X86_EXC_SS),
    ("pop, last slot below the hole", "5b", {"rsp": 0x7FFF_FFFF_FFF8}, None),
    ("pop, crossing into the hole", "5b", {"rsp": 0x7FFF_FFFF_FFFC}, X86_EXC_SS),
    ("pushf", "9c", {"rsp": NONCANONICAL}, X86_EXC_SS),
    ("popf", "9d", {"rsp": NONCANONICAL}, X86_EXC_SS),
    ("push imm", "6a01", {"rsp": NONCANONICAL}, X86_EXC_SS),
    ("push %fs", "0fa0", {"rsp": NONCANONICAL}, X86_EXC_SS),
    ("ret", "c3", {"rsp": NONCANONICAL}, X86_EXC_SS),
    ("lretq", "48cb", {"rsp": NONCANONICAL}, X86_EXC_SS),
    ("iretq", "48cf", {"rsp": NONCANONICAL}, X86_EXC_SS),
    ("iretq, frame crossing into the hole", "48cf", {"rsp": 0x7FFF_FFFF_FFE0}, X86_EXC_SS),
    ("enter", "c8100000", {"rsp": NONCANONICAL}, X86_EXC_SS),
    ("enter, nested reads at bad rbp", "c8200003", {"rbp": NONCANONICAL}, X86_EXC_SS),
    ("leave, bad rbp", "c9", {"rbp": NONCANONICAL}, X86_EXC_SS),
    ("leave, bad rsp only", "c9", {"rsp": NONCANONICAL}, None),
    # The memory operand of push/pop comes first or second.
    ("push (%rax), bad rax", "ff30", {"rax": NONCANONICAL, "rsp": NONCANONICAL}, X86_EXC_GP),
    ("push (%rax), bad rsp", "ff30", {"rsp": NONCANONICAL}, X86_EXC_SS),
    ("pop (%rax), bad rsp", "8f00", {"rax": NONCANONICAL, "rsp": NONCANONICAL}, X86_EXC_SS),
    ("pop (%rax), bad rax", "8f00", {"rax": NONCANONICAL}, X86_EXC_GP),
    # A ret whose return address is non-canonical pops fine: its #GP is not a stack fault.
    ("ret to a bad target", "c3", {}, None),
    # Near call: the target is checked before the push.
    ("call *%rax, bad target and rsp", "ffd0", {"rax": NONCANONICAL, "rsp": NONCANONICAL}, X86_EXC_GP),
    ("call *%rax, bad rsp", "ffd0", {"rax": RIP, "rsp": NONCANONICAL}, X86_EXC_SS),
    ("call rel32, bad rsp", "e800000000", {"rsp": NONCANONICAL}, X86_EXC_SS),
    ("call *(%rbx), bad rsp", "ff13", {"rbx": 0x1000, "rsp": NONCANONICAL}, X86_EXC_SS),
    ("call *(%rbx), bad target", "ff13", {"rbx": 0x2000, "rsp": NONCANONICAL}, X86_EXC_GP),
    ("call *(%rbx), unreadable", "ff13", {"rbx": 0x9000, "rsp": NONCANONICAL}, None),
    ("call *(%rsp), bad rsp", "ff1424", {"rsp": NONCANONICAL}, X86_EXC_SS),
    # Far call: a null selector is #GP(0) before the push.
    ("lcall *(%rbx), bad rsp", "ff1b", {"rbx": 0x3000, "rsp": NONCANONICAL}, X86_EXC_SS),
    ("lcall *(%rbx), null selector", "ff1b", {"rbx": 0x3008, "rsp": NONCANONICAL}, X86_EXC_GP),
    # Privileged and access-free instructions are never a stack fault.
    ("lgdt (%rsp)", "0f011424", {"rsp": NONCANONICAL}, None),
    ("lea (%rsp)", "488d0424", {"rsp": NONCANONICAL}, None),
    ("nopw (%rbp)", "660f1f4500", {"rbp": NONCANONICAL}, None),
    ("wrmsr", "0f30", {"rsp": NONCANONICAL}, None),
    # EVEX's disp8 * N: decided when every N agrees, left alone otherwise.
    ("evex (%rsp)", "62f17c48100424", {"rsp": NONCANONICAL}, X86_EXC_SS),
    ("evex 64(%rsp) far from the hole", "62f17c4810442401", {"rsp": NONCANONICAL}, X86_EXC_SS),
    ("evex 64(%rsp) at the hole", "62f17c4810442401", {"rsp": 0x7FFF_FFFF_FFC0}, None),
]


@pytest.mark.parametrize(("what", "code", "regs", "expected"), VERDICTS, ids=[v[0] for v in VERDICTS])
def test_noncanonical_fault(what, code, regs, expected):
    """The exception of the first failing canonical check: #SS for the stack segment, #GP otherwise."""
    memory = _memory(
        {
            0x1000: RIP.to_bytes(8, "little"),
            0x2000: NONCANONICAL.to_bytes(8, "little"),
            0x3000: (RIP & 0xFFFF_FFFF).to_bytes(4, "little") + (0xE033).to_bytes(2, "little"),
            0x3008: (RIP & 0xFFFF_FFFF).to_bytes(4, "little") + (0x0003).to_bytes(2, "little"),
        }
    )
    insn = decode(bytes.fromhex(code))
    assert insn is not None, what
    assert noncanonical_fault(insn, _regs(**regs), RIP, memory) == expected, what


def test_linear_address():
    regs = _regs(rax=3, rsp=0x1000, fs_base=0x10_0000, rip=RIP)
    (access,) = decode(bytes.fromhex("64488b4c8408")).accesses  # %fs:8(%rsp,%rax,4)
    assert linear_address(access, regs, RIP) == 0x10_0000 + 0x1000 + 12 + 8
    (rel,) = decode(bytes.fromhex("488b0510000000")).accesses  # 0x10(%rip)
    assert linear_address(rel, regs, RIP + 7) == RIP + 7 + 0x10
    (wrap,) = decode(bytes.fromhex("678b4424f0")).accesses  # addr32 -16(%esp): wraps at 4 GiB
    assert linear_address(wrap, _regs(rsp=8), RIP) == 0xFFFF_FFF8


@settings(max_examples=2000, deadline=None)
@given(code=st.binary(max_size=20), rsp=st.integers(0, (1 << 64) - 1), rbp=st.integers(0, (1 << 64) - 1))
def test_decoder_never_raises(code, rsp, rbp):
    """Any bytes decode to an instruction that fits in them and in 15 bytes, or to None; its verdict is
    computed without an exception."""
    insn = decode(code)
    if insn is None:
        return
    assert 1 <= insn.length <= min(len(code), 15)
    regs = _regs(rsp=rsp, rbp=rbp)
    assert noncanonical_fault(insn, regs, RIP, lambda gva, n: bytes(n)) in (None, X86_EXC_SS, X86_EXC_GP)


@settings(max_examples=500, deadline=None)
@given(
    prefixes=st.lists(st.sampled_from(_LEGACY_PREFIXES), max_size=4),
    rex=st.integers(0x40, 0x4F) | st.none(),
    tail=st.binary(min_size=1, max_size=14),
)
def test_prefixed_instructions_never_raise(prefixes, rex, tail):
    """Prefix-heavy byte strings, the decoder's riskiest input."""
    code = bytes(prefixes) + (bytes([rex]) if rex is not None else b"") + tail
    insn = decode(code)
    assert insn is None or insn.length <= min(len(code), 15)


# ------------------------------------------------------------------------------------------------ binutils

_XTF_REGS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")  # fmt: skip
_XTF_SEGS = ("", "%es:", "%cs:", "%ss:", "%ds:", "%fs:", "%gs:")


def _assemble(lines: list[str]) -> list[bytes]:
    """The encoding of each line (GNU as)."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        body = "".join(f"l{i}:\n{line}\n" for i, line in enumerate(lines)) + f"l{len(lines)}:\n"
        (d / "a.s").write_text(".text\n" + body)
        subprocess.run(["as", "--64", "-o", d / "a.o", d / "a.s"], check=True, capture_output=True)
        subprocess.run(["objcopy", "-O", "binary", "-j", ".text", d / "a.o", d / "a.bin"], check=True)
        blob = (d / "a.bin").read_bytes()
        nm = subprocess.run(["nm", d / "a.o"], check=True, capture_output=True, text=True).stdout
    offsets = {name: int(value, 16) for value, _, name in (line.split() for line in nm.splitlines())}
    return [blob[offsets[f"l{i}"] : offsets[f"l{i + 1}"]] for i in range(len(lines))]


def _need_binutils() -> None:
    if not all(shutil.which(t) for t in ("as", "objcopy", "nm")):
        pytest.skip("binutils (as, objcopy, nm) not available")


@pytest.mark.needs_gcc
def test_encodings_match_the_assembler():
    """Every encoding of the tables is what GNU as makes of its source."""
    _need_binutils()
    sources = [source for source, _, _ in ENCODINGS]
    for (source, code, _), got in zip(ENCODINGS, _assemble(sources), strict=True):
        assert got.hex() == code, source


@pytest.mark.needs_gcc
def test_xtf_memop_seg_stubs():
    """XTF memop-seg's 64-bit table, on what GNU as assembles from its stubs: ``movb $0, seg:(reg)`` is #SS
    for a base of %rsp or %rbp without an %fs/%gs override, #GP otherwise; ``movabsb %al, seg:abs`` is #GP."""
    _need_binutils()
    lines = [f"movb $0, {seg}(%{reg})" for seg in _XTF_SEGS for reg in _XTF_REGS]
    lines += [f"movabsb %al, {seg}0x8000000040000000" for seg in _XTF_SEGS]
    for line, code in zip(lines, _assemble(lines), strict=True):
        insn = decode(code)
        assert insn is not None and insn.length == len(code), line
        reg = line.rsplit("%", 1)[1].rstrip(")")
        stack = reg in ("rsp", "rbp") and "%fs:" not in line and "%gs:" not in line and "movabs" not in line
        regs = _regs(**({reg: NONCANONICAL} if reg in _XTF_REGS else {}))
        assert noncanonical_fault(insn, regs, RIP, _memory({})) == (X86_EXC_SS if stack else X86_EXC_GP), line
