"""The memory accesses of an x86-64 instruction, and which of them faults first on a non-canonical address.

A 64-bit mode memory access to a non-canonical address raises #SS(0) when it goes through the stack segment
and #GP(0) otherwise (Intel SDM vol. 3 6.14, "Exception and interrupt handling in 64-bit mode"; AMD APM
vol. 2 8.2). Xen forwards either fault to a PV guest as the hardware raised it. QEMU's TCG, under the Unicorn
engine, raises #GP(0) for both: :func:`decode` tells which segment each access of an instruction uses, and
:func:`noncanonical_fault` which exception the first non-canonical one raises on hardware.

What :func:`decode` understands (64-bit mode only):

* legacy prefixes (operand and address size, lock, rep, segment overrides), REX (only right before the
  opcode; a REX followed by a legacy prefix is ignored, as the CPU ignores it), the 1-byte, 0F, 0F38 and 0F3A
  opcode maps with which opcodes have a ModRM byte and their immediates (for the length, which RIP-relative
  operands and ``call rel32`` need, and because an instruction over 15 bytes is itself a #GP(0));
* VEX (C4, C5), EVEX (62) and XOP (8F with a map of 8 or more): prefix, map, ModRM and immediates; the
  compressed disp8 of EVEX is scaled by a factor the decoder does not compute (recorded as a range);
  gathers and scatters (VSIB) have no modelled access;
* ModRM and SIB: mod 3 is a register; rm 4 is a SIB whose base 4 is %rsp (%r12 with REX.B) and whose index 4
  is none (%r12 with REX.X); mod 0 with rm 5 is RIP-relative; SIB base 5 with mod 0 is no base and a disp32;
  a base of %rsp or %rbp (%esp, %ebp under an address-size override; never %r12/%r13) means the stack
  segment;
* segments: %fs and %gs overrides apply (the last of them if there are both); %es, %cs, %ss and %ds
  overrides are ignored in 64-bit mode, also after an %fs or %gs one (as Bochs decodes them);
* implicit stack accesses, always through %ss at the 64-bit %rsp: push, pop (of a register, an immediate,
  memory, %fs/%gs, the flags), near and far call and return, ``enter``, ``leave``, ``iret``; a ``pop`` to a
  memory operand based on %rsp addresses it with %rsp already incremented;
* instructions that access no memory although they have a memory operand: ``lea``, the hint NOPs and
  prefetches (0F 0D, 0F 18-1F), ``mov`` to and from control and debug registers (always registers);
* privileged instructions with a memory operand (``lgdt``, ``lidt``, ``lldt``, ``ltr``, ``lmsw``,
  ``invlpg``, ``xrstors``, ``xsaves``, ``invpcid``): at CPL 3, where a PV guest runs, they raise #GP(0)
  before any access, so they have none.

Accesses are listed in the order the CPU makes them (``push`` of memory reads the operand, then pushes;
``pop`` to memory pops, then writes), with the branch checks that raise #GP(0) between them: a near call
checks that its target is canonical before it pushes the return address, a far call that its selector is
not null. Accesses the decoder does not model (string instructions, ``xlat``, ``monitor``) are all through
%ds or %es in 64-bit mode, so they never turn a #GP into a #SS. The size of an explicit memory operand is not
decoded: its first byte is the address checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from xenpy.abi.x86 import X86_EXC_GP, X86_EXC_SS
from xenpy.core.pagetable import is_canonical

#: Longest instruction the CPU accepts; a longer one raises #GP(0).
MAX_INSN_LEN = 15
_U64 = (1 << 64) - 1
#: General registers by number (ModRM, SIB, REX), as the engines name them.
GPR_NAMES = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")  # fmt: skip
#: Register numbers of %rsp and %rbp (a base of either means the stack segment).
RSP = 4
RBP = 5


class Segment(IntEnum):
    """Segment registers in Xen's ``enum x86_segment`` order (also the order of their override prefixes)."""

    ES = 0
    CS = 1
    SS = 2
    DS = 3
    FS = 4
    GS = 5


class OpcodeMap(IntEnum):
    """The opcode map of an instruction: legacy 1-byte, 0F, 0F38, 0F3A, and XOP's maps 8-10."""

    ONE_BYTE = 0
    MAP_0F = 1
    MAP_0F38 = 2
    MAP_0F3A = 3
    XOP8 = 8
    XOP9 = 9
    XOPA = 10


