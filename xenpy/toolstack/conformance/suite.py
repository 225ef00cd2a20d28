"""The conformance suite: its tests, their runs on xenpy (one per profile) and on real Xen, and the matrix.

The tests are the in-guest kernels of ``guest/tests/``, listed with how they are run in
``guest/tests/suite.toml``. On xenpy a test runs in this process under the virtual clock, with
``--profile P`` and ``profile=P`` on its command line. On real Xen it boots as dom0 under QEMU
(:mod:`.oracle`) and chooses its profile from Xen's version; it is then compared, check line by check line,
with a xenpy run under that profile: a check whose value differs is a disagreement, unless it is declared
scheduler-, domain- or CPU-dependent.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xenpy.core.profiles import PROFILES
from xenpy.engine import DEFAULT_ENGINE, create_engine
from xenpy.hypervisor import Hypervisor
from xenpy.loader import LoaderError
from xenpy.toolstack.boot import DEFAULT_MEMORY_MIB, HYPERVISOR_MEMORY_MIB, boot_pv_image
from xenpy.toolstack.conformance.checks import GuestResult, parse_console
from xenpy.toolstack.conformance.oracle import OracleError, XenBoot, boot_on_xen
from xenpy.toolstack.run import run_domain

#: The repository's guest/ directory (the in-guest tests and their Makefile).
GUEST_DIR = Path(__file__).resolve().parents[3] / "guest"
SUITE_TABLE = Path("tests") / "suite.toml"


class ConformanceError(Exception):
    """The suite cannot run: no guest directory, a bad suite table, a failed build (one line)."""


@dataclass(frozen=True)
class SuiteTest:
    """One test kernel of the suite (an entry of ``guest/tests/suite.toml``)."""

    name: str
    vcpus: int = 1
    pcpus: int = 1
    timeout: float = 60.0
    xen_pcpus: int | None = None  # CPUs of the QEMU machine on real Xen; None: as many as the vCPUs, at least 2
    oracle: bool = True  # False: never booted on real Xen (its cell there is "-")

    def image(self, guest_dir: Path) -> Path:
        return guest_dir / "build" / f"test-pv64-{self.name}"


@dataclass(frozen=True)
class Disagreement:
    """A check (or the outcome) whose xenpy value differs from real Xen's."""

    test: str
    check: str  # a check id, or "outcome"
    xenpy: str
    xen: str


@dataclass
class XenColumn:
    """One real Xen's runs: the outcome of each test there and how xenpy compares."""

    path: Path
    version: str = ""
    boots: dict[str, XenBoot] = field(default_factory=dict)
    results: dict[str, GuestResult] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)  # test -> the profile the kernel chose
    disagreements: list[Disagreement] = field(default_factory=list)
    error: str = ""

    @property
    def label(self) -> str:
        return f"Xen {self.version}" if self.version else f"Xen {self.path.name}"


@dataclass
class SuiteResult:
    """Everything a suite run found: the matrix (test x profile on xenpy, test x real Xen)."""

    tests: list[SuiteTest]
    profiles: list[str]
    xenpy: dict[tuple[str, str], GuestResult] = field(default_factory=dict)  # (test, profile) -> result
    xen: list[XenColumn] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every xenpy run SUCCESS or SKIP; every real Xen run the same as xenpy's, check for check."""
        if any(r.outcome not in ("SUCCESS", "SKIP") for r in self.xenpy.values()):
            return False
        return all(not col.error and not col.disagreements for col in self.xen)


def load_suite(guest_dir: Path = GUEST_DIR) -> list[SuiteTest]:
    """The suite's tests, as ``guest/tests/suite.toml`` lists them.

    Raises:
        ConformanceError: the table is missing or malformed, or a test directory has no entry (or the reverse).
    """
    path = guest_dir / SUITE_TABLE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConformanceError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConformanceError(f"{path}: {exc}") from None
    tests = []
    for name, entry in raw.get("test", {}).items():
        unknown = set(entry) - {"vcpus", "pcpus", "timeout", "xen_pcpus", "oracle"}
        if unknown:
            raise ConformanceError(f"{path}: test.{name}: unknown key {sorted(unknown)[0]!r}")
        try:
            test = SuiteTest(name, int(entry.get("vcpus", 1)), int(entry.get("pcpus", 1)),
                             float(entry.get("timeout", 60.0)),
                             int(entry["xen_pcpus"]) if "xen_pcpus" in entry else None,
                             bool(entry.get("oracle", True)))  # fmt: skip
        except (TypeError, ValueError) as exc:
            raise ConformanceError(f"{path}: test.{name}: {exc}") from None
        if test.vcpus < 1 or test.pcpus < 1 or test.timeout <= 0 or (test.xen_pcpus or 1) < 1:
            raise ConformanceError(f"{path}: test.{name}: vcpus, pcpus, xen_pcpus and timeout must be positive")
        tests.append(test)
    dirs = {p.parent.name for p in (guest_dir / "tests").glob("*/main.c")}
    listed = {t.name for t in tests}
    if dirs - listed:
        raise ConformanceError(f"{path}: no entry for guest/tests/{sorted(dirs - listed)[0]}")
    if listed - dirs:
        raise ConformanceError(f"{path}: test.{sorted(listed - dirs)[0]} has no guest/tests/ directory")
    return sorted(tests, key=lambda t: t.name)


