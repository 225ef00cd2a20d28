#!/usr/bin/env python3
"""Generate xenpy's hypercall files from the TOML tables in ``hypercalls/`` (docs/architecture.md, the hypercall table).

The tables are the single source of truth for hypercall numbers, C prototypes, sub-op values, argument
structs and expected errors. This script turns them into:

* ``xenpy/abi/generated/__init__.py`` and ``xenpy/abi/generated/hypercalls.py``: IntEnums, module-level
  aliases and the frozen ``HYPERCALLS`` table for the Python side;
* ``guest/include/generated/hypercalls.h``: ``__HYPERVISOR_*`` numbers, sub-op constants and PV64 call
  wrappers through the hypercall page for the guest kernels;
* ``docs/reference/hypercalls.rst``: the Sphinx reference page;
* ``xenpy/abi/generated/profiles.py`` and ``docs/reference/profiles.rst``: the Xen version profiles of
  ``profiles.toml`` (the record type, one record per profile, and their reference page).
* ``guest/include/generated/profiles.h``: the same profiles for the in-guest tests (one C record each).

Usage::

    python3 hypercalls/generate.py              # write every output under the repository root
    python3 hypercalls/generate.py --check      # exit 1 if an output on disk differs (names the file)
    python3 hypercalls/generate.py --root DIR   # write (or --check) the outputs under DIR instead

Standard library only (``tomllib``). The output depends on nothing but the tables: no timestamps, no
environment, a fixed order (hypercalls by number, sub-ops by value). Invalid tables stop the generator with
a message naming the file and the entry.
"""

from __future__ import annotations

import argparse
import difflib
import keyword
import re
import sys
import textwrap
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
MASTER_TABLE = "hypercalls.toml"
PROFILES_TABLE = "profiles.toml"
GENERATOR = "hypercalls/generate.py"

OUT_PY_INIT = Path("xenpy/abi/generated/__init__.py")
OUT_PY = Path("xenpy/abi/generated/hypercalls.py")
OUT_H = Path("guest/include/generated/hypercalls.h")
OUT_RST = Path("docs/reference/hypercalls.rst")
OUT_PROFILES_PY = Path("xenpy/abi/generated/profiles.py")
OUT_PROFILES_RST = Path("docs/reference/profiles.rst")
OUT_PROFILES_H = Path("guest/include/generated/profiles.h")

DIRECTIONS = ("in", "out", "inout")
WHO_VALUES = ("self", "any")
MAX_ARGS = 5
PY_LINE = 110  # the repository's ruff line length
C_LINE = 110


class TableError(Exception):
    """The TOML tables are inconsistent; the message names the file and the entry."""


# --------------------------------------------------------------------------------------------------------
# The model, as read from the tables.
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    name: str
    c_type: str
    direction: str

    @property
    def is_pointer(self) -> bool:
        return self.c_type.endswith("*")


@dataclass(frozen=True)
class SubOpEntry:
    name: str
    value: int
    arg_struct: str | None
    who: str | None
    profile_flag: str | None
    internal: bool
    errors: dict[str, tuple[str, ...]]  # full lists: errors_before_dispatch + the sub-op's own
    doc: str


@dataclass(frozen=True)
class Family:
    source: str
    hypercall: str
    enum: str
    prefix: str
    header: str
    spec: str | None
    unknown_errno: str | None
    has_errors: bool
    errors_before_dispatch: dict[str, tuple[str, ...]]
    subops: tuple[SubOpEntry, ...]


@dataclass(frozen=True)
class HypercallEntry:
    number: int
    name: str
    args: tuple[Arg, ...]
    compat_args: tuple[Arg, ...] | None
    defined: bool
    enosys: bool
    removed_in: str | None
    internal: bool
    wrapper: bool
    wrapper_reason: str | None
    doc: str
    family: Family | None

    @property
    def has_wrapper(self) -> bool:
        return self.defined and self.wrapper and not self.internal


PROFILE_FIELD_TYPES = ("bool", "int", "str", "version", "errno", "optional_errno", "bits")


@dataclass(frozen=True)
class ProfileField:
    name: str
    type: str
    doc: str
    default: object  # ... when the field has no default


@dataclass(frozen=True)
class Profile:
    name: str
    summary: str
    values: dict[str, object]  # field name -> value as the TOML gives it (defaults filled in)


@dataclass(frozen=True)
class ProfileTable:
    fields: tuple[ProfileField, ...]
    profiles: tuple[Profile, ...]


@dataclass(frozen=True)
class Table:
    arg_registers: tuple[str, ...]
    compat_arg_registers: tuple[str, ...]
    number_register: str
    result_register: str
    clobbered_registers: tuple[str, ...]
    stub_size: int
    stub_count: int
    arch_first: int
    arch_count: int
    profiles: dict[str, str]  # name -> summary, newest first (from profiles.toml)
    guest_c_types: dict[str, str]
    hypercalls: tuple[HypercallEntry, ...]
    profile_table: ProfileTable

    @property
    def families(self) -> tuple[Family, ...]:
        return tuple(h.family for h in self.hypercalls if h.family is not None)


# --------------------------------------------------------------------------------------------------------
# Loading and validation.
# --------------------------------------------------------------------------------------------------------

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CAMEL = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_ERRNO = re.compile(r"^E[A-Z0-9]+$")
_VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _version_key(version: str) -> tuple[int, ...]:
    """Sort key of a release or profile name; ``head`` is newer than every release."""
    if version == "head":
        return (sys.maxsize,)
    return tuple(int(part) for part in version.split("."))


