"""Shared helpers of the ABI tests: the two widths, padding maps, the guest headers and gcc probes.

A probe is a C file whose only output is a list of ``.ascii "PROBE <key> <value>"`` lines in the assembly
gcc emits for it: each ``<value>`` is an integer constant expression (``sizeof``, ``offsetof``, a
``#define``) that gcc evaluates as an ``"i"`` asm operand. Nothing is assembled, linked or run, so one
``gcc -S`` per width answers every question, on any host that has gcc.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from types import MappingProxyType

import pytest

from xenpy.abi import x86_32, x86_64
from xenpy.abi.cstruct import CArray, CPrim, CStruct, CType, CUnion

REPO = Path(__file__).resolve().parents[2]
GUEST_INCLUDE = REPO / "guest" / "include"

ARCHES = ("x86_64", "x86_32")
STRUCTS: MappingProxyType[str, MappingProxyType[str, CStruct | CUnion]] = MappingProxyType(
    {"x86_64": x86_64.STRUCTS, "x86_32": x86_32.STRUCTS}
)
M_FLAG = {"x86_64": "-m64", "x86_32": "-m32"}

# Every guest header, as a guest includes it (-I guest/include).
GUEST_HEADERS = (
    "xen/arch-x86/xen.h",
    "xen/xen.h",
    "xen/vcpu.h",
    "xen/sched.h",
    "xen/event_channel.h",
    "xen/callback.h",
    "xen/nmi.h",
    "xen/version.h",
    "xen/memory.h",
    "xen/grant_table.h",
    "xen/io/console.h",
    "xen/io/xs_wire.h",
    "xen/features.h",
    "xen/elfnote.h",
    "xen/errno.h",
)

GCC = shutil.which("gcc")
GCC_FLAGS = ("-ffreestanding", "-S", "-O0", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o", "-", "-x", "c")

# PROBE(key, value): make gcc print "PROBE <key> <value>" into its assembly output.
PROBE_PRELUDE = r"""
#define PROBE(key, value) \
    __asm__ volatile (".ascii \"PROBE " key " %c0\\n\"" :: "i" ((unsigned long)(value)))
#define PROBE_MISSING(key) __asm__ volatile (".ascii \"MISSING " key "\\n\"")
"""

_PROBE_LINE = re.compile(r'\.ascii\s+"PROBE (.+) (-?\d+)\\n"')
_MISSING_LINE = re.compile(r'\.ascii\s+"MISSING (.+)\\n"')


@functools.cache
def covered_bytes(c_type: CType, base: int = 0) -> frozenset[int]:
    """Byte offsets covered by some member (padding is what is left)."""
    if isinstance(c_type, CStruct | CUnion):
        return frozenset().union(*(covered_bytes(f.c_type, base + f.offset) for f in c_type.c_members))
    if isinstance(c_type, CArray):
        element = c_type.element
        return frozenset().union(
            *(covered_bytes(element, base + index * element.size) for index in range(c_type.count))
        )
    assert isinstance(c_type, CPrim)
    return frozenset(range(base, base + c_type.size))


@functools.cache
def gcc_can_compile(arch: str) -> bool:
    """Whether gcc exists and can compile a freestanding translation unit for ``arch``."""
    if GCC is None:
        return False
    result = subprocess.run(
        [GCC, M_FLAG[arch], *GCC_FLAGS, "-"],
        input="#include <stdint.h>\nuint64_t probe;\n",
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0


def arch_marks(arch: str) -> list[pytest.MarkDecorator]:
    """The markers (and skip conditions) of a test that compiles C for ``arch``."""
    marks = [pytest.mark.needs_gcc, pytest.mark.skipif(GCC is None, reason="gcc is not on PATH")]
    if arch == "x86_32":
        marks += [
            pytest.mark.needs_gcc_m32,
            pytest.mark.skipif(
                GCC is not None and not gcc_can_compile(arch),
                reason="gcc cannot compile for -m32 (no 32-bit multilib)",
            ),
        ]
    return marks


def arch_params() -> list:
    """``arch`` parameters, each carrying its compiler markers."""
    return [pytest.param(arch, marks=arch_marks(arch), id=arch) for arch in ARCHES]


def compile_c(source: str, arch: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``gcc -S`` on ``source`` for ``arch`` with the guest include directory; return the run."""
    assert GCC is not None
    return subprocess.run(
        [GCC, M_FLAG[arch], f"-I{GUEST_INCLUDE}", *extra, *GCC_FLAGS, "-"],
        input=source,
        capture_output=True,
        text=True,
        check=False,
    )


def run_probe(body: list[str], arch: str) -> tuple[dict[str, int], set[str]]:
    """Compile a probe whose ``probe()`` function holds ``body``; return its values and its missing keys.

    Raises:
        AssertionError: gcc rejected the probe (its diagnostics are in the message).
    """
    includes = "".join(f"#include <{header}>\n" for header in GUEST_HEADERS)
    source = (
        f"{includes}{PROBE_PRELUDE}\nvoid probe(void);\nvoid probe(void)\n{{\n" + "\n".join(body) + "\n}\n"
    )
    result = compile_c(source, arch)
    assert result.returncode == 0, f"gcc {M_FLAG[arch]} rejected the probe:\n{result.stderr[:4000]}"
    values = {match.group(1): int(match.group(2)) for match in _PROBE_LINE.finditer(result.stdout)}
    missing = {match.group(1) for match in _MISSING_LINE.finditer(result.stdout)}
    return values, missing
