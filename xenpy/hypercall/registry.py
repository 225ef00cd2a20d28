"""The handler registry: which function answers each hypercall, with what arguments and what effects.

Handler modules (one per hypercall family, in :mod:`xenpy.hypercall.handlers`) register functions with
:func:`hypercall_handler`::

    @hypercall_handler(Hypercall.vcpu_op, effects=Effect.CLOCK | Effect.VCPU_STATE)
    def do_vcpu_op(ctx: HypercallContext, cmd: int, vcpuid: int, arg: int) -> int: ...

Contract of a handler:

* It receives the :class:`~xenpy.hypercall.context.HypercallContext` of the calling vCPU and the hypercall's
  C arguments, **decoded once** from the C types of the hypercall table (``hypercalls/*.toml``, via
  :data:`~xenpy.abi.generated.hypercalls.HYPERCALLS`): ``int`` and ``long`` arrive sign-extended, unsigned
  types truncated to their width, pointers as the 64-bit guest address. A handler never masks a register.
* It returns an int (``-errno`` on error) or raises :class:`~xenpy.abi.errno.HypercallError`; a
  :class:`~xenpy.core.pagetable.GuestFault` from a guest copy becomes -EFAULT (see
  :mod:`xenpy.hypercall.dispatcher`).
* It declares its :class:`Effect` flags, the machine state beyond its result that it may read or change, so
  that a CPU engine knows what to re-synchronise after the call instead of guessing.

Where a PV32 guest passes other arguments (the table's ``compat_args``, Xen's ``compat_*`` entry points), a
second function registered with :func:`compat_handler` receives them, decoded with PV32 widths::

    @compat_handler(Hypercall.set_timer_op)
    def compat_set_timer_op(ctx: HypercallContext, lo: int, hi: int) -> int: ...
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import IntFlag
from types import MappingProxyType

from xenpy.abi.generated.hypercalls import HYPERCALLS

#: Size of the dispatch table (``NR_hypercalls``).
NR_HYPERCALLS = 64
#: Guest-visible argument registers of a hypercall (PV64: rdi, rsi, rdx, r10, r8).
NR_ARGS = 5

#: ``handler(ctx, *c_arguments) -> result``.
HandlerFn = Callable[..., int]


class Effect(IntFlag):
    """What a hypercall may do besides computing its result; an engine acts on these after the call.

    Attributes:
        CLOCK: reads system time (the engine brings the clock up to the guest's time first).
        PAGE_TABLES: may change page tables, page types, the caller's cr3 or request a TLB flush.
        GDT: may change the caller's GDT frames.
        CR0: may change the caller's CR0.TS.
        VCPU_STATE: may take vCPUs down, shut the domain down or change what a vCPU runs with (the engine
            checks whether the caller may keep running).
    """

    NONE = 0
    CLOCK = 1
    PAGE_TABLES = 2
    GDT = 4
    CR0 = 8
    VCPU_STATE = 16

    @classmethod
    def resync(cls) -> Effect:
        """The effects after which an engine re-synchronises its CPU state and re-checks the caller."""
        return cls.PAGE_TABLES | cls.GDT | cls.CR0 | cls.VCPU_STATE


#: What an engine assumes of a number without a handler (-ENOSYS): it may read the clock, nothing else.
UNHANDLED_EFFECTS = Effect.CLOCK


@dataclass(frozen=True)
class Registration:
    """One registered handler.

    Attributes:
        nr: the hypercall number.
        fn: the handler.
        effects: its declared :class:`Effect` flags.
        c_types: the C types of its arguments, in register order (from the hypercall table).
        needs_cpu: the handler acts on the live CPU (``ctx.cpu``); without a CPU engine it returns -ENOSYS.
        compat_fn: the handler of a PV32 caller, where the table gives ``compat_args``; None: ``fn`` serves
            both widths.
        compat_c_types: the C types of ``compat_fn``'s arguments (PV32 widths).
    """

    nr: int
    fn: HandlerFn
    effects: Effect
    c_types: tuple[str, ...]
    needs_cpu: bool = False
    compat_fn: HandlerFn | None = None
    compat_c_types: tuple[str, ...] = ()


_REGISTRY: dict[int, Registration] = {}


def hypercall_handler(nr: int, *, effects: Effect, needs_cpu: bool = False) -> Callable[[HandlerFn], HandlerFn]:
    """Register the decorated function as the handler of hypercall ``nr`` with its ``effects``.

    Raises:
        ValueError: ``nr`` is out of range, not in the hypercall table, or already has a handler.
    """
    nr = int(nr)
    if not 0 <= nr < NR_HYPERCALLS:
        raise ValueError(f"hypercall number {nr} outside the table (0..{NR_HYPERCALLS - 1})")
    if nr not in HYPERCALLS:
        raise ValueError(f"hypercall number {nr} is not in the hypercall table")
    c_types = tuple(arg.c_type for arg in HYPERCALLS[nr].args)

    def register(fn: HandlerFn) -> HandlerFn:
        old = _REGISTRY.get(nr)
        if old is not None and old.fn is not fn:
            raise ValueError(f"hypercall {nr} already handled by {old.fn.__qualname__}")
        _REGISTRY[nr] = Registration(nr, fn, Effect(effects), c_types, needs_cpu)
        return fn

    return register


def compat_handler(nr: int) -> Callable[[HandlerFn], HandlerFn]:
    """Register the decorated function as the PV32 form of hypercall ``nr``, with the effects of its handler.

    It receives the table's ``compat_args`` of ``nr``, decoded with PV32 widths (:func:`decode` with
    ``compat=True``), whenever the calling domain is compat.

    Raises:
        ValueError: ``nr`` has no handler yet, or the table gives no ``compat_args`` for it.
    """
    nr = int(nr)
    native = _REGISTRY.get(nr)
    if native is None:
        raise ValueError(f"hypercall {nr}: register its handler before its PV32 form")
    compat_args = HYPERCALLS[nr].compat_args
    if compat_args is None:
        raise ValueError(f"hypercall {nr}: the table gives no compat_args")

    def register(fn: HandlerFn) -> HandlerFn:
        _REGISTRY[nr] = replace(native, compat_fn=fn, compat_c_types=tuple(a.c_type for a in compat_args))
        return fn

    return register


def registrations() -> Mapping[int, Registration]:
    """Every registration, by hypercall number (read-only)."""
    return MappingProxyType(_REGISTRY)


def registered_handlers() -> dict[int, HandlerFn]:
    """A copy of the registry: hypercall number -> handler."""
    return {nr: reg.fn for nr, reg in _REGISTRY.items()}


def effects_of(nr: int) -> Effect:
    """The declared effects of hypercall ``nr`` (:data:`UNHANDLED_EFFECTS` without a handler)."""
    reg = _REGISTRY.get(nr)
    return reg.effects if reg is not None else UNHANDLED_EFFECTS


# ------------------------------------------------------------------------------------------ C conversions

_U64 = (1 << 64) - 1

#: C scalar type -> (bits, signed) of the value a PV64 register carries. Pointers (``... *``) are 64-bit
#: unsigned guest addresses. Xen's own typedefs are spelled as the hypercall table spells them.
C_SCALAR_TYPES: Mapping[str, tuple[int, bool]] = MappingProxyType(
    {
        "int": (32, True),
        "unsigned int": (32, False),
        "uint32_t": (32, False),
        "long": (64, True),
        "s_time_t": (64, True),
        "unsigned long": (64, False),
        "xen_ulong_t": (64, False),
        "uint64_t": (64, False),
        "seg_desc_t": (64, False),
        "domid_t": (16, False),
        "int32_t": (32, True),
    }
)
#: The widths that differ for a PV32 caller: ``long``, ``unsigned long`` and pointers are 32 bits there.
COMPAT_C_SCALAR_TYPES: Mapping[str, tuple[int, bool]] = MappingProxyType(
    {**C_SCALAR_TYPES, "long": (32, True), "unsigned long": (32, False), "xen_ulong_t": (32, False)}
)


def c_width(c_type: str, *, compat: bool = False) -> tuple[int, bool]:
    """``(bits, signed)`` of an argument of C type ``c_type`` as the handler receives it (``compat``: from
    a PV32 caller).

    Raises:
        ValueError: a scalar type the table does not know.
    """
    if c_type.endswith("*"):
        return (32 if compat else 64), False
    try:
        return (COMPAT_C_SCALAR_TYPES if compat else C_SCALAR_TYPES)[c_type]
    except KeyError:
        raise ValueError(f"no register conversion for C type {c_type!r}") from None


def decode_expression(c_type: str, register: str, *, compat: bool = False) -> str:
    """A Python expression converting the raw 64-bit ``register`` variable to ``c_type``."""
    bits, signed = c_width(c_type, compat=compat)
    mask = (1 << bits) - 1
    if signed:
        sign = 1 << (bits - 1)
        return f"((({register}) + {sign:#x}) & {mask:#x}) - {sign:#x}"
    if bits == 64:
        return register
    return f"({register}) & {mask:#x}"


def decode(c_type: str, value: int, *, compat: bool = False) -> int:
    """``value`` (a register, taken modulo 2**64) as C type ``c_type`` (the conversion the dispatcher does;
    ``compat``: for a PV32 caller)."""
    bits, signed = c_width(c_type, compat=compat)
    value &= (1 << bits) - 1
    if signed and value >> (bits - 1):
        value -= 1 << bits
    return value


def c_int(value: int) -> int:
    """The low 32 bits of ``value`` as a C ``int`` (for values a handler reads from guest memory)."""
    return ((value + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000


def c_uint(value: int) -> int:
    """The low 32 bits of ``value`` as a C ``unsigned int``."""
    return value & 0xFFFF_FFFF


def c_long(value: int) -> int:
    """``value`` modulo 2**64 as a C ``long`` / ``s_time_t``."""
    return ((value + (1 << 63)) & _U64) - (1 << 63)
