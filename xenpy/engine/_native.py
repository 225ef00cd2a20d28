"""Native helpers of the Unicorn engine: an instruction counter and the hypercall entry shim, in C.

Two Unicorn callbacks are hot enough that a Python callback would dominate their cost:

* ``xp_count_hook``, a ``UC_HOOK_CODE`` callback run before every guest instruction, counts retired
  instructions and stops emulation exactly when the budget is used, or as soon as the engine asked to stop
  (``stopping``). The count is therefore exact at every exit, which the deterministic clock needs.
* ``xp_syscall_hook``, the ``UC_HOOK_INSN``/``UC_X86_INS_SYSCALL`` callback, reads the registers a hypercall
  needs in one ``uc_reg_read_batch`` call, computes the guest time reached (from the counter), calls the
  engine's Python function (no arguments: it reads and writes the shared :class:`SyscallFrame`), then writes
  back in one ``uc_reg_write_batch`` call rax (the result) and rcx/r11 as Xen's ``sysret`` leaves them, or
  whatever the Python side asked for.

The library calls Unicorn through function pointers handed over in the structures, so it links against
nothing. It is compiled with the system C compiler on first use and cached (keyed by a hash of the source) in
``$XDG_CACHE_HOME/xenpy`` (or ``~/.cache/xenpy``, or a temporary directory when neither is writable).
:func:`load_native` returns None when no compiler is available; the engine then uses Python callbacks.

The binding is :mod:`ctypes`, not cffi: installing xenpy needs no compiler step (the helpers are optional and
built on first use), and the C library the engine calls is Unicorn's own, already loaded by its Python
binding, whose functions ctypes reaches by address without another dependency.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

#: Registers the syscall shim reads, in this order (``SyscallFrame.regs_in``).
SYSCALL_IN = ("rax", "rdi", "rsi", "rdx", "r10", "r8", "rip", "rflags", "cs")
#: Registers the shim may write, in this order; the Python side sets ``nout`` to write the first ``nout``.
SYSCALL_OUT = ("rax", "rcx", "r11", "rsp", "rflags", "rip")
#: Indexes of the 64-bit words of :class:`SyscallFrame` (a ``memoryview`` cast to ``Q``).
SF_RIP = 6
SF_RFLAGS = 7
SF_CS = 8
SF_RAX_OUT = 9
SF_RCX_OUT = 10
SF_R11_OUT = 11
SF_NOUT = 15
SF_ADDEND = 16
SF_TIME_BASE = 17
SF_TIME_CAP = 18
SF_COUNT_BIAS = 19
SF_NOW = 20
SF_WORDS = 21

_SOURCE = r"""
#include <stdint.h>

typedef int (*xp_stop_fn)(void *uc);
typedef int (*xp_batch_fn)(void *uc, int *ids, void **vals, int count);
typedef void (*xp_py_fn)(void);

typedef int (*xp_ctl_fn)(void *uc, int control, ...);

struct xp_block {
    uint64_t pc;        /* 0: empty */
    uint32_t size;
    uint16_t n;         /* instructions, as QEMU counted them when it translated the block */
    uint16_t precise;   /* XP_BLOCK_* */
};

/* How a cached block is counted. */
#define XP_BLOCK_COUNTED 0  /* by the block hook, QEMU's count at once */
#define XP_BLOCK_LAND 1     /* per instruction each time it runs (port I/O, lengths that disagree with QEMU's) */
#define XP_BLOCK_HOOKED 2   /* inside a hooked range: xp_range_hook counts its instructions */
#define XP_BLOCK_CONFLICT 3 /* overlaps a hooked range without being inside it: the engine unhooks the range */

/* Per-instruction runs (counter.precise): a landing on [land_pc, land_pc + land_size), or a single step of the
   instruction at land_pc (any block that does not start there ends it). */
#define XP_PRECISE_LANDING 1
#define XP_PRECISE_STEP 2