def _require(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise TableError(f"{where}: {message}")


def _get(entry: dict, key: str, kind: type | tuple[type, ...], where: str, default: object = ...) -> object:
    if key not in entry:
        _require(default is not ..., where, f"missing key {key!r}")
        return default
    value = entry[key]
    _require(
        isinstance(value, kind) and not (kind is int and isinstance(value, bool)),
        where,
        f"{key!r} must be of type {getattr(kind, '__name__', kind)}, not {type(value).__name__}",
    )
    return value


def _check_keys(entry: dict, allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(entry) - set(allowed))
    _require(not unknown, where, f"unknown key(s) {', '.join(unknown)}")


def _identifier(name: str, where: str) -> str:
    _require(
        bool(_IDENT.match(name)) and not keyword.iskeyword(name), where, f"{name!r} is not an identifier"
    )
    return name


def _one_paragraph(text: str, where: str) -> str:
    doc = " ".join(text.split())
    _require(bool(doc), where, "doc must not be empty")
    _require(doc.isascii(), where, "doc must be ASCII")
    return doc


def _load_toml(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise TableError(f"{path.name}: {exc}") from None


def _load_errors(raw: object, profiles: Sequence[str], where: str) -> dict[str, tuple[str, ...]]:
    _require(isinstance(raw, dict), where, "errors must be a table of profile = [errno, ...]")
    assert isinstance(raw, dict)
    _require(
        list(raw) == list(profiles),
        where,
        f"errors must list the profiles {', '.join(profiles)} in that order, not {', '.join(raw)}",
    )
    result: dict[str, tuple[str, ...]] = {}
    for profile, names in raw.items():
        _require(
            isinstance(names, list) and all(isinstance(n, str) for n in names),
            where,
            f"errors.{profile} must be a list of errno names",
        )
        for name in names:
            _require(bool(_ERRNO.match(name)), where, f"errors.{profile}: {name!r} is not an errno name")
        _require(len(set(names)) == len(names), where, f"errors.{profile} lists an errno twice")
        result[profile] = tuple(names)
    return result


def _merge(first: tuple[str, ...], then: tuple[str, ...]) -> tuple[str, ...]:
    merged = list(first)
    merged.extend(name for name in then if name not in merged)
    return tuple(merged)


def _load_family(path: Path, profile_table: ProfileTable) -> Family:
    profiles = [p.name for p in profile_table.profiles]
    bool_fields = {f.name for f in profile_table.fields if f.type == "bool"}
    flag_values = {p.name: p.values for p in profile_table.profiles}
    data = _load_toml(path)
    where = path.name
    _check_keys(data, ("family", "subop"), where)
    fam = _get(data, "family", dict, where)
    assert isinstance(fam, dict)
    fwhere = f"{where} [family]"
    _check_keys(
        fam,
        (
            "hypercall",
            "enum",
            "prefix",
            "header",
            "spec",
            "unknown_errno",
            "errors_required",
            "who_required",
            "errors_before_dispatch",
        ),
        fwhere,
    )
    enum = str(_get(fam, "enum", str, fwhere))
    _require(bool(_CAMEL.match(enum)), fwhere, f"enum {enum!r} must be CamelCase")
    prefix = str(_get(fam, "prefix", str, fwhere))
    has_errors = bool(_get(fam, "errors_required", bool, fwhere, False))
    who_required = bool(_get(fam, "who_required", bool, fwhere, False))
    unknown_errno = _get(fam, "unknown_errno", str, fwhere, None)
    if unknown_errno is not None:
        _require(bool(_ERRNO.match(str(unknown_errno))), fwhere, f"bad unknown_errno {unknown_errno!r}")
    before: dict[str, tuple[str, ...]] = dict.fromkeys(profiles, ())
    if "errors_before_dispatch" in fam:
        _require(has_errors, fwhere, "errors_before_dispatch needs errors_required = true")
        before = _load_errors(fam["errors_before_dispatch"], profiles, f"{fwhere} errors_before_dispatch")

    raw_subops = _get(data, "subop", list, where)
    assert isinstance(raw_subops, list)
    subops: list[SubOpEntry] = []
    for i, raw in enumerate(raw_subops):
        swhere = f"{where} [[subop]] #{i + 1}"
        _require(isinstance(raw, dict), swhere, "must be a table")
        _check_keys(
            raw, ("value", "name", "arg_struct", "who", "profile_flag", "internal", "doc", "errors"), swhere)
        name = _identifier(str(_get(raw, "name", str, swhere)), swhere)
        swhere = f"{where} {name}"
        _require(name.startswith(prefix), swhere, f"name must start with {prefix!r}")
        value = int(_get(raw, "value", int, swhere))  # type: ignore[arg-type]
        _require(value >= 0, swhere, "value must be >= 0")
        arg_struct = _get(raw, "arg_struct", str, swhere, None)
        if arg_struct is not None:
            _identifier(str(arg_struct), swhere)
        who = _get(raw, "who", str, swhere, None)
        _require(who is None or who in WHO_VALUES, swhere, f"who must be one of {WHO_VALUES}")
        _require(who is not None or not who_required, swhere, "who is required in this family")
        flag = _get(raw, "profile_flag", str, swhere, None)
        _require(
            flag is None or flag in bool_fields,
            swhere,
            f"profile_flag {flag!r} is not a bool field of {PROFILES_TABLE}",
        )
        errors: dict[str, tuple[str, ...]] = {}
        if has_errors:
            own = _load_errors(_get(raw, "errors", dict, swhere), profiles, f"{swhere} errors")
            for profile in profiles:
                if flag is not None and not flag_values[profile][flag]:
                    _require(
                        own[profile] == (unknown_errno,),
                        swhere,
                        f"errors.{profile}: {flag} is false in that profile, so it must be [{unknown_errno!r}]",
                    )
                errors[profile] = _merge(before[profile], own[profile])
        else:
            _require("errors" not in raw, swhere, "errors given but the family has errors_required = false")
        subops.append(
            SubOpEntry(
                name=name,
                value=value,
                arg_struct=None if arg_struct is None else str(arg_struct),
                who=None if who is None else str(who),
                profile_flag=None if flag is None else str(flag),
                internal=bool(_get(raw, "internal", bool, swhere, False)),
                errors=errors,
                doc=_one_paragraph(str(_get(raw, "doc", str, swhere)), swhere),
            )
        )
    _require(bool(subops), where, "a family needs at least one [[subop]]")
    values = [s.value for s in subops]
    _require(len(set(values)) == len(values), where, "two sub-ops share a value")
    _require(values == sorted(values), where, "sub-ops must be listed in increasing value order")
    names = [s.name for s in subops]
    _require(len(set(names)) == len(names), where, "two sub-ops share a name")
    return Family(
        source=path.name,
        hypercall=str(_get(fam, "hypercall", str, fwhere)),
        enum=enum,
        prefix=prefix,
        header=str(_get(fam, "header", str, fwhere)),
        spec=_get(fam, "spec", str, fwhere, None),  # type: ignore[arg-type]
        unknown_errno=None if unknown_errno is None else str(unknown_errno),
        has_errors=has_errors,
        errors_before_dispatch=before,
        subops=tuple(subops),
    )


def _parse_args(raw_args: list, c_types: dict, where: str) -> tuple[Arg, ...]:
    """One argument list of a [[hypercall]] (``args`` or ``compat_args``), checked."""
    args: list[Arg] = []
    for raw_arg in raw_args:
        _require(isinstance(raw_arg, dict), where, "each arg must be a table")
        _check_keys(raw_arg, ("name", "type", "dir"), where)
        arg = Arg(
            name=_identifier(str(_get(raw_arg, "name", str, where)), where),
            c_type=" ".join(str(_get(raw_arg, "type", str, where)).split()),
            direction=str(_get(raw_arg, "dir", str, where)),
        )
        _require(arg.direction in DIRECTIONS, where, f"{arg.name}: dir must be one of {DIRECTIONS}")
        if not arg.is_pointer:
            _require(arg.direction == "in", where, f"{arg.name}: a scalar argument is always 'in'")
            _require(
                arg.c_type in c_types,
                where,
                f"{arg.name}: scalar type {arg.c_type!r} has no entry in [guest_c_types]",
            )
        args.append(arg)
    _require(len(args) <= MAX_ARGS, where, f"at most {MAX_ARGS} arguments (spec 7.4)")
    _require(len({a.name for a in args}) == len(args), where, "two arguments share a name")
    return tuple(args)


def load_table(source_dir: Path = HERE) -> Table:
    """Read and check every table of ``source_dir``.

    Raises:
        TableError: a table is malformed or the tables contradict each other.
    """
    data = _load_toml(source_dir / MASTER_TABLE)
    where = MASTER_TABLE
    _check_keys(data, ("abi", "guest_c_types", "hypercall"), where)
    abi = _get(data, "abi", dict, where)
    c_types = _get(data, "guest_c_types", dict, where)
    assert isinstance(abi, dict) and isinstance(c_types, dict)
    awhere = f"{where} [abi]"
    arg_registers = tuple(_get(abi, "arg_registers", list, awhere))  # type: ignore[arg-type]
    _require(len(arg_registers) == MAX_ARGS, awhere, f"arg_registers must name {MAX_ARGS} registers")
    compat_arg_registers = tuple(_get(abi, "compat_arg_registers", list, awhere))  # type: ignore[arg-type]
    _require(len(compat_arg_registers) == MAX_ARGS, awhere, f"compat_arg_registers must name {MAX_ARGS}")
    profile_table = load_profiles(source_dir)

    families: dict[str, Family] = {}
    enums: set[str] = set()
    for path in sorted(source_dir.glob("*.toml")):
        if path.name in (MASTER_TABLE, PROFILES_TABLE):
            continue
        family = _load_family(path, profile_table)
        _require(
            family.hypercall not in families,
            path.name,
            f"hypercall {family.hypercall!r} already has a family ({families.get(family.hypercall)})",
        )
        _require(family.enum not in enums, path.name, f"enum {family.enum!r} is defined twice")
        families[family.hypercall] = family
        enums.add(family.enum)

    raw_calls = _get(data, "hypercall", list, where)
    assert isinstance(raw_calls, list)
    calls: list[HypercallEntry] = []
    for i, raw in enumerate(raw_calls):
        hwhere = f"{where} [[hypercall]] #{i + 1}"
        _require(isinstance(raw, dict), hwhere, "must be a table")
        _check_keys(
            raw,
            (
                "number",
                "name",
                "args",
                "compat_args",
                "defined",
                "enosys",
                "removed_in",
                "internal",
                "wrapper",
                "wrapper_reason",
                "doc",
            ),
            hwhere,
        )
        name = _identifier(str(_get(raw, "name", str, hwhere)), hwhere)
        hwhere = f"{where} {name}"
        number = int(_get(raw, "number", int, hwhere))  # type: ignore[arg-type]
        _require(0 <= number < int(abi["stub_count"]), hwhere, "number out of the hypercall page")
        defined = bool(_get(raw, "defined", bool, hwhere, True))
        raw_args = _get(raw, "args", list, hwhere, None)
        _require(
            (raw_args is None) == (not defined),
            hwhere,
            "a defined hypercall needs args (possibly []); an undefined one has none",
        )
        args = _parse_args(raw_args or [], c_types, hwhere)
        raw_compat = _get(raw, "compat_args", list, hwhere, None)
        _require(raw_compat is None or defined, hwhere, "an undefined hypercall has no compat_args")
        compat_args = None if raw_compat is None else _parse_args(raw_compat, c_types, f"{hwhere} compat_args")
        removed_in = _get(raw, "removed_in", str, hwhere, None)
        _require(removed_in is None or bool(_VERSION.match(str(removed_in))), hwhere, "bad removed_in")
        wrapper = bool(_get(raw, "wrapper", bool, hwhere, True))
        wrapper_reason = _get(raw, "wrapper_reason", str, hwhere, None)
        _require(wrapper == (wrapper_reason is None), hwhere, "wrapper = false needs a wrapper_reason")
        calls.append(
            HypercallEntry(
                number=number,
                name=name,
                args=args,
                compat_args=compat_args,
                defined=defined,
                enosys=bool(_get(raw, "enosys", bool, hwhere, False)) or not defined,
                removed_in=None if removed_in is None else str(removed_in),
                internal=bool(_get(raw, "internal", bool, hwhere, False)),
                wrapper=wrapper,
                wrapper_reason=None if wrapper_reason is None else str(wrapper_reason),
                doc=_one_paragraph(str(_get(raw, "doc", str, hwhere)), hwhere),
                family=families.pop(name, None),
            )
        )
    _require(not families, where, f"sub-op families for unknown hypercalls: {', '.join(sorted(families))}")
    numbers = [c.number for c in calls]
    _require(numbers == sorted(set(numbers)), where, "hypercalls must be listed once each, by number")
    _require(len({c.name for c in calls}) == len(calls), where, "two hypercalls share a name")
    for call in calls:
        if call.family is not None:
            _require(call.defined, where, f"{call.name} is undefined but has sub-ops")
    return Table(
        arg_registers=arg_registers,
        compat_arg_registers=compat_arg_registers,
        number_register=str(abi["number_register"]),
        result_register=str(abi["result_register"]),
        clobbered_registers=tuple(abi["clobbered_registers"]),
        stub_size=int(abi["stub_size"]),
        stub_count=int(abi["stub_count"]),
        arch_first=int(abi["arch_first"]),
        arch_count=int(abi["arch_count"]),
        profiles={p.name: p.summary for p in profile_table.profiles},
        guest_c_types={str(k): str(v) for k, v in c_types.items()},
        hypercalls=tuple(calls),
        profile_table=profile_table,
    )


def _profile_value(f: ProfileField, value: object, where: str) -> object:
    """``value`` checked against the type of field ``f``."""
    kinds = {
        "bool": bool, "int": int, "str": str, "version": list, "errno": str, "optional_errno": str, "bits": list,
    }  # fmt: skip
    kind = kinds[f.type]
    _require(
        isinstance(value, kind) and (kind is bool or not isinstance(value, bool)),
        where,
        f"{f.name} must be of TOML type {kind.__name__} (field type {f.type})",
    )
    if f.type == "version":
        assert isinstance(value, list)
        _require(
            len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value),
            where,
            f"{f.name} must be [major, minor]",
        )
    elif f.type == "errno" or (f.type == "optional_errno" and value != ""):
        _require(bool(_ERRNO.match(str(value))), where, f"{f.name}: {value!r} is not an errno name")
    elif f.type == "bits":
        assert isinstance(value, list)
        _require(
            all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 64 for b in value)
            and value == sorted(set(value)),
            where,
            f"{f.name} must list bit numbers 0-63 once each, in increasing order",
        )
    elif f.type == "str":
        _require(str(value).isascii(), where, f"{f.name} must be ASCII")
    return value


