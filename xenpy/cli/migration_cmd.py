"""``xenpy save``, ``xenpy restore`` and ``xenpy migrate``: ``xl save``, ``xl restore`` and ``xl migrate`` for xenpy.

    xenpy save [--control PATH] [-c] [DOMAIN] FILE
    xenpy restore FILE | --incoming ADDRESS [--pcpus N] [--engine E] [--clock C] [--control [PATH]] ...
    xenpy migrate [--control PATH] [--max-downtime MS] [--max-rounds N] [--ssh-command CMD] [DOMAIN] ADDRESS

``save`` asks the ``xenpy run --control`` it attaches to (:mod:`xenpy.cli.attach`) to suspend the domain and write
it to FILE as an xl save file in Xen's stream format (:mod:`xenpy.toolstack.migration`), with a progress bar on a
terminal and a summary line; the domain is then gone (that run exits with 5), or with ``-c`` (checkpoint) runs on.
``restore`` checks the whole file, then restores the domain into a new hypervisor whose clock starts at the
save's time (so the guest's time runs on from where it stopped) and runs it as ``xenpy run`` does, with the same
session options. A bad file is one line and exit status 65.

``migrate`` moves a running domain live to a ``xenpy restore --incoming ADDRESS`` (``unix:PATH``,
``tcp:HOST:PORT``; a plain HOST runs ``ssh HOST xenpy restore --incoming -``): pre-copy rounds while the guest
runs, then a pause aimed at ``--max-downtime``; it prints the rounds, the pages resent and the downtime.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from xenpy.cli.argtypes import float_range, int_range
from xenpy.cli.attach import add_control_argument, connect
from xenpy.cli.errors import EXIT_DATAERR, EXIT_USAGE, CliError
from xenpy.cli.run_cmd import add_session_arguments, run_guest
from xenpy.core.clock import HostClock, VirtualClock
from xenpy.core.memory import OutOfMachineMemory
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import HYPERVISOR_MEMORY_MIB
from xenpy.toolstack.control import ControlClient, ControlError
from xenpy.toolstack.migration.migrate import DEFAULT_MAX_DOWNTIME_MS, DEFAULT_MAX_ROUNDS, receive_domain
from xenpy.toolstack.migration.restore import SavedConfig, restore_domain, scan_stream
from xenpy.toolstack.migration.save import SUSPEND_TIMEOUT_S
from xenpy.toolstack.migration.stream import SaveFileError
from xenpy.toolstack.migration.transport import Listener, MigrationError, parse_address


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
    restore.add_argument("file", metavar="FILE", nargs="?", help="the save file")
    restore.add_argument("--incoming", metavar="ADDRESS",
                         help="receive a live migration instead: listen on unix:PATH or tcp:HOST:PORT for one "
                         "'xenpy migrate', or read it from stdin with - (what ssh runs; the console then goes to "
                         "stderr)")
    add_session_arguments(restore)
    restore.set_defaults(handler=_restore)

    migrate = subparsers.add_parser(
        "migrate",
        help="move a running domain live to another xenpy, as 'xl migrate'",
        description="Migrate a domain of a running 'xenpy run --control' live to a 'xenpy restore --incoming "
        "ADDRESS': every page is sent while the guest runs, then the pages it changed, round after round, until "
        "the rest fits the downtime bound; then the guest suspends, the rest and its vCPU state follow, and once "
        "the receiver has restored it the source domain is destroyed (its 'xenpy run' exits with 5). If the "
        "receiver refuses or the link breaks, the guest runs on where it was.",
    )
    migrate.add_argument("domain", nargs="?", metavar="DOMAIN",
                         help="the domain's id or name (default: the run's only domain)")
    migrate.add_argument("address", metavar="ADDRESS",
                         help="unix:PATH or tcp:HOST:PORT of a 'xenpy restore --incoming', or HOST ([USER@]HOST: ssh "
                         "runs 'xenpy restore --incoming -' there)")
    migrate.add_argument("--max-downtime", type=float_range(1), default=DEFAULT_MAX_DOWNTIME_MS, metavar="MS",
                         help=f"the pause to aim at, in ms (default {DEFAULT_MAX_DOWNTIME_MS})")
    migrate.add_argument("--max-rounds", type=int_range(1, 100), default=DEFAULT_MAX_ROUNDS, metavar="N",
                         help=f"pre-copy rounds at most (default {DEFAULT_MAX_ROUNDS})")
    migrate.add_argument("--ssh-command", default="ssh", metavar="CMD",
                         help="the command that reaches HOST (default ssh)")
    add_control_argument(migrate)
    migrate.set_defaults(handler=_migrate)


def _only_domain(client: ControlClient, domain: str | None) -> int | str:
    if domain is not None:
        return int(domain) if domain.isdigit() else domain
    domains = client.request("list")
    if len(domains) != 1:
        raise CliError(f"the run has {len(domains)} domains: name one ("
                       + ", ".join(str(d["domid"]) for d in domains) + ")")
    return domains[0]["domid"]


def _save(args: argparse.Namespace) -> int:
    path = os.path.abspath(args.file)
    with connect(args) as client:
        domain = _only_domain(client, args.domain)
        bar = _ProgressBar(f"saving d{domain}") if sys.stderr.isatty() else None
        try:
            result = client.request("save", domain=domain, path=path, checkpoint=args.checkpoint,
                                    timeout_s=SUSPEND_TIMEOUT_S + 600,
                                    on_progress=bar.pages if bar else None)  # fmt: skip
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


def _migrate(args: argparse.Namespace) -> int:
    try:
        parse_address(args.address)
    except ValueError as error:
        raise CliError(str(error)) from None
    with connect(args) as client:
        domain = _only_domain(client, args.domain)

        def show(event: dict[str, Any]) -> None:
            print(f"xenpy: migrating d{domain}: round {event.get('round')}: {event.get('pages')} pages sent, "
                  f"{event.get('left')} left for later", file=sys.stderr)

        try:
            result = client.request("migrate", domain=domain, address=args.address,
                                    max_downtime_ms=args.max_downtime, max_rounds=args.max_rounds,
                                    ssh_command=args.ssh_command, timeout_s=SUSPEND_TIMEOUT_S + 600,
                                    on_progress=show)  # fmt: skip
        except ControlError as error:
            raise CliError(f"migrate d{domain}: {error}", EXIT_DATAERR) from None
    bound = "within" if result["met"] else "OVER"
    print(f"xenpy: d{result['domid']} migrated to {result['address']}: {result['rounds']} round(s), "
          f"{result['pages_sent']} pages sent ({result['pages_resent']} resent, {result['final_pages']} while "
          f"paused), {result['bytes'] / (1 << 20):.1f} MiB; downtime {result['downtime_ms']:.1f} ms, {bound} the "
          f"{result['max_downtime_ms']:g} ms bound", file=sys.stderr)
    return 0


class _ProgressBar:
    """A one-line progress bar on standard error."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.shown = False

    def pages(self, event: dict[str, Any]) -> None:
        self.update(int(event.get("done", 0)), int(event.get("total", 0)))

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
    if (args.file is None) == (args.incoming is None):
        raise CliError("give a save file or --incoming ADDRESS (not both)", EXIT_USAGE)
    if args.incoming is not None:
        return _incoming(args)
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