/* Blocks that would land at every run stay translated with a code hook on their range instead. */
#define XP_HOOKED 8
struct xp_range {
    uint64_t pc;
    uint64_t size;
};

#define XP_CACHE 8192   /* entries of each half (kernel, user) of the block cache; a power of two */
#define XP_NONE (~(uint64_t)0)

struct xp_counter {
    uint64_t count;     /* instructions started (and not stopped) since reset */
    uint64_t limit;     /* stop before instruction number limit + 1 */
    uint64_t stopping;  /* set by the engine when it calls uc_emu_stop */
    xp_stop_fn stop;
    /* Block counting (xp_block_hook); xp_count_hook uses none of this. */
    uint64_t block_pc;    /* the block last entered, XP_NONE when the count is exact per instruction */
    uint64_t block_base;  /* the count before that block */
    uint64_t block_size;
    uint64_t land_pc;     /* out: the block the hook stopped before, to run per instruction (0: none) */
    uint64_t land_size;
    uint64_t land_whole;  /* out: 1 if the whole block runs per instruction (port I/O, unknown lengths) */
    uint64_t precise;     /* XP_PRECISE_*: a per-instruction run is under way */
    uint64_t passive;     /* 1: the block hook neither counts nor stops (a single step counts itself) */
    uint64_t cr3;         /* the loaded L4's machine address */
    uint64_t mem_base;    /* host address of machine memory */
    uint64_t mem_size;
    uint64_t misses;      /* blocks classified */
    xp_ctl_fn ctl;        /* uc_ctl */
    uint64_t land_conflict; /* out: 1 if the block stopped before overlaps a hooked range (XP_BLOCK_CONFLICT) */
    uint64_t nr_hooked;
    struct xp_range hooked[XP_HOOKED]; /* ranges the engine keeps a permanent xp_range_hook on */
    struct xp_block cache[2 * XP_CACHE];
};

#define XP_LEN_IO 0x100   /* flag: port I/O (in, out, ins, outs) */
#define XP_LEN_BAD 0x200  /* flag: an opcode QEMU raises #UD for, or unknown here: the block ends with it */

/* Bit sets of 256 opcodes: 1-byte map with a ModRM byte, 0F map with a ModRM byte. */
static const uint32_t xp_modrm1[8] = {
    0x0f0f0f0f, 0x0f0f0f0f, 0x00000000, 0x00000a0c, 0x0000ffff, 0x00000000, 0xff0f00f3, 0xc0c00000,
};
static const uint32_t xp_modrm2[8] = {
    0xffff200f, 0x0000ff0f, 0xffffffff, 0xff7fffff, 0xffff0000, 0xfffff838, 0xffff00ff, 0xffffffff,
};

static int xp_bit(const uint32_t *set, int op) { return (set[op >> 5] >> (op & 31)) & 1; }

/* The length of the ModRM operand (ModRM, SIB, displacement) at p; -1 if past end. */
static int xp_modrm_len(const uint8_t *p, int avail)
{
    int mod, rm, n = 1;

    if ( avail < 1 )
        return -1;
    mod = p[0] >> 6;
    rm = p[0] & 7;
    if ( mod == 3 )
        return 1;
    if ( rm == 4 )
    {
        if ( avail < 2 )
            return -1;
        n = 2;
        if ( mod == 0 && (p[1] & 7) == 5 )
            n += 4;
    }
    else if ( mod == 0 && rm == 5 )
        n += 4;
    if ( mod == 1 )
        n += 1;
    else if ( mod == 2 )
        n += 4;
    return n;
}

#define IMMZ ((!rexw && opsize16) ? 2 : 4)