def load_profiles(source_dir: Path = HERE) -> ProfileTable:
    """Read and check ``profiles.toml`` of ``source_dir``.

    Raises:
        TableError: the table is malformed (a missing or unknown field, a wrong type, profiles out of order).
    """
    where = PROFILES_TABLE
    data = _load_toml(source_dir / PROFILES_TABLE)
    _check_keys(data, ("field", "profile"), where)
    raw_fields = _get(data, "field", dict, where)
    raw_profiles = _get(data, "profile", dict, where)
    assert isinstance(raw_fields, dict) and isinstance(raw_profiles, dict)
    fields: list[ProfileField] = []
    for name, raw in raw_fields.items():
        fwhere = f"{where} [field.{name}]"
        _identifier(name, fwhere)
        _require(name not in ("name", "summary"), fwhere, "name and summary are not fields")
        _require(isinstance(raw, dict), fwhere, "must be a table")
        _check_keys(raw, ("type", "doc", "default"), fwhere)
        ftype = str(_get(raw, "type", str, fwhere))
        _require(ftype in PROFILE_FIELD_TYPES, fwhere, f"type must be one of {PROFILE_FIELD_TYPES}")
        f = ProfileField(name, ftype, _one_paragraph(str(_get(raw, "doc", str, fwhere)), fwhere), ...)
        if "default" in raw:
            f = ProfileField(name, ftype, f.doc, _profile_value(f, raw["default"], fwhere))
        fields.append(f)
    _require(bool(fields), where, "no [field.*] tables")
    profiles: list[Profile] = []
    for name, raw in raw_profiles.items():
        pwhere = f"{where} [profile.{name}]"
        _require(name == "head" or bool(_VERSION.match(name)), pwhere, "a profile is 'head' or a release")
        _require(isinstance(raw, dict), pwhere, "must be a table")
        _check_keys(raw, ("summary", *(f.name for f in fields)), pwhere)
        summary = _one_paragraph(str(_get(raw, "summary", str, pwhere)), pwhere)
        values: dict[str, object] = {}
        for f in fields:
            _require(f.name in raw or f.default is not ..., pwhere, f"missing field {f.name!r}")
            values[f.name] = _profile_value(f, raw[f.name], pwhere) if f.name in raw else f.default
        profiles.append(Profile(name, summary, values))
    names = [p.name for p in profiles]
    _require(bool(names) and names[0] == "head", where, "the first profile must be 'head'")
    _require(names == sorted(names, key=_version_key, reverse=True), where, "profiles must be listed newest first")
    return ProfileTable(tuple(fields), tuple(profiles))


# --------------------------------------------------------------------------------------------------------
# Helpers shared by the emitters.
# --------------------------------------------------------------------------------------------------------


def c_prototype(call: HypercallEntry) -> str:
    """Xen's prototype of ``call``: ``long HYPERVISOR_name(type arg, ...)``."""
    params = ", ".join(_c_param(a.c_type, a.name) for a in call.args) or "void"
    return f"long HYPERVISOR_{call.name}({params})"