@dataclass(frozen=True, slots=True)
class MemoryAccess:
    """One memory access: linear address = segment base + (base + index * scale + disp) mod 2**address_bits.

    Attributes:
        segment: the segment the access goes through.
        base: the base register's number (0-15), or None.
        index: the index register's number (0-15), or None.
        scale: 1, 2, 4 or 8.
        disp: the displacement (signed; an absolute ``moffs`` address as it is).
        address_bits: 64, or 32 under an address-size override.
        nbytes: bytes accessed from the address, as far as they are known (implicit stack accesses: all of
            them; explicit operands: 1, the first byte).
        rip_relative: the address is relative to the next instruction's RIP (``base`` is None).
        disp_scale: the displacement is ``disp * N`` for an N from 1 to ``disp_scale`` the decoder does not know
            (EVEX's compressed disp8); 1 otherwise.
    """

    segment: Segment
    base: int | None
    index: int | None
    scale: int
    disp: int
    address_bits: int = 64
    nbytes: int = 1
    rip_relative: bool = False
    disp_scale: int = 1


@dataclass(frozen=True, slots=True)
class BranchCheck:
    """A check a branch makes between its accesses that raises #GP(0) if it fails.

    Attributes:
        kind: ``"near"``, the near call's target must be canonical; ``"far"``, the far call's selector must
            not be null.
        register: the target is this register's value (``call *%reg``).
        relative: the target is the next RIP plus this (``call rel32``).
        memory: the target (near: 8 bytes; far: an offset of ``offset_bytes`` then a 2-byte selector) is read
            at this access's address.
        offset_bytes: a far pointer's offset size (2, 4 or 8).
    """

    kind: Literal["near", "far"]
    register: int | None = None
    relative: int | None = None
    memory: MemoryAccess | None = None
    offset_bytes: int = 8


Step = MemoryAccess | BranchCheck