/* Length of the instruction at code[0..avail), ORed with XP_LEN_* flags; -1: truncated or over 15 bytes. */
int xp_insn_len(const uint8_t *code, int avail)
{
    int i = 0, opsize16 = 0, addr32 = 0, rexw = 0, vex = 0, map = 1, op, modrm = 0, imm = 0, flags = 0, n;

    for ( ;; i++ )
    {
        if ( i >= avail || i >= 15 )
            return -1;
        op = code[i];
        if ( op == 0x66 ) opsize16 = 1;
        else if ( op == 0x67 ) addr32 = 1;
        else if ( op == 0xf0 || op == 0xf2 || op == 0xf3 || op == 0x26 || op == 0x2e || op == 0x36 ||
                  op == 0x3e || op == 0x64 || op == 0x65 ) ;
        else if ( (op & 0xf0) == 0x40 ) rexw = (op >> 3) & 1;
        else break;
    }
    if ( op == 0xc4 || op == 0xc5 )
    {
        /* VEX: QEMU takes it as a prefix and decodes the opcode in the map it names. */
        vex = 1;
        if ( op == 0xc5 )
        {
            if ( i + 2 >= avail ) return -1;
            map = 1;
            i += 2;
        }
        else
        {
            if ( i + 3 >= avail ) return -1;
            map = code[i + 1] & 0x1f;
            rexw = code[i + 2] >> 7;
            i += 3;
            if ( map < 1 || map > 3 ) flags |= XP_LEN_BAD;
        }
        op = code[i];
        if ( map != 1 ) goto maps;
        goto map1;
    }
    if ( op == 0x0f )
    {
        if ( ++i >= avail ) return -1;
        op = code[i];
        if ( op == 0x38 || op == 0x3a )
        {
            map = op == 0x38 ? 2 : 3;
            if ( ++i >= avail ) return -1;
            op = code[i];
            goto maps;
        }
        goto map1;
    }
    /* The one-byte map. */
    i++;
    modrm = xp_bit(xp_modrm1, op);
    if ( (op & 0xc7) == 0x04 && op < 0x40 ) imm = 1;                     /* alu al, imm8 */
    else if ( (op & 0xc7) == 0x05 && op < 0x40 ) imm = IMMZ; /* alu eax, immz */
    else switch ( op )
    {
    case 0x69: case 0x81: case 0xc7: case 0x68: case 0xa9: case 0xe8: case 0xe9:
        imm = IMMZ; break;
    case 0x6a: case 0x6b: case 0x80: case 0x83: case 0xa8: case 0xc0: case 0xc1: case 0xc6: case 0xcd:
    case 0xeb: case 0xe0: case 0xe1: case 0xe2: case 0xe3:
        imm = 1; break;
    case 0xe4: case 0xe5: case 0xe6: case 0xe7:
        imm = 1; flags |= XP_LEN_IO; break;
    case 0xec: case 0xed: case 0xee: case 0xef: case 0x6c: case 0x6d: case 0x6e: case 0x6f:
        flags |= XP_LEN_IO; break;
    case 0xc2: case 0xca: imm = 2; break;
    case 0xc8: imm = 3; break;
    case 0xa0: case 0xa1: case 0xa2: case 0xa3: imm = addr32 ? 4 : 8; break;
    case 0x06: case 0x07: case 0x0e: case 0x16: case 0x17: case 0x1e: case 0x1f: case 0x27: case 0x2f:
    case 0x37: case 0x3f: case 0x60: case 0x61: case 0x62: case 0x82: case 0x9a: case 0xce: case 0xd4:
    case 0xd5: case 0xd6: case 0xea:
        flags |= XP_LEN_BAD; modrm = 0; break;
    default:
        if ( op >= 0x70 && op <= 0x7f ) imm = 1;
        else if ( op >= 0xb0 && op <= 0xb7 ) imm = 1;
        else if ( op >= 0xb8 && op <= 0xbf ) imm = rexw ? 8 : opsize16 ? 2 : 4;
        break;
    }
    if ( op == 0xf6 || op == 0xf7 )
    {
        modrm = 1;
        if ( i >= avail ) return -1;
        if ( ((code[i] >> 3) & 7) < 2 ) imm = op == 0xf6 ? 1 : IMMZ;
    }
    goto operands;

 map1: /* the 0F map */
    i++;
    modrm = xp_bit(xp_modrm2, op);
    switch ( op )
    {
    case 0x0f: modrm = 1; imm = 1; break;  /* 3DNow!: the opcode is a suffix byte */
    case 0x70: case 0x71: case 0x72: case 0x73: case 0xa4: case 0xac: case 0xba: case 0xc2: case 0xc4:
    case 0xc5: case 0xc6:
        imm = 1; break;
    case 0x04: case 0x0a: case 0x0c: case 0x24: case 0x25: case 0x26: case 0x27: case 0x36: case 0x39:
    case 0x3b: case 0x3c: case 0x3d: case 0x3e: case 0x3f: case 0x7a: case 0x7b: case 0xa6: case 0xa7:
    case 0x78: case 0x79: case 0xff:
        flags |= XP_LEN_BAD; modrm = 0; break;
    default:
        if ( op >= 0x80 && op <= 0x8f ) imm = IMMZ;
        break;
    }
    if ( vex && op == 0x77 ) modrm = 0;
    goto operands;

 maps: /* 0F 38 and 0F 3A */
    i++;
    modrm = 1;
    imm = map == 3 ? 1 : 0;

 operands:
    if ( modrm )
    {
        n = xp_modrm_len(code + i, avail - i);
        if ( n < 0 ) return -1;
        i += n;
    }
    i += imm;
    if ( i > 15 ) return -1;
    if ( i > avail ) return -1;
    return i | flags;
}