def _c_param(c_type: str, name: str) -> str:
    return f"{c_type}{name}" if c_type.endswith("*") else f"{c_type} {name}"


def guest_c_type(table: Table, arg: Arg) -> str:
    """The C type of ``arg`` in the guest header (freestanding x86_64, no Xen typedefs)."""
    if arg.is_pointer:
        base = arg.c_type[:-1].strip()
        const = base.startswith("const ")
        pointee = base.removeprefix("const ").strip()
        if pointee in ("char", "unsigned char"):
            return f"{'const ' if const else ''}{pointee} *"
        return "const void *" if const else "void *"
    return table.guest_c_types[arg.c_type]


def _py_str(text: str) -> str:
    """A Python string literal of ``text`` (ASCII), quoted as ruff format quotes it."""
    text = text.replace("\\", "\\\\")
    if '"' in text and "'" not in text:
        return "'" + text + "'"
    return '"' + text.replace('"', '\\"') + '"'


def _py_value(key: str, text: str | None, indent: int) -> list[str]:
    """``key=<text literal>,`` at ``indent``, split into an implicit concatenation when too long."""
    pad = " " * indent
    if text is None:
        return [f"{pad}{key}=None,"]
    line = f"{pad}{key}={_py_str(text)},"
    if len(line) <= PY_LINE:
        return [line]
    width = PY_LINE - indent - 4 - 3
    pieces = textwrap.wrap(
        text, width=width, break_long_words=False, break_on_hyphens=False, drop_whitespace=False
    )
    out = [f"{pad}{key}=("]
    out.extend(f"{pad}    {_py_str(piece)}" for piece in pieces)
    out.append(f"{pad}),")
    return out


def _py_tuple(items: Sequence[str]) -> str:
    if not items:
        return "()"
    if len(items) == 1:
        return f"({_py_str(items[0])},)"
    return "(" + ", ".join(_py_str(i) for i in items) + ")"


def _const_name(hypercall: str) -> str:
    return "_" + hypercall.upper() + "_SUBOPS"


# --------------------------------------------------------------------------------------------------------
# Emitters.
# --------------------------------------------------------------------------------------------------------

PY_HEADER = (
    f"# Generated by {GENERATOR} from the TOML tables in hypercalls/. Do not edit this file:\n"
    f"# edit the tables and run `python3 {GENERATOR}` (a test fails while it is stale).\n"
)


def emit_py_init(table: Table) -> str:
    del table
    return PY_HEADER + '"""Python files generated from the TOML tables in ``hypercalls/`` (do not edit)."""\n'


def _py_args(field: str, args: tuple[Arg, ...]) -> list[str]:
    """The ``field=(HypercallArg(...), ...)`` lines of one generated HypercallDef."""
    if not args:
        return [f"            {field}=(),"]
    lines = [f"            {field}=("]
    for arg in args:
        lines.append(
            f"                HypercallArg({_py_str(arg.name)}, {_py_str(arg.c_type)}, {_py_str(arg.direction)}),"
        )
    return [*lines, "            ),"]


