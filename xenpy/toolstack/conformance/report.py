"""The suite's results for people and for tools: the matrix as text, JSON and JUnit XML, and the docs page."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import defaultdict

from xenpy.abi.generated.hypercalls import EvtchnOp, SchedOp, VcpuOp
from xenpy.toolstack.conformance.checks import GuestResult
from xenpy.toolstack.conformance.suite import SuiteResult

JSON_FORMAT_VERSION = 1


def _xen_cell(result: SuiteResult, column_index: int, test: str) -> str:
    column = result.xen[column_index]
    got = column.results.get(test)
    if got is None:
        return "-"
    differs = [d for d in column.disagreements if d.test == test]
    return f"{got.outcome} ({len(differs)} differ)" if differs else got.outcome


def matrix_text(result: SuiteResult) -> str:
    """The matrix (test x profile, then test x real Xen), each failed check and each disagreement."""
    header = ["test", *result.profiles, *(c.label for c in result.xen)]
    rows = []
    for test in result.tests:
        row = [test.name, *(result.xenpy[(test.name, p)].outcome for p in result.profiles)]
        row += [_xen_cell(result, i, test.name) for i in range(len(result.xen))]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    for (test, profile), got in result.xenpy.items():
        for check in got.failed:
            lines.append(f"FAIL {test} [{profile}] {check.id}: {check.what}: got {check.got} want {check.want}")
        if got.outcome == "CRASH":
            tail = got.console.strip().splitlines()[-1:] or ["(no output)"]
            lines.append(f"CRASH {test} [{profile}]: no verdict; last line: {tail[0]}")
    for column in result.xen:
        if column.error:
            lines.append(f"{column.label}: not run: {column.error}")
        for d in column.disagreements:
            lines.append(f"DIFFER {d.test} {d.check}: xenpy {d.xenpy}, {column.label} {d.xen}")
    return "\n".join(lines) + "\n"


def _result_json(got: GuestResult) -> dict[str, object]:
    return {
        "outcome": got.outcome,
        "kernel_profile": got.profile,
        "checks": [
            {"id": c.id, "section": c.section, "what": c.what, "got": c.got, "want": c.want, "ok": c.ok,
             "depends_on": c.depends_on}
            for c in got.checks
        ],
    }  # fmt: skip


def to_json(result: SuiteResult) -> str:
    """The whole result as a JSON document (``format`` versioned)."""
    doc = {
        "format": JSON_FORMAT_VERSION,
        "passed": result.passed,
        "profiles": result.profiles,
        "tests": [{"name": t.name, "vcpus": t.vcpus, "pcpus": t.pcpus} for t in result.tests],
        "xenpy": [{"test": t, "profile": p, **_result_json(r)} for (t, p), r in result.xenpy.items()],
        "xen": [
            {
                "path": str(c.path),
                "version": c.version,
                "error": c.error,
                "runs": [{"test": t, **_result_json(r)} for t, r in c.results.items()],
                "disagreements": [{"test": d.test, "check": d.check, "xenpy": d.xenpy, "xen": d.xen}
                                  for d in c.disagreements],
            }
            for c in result.xen
        ],
    }  # fmt: skip
    return json.dumps(doc, indent=2) + "\n"


def to_junit(result: SuiteResult) -> str:
    """JUnit XML: a testsuite per xenpy profile and per real Xen, a testcase per test kernel."""
    root = ET.Element("testsuites", name="xenpy conformance")
    for profile in result.profiles:
        suite = ET.SubElement(root, "testsuite", name=f"xenpy {profile}")
        runs = [(t.name, result.xenpy[(t.name, profile)]) for t in result.tests]
        _junit_cases(suite, profile, runs, {})
    for column in result.xen:
        suite = ET.SubElement(root, "testsuite", name=column.label)
        differs: dict[str, list[str]] = defaultdict(list)
        for d in column.disagreements:
            differs[d.test].append(f"{d.check}: xenpy {d.xenpy}, {column.label} {d.xen}")
        if column.error:
            case = ET.SubElement(suite, "testcase", classname=column.label, name="boot")
            ET.SubElement(case, "error", message=column.error)
        _junit_cases(suite, column.label, list(column.results.items()), differs)
    for suite in root:
        cases = list(suite.iter("testcase"))
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
        suite.set("errors", str(sum(1 for c in cases if c.find("error") is not None)))
        suite.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _junit_cases(suite: ET.Element, classname: str, runs: list[tuple[str, GuestResult]],
                 differs: dict[str, list[str]]) -> None:  # fmt: skip
    for name, got in runs:
        case = ET.SubElement(suite, "testcase", classname=classname, name=name)
        problems = [f"{c.id}: {c.what}: got {c.got} want {c.want}" for c in got.failed] + differs.get(name, [])
        if got.outcome in ("ERROR", "CRASH"):
            ET.SubElement(case, "error", message=got.outcome).text = "\n".join(problems) or got.console[-2000:]
        elif got.outcome == "FAILURE" or problems:
            ET.SubElement(case, "failure", message=problems[0] if problems else got.outcome).text = "\n".join(
                problems
            )
        elif got.outcome == "SKIP":
            ET.SubElement(case, "skipped")
        ET.SubElement(case, "system-out").text = got.console


def coverage(result: SuiteResult, profile: str) -> dict[str, list[str]]:
    """For each sub-op the checks name: ``test.check`` ids that exercise it (from ``profile``'s runs)."""
    found: dict[str, list[str]] = defaultdict(list)
    for test in result.tests:
        got = result.xenpy.get((test.name, profile))
        for check in got.checks if got else ():
            for subop in check.subops:
                found[subop].append(f"{test.name}.{check.id}")
    return dict(sorted(found.items()))


#: The families whose every sub-op the docs page lists, covered or not.
COVERED_FAMILIES = (VcpuOp, SchedOp, EvtchnOp)


def docs_page(result: SuiteResult, coverage_profile: str = "head") -> str:
    """The docs page (Markdown): the matrix, then the checks that cover each sub-op of :data:`COVERED_FAMILIES`."""
    out = [
        "# Conformance matrix",
        "",
        "Generated by `xenpy conformance --markdown docs/reference/conformance.md"
        + "".join(f" --xen {c.path.name}" for c in result.xen)
        + "`: each in-guest test kernel of `guest/tests/` run on xenpy under each profile, and booted as dom0 of "
        "each real Xen build, whose check lines are compared with xenpy's under the profile the kernel chose.",
        "",
    ]
    header = ["test", "vCPUs", *result.profiles, *(c.label for c in result.xen)]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "---|" * len(header))
    for test in result.tests:
        row = [f"`{test.name}`", str(test.vcpus), *(result.xenpy[(test.name, p)].outcome for p in result.profiles)]
        row += [_xen_cell(result, i, test.name) for i in range(len(result.xen))]
        out.append("| " + " | ".join(row) + " |")
    for column in result.xen:
        notes = [f"{column.label} was not run: {column.error}."] if column.error else []
        notes += [f"- {d.test} `{d.check}`: xenpy {d.xenpy}, {column.label} {d.xen}" for d in column.disagreements]
        out += ["", *notes] if notes else []
    coverage_profile = coverage_profile if coverage_profile in result.profiles else result.profiles[0]
    found = coverage(result, coverage_profile)
    out += ["", f"## Checks by sub-op (profile `{coverage_profile}`)", ""]
    for family in COVERED_FAMILIES:
        prefix = next(iter(family)).name.split("_")[0]
        out += [f"### {prefix}_*", "", "| sub-op | checks |", "|---|---|"]
        for member in family:
            ids = found.pop(member.name, [])
            out.append(f"| `{member.name}` | {', '.join(f'`{i}`' for i in ids) if ids else 'none'} |")
        out.append("")
    if found:
        out += ["### Other hypercalls and sub-ops", "", "| name | checks |", "|---|---|"]
        out += [f"| `{name}` | {', '.join(f'`{i}`' for i in ids)} |" for name, ids in found.items()]
        out.append("")
    while out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"