/* Host address of guest virtual address va through the loaded page tables, or 0 (not present, not machine
   memory, or a superpage the walk does not follow). */
static const uint8_t *xp_walk(const struct xp_counter *c, uint64_t va)
{
    uint64_t table = c->cr3 & 0x000ffffffffff000ULL, entry = 0;
    int level;

    for ( level = 3; level >= 0; level-- )
    {
        if ( table + 4096 > c->mem_size )
            return 0;
        entry = ((const uint64_t *)(uintptr_t)(c->mem_base + table))[(va >> (12 + 9 * level)) & 511];
        if ( !(entry & 1) || (level && (entry & 0x80)) )
            return 0;
        table = entry & 0x000ffffffffff000ULL;
    }
    if ( table + 4096 > c->mem_size )
        return 0;
    return (const uint8_t *)(uintptr_t)(c->mem_base + table + (va & 4095));
}

/* Copy size bytes of guest code at va into buf; 0 if some page is not readable here. */
static int xp_read_code(const struct xp_counter *c, uint64_t va, uint8_t *buf, uint32_t size)
{
    while ( size )
    {
        const uint8_t *src = xp_walk(c, va);
        uint32_t chunk = 4096 - (uint32_t)(va & 4095), i;

        if ( !src )
            return 0;
        if ( chunk > size )
            chunk = size;
        for ( i = 0; i < chunk; i++ )
            buf[i] = src[i];
        buf += chunk;
        va += chunk;
        size -= chunk;
    }
    return 1;
}

/* Instructions of code[0..size) that start before offset upto (size: all), or -1 when the lengths do not
   add up to size. An instruction QEMU raises #UD for ends the walk, as it ends QEMU's block. */
int xp_count_insns(const uint8_t *code, uint32_t size, uint32_t upto, int *io)
{
    uint32_t off = 0;
    int n = 0, r;

    *io = 0;
    while ( off < size )
    {
        if ( off >= upto )
            return n;
        r = xp_insn_len(code + off, (int)(size - off));
        n++;
        if ( r < 0 )
            return -1;
        if ( r & XP_LEN_IO )
            *io = 1;
        if ( r & XP_LEN_BAD )
            return n;
        off += r & 0xff;
    }
    return off == size ? n : -1;
}