def emit_python(table: Table) -> str:
    # The generator owns the layout (lines within 110 columns); a formatter must not rewrap it.
    out: list[str] = [PY_HEADER + "# fmt: off"]
    out.append('''"""Xen's hypercall table: numbers, sub-op values, argument structs and expected errors.

Numbers and names follow ``xen/include/public/xen.h`` (spec 6.1), C prototypes Xen's PV64 dispatch table
``xen/include/hypercall-defs.c``, sub-op values the public headers named by each family (``public/vcpu.h``,
``public/sched.h``, ``public/event_channel.h``, ...). The guest's C header and the Sphinx reference are
generated from the same tables, so the three cannot disagree.

Invariants:

* :data:`HYPERCALLS` has one :class:`HypercallDef` per hypercall number a PV64 guest can issue, keyed by
  number; a number it lacks has no dispatch entry in Xen and returns -ENOSYS.
* :class:`Hypercall` and every sub-op enum spell members exactly as Xen does (``Hypercall.vcpu_op``,
  ``VcpuOp.VCPUOP_initialise``); every sub-op constant is also a module-level alias.
* ``SubOp.errors[profile]`` lists the errnos (Xen's names, see :mod:`xenpy.abi.errno`) the sub-op can
  return on PV64 in that Xen version profile, in the order Xen evaluates the checks; errors checked before
  the sub-op is decoded (vcpu_op's -ENOENT) come first.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType

from xenpy.abi.generated.profiles import PROFILES as _PROFILE_RECORDS
''')
    out.append(
        f"#: Registers of hypercall arguments 1-5 (spec 7.4); the number and the result are in "
        f"``{table.number_register}``."
    )
    out.append(f"PV64_ARG_REGISTERS: tuple[str, ...] = {_py_tuple(table.arg_registers)}")
    out.append("#: Registers of hypercall arguments 1-5 of a PV32 guest (``HypercallDef.compat_args``).")
    out.append(f"PV32_ARG_REGISTERS: tuple[str, ...] = {_py_tuple(table.compat_arg_registers)}")
    out.append("#: Registers a hypercall clobbers (``syscall``; the stubs restore them, spec 7.3).")
    out.append(f"PV64_CLOBBERED_REGISTERS: tuple[str, ...] = {_py_tuple(table.clobbered_registers)}")
    out.append(
        "#: Size of one stub of the hypercall page: stub ``i`` is at ``hypercall_page + 32 * i`` (spec 7.3)."
    )
    out.append(f"HYPERCALL_STUB_SIZE = {table.stub_size}")
    out.append("#: Number of stubs in the hypercall page (spec 7.3).")
    out.append(f"HYPERCALL_STUB_COUNT = {table.stub_count}")
    out.append(f"#: ``__HYPERVISOR_arch_0`` .. ``__HYPERVISOR_arch_{table.arch_count - 1}`` (spec 6.1).")
    out.append(f"HYPERCALL_ARCH_FIRST = {table.arch_first}")
    out.append(f"HYPERCALL_ARCH_COUNT = {table.arch_count}")
    out.append(
        "#: Xen version profiles of :attr:`SubOp.errors`, newest first: the profiles of ``hypercalls/profiles.toml``"
    )
    out.append("#: (:data:`xenpy.abi.generated.profiles.PROFILES`), one column of every error table each.")
    out.append("PROFILES: tuple[str, ...] = tuple(_PROFILE_RECORDS)")
    out.append("")
    out.append("")

    out.append("class Hypercall(IntEnum):")
    out.append('    """Hypercall numbers: Xen\'s ``__HYPERVISOR_*`` names without the prefix (spec 6.1)."""')
    out.append("")
    for call in table.hypercalls:
        if call.defined:
            out.append(f"    {call.name} = {call.number}")
    for family in table.families:
        out.append("")
        out.append("")
        out.append(f"class {family.enum}(IntEnum):")
        what = f"sub-ops of ``HYPERVISOR_{family.hypercall}`` (``{family.header}``)"
        doc = f'    """``{family.prefix}*``: {what}."""'
        out.append(doc)
        out.append("")
        for sub in family.subops:
            out.append(f"    {sub.name} = {sub.value}")
    out.append("")
    out.append("")
    out.append("# Every sub-op constant under its Xen name, as the C headers spell it.")
    for family in table.families:
        for sub in family.subops:
            out.append(f"{sub.name} = {family.enum}.{sub.name}")
    out.append("")
    out.append("")
    out.append('''@dataclass(frozen=True)
class HypercallArg:
    """One C argument of a hypercall.

    Attributes:
        name: the argument's name in Xen's prototype.
        c_type: Xen's C type (``xen/include/hypercall-defs.c``).
        direction: ``"in"``, ``"out"`` or ``"inout"``: what Xen does with the guest memory a pointer names
            (scalars are ``"in"``).
    """

    name: str
    c_type: str
    direction: str


@dataclass(frozen=True)
class SubOp:
    """One sub-op (command) of a hypercall.

    Attributes:
        name: Xen's name (``VCPUOP_initialise``).
        value: the command number.
        arg_struct: Xen's C name of the argument type (``vcpu_runstate_info``), or None if there is none.
        who: for vcpu_op, ``"self"`` if the target must be the calling vCPU, ``"any"`` if it may be any vCPU
            of the caller's domain; None elsewhere.
        profile_flag: the bool field of the profile table without which the sub-op does not exist (the
            profiles where it is false return the unknown-command errno), or None.
        errors: profile -> the errno names the sub-op can return, in evaluation order (empty mapping for
            families without an error table).
        internal: Xen-internal command, hidden from guests' public headers.
        doc: the guest-visible contract in one paragraph.
    """

    name: str
    value: int
    arg_struct: str | None
    who: str | None
    profile_flag: str | None
    errors: Mapping[str, tuple[str, ...]]
    internal: bool = False
    doc: str = ""


@dataclass(frozen=True)
class HypercallDef:
    """One hypercall number of the table.

    Attributes:
        number: the hypercall number (stub index in the hypercall page).
        name: Xen's name without ``__HYPERVISOR_``; xenpy's own label when Xen defines no hypercall there.
        args: the C arguments, in register order (:data:`PV64_ARG_REGISTERS`).
        subops: the sub-ops, by value (empty if the hypercall has no sub-op table).
        subop_enum: the IntEnum of the sub-op values, or None.
        implemented_as_enosys: every call returns -ENOSYS, as in Xen at HEAD.
        doc: the guest-visible contract in one paragraph.
        defined: False when Xen defines no hypercall with this number.
        internal: a number Xen uses internally (no public name).
        removed_in: the first Xen release that no longer dispatches it, if any.
        unknown_subop_errno: the errno an unknown sub-op returns, if the hypercall has sub-ops.
        compat_args: the C arguments of a PV32 guest, in register order, where they differ from ``args``
            (Xen's ``compat_*`` entry); None where a PV32 guest passes ``args``.
    """

    number: int
    name: str
    args: tuple[HypercallArg, ...]
    subops: tuple[SubOp, ...]
    subop_enum: type[IntEnum] | None
    implemented_as_enosys: bool
    doc: str
    defined: bool = True
    internal: bool = False
    removed_in: str | None = None
    unknown_subop_errno: str | None = None
    compat_args: tuple[HypercallArg, ...] | None = None

    @property
    def registers(self) -> tuple[tuple[str, HypercallArg], ...]:
        """``(register, argument)`` pairs in order (spec 7.4)."""
        return tuple(zip(PV64_ARG_REGISTERS, self.args, strict=False))

    @property
    def prototype(self) -> str:
        """Xen's C prototype, ``long HYPERVISOR_<name>(...)``."""
        params = ", ".join(
            f"{a.c_type}{a.name}" if a.c_type.endswith("*") else f"{a.c_type} {a.name}" for a in self.args
        )
        return f"long HYPERVISOR_{self.name}({params or 'void'})"

    def subop(self, value: int) -> SubOp | None:
        """The sub-op with command number ``value``, or None if the table has none."""
        for sub in self.subops:
            if sub.value == value:
                return sub
        return None
''')
    for family in table.families:
        out.append("")
        out.append(f"{_const_name(family.hypercall)}: tuple[SubOp, ...] = (")
        for sub in family.subops:
            out.append("    SubOp(")
            out.append(f"        name={_py_str(sub.name)},")
            out.append(f"        value={sub.value},")
            out.extend(_py_value("arg_struct", sub.arg_struct, 8))
            out.extend(_py_value("who", sub.who, 8))
            out.extend(_py_value("profile_flag", sub.profile_flag, 8))
            if sub.errors:
                out.append("        errors=MappingProxyType(")
                out.append("            {")
                for profile, names in sub.errors.items():
                    line = f"                {_py_str(profile)}: {_py_tuple(names)},"
                    if len(line) <= PY_LINE:
                        out.append(line)
                        continue
                    out.append(f"                {_py_str(profile)}: (")
                    out.extend(f"                    {_py_str(name)}," for name in names)
                    out.append("                ),")
                out.append("            }")
                out.append("        ),")
            else:
                out.append("        errors=MappingProxyType({}),")
            if sub.internal:
                out.append("        internal=True,")
            out.extend(_py_value("doc", sub.doc, 8))
            out.append("    ),")
        out.append(")")
    out.append("")
    out.append("#: Every hypercall number of the table, by number (read-only).")
    out.append("HYPERCALLS: Mapping[int, HypercallDef] = MappingProxyType(")
    out.append("    {")
    for call in table.hypercalls:
        key = f"Hypercall.{call.name}" if call.defined else str(call.number)
        out.append(f"        {key}: HypercallDef(")
        out.append(f"            number={call.number},")
        out.append(f"            name={_py_str(call.name)},")
        out.extend(_py_args("args", call.args))
        if call.family is not None:
            out.append(f"            subops={_const_name(call.name)},")
            out.append(f"            subop_enum={call.family.enum},")
        else:
            out.append("            subops=(),")
            out.append("            subop_enum=None,")
        out.append(f"            implemented_as_enosys={call.enosys},")
        out.extend(_py_value("doc", call.doc, 12))
        if not call.defined:
            out.append("            defined=False,")
        if call.internal:
            out.append("            internal=True,")
        if call.removed_in is not None:
            out.append(f"            removed_in={_py_str(call.removed_in)},")
        if call.family is not None and call.family.unknown_errno is not None:
            out.append(f"            unknown_subop_errno={_py_str(call.family.unknown_errno)},")
        if call.compat_args is not None:
            out.extend(_py_args("compat_args", call.compat_args))
        out.append("        ),")
    out.append("    }")
    out.append(")")
    out.append("")
    out.append(
        "_BY_NAME: Mapping[str, HypercallDef] = MappingProxyType({d.name: d for d in HYPERCALLS.values()})"
    )
    out.append("")
    out.append("")
    out.append('''def hypercall_by_name(name: str) -> HypercallDef:
    """The hypercall called ``name``, with or without Xen's ``__HYPERVISOR_`` prefix.

    Raises:
        KeyError: no hypercall of that name.
    """
    try:
        return _BY_NAME[name.removeprefix("__HYPERVISOR_")]
    except KeyError:
        raise KeyError(f"no hypercall named {name!r}") from None''')
    return "\n".join(out) + "\n"


def _c_comment_block(lines: Iterable[str]) -> list[str]:
    out = ["/*"]
    for line in lines:
        out.append(f" * {line}".rstrip())
    out.append(" */")
    return out


def _c_wrap(text: str, width: int = C_LINE - 3) -> list[str]:
    return textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False)


def _c_define(name: str, value: str, width: int) -> str:
    return f"#define {name.ljust(width)} {value}"


def _c_generated_notice(source: str) -> list[str]:
    """The first lines of a generated C header's comment: where it comes from, how to regenerate it."""
    return [
        f"Generated by {GENERATOR} from {source}. Do not edit this file:",
        f"edit the table and run `python3 {GENERATOR}` (a test fails while it is stale).",
        "",
    ]


