"""The generated guest header ``guest/include/generated/hypercalls.h`` (spec 6.1, 7.3, 7.4).

It must compile as freestanding x86_64 C, call stub ``nr`` at ``hypercall_page + 32 * nr`` with the
arguments in rdi, rsi, rdx, r10, r8, and agree with the Python table.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from xenpy.abi.generated.hypercalls import HYPERCALLS, Hypercall

REPO = Path(__file__).resolve().parents[2]
HEADER = REPO / "guest" / "include" / "generated" / "hypercalls.h"
GCC = shutil.which("gcc")
CFLAGS = ["-m64", "-ffreestanding", "-fno-pic", "-Wall", "-Werror"]


def _compile(tmp_path: Path, source: str, *extra: str, out: str = "probe.o") -> Path:
    assert GCC is not None
    src = tmp_path / "probe.c"
    src.write_text(source)
    target = tmp_path / out
    result = subprocess.run(
        [GCC, *CFLAGS, *extra, "-I", str(HEADER.parent), str(src), "-o", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return target


def _wrappers() -> list[tuple[str, int]]:
    """``(name, nargs)`` of every hypercall the header must wrap."""
    return [
        (d.name, len(d.args))
        for d in HYPERCALLS.values()
        if d.defined and not d.internal and d.number != Hypercall.iret
    ]


@pytest.mark.needs_gcc
@pytest.mark.skipif(GCC is None, reason="gcc is not on PATH")
@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_header_compiles_and_every_wrapper_is_callable(tmp_path: Path, opt: str) -> None:
    """The header compiles freestanding with -Wall -Werror, and so does a call of every wrapper."""
    calls = "\n".join(
        f"    rc += HYPERVISOR_{name}({', '.join(['0'] * nargs)});" for name, nargs in _wrappers()
    )
    source = (
        f'#include "hypercalls.h"\n\nlong call_all(void)\n{{\n    long rc = 0;\n{calls}\n    return rc;\n}}\n'
    )
    _compile(tmp_path, source, opt, "-c")


@pytest.mark.needs_gcc
@pytest.mark.skipif(GCC is None, reason="gcc is not on PATH")
def test_wrappers_use_the_pv64_registers_and_stub_offsets(tmp_path: Path) -> None:
    """Spec 7.3/7.4: stub nr at hypercall_page + 32 * nr; args in rdi, rsi, rdx, r10, r8."""
    source = """#include "hypercalls.h"
long five(void)
{
    return HYPERVISOR_hypfs_op(0x11, (const char *)0x22, 0x33, (void *)0x44, 0x55);
}
long vcpu(void)
{
    return HYPERVISOR_vcpu_op(VCPUOP_is_up, 3, 0);
}
long raw(void)
{
    return _hypercall0(11);
}
"""
    asm = _compile(tmp_path, source, "-O2", "-S", out="probe.s").read_text()
    body = {m.group(1): m.group(2) for m in re.finditer(r"^(\w+):\n(.*?)\bret\b", asm, re.S | re.M)}
    five = body["five"]
    for value, reg in (
        (0x11, "edi|rdi"),
        (0x22, "esi|rsi"),
        (0x33, "edx|rdx"),
        (0x44, "r10d?"),
        (0x55, "r8d?"),
    ):
        assert re.search(rf"\$({value}|{hex(value)}),\s*%({reg})\b", five), (hex(value), reg, five)
    assert re.search(r"call\s+hypercall_page\s*\+\s*1344\b", five)  # 42 * 32
    assert re.search(r"call\s+hypercall_page\s*\+\s*768\b", body["vcpu"])  # 24 * 32
    assert re.search(r"\$3,\s*%(edi|rdi)\b", body["vcpu"])  # VCPUOP_is_up
    assert re.search(r"\$3,\s*%(esi|rsi)\b", body["vcpu"])  # vcpuid
    assert re.search(r"call\s+hypercall_page\s*\+\s*352\b", body["raw"])  # 11 * 32


def _defines(text: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^#define\s+(\w+)\s+(\d+)\s*$", text, re.M)}


def test_header_numbers_and_constants_match_the_table() -> None:
    text = HEADER.read_text()
    defines = _defines(text)
    numbers = {
        k.removeprefix("__HYPERVISOR_"): v for k, v in defines.items() if k.startswith("__HYPERVISOR_")
    }
    for defn in HYPERCALLS.values():
        if defn.defined and not defn.internal:
            assert numbers[defn.name] == defn.number
        for sub in defn.subops:
            if sub.internal:
                assert sub.name not in defines
            else:
                assert defines[sub.name] == sub.value
    assert {numbers[f"arch_{i}"] for i in range(8)} == set(range(48, 56))
    assert "paging_domctl_cont" not in numbers  # Xen-internal: only __HYPERVISOR_arch_1
    assert "unused_11" not in text


def test_iret_has_a_number_but_no_wrapper() -> None:
    """Spec 7.3: the guest jumps to stub 23; it is never called."""
    text = HEADER.read_text()
    assert _defines(text)["__HYPERVISOR_iret"] == 23
    assert not re.search(r"\bHYPERVISOR_iret\s*\(\s*\w", text)
    assert "static inline long HYPERVISOR_iret" not in text
    for name, _ in _wrappers():
        assert f"static inline long HYPERVISOR_{name}(" in text