static void xp_classify(struct xp_counter *c, void *uc, uint64_t pc, uint32_t size, struct xp_block *e)
{
    struct { uint64_t pc; uint16_t icount; uint16_t size; } tb = { 0, 0, 0 };
    uint8_t code[4096 + 64];
    int n = -1, io = 0;
    uint64_t i;

    c->misses++;
    /* uc_ctl(UC_CTL_TB_REQUEST_CACHE): the block being entered is in QEMU's cache, so this only looks it up. */
    c->ctl(uc, (int)((3u << 30) | (2u << 26) | 8u), pc, &tb);
    if ( size <= 4096 && xp_read_code(c, pc, code, size) )
        n = xp_count_insns(code, size, size, &io);
    e->pc = pc;
    e->size = size;
    /* QEMU's cache answers for the block it would translate at pc now. A block it translated otherwise (one
       instruction, after a write to the page of the code being run) is another size: its count is the one decoded. */
    if ( tb.pc != pc || tb.size != size )
        tb.icount = n > 0 ? (uint16_t)n : 0;
    e->n = tb.icount;
    /* Code the walk cannot read (the hypervisor's trampoline), lengths that disagree with QEMU's count, and
       port I/O (whose hooks cannot stop a block) are counted per instruction. */
    e->precise = n <= 0 || n != (int)tb.icount || io ? XP_BLOCK_LAND : XP_BLOCK_COUNTED;
    for ( i = 0; i < c->nr_hooked && i < XP_HOOKED; i++ )
    {
        const struct xp_range *r = &c->hooked[i];

        if ( pc < r->pc + r->size && r->pc < pc + size )
        {
            e->precise = pc >= r->pc && pc + size <= r->pc + r->size ? XP_BLOCK_HOOKED : XP_BLOCK_CONFLICT;
            break;
        }
    }
}

/* Forget the cached blocks that overlap [pc, pc + size) (a range hooked or unhooked). */
void xp_cache_forget(struct xp_counter *c, uint64_t pc, uint64_t size)
{
    uint32_t i;

    for ( i = 0; i < 2 * XP_CACHE; i++ )
        if ( c->cache[i].pc && c->cache[i].pc < pc + size && pc < c->cache[i].pc + c->cache[i].size )
            c->cache[i].pc = 0;
}

void xp_block_hook(void *uc, uint64_t pc, uint32_t size, void *user_data)
{
    struct xp_counter *c = (struct xp_counter *)user_data;
    struct xp_block *e;

    if ( c->passive )
        return;
    if ( c->precise )
    {
        /* A per-instruction run: the code hook counts inside the block, and the run ends when it leaves. */
        if ( c->precise == XP_PRECISE_STEP ? pc != c->land_pc
                                           : pc < c->land_pc || pc + size > c->land_pc + c->land_size )
        {
            c->stopping = 1;
            c->stop(uc);
        }
        return;
    }
    if ( c->stopping )
    {
        c->stop(uc);
        return;
    }
    e = &c->cache[(pc >> 63 ? 0 : XP_CACHE) + ((pc ^ (pc >> 13)) & (XP_CACHE - 1))];
    if ( e->pc != pc || e->size != size )
        xp_classify(c, uc, pc, size, e);
    if ( e->precise == XP_BLOCK_HOOKED )
    {
        c->block_pc = XP_NONE; /* xp_range_hook counts each of its instructions: the count stays exact */
        return;
    }
    if ( e->precise || c->count + e->n > c->limit )
    {
        /* Stop before the block runs: the engine runs it per instruction, to land exactly on the budget. */
        c->land_pc = pc;
        c->land_size = size;
        c->land_whole = e->precise != XP_BLOCK_COUNTED;
        c->land_conflict = e->precise == XP_BLOCK_CONFLICT;
        c->stopping = 1;
        c->stop(uc);
        return;
    }
    c->block_pc = pc;
    c->block_base = c->count;
    c->block_size = size;
    c->count += e->n;
}

/* The exact count at rip inside the block last entered (started: the instruction at rip has begun), or -1
   when the count is exact already, rip is outside that block, or its instructions cannot be told. */
