"""C layout for construct: Xen's public structures, laid out as a C compiler lays them out.

construct does not pad like C. This module computes C's layout (each member at the next multiple of its
alignment, the whole rounded up to the largest alignment) and turns it into an ordinary construct ``Struct`` with
explicit ``Padding`` subcons. A :class:`CStruct` or :class:`CUnion` carries its C layout (``c_name``, ``c_align``,
``c_members``, ``offset_of``) and parses and builds as that construct object (``.parse``, ``.build``,
``.sizeof``), so the same single definition serves parsing, introspection (``xenpy abi show``), documentation,
the layout checks against gcc, and the fast ``struct.Struct`` views used on hot paths (:func:`fast_codec`).

The layout is plain Python; construct is imported, and a structure's construct object (``.construct``) built,
at the first ``parse`` or ``build`` (a run that only reads layouts and fast codecs never imports it).

Invariants:
    * ``sizeof()`` equals the C ``sizeof``; each member's offset equals C's ``offsetof``.
    * Padding subcons are anonymous: parsed containers hold only the C members.
    * Widths differ only through the primitive types of a :class:`Width` (``unsigned long``, handles, the
      alignment of ``uint64_t``), and through the branches Xen's headers themselves take on the architecture.
"""

from __future__ import annotations

import functools
import io
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CArray",
    "CField",
    "CPrim",
    "CStruct",
    "CType",
    "CUnion",
    "FastCodec",
    "LayoutRow",
    "Width",
    "fast_codec",
    "layout_rows",
]


@functools.cache
def _construct() -> Any:
    """The construct package, imported at the first parse or build."""
    import construct

    return construct


# struct-module code -> construct's little-endian integer of that code (char is a signed byte, as C's on x86).
_PRIM_SUBCONS = {"c": "Int8sl", "b": "Int8sl", "B": "Int8ul", "h": "Int16sl", "H": "Int16ul", "i": "Int32sl",
                 "I": "Int32ul", "q": "Int64sl", "Q": "Int64ul"}


@dataclass(frozen=True)
class CPrim:
    """A C scalar type: its spelling, size, alignment and struct-module code (``subcon``: its construct type)."""

    c_name: str
    size: int
    align: int
    fmt: str

    @property
    def subcon(self) -> Any:
        return getattr(_construct(), _PRIM_SUBCONS[self.fmt])


@dataclass(frozen=True)
class CArray:
    """A C array ``element[count]``."""

    element: CType
    count: int

    @property
    def size(self) -> int:
        return self.element.size * self.count

    @property
    def align(self) -> int:
        return self.element.align

    @property
    def c_name(self) -> str:
        return f"{self.element.c_name}[{self.count}]"

    @property
    def subcon(self) -> Any:
        cs = _construct()
        if _is_byte_string(self):
            return cs.Bytes(self.count)  # char and int8_t arrays are byte strings
        return cs.Array(self.count, _subcon_of(self.element))


@dataclass(frozen=True)
class CField:
    """One member of a struct or union: name, byte offset and type."""

    name: str
    offset: int
    c_type: CType

    @property
    def size(self) -> int:
        return self.c_type.size


class _CComposite:
    """Layout shared by :class:`CStruct` and :class:`CUnion`, and their construct object built at first use."""

    c_name: str
    c_members: tuple[CField, ...]
    c_align: int
    c_size: int
    _construct_object: Any = None

    @property
    def size(self) -> int:
        return self.c_size

    @property
    def align(self) -> int:
        return self.c_align

    def sizeof(self, **_context: Any) -> int:
        """C ``sizeof`` (construct's ``sizeof``, without building the construct object)."""
        return self.c_size

    @property
    def construct(self) -> Any:
        """The construct object that parses and builds this layout (built, and construct imported, once)."""
        if self._construct_object is None:
            self._construct_object = self._make_construct(_construct())
        return self._construct_object

    def _make_construct(self, cs: Any) -> Any:
        raise NotImplementedError

    def parse(self, data: bytes, **context: Any) -> Any:
        """construct's ``parse``: a ``Container`` of the C members."""
        return self.construct.parse(data, **context)

    def build(self, obj: Any, **context: Any) -> bytes:
        """construct's ``build``: the C bytes of ``obj`` (a dict or ``Container`` of the members)."""
        return self.construct.build(obj, **context)

    def member(self, name: str) -> CField:
        """Return the member called ``name`` (KeyError if there is none)."""
        for field in self.c_members:
            if field.name == name:
                return field
        raise KeyError(f"{self.c_name} has no member {name!r}")

    def offset_of(self, path: str) -> int:
        """C ``offsetof`` for a member path such as ``"arch.cr2"``, ``"time[2]"`` or ``"vcpu_info[3].time"``."""
        offset, _ = _resolve(self, path)
        return offset

    def type_of(self, path: str) -> CType:
        """The C type of the member at ``path``."""
        _, c_type = _resolve(self, path)
        return c_type


