"""``xenpy conformance``: run the in-guest conformance suite on xenpy, and on real Xen if given.

    xenpy conformance [--profile P ...] [--test NAME ...] [--xen PATH ...] [--json FILE] [--junit FILE]
                      [--markdown FILE]
    xenpy fetch-xen [--dest DIR] [--no-tools] [RELEASE ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xenpy.cli.errors import CliError
from xenpy.core.profiles import PROFILES
from xenpy.toolstack.conformance import report
from xenpy.toolstack.conformance.fetch import DEFAULT_DEST, PACKAGES, FetchError, fetch_xen, tools_dir
from xenpy.toolstack.conformance.oracle import find_qemu
from xenpy.toolstack.conformance.suite import GUEST_DIR, ConformanceError, build_guests, load_suite, run_suite

#: Exit status when the suite ran and something failed or differed from real Xen.
EXIT_FAILED = 1


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``xenpy conformance`` and ``xenpy fetch-xen``."""
    conf = subparsers.add_parser(
        "conformance",
        help="run the in-guest conformance suite (on xenpy, and on real Xen with --xen)",
        description="Build what is missing of the in-guest test kernels (guest/tests/), run each under every "
        "profile on xenpy and print the matrix: test x profile, SUCCESS/SKIP/ERROR/FAILURE/CRASH (CRASH when "
        "the kernel printed no verdict). With --xen, each kernel is also booted as dom0 of that real Xen "
        "under QEMU and compared with xenpy, check line by check line, under the profile the kernel chose "
        "from Xen's version. Exit status 0 when everything passed and agreed, 1 otherwise.",
    )
    conf.add_argument("--profile", action="append", choices=list(PROFILES), metavar="P",
                      help=f"run under profile P (repeatable; default all: {', '.join(PROFILES)})")
    conf.add_argument("--test", action="append", metavar="NAME", help="run only test NAME (repeatable)")
    conf.add_argument("--xen", action="append", type=Path, default=[], metavar="PATH",
                      help="also boot every test on the Xen hypervisor image PATH (repeatable; needs "
                      "qemu-system-x86_64; `xenpy fetch-xen` gets Debian's builds)")
    conf.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON to FILE")
    conf.add_argument("--junit", type=Path, metavar="FILE", help="write the results as JUnit XML to FILE")
    conf.add_argument("--markdown", type=Path, metavar="FILE",
                      help="write the matrix and the checks of each sub-op as a Markdown page to FILE")
    conf.add_argument("--guest-dir", type=Path, default=GUEST_DIR, metavar="DIR",
                      help="the guest/ directory holding the tests (default: this checkout's)")
    conf.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    conf.set_defaults(handler=_conformance)

    fetch = subparsers.add_parser(
        "fetch-xen",
        help="fetch Debian's Xen builds for `xenpy conformance --xen`",
        description="Download Debian's Xen hypervisor packages with apt-get (4.17 from Debian 12, 4.20 from "
        "Debian 13, both from the Debian source this machine is configured with), unpack them and print the "
        "path of each hypervisor image. Xen's own checkers (verify-stream-v2, test-xenstore and the xenstore "
        "clients, from Debian 12) are unpacked into DIR/tools. What is already there is kept.",
    )
    fetch.add_argument("releases", nargs="*", metavar="RELEASE", choices=[[], *PACKAGES],
                       help=f"the releases to fetch (default all: {', '.join(PACKAGES)})")
    fetch.add_argument("--dest", type=Path, default=DEFAULT_DEST, metavar="DIR",
                       help=f"where to put them (default {DEFAULT_DEST})")
    fetch.add_argument("--no-tools", action="store_true", help="only the hypervisor images, not Xen's checkers")
    fetch.set_defaults(handler=_fetch)


def _conformance(args: argparse.Namespace) -> int:
    for path in args.xen:
        if not path.is_file():
            raise CliError(f"--xen {path}: no such file")
    if args.xen and find_qemu() is None:
        raise CliError("--xen needs qemu-system-x86_64 on PATH (Debian: apt-get install qemu-system-x86)")
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        tests = load_suite(args.guest_dir)
        if args.test:
            known = {t.name for t in tests}
            for name in args.test:
                if name not in known:
                    raise CliError(f"--test {name}: no such test (known: {', '.join(sorted(known))})")
            tests = [t for t in tests if t.name in args.test]
        build_guests(args.guest_dir)
        result = run_suite(tests, args.profile or list(PROFILES), xen=args.xen, guest_dir=args.guest_dir,
                           progress=progress)  # fmt: skip
    except ConformanceError as exc:
        raise CliError(str(exc)) from None
    print(report.matrix_text(result), end="")
    for path, text in ((args.json, report.to_json), (args.junit, report.to_junit), (args.markdown, report.docs_page)):
        if path is not None:
            try:
                path.write_text(text(result), encoding="utf-8")
            except OSError as exc:
                raise CliError(f"{path}: {exc.strerror}") from None
    return 0 if result.passed else EXIT_FAILED


def _fetch(args: argparse.Namespace) -> int:
    try:
        images = fetch_xen(args.dest, tuple(args.releases) or tuple(PACKAGES), tools=not args.no_tools)
    except FetchError as exc:
        raise CliError(str(exc)) from None
    for release, path in images.items():
        print(f"{release} {path}")
    if not args.no_tools:
        print(f"tools {tools_dir(args.dest)}")
    return 0
