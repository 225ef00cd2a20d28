"""Debian's Xen builds for the real-Xen oracle, and Xen's own user-space checkers, fetched with ``apt-get download``
and unpacked.

The checkers (``TOOLS_PACKAGES``, from Debian 12) go into ``DEST/tools`` as ``dpkg-deb -x`` leaves them: Xen's
migration stream validator ``usr/lib/xen-4.17/bin/verify-stream-v2`` (with its Python modules under
``usr/lib/xen-4.17/lib/python``), ``test-xenstore``, and the xenstore clients with their libraries.

The 4.17 build is in Debian 12 (bookworm, with its security updates); the 4.20 build in Debian 13 (trixie).
The Debian source this machine is configured with is reused: every configured entry, plus the same archive's
``trixie`` (and ``trixie-security``) suites, in a private sources list and package index under ``DEST``, so
nothing of the machine's own apt state changes and no host is named here.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Xen release -> its Debian package (the hypervisor image is ``boot/xen-<release>-amd64.gz`` in it).
PACKAGES = {"4.17": "xen-hypervisor-4.17-amd64", "4.20": "xen-hypervisor-4.20-amd64"}
#: Xen's user-space checkers, all from Debian 12 (bookworm).
TOOLS_PACKAGES = ("xen-utils-4.17", "xenstore-utils", "libxenstore4", "libxentoolcore1")
TOOLS_SUITE = "bookworm"
DEFAULT_DEST = Path.home() / ".cache" / "xenpy" / "xen"
_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
_EXTRA_SUITES = {"bookworm": "trixie", "bookworm-security": "trixie-security"}


class FetchError(Exception):
    """The Xen builds cannot be fetched (one line)."""


@dataclass(frozen=True)
class SourceEntry:
    """One ``deb`` entry of the configured apt sources."""

    uri: str
    suite: str
    components: tuple[str, ...]
    signed_by: str = ""

    def line(self) -> str:
        options = f" [signed-by={self.signed_by}]" if self.signed_by else ""
        return f"deb{options} {self.uri} {self.suite} {' '.join(self.components)}"


def configured_sources(paths: tuple[Path, ...] = _SOURCES) -> list[SourceEntry]:
    """The ``deb`` entries of the machine's apt configuration (one-line and deb822 formats)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".list", ".sources"))
        elif path.is_file():
            files.append(path)
    entries: list[SourceEntry] = []
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        entries += _deb822(text) if file.suffix == ".sources" else _one_line(text)
    return entries


def _one_line(text: str) -> list[SourceEntry]:
    entries = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^deb\s+(?:\[(?P<opts>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)\s*(?P<comps>.*)$", line)
        if m:
            signed = re.search(r"signed-by=(\S+)", m["opts"] or "")
            entries.append(SourceEntry(m["uri"], m["suite"], tuple(m["comps"].split()) or ("main",),
                                       signed.group(1) if signed else ""))  # fmt: skip
    return entries


def _deb822(text: str) -> list[SourceEntry]:
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                entries.append(SourceEntry(uri, suite, tuple(fields.get("components", "main").split()),
                                           fields.get("signed-by", "")))  # fmt: skip
    return entries


def oracle_sources(entries: list[SourceEntry]) -> list[SourceEntry]:
    """``entries`` plus, for each bookworm suite, the same archive's trixie suite (for Xen 4.20)."""
    extra = [
        SourceEntry(e.uri, _EXTRA_SUITES[e.suite], e.components, e.signed_by)
        for e in entries
        if e.suite in _EXTRA_SUITES
    ]
    return list(dict.fromkeys([*entries, *extra]))


def tools_dir(dest: Path = DEFAULT_DEST) -> Path:
    """Where :func:`fetch_xen` unpacks Xen's user-space checkers."""
    return dest / "tools"


def fetch_xen(dest: Path = DEFAULT_DEST, releases: tuple[str, ...] = tuple(PACKAGES), *,
              tools: bool = True) -> dict[str, Path]:  # fmt: skip
    """Download and unpack the Xen hypervisor of each release into ``dest``, and (``tools``) Xen's user-space
    checkers into :func:`tools_dir`; release -> image path.

    What is already in ``dest`` is kept. Raises:
        FetchError: apt-get or dpkg-deb is missing, no Debian source is configured, or a download failed.
    """
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise FetchError(f"{tool} not found: fetching Xen needs Debian's apt (or give --xen PATH)")
    unknown = [r for r in releases if r not in PACKAGES]
    if unknown:
        raise FetchError(f"no Debian package known for Xen {unknown[0]} (known: {', '.join(PACKAGES)})")
    dest.mkdir(parents=True, exist_ok=True)
    images = {r: dest / f"xen-{r}" for r in releases}
    missing = [r for r in releases if not images[r].is_file()]
    tools_stamp = tools_dir(dest) / ".complete"
    want_tools = tools and not tools_stamp.is_file()
    if not missing and not want_tools:
        return images
    apt = _private_apt(dest)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        packages = [PACKAGES[r] for r in missing]
        if want_tools:
            packages += [f"{name}/{TOOLS_SUITE}" for name in TOOLS_PACKAGES]
        _run([*apt, "download", *packages], "apt-get download", cwd=Path(tmp))
        for release in missing:
            unpacked = Path(tmp) / release
            _run(["dpkg-deb", "-x", str(_deb(Path(tmp), PACKAGES[release])), str(unpacked)], "dpkg-deb -x")
            compressed = unpacked / "boot" / f"xen-{release}-amd64.gz"
            if not compressed.is_file():
                raise FetchError(f"{PACKAGES[release]} has no boot/{compressed.name}")
            with gzip.open(compressed) as src, open(images[release].with_suffix(".part"), "wb") as out:
                shutil.copyfileobj(src, out)
            images[release].with_suffix(".part").replace(images[release])
        if want_tools:
            for name in TOOLS_PACKAGES:
                _run(["dpkg-deb", "-x", str(_deb(Path(tmp), name)), str(tools_dir(dest))], "dpkg-deb -x")
            tools_stamp.touch()
    return images


def _private_apt(dest: Path) -> list[str]:
    """apt-get with a private sources list and index under ``dest`` (updated once here)."""
    entries = oracle_sources(configured_sources())
    if not entries:
        raise FetchError("no deb source in /etc/apt/sources.list(.d)")
    state = dest / "apt"
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    sources = state / "sources.list"
    sources.write_text("".join(e.line() + "\n" for e in entries), encoding="utf-8")
    apt = [
        "apt-get", "-q",
        "-o", f"Dir::Etc::sourcelist={sources}", "-o", "Dir::Etc::sourceparts=-",
        "-o", f"Dir::State::Lists={state / 'lists'}", "-o", f"Dir::Cache={state / 'cache'}",
        "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip
    _run([*apt, "update"], "apt-get update")
    return apt


def _deb(directory: Path, package: str) -> Path:
    debs = sorted(directory.glob(f"{package}_*.deb"))
    if not debs:
        raise FetchError(f"apt-get download left no {package} package")
    return debs[-1]


def _run(argv: list[str], what: str, cwd: Path | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd)
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.startswith(("E:", "dpkg-deb"))]
        raise FetchError(f"{what} failed: {(lines or (done.stderr or done.stdout).splitlines() or ['?'])[-1]}")