class CStruct(_CComposite):
    """A C struct: its layout, parsed and built as a construct ``Struct`` with C padding made explicit."""

    def __init__(self, c_name: str, *members: tuple[str, CType]) -> None:
        fields: list[CField] = []
        offset = 0
        align = 1
        for name, c_type in members:
            aligned = _round_up(offset, c_type.align)
            fields.append(CField(name, aligned, c_type))
            offset = aligned + c_type.size
            align = max(align, c_type.align)
        self.c_name = c_name
        self.c_members = tuple(fields)
        self.c_align = align
        self.c_size = _round_up(offset, align)

    def _make_construct(self, cs: Any) -> Any:
        subcons: list[Any] = []
        position = 0
        for field in self.c_members:
            if field.offset > position:
                subcons.append(cs.Padding(field.offset - position))
            subcons.append(field.name / _subcon_of(field.c_type))
            position = field.offset + field.c_type.size
        if self.c_size > position:
            subcons.append(cs.Padding(self.c_size - position))
        return cs.Struct(*subcons)

    def __repr__(self) -> str:
        return f"<CStruct {self.c_name} sizeof={self.c_size} align={self.c_align}>"


class CUnion(_CComposite):
    """A C union: its layout, parsed and built by a construct object of its own.

    Parsing reads every member from the same bytes. Building writes each member present in the given dict over a
    zeroed buffer of the union's size; members that overlap must agree byte for byte, so a parsed container builds
    back to the same bytes, while a container in which one member was edited and another still holds the old
    bytes is refused (``UnionError``) instead of losing the edit: build such a union from one member.
    """

    def __init__(self, c_name: str, *members: tuple[str, CType]) -> None:
        align = max(c_type.align for _, c_type in members)
        size = _round_up(max(c_type.size for _, c_type in members), align)
        self.c_name = c_name
        self.c_members = tuple(CField(name, 0, c_type) for name, c_type in members)
        self.c_align = align
        self.c_size = size

    def _make_construct(self, cs: Any) -> Any:
        return _union_construct_class()(self)

    def __repr__(self) -> str:
        return f"<CUnion {self.c_name} sizeof={self.c_size} align={self.c_align}>"


@functools.cache
def _union_construct_class() -> type:
    """The construct class of a :class:`CUnion` (defined once construct is imported)."""
    cs = _construct()

    class UnionConstruct(cs.Construct):  # type: ignore[misc, name-defined]
        def __init__(self, union: CUnion) -> None:
            super().__init__()
            self.c_name = union.c_name
            self.c_size = union.c_size
            self._member_subcons = tuple((f.name, _subcon_of(f.c_type)) for f in union.c_members)
            # The bytes each member represents (its padding excluded): only those are written and compared.
            self._member_cover = {f.name: _covered_bytes(f.c_type) for f in union.c_members}

        def _parse(self, stream, context, path):  # type: ignore[no-untyped-def]
            data = cs.stream_read(stream, self.c_size, path)
            result = cs.Container()
            for name, subcon in self._member_subcons:
                result[name] = subcon._parsereport(io.BytesIO(data), context, f"{path} -> {name}")
            return result

        def _build(self, obj, stream, context, path):  # type: ignore[no-untyped-def]
            buffer = bytearray(self.c_size)
            written = bytearray(self.c_size)
            given = [name for name, _ in self._member_subcons if name in obj]
            if not given:
                raise cs.UnionError(f"union {self.c_name}: give one of {[n for n, _ in self._member_subcons]}",
                                    path=path)
            for name, subcon in self._member_subcons:
                if name not in obj:
                    continue
                data = subcon.build(obj[name], **context)
                for index in self._member_cover[name]:
                    byte = data[index]
                    if written[index] and buffer[index] != byte:
                        raise cs.UnionError(
                            f"union {self.c_name}: members {given} disagree at byte {index}; build from one member",
                            path=path)
                    buffer[index] = byte
                    written[index] = 1
            cs.stream_write(stream, bytes(buffer), self.c_size, path)
            return obj

        def _sizeof(self, context, path):  # type: ignore[no-untyped-def]
            return self.c_size

    return UnionConstruct


CType = CPrim | CArray | CStruct | CUnion


