"""``xenpy run IMAGE``: boot a PV64 kernel on xenpy and run it until it shuts down.

IMAGE is an ELF kernel or a Linux bzImage; ``--initrd`` gives it a module. The guest console goes to standard
output as the guest writes it, and standard input (a terminal, a pipe or a file; not with ``--no-input``) goes
to the guest's console input, as ``xl console`` does: a terminal is put in raw mode for the run and Ctrl-] ends
the run. Ctrl-C (SIGINT; a terminal in raw mode passes Ctrl-C to the guest instead) asks the guest to power off
through its xenstore ``control/shutdown``, as ``xl shutdown`` does; a second one stops the run at once.
``--xenstore-socket PATH`` serves the store on a Unix socket for Xen's own clients while the guest runs;
``--control [PATH]`` serves the control socket (:mod:`xenpy.toolstack.control`) that ``xenpy top`` and
``xenpy runstate`` attach to. A one-line summary goes to standard error. Exit status: 0 the guest powered off,
1 it crashed (or the hypervisor crashed it), 2 any other shutdown reason, 3 timeout, 4 destroyed through the
control socket, 5 saved or migrated away through it (``xenpy save``, ``xenpy migrate``), 130 ended with Ctrl-]
or a second Ctrl-C; 64/65 for errors in the command line or the image.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import sys
from contextlib import ExitStack
from dataclasses import asdict, replace
from types import FrameType
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from xenpy.abi.vcpu import RUNSTATE
from xenpy.cli.argtypes import float_range, int_range
from xenpy.cli.errors import EXIT_DATAERR, CliError
from xenpy.core.memory import OutOfMachineMemory
from xenpy.core.profiles import PROFILES
from xenpy.core.system import SCHEDULERS
from xenpy.engine import DEFAULT_ENGINE, available_engines, create_engine
from xenpy.hypervisor import Hypervisor
from xenpy.loader import LoaderError
from xenpy.toolstack.boot import DEFAULT_MEMORY_MIB, HYPERVISOR_MEMORY_MIB, boot_pv_image
from xenpy.toolstack.console_input import ESCAPE_CHAR, ConsoleInput, input_kind, raw_terminal
from xenpy.toolstack.control_path import default_control_dir, default_control_path
from xenpy.toolstack.run import Outcome, RunReport, run_domain

# What only some runs use (a trace, the sockets, a save or migration) is imported where it is used.
if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.toolstack.console import ConsoleRingBackend
    from xenpy.toolstack.control import ControlServer
    from xenpy.toolstack.migration.migrate import MigrateProgress, MigrationSummary
    from xenpy.toolstack.migration.save import SaveProgress, SaveSummary
    from xenpy.toolstack.xenstore import XenstoreRingBackend, XenstoreSocketServer

#: Most vCPUs of a PV domain: x86 Xen's MAX_VIRT_CPUS (one 32-page GDT/LDT slot per vCPU in a 1 GiB
#: per-domain area: GDT_LDT_MBYTES << (20 - GDT_LDT_VCPU_VA_SHIFT) = 8192). vCPUs >= 32
#: (XEN_LEGACY_MAX_VCPUS) have no shared_info slot and need VCPUOP_register_vcpu_info (spec 1.2, 4.1).
MAX_VCPUS = 8192
#: Largest guest memory the command line accepts (MiB). Host memory follows what the guest touches; the host
#: must be able to map the whole size (and spends 12 bytes per frame on the m2p and owner tables).
MAX_MEMORY_MIB = 65536


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``xenpy run``."""
    run = subparsers.add_parser(
        "run",
        help="boot a PV64 kernel and run it until it shuts down",
        description="Boot a Xen PV64 kernel (an ELF file, or a Linux bzImage such as a distribution's vmlinuz) "
        "on xenpy's hypervisor and run it. The guest console goes to stdout, and stdin (a terminal, a pipe or "
        "a file) goes to the guest's console input: a terminal is put in raw mode (no echo, no line "
        "buffering, Ctrl-C goes to the guest) and Ctrl-] ends the run, as in 'xl console'. Otherwise Ctrl-C asks "
        "the guest to power off through xenstore's control/shutdown, as 'xl shutdown' does, and a second Ctrl-C "
        "stops at once. A summary goes to stderr. Exit status: 0 poweroff, 1 crash, 2 other shutdown, 3 timeout, "
        "4 destroyed (xenpy's control socket), 5 saved or migrated away ('xenpy save', 'xenpy migrate'), 130 ended "
        "with Ctrl-] or a second Ctrl-C.",
    )
    run.add_argument("image", metavar="IMAGE",
                     help="the PV kernel: an ELF file, a gzipped ELF, or a Linux bzImage (compressed with gzip, "
                     "bzip2, xz, lzma, lz4 or zstd)")
    run.add_argument("--vcpus", type=int_range(1, MAX_VCPUS), default=1, metavar="N",
                     help=f"vCPUs of the guest (1-{MAX_VCPUS}, default 1)")
    run.add_argument("--memory", type=int_range(4, MAX_MEMORY_MIB), default=DEFAULT_MEMORY_MIB,
                     metavar="MiB", help=f"guest memory in MiB (default {DEFAULT_MEMORY_MIB})")
    run.add_argument("--cmdline", default="", metavar="TEXT", help="the kernel command line (start_info.cmd_line)")
    run.add_argument("--initrd", metavar="FILE",
                     help="load FILE as the guest's initrd (module 0: start_info.mod_start/mod_len)")
    run.add_argument("--profile", choices=list(PROFILES), default="head",
                     help="the Xen version whose semantics to follow (default head)")
    add_session_arguments(run)
    run.set_defaults(handler=_run)


