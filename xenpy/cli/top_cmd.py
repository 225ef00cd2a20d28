"""``xenpy top``: the domains and vCPUs of a running ``xenpy run --control``, as xentop shows domains.

Per vCPU, over each interval: its state and pCPU, the share of the interval's system time it spent running,
runnable, blocked and offline (summing to 100), its steal (runnable / (running + runnable)), its hypercalls per
second and its domain's events per second (of system time). The live view redraws every ``-d`` seconds (``q``
quits); batch mode (``-b``) prints ``-n`` intervals as CSV rows (a header first) or JSON lines. An interval in
which no system time passed (under the virtual clock: every vCPU paused, or idle with no timer armed) has all
shares 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from typing import Any

from xenpy.cli.argtypes import float_range, int_range
from xenpy.cli.attach import add_control_argument, connect
from xenpy.cli.errors import EXIT_UNAVAILABLE, CliError
from xenpy.toolstack.control import MAX_INTERVAL_S, MIN_INTERVAL_S, ControlClient
from xenpy.toolstack.monitor import STATE_NAMES, Sample, VcpuShares, shares

#: The batch CSV columns, in order.
CSV_COLUMNS = ("time_s", "interval_s", "domid", "name", "vcpu", "state", "pcpu", *STATE_NAMES, "steal",
               "hypercalls_per_s", "events_per_s")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``xenpy top``."""
    top = subparsers.add_parser(
        "top",
        help="watch the runstate of a running 'xenpy run --control', per domain and vCPU",
        description="A live view, in the spirit of xentop, of a running 'xenpy run --control': per vCPU its "
        "state and pCPU, the shares of each interval it spent running, runnable, blocked and offline (summing to "
        "100), steal (runnable / (running + runnable)), hypercalls/s and its domain's events/s, per second of "
        "system time. 'q' quits. With -b, print -n intervals as CSV rows or JSON lines instead.",
    )
    top.add_argument("-b", "--batch", action="store_true", help="batch mode: print rows instead of a live view")
    top.add_argument("-d", "--delay", type=interval_seconds, default=1.0, metavar="S",
                     help=f"seconds between updates ({MIN_INTERVAL_S:g}-{MAX_INTERVAL_S:g}, default 1)")
    top.add_argument("-n", "--iterations", type=positive_int, metavar="N",
                     help="stop after N intervals (default: until the hypervisor stops, or 'q')")
    top.add_argument("--format", choices=("csv", "json"), default="csv",
                     help="batch output: CSV rows with a header (default) or one JSON object per interval")
    add_control_argument(top)
    top.set_defaults(handler=_run)


#: ``-d``: seconds between samples, within the control socket's bounds.
interval_seconds = float_range(MIN_INTERVAL_S, MAX_INTERVAL_S)
positive_int = int_range(1)


def _run(args: argparse.Namespace) -> int:
    client = connect(args)
    with client:
        if args.batch:
            return _batch(client, args)
        if not sys.stdout.isatty():
            raise CliError("the live view needs a terminal: use -b for batch output")
        return _live(client, args)


def csv_row(sample: Sample, row: VcpuShares) -> dict[str, Any]:
    """One CSV row of :data:`CSV_COLUMNS`."""
    return {
        "time_s": f"{sample.time_ns / 1e9:.6f}", "interval_s": f"{row.interval_ns / 1e9:.6f}",
        "domid": row.domid, "name": row.name, "vcpu": row.vcpu, "state": row.state, "pcpu": row.pcpu,
        **{name: f"{share:.1f}" for name, share in zip(STATE_NAMES, row.percent, strict=True)},
        "steal": "" if row.steal is None else f"{row.steal:.1f}",
        "hypercalls_per_s": f"{row.hypercalls_per_s:.1f}", "events_per_s": f"{row.events_per_s:.1f}",
    }  # fmt: skip


def _batch(client: ControlClient, args: argparse.Namespace) -> int:
    out = sys.stdout
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    if args.format == "csv":
        writer.writeheader()
    done = 0
    previous: Sample | None = None
    try:
        for sample in client.samples(args.delay):
            if previous is not None:
                rows = shares(previous, sample)
                if args.format == "csv":
                    writer.writerows(csv_row(sample, row) for row in rows)
                else:
                    out.write(json.dumps({"time_ns": sample.time_ns, "interval_ns": sample.time_ns - previous.time_ns,
                                          "vcpus": [row.to_json() for row in rows]}) + "\n")
                out.flush()
                done += 1
                if args.iterations is not None and done >= args.iterations:
                    break
            previous = sample
    except (ConnectionError, TimeoutError, OSError) as error:
        if args.iterations is not None and done < args.iterations:
            raise CliError(f"the hypervisor went away after {done} of {args.iterations} intervals ({error})",
                           EXIT_UNAVAILABLE) from None
    return 0