int64_t xp_count_at(struct xp_counter *c, uint64_t rip, int started)
{
    uint8_t code[4096 + 64];
    uint64_t pc = c->block_pc, size = c->block_size;
    int io, before;

    if ( pc == XP_NONE || rip < pc || rip > pc + size || size > 4096 || !xp_read_code(c, pc, code, (uint32_t)size) )
        return -1;
    before = xp_count_insns(code, (uint32_t)size, (uint32_t)(rip - pc), &io);
    if ( before < 0 )
        return -1;
    return (int64_t)(c->block_base + (uint64_t)before + (started ? 1 : 0));
}

/* Offset in block [pc, pc + size) of its instruction number index (from 0), or -1 if unknown. */
int64_t xp_insn_offset(struct xp_counter *c, uint64_t pc, uint32_t size, uint32_t index)
{
    uint8_t code[4096 + 64];
    uint32_t off = 0, i;
    int r;

    if ( size > 4096 || !xp_read_code(c, pc, code, size) )
        return -1;
    for ( i = 0; i < index; i++ )
    {
        if ( off >= size )
            return -1;
        r = xp_insn_len(code + off, (int)(size - off));
        if ( r < 0 || (r & XP_LEN_BAD) )
            return -1;
        off += r & 0xff;
    }
    return off < size ? (int64_t)off : -1;
}

/* Forget the cached blocks of the user half (a new page table maps other code there), or of both halves. */
void xp_cache_clear(struct xp_counter *c, int all)
{
    uint32_t i;

    for ( i = all ? 0 : XP_CACHE; i < 2 * XP_CACHE; i++ )
        c->cache[i].pc = 0;
}

void xp_count_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct xp_counter *c = (struct xp_counter *)user_data;

    (void)address;
    (void)size;
    if ( c->stopping || c->count >= c->limit )
    {
        c->stopping = 1;
        c->stop(uc);
        return;
    }
    c->count++;
}

/* The code hook of a hooked range: counts as xp_count_hook does, unless another hook counts: the vCPU counts per
   instruction (passive), or runs a landing or a single step (precise). */
void xp_range_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    const struct xp_counter *c = (const struct xp_counter *)user_data;

    if ( c->passive || c->precise )
        return;
    xp_count_hook(uc, address, size, user_data);
}

#define XP_NIN 9
#define XP_NOUT 6

struct xp_syscall {
    uint64_t regs_in[XP_NIN];   /* rax rdi rsi rdx r10 r8 rip rflags cs */
    uint64_t regs_out[XP_NOUT]; /* rax rcx r11 rsp rflags rip */
    int64_t nout;               /* set to 3 before the callback; the callback may change it */
    uint64_t addend;            /* length of the syscall instruction: 2 unless the callback says otherwise */
    uint64_t time_base;         /* guest time of the run's first instruction (ns) */
    uint64_t time_cap;          /* the run's time window end */
    uint64_t count_bias;        /* instructions of the counter that are not the guest's */
    uint64_t now;               /* out: min(time_base + count - count_bias, time_cap) at the syscall */
    struct xp_counter *counter; /* NULL: no time computation */
    int ids_in[XP_NIN];
    int ids_out[XP_NOUT];
    void *ptrs_in[XP_NIN];
    void *ptrs_out[XP_NOUT];
    xp_batch_fn read_batch;
    xp_batch_fn write_batch;
    xp_py_fn callback;
};