def add_session_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of running a guest, shared by ``xenpy run`` and ``xenpy restore``: the hypervisor (pCPUs,
    engine, scheduler, clock), the time limit, console input, tracing and the sockets."""
    parser.add_argument("--pcpus", type=int_range(1, 64), default=1, metavar="N",
                        help="simulated physical CPUs (default 1)")
    engines = available_engines()
    parser.add_argument("--engine", type=_engine_name, default=DEFAULT_ENGINE, metavar="NAME",
                        help="the CPU engine that runs the guest's code: "
                        + "; ".join(f"{name}: {what}" for name, what in engines.items())
                        + f" (default {DEFAULT_ENGINE})")
    parser.add_argument("--sched", choices=list(SCHEDULERS), default="credit2",
                        help="the scheduling policy: "
                        + "; ".join(f"{name}: {what}" for name, what in SCHEDULERS.items())
                        + " (default credit2, as Xen's)")
    parser.add_argument("--clock", choices=("virtual", "host"), default="virtual",
                        help="virtual: deterministic time advanced by executed instructions (default); "
                        "host: the host's monotonic clock")
    parser.add_argument("--timeout", type=float_range(0, low_open=True), default=60.0, metavar="S",
                        help="give up after S seconds of wall-clock time (default 60)")
    parser.add_argument("--no-input", action="store_true",
                        help="do not forward stdin to the guest's console (the default forwards a terminal, a "
                        "pipe or a file, and leaves /dev/null and other devices alone)")
    parser.add_argument("--trace", metavar="FILE",
                        help="write one JSON line per hypercall (vCPU, time, name, arguments, result) to FILE")
    parser.add_argument("--runstate", action="store_true",
                        help="print each vCPU's runstate times (running, runnable, blocked, offline) at the end")
    parser.add_argument("--xenstore-socket", metavar="PATH",
                        help="also serve the xenstore on a Unix socket at PATH while the guest runs, for Xen's "
                        "clients (XENSTORED_PATH=PATH xenstore-ls)")
    parser.add_argument("--control", metavar="PATH", nargs="?", const="",
                        help="serve the control socket (mode 0600) at PATH, or with no PATH at "
                        f"{default_control_dir()}/run-PID.sock, where 'xenpy top', 'xenpy ctl' and 'xenpy save' "
                        "find it: domain and vCPU lists, runstate samples, pause, unpause, shutdown, destroy, save")


def _engine_name(text: str) -> str:
    engines = available_engines()
    if text not in engines:
        raise argparse.ArgumentTypeError(f"unknown engine {text!r} (available: {', '.join(engines)})")
    return text


def _read_file(path: str, what: str = "") -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as error:
        raise CliError(f"{what}{path}: {error.strerror}", EXIT_DATAERR) from None


def _stdin_fd() -> int | None:
    """The file descriptor of standard input, or None where there is none (closed, or replaced by a test)."""
    try:
        return sys.stdin.fileno()
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return None


def _run(args: argparse.Namespace) -> int:
    image = _read_file(args.image)
    initrd = None if args.initrd is None else _read_file(args.initrd, "--initrd ")

    try:
        hv = Hypervisor(
            nr_pcpus=args.pcpus, sched=args.sched, clock=args.clock, memory_mib=args.memory + HYPERVISOR_MEMORY_MIB
        )
    except (OSError, MemoryError) as error:
        raise CliError(f"--memory {args.memory}: the host cannot map the machine memory ({error})",
                       EXIT_DATAERR) from None
    try:
        booted = boot_pv_image(hv, image, max_vcpus=args.vcpus, memory_mib=args.memory, cmdline=args.cmdline,
                               profile=args.profile, name=_name_of(args.image), initrd=initrd)
    except (LoaderError, OutOfMachineMemory) as error:
        raise CliError(f"{args.image}: {error}", EXIT_DATAERR) from None
    return run_guest(hv, booted, args, label=_name_of(args.image))


class Guest(Protocol):
    """What :func:`run_guest` needs of a booted or restored domain."""

    domain: Domain
    console: ConsoleRingBackend
    xenstore: XenstoreRingBackend | None
    cmdline: str

    @property
    def suspend_cancel(self) -> bool: ...


def run_guest(hv: Hypervisor, guest: Guest, args: argparse.Namespace, *, label: str,
              console_out: BinaryIO | None = None) -> int:  # fmt: skip
    """Run ``guest`` as ``xenpy run`` does (console, input, sockets, the session options of ``args``) and
    print the summary; returns the exit status. The console goes to ``console_out`` (default standard
    output)."""
    domain = guest.domain
    out = console_out if console_out is not None else sys.stdout.buffer

    def show(chunk: bytes) -> None:
        out.write(chunk)
        out.flush()

    saved_to: list[tuple[str, str]] = []  # (saved | migrated, where to)
    with ExitStack() as stack:
        stack.callback(domain.console.listen(show))
        if args.trace:
            try:
                trace_file = stack.enter_context(open(args.trace, "w", encoding="utf-8"))
            except OSError as error:
                raise CliError(f"--trace {args.trace}: {error.strerror}", EXIT_DATAERR) from None
            from xenpy.toolstack.trace import HypercallTracer

            stack.callback(HypercallTracer(hv, trace_file).close)
        console_input = None
        fd = None if args.no_input else _stdin_fd()
        kind = None if fd is None else input_kind(fd)
        if fd is not None and kind is not None:
            interactive = kind == "tty"
            if interactive:
                stack.enter_context(raw_terminal(fd))
                print(f"xenpy: d{domain.domid} console: this terminal (Ctrl-] ends the run)", file=sys.stderr)
            console_input = ConsoleInput(guest.console, fd, escape=ESCAPE_CHAR if interactive else None,
                                         flush_output=interactive)
        # The SIGINT handler first: a Ctrl-C as soon as a socket appears must already only ask the guest.
        between_steps = _ShutdownOnInterrupt(domain.domid, guest.xenstore)
        stack.enter_context(between_steps.installed())
        server = None
        if args.xenstore_socket and guest.xenstore is not None:
            from xenpy.toolstack.xenstore import XenstoreSocketServer

            try:
                server = stack.enter_context(XenstoreSocketServer(guest.xenstore.store, args.xenstore_socket))
            except OSError as error:
                raise CliError(f"--xenstore-socket {args.xenstore_socket}: {error.strerror}", EXIT_DATAERR) from None
            print(f"xenpy: xenstore on {args.xenstore_socket} (XENSTORED_PATH={args.xenstore_socket} xenstore-ls)",
                  file=sys.stderr)
        control = None
        if args.control is not None:
            from xenpy.toolstack.control import ControlServer

            try:
                control_path = args.control or str(default_control_path())
            except OSError as error:
                raise CliError(f"--control: {default_control_dir()}: {error.strerror}", EXIT_DATAERR) from None
            xenstore = guest.xenstore

            def served(d: Domain, node: str) -> XenstoreRingBackend:
                """The run's xenstore, which the toolstack's requests to ``d`` go through."""
                if xenstore is None or d is not domain:
                    raise LookupError(f"domain {d.domid} has no xenstore {node} node")
                return xenstore

            def request_shutdown(d: Domain, reason: str) -> None:
                served(d, "control/shutdown").request_shutdown(reason)

            def save(d: Domain, path: str, checkpoint: bool, progress: SaveProgress) -> dict[str, Any]:
                served(d, "control/shutdown")
                summary = _save_to(hv, guest, path, checkpoint, progress)
                if not checkpoint:
                    saved_to.append(("saved", f"to {path}"))
                return {"domid": d.domid, "path": path, "pages": summary.pages, "bytes": summary.bytes,
                        "seconds": summary.seconds, "suspend_ns": summary.suspend_ns, "checkpoint": checkpoint}

            def migrate(d: Domain, request: dict[str, Any], progress: MigrateProgress) -> dict[str, Any]:
                served(d, "control/shutdown")
                summary = _migrate_to(hv, guest, request, progress)
                saved_to.append(("migrated", f"to {request['address']}"))
                return {"domid": d.domid, "address": request["address"], **asdict(summary), "met": summary.met}

            def set_memory_target(d: Domain, kib: int) -> None:
                served(d, "memory/target").store.write(f"/local/domain/{d.domid}/memory/target", str(kib))

            try:
                control = stack.enter_context(ControlServer(
                    hv, control_path, request_shutdown=request_shutdown, save=save, migrate=migrate,
                    set_memory_target=set_memory_target,
                    info={"sched": args.sched, "clock": args.clock, "engine": args.engine}))
            except OSError as error:
                raise CliError(f"--control {control_path}: {error.strerror}", EXIT_DATAERR) from None
            print(f"xenpy: control socket {control_path} ('xenpy top' attaches to it)", file=sys.stderr)
        between_steps.servers = [s for s in (control, server) if s is not None]
        create_engine(args.engine, hv)  # attaches itself to the scheduler
        report = run_domain(hv, domain, timeout_s=args.timeout, console_input=console_input,
                            between_steps=between_steps)
        guest.console.close()
        domain.console.flush()
    if saved_to and report.outcome is Outcome.DESTROYED:
        how, where = saved_to[-1]
        report = replace(report, outcome=Outcome.SAVED, detail=where)
        label = f"{label} {how}"
    print(_summary(domain.domid, label, args, report, hv.dispatcher.count, len(domain.vcpus)), file=sys.stderr)
    if args.runstate:
        print(_runstate_table(report), file=sys.stderr)
    return report.outcome.value


class _ShutdownOnInterrupt:
    """Between the run's steps: after a first SIGINT, ask the guest to power off through xenstore's
    ``control/shutdown`` (as ``xl shutdown``); after a second one, raise KeyboardInterrupt. Also serves the
    xenstore socket and the control socket, if any (either may wake a stalled or paused guest)."""

    def __init__(self, domid: int, xenstore: XenstoreRingBackend | None):
        self.domid = domid
        self.xenstore = xenstore
        #: the socket servers polled between steps (the first one waits when the guest is stalled).
        self.servers: list[ControlServer | XenstoreSocketServer] = []
        self.interrupted = False
        self.stop = False
        self.asked = False

    def installed(self) -> ExitStack:
        """Install the SIGINT handler for the run (the previous one comes back on exit)."""
        stack = ExitStack()
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        stack.callback(signal.signal, signal.SIGINT, previous)
        return stack

    def _on_sigint(self, _signum: int, _frame: FrameType | None) -> None:
        # Only note it: raised here, the exception could land in an engine callback, which cannot pass it on.
        if self.interrupted:
            self.stop = True
        self.interrupted = True

    def __call__(self, wait_s: float) -> bool:
        if self.stop:
            raise KeyboardInterrupt
        if self.interrupted and not self.asked:
            self.asked = True
            if self.xenstore is not None:
                self.xenstore.request_shutdown("poweroff")
                print(f"\nxenpy: asked d{self.domid} to power off (control/shutdown); Ctrl-C again stops at once",
                      file=sys.stderr)
            else:
                raise KeyboardInterrupt
        if not self.servers:
            return False
        for i, server in enumerate(self.servers):
            server.poll(wait_s if i == 0 else 0.0)
        return True


def _name_of(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _save_to(hv: Hypervisor, guest: Guest, path: str, checkpoint: bool, progress: SaveProgress) -> SaveSummary:
    """Save ``guest`` to the file ``path`` (removed again if the save fails)."""
    from xenpy.toolstack.migration.save import save_domain

    store = guest.xenstore.store if guest.xenstore is not None else None
    try:
        with open(path, "wb") as out:
            return save_domain(hv, guest.domain, out, cmdline=guest.cmdline, suspend_cancel=guest.suspend_cancel,
                               checkpoint=checkpoint, store=store, progress=progress)  # fmt: skip
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def _migrate_to(hv: Hypervisor, guest: Guest, request: dict[str, Any], progress: MigrateProgress) -> MigrationSummary:
    """Migrate ``guest`` live to the address ``request`` names."""
    from xenpy.toolstack.migration.migrate import DEFAULT_MAX_DOWNTIME_MS, DEFAULT_MAX_ROUNDS, migrate_domain
    from xenpy.toolstack.migration.transport import MigrationError, connect, parse_address

    try:
        address = parse_address(request["address"])
    except ValueError as error:
        raise MigrationError(str(error)) from None
    link = connect(address, ssh_command=request.get("ssh_command") or "ssh")
    try:
        store = guest.xenstore.store if guest.xenstore is not None else None
        return migrate_domain(hv, guest.domain, link, cmdline=guest.cmdline, suspend_cancel=guest.suspend_cancel,
                              store=store, max_downtime_ms=request.get("max_downtime_ms") or DEFAULT_MAX_DOWNTIME_MS,
                              max_rounds=int(request.get("max_rounds") or DEFAULT_MAX_ROUNDS),
                              progress=progress)  # fmt: skip
    finally:
        link.close()


def _summary(domid: int, label: str, args: argparse.Namespace, report: RunReport, hypercalls: int,
             vcpus: int) -> str:  # fmt: skip
    what = {
        Outcome.POWEROFF: "powered off",
        Outcome.CRASH: "crashed",
        Outcome.OTHER_SHUTDOWN: "shut down",
        Outcome.TIMEOUT: "timed out",
        Outcome.DESTROYED: "destroyed",
        Outcome.SAVED: "away",
        Outcome.INTERRUPTED: "interrupted",
    }[report.outcome]
    detail = f" ({report.detail})" if report.detail and report.outcome is not Outcome.POWEROFF else ""
    return (f"xenpy: d{domid} {label} {what}{detail} after {report.guest_ns / 1e6:.3f} ms of "
            f"guest time ({report.wall_s:.2f} s wall, {vcpus} vCPU(s) on {args.pcpus} pCPU(s), "
            f"{hypercalls} hypercalls, {args.clock} clock)")


def _runstate_table(report: RunReport) -> str:
    names = [state.name.removeprefix("RUNSTATE_") for state in RUNSTATE]
    lines = [f"{'vcpu':>4}  {'state':9}" + "".join(f"{name + ' ms':>14}" for name in names)]
    for vcpu_id, (state, _entry, *times) in enumerate(report.runstates):
        lines.append(f"{vcpu_id:>4}  {RUNSTATE(state).name.removeprefix('RUNSTATE_'):9}"
                     + "".join(f"{t / 1e6:14.3f}" for t in times))
    return "\n".join(lines)
