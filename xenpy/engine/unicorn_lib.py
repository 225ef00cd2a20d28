"""Direct calls into Unicorn's C library for the Unicorn engine, and what they need measured once per process.

The engine's hot paths (the register batches of a hypercall, stopping and starting emulation, hooks) call the
library that Unicorn's Python binding has loaded, through :mod:`ctypes` and by address, instead of the
binding's wrappers (several times slower, see the project's engine notes):

* :data:`lib`: the library with the prototypes the engine uses, and the addresses the native shim
  (:mod:`xenpy.engine._native`) calls;
* the callback types of each hook kind, :func:`hook_add`, and :class:`RegBatch` (one batch read or write of a
  fixed register list);
* :func:`calibration`: the offsets of QEMU's exception state inside Unicorn's saved context, measured on a
  scratch ``Uc`` (never hard-coded);
* :func:`measure_native_features`: the CPUID features of Unicorn's emulated CPU.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from unicorn import UC_ARCH_X86, UC_MODE_64, UC_PROT_ALL, Uc, UcError
from unicorn import x86_const as ux
from unicorn.unicorn_const import UC_HOOK_INSN_INVALID, UC_HOOK_INTR
from unicorn.unicorn_py3.unicorn import uclib

from xenpy.abi.arch_x86 import FLAT_RING3_CS64, FLAT_RING3_SS64
from xenpy.abi.x86 import FIRST_RESERVED_GDT_ENTRY, MSR_EFER, PAGE_ACCESSED, PAGE_PRESENT, PAGE_RW, PAGE_USER
from xenpy.core.memory import PAGE_SHIFT, PAGE_SIZE
from xenpy.engine.unicorn_area import (
    CPU_CR0,
    CPU_CR4,
    CPU_EFER,
    GDT_LIMIT,
    HV_PTE,
    TRAMPOLINE_CODE,
    XEN_GDT_ENTRIES,
)

#: An address emulation never reaches (non-canonical): the "until" of every emu_start.
NEVER = 0xDEAD_0000_0000_0000

REG_IDS: dict[str, int] = {
    "rax": ux.UC_X86_REG_RAX, "rbx": ux.UC_X86_REG_RBX, "rcx": ux.UC_X86_REG_RCX, "rdx": ux.UC_X86_REG_RDX,
    "rsi": ux.UC_X86_REG_RSI, "rdi": ux.UC_X86_REG_RDI, "rbp": ux.UC_X86_REG_RBP, "rsp": ux.UC_X86_REG_RSP,
    "r8": ux.UC_X86_REG_R8, "r9": ux.UC_X86_REG_R9, "r10": ux.UC_X86_REG_R10, "r11": ux.UC_X86_REG_R11,
    "r12": ux.UC_X86_REG_R12, "r13": ux.UC_X86_REG_R13, "r14": ux.UC_X86_REG_R14, "r15": ux.UC_X86_REG_R15,
    "rip": ux.UC_X86_REG_RIP, "rflags": ux.UC_X86_REG_RFLAGS,
    "cs": ux.UC_X86_REG_CS, "ss": ux.UC_X86_REG_SS, "ds": ux.UC_X86_REG_DS, "es": ux.UC_X86_REG_ES,
    "fs": ux.UC_X86_REG_FS, "gs": ux.UC_X86_REG_GS,
    "fs_base": ux.UC_X86_REG_FS_BASE, "gs_base": ux.UC_X86_REG_GS_BASE,
    "cr0": ux.UC_X86_REG_CR0, "cr2": ux.UC_X86_REG_CR2, "cr3": ux.UC_X86_REG_CR3, "cr4": ux.UC_X86_REG_CR4,
}  # fmt: skip


class UcMsr(ctypes.Structure):
    _fields_ = [("rid", ctypes.c_uint32), ("value", ctypes.c_uint64)]


VOIDP = ctypes.c_void_p
lib = ctypes.CDLL(uclib._name)
lib.uc_emu_start.argtypes = [VOIDP, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_size_t]
lib.uc_emu_start.restype = ctypes.c_int
lib.uc_emu_stop.argtypes = [VOIDP]
lib.uc_emu_stop.restype = ctypes.c_int
lib.uc_reg_read_batch.argtypes = [VOIDP, VOIDP, VOIDP, ctypes.c_int]
lib.uc_reg_read_batch.restype = ctypes.c_int
lib.uc_reg_write_batch.argtypes = [VOIDP, VOIDP, VOIDP, ctypes.c_int]
lib.uc_reg_write_batch.restype = ctypes.c_int
lib.uc_reg_read.argtypes = [VOIDP, ctypes.c_int, VOIDP]
lib.uc_reg_read.restype = ctypes.c_int
lib.uc_reg_write.argtypes = [VOIDP, ctypes.c_int, VOIDP]
lib.uc_reg_write.restype = ctypes.c_int
lib.uc_context_alloc.argtypes = [VOIDP, ctypes.POINTER(VOIDP)]
lib.uc_context_alloc.restype = ctypes.c_int
lib.uc_context_size.argtypes = [VOIDP]
lib.uc_context_size.restype = ctypes.c_size_t
lib.uc_context_save.argtypes = [VOIDP, VOIDP]
lib.uc_context_save.restype = ctypes.c_int
lib.uc_context_restore.argtypes = [VOIDP, VOIDP]
lib.uc_context_restore.restype = ctypes.c_int
lib.uc_context_free.argtypes = [VOIDP]
lib.uc_context_free.restype = ctypes.c_int
lib.uc_ctl.restype = ctypes.c_int
UC_EMU_STOP_ADDR: int = ctypes.cast(lib.uc_emu_stop, VOIDP).value or 0
UC_READ_BATCH_ADDR: int = ctypes.cast(lib.uc_reg_read_batch, VOIDP).value or 0
UC_WRITE_BATCH_ADDR: int = ctypes.cast(lib.uc_reg_write_batch, VOIDP).value or 0
UC_CTL_ADDR: int = ctypes.cast(lib.uc_ctl, VOIDP).value or 0
# uc_ctl(uc, UC_CTL_WRITE(UC_CTL_TLB_FLUSH, 0)): type 11, 0 arguments, write.
UC_CTL_TLB_FLUSH = 11 | (0 << 26) | (1 << 30)
# uc_ctl(uc, UC_CTL_WRITE(UC_CTL_TB_FLUSH, 0)): type 10, 0 arguments, write.
UC_CTL_TB_FLUSH = 10 | (0 << 26) | (1 << 30)
# uc_ctl(uc, UC_CTL_WRITE(UC_CTL_TB_REMOVE_CACHE, 2), begin, end): type 9, 2 arguments, write.
UC_CTL_TB_REMOVE_CACHE = 9 | (2 << 26) | (1 << 30)

INTR_CB = ctypes.CFUNCTYPE(None, VOIDP, ctypes.c_uint32, VOIDP)
INVALID_CB = ctypes.CFUNCTYPE(ctypes.c_bool, VOIDP, VOIDP)
IN_CB = ctypes.CFUNCTYPE(ctypes.c_uint32, VOIDP, ctypes.c_uint32, ctypes.c_int, VOIDP)
OUT_CB = ctypes.CFUNCTYPE(None, VOIDP, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint32, VOIDP)
CPUID_CB = ctypes.CFUNCTYPE(ctypes.c_int, VOIDP, VOIDP)
SYSCALL_CB = ctypes.CFUNCTYPE(None, VOIDP, VOIDP)
CODE_CB = ctypes.CFUNCTYPE(None, VOIDP, ctypes.c_uint64, ctypes.c_uint32, VOIDP)
PY_CB = ctypes.CFUNCTYPE(None)


class EngineUnavailable(RuntimeError):  # noqa: N818 (names the condition)
    """The Unicorn engine cannot run PV guests on this host (calibration failed)."""


class RegBatch:
    """Pre-built arrays for one batch read/write of a fixed list of registers."""

    __slots__ = ("ids", "n", "names", "ptrs", "vals")

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.n = len(names)
        self.ids = (ctypes.c_int * self.n)(*(REG_IDS[name] for name in names))
        self.vals = (ctypes.c_uint64 * self.n)()
        base = ctypes.addressof(self.vals)
        self.ptrs = (VOIDP * self.n)(*(base + 8 * i for i in range(self.n)))


def hook_add(uch: ctypes.c_void_p, htype: int, fptr: int, user_data: int, *extra: int,
             begin: int = 1, end: int = 0) -> int:
    """Add a hook (on every address, or on ``begin..end`` inclusive); returns its handle."""
    handle = ctypes.c_size_t()
    args: list[Any] = [ctypes.c_uint64(begin), ctypes.c_uint64(end)]
    args += [ctypes.c_int(x) for x in extra]
    status = uclib.uc_hook_add(uch, ctypes.byref(handle), htype, VOIDP(fptr), VOIDP(user_data), *args)
    if status != 0:
        raise UcError(status)
    return handle.value


def hook_del(uch: ctypes.c_void_p, handle: int) -> None:
    """Remove a hook added by :func:`hook_add`."""
    status = uclib.uc_hook_del(uch, ctypes.c_size_t(handle))
    if status != 0:
        raise UcError(status)


def remove_cached_blocks(uch: ctypes.c_void_p, begin: int, end: int) -> None:
    """Drop the translation blocks that overlap guest virtual ``begin..end`` (exclusive), so they are
    translated again. Page by page: Unicorn translates only the first address of a range, and takes the rest as
    physically contiguous."""
    while begin < end:
        stop = min(end, (begin | 0xFFF) + 1)
        lib.uc_ctl(uch, ctypes.c_int(UC_CTL_TB_REMOVE_CACHE), ctypes.c_uint64(begin), ctypes.c_uint64(stop))
        begin = stop


# ------------------------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """Offsets inside Unicorn's saved CPU context (bytes from the context pointer).

    Attributes:
        old_exception: QEMU's ``env->old_exception`` (int32; -1 = none in flight).
        error_code: ``env->error_code`` of the exception being raised (int32).
        exception_is_int: ``env->exception_is_int`` (int32; 1 for ``int N``).
        context_size: size of a saved context.
    """

    old_exception: int
    error_code: int
    exception_is_int: int
    context_size: int


_calibration: Calibration | None = None


def calibration() -> Calibration:
    """The context offsets for this Unicorn build, measured once per process on a scratch ``Uc``.

    Raises:
        EngineUnavailable: the offsets could not be identified unambiguously.
    """
    global _calibration
    if _calibration is None:
        _calibration = _calibrate()
    return _calibration


def _calibrate() -> Calibration:
    nr_pages = 16
    raw = np.zeros((nr_pages + 1) * PAGE_SIZE, dtype=np.uint8)
    skip = (-raw.ctypes.data) % PAGE_SIZE
    mem = raw[skip : skip + nr_pages * PAGE_SIZE]
    mv = memoryview(mem).cast("Q")

    def pte(page: int, flags: int) -> int:
        return (page << PAGE_SHIFT) | flags

    user = HV_PTE | PAGE_USER
    # L4 page 1 -> L3 page 2 -> L2 page 3 -> L1 page 4: code at 0x400000 (page 8), read-only data at 0x401000
    # (page 9). Hypervisor: L4[256] -> L3 page 5 -> L2 page 6 -> L1 page 7: GDT page 10 (entries 0x1c00..) at
    # 0xffff800000000000 + 14 pages, trampoline page 11, stack page 12.
    mv[1 * 512 + 0] = pte(2, user)
    mv[2 * 512 + 0] = pte(3, user)
    mv[3 * 512 + 2] = pte(4, user)
    mv[4 * 512 + 0] = pte(8, PAGE_PRESENT | PAGE_RW | PAGE_ACCESSED | PAGE_USER)
    mv[4 * 512 + 1] = pte(9, PAGE_PRESENT | PAGE_ACCESSED | PAGE_USER)
    mv[1 * 512 + 256] = pte(5, HV_PTE)
    mv[5 * 512 + 0] = pte(6, HV_PTE)
    mv[6 * 512 + 0] = pte(7, HV_PTE)
    mv[7 * 512 + 14] = pte(10, HV_PTE)
    mv[7 * 512 + 16] = pte(11, HV_PTE)
    mv[7 * 512 + 17] = pte(12, HV_PTE)
    for index, desc in XEN_GDT_ENTRIES.items():
        mv[10 * 512 + index - FIRST_RESERVED_GDT_ENTRY] = desc
    mem[11 * PAGE_SIZE : 11 * PAGE_SIZE + 2] = np.frombuffer(TRAMPOLINE_CODE, np.uint8)
    # Code: write to the read-only page (#PF, error 7), read a non-present page (#PF, error 4), int3.
    code = bytes.fromhex("c70425 00104000 01000000 8b0425 00204000 cc 90 0f0b")
    mem[8 * PAGE_SIZE : 8 * PAGE_SIZE + len(code)] = np.frombuffer(code, np.uint8)
    hv_base = 0xFFFF_8000_0000_0000
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uch = VOIDP(uc._uch.value)
    try:
        uc.mem_map_ptr(0, nr_pages * PAGE_SIZE, UC_PROT_ALL, mem.ctypes.data)
        uc.reg_write(ux.UC_X86_REG_CR3, 1 << PAGE_SHIFT)
        uc.reg_write(ux.UC_X86_REG_CR4, CPU_CR4)
        uc.msr_write(MSR_EFER, CPU_EFER)
        uc.reg_write(ux.UC_X86_REG_CR0, CPU_CR0)
        uc.reg_write(ux.UC_X86_REG_GDTR, (0, hv_base, GDT_LIMIT, 0))
        size = int(lib.uc_context_size(uch))
        ctx = VOIDP()
        if lib.uc_context_alloc(uch, ctypes.byref(ctx)):
            raise EngineUnavailable("uc_context_alloc failed")
        snaps: list[tuple[int, bytes]] = []

        def on_intr(_uc: int, intno: int, _ud: int) -> None:
            lib.uc_context_save(uch, ctx)
            snaps.append((intno, ctypes.string_at(ctx.value, size)))
            lib.uc_emu_stop(uch)

        def on_invalid(_uc: int, _ud: int) -> bool:
            lib.uc_emu_stop(uch)
            return True

        cb_intr = INTR_CB(on_intr)
        cb_inv = INVALID_CB(on_invalid)
        hook_add(uch, UC_HOOK_INTR, ctypes.cast(cb_intr, VOIDP).value or 0, 0)
        hook_add(uch, UC_HOOK_INSN_INVALID, ctypes.cast(cb_inv, VOIDP).value or 0, 0)
        # Enter CPL3 through the trampoline, straight into the code (its first instruction faults).
        frame = struct.pack("<5Q", 0x400000, FLAT_RING3_CS64, 0x202, 0x400800, FLAT_RING3_SS64)
        mem[13 * PAGE_SIZE - 40 : 13 * PAGE_SIZE] = np.frombuffer(frame, np.uint8)
        uc.reg_write(ux.UC_X86_REG_RSP, hv_base + 18 * PAGE_SIZE - 40)

        def i32(snap: bytes, off: int) -> int:
            return int(struct.unpack_from("<i", snap, off)[0])

        # QEMU's CPUX86State has, in order: int error_code; int exception_is_int; target_ulong
        # exception_next_eip; target_ulong dr[8]; four breakpoint pointers; int old_exception.
        old_exception_delta = 4 + 4 + 8 + 8 * 8 + 4 * 8
        rip = hv_base + 16 * PAGE_SIZE
        results: list[tuple[int, bytes]] = []
        error_code: int | None = None
        for _ in range(3):
            snaps.clear()
            uc.emu_start(rip, NEVER)
            if len(snaps) != 1:
                raise EngineUnavailable(f"calibration: expected one exception, got {len(snaps)}")
            lib.uc_context_save(uch, ctx)
            after = ctypes.string_at(ctx.value, size)
            vector, hooked = snaps[0]
            results.append((vector, hooked))
            if error_code is None:
                # First fault: a write to a present read-only user page, error code 7 (P|W|U), not "int N",
                # and the exception left in flight (a #PF, or the #DF it would turn the next one into).
                cands = [
                    off
                    for off in range(0, size - old_exception_delta - 3, 4)
                    if i32(hooked, off) == 7
                    and i32(hooked, off + 4) == 0
                    and i32(after, off + old_exception_delta) in (8, 14)
                ]
                if len(cands) != 1:
                    raise EngineUnavailable(f"calibration: error_code candidates {cands}")
                error_code = cands[0]
            ctypes.memmove(ctx.value + error_code + old_exception_delta, struct.pack("<i", -1), 4)
            lib.uc_context_restore(uch, ctx)
            # Resume after the faulting instruction: skip it (lengths 11 and 7), int3 already points past.
            rip = uc.reg_read(ux.UC_X86_REG_RIP)
            if vector == 14:
                rip += 11 if rip == 0x400000 else 7
        assert error_code is not None
        vectors = [r[0] for r in results]
        if vectors != [14, 14, 3]:
            raise EngineUnavailable(f"calibration: exception sequence {vectors}, expected [14, 14, 3]")
        if i32(results[1][1], error_code) != 4 or i32(results[2][1], error_code + 4) != 1:
            raise EngineUnavailable("calibration: error_code / exception_is_int offsets do not verify")
        old_exc_off = error_code + old_exception_delta
        lib.uc_context_free(ctx)
        return Calibration(old_exc_off, error_code, error_code + 4, size)
    finally:
        # The callbacks must outlive every emu_start of the scratch Uc (freed when collected).
        del uc


def measure_native_features() -> tuple[int, int, int, int]:
    """Leaf 1 ECX/EDX and leaf 0x80000001 ECX/EDX of Unicorn's emulated CPU (native ``cpuid``)."""
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0x1000, 0x1000)
    uc.mem_write(0x1000, b"\x0f\xa2")
    out = []
    for leaf in (1, 0x8000_0001):
        uc.reg_write(ux.UC_X86_REG_RAX, leaf)
        uc.reg_write(ux.UC_X86_REG_RCX, 0)
        uc.emu_start(0x1000, 0x1002)
        out.append((uc.reg_read(ux.UC_X86_REG_RCX), uc.reg_read(ux.UC_X86_REG_RDX)))
    return out[0][0], out[0][1], out[1][0], out[1][1]