@dataclass(frozen=True, slots=True)
class Instruction:
    """A decoded instruction, as far as its memory accesses go.

    Attributes:
        length: its length in bytes (prefixes and immediates included).
        opcode_map: the opcode map.
        opcode: the opcode byte in that map.
        modrm: the ModRM byte, or None.
        steps: the memory accesses and branch checks in the order the CPU makes them.
        privileged: a CPL 0 instruction with a memory operand (``lgdt``, ``invlpg``, ...; at CPL 3 it raises
            #GP(0) before any access, so ``steps`` is empty). Those without one (``hlt``, ``wrmsr``, ``mov`` to
            CRn, ...) are not marked: they have no access anyway.
    """

    length: int
    opcode_map: OpcodeMap
    opcode: int
    modrm: int | None
    steps: tuple[Step, ...]
    privileged: bool = False

    @property
    def accesses(self) -> tuple[MemoryAccess, ...]:
        """The memory accesses of :attr:`steps`."""
        return tuple(s for s in self.steps if isinstance(s, MemoryAccess))

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The segment of each memory access, in order."""
        return tuple(s.segment for s in self.steps if isinstance(s, MemoryAccess))


# ------------------------------------------------------------------------------------------------ tables

_SEGMENT_PREFIXES = {0x26: Segment.ES, 0x2E: Segment.CS, 0x36: Segment.SS, 0x3E: Segment.DS,
                     0x64: Segment.FS, 0x65: Segment.GS}  # fmt: skip
_OTHER_PREFIXES = frozenset((0x66, 0x67, 0xF0, 0xF2, 0xF3))


def _opcodes(*spans: int | tuple[int, int]) -> frozenset[int]:
    out: set[int] = set()
    for span in spans:
        if isinstance(span, tuple):
            out.update(range(span[0], span[1] + 1))
        else:
            out.add(span)
    return frozenset(out)


#: 1-byte opcodes with a ModRM byte (64-bit mode; C4, C5, 62 and 8F-as-XOP are prefixes, decoded apart).
_ONE_BYTE_MODRM = _opcodes(
    *(row + low for row in range(0x00, 0x40, 0x08) for low in range(4)),
    0x63, 0x69, 0x6B, (0x80, 0x8F), 0xC0, 0xC1, 0xC6, 0xC7, (0xD0, 0xD3), (0xD8, 0xDF), 0xF6, 0xF7, 0xFE, 0xFF,
)  # fmt: skip
#: 1-byte opcodes that do not exist in 64-bit mode (#UD).
_ONE_BYTE_INVALID = _opcodes(
    0x06, 0x07, 0x0E, 0x16, 0x17, 0x1E, 0x1F, 0x27, 0x2F, 0x37, 0x3F, 0x60, 0x61, 0x82, 0x9A, 0xCE, 0xD4, 0xD5,
    0xD6, 0xEA,
)  # fmt: skip
#: 0F opcodes without a ModRM byte (every other 0F opcode has one).
_MAP_0F_NO_MODRM = _opcodes(
    0x05, 0x06, 0x07, 0x08, 0x09, 0x0B, 0x0E, (0x30, 0x37), 0x77, (0x80, 0x8F), 0xA0, 0xA1, 0xA2, 0xA8, 0xA9,
    0xAA, (0xC8, 0xCF),
)  # fmt: skip
#: 0F opcodes with an 8-bit immediate (0F 0F, 3DNow!, has its opcode as an imm8 suffix).
_MAP_0F_IMM8 = _opcodes(0x0F, (0x70, 0x73), 0xA4, 0xAC, 0xBA, 0xC2, 0xC4, 0xC5, 0xC6)
#: 0F opcodes whose memory operand is not accessed: prefetches and hint NOPs.
_MAP_0F_NO_ACCESS = _opcodes(0x0D, (0x18, 0x1F))
#: 0F38 opcodes that are gathers or scatters with VEX/EVEX (VSIB: vector index, addresses not modelled).
_VSIB = _opcodes((0x90, 0x93), (0xA0, 0xA3), 0xC6, 0xC7)


def _imm_one_byte(op: int, reg: int, opsize16: bool, rex_w: bool, addr32: bool) -> int:
    """Bytes of immediate (or relative offset, or moffs) of a 1-byte opcode."""
    z = 2 if opsize16 else 4
    if op < 0x40:
        low = op & 7
        return 1 if low == 4 else (z if low == 5 else 0)
    if op in (0x6A, 0x6B, 0x80, 0x83, 0xA8, 0xC0, 0xC1, 0xC6, 0xCD, 0xEB) or 0x70 <= op <= 0x7F:
        return 1
    if op in (0x68, 0x69, 0x81, 0xA9, 0xC7):
        return z
    if 0xA0 <= op <= 0xA3:
        return 4 if addr32 else 8
    if 0xB0 <= op <= 0xB7 or 0xE0 <= op <= 0xE7:
        return 1
    if 0xB8 <= op <= 0xBF:
        return 8 if rex_w else z
    if op in (0xC2, 0xCA):
        return 2
    if op == 0xC8:
        return 3
    if op in (0xE8, 0xE9):
        return 4  # in 64-bit mode always rel32 (Intel ignores 66 on near branches)
    if op in (0xF6, 0xF7) and reg < 2:
        return 1 if op == 0xF6 else z
    return 0


# ------------------------------------------------------------------------------------------------ decoding


class _TruncatedError(Exception):
    """The bytes end (or pass 15) before the instruction does."""


class _Prefixes:
    __slots__ = ("addr32", "opsize16", "rex", "segment", "simd")

    def __init__(self) -> None:
        self.addr32 = False
        self.opsize16 = False
        self.rex = 0
        self.segment: Segment | None = None
        self.simd = 0  # the last of 66/F2/F3 (mandatory-prefix selection)


def _byte(code: bytes, i: int) -> int:
    if i >= len(code) or i >= MAX_INSN_LEN:
        raise _TruncatedError
    return code[i]


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


def _read_int(code: bytes, i: int, nbytes: int, signed: bool = True) -> int:
    if i + nbytes > min(len(code), MAX_INSN_LEN):
        raise _TruncatedError
    value = int.from_bytes(code[i : i + nbytes], "little")
    return _signed(value, 8 * nbytes) if signed else value


def _modrm_operand(
    code: bytes, i: int, p: _Prefixes, rex_b: bool, rex_x: bool, disp_scale: int = 1
) -> tuple[MemoryAccess | None, int]:
    """The memory operand of the ModRM byte at ``code[i]`` (None for mod 3) and the index past it."""
    modrm = _byte(code, i)
    i += 1
    mod, rm = modrm >> 6, modrm & 7
    if mod == 3:
        return None, i
    base: int | None
    index: int | None = None
    scale = 1
    rip_relative = False
    if rm == 4:
        sib = _byte(code, i)
        i += 1
        scale = 1 << (sib >> 6)
        index = ((sib >> 3) & 7) | (8 if rex_x else 0)
        if index == RSP:
            index = None
        base = (sib & 7) | (8 if rex_b else 0)
        if sib & 7 == 5 and mod == 0:
            base = None
            mod = 2  # a disp32 follows
    elif rm == 5 and mod == 0:
        base = None
        rip_relative = True
        mod = 2
    else:
        base = rm | (8 if rex_b else 0)
    disp = 0
    if mod == 1:
        disp = _read_int(code, i, 1)
        i += 1
    elif mod == 2:
        disp = _read_int(code, i, 4)
        i += 4
    if p.segment in (Segment.FS, Segment.GS):
        segment = p.segment
    elif base in (RSP, RBP):
        segment = Segment.SS
    else:
        segment = Segment.DS
    operand = MemoryAccess(
        segment,
        base,
        index,
        scale,
        disp,
        32 if p.addr32 else 64,
        rip_relative=rip_relative,
        disp_scale=disp_scale if modrm >> 6 == 1 else 1,
    )
    return operand, i


def _push(nbytes: int) -> MemoryAccess:
    return MemoryAccess(Segment.SS, RSP, None, 1, -nbytes, nbytes=nbytes)


def _pop(nbytes: int) -> MemoryAccess:
    return MemoryAccess(Segment.SS, RSP, None, 1, 0, nbytes=nbytes)


def decode(code: bytes) -> Instruction | None:
    """Decode the 64-bit mode instruction at the start of ``code`` (see the module docstring).

    Never raises: bytes that end before the instruction does, an instruction over 15 bytes and an opcode
    that does not exist in 64-bit mode give None.
    """
    try:
        return _decode(code)
    except _TruncatedError:
        return None


def _decode(code: bytes) -> Instruction | None:
    p = _Prefixes()
    i = 0
    while True:
        b = _byte(code, i)
        if b in _SEGMENT_PREFIXES:
            seg = _SEGMENT_PREFIXES[b]
            if seg >= Segment.FS:  # %es, %cs, %ss, %ds overrides are ignored in 64-bit mode
                p.segment = seg
        elif b in _OTHER_PREFIXES:
            if b == 0x66:
                p.opsize16 = True
            elif b == 0x67:
                p.addr32 = True
            if b != 0x67 and b != 0xF0:
                p.simd = b
        elif 0x40 <= b <= 0x4F:
            p.rex = b
            i += 1
            continue
        else:
            break
        p.rex = 0  # a REX not right before the opcode is ignored
        i += 1
    op = code[i]
    if op == 0x0F:
        return _decode_0f(code, i + 1, p)
    if op in (0xC4, 0xC5, 0x62):
        return _decode_vex(code, i, p)
    if op == 0x8F and _byte(code, i + 1) & 0x1F >= 8:
        return _decode_xop(code, i, p)
    if op in _ONE_BYTE_INVALID:
        return None
    return _decode_one_byte(code, i, p)


def _decode_one_byte(code: bytes, i: int, p: _Prefixes) -> Instruction | None:
    op = code[i]
    i += 1
    rex_w = bool(p.rex & 8)
    operand: MemoryAccess | None = None
    modrm: int | None = None
    reg = 0
    if op in _ONE_BYTE_MODRM:
        modrm = _byte(code, i)
        reg = (modrm >> 3) & 7
        operand, i = _modrm_operand(code, i, p, bool(p.rex & 1), bool(p.rex & 2))
    opsize16 = p.opsize16 and not rex_w  # REX.W takes precedence over 66
    length = i + _imm_one_byte(op, reg, opsize16, rex_w, p.addr32)
    if length > MAX_INSN_LEN or length > len(code):
        raise _TruncatedError
    stack = 2 if opsize16 else 8  # push/pop operand size (32 bits cannot be encoded)
    far = 8 if rex_w else (2 if opsize16 else 4)  # far call/ret, iret operand size
    mem: tuple[Step, ...] = (operand,) if operand is not None else ()
    steps: tuple[Step, ...]
    if 0x50 <= op <= 0x57 or op in (0x68, 0x6A, 0x9C):
        steps = (_push(stack),)
    elif 0x58 <= op <= 0x5F or op == 0x9D:
        steps = (_pop(stack),)
    elif op == 0x8F:  # pop r/m (XOP was taken apart before)
        if reg != 0:
            return None
        if operand is not None and operand.base == RSP:
            operand = MemoryAccess(
                operand.segment, RSP, operand.index, operand.scale, operand.disp + stack, operand.address_bits
            )
        steps = (_pop(stack), *((operand,) if operand is not None else ()))
    elif op == 0x8D:  # lea: no access
        steps = ()
    elif 0xA0 <= op <= 0xA3:  # mov to/from an absolute address (moffs)
        moffs = _read_int(code, i, 4 if p.addr32 else 8, signed=False)
        segment = p.segment if p.segment is not None else Segment.DS
        steps = (MemoryAccess(segment, None, None, 1, moffs, 32 if p.addr32 else 64),)
    elif op in (0xC2, 0xC3):
        steps = (_pop(8),)
    elif op in (0xCA, 0xCB):
        steps = (_pop(2 * far),)
    elif op == 0xCF:
        steps = (_pop(5 * far),)
    elif op == 0xC8:
        level = code[i + 2] & 0x1F
        steps = _enter(stack, level)
    elif op == 0xC9:
        steps = (MemoryAccess(Segment.SS, RBP, None, 1, 0, nbytes=stack),)
    elif op == 0xE8:
        steps = (BranchCheck("near", relative=_read_int(code, i, 4)), _push(8))
    elif op == 0xFF and reg == 2:
        if operand is None:
            assert modrm is not None
            check = BranchCheck("near", register=(modrm & 7) | (8 if p.rex & 1 else 0))
        else:
            check = BranchCheck("near", memory=operand)
        steps = (*mem, check, _push(8))
    elif op == 0xFF and reg == 3:
        if operand is None:
            return None
        steps = (operand, BranchCheck("far", memory=operand, offset_bytes=far), _push(2 * far))
    elif op == 0xFF and reg == 6:
        steps = (*mem, _push(stack))
    elif op == 0xFF and reg == 7:
        return None
    elif op == 0xFE and reg >= 2:
        return None
    else:
        steps = mem
    return Instruction(length, OpcodeMap.ONE_BYTE, op, modrm, steps)


def _enter(stack: int, level: int) -> tuple[Step, ...]:
    """``enter``: push %rbp; for a nesting level L > 0, L - 1 frame pointers read at %rbp and pushed, then the
    new frame pointer."""
    if level == 0:
        return (_push(stack),)
    reads = MemoryAccess(Segment.SS, RBP, None, 1, -stack * (level - 1), nbytes=stack * (level - 1))
    pushes = _push(stack * (level + 1))
    return (pushes, reads) if level > 1 else (pushes,)


def _decode_0f(code: bytes, i: int, p: _Prefixes) -> Instruction | None:
    op = _byte(code, i)
    rex_b, rex_x = bool(p.rex & 1), bool(p.rex & 2)
    if op in (0x38, 0x3A):
        opcode_map = OpcodeMap.MAP_0F38 if op == 0x38 else OpcodeMap.MAP_0F3A
        op = _byte(code, i + 1)
        privileged = opcode_map == OpcodeMap.MAP_0F38 and op == 0x82 and p.simd == 0x66  # invpcid
        return _with_modrm(code, i + 2, p, opcode_map, op, int(opcode_map == OpcodeMap.MAP_0F3A), rex_b, rex_x,
                           privileged=privileged)  # fmt: skip
    i += 1
    if op in _MAP_0F_NO_MODRM:
        length = i + (4 if 0x80 <= op <= 0x8F else 0)
        _check_length(code, length)
        stack = 2 if p.opsize16 and not p.rex & 8 else 8
        steps: tuple[Step, ...] = ()
        if op in (0xA0, 0xA8):
            steps = (_push(stack),)
        elif op in (0xA1, 0xA9):
            steps = (_pop(stack),)
        return Instruction(length, OpcodeMap.MAP_0F, op, None, steps)
    if 0x20 <= op <= 0x23:  # mov to/from CRn/DRn: the ModRM names registers whatever its mod
        _check_length(code, i + 1)
        return Instruction(i + 1, OpcodeMap.MAP_0F, op, code[i], ())
    reg = (_byte(code, i) >> 3) & 7
    mod_mem = _byte(code, i) >> 6 != 3
    privileged = (
        (op == 0x00 and reg in (2, 3))  # lldt, ltr
        or (op == 0x01 and ((reg in (2, 3, 7) and mod_mem) or reg == 6))  # lgdt, lidt, invlpg, lmsw
        or (op == 0xC7 and reg in (3, 5) and mod_mem and not p.simd)  # xrstors, xsaves
    )
    return _with_modrm(code, i, p, OpcodeMap.MAP_0F, op, int(op in _MAP_0F_IMM8), rex_b, rex_x,
                       privileged=privileged, no_access=op in _MAP_0F_NO_ACCESS)  # fmt: skip


def _check_length(code: bytes, length: int) -> None:
    if length > MAX_INSN_LEN or length > len(code):
        raise _TruncatedError


def _with_modrm(
    code: bytes,
    i: int,
    p: _Prefixes,
    opcode_map: OpcodeMap,
    op: int,
    imm: int,
    rex_b: bool,
    rex_x: bool,
    *,
    privileged: bool = False,
    no_access: bool = False,
    disp_scale: int = 1,
) -> Instruction:
    """An instruction whose ModRM byte is at ``code[i]``, followed by ``imm`` bytes of immediate."""
    modrm = _byte(code, i)
    operand, end = _modrm_operand(code, i, p, rex_b, rex_x, disp_scale)
    length = end + imm
    _check_length(code, length)
    steps: tuple[Step, ...] = () if privileged or no_access or operand is None else (operand,)
    return Instruction(length, opcode_map, op, modrm, steps, privileged)


def _decode_vex(code: bytes, i: int, p: _Prefixes) -> Instruction | None:
    """VEX (C4 3-byte, C5 2-byte) and EVEX (62): the map, REX.X/B (stored inverted), the opcode, ModRM."""
    kind = code[i]
    p1 = _byte(code, i + 1)
    if kind == 0xC5:
        opcode_map, rex_x, rex_b = OpcodeMap.MAP_0F, False, False
        i += 2
    else:
        rex_x, rex_b = not p1 & 0x40, not p1 & 0x20
        mmm = p1 & (0x07 if kind == 0x62 else 0x1F)
        if mmm not in (1, 2, 3):
            return None  # no such map (or EVEX's FP16 maps 5 and 6, which no engine runs)
        opcode_map = OpcodeMap(mmm)
        i += 4 if kind == 0x62 else 3
    op = _byte(code, i)
    i += 1
    if opcode_map == OpcodeMap.MAP_0F and op == 0x77 and kind != 0x62:  # vzeroupper, vzeroall
        _check_length(code, i)
        return Instruction(i, opcode_map, op, None, ())
    if opcode_map == OpcodeMap.MAP_0F3A:
        imm = 1
    elif opcode_map == OpcodeMap.MAP_0F:
        imm = int(op in _MAP_0F_IMM8 and op != 0x0F)
    else:
        imm = 0
    vsib = opcode_map == OpcodeMap.MAP_0F38 and op in _VSIB
    return _with_modrm(code, i, p, opcode_map, op, imm, rex_b, rex_x, no_access=vsib,
                       disp_scale=64 if kind == 0x62 else 1)  # fmt: skip


def _decode_xop(code: bytes, i: int, p: _Prefixes) -> Instruction | None:
    """AMD's XOP (8F with a map of 8 or more): maps 8 (imm8), 9 and 10 (imm32)."""
    p1 = code[i + 1]
    mmmmm = p1 & 0x1F
    if mmmmm not in (8, 9, 10):
        return None
    _byte(code, i + 2)
    op = _byte(code, i + 3)
    imm = {8: 1, 9: 0, 10: 4}[mmmmm]
    return _with_modrm(code, i + 4, p, OpcodeMap(mmmmm), op, imm, not p1 & 0x20, not p1 & 0x40)