def emit_c_header(table: Table) -> str:
    regs = table.arg_registers
    out = _c_comment_block(
        [
            *_c_generated_notice("the TOML tables in hypercalls/"),
            "Xen hypercall numbers (public/xen.h), sub-op constants and PV64 call wrappers for xenpy's guest",
            "kernels (x86_64, gcc, freestanding).",
            "",
            f"Calling convention (spec 7.3, 7.4): stub i of the hypercall page is at hypercall_page + "
            f"{table.stub_size} * i and",
            f"loads {table.number_register} = i; arguments 1-5 go in {', '.join(regs)}; the result "
            f"(a negative Xen errno on error)",
            f"comes back in {table.result_register}. The stub's syscall clobbers "
            f"{' and '.join(table.clobbered_registers)}. iret (23) is jumped to,",
            "never called, so it has no wrapper.",
        ]
    )
    out += [
        "#ifndef XENPY_GUEST_GENERATED_HYPERCALLS_H",
        "#define XENPY_GUEST_GENERATED_HYPERCALLS_H",
        "",
        "#if !defined(__x86_64__)",
        '#error "hypercalls.h: the PV64 hypercall ABI needs an x86_64 target"',
        "#endif",
        "",
        "/* Hypercall numbers (spec 6.1). */",
    ]
    public = [c for c in table.hypercalls if c.defined and not c.internal]
    width = max(len(f"__HYPERVISOR_{c.name}") for c in public)
    width = max(width, len(f"__HYPERVISOR_arch_{table.arch_count - 1}"))
    for call in public:
        out.append(_c_define(f"__HYPERVISOR_{call.name}", str(call.number), width))
    out.append("")
    out.append("/* Architecture-specific hypercalls (x86: arch_0 = mca; arch_1 is internal to Xen). */")
    for i in range(table.arch_count):
        out.append(_c_define(f"__HYPERVISOR_arch_{i}", str(table.arch_first + i), width))
    for family in table.families:
        subs = [s for s in family.subops if not s.internal]
        out.append("")
        out.append(f"/* {family.prefix}*: sub-ops of HYPERVISOR_{family.hypercall} ({family.header}). */")
        fwidth = max(len(s.name) for s in subs)
        for sub in subs:
            out.append(_c_define(sub.name, str(sub.value), fwidth))
    out.append("")
    out.append("#ifndef __ASSEMBLY__")
    out.append("")
    out.append("extern char hypercall_page[];")
    out.append("")
    out += _c_comment_block(
        _c_wrap(
            "_hypercallN(nr, a1, ..., aN) calls stub nr of the hypercall page and evaluates to its result "
            "as a long; nr must be an integer constant expression. Each used argument register is an "
            "input and an output (Xen debug builds poison the argument registers a hypercall uses); "
            "the unused argument registers, rcx, r11, memory and the flags are declared clobbered. "
            "The call first steps over the 128-byte red zone, since it pushes a return address below "
            "the stack pointer."
        )
    )
    out += [
        "#define _HYPERCALL_ASM                        \\",
        '    "lea -128(%%rsp), %%rsp\\n\\t"             \\',
        '    "call hypercall_page + %c[offset]\\n\\t"   \\',
        '    "lea 128(%%rsp), %%rsp"',
    ]
    out.append("")
    for n in range(MAX_ARGS + 1):
        params = ", ".join(["nr"] + [f"a{i}" for i in range(1, n + 1)])
        body = ["({", '    register unsigned long __res __asm__("rax");']
        for i in range(1, n + 1):
            body.append(
                f'    register unsigned long __a{i} __asm__("{regs[i - 1]}") = (unsigned long)(a{i});'
            )
        outputs = ", ".join(['"=r"(__res)'] + [f'"+r"(__a{i})' for i in range(1, n + 1)])
        clobbers = ", ".join(f'"{r}"' for r in (*regs[n:], *table.clobbered_registers, "memory", "cc"))
        body.append("    __asm__ __volatile__(_HYPERCALL_ASM")
        body.append(f"                         : {outputs}")
        body.append(f'                         : [offset] "i"((nr) * {table.stub_size})')
        body.append(f"                         : {clobbers});")
        body.append("    (long)__res;")
        body.append("})")
        head = f"#define _hypercall{n}({params})"
        lines = [head, *body]
        wmax = max(len(line) for line in lines) + 1
        for line in lines[:-1]:
            out.append(f"{line.ljust(wmax)}\\")
        out.append(lines[-1])
        out.append("")
    for call in table.hypercalls:
        if not call.defined or call.internal:
            continue
        if not call.has_wrapper:
            out += _c_comment_block(_c_wrap(f"No HYPERVISOR_{call.name}(): {call.wrapper_reason}."))
            out.append("")
            continue
        note = f"Hypercall {call.number}: {c_prototype(call)}."
        if call.enosys:
            note += " xenpy, like Xen at HEAD, returns -ENOSYS."
        out += _c_comment_block(_c_wrap(note))
        params = [_c_param(guest_c_type(table, a), a.name) for a in call.args] or ["void"]
        head = f"static inline long HYPERVISOR_{call.name}("
        if len(head) + len(", ".join(params)) + 1 <= C_LINE:
            out.append(f"{head}{', '.join(params)})")
        else:
            indent = " " * len(head)
            out.append(f"{head}{params[0]},")
            out.extend(f"{indent}{p}," for p in params[1:-1])
            out.append(f"{indent}{params[-1]})")
        out.append("{")
        args = "".join(f", {a.name}" for a in call.args)
        out.append(f"    return _hypercall{len(call.args)}(__HYPERVISOR_{call.name}{args});")
        out.append("}")
        out.append("")
    out.append("#endif /* !__ASSEMBLY__ */")
    out.append("")
    out.append("#endif /* XENPY_GUEST_GENERATED_HYPERCALLS_H */")
    return "\n".join(out) + "\n"


_RST_SPECIAL = re.compile(r"([\\`*_|])")


def _rst_text(text: str) -> str:
    """``text`` with every character that could start RST inline markup escaped."""
    return _RST_SPECIAL.sub(r"\\\1", text)


def _rst_literal(text: str) -> str:
    return f"``{text}``"


def _rst_list_table(
    title: str, header: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[int] | None = None
) -> list[str]:
    out = [f".. list-table:: {title}", "   :header-rows: 1"]
    if widths is not None:
        out.append(f"   :widths: {' '.join(str(w) for w in widths)}")
    out.append("")
    for row in (header, *rows):
        for i, cell in enumerate(row):
            lead = f"   {'*' if i == 0 else ' '} - "
            lines = textwrap.wrap(cell, width=110 - len(lead), break_long_words=False, break_on_hyphens=False)
            out.append((lead + (lines[0] if lines else "")).rstrip())
            out.extend(" " * len(lead) + line for line in lines[1:])
    out.append("")
    return out


def _rst_errors(names: Sequence[str]) -> str:
    return ", ".join(f"-{n}" for n in names) if names else "none"