def _covered_bytes(c_type: CType, base: int = 0) -> list[int]:
    """Offsets (from ``base``) of the bytes that ``c_type``'s members represent, padding excluded, sorted."""
    if isinstance(c_type, CPrim):
        return list(range(base, base + c_type.size))
    if isinstance(c_type, CArray):
        element = _covered_bytes(c_type.element)
        return [base + i * c_type.element.size + b for i in range(c_type.count) for b in element]
    covered: set[int] = set()
    for field in c_type.c_members:
        covered.update(_covered_bytes(field.c_type, base + field.offset))
    return sorted(covered)


def _subcon_of(c_type: CType) -> Any:
    if isinstance(c_type, CStruct | CUnion):
        return c_type.construct
    return c_type.subcon


def _is_byte_string(array: CArray) -> bool:
    return isinstance(array.element, CPrim) and array.element.fmt in ("c", "b")


def _round_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


_PATH_PART = re.compile(r"([A-Za-z_]\w*)((?:\[\d+\])*)")


def _resolve(composite: _CComposite, path: str) -> tuple[int, CType]:
    offset = 0
    c_type: CType = composite  # type: ignore[assignment]
    for part in path.split("."):
        match = _PATH_PART.fullmatch(part)
        if match is None or not isinstance(c_type, CStruct | CUnion):
            raise KeyError(f"bad member path {path!r} for {composite.c_name}")
        field = c_type.member(match.group(1))
        offset += field.offset
        c_type = field.c_type
        for index in re.findall(r"\[(\d+)\]", match.group(2)):
            if not isinstance(c_type, CArray) or int(index) >= c_type.count:
                raise KeyError(f"bad index in {path!r} for {composite.c_name}")
            offset += int(index) * c_type.element.size
            c_type = c_type.element
    return offset, c_type


class Width:
    """The primitive C types of one guest width (``Width(64)`` for x86_64, ``Width(32)`` for x86_32).

    On x86_32, 64-bit integers are 4-aligned inside structs (the i386 System V ABI); ``unsigned long``,
    ``xen_ulong_t``, ``xen_pfn_t`` and guest handles are 4 bytes. On x86_64 they are all 8 bytes, 8-aligned.
    """

    def __init__(self, bits: int) -> None:
        if bits not in (32, 64):
            raise ValueError(f"unsupported width {bits}")
        self.bits = bits
        self.arch = "x86_64" if bits == 64 else "x86_32"
        long_bytes = bits // 8
        ulong_fmt = "Q" if bits == 64 else "I"
        self.char = CPrim("char", 1, 1, "c")
        self.int8_t = CPrim("int8_t", 1, 1, "b")
        self.uint8_t = CPrim("uint8_t", 1, 1, "B")
        self.int16_t = CPrim("int16_t", 2, 2, "h")
        self.uint16_t = CPrim("uint16_t", 2, 2, "H")
        self.int32_t = CPrim("int32_t", 4, 4, "i")
        self.uint32_t = CPrim("uint32_t", 4, 4, "I")
        self.int = CPrim("int", 4, 4, "i")
        self.unsigned_int = CPrim("unsigned int", 4, 4, "I")
        self.int64_t = CPrim("int64_t", 8, long_bytes, "q")
        self.uint64_t = CPrim("uint64_t", 8, long_bytes, "Q")
        self.unsigned_long = CPrim("unsigned long", long_bytes, long_bytes, ulong_fmt)
        self.xen_ulong_t = CPrim("xen_ulong_t", long_bytes, long_bytes, ulong_fmt)
        self.xen_pfn_t = CPrim("xen_pfn_t", long_bytes, long_bytes, ulong_fmt)
        self.domid_t = CPrim("domid_t", 2, 2, "H")
        self.evtchn_port_t = CPrim("evtchn_port_t", 4, 4, "I")
        # A guest pointer, or XEN_GUEST_HANDLE(x): a pointer-sized guest virtual address.
        self.pointer = CPrim("void *", long_bytes, long_bytes, ulong_fmt)

    def handle(self, target: str) -> CPrim:
        """``XEN_GUEST_HANDLE(target)``: a guest virtual address of the pointer size."""
        return CPrim(f"XEN_GUEST_HANDLE({target})", self.pointer.size, self.pointer.align, self.pointer.fmt)

    @staticmethod
    def array(element: CType, count: int) -> CArray:
        """``element[count]``."""
        return CArray(element, count)


@dataclass(frozen=True)
class LayoutRow:
    """One row of a structure's flattened layout: member path, offset, size, C type and nesting depth."""

    path: str
    offset: int
    size: int
    c_type: str
    depth: int


def layout_rows(composite: CStruct | CUnion) -> Iterator[LayoutRow]:
    """Every member of ``composite`` in offset order, descending into nested structs and unions (not arrays)."""
    yield from _rows(composite, "", 0, 0)


