"""``xenpy abi``: show Xen public structures and decode bytes into named fields.

    xenpy abi list [--arch x86_64|x86_32]
    xenpy abi show NAME [--arch x86_64|x86_32]
    xenpy abi decode NAME FILE [--arch ...] [--offset N]
    xenpy abi decode NAME --hex HEX [--arch ...]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from xenpy.abi.cstruct import CArray, CPrim, CStruct, CType, CUnion, layout_rows
from xenpy.abi.structs import ARCHES, build_abi, header_of
from xenpy.cli.errors import CliError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``xenpy abi`` and its sub-commands."""
    abi = subparsers.add_parser(
        "abi", help="show Xen public structures and decode bytes",
        description="Show the layout of Xen's public structures (as xenpy defines them) and decode raw bytes.")
    commands = abi.add_subparsers(dest="abi_command", metavar="COMMAND", required=True)

    listing = commands.add_parser("list", help="list the structures and their sizes")
    _add_arch(listing)
    listing.set_defaults(handler=_list)

    show = commands.add_parser("show", help="print a structure's fields with offset, size and type")
    show.add_argument("name", metavar="NAME", help="structure name, as in Xen's C (e.g. vcpu_runstate_info)")
    _add_arch(show)
    show.set_defaults(handler=_show)

    decode = commands.add_parser("decode", help="decode bytes into a structure's named fields")
    decode.add_argument("name", metavar="NAME", help="structure name, as in Xen's C")
    source = decode.add_mutually_exclusive_group(required=True)
    source.add_argument("file", metavar="FILE", nargs="?", help="file holding the bytes ('-' for stdin)")
    source.add_argument("--hex", metavar="HEX", help="the bytes as hexadecimal (spaces allowed)")
    decode.add_argument("--offset", type=_nonnegative, default=0, metavar="N",
                        help="start at byte N of FILE (default 0)")
    _add_arch(decode)
    decode.set_defaults(handler=_decode)


def _add_arch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", choices=ARCHES, default="x86_64", help="guest width (default x86_64)")


def _nonnegative(text: str) -> int:
    value = int(text, 0)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _lookup(name: str, arch: str) -> CStruct | CUnion:
    structs = build_abi(arch)
    found = structs.get(name.removeprefix("struct ").strip())
    if found is None:
        hint = [n for n in structs if name in n][:5]
        more = f" (did you mean: {', '.join(hint)}?)" if hint else "; 'xenpy abi list' lists them"
        raise CliError(f"unknown structure {name!r} for {arch}{more}")
    return found


def _list(args: argparse.Namespace) -> int:
    for name, struct in sorted(build_abi(args.arch).items()):
        print(f"{name:40} {struct.sizeof():6}  {header_of(args.arch, name)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    struct = _lookup(args.name, args.arch)
    kind = "union" if isinstance(struct, CUnion) else "struct"
    print(f"{kind} {struct.c_name} ({args.arch}, {header_of(args.arch, struct.c_name)}): "
          f"sizeof {struct.c_size}, align {struct.c_align}")
    print(f"{'offset':>8} {'size':>6}  {'type':28} field")
    for row in layout_rows(struct):
        print(f"{row.offset:8} {row.size:6}  {row.c_type:28} {'  ' * row.depth}{row.path}")
    return 0


def _decode(args: argparse.Namespace) -> int:
    struct = _lookup(args.name, args.arch)
    data = _read_bytes(args)
    if len(data) != struct.c_size:
        raise CliError(f"{struct.c_name} ({args.arch}) is {struct.c_size} bytes; got {len(data)}")
    parsed = struct.parse(data)
    print(f"{struct.c_name} ({args.arch}, {struct.c_size} bytes)")
    for offset, path, value in _decoded(struct, parsed, "", 0):
        print(f"{offset:8}  {path} = {value}")
    return 0


def _read_bytes(args: argparse.Namespace) -> bytes:
    struct_size = _lookup(args.name, args.arch).c_size
    if args.hex is not None:
        text = "".join(args.hex.split()).removeprefix("0x")
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise CliError("--hex: not a hexadecimal byte string") from None
    try:
        if args.file == "-":
            import sys

            data = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as stream:
                data = stream.read()
    except OSError as error:
        raise CliError(f"cannot read {args.file}: {error.strerror}") from None
    if args.offset or len(data) > struct_size:
        data = data[args.offset:args.offset + struct_size]
    return data


def _decoded(c_type: CType, value: Any, path: str, offset: int) -> Iterator[tuple[int, str, str]]:
    if isinstance(c_type, CStruct | CUnion):
        for field in c_type.c_members:
            yield from _decoded(field.c_type, value[field.name], _join(path, field.name),
                                offset + field.offset)
    elif isinstance(c_type, CArray) and isinstance(value, list):
        if isinstance(c_type.element, CPrim):
            yield offset, path, "[" + ", ".join(str(v) for v in value) + "]"
        else:
            for index, item in enumerate(value):
                yield from _decoded(c_type.element, item, f"{path}[{index}]", offset + index * c_type.element.size)
    elif isinstance(value, bytes):
        yield offset, path, _byte_string(value)
    else:
        assert isinstance(c_type, CPrim)
        yield offset, path, _scalar(c_type, value)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _scalar(c_type: CPrim, value: int) -> str:
    return str(value) if c_type.size == 1 or abs(value) < 10 else f"{value} ({value & ((1 << c_type.size * 8) - 1):#x})"


def _byte_string(data: bytes) -> str:
    if not any(data):
        return f"<{len(data)} zero bytes>"
    text, _, rest = data.partition(b"\0")
    if text and not any(rest) and all(32 <= b < 127 for b in text):
        return repr(text.decode("ascii"))
    return data.rstrip(b"\0").hex(" ") + (f" (+{len(data) - len(data.rstrip(bytes(1)))} zero bytes)"
                                          if data.endswith(b"\0") else "")