def emit_rst(table: Table) -> str:
    regs = table.arg_registers
    profiles = list(table.profiles)
    out = [
        f".. Generated by {GENERATOR} from the TOML tables in hypercalls/. Do not edit this file:",
        f"   edit the tables and run `python3 {GENERATOR}` (a test fails while it is stale).",
        "",
        "Hypercall reference",
        "===================",
        "",
    ]
    out += textwrap.wrap(
        "Every hypercall a PV64 guest of xenpy can issue, with its C prototype, argument registers and "
        "sub-ops. This page, the Python table (``xenpy.abi.generated.hypercalls``) and the guest's C "
        "header (``guest/include/generated/hypercalls.h``) are generated from the same TOML tables in "
        "``hypercalls/``.",
        width=110,
    )
    out.append("")
    out += textwrap.wrap(
        f"Calling convention (spec 7.3, 7.4): the guest calls stub i of its hypercall page, at "
        f"hypercall_page + {table.stub_size} * i, which loads {table.number_register} = i and executes "
        f"syscall. Arguments 1 to 5 are in {', '.join(regs)}; the result is in {table.result_register}, a "
        f"negative Xen errno on error. The stub saves and restores "
        f"{' and '.join(table.clobbered_registers)}, which syscall clobbers. A number without an entry "
        f"below returns -ENOSYS.",
        width=110,
    )
    out.append("")
    out += textwrap.wrap(
        "Expected errors are given per Xen version profile, in the order Xen evaluates the checks (each "
        "errno once, at its first check). The profiles are:",
        width=110,
    )
    out.append("")
    for name, desc in table.profiles.items():
        out.append(f"* ``{name}``: {_rst_text(desc)}")
    out.append("")

    rows = []
    for call in table.hypercalls:
        status = []
        if call.enosys:
            status.append("-ENOSYS")
        if call.removed_in:
            status.append(f"removed in {call.removed_in}")
        if call.internal:
            status.append("Xen-internal")
        if not call.defined:
            status.append("unused")
        subops = f"{_rst_literal(call.family.prefix + '*')}" if call.family else ""
        rows.append(
            [str(call.number), f":ref:`{call.name} <hypercall-{call.name}>`", subops, ", ".join(status)]
        )
    out += _rst_list_table("Hypercalls", ["Number", "Name", "Sub-ops", "Status"], rows, (10, 40, 25, 25))

    for call in table.hypercalls:
        title = f"{call.name} ({call.number})"
        out += [f".. _hypercall-{call.name}:", "", title, "-" * len(title), ""]
        out += textwrap.wrap(_rst_text(call.doc), width=110)
        out.append("")
        facts = [f"* Number: {call.number}"]
        if call.defined and not call.internal:
            facts[0] += f" (``__HYPERVISOR_{call.name}``)"
        if call.enosys:
            facts.append("* xenpy returns -ENOSYS for every call.")
        if call.removed_in:
            facts.append(f"* Removed from Xen in {call.removed_in}.")
        if call.defined and not call.has_wrapper:
            reason = call.wrapper_reason or "Xen-internal"
            facts += textwrap.wrap(
                f"* No C wrapper in the guest header: {_rst_text(reason)}.", width=110, subsequent_indent="  "
            )
        out += facts
        out.append("")
        if not call.defined:
            continue
        out += [".. code-block:: c", "", f"   {c_prototype(call)};", ""]
        if call.args:
            arg_rows = [
                [_rst_literal(reg), _rst_literal(arg.name), _rst_literal(arg.c_type), arg.direction]
                for reg, arg in zip(regs, call.args, strict=False)
            ]
            out += _rst_list_table(
                "Arguments", ["Register", "Argument", "C type", "Direction"], arg_rows, (15, 25, 40, 20)
            )
        else:
            out += ["No arguments.", ""]
        if call.compat_args is not None:
            compat_rows = [
                [_rst_literal(reg), _rst_literal(arg.name), _rst_literal(arg.c_type), arg.direction]
                for reg, arg in zip(table.compat_arg_registers, call.compat_args, strict=False)
            ]
            out += _rst_list_table(
                "Arguments of a PV32 guest", ["Register", "Argument", "C type", "Direction"], compat_rows,
                (15, 25, 40, 20),
            )
        family = call.family
        if family is None:
            continue
        intro = (
            f"Sub-ops ({_rst_literal(family.prefix + '*')}, {_rst_literal(family.header)}"
            + (f", spec {family.spec}" if family.spec else "")
            + ")."
        )
        if family.unknown_errno:
            intro += f" An unknown sub-op returns -{family.unknown_errno}."
        out += textwrap.wrap(intro, width=110)
        out.append("")
        has_who = any(s.who for s in family.subops)
        has_flag = any(s.profile_flag for s in family.subops)
        header = ["Value", "Name", "Argument"]
        widths = [6, 30, 30]
        if has_who:
            header.append("Who")
            widths.append(6)
        if has_flag:
            header.append("Only with")
            widths.append(12)
        if family.has_errors:
            header += [f"Errors ({p})" for p in profiles]
            widths += [30] * len(profiles)
        header.append("Description")
        widths.append(60)
        sub_rows = []
        for sub in family.subops:
            row = [
                str(sub.value),
                _rst_literal(sub.name),
                _rst_literal(sub.arg_struct) if sub.arg_struct else "",
            ]
            if has_who:
                row.append(sub.who or "")
            if has_flag:
                row.append(_rst_literal(sub.profile_flag) if sub.profile_flag else "")
            if family.has_errors:
                row += [_rst_errors(sub.errors[p]) for p in profiles]
            row.append(_rst_text(sub.doc))
            sub_rows.append(row)
        out += _rst_list_table(f"{call.name} sub-ops", header, sub_rows, widths)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


_PROFILE_PY_TYPES = {
    "bool": "bool", "int": "int", "str": "str", "version": "tuple[int, int]", "errno": "XenErrno",
    "optional_errno": "XenErrno | None", "bits": "int",
}  # fmt: skip


def profile_const(name: str) -> str:
    """The module-level name of profile ``name``'s record: ``HEAD``, ``XEN_4_17_3``."""
    return "HEAD" if name == "head" else "XEN_" + name.replace(".", "_")


def _py_profile_value(f: ProfileField, value: object) -> str:
    if f.type == "bool":
        return "True" if value else "False"
    if f.type == "int":
        return str(value)
    if f.type == "str":
        return _py_str(str(value))
    if f.type == "version":
        assert isinstance(value, list)
        return f"({value[0]}, {value[1]})"
    if f.type in ("errno", "optional_errno"):
        return f"XenErrno.{value}" if value else "None"
    assert isinstance(value, list)
    return f"{sum(1 << b for b in value):#x}"


def _attr_doc(name: str, doc: str) -> list[str]:
    return textwrap.wrap(
        f"{name}: {doc}", width=PY_LINE, initial_indent=" " * 8, subsequent_indent=" " * 12,
        break_long_words=False, break_on_hyphens=False,
    )  # fmt: skip


def emit_profiles_python(table: Table) -> str:
    pt = table.profile_table
    out: list[str] = [PY_HEADER + "# fmt: off"]
    out.append('''"""Xen version profiles: the guest-visible differences between the Xen releases xenpy follows.

Generated from ``hypercalls/profiles.toml``, the one table of version differences (spec 1.4, 4.1, 6.6, 6.7).
A domain is created with one :class:`XenProfile`; handlers read its fields, no code compares version
numbers. :data:`PROFILES` is the list of profiles, newest first: the columns of the hypercall table's error
lists (:data:`xenpy.abi.generated.hypercalls.PROFILES`) and the choices of ``xenpy run --profile``. A test or
an experiment may derive a profile of its own with :func:`dataclasses.replace`.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from xenpy.abi.errno import XenErrno


@dataclass(frozen=True)
class XenProfile:
    """Feature flags and facts of one Xen release, as a guest can observe them.

    Attributes:
        name: the profile's name (``"head"``, ``"4.17"``, ...).
        summary: the releases the profile stands for.''')
    for f in pt.fields:
        doc = f.doc
        if f.type == "bits":
            doc += " A mask of the bits."
        out += _attr_doc(f.name, _py_doc_text(doc))
    out += _attr_doc(
        "derived",
        "what handlers compute once per record from its fields (precomputed answers), by the handler's "
        "key; not part of the profile's value (not compared, not copied by dataclasses.replace).",
    )
    out.append('    """')
    out.append("")
    out.append("    name: str")
    out.append("    summary: str")
    for f in pt.fields:
        out.append(f"    {f.name}: {_PROFILE_PY_TYPES[f.type]}")
    out.append("    derived: dict[str, object] = field(default_factory=dict, init=False, repr=False, compare=False)")
    out.append("")
    out.append("    @property")
    out.append("    def runstate_update_flag(self) -> bool:")
    out.append('        """True if VMASST_TYPE_runstate_update_flag (5) exists in this release."""')
    out.append("        return bool(self.vm_assist_valid_mask & (1 << 5))")
    for p in pt.profiles:
        out.append("")
        out.append("")
        out.append(f"#: {_py_doc_text(p.summary)}")
        out.append(f"{profile_const(p.name)} = XenProfile(")
        out.extend(_py_value("name", p.name, 4))
        out.extend(_py_value("summary", p.summary, 4))
        for f in pt.fields:
            value = _py_profile_value(f, p.values[f.name])
            line = f"    {f.name}={value},"
            if f.type == "bits":
                assert isinstance(p.values[f.name], list)
                line += f"  # bits {', '.join(str(b) for b in p.values[f.name])}"  # type: ignore[union-attr]
            if f.type == "str":
                out.extend(_py_value(f.name, str(p.values[f.name]), 4))
            else:
                out.append(line)
        out.append(")")
    out.append("")
    out.append("#: Every profile by name, newest first (read-only).")
    consts = ", ".join(profile_const(p.name) for p in pt.profiles)
    out.append(f"PROFILES: Mapping[str, XenProfile] = MappingProxyType({{p.name: p for p in ({consts})}})")
    return "\n".join(out) + "\n"


