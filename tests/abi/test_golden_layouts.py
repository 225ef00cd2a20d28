"""xenpy.abi layouts against the spec's section 5 tables, transcribed by hand in ``golden_layouts.json``.

The golden file is the independent reference: it was written from the spec, never dumped from xenpy.abi, so a
wrong Python definition cannot agree with it by construction.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .cprobe import ARCHES, STRUCTS, covered_bytes

GOLDEN = json.loads((Path(__file__).with_name("golden_layouts.json")).read_text())

# Structures the ABI must provide at both widths (iret_context: x86_64 only, as in Xen's xen-x86_64.h).
REQUIRED = (
    "vcpu_runstate_info",
    "vcpu_register_runstate_memory_area",
    "vcpu_set_periodic_timer",
    "vcpu_set_singleshot_timer",
    "vcpu_register_vcpu_info",
    "vcpu_get_physid",
    "vcpu_register_time_memory_area",
    "vcpu_time_info",
    "arch_vcpu_info",
    "vcpu_info",
    "arch_shared_info",
    "shared_info",
    "start_info",
    "cpu_user_regs",
    "trap_info",
    "vcpu_guest_context",
    "sched_shutdown",
    "sched_poll",
    "sched_remote_shutdown",
    "evtchn_alloc_unbound",
    "evtchn_bind_interdomain",
    "evtchn_bind_virq",
    "evtchn_bind_pirq",
    "evtchn_bind_ipi",
    "evtchn_close",
    "evtchn_send",
    "evtchn_status",
    "evtchn_bind_vcpu",
    "evtchn_unmask",
    "evtchn_reset",
    "evtchn_init_control",
    "evtchn_expand_array",
    "evtchn_set_priority",
    "evtchn_op",
    "callback_register",
    "xennmi_callback",
    "mmu_update",
    "mmuext_op",
    "multicall_entry",
    "xen_memory_reservation",
    "xen_machphys_mapping",
    "gnttab_setup_table",
    "gnttab_query_size",
    "gnttab_get_version",
    "gnttab_map_grant_ref",
    "gnttab_unmap_grant_ref",
    "gnttab_unmap_and_replace",
    "gnttab_set_version",
    "gnttab_get_status_frames",
    "grant_entry_v1",
    "grant_entry_header",
    "grant_entry_v2",
)
X86_64_ONLY = ("iret_context",)


def _golden_params() -> list:
    return [pytest.param(arch, name, id=f"{arch}-{name}") for arch in ARCHES for name in GOLDEN[arch]]


@pytest.mark.parametrize(("arch", "name"), _golden_params())
def test_layout_matches_spec(arch: str, name: str) -> None:
    """sizeof, alignment, field offsets and sizes equal the spec's tables (spec 5.1-5.9, or the Xen header
    named in ``section``)."""
    golden = GOLDEN[arch][name]
    struct = STRUCTS[arch].get(name)
    assert struct is not None, f"{arch} has no structure {name} (spec {golden['section']})"
    mismatches = []
    if struct.sizeof() != golden["sizeof"]:
        mismatches.append(f"sizeof: python {struct.sizeof()}, spec {golden['sizeof']}")
    if "align" in golden and struct.c_align != golden["align"]:
        mismatches.append(f"align: python {struct.c_align}, spec {golden['align']}")
    for path, (offset, size) in golden.get("fields", {}).items():
        try:
            python_offset, python_size = struct.offset_of(path), struct.type_of(path).size
        except KeyError as error:
            mismatches.append(f"{path}: missing ({error})")
            continue
        if python_offset != offset:
            mismatches.append(f"{path} offset: python {python_offset}, spec {offset}")
        if size is not None and python_size != size:
            mismatches.append(f"{path} size: python {python_size}, spec {size}")
    for path in golden.get("absent", ()):
        with pytest.raises(KeyError):
            struct.offset_of(path)
    covered = covered_bytes(struct)
    for offset, size in golden.get("padding", ()):
        overlap = covered & set(range(offset, offset + size))
        if overlap:
            mismatches.append(
                f"padding [{offset}, {offset + size}) is covered by members at {sorted(overlap)}"
            )
    assert not mismatches, f"{arch} {name} differs from spec {golden['section']}:\n" + "\n".join(mismatches)


@pytest.mark.parametrize("arch", ARCHES)
def test_required_structures_exist(arch: str) -> None:
    """Every structure the PV interface needs exists at both widths; iret_context at x86_64 only (spec 5)."""
    required = REQUIRED + (X86_64_ONLY if arch == "x86_64" else ())
    missing = [name for name in required if name not in STRUCTS[arch]]
    assert not missing, f"{arch} lacks {missing}"
    for name in required:
        assert STRUCTS[arch][name].c_name == name
    if arch == "x86_32":
        assert not set(X86_64_ONLY) & STRUCTS[arch].keys()


def test_golden_file_covers_the_spec_tables() -> None:
    """The golden file holds every structure of spec 5.1-5.9, at both widths (x86_64-only ones excepted); the
    structures the spec has no table for name the Xen public header they were transcribed from."""
    spec_sections = {f"5.{n}" for n in range(1, 10)}
    for arch in ARCHES:
        sections = {entry["section"] for entry in GOLDEN[arch].values()}
        assert spec_sections <= sections
        assert all(section.startswith("public/") for section in sections - spec_sections), sections
    assert set(GOLDEN["x86_64"]) - set(GOLDEN["x86_32"]) == set(X86_64_ONLY)
    assert set(GOLDEN["x86_32"]) <= set(GOLDEN["x86_64"])


def test_padding_check_detects_members() -> None:
    """The padding check itself works: vcpu_info's padding is free, its members are covered."""
    vcpu_info = STRUCTS["x86_64"]["vcpu_info"]
    covered = covered_bytes(vcpu_info)
    assert not covered & set(range(2, 8))
    assert {0, 1, 8, 63} <= covered