def _rows(composite: CStruct | CUnion, prefix: str, base: int, depth: int) -> Iterator[LayoutRow]:
    for field in composite.c_members:
        path = prefix + field.name
        c_type = field.c_type
        type_name = (f"struct {c_type.c_name}" if isinstance(c_type, CStruct)
                     else f"union {c_type.c_name}" if isinstance(c_type, CUnion)
                     else _array_name(c_type) if isinstance(c_type, CArray) else c_type.c_name)
        yield LayoutRow(path, base + field.offset, c_type.size, type_name, depth)
        if isinstance(c_type, CStruct | CUnion):
            yield from _rows(c_type, path + ".", base + field.offset, depth + 1)


def _array_name(array: CArray) -> str:
    element = array.element
    inner = (f"struct {element.c_name}" if isinstance(element, CStruct)
             else f"union {element.c_name}" if isinstance(element, CUnion)
             else _array_name(element) if isinstance(element, CArray) else element.c_name)
    return f"{inner}[{array.count}]"


class FastCodec:
    """A ``struct.Struct`` view of a :class:`CStruct`, derived from its layout, for hot paths.

    Leaves are the scalar members (arrays of scalars flatten to ``name[i]``); char arrays are raw ``bytes``;
    padding is skipped. A union is raw ``bytes`` too, unless ``view`` names the member to read it as: ``view``
    maps the union's member path to one of its members (``{"arg1": "mfn"}``), whose leaves then stand for the
    union (``arg1.mfn``); the union's bytes the member does not cover are skipped. ``unpack`` returns a tuple in
    ``names`` order; ``pack`` takes the same.

    Raises:
        ValueError: a ``view`` path that is not a union of ``composite``, or a member the union does not have.
    """

    def __init__(self, composite: CStruct, view: Mapping[str, str] | None = None) -> None:
        leaves: list[tuple[int, str, str]] = []
        view = dict(view or {})
        _leaves(composite, "", 0, leaves, view)
        if view:
            raise ValueError(f"{composite.c_name} has no union {sorted(view)} to view")
        fmt = ["<"]
        names: list[str] = []
        position = 0
        for offset, code, name in leaves:
            if offset < position:
                raise ValueError(f"overlapping member {name} in {composite.c_name}")
            if offset > position:
                fmt.append(f"{offset - position}x")
            fmt.append(code)
            names.append(name)
            position = offset + struct.calcsize("<" + code)
        if composite.c_size > position:
            fmt.append(f"{composite.c_size - position}x")
        self.struct = struct.Struct("".join(fmt))
        self.names: tuple[str, ...] = tuple(names)
        self.size = self.struct.size
        self.unpack = self.struct.unpack
        self.unpack_from = self.struct.unpack_from
        self.pack = self.struct.pack
        self.pack_into = self.struct.pack_into


def _leaves(
    composite: CStruct | CUnion, prefix: str, base: int, out: list[tuple[int, str, str]], view: dict[str, str]
) -> None:
    for field in composite.c_members:
        _leaf(field.c_type, prefix + field.name, base + field.offset, out, view)


def _leaf(c_type: CType, name: str, offset: int, out: list[tuple[int, str, str]], view: dict[str, str]) -> None:
    if isinstance(c_type, CPrim):
        out.append((offset, "b" if c_type.fmt == "c" else c_type.fmt, name))
    elif isinstance(c_type, CStruct):
        _leaves(c_type, name + ".", offset, out, view)
    elif isinstance(c_type, CUnion):
        if name in view:
            try:
                member = c_type.member(view.pop(name))
            except KeyError as error:
                raise ValueError(str(error)) from None
            _leaf(member.c_type, f"{name}.{member.name}", offset + member.offset, out, view)
        else:
            out.append((offset, f"{c_type.size}s", name))
    elif _is_byte_string(c_type):
        out.append((offset, f"{c_type.size}s", name))
    else:
        for index in range(c_type.count):
            _leaf(c_type.element, f"{name}[{index}]", offset + index * c_type.element.size, out, view)


_codecs: dict[int, FastCodec] = {}
_viewed_codecs: dict[tuple[int, frozenset[tuple[str, str]]], FastCodec] = {}


def fast_codec(composite: CStruct, view: Mapping[str, str] | None = None) -> FastCodec:
    """The (cached) :class:`FastCodec` of ``composite``, its unions read through the members ``view`` names."""
    if not view:
        codec = _codecs.get(id(composite))
        if codec is None:
            codec = _codecs[id(composite)] = FastCodec(composite)
        return codec
    key = (id(composite), frozenset(view.items()))
    codec = _viewed_codecs.get(key)
    if codec is None:
        codec = _viewed_codecs[key] = FastCodec(composite, view)
    return codec
