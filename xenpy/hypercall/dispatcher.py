"""Hypercall dispatch: the table of one hypervisor, built from the registry (``xen/arch/x86/pv/hypercall.c``).

:class:`HypercallDispatcher` turns every :class:`~xenpy.hypercall.registry.Registration` into a table *entry*
``entry(ctx, a1, a2, a3, a4, a5) -> int`` that takes the five raw argument registers (unsigned 64-bit; rdi,
rsi, rdx, r10, r8 on PV64), converts the hypercall's arguments to their C types (the conversion is compiled
once per entry from the hypercall table) and calls the handler. Each entry maps what the handler raises:

* a number without a handler (or outside the table) returns -ENOSYS; so does a CPU-bound handler
  (``needs_cpu``) called without a CPU engine;
* ``HypercallError(errno)`` becomes ``-errno``; ``GuestFault`` (a bad guest pointer) becomes -EFAULT;
* any other exception is a hypervisor bug: it crashes **only the calling domain** (shutdown reason crash, the
  exception kept in ``domain.crash_exception``) and never propagates; the call returns -EFAULT, which no guest
  sees because the domain no longer runs.

:meth:`HypercallDispatcher.dispatch` runs one hypercall: pre-hooks (``pre(vcpu, nr, args)``; an int replaces the
result and skips the handler), the entry, post-hooks (``post(vcpu, nr, args, result)``; an int replaces the
result). With no hooks installed it is a count, a table lookup and the entry; a CPU engine may call
:attr:`HypercallDispatcher.table` directly while :attr:`HypercallDispatcher.hooked` is False (and then counts
the call itself).
"""

from __future__ import annotations

import functools
import traceback
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from xenpy.abi.errno import HypercallError, XenErrno
from xenpy.abi.generated.hypercalls import HYPERCALLS
from xenpy.core.pagetable import GuestFault
from xenpy.hypercall.context import HypercallContext
from xenpy.hypercall.registry import (
    NR_ARGS,
    NR_HYPERCALLS,
    UNHANDLED_EFFECTS,
    Effect,
    HandlerFn,
    Registration,
    decode_expression,
    registrations,
)

if TYPE_CHECKING:
    from xenpy.core.domain import Vcpu
    from xenpy.core.system import System

#: ``entry(ctx, a1, a2, a3, a4, a5) -> result``: one slot of the dispatch table.
Entry = Callable[[HypercallContext, int, int, int, int, int], int]
#: ``pre_hook(vcpu, nr, args) -> None | result``: an int replaces the result and skips the handler.
PreHook = Callable[["Vcpu", int, tuple[int, ...]], "int | None"]
#: ``post_hook(vcpu, nr, args, result) -> None | result``: an int replaces the result.
PostHook = Callable[["Vcpu", int, tuple[int, ...], int], "int | None"]

_ENOSYS = -int(XenErrno.ENOSYS)
_EFAULT = -int(XenErrno.EFAULT)
_REGS = tuple(f"a{i + 1}" for i in range(NR_ARGS))


def crash_caller(ctx: HypercallContext, nr: int, exc: BaseException) -> int:
    """A hypervisor bug in hypercall ``nr``: crash the calling domain with a message; returns -EFAULT."""
    d = ctx.domain
    where = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    d.crash(f"hypervisor error in hypercall {nr} from d{d.domid}v{ctx.vcpu.vcpu_id}: {where}", exc)
    return _EFAULT