void xp_syscall_hook(void *uc, void *user_data)
{
    struct xp_syscall *s = (struct xp_syscall *)user_data;

    s->read_batch(uc, s->ids_in, s->ptrs_in, XP_NIN);
    s->nout = 3;
    s->addend = 2;
    if ( s->counter )
    {
        uint64_t t = s->time_base + s->counter->count - s->count_bias;

        s->now = t < s->time_cap ? t : s->time_cap;
    }
    s->callback();
    if ( s->nout == 3 )
    {
        /* Xen returns with sysret: rcx = the next RIP, r11 = RFLAGS; rax was set by the callback. */
        s->regs_out[1] = s->regs_in[6] + s->addend;
        s->regs_out[2] = s->regs_in[7];
    }
    if ( s->nout > 0 )
        s->write_batch(uc, s->ids_out, s->ptrs_out, (int)s->nout);
}
"""


#: ``XP_CACHE``: entries of each half of a counter's block cache.
BLOCK_CACHE = 8192
#: ``XP_NONE``: ``Counter.block_pc`` when the count is exact per instruction.
BLOCK_NONE = (1 << 64) - 1
#: ``XP_HOOKED``: the most ranges a counter keeps hooked.
HOOKED_RANGES = 8
#: ``XP_PRECISE_LANDING`` / ``XP_PRECISE_STEP``: ``Counter.precise`` during a landing, a single step.
PRECISE_LANDING = 1
PRECISE_STEP = 2


class Block(ctypes.Structure):
    """``struct xp_block``: one cached translation block."""

    _fields_ = [
        ("pc", ctypes.c_uint64),
        ("size", ctypes.c_uint32),
        ("n", ctypes.c_uint16),
        ("precise", ctypes.c_uint16),
    ]


class Range(ctypes.Structure):
    """``struct xp_range``: a hooked range of guest code."""

    _fields_ = [("pc", ctypes.c_uint64), ("size", ctypes.c_uint64)]


class Counter(ctypes.Structure):
    """``struct xp_counter``."""

    _fields_ = [
        ("count", ctypes.c_uint64),
        ("limit", ctypes.c_uint64),
        ("stopping", ctypes.c_uint64),
        ("stop", ctypes.c_void_p),
        ("block_pc", ctypes.c_uint64),
        ("block_base", ctypes.c_uint64),
        ("block_size", ctypes.c_uint64),
        ("land_pc", ctypes.c_uint64),
        ("land_size", ctypes.c_uint64),
        ("land_whole", ctypes.c_uint64),
        ("precise", ctypes.c_uint64),
        ("passive", ctypes.c_uint64),
        ("cr3", ctypes.c_uint64),
        ("mem_base", ctypes.c_uint64),
        ("mem_size", ctypes.c_uint64),
        ("misses", ctypes.c_uint64),
        ("ctl", ctypes.c_void_p),
        ("land_conflict", ctypes.c_uint64),
        ("nr_hooked", ctypes.c_uint64),
        ("hooked", Range * HOOKED_RANGES),
        ("cache", Block * (2 * BLOCK_CACHE)),
    ]


class SyscallFrame(ctypes.Structure):
    """``struct xp_syscall``: the registers shared between the shim and the engine's Python callback."""

    _fields_ = [
        ("regs_in", ctypes.c_uint64 * len(SYSCALL_IN)),
        ("regs_out", ctypes.c_uint64 * len(SYSCALL_OUT)),
        ("nout", ctypes.c_int64),
        ("addend", ctypes.c_uint64),
        ("time_base", ctypes.c_uint64),
        ("time_cap", ctypes.c_uint64),
        ("count_bias", ctypes.c_uint64),
        ("now", ctypes.c_uint64),
        ("counter", ctypes.c_void_p),
        ("ids_in", ctypes.c_int * len(SYSCALL_IN)),
        ("ids_out", ctypes.c_int * len(SYSCALL_OUT)),
        ("ptrs_in", ctypes.c_void_p * len(SYSCALL_IN)),
        ("ptrs_out", ctypes.c_void_p * len(SYSCALL_OUT)),
        ("read_batch", ctypes.c_void_p),
        ("write_batch", ctypes.c_void_p),
        ("callback", ctypes.c_void_p),
    ]


