"""The conformance suite's machinery: check lines parsed, the suite table, xenpy runs, comparison, reports.

The suite's tests themselves are the in-guest kernels of ``guest/tests/``; every one of them runs under every
profile here (``test_every_suite_test_passes_on_xenpy``), so a behaviour that breaks turns a run red.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from xenpy.core.profiles import PROFILES
from xenpy.toolstack.conformance import report
from xenpy.toolstack.conformance.checks import parse_console
from xenpy.toolstack.conformance.suite import (
    GUEST_DIR,
    ConformanceError,
    SuiteResult,
    SuiteTest,
    XenColumn,
    compare,
    load_suite,
    profile_of_xen,
    run_on_xenpy,
    run_suite,
)

CONSOLE = """--- xenpy guest ---
Profile: head (command line)
check up-bad-vcpuid: [1.1] VCPUOP_up(vcpu 9999): got -2 want -2 ok
check down-state: [1.2] VCPUOP_is_up after VCPUOP_down: got 0 want 0 ok
check remote-state: [2.3] VCPUOP_get_runstate_info: state: got 1 want 1 ok (scheduler-dependent)
check mask: [3.5] EVTCHNOP_status: u.virq: got 0x5 want 0x6 FAIL
check dom0-only: [6.1] a domU's #PF: got 1 want 1 ok (domain-dependent)
check stack: [3.3] movb $0, (%rbp) at a non-canonical address: got 12 want 12 ok (cpu-dependent)
Test result: FAILURE
"""


def test_check_lines_parsed() -> None:
    got = parse_console(CONSOLE)
    assert got.outcome == "FAILURE"
    assert got.profile == "head"
    assert [c.id for c in got.checks] == ["up-bad-vcpuid", "down-state", "remote-state", "mask", "dom0-only", "stack"]
    first = got.checks[0]
    assert (first.section, first.what, first.got, first.want, first.ok) == ("1.1", "VCPUOP_up(vcpu 9999)", "-2",
                                                                             "-2", True)  # fmt: skip
    assert got.checks[1].subops == ("VCPUOP_is_up", "VCPUOP_down")
    assert [c.depends_on for c in got.checks] == [None, None, "scheduler", None, "domain", "cpu"]
    assert [c.compared for c in got.checks] == [True, True, False, True, False, False]
    assert [c.id for c in got.failed] == ["mask"]


def test_no_verdict_is_a_crash() -> None:
    """A console that ends without "Test result:" (the kernel died or hung) is CRASH."""
    assert parse_console("--- xenpy guest ---\ncheck a: [1] VCPUOP_up: got 0 want 0 ok\nPANIC: x\n").outcome == "CRASH"
    assert parse_console("").outcome == "CRASH"


def test_comparison_ignores_only_scheduler_domain_and_cpu_dependent_values() -> None:
    ours = parse_console(CONSOLE)
    theirs = parse_console(
        CONSOLE.replace("got 0 want 0 ok", "got 1 want 0 FAIL")
        .replace("state: got 1", "state: got 2")
        .replace("#PF: got 1 want 1", "#PF: got 0 want 0")
        .replace("got 12 want 12", "got 13 want 13")
        .replace("check mask", "check other")
    )
    found = {(d.check, d.xenpy, d.xen) for d in compare("t", ours, theirs)}
    assert found == {("down-state", "0", "1"), ("mask", "0x5", "(not run)"), ("other", "(not run)", "0x5")}


def test_profile_from_xen_version() -> None:
    """Kernels without a Profile line are compared under the profile their Xen's version names."""
    assert profile_of_xen("4.20.5-pre") == "4.20"
    assert profile_of_xen("4.17.7") == "4.17.7"
    assert profile_of_xen("4.17.3") == "4.17.3"
    assert profile_of_xen("4.17.9") == "4.17.7"  # same release line: the newest profile of it
    assert profile_of_xen("3.4.1") is None
    assert profile_of_xen("") is None


def test_suite_table_lists_every_test_directory() -> None:
    tests = load_suite()
    assert {t.name for t in tests} == {p.parent.name for p in (GUEST_DIR / "tests").glob("*/main.c")}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[test.hello]\nvcpus = 0\n", "must be positive"),
        ("[test.hello]\ncpus = 1\n", "unknown key 'cpus'"),
        ("[test.hello\n", "suite.toml"),
        ("[test.hello]\n[test.nosuch]\n", "test.nosuch has no guest/tests/ directory"),
        ("", "no entry for guest/tests/hello"),
    ],
)
def test_bad_suite_table_is_one_clear_error(tmp_path: Path, table: str, message: str) -> None:
    (tmp_path / "tests" / "hello").mkdir(parents=True)
    (tmp_path / "tests" / "hello" / "main.c").write_text("")
    (tmp_path / "tests" / "suite.toml").write_text(table)
    with pytest.raises(ConformanceError, match=message):
        load_suite(tmp_path)