# ------------------------------------------------------------------------------------------------ addresses

#: Reads ``nbytes`` of guest memory at a linear address; None if it cannot.
GuestReader = Callable[[int, int], bytes | None]


def linear_address(access: MemoryAccess, regs: Mapping[str, int], next_rip: int, disp: int | None = None) -> int:
    """The linear address of ``access`` with the registers ``regs`` (the 16 GPRs, ``fs_base``, ``gs_base``).

    Args:
        access: the access.
        regs: register values by name (:data:`GPR_NAMES`; ``fs_base``/``gs_base`` for those segments).
        next_rip: the RIP after the instruction (RIP-relative operands).
        disp: the displacement to use instead of ``access.disp`` (EVEX's scaled disp8).
    """
    ea = access.disp if disp is None else disp
    if access.rip_relative:
        ea += next_rip
    if access.base is not None:
        ea += regs[GPR_NAMES[access.base]]
    if access.index is not None:
        ea += regs[GPR_NAMES[access.index]] * access.scale
    ea &= (1 << access.address_bits) - 1
    if access.segment == Segment.FS:
        ea += regs["fs_base"]
    elif access.segment == Segment.GS:
        ea += regs["gs_base"]
    return ea & _U64


def _access_canonical(access: MemoryAccess, regs: Mapping[str, int], next_rip: int) -> bool | None:
    """True if every byte known of ``access`` is at a canonical address, False if one is not, None if the
    decoder does not know the address well enough to tell."""
    verdicts = set()
    for disp in {access.disp, access.disp * access.disp_scale}:
        first = linear_address(access, regs, next_rip, disp)
        last = (first + access.nbytes - 1) & _U64
        verdicts.add(is_canonical(first) and is_canonical(last))
    return verdicts.pop() if len(verdicts) == 1 else None