class NativeLib:
    """The loaded helper library.

    Attributes:
        path: the shared object.
        count_hook: address of ``xp_count_hook``.
        block_hook: address of ``xp_block_hook``.
        range_hook: address of ``xp_range_hook`` (the code hook of a hooked range).
        syscall_hook: address of ``xp_syscall_hook``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lib = lib = ctypes.CDLL(str(path))
        self.count_hook: int = ctypes.cast(lib.xp_count_hook, ctypes.c_void_p).value or 0
        self.block_hook: int = ctypes.cast(lib.xp_block_hook, ctypes.c_void_p).value or 0
        self.syscall_hook: int = ctypes.cast(lib.xp_syscall_hook, ctypes.c_void_p).value or 0
        self.range_hook: int = ctypes.cast(lib.xp_range_hook, ctypes.c_void_p).value or 0
        lib.xp_cache_forget.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
        lib.xp_cache_forget.restype = None
        #: ``cache_forget(counter address, pc, size)``: forget the cached blocks that overlap the range.
        self.cache_forget = lib.xp_cache_forget
        lib.xp_insn_len.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.xp_insn_len.restype = ctypes.c_int
        lib.xp_count_insns.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_int)]
        lib.xp_count_insns.restype = ctypes.c_int
        lib.xp_count_at.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int]
        lib.xp_count_at.restype = ctypes.c_int64
        #: ``count_at(counter address, rip, started)``: see :meth:`UnicornVcpu._count_at`; -1 for None.
        self.count_at = lib.xp_count_at
        lib.xp_insn_offset.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint32]
        lib.xp_insn_offset.restype = ctypes.c_int64
        #: ``insn_offset(counter address, pc, size, index)``: offset of instruction ``index`` of a block, or -1.
        self.insn_offset = lib.xp_insn_offset
        lib.xp_cache_clear.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.xp_cache_clear.restype = None
        self._io = ctypes.c_int()

    def insn_length(self, code: bytes) -> tuple[int, bool, bool]:
        """``(length, port_io, ends_block)`` of the instruction at the start of ``code`` as QEMU's TCG decodes
        it (``ends_block``: QEMU raises #UD for it); length -1 when ``code`` ends first or it is over 15 bytes."""
        r = self._lib.xp_insn_len(code, len(code))
        if r < 0:
            return -1, False, False
        return r & 0xFF, bool(r & 0x100), bool(r & 0x200)

    def count_insns(self, code: bytes, upto: int | None = None) -> int:
        """Instructions of ``code`` (a whole translation block) that start before offset ``upto`` (default: all);
        -1 if the lengths do not add up to the block."""
        size = len(code)
        return self._lib.xp_count_insns(code, size, size if upto is None else upto, ctypes.byref(self._io))

    def cache_clear(self, counter: Counter, everything: bool) -> None:
        """Forget ``counter``'s cached blocks of the user half, or of both halves."""
        self._lib.xp_cache_clear(ctypes.addressof(counter), int(everything))


_cached: NativeLib | None = None
_tried = False


def _cache_dirs() -> list[Path]:
    dirs = []
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        dirs.append(Path(xdg) / "xenpy")
    dirs.append(Path.home() / ".cache" / "xenpy")
    dirs.append(Path(tempfile.gettempdir()) / f"xenpy-{os.getuid() if hasattr(os, 'getuid') else 0}")
    return dirs


def _compiler() -> str | None:
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _build(target: Path, cc: str) -> bool:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "xenpy_native.c"
        out = Path(tmp) / target.name
        src.write_text(_SOURCE)
        proc = subprocess.run(
            [cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(src)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            return False
        os.replace(out, target)
    return True


def load_native() -> NativeLib | None:
    """Build (once, cached on disk) and load the helper library; None if no C compiler can build it."""
    global _cached, _tried
    if _tried:
        return _cached
    _tried = True
    digest = hashlib.sha256(_SOURCE.encode()).hexdigest()[:16]
    name = f"xenpy_native_{digest}.so"
    for directory in _cache_dirs():
        target = directory / name
        try:
            if not target.exists():
                cc = _compiler()
                if cc is None or not _build(target, cc):
                    continue
            _cached = NativeLib(target)
            return _cached
        except OSError:
            continue
    return None
