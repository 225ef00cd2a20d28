"""Hypercall dispatch: the handler registry, the dispatch table, and hooks (``xen/arch/x86/pv/hypercall.c``).

Handler modules (one per hypercall family, in :mod:`xenpy.core.handlers`) register functions with
:func:`hypercall_handler`::

    @hypercall_handler(Hypercall.vcpu_op)
    def do_vcpu_op(current: Vcpu, a1: int, a2: int, a3: int, a4: int, a5: int) -> int: ...

A handler receives the calling vCPU (``current``) and the five argument registers as raw unsigned 64-bit values
(rdi, rsi, rdx, r10, r8 on PV64); it converts them to its C types itself (:func:`c_int`, :func:`c_uint`, ...).
It returns an int (``-errno`` on error) or raises :class:`~xenpy.abi.errno.HypercallError`.

:class:`HypercallDispatcher` fills a table indexed by hypercall number from the registry and calls the handler:

* a number without a handler (or outside the table) returns -ENOSYS;
* ``HypercallError(errno)`` becomes ``-errno``; ``GuestFault`` (a bad guest pointer) becomes -EFAULT;
* any other exception is a hypervisor bug: it crashes **only the calling domain** (shutdown reason crash, the
  exception kept in ``domain.crash_exception``) and never propagates; the call returns -EFAULT, which no guest
  sees because the domain no longer runs;
* pre-hooks run before the handler and may replace the result (returning an int skips the handler);
  post-hooks see the result and may replace it (returning an int). With no hooks installed the dispatch path is
  a table lookup and one call.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from xenpy.abi.errno import HypercallError, XenErrno
from xenpy.core.pagetable import GuestFault

if TYPE_CHECKING:
    from xenpy.core.domain import Vcpu

#: ``handler(current, a1, a2, a3, a4, a5) -> result``.
HandlerFn = Callable[["Vcpu", int, int, int, int, int], int]
#: ``pre_hook(current, nr, args) -> None | result``: an int replaces the result and skips the handler.
PreHook = Callable[["Vcpu", int, tuple[int, ...]], "int | None"]
#: ``post_hook(current, nr, args, result) -> None | result``: an int replaces the result.
PostHook = Callable[["Vcpu", int, tuple[int, ...], int], "int | None"]

#: Size of the dispatch table (``NR_hypercalls``).
NR_HYPERCALLS = 64

_ENOSYS = -int(XenErrno.ENOSYS)
_EFAULT = -int(XenErrno.EFAULT)

_REGISTRY: dict[int, HandlerFn] = {}


def hypercall_handler(nr: int) -> Callable[[HandlerFn], HandlerFn]:
    """Register the decorated function as the handler of hypercall ``nr``.

    Raises:
        ValueError: ``nr`` is out of range or already has a handler.
    """
    nr = int(nr)
    if not 0 <= nr < NR_HYPERCALLS:
        raise ValueError(f"hypercall number {nr} outside the table (0..{NR_HYPERCALLS - 1})")

    def register(fn: HandlerFn) -> HandlerFn:
        if nr in _REGISTRY and _REGISTRY[nr] is not fn:
            raise ValueError(f"hypercall {nr} already handled by {_REGISTRY[nr].__qualname__}")
        _REGISTRY[nr] = fn
        return fn

    return register


def registered_handlers() -> dict[int, HandlerFn]:
    """A copy of the registry: hypercall number -> handler."""
    return dict(_REGISTRY)


# ------------------------------------------------------------------------------------------ C conversions

_U64 = (1 << 64) - 1


def c_int(value: int) -> int:
    """The low 32 bits of a register as a C ``int`` (sign-extended)."""
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value & 0x8000_0000 else value


def c_uint(value: int) -> int:
    """The low 32 bits of a register as a C ``unsigned int``."""
    return value & 0xFFFF_FFFF


def c_long(value: int) -> int:
    """A register as a C ``long`` / ``s_time_t`` (64-bit, sign-extended)."""
    value &= _U64
    return value - (1 << 64) if value >> 63 else value


def c_ulong(value: int) -> int:
    """A register as a C ``unsigned long``."""
    return value & _U64


# ------------------------------------------------------------------------------------------ dispatcher


class HypercallDispatcher:
    """The dispatch table of one hypervisor, filled from the registry, with pre/post hooks."""

    def __init__(self) -> None:
        self.table: list[HandlerFn | None] = [None] * NR_HYPERCALLS
        for nr, fn in _REGISTRY.items():
            self.table[nr] = fn
        self.pre_hooks: list[PreHook] = []
        self.post_hooks: list[PostHook] = []
        self.count = 0

    def set_handler(self, nr: int, fn: HandlerFn | None) -> None:
        """Replace the handler of ``nr`` in this dispatcher only (None: -ENOSYS)."""
        self.table[nr] = fn

    def add_pre_hook(self, hook: PreHook) -> Callable[[], None]:
        """Install a pre-hook; returns a function that removes it."""
        self.pre_hooks.append(hook)
        return lambda: self.pre_hooks.remove(hook) if hook in self.pre_hooks else None

    def add_post_hook(self, hook: PostHook) -> Callable[[], None]:
        """Install a post-hook; returns a function that removes it."""
        self.post_hooks.append(hook)
        return lambda: self.post_hooks.remove(hook) if hook in self.post_hooks else None

    def dispatch(self, current: Vcpu, nr: int, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
        """Run hypercall ``nr`` for ``current`` and return its result (a signed int, ``-errno`` on error)."""
        self.count += 1
        if self.pre_hooks or self.post_hooks:
            return self._dispatch_hooked(current, nr, (a1, a2, a3, a4, a5))
        handler = self.table[nr] if 0 <= nr < NR_HYPERCALLS else None
        if handler is None:
            return _ENOSYS
        try:
            return handler(current, a1, a2, a3, a4, a5)
        except HypercallError as err:
            return -int(err.errno)
        except GuestFault:
            return _EFAULT
        except Exception as exc:  # a hypervisor bug: crash only this domain
            return self._crash(current, nr, exc)

    def _dispatch_hooked(self, current: Vcpu, nr: int, args: tuple[int, int, int, int, int]) -> int:
        result: int | None = None
        for pre in list(self.pre_hooks):
            try:
                replaced = pre(current, nr, args)
            except Exception as exc:
                return self._crash(current, nr, exc)
            if replaced is not None:
                result = int(replaced)
                break
        if result is None:
            handler = self.table[nr] if 0 <= nr < NR_HYPERCALLS else None
            if handler is None:
                result = _ENOSYS
            else:
                try:
                    result = handler(current, *args)
                except HypercallError as err:
                    result = -int(err.errno)
                except GuestFault:
                    result = _EFAULT
                except Exception as exc:
                    result = self._crash(current, nr, exc)
        for post in list(self.post_hooks):
            try:
                replaced = post(current, nr, args, result)
            except Exception as exc:
                return self._crash(current, nr, exc)
            if replaced is not None:
                result = int(replaced)
        return result

    @staticmethod
    def _crash(current: Vcpu, nr: int, exc: Exception) -> int:
        d = current.domain
        where = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        d.crash(f"hypervisor error in hypercall {nr} from d{d.domid}v{current.vcpu_id}: {where}", exc)
        return _EFAULT