def build_guests(guest_dir: Path = GUEST_DIR) -> None:
    """``make -C guest``: build what is missing or stale.

    Raises:
        ConformanceError: make is missing or the build failed (its last line).
    """
    try:
        done = subprocess.run(["make", "-s", "-C", str(guest_dir)], capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ConformanceError(f"make: {exc.strerror}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise ConformanceError(f"building the guest tests failed: {tail[0]}")


def run_on_xenpy(test: SuiteTest, profile: str, guest_dir: Path = GUEST_DIR, *,
                 engine: str = DEFAULT_ENGINE) -> GuestResult:  # fmt: skip
    """Run ``test`` on xenpy under ``profile`` (virtual clock) and parse its console.

    Raises:
        ConformanceError: the image cannot be read or loaded.
    """
    image_path = test.image(guest_dir)
    try:
        image = image_path.read_bytes()
    except OSError as exc:
        raise ConformanceError(f"{image_path}: {exc.strerror}") from None
    hv = Hypervisor(nr_pcpus=test.pcpus, memory_mib=DEFAULT_MEMORY_MIB + HYPERVISOR_MEMORY_MIB)
    try:
        booted = boot_pv_image(hv, image, max_vcpus=test.vcpus, memory_mib=DEFAULT_MEMORY_MIB,
                               cmdline=f"profile={profile}", profile=profile, name=f"test-pv64-{test.name}")
    except LoaderError as exc:
        raise ConformanceError(f"{image_path}: {exc}") from None  # fmt: skip
    chunks: list[bytes] = []
    unlisten = booted.domain.console.listen(chunks.append)
    try:
        create_engine(engine, hv)
        run_domain(hv, booted.domain, timeout_s=test.timeout)
        booted.console.close()
        booted.domain.console.flush()
    finally:
        unlisten()
    return parse_console(b"".join(chunks).decode(errors="replace"))


def run_on_xen(test: SuiteTest, xen: Path, guest_dir: Path = GUEST_DIR) -> tuple[GuestResult, XenBoot]:
    """Boot ``test`` as dom0 of the real Xen ``xen`` (it chooses its profile from Xen's version).

    Raises:
        OracleError: QEMU or the Xen image is missing.
    """
    boot = boot_on_xen(
        xen, test.image(guest_dir), vcpus=test.vcpus, pcpus=test.xen_pcpus, timeout_s=test.timeout + 60.0
    )
    return parse_console(boot.console), boot


def profile_of_xen(version: str) -> str | None:
    """The profile a kernel chooses on Xen ``version`` (``4.20.5-pre``), as ``test_profile()`` does: the newest
    with the same major.minor, one with the same extraversion if there is one. For kernels without a
    ``Profile:`` line."""
    m = re.match(r"^(\d+)\.(\d+)(.*)$", version)
    if m is None:
        return None
    same = [p for p in PROFILES.values() if p.version == (int(m[1]), int(m[2]))]
    exact = [p for p in same if p.extraversion == m[3]]
    found = exact or same
    return found[0].name if found else None


def compare(test: str, xenpy: GuestResult, xen: GuestResult) -> list[Disagreement]:
    """Where ``xenpy``'s run of ``test`` differs from real Xen's: the outcome, then each check by id."""
    found = []
    if xenpy.outcome != xen.outcome:
        found.append(Disagreement(test, "outcome", xenpy.outcome, xen.outcome))
    ours = {c.id: c for c in xenpy.checks}
    theirs = {c.id: c for c in xen.checks}
    for cid in dict.fromkeys([*ours, *theirs]):
        a, b = ours.get(cid), theirs.get(cid)
        if a is None or b is None:
            found.append(Disagreement(test, cid, a.got if a else "(not run)", b.got if b else "(not run)"))
        elif a.got != b.got and a.compared and b.compared:
            found.append(Disagreement(test, cid, a.got, b.got))
    return found


Progress = Callable[[str], None]


def run_suite(
    tests: Sequence[SuiteTest],
    profiles: Sequence[str],
    *,
    xen: Sequence[Path] = (),
    guest_dir: Path = GUEST_DIR,
    engine: str = DEFAULT_ENGINE,
    progress: Progress | None = None,
) -> SuiteResult:
    """Run every test under every profile on xenpy, then on each real Xen of ``xen`` (compared with xenpy).

    ``progress`` gets one line per finished run. A real Xen that cannot be run (no QEMU, no image) gets its
    column's ``error``; nothing else stops the suite.
    """
    for profile in profiles:
        if profile not in PROFILES:
            raise ConformanceError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    result = SuiteResult(list(tests), list(profiles))
    say = progress or (lambda _line: None)

    def xenpy_result(test: SuiteTest, profile: str) -> GuestResult:
        key = (test.name, profile)
        if key not in result.xenpy:
            result.xenpy[key] = run_on_xenpy(test, profile, guest_dir, engine=engine)
            say(f"xenpy {profile:>8}  {test.name:<20} {result.xenpy[key].outcome}")
        return result.xenpy[key]

    for profile in profiles:
        for test in tests:
            xenpy_result(test, profile)
    for path in xen:
        column = XenColumn(Path(path))
        result.xen.append(column)
        for test in tests:
            if not test.oracle:
                continue
            try:
                got, boot = run_on_xen(test, column.path, guest_dir)
            except OracleError as exc:
                column.error = str(exc)
                say(f"{column.label}: {exc}")
                break
            column.version = column.version or boot.xen_version
            column.results[test.name] = got
            column.boots[test.name] = boot
            say(f"{column.label:>14}  {test.name:<20} {got.outcome} ({boot.seconds:.1f} s)")
            profile = got.profile or profile_of_xen(boot.xen_version)
            if profile not in PROFILES:
                column.disagreements.append(Disagreement(test.name, "profile", "", profile or "(none)"))
                continue
            column.profiles[test.name] = profile
            column.disagreements += compare(test.name, xenpy_result(test, profile), got)
    return result