def _py_doc_text(text: str) -> str:
    """``text`` for a docstring: C-ish names in double backquotes are left as the TOML gives them."""
    return text.replace("\\", "\\\\")


def _rst_profile_value(f: ProfileField, value: object) -> str:
    if f.type == "bool":
        return "yes" if value else "no"
    if f.type == "version":
        assert isinstance(value, list)
        return f"{value[0]}.{value[1]}"
    if f.type in ("errno", "optional_errno"):
        return f"-{value}" if value else "none"
    if f.type == "bits":
        assert isinstance(value, list)
        return ", ".join(str(b) for b in value)
    if f.type == "str":
        return _rst_literal(f'"{value}"') if value else '""'
    return str(value)


def emit_profiles_rst(table: Table) -> str:
    pt = table.profile_table
    out = [
        f".. Generated by {GENERATOR} from hypercalls/{PROFILES_TABLE}. Do not edit this file:",
        f"   edit the table and run `python3 {GENERATOR}` (a test fails while it is stale).",
        "",
        "Xen version profiles",
        "====================",
        "",
    ]
    out += textwrap.wrap(
        "Every guest-visible difference between the Xen releases xenpy follows, from the one table "
        f"``hypercalls/{PROFILES_TABLE}``. A domain is created with one profile (``xenpy run --profile NAME``, "
        "``DomainConfig(profile=...)``); handlers read its fields (``xenpy.abi.generated.profiles.XenProfile``) "
        "and the hypercall reference gives the expected errors of each sub-op per profile. The profiles, "
        "newest first:",
        width=110,
    )
    out.append("")
    for p in pt.profiles:
        out.append(f"* ``{p.name}``: {_rst_text(p.summary)}")
    out.append("")
    header = ["Field", *(f"``{p.name}``" for p in pt.profiles), "Meaning"]
    rows = []
    for f in pt.fields:
        rows.append(
            [_rst_literal(f.name), *(_rst_profile_value(f, p.values[f.name]) for p in pt.profiles), _rst_text(f.doc)]
        )
    widths = [25, *([12] * len(pt.profiles)), 60]
    out += _rst_list_table("Differences between the profiles", header, rows, widths)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


_PROFILE_C_TYPES = {
    "bool": "bool", "int": "long", "str": "const char *", "version": "unsigned int", "errno": "int",
    "optional_errno": "int", "bits": "uint64_t",
}  # fmt: skip


def _c_profile_value(f: ProfileField, value: object) -> str:
    if f.type == "bool":
        return "true" if value else "false"
    if f.type == "int":
        return str(value)
    if f.type == "str":
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if f.type == "version":
        assert isinstance(value, list)
        return f"{{ {value[0]}, {value[1]} }}"
    if f.type in ("errno", "optional_errno"):
        return f"-XEN_{value}" if value else "0"
    assert isinstance(value, list)
    return hex(sum(1 << b for b in value))  # type: ignore[union-attr]


def emit_profiles_c_header(table: Table) -> str:
    pt = table.profile_table
    out = _c_comment_block(
        [
            *_c_generated_notice("hypercalls/profiles.toml"),
            "The Xen version profiles for the in-guest tests: what a check expects of each release. An errno",
            "field holds the negative value a hypercall returns; an optional errno 0 for none; a bits field",
            "the mask of its bits.",
        ]
    )
    out += [
        "#ifndef XENPY_GUEST_GENERATED_PROFILES_H",
        "#define XENPY_GUEST_GENERATED_PROFILES_H",
        "",
        "#include <stdbool.h>",
        "#include <stdint.h>",
        "",
        "#include <xen/errno.h>",
        "",
        "struct xen_profile {",
        "    const char *name;",
        "    const char *summary;",
    ]
    for f in pt.fields:
        doc = _c_wrap(f.doc, C_LINE - 7)
        comment = [f"/* {doc[0]} */"] if len(doc) == 1 else _c_comment_block(doc)
        out += ["", *(f"    {line}" for line in comment)]
        suffix = "[2]" if f.type == "version" else ""
        c_type = _PROFILE_C_TYPES[f.type]
        out.append(f"    {c_type}{'' if c_type.endswith('*') else ' '}{f.name}{suffix};")
    out += ["};", "", "/* Newest first, as in the table. */", f"#define NR_XEN_PROFILES {len(pt.profiles)}", ""]
    out.append("static const struct xen_profile xen_profiles[NR_XEN_PROFILES] = {")
    for p in pt.profiles:
        out.append("    {")
        out.append(f'        .name = "{p.name}",')
        out.append(f"        .summary = {_c_profile_value(ProfileField('summary', 'str', '', ...), p.summary)},")
        for f in pt.fields:
            out.append(f"        .{f.name} = {_c_profile_value(f, p.values[f.name])},")
        out.append("    },")
    out += ["};", "", "#endif /* XENPY_GUEST_GENERATED_PROFILES_H */"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------------------------------------

EMITTERS: tuple[tuple[Path, Callable[[Table], str]], ...] = (
    (OUT_PY_INIT, emit_py_init),
    (OUT_PY, emit_python),
    (OUT_H, emit_c_header),
    (OUT_RST, emit_rst),
    (OUT_PROFILES_PY, emit_profiles_python),
    (OUT_PROFILES_RST, emit_profiles_rst),
    (OUT_PROFILES_H, emit_profiles_c_header),
)


def render(table: Table) -> dict[Path, str]:
    """Every output file (relative path -> text) for ``table``."""
    return {path: emit(table) for path, emit in EMITTERS}


def write_outputs(root: Path, outputs: dict[Path, str]) -> list[Path]:
    """Write ``outputs`` under ``root``; return the files whose content changed."""
    changed = []
    for rel, text in outputs.items():
        path = root / rel
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        changed.append(rel)
    return changed


def stale_outputs(root: Path, outputs: dict[Path, str]) -> list[tuple[Path, str]]:
    """``(file, diff)`` for every output under ``root`` that is missing or differs from ``outputs``."""
    stale = []
    for rel, text in outputs.items():
        path = root / rel
        if not path.exists():
            stale.append((rel, f"{rel}: missing\n"))
            continue
        current = path.read_text(encoding="utf-8")
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"{rel} (on disk)",
                tofile=f"{rel} (generated)",
                n=1,
            )
            stale.append((rel, "".join(diff)))
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if any output is missing or stale"
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=REPO_ROOT,
        help="directory the output paths are relative to (default: the repository root)",
    )
    args = parser.parse_args(argv)
    try:
        outputs = render(load_table(HERE))
    except TableError as exc:
        print(f"{GENERATOR}: error in hypercalls/{exc}", file=sys.stderr)
        return 2
    root: Path = args.root
    if args.check:
        stale = stale_outputs(root, outputs)
        for rel, diff in stale:
            print(f"stale: {rel}", file=sys.stderr)
            lines = diff.splitlines(keepends=True)
            sys.stderr.write("".join(lines[:40]))
            if len(lines) > 40:
                print(f"... ({len(lines) - 40} more diff lines)", file=sys.stderr)
        if stale:
            print(f"{len(stale)} generated file(s) out of date: run `python3 {GENERATOR}`", file=sys.stderr)
            return 1
        return 0
    for rel in write_outputs(root, outputs):
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
