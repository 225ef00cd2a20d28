"""xenpy.abi layouts against gcc compiling the guest's C headers (``guest/include/xen``), on -m64 and -m32.

For every structure of ``xenpy.abi.x86_64`` and ``xenpy.abi.x86_32``, one probe per width asks gcc for the
struct's ``sizeof`` and alignment and, for every member path of :func:`~xenpy.abi.cstruct.layout_rows` (nested
struct and union members included), its ``offsetof``, its ``sizeof`` and, for integer members, its signedness.
Each must equal the Python layout: the C headers and the construct definitions describe one ABI.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from xenpy.abi.cstruct import CPrim, CStruct, CUnion, layout_rows

from .cprobe import ARCHES, GUEST_HEADERS, STRUCTS, arch_marks, arch_params, compile_c, run_probe


def _is_integer(c_type: object) -> bool:
    return isinstance(c_type, CPrim) and not c_type.c_name.startswith(("XEN_GUEST_HANDLE", "void"))


def _layout_probe_body(arch: str) -> list[str]:
    body = []
    for name, struct in STRUCTS[arch].items():
        c_type = f"{'union' if isinstance(struct, CUnion) else 'struct'} {struct.c_name}"
        body.append(f'    PROBE("{name} sizeof -", sizeof({c_type}));')
        body.append(f'    PROBE("{name} alignof -", __alignof__({c_type}));')
        for row in layout_rows(struct):
            member = f"(({c_type} *)0)->{row.path}"
            body.append(f'    PROBE("{name} offset {row.path}", __builtin_offsetof({c_type}, {row.path}));')
            body.append(f'    PROBE("{name} size {row.path}", sizeof({member}));')
            if _is_integer(struct.type_of(row.path)):
                # (T)-1 < (T)1 holds for signed T only (and, unlike "< 0", draws no -Wtype-limits warning).
                signed = f"(__typeof__({member}))-1 < (__typeof__({member}))1"
                body.append(f'    PROBE("{name} signed {row.path}", {signed});')
    return body


@pytest.fixture(scope="module")
def gcc_layout():
    """gcc's answers, per width, compiled once on first use: ``gcc_layout(arch)[(struct, kind, path)]``."""
    cache: dict[str, dict[tuple[str, str, str], int]] = {}

    def layout(arch: str) -> dict[tuple[str, str, str], int]:
        if arch not in cache:
            values, _ = run_probe(_layout_probe_body(arch), arch)
            cache[arch] = {tuple(key.split(" ")): value for key, value in values.items()}
        return cache[arch]

    return layout


def _struct_params() -> list:
    return [
        pytest.param(arch, name, marks=arch_marks(arch), id=f"{arch}-{name}")
        for arch in ARCHES
        for name in STRUCTS[arch]
    ]


@pytest.mark.parametrize(("arch", "name"), _struct_params())
def test_struct_layout_matches_gcc(gcc_layout, arch: str, name: str) -> None:
    """sizeof, alignment, and every member's offset, size and signedness equal gcc's (spec 5)."""
    struct = STRUCTS[arch][name]
    gcc = gcc_layout(arch)
    mismatches = []

    def check(kind: str, path: str, python: int) -> None:
        c_value = gcc.get((name, kind, path))
        if c_value != python:
            mismatches.append(f"{name}.{path} {kind}: python {python}, gcc {c_value}")

    check("sizeof", "-", struct.sizeof())
    check("alignof", "-", struct.c_align)
    for row in layout_rows(struct):
        check("offset", row.path, row.offset)
        check("size", row.path, row.size)
        c_type = struct.type_of(row.path)
        if _is_integer(c_type):
            check("signed", row.path, int(c_type.fmt.islower()))
    assert not mismatches, f"{arch} layout differs from gcc {arch}:\n" + "\n".join(mismatches)


@pytest.mark.parametrize("arch", arch_params())
def test_probe_covers_every_struct(gcc_layout, arch: str) -> None:
    """The probe reported on every structure and every member path, so no check passed by absence."""
    gcc = gcc_layout(arch)
    expected = {(name, "sizeof", "-") for name in STRUCTS[arch]}
    expected |= {
        (name, "offset", row.path) for name, struct in STRUCTS[arch].items() for row in layout_rows(struct)
    }
    assert expected <= gcc.keys()


@pytest.mark.parametrize("arch", arch_params())
def test_width_specific_members(gcc_layout, arch: str) -> None:
    """The headers take Xen's width branches: PV64-only and PV32-only members sit where spec 5.4/5.8 says."""
    gcc = gcc_layout(arch)
    if arch == "x86_64":
        assert gcc[("vcpu_guest_context", "offset", "syscall_callback_eip")] == 5128
        assert gcc[("shared_info", "offset", "wc_sec_hi")] == 3084
        assert ("iret_context", "sizeof", "-") in gcc
    else:
        assert gcc[("vcpu_guest_context", "offset", "event_callback_cs")] == 2780
        assert gcc[("shared_info", "offset", "arch.wc_sec_hi")] == 2340
        assert ("iret_context", "sizeof", "-") not in gcc


@pytest.mark.parametrize("arch", arch_params())
def test_headers_are_self_contained(arch: str) -> None:
    """Each guest header compiles alone, warning-free, as pedantic C and (constants only) as assembly."""
    jobs = [(header, f"#include <{header}>\nint probe_anchor;\n", ("-pedantic",)) for header in GUEST_HEADERS]
    jobs += [
        (f"{header} (assembly)", f"#include <{header}>\n", ("-D__ASSEMBLY__",)) for header in GUEST_HEADERS
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: (job[0], compile_c(job[1], arch, *job[2])), jobs))
    failures = {name: result.stderr for name, result in results if result.returncode != 0}
    assert not failures, "\n".join(f"{name}:\n{stderr}" for name, stderr in failures.items())


@pytest.mark.parametrize("arch", arch_params())
def test_guest_handles_are_one_pointer(arch: str) -> None:
    """XEN_GUEST_HANDLE(x) is exactly one pointer wide and aligned, as Python's ``Width.handle`` is."""
    values, _ = run_probe(
        [
            '    PROBE("size", sizeof(XEN_GUEST_HANDLE(void)));',
            '    PROBE("align", __alignof__(XEN_GUEST_HANDLE(const_void)));',
            '    PROBE("ptr", sizeof(void *));',
        ],
        arch,
    )
    pointer = STRUCTS[arch]["sched_poll"].type_of("ports")
    assert values == {"size": pointer.size, "align": pointer.align, "ptr": pointer.size}


def test_every_python_struct_is_checked() -> None:
    """The parametrisation walks every structure of both widths (nothing is silently left out)."""
    names = {(arch, name) for arch in ARCHES for name in STRUCTS[arch]}
    params = {tuple(param.values) for param in _struct_params()}
    assert params == names
    assert all(isinstance(struct, CStruct | CUnion) for arch in ARCHES for struct in STRUCTS[arch].values())
