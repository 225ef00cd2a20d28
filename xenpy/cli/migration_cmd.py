"""``xenpy save`` and ``xenpy restore``: ``xl save`` and ``xl restore`` for xenpy.

    xenpy save [--control PATH] [-c] [DOMAIN] FILE
    xenpy restore FILE [--pcpus N] [--engine E] [--sched S] [--clock C] [--timeout S] [--control [PATH]] ...

``save`` asks the ``xenpy run --control`` it attaches to (:mod:`xenpy.cli.attach`) to suspend the domain and write
it to FILE as an xl save file in Xen's stream format (:mod:`xenpy.toolstack.migration`), with a progress bar on a
terminal and a summary line; the domain is then gone (that run exits with 5), or with ``-c`` (checkpoint) runs on.
``restore`` checks the whole file, then restores the domain into a new hypervisor whose clock starts at the
save's time (so the guest's time runs on from where it stopped) and runs it as ``xenpy run`` does, with the same
session options. A bad file is one line and exit status 65.
"""

from __future__ import annotations

import argparse
import os
import sys

from xenpy.cli.attach import add_control_argument, connect
from xenpy.cli.errors import EXIT_DATAERR, CliError
from xenpy.cli.run_cmd import add_session_arguments, run_guest
from xenpy.core.clock import HostClock, VirtualClock
from xenpy.core.memory import OutOfMachineMemory
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import HYPERVISOR_MEMORY_MIB
from xenpy.toolstack.control import ControlError
from xenpy.toolstack.migration.restore import restore_domain, scan_stream
from xenpy.toolstack.migration.save import SUSPEND_TIMEOUT_S
from xenpy.toolstack.migration.stream import SaveFileError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``xenpy save`` and ``xenpy restore``."""
    save = subparsers.add_parser(
        "save",
        help="save a running domain to a file, as 'xl save'",
        description="Ask a domain of a running 'xenpy run --control' to suspend (xenstore control/shutdown = "
        "suspend) and write it to FILE as an xl save file in Xen's migration stream format, which Xen's "
        "verify-stream-v2 accepts. The domain is then destroyed (its 'xenpy run' exits with status 5), or with "
        "-c left running, as after 'xl save -c'. 'xenpy restore FILE' runs it again.",
    )
    save.add_argument("domain", nargs="?", metavar="DOMAIN",
                      help="the domain's id or name (default: the run's only domain)")
    save.add_argument("file", metavar="FILE", help="the save file to write")
    save.add_argument("-c", "--checkpoint", action="store_true",
                      help="leave the domain running after the save (it resumes in place)")
    add_control_argument(save)
    save.set_defaults(handler=_save)

    restore = subparsers.add_parser(
        "restore",
        help="restore a saved domain and run it, as 'xl restore'",
        description="Restore the domain of an xl save file (written by 'xenpy save' or in Xen's own stream "
        "format) into a new hypervisor and run it as 'xenpy run' does: the guest resumes where it suspended, in "
        "new machine frames, its clock running on from the save. The options are xenpy run's.",
    )
    restore.add_argument("file", metavar="FILE", help="the save file")
    add_session_arguments(restore)
    restore.set_defaults(handler=_restore)


def _save(args: argparse.Namespace) -> int:
    path = os.path.abspath(args.file)
    with connect(args) as client:
        domain = args.domain
        if domain is None:
            domains = client.request("list")
            if len(domains) != 1:
                raise CliError(f"the run has {len(domains)} domains: name one ("
                               + ", ".join(str(d["domid"]) for d in domains) + ")")
            domain = domains[0]["domid"]
        bar = _ProgressBar(f"saving d{domain}") if sys.stderr.isatty() else None
        try:
            result = client.request("save", domain=int(domain) if str(domain).isdigit() else domain, path=path,
                                    checkpoint=args.checkpoint, timeout_s=SUSPEND_TIMEOUT_S + 600,
                                    on_progress=bar.update if bar else None)  # fmt: skip
        except ControlError as error:
            raise CliError(f"save d{domain}: {error}", EXIT_DATAERR) from None
        finally:
            if bar is not None:
                bar.close()
    mib = result["bytes"] / (1 << 20)
    after = "still running (checkpoint)" if result["checkpoint"] else "destroyed"
    print(f"xenpy: d{result['domid']} saved to {result['path']}: {result['pages']} pages, {mib:.1f} MiB in "
          f"{result['seconds']:.2f} s (the guest took {result['suspend_ns'] / 1e6:.3f} ms to suspend); the domain "
          f"is {after}", file=sys.stderr)
    return 0


class _ProgressBar:
    """A one-line progress bar on standard error."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.shown = False

    def update(self, done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\rxenpy: {self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} pages")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def _restore(args: argparse.Namespace) -> int:
    try:
        with open(args.file, "rb") as source:
            summary = scan_stream(source)
    except OSError as error:
        raise CliError(f"{args.file}: {error.strerror}", EXIT_DATAERR) from None
    except SaveFileError as error:
        raise CliError(f"{args.file}: not a save file xenpy can restore: {error}", EXIT_DATAERR) from None
    cfg = summary.config
    clock_type = VirtualClock if args.clock == "virtual" else HostClock
    hv = Hypervisor(nr_pcpus=args.pcpus, sched=args.sched, clock=clock_type(start_ns=summary.saved_at_ns),
                    memory_mib=cfg.memory_mib + HYPERVISOR_MEMORY_MIB)  # fmt: skip
    try:
        with open(args.file, "rb") as source:
            restored = restore_domain(hv, source)
    except OSError as error:
        raise CliError(f"{args.file}: {error.strerror}", EXIT_DATAERR) from None
    except (SaveFileError, OutOfMachineMemory) as error:
        raise CliError(f"{args.file}: {error}", EXIT_DATAERR) from None
    print(f"xenpy: restored d{restored.domain.domid} {cfg.name or '(unnamed)'} from {args.file}: "
          f"{summary.pages} pages, {summary.vcpus} vCPU(s), saved by Xen {summary.xen_version[0]}."
          f"{summary.xen_version[1]} at {summary.saved_at_ns / 1e6:.3f} ms", file=sys.stderr)
    return run_guest(hv, restored, args, label=cfg.name or os.path.basename(args.file))