def _enosys(ctx: HypercallContext, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    return _ENOSYS


def _call(fn: str, c_types: tuple[str, ...], *, compat: bool) -> str:
    """Source of the call ``fn(ctx, <the registers decoded to c_types>)``."""
    args = "".join(f", {decode_expression(t, r, compat=compat)}" for t, r in zip(c_types, _REGS, strict=False))
    return f"{fn}(ctx{args})"


@functools.lru_cache(maxsize=512)
def make_entry(reg: Registration) -> Entry:
    """The table entry of ``reg``: decode the C arguments, call the handler, map its exceptions.

    An entry depends on the registration only, so it is compiled once and shared by every dispatcher.
    """
    call = f"        return {_call('fn', reg.c_types, compat=False)}\n"
    if reg.compat_fn is not None:
        compat_call = _call("compat_fn", reg.compat_c_types, compat=True)
        call = f"        if ctx.domain.is_compat:\n            return {compat_call}\n{call}"
    guard = "    if ctx.cpu is None:\n        return ENOSYS\n" if reg.needs_cpu else ""
    source = (
        f"def entry(ctx, a1, a2, a3, a4, a5):\n{guard}"
        f"    try:\n{call}"
        "    except HypercallError as err:\n        return -int(err.errno)\n"
        "    except GuestFault:\n        return EFAULT\n"
        "    except Exception as exc:\n        return crash(ctx, NR, exc)\n"
    )
    scope = {
        "fn": reg.fn, "compat_fn": reg.compat_fn, "HypercallError": HypercallError, "GuestFault": GuestFault,
        "crash": crash_caller, "NR": reg.nr, "ENOSYS": _ENOSYS, "EFAULT": _EFAULT,
    }  # fmt: skip
    exec(compile(source, f"<hypercall {reg.nr} entry: {reg.fn.__qualname__}>", "exec"), scope)
    entry = scope["entry"]
    entry.__qualname__ = entry.__name__ = f"entry_{reg.fn.__name__}"
    entry.__doc__ = f"Table entry of hypercall {reg.nr}: decode ({', '.join(reg.c_types)}), call the handler."
    return entry  # type: ignore[no-any-return]


class HypercallDispatcher:
    """The dispatch table of one hypervisor, filled from the registry, with pre/post hooks.

    Attributes:
        table: one entry per hypercall number (``NR_hypercalls``), -ENOSYS where there is no handler.
        pre_hooks / post_hooks: installed hooks, in order.
        hooked: True while any hook is installed (the engine's direct table path must not be used).
        count: hypercalls dispatched (per vCPU: ``context(vcpu).hypercalls``).
    """

    def __init__(self, system: System) -> None:
        self.system = system
        self.table: list[Entry] = [_enosys] * NR_HYPERCALLS
        for nr, reg in registrations().items():
            self.table[nr] = self._compile_on_first_call(nr, reg)
        self.pre_hooks: list[PreHook] = []
        self.post_hooks: list[PostHook] = []
        self.hooked = False
        self.count = 0
        self._contexts: weakref.WeakKeyDictionary[Vcpu, HypercallContext] = weakref.WeakKeyDictionary()

    def _compile_on_first_call(self, nr: int, reg: Registration) -> Entry:
        """A slot that compiles ``reg``'s entry when first called and puts it in its place (a run pays only
        for the hypercalls its guest makes)."""
        table = self.table

        def first_call(ctx: HypercallContext, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
            entry = make_entry(reg)
            if table[nr] is first_call:
                table[nr] = entry
            return entry(ctx, a1, a2, a3, a4, a5)

        first_call.__qualname__ = first_call.__name__ = f"first_call_{reg.fn.__name__}"
        return first_call

    def context(self, vcpu: Vcpu) -> HypercallContext:
        """The hypercall context of ``vcpu`` (created on first use, then the same object)."""
        ctx = self._contexts.get(vcpu)
        if ctx is None:
            ctx = self._contexts[vcpu] = HypercallContext(vcpu, self.system, self.dispatch)
        return ctx

    def set_handler(self, nr: int, fn: HandlerFn | None, *, effects: Effect = UNHANDLED_EFFECTS) -> None:
        """Replace the handler of ``nr`` in this dispatcher only (None: -ENOSYS), for tests and experiments.

        ``fn(ctx, *c_arguments)`` gets the arguments decoded from the hypercall table's C types (five
        ``unsigned long`` for a number the table does not have) and its exceptions mapped as a registered
        handler's are. ``effects`` is informational here: engines read the registry's declaration.
        """
        if fn is None:
            self.table[nr] = _enosys
            return
        defn = HYPERCALLS.get(nr)
        c_types = tuple(a.c_type for a in defn.args) if defn is not None else ("unsigned long",) * NR_ARGS
        self.table[nr] = make_entry(Registration(nr, fn, Effect(effects), c_types))

    def set_entry(self, nr: int, entry: Entry | None) -> None:
        """Replace the raw table entry of ``nr`` (``entry(ctx, a1..a5)``, no decoding; None: -ENOSYS)."""
        self.table[nr] = entry if entry is not None else _enosys

    def add_pre_hook(self, hook: PreHook) -> Callable[[], None]:
        """Install a pre-hook; returns a function that removes it."""
        self.pre_hooks.append(hook)
        self.hooked = True
        return lambda: self._remove(self.pre_hooks, hook)

    def add_post_hook(self, hook: PostHook) -> Callable[[], None]:
        """Install a post-hook; returns a function that removes it."""
        self.post_hooks.append(hook)
        self.hooked = True
        return lambda: self._remove(self.post_hooks, hook)

    def _remove(self, hooks: list, hook: object) -> None:
        if hook in hooks:
            hooks.remove(hook)
        self.hooked = bool(self.pre_hooks or self.post_hooks)

    def dispatch(self, ctx: HypercallContext, nr: int, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0,
                 a5: int = 0) -> int:  # fmt: skip
        """Run hypercall ``nr`` for ``ctx.vcpu`` with raw registers ``a1..a5`` (each ``< 2**64``); returns the
        signed result (``-errno`` on error)."""
        self.count += 1
        ctx.hypercalls += 1
        if self.hooked:
            return self._dispatch_hooked(ctx, nr, (a1, a2, a3, a4, a5))
        if 0 <= nr < NR_HYPERCALLS:
            return self.table[nr](ctx, a1, a2, a3, a4, a5)
        return _ENOSYS

    def _dispatch_hooked(self, ctx: HypercallContext, nr: int, args: tuple[int, int, int, int, int]) -> int:
        vcpu = ctx.vcpu
        result: int | None = None
        for pre in list(self.pre_hooks):
            try:
                replaced = pre(vcpu, nr, args)
            except Exception as exc:
                return crash_caller(ctx, nr, exc)
            if replaced is not None:
                result = int(replaced)
                break
        if result is None:
            result = self.table[nr](ctx, *args) if 0 <= nr < NR_HYPERCALLS else _ENOSYS
        for post in list(self.post_hooks):
            try:
                replaced = post(vcpu, nr, args, result)
            except Exception as exc:
                return crash_caller(ctx, nr, exc)
            if replaced is not None:
                result = int(replaced)
        return result