def _check_passes(check: BranchCheck, regs: Mapping[str, int], next_rip: int, read: GuestReader) -> bool | None:
    """Whether a branch check passes (True), fails (False) or cannot be evaluated (None)."""
    if check.register is not None:
        return is_canonical(regs[GPR_NAMES[check.register]])
    if check.relative is not None:
        return is_canonical(next_rip + check.relative)
    assert check.memory is not None
    address = linear_address(check.memory, regs, next_rip)
    if check.kind == "near":
        raw = read(address, 8)
        return None if raw is None or len(raw) != 8 else is_canonical(int.from_bytes(raw, "little"))
    raw = read(address, check.offset_bytes + 2)
    if raw is None or len(raw) != check.offset_bytes + 2:
        return None
    return int.from_bytes(raw[-2:], "little") & ~3 != 0  # a null selector is #GP(0)


def noncanonical_fault(insn: Instruction, regs: Mapping[str, int], rip: int, read: GuestReader) -> int | None:
    """The exception hardware raises for the first failing canonical-address check of ``insn``.

    Args:
        insn: the decoded instruction.
        regs: register values before it (the 16 GPRs by :data:`GPR_NAMES`, ``fs_base``, ``gs_base``).
        rip: the instruction's address.
        read: reads guest memory (the target of ``call *mem``, the selector of a far call).

    Returns:
        ``X86_EXC_SS`` if it is an access through the stack segment, ``X86_EXC_GP`` if it is another access
        or a branch check, None if every address is canonical or one cannot be computed (then a #GP(0) of the
        instruction has another cause, or is left as it is).
    """
    next_rip = (rip + insn.length) & _U64
    for step in insn.steps:
        if isinstance(step, MemoryAccess):
            ok = _access_canonical(step, regs, next_rip)
            if ok is False:
                return X86_EXC_SS if step.segment == Segment.SS else X86_EXC_GP
        else:
            ok = _check_passes(step, regs, next_rip, read)
            if ok is False:
                return X86_EXC_GP
        if ok is None:
            return None
    return None


__all__ = [
    "GPR_NAMES",
    "MAX_INSN_LEN",
    "BranchCheck",
    "GuestReader",
    "Instruction",
    "MemoryAccess",
    "OpcodeMap",
    "Segment",
    "decode",
    "linear_address",
    "noncanonical_fault",
]