def _incoming(args: argparse.Namespace) -> int:
    try:
        address = parse_address(args.incoming)
        listener = Listener(address)
    except (ValueError, MigrationError) as error:
        raise CliError(f"--incoming: {error}") from None
    except OSError as error:
        raise CliError(f"--incoming {args.incoming}: {error.strerror or error}") from None
    stdio = address.kind == "stdio"
    if not stdio:
        print(f"xenpy: waiting for a migration on {address}", file=sys.stderr)
    clock_type = VirtualClock if args.clock == "virtual" else HostClock

    def make_hypervisor(cfg: SavedConfig, sent_at_ns: int) -> Hypervisor:
        return Hypervisor(nr_pcpus=args.pcpus, sched=args.sched, clock=clock_type(start_ns=sent_at_ns),
                          memory_mib=cfg.memory_mib + HYPERVISOR_MEMORY_MIB)  # fmt: skip

    try:
        link = listener.accept()
        try:
            hv, restored = receive_domain(link, make_hypervisor)
        finally:
            link.close()
    except (SaveFileError, OutOfMachineMemory, MigrationError) as error:
        raise CliError(f"migration from {address}: {error}", EXIT_DATAERR) from None
    except OSError as error:
        raise CliError(f"migration from {address}: {error.strerror or error}", EXIT_DATAERR) from None
    finally:
        listener.close()
    cfg = restored.config
    print(f"xenpy: received d{restored.domain.domid} {cfg.name or '(unnamed)'}: {restored.pages} pages sent, "
          f"{cfg.max_vcpus} vCPU(s); running it", file=sys.stderr)
    if stdio:
        args.no_input = True  # standard input was the link
    return run_guest(hv, restored, args, label=cfg.name or "migrated",
                     console_out=sys.stderr.buffer if stdio else None)
