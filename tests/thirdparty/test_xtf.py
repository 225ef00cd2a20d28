"""XTF's pv64 tests on xenpy: every ``test-pv64-*`` image of a Xen Test Framework build ends as
``xtf_pv64.toml`` says (SUCCESS, or a verdict whose reason the table gives).

XTF is not packaged anywhere this project installs from: build its sources (``make`` in a checkout of
https://xenbits.xen.org/xtf.git) and point ``$XENPY_XTF_DIR`` at the tree (default ``~/.cache/xenpy/xtf``).
Without it the tier skips, saying so. A test the table marks as a gap is an expected failure (strict: once
xenpy passes it, the table must be updated). With the real-Xen oracle present, the tests the table records
as SUCCESS on Xen 4.20 as dom0 are booted there too and must still succeed.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest

from xenpy.engine import DEFAULT_ENGINE, create_engine
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import DEFAULT_MEMORY_MIB, HYPERVISOR_MEMORY_MIB, boot_pv_image
from xenpy.toolstack.conformance.checks import parse_console
from xenpy.toolstack.conformance.fetch import DEFAULT_DEST
from xenpy.toolstack.conformance.oracle import boot_on_xen, find_qemu
from xenpy.toolstack.run import run_domain

XTF_DIR = Path(os.environ.get("XENPY_XTF_DIR", Path.home() / ".cache" / "xenpy" / "xtf"))
TABLE = tomllib.loads((Path(__file__).with_name("xtf_pv64.toml")).read_text())["test"]
XEN_4_20 = Path(os.environ.get("XENPY_XEN_DIR", DEFAULT_DEST)) / "xen-4.20"
TIMEOUT_S = 60.0


def _instances() -> list[tuple[str, Path, str]]:
    """(name, image, command line) of every pv64 test of the XTF build, one per variation."""
    found = []
    for image in sorted(XTF_DIR.glob("tests/*/test-pv64-*")):
        if image.suffix or not image.is_file():
            continue
        base = image.name.removeprefix("test-pv64-")
        found.append((base, image, ""))
        info = image.with_name("info.json")
        variations = json.loads(info.read_text()).get("variations", []) if info.is_file() else []
        found += [(f"{base}~{v}", image, v) for v in variations]
    return found


INSTANCES = _instances()


def _xl_config(image: Path, variation: str) -> tuple[int, int]:
    """(vcpus, memory MiB) of the test's xl configuration (``test-pv64-NAME[~VARIATION].cfg``), as ``xl create``
    would boot it; 1 vCPU and xenpy's default memory where it says nothing."""
    cfg = image.with_name(f"{image.name}~{variation}.cfg" if variation else f"{image.name}.cfg")
    settings = {}
    if cfg.is_file():
        for line in cfg.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                settings[key.strip()] = value.split("#")[0].strip().strip('"')
    return int(settings.get("vcpus", 1)), int(settings.get("memory", DEFAULT_MEMORY_MIB))


def _run_on_xenpy(image: Path, cmdline: str) -> str:
    vcpus, memory_mib = _xl_config(image, cmdline)
    hv = Hypervisor(memory_mib=memory_mib + HYPERVISOR_MEMORY_MIB)
    booted = boot_pv_image(hv, image.read_bytes(), max_vcpus=vcpus, memory_mib=memory_mib, cmdline=cmdline,
                           name=image.name)  # fmt: skip
    chunks: list[bytes] = []
    unlisten = booted.domain.console.listen(chunks.append)
    try:
        create_engine(DEFAULT_ENGINE, hv)
        run_domain(hv, booted.domain, timeout_s=TIMEOUT_S)
        booted.console.close()
        booted.domain.console.flush()
    finally:
        unlisten()
    return b"".join(chunks).decode(errors="replace")


def test_the_table_names_every_test_of_the_build():
    if not INSTANCES:
        pytest.skip(f"no XTF build in {XTF_DIR} (set XENPY_XTF_DIR to a built XTF tree)")
    names = {name for name, _, _ in INSTANCES}
    assert not names - set(TABLE), f"XTF tests missing from xtf_pv64.toml: {sorted(names - set(TABLE))}"
    for name, entry in TABLE.items():
        assert entry["expect"] == "SUCCESS" or entry.get("reason"), f"{name}: a non-SUCCESS needs a reason"


@pytest.mark.parametrize(("name", "image", "cmdline"), INSTANCES, ids=[n for n, _, _ in INSTANCES])
def test_xtf_pv64_on_xenpy(name: str, image: Path, cmdline: str):
    entry = TABLE.get(name)
    if entry is None:
        pytest.fail(f"{name} is not in xtf_pv64.toml")
    console = _run_on_xenpy(image, cmdline)
    outcome = parse_console(console).outcome
    if entry.get("gap"):
        if outcome == entry["expect"]:
            pytest.xfail(entry["reason"])
        pytest.fail(f"{name}: now {outcome} (table: {entry['expect']}, a gap): update xtf_pv64.toml\n{console}")
    assert outcome == entry["expect"], f"{name}: {outcome}, want {entry['expect']}\n{console}"


ORACLE_CASES = [(n, i) for n, i, c in INSTANCES if not c and TABLE.get(n, {}).get("xen_dom0") == "SUCCESS"]


@pytest.mark.oracle
@pytest.mark.parametrize(("name", "image"), ORACLE_CASES, ids=[n for n, _ in ORACLE_CASES])
def test_xtf_pv64_succeeds_on_real_xen(name: str, image: Path):
    if find_qemu() is None or not XEN_4_20.is_file():
        pytest.skip(f"needs qemu-system-x86_64 and {XEN_4_20} (`xenpy fetch-xen`)")
    boot = boot_on_xen(XEN_4_20, image, vcpus=_xl_config(image, "")[0], timeout_s=TIMEOUT_S)
    assert parse_console(boot.console).outcome == "SUCCESS", boot.console