@pytest.mark.needs_gcc
@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_suite_test_passes_on_xenpy(guest_build_dir: Path, profile: str) -> None:
    """The whole suite, under every profile: each kernel ends in SUCCESS (or SKIP) with no failed check."""
    result = run_suite(load_suite(), [profile])
    bad = {t: (r.outcome, [c.id for c in r.failed]) for (t, _), r in result.xenpy.items()
           if r.outcome not in ("SUCCESS", "SKIP")}  # fmt: skip
    assert not bad, report.matrix_text(result)
    assert result.passed


@pytest.mark.needs_gcc
def test_reports_are_well_formed(guest_build_dir: Path) -> None:
    result = run_suite([SuiteTest("hello"), SuiteTest("smp", vcpus=2)], ["head", "4.17.3"])
    result.xen.append(XenColumn(Path("xen-missing"), error="no such Xen image"))
    doc = json.loads(report.to_json(result))
    assert doc["format"] == report.JSON_FORMAT_VERSION
    assert doc["passed"] is False  # a real Xen that could not run is not a pass
    assert {(r["test"], r["profile"], r["outcome"]) for r in doc["xenpy"]} == {
        (t, p, "SUCCESS") for t in ("hello", "smp") for p in ("head", "4.17.3")
    }
    root = ET.fromstring(report.to_junit(result))
    suites = {s.get("name"): s for s in root}
    assert suites["xenpy head"].get("tests") == "2" and suites["xenpy head"].get("failures") == "0"
    assert suites["Xen xen-missing"].get("errors") == "1"
    text = report.matrix_text(result)
    assert text.splitlines()[0].split() == ["test", "head", "4.17.3", "Xen", "xen-missing"]
    assert "Xen xen-missing: not run: no such Xen image" in text
    page = report.docs_page(result)
    assert "| `VCPUOP_up` |" in page and "| `EVTCHNOP_status` |" in page and "| `SCHEDOP_poll` |" in page


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    def xenpy(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "xenpy", *args], capture_output=True, text=True)

    missing = xenpy("conformance", "--xen", str(tmp_path / "nope"))
    assert missing.returncode != 0
    assert missing.stderr == f"xenpy: error: --xen {tmp_path / 'nope'}: no such file\n"
    unknown = xenpy("conformance", "--test", "nosuch")
    assert unknown.returncode != 0
    assert unknown.stderr.startswith("xenpy: error: --test nosuch: no such test (known: ")
    assert len(unknown.stderr.splitlines()) == 1


@pytest.mark.needs_gcc
def test_a_test_kernel_that_dies_is_a_crash(guest_build_dir: Path, tmp_path: Path) -> None:
    """A kernel whose image is not a PV kernel cannot run: the suite says so in one line."""
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "test-pv64-x").write_bytes(b"\x7fELF not really")
    with pytest.raises(ConformanceError, match="test-pv64-x"):
        run_on_xenpy(SuiteTest("x"), "head", tmp_path)


def test_empty_result_passes() -> None:
    assert SuiteResult([], ["head"]).passed


#: Deliberately broken behaviours: (handler module, its errno constant, the wrong errno), the suite test and
#: its checks that must then FAIL.
BREAKAGES = [
    ("vcpu_op", "_ENOENT", "EINVAL", "vcpu-lifecycle", {"bad-vcpuid", "bad-vcpuid-huge", "bad-vcpuid-unknown-cmd"}),
    ("memory_op", "_ESRCH", "EINVAL", "memory", {"cur-no-such-domain"}),
]


@pytest.mark.needs_gcc
@pytest.mark.parametrize(("module", "name", "errno", "test", "failing"), BREAKAGES, ids=[b[1] for b in BREAKAGES])
def test_a_broken_behaviour_turns_the_matrix_red(
    guest_build_dir: Path, monkeypatch: pytest.MonkeyPatch, module: str, name: str, errno: str, test: str,
    failing: set[str],
) -> None:
    """xenpy answering -EINVAL instead of -ENOENT for a bad vCPU id (spec 1.1), or instead of -ESRCH for a domid
    that names no domain, fails the suite: the kernel's checks of it FAIL, its cell is FAILURE, the matrix
    names each check, and the suite does not pass."""
    import importlib

    from xenpy.abi.errno import XenErrno

    tests = [t for t in load_suite() if t.name == test]
    assert run_suite(tests, ["head"]).passed
    monkeypatch.setattr(importlib.import_module(f"xenpy.hypercall.handlers.{module}"), name, -int(XenErrno[errno]))
    result = run_suite(tests, ["head"])
    got = result.xenpy[(test, "head")]
    assert got.outcome == "FAILURE"
    assert {c.id for c in got.failed} >= failing
    assert not result.passed
    text = report.matrix_text(result)
    assert text.splitlines()[1].split() == [test, "FAILURE"]
    for check in failing:
        assert f"FAIL {test} [head] {check}: " in text
    assert f"got -{int(XenErrno[errno])} want " in text