def render(greeting: dict[str, Any], before: Sample, after: Sample, wall_s: float) -> list[str]:
    """The live view's lines for the interval from ``before`` to ``after`` (``wall_s`` host seconds)."""
    rows = shares(before, after)
    interval = (after.time_ns - before.time_ns) / 1e9
    lines = [
        f"xenpy top - pid {greeting.get('pid')}  sched {greeting.get('sched', '?')}  pCPUs {greeting.get('pcpus')}  "
        f"clock {greeting.get('clock', '?')}  system time {after.time_ns / 1e9:.3f} s "
        f"(+{interval * 1e3:.1f} ms in {wall_s:.2f} s)",
        f"{len(after.domains)} domain(s), {sum(len(d.vcpus) for d in after.domains)} vCPU(s)   "
        + ("shares of the interval's system time, rates per second of it" if interval > 0 else
           "system time stood still (every vCPU paused, or idle with no timer, under the virtual clock)"),
        "",
        f"{'DOMAIN':<20}{'ID':>4}{'VCPU':>5} {'STATE':<9}{'PCPU':>5}{'RUN%':>7}{'WAIT%':>7}{'BLOCK%':>7}"
        f"{'OFF%':>7}{'STEAL%':>8}{'HCALL/s':>10}{'EVENT/s':>10}",
    ]
    by_domain: dict[int, list[VcpuShares]] = {}
    for row in rows:
        by_domain.setdefault(row.domid, []).append(row)
    for d in after.domains:
        mine = by_domain.get(d.domid, [])
        mean = [sum(r.percent[i] for r in mine) / max(1, len(mine)) for i in range(4)]
        calls = sum(r.hypercalls_per_s for r in mine)
        events = mine[0].events_per_s if mine else 0.0
        memory = f"  mem {d.memory_kib / 1024:.0f}/{d.max_memory_kib / 1024:.0f} MiB"
        if d.ballooned_kib:
            memory += f", {d.ballooned_kib / 1024:.0f} ballooned"
        if d.claimed_kib:
            memory += f", {d.claimed_kib / 1024:.0f} claimed"
        lines.append(f"{d.name[:20]:<20}{d.domid:>4}{'all':>5} {d.state:<9}{'':>5}"
                     + "".join(f"{m:>7.1f}" for m in mean) + f"{'':>8}{calls:>10.1f}{events:>10.1f}" + memory)
        for r in mine:
            steal = "-" if r.steal is None else f"{r.steal:.1f}"
            lines.append(f"{'':<20}{'':>4}{r.vcpu:>5} {r.state:<9}{r.pcpu if r.online else '-':>5}"
                         + "".join(f"{p:>7.1f}" for p in r.percent) + f"{steal:>8}{r.hypercalls_per_s:>10.1f}")
    return lines


def _live(client: ControlClient, args: argparse.Namespace) -> int:
    import curses

    def loop(screen: Any) -> int:
        curses.curs_set(0)
        screen.timeout(50)
        before = Sample.from_json(client.request("sample"))
        wall = time.monotonic()
        done = 0
        lines = ["waiting for the first interval..."]
        while True:
            deadline = wall + args.delay
            _draw(screen, lines)
            while time.monotonic() < deadline:
                key = screen.getch()
                if key == curses.KEY_RESIZE:
                    _draw(screen, lines)
                if key in (ord("q"), ord("Q")):
                    return 0
            try:
                after = Sample.from_json(client.request("sample"))
            except (ConnectionError, OSError):
                return -1
            now = time.monotonic()
            lines = render(client.greeting, before, after, now - wall)
            before, wall = after, now
            done += 1
            if args.iterations is not None and done >= args.iterations:
                _draw(screen, lines)
                return 0

    if curses.wrapper(loop) < 0:
        raise CliError("the hypervisor went away", EXIT_UNAVAILABLE)
    return 0


def _draw(screen: Any, lines: list[str]) -> None:
    import curses

    screen.erase()
    height, width = screen.getmaxyx()
    for y, line in enumerate(lines[: height - 1]):
        try:
            screen.addnstr(y, 0, line, width - 1, curses.A_BOLD if y == 3 else 0)
        except curses.error:
            pass
    screen.refresh()
