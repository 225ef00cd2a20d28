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

struct xp_counter {
    uint64_t count;     /* instructions started (and not stopped) since reset */
    uint64_t limit;     /* stop before instruction number limit + 1 */
    uint64_t stopping;  /* set by the engine when it calls uc_emu_stop */
    xp_stop_fn stop;
};

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


class Counter(ctypes.Structure):
    """``struct xp_counter``."""

    _fields_ = [
        ("count", ctypes.c_uint64),
        ("limit", ctypes.c_uint64),
        ("stopping", ctypes.c_uint64),
        ("stop", ctypes.c_void_p),
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
        syscall_hook: address of ``xp_syscall_hook``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lib = ctypes.CDLL(str(path))
        self.count_hook: int = ctypes.cast(self._lib.xp_count_hook, ctypes.c_void_p).value or 0
        self.syscall_hook: int = ctypes.cast(self._lib.xp_syscall_hook, ctypes.c_void_p).value or 0


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
