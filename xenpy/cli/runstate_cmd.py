"""``xenpy runstate record|plot|metrics``: runstate samples of a running ``xenpy run --control``, kept and shown.

``record`` writes one sample per interval as a JSON line (:meth:`~xenpy.toolstack.monitor.Sample.to_json`);
``plot`` draws a record file (matplotlib, the optional extra ``xenpy[plot]``): per vCPU the stacked shares
of each interval, and a timeline of every vCPU's state at each sample; ``metrics`` prints the Prometheus text
exposition once, or serves it on a loopback HTTP port (``--listen``), a fresh sample per scrape.
"""

from __future__ import annotations

import argparse
import http.server
import itertools
import json
import socket
import sys
import threading
from pathlib import Path
from typing import IO, Any

from xenpy.cli.attach import add_control_argument, connect
from xenpy.cli.errors import EXIT_DATAERR, EXIT_UNAVAILABLE, CliError
from xenpy.cli.top_cmd import interval_seconds, positive_int
from xenpy.toolstack.control import ControlClient
from xenpy.toolstack.monitor import STATE_NAMES, Sample, prometheus_text, shares

#: Colours of the four runstates in plots (running, runnable, blocked, offline).
STATE_COLOURS = ("#2ca02c", "#d62728", "#1f77b4", "#7f7f7f")
#: Content type of the text exposition format.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``xenpy runstate``."""
    runstate = subparsers.add_parser(
        "runstate",
        help="record, plot and export the runstate of a running 'xenpy run --control'",
        description="Record runstate samples of a running 'xenpy run --control' as JSON lines, plot a record, "
        "or export the runstate as Prometheus metrics.",
    )
    commands = runstate.add_subparsers(dest="runstate_command", metavar="COMMAND", required=True)

    record = commands.add_parser("record", help="write a runstate sample per interval as a JSON line",
                                 description="Write one runstate sample (every domain and vCPU: state, the four "
                                 "runstate times, pCPU, hypercalls, events) per interval as a JSON line, until the "
                                 "hypervisor stops, -n samples are written, or Ctrl-C.")
    record.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: standard output)")
    record.add_argument("-d", "--delay", type=interval_seconds, default=0.1, metavar="S",
                        help="seconds between samples (default 0.1)")
    record.add_argument("-n", "--samples", type=positive_int, metavar="N", help="stop after N samples")
    add_control_argument(record)
    record.set_defaults(handler=_record)

    plot = commands.add_parser("plot", help="draw a record file as a PNG (needs matplotlib: xenpy[plot])",
                               description="Draw a 'xenpy runstate record' file: per vCPU the stacked shares of "
                               "running, runnable, blocked and offline time over each interval, and a timeline of "
                               "every vCPU's state at each sample. Needs matplotlib (pip install 'xenpy[plot]').")
    plot.add_argument("file", metavar="FILE", help="a file 'xenpy runstate record' wrote")
    plot.add_argument("-o", "--output", metavar="PNG", required=True, help="the image to write")
    plot.add_argument("--title", help="the figure's title (default: the file's name)")
    plot.set_defaults(handler=_plot)

    metrics = commands.add_parser("metrics", help="print or serve Prometheus metrics of the runstate",
                                  description="Print the Prometheus text exposition of the runstate "
                                  "(xen_vcpu_runstate_seconds_total{domain,domid,vcpu,state} and the other "
                                  "families) once, or serve it over HTTP on a loopback address with --listen.")
    metrics.add_argument("--listen", metavar="[HOST:]PORT",
                         help="serve /metrics on HOST:PORT (HOST must be a loopback address; default 127.0.0.1)")
    add_control_argument(metrics)
    metrics.set_defaults(handler=_metrics)


# ---------------------------------------------------------------------------------------------- record


def _record(args: argparse.Namespace) -> int:
    client = connect(args)
    out: IO[str]
    if args.output:
        try:
            out = open(args.output, "w", encoding="utf-8")
        except OSError as error:
            raise CliError(f"{args.output}: {error.strerror}", EXIT_DATAERR) from None
    else:
        out = sys.stdout
    written = 0
    try:
        with client:
            for sample in client.samples(args.delay):
                out.write(json.dumps(sample.to_json(), separators=(",", ":")) + "\n")
                out.flush()
                written += 1
                if args.output and sys.stderr.isatty():
                    print(f"\rxenpy: {written} samples, system time {sample.time_ns / 1e9:.3f} s", end="",
                          file=sys.stderr)
                if args.samples is not None and written >= args.samples:
                    break
    except KeyboardInterrupt:
        pass
    except (ConnectionError, TimeoutError, OSError):
        pass  # the hypervisor stopped: the record ends there
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"\rxenpy: wrote {written} samples to {args.output}", file=sys.stderr)
    if written == 0:
        raise CliError("the hypervisor went away before the first sample", EXIT_UNAVAILABLE)
    return 0


def read_record(path: str) -> list[Sample]:
    """The samples of a record file, in order.

    Raises:
        CliError: the file cannot be read, or a line is not a sample.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise CliError(f"{path}: {error.strerror}", EXIT_DATAERR) from None
    except UnicodeDecodeError:
        raise CliError(f"{path}: not a runstate record (not text)", EXIT_DATAERR) from None
    samples = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            samples.append(Sample.from_json(json.loads(line)))
        except ValueError as error:
            raise CliError(f"{path}:{number}: not a runstate sample ({error})", EXIT_DATAERR) from None
    return samples


# ---------------------------------------------------------------------------------------------- plot


def _plot(args: argparse.Namespace) -> int:
    samples = read_record(args.file)
    if len(samples) < 2:
        raise CliError(f"{args.file}: {len(samples)} sample(s): a plot needs at least 2", EXIT_DATAERR)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        raise CliError("plotting needs matplotlib: pip install 'xenpy[plot]'", EXIT_UNAVAILABLE) from None
    figure = plot_record(plt, Patch, samples, args.title or Path(args.file).name)
    try:
        figure.savefig(args.output, dpi=100)
    except OSError as error:
        raise CliError(f"{args.output}: {error.strerror}", EXIT_DATAERR) from None
    print(f"xenpy: wrote {args.output} ({len(samples)} samples)", file=sys.stderr)
    return 0


def plot_record(plt: Any, patch: Any, samples: list[Sample], title: str) -> Any:
    """The figure of :func:`_plot`: one stacked-shares panel per vCPU, then the state timeline."""
    vcpus = sorted({(d.domid, d.name, v.vcpu) for s in samples for d in s.domains for v in d.vcpus})
    t0 = samples[0].time_ns
    figure, axes = plt.subplots(len(vcpus) + 1, 1, sharex=True, squeeze=False,
                                figsize=(11, 1.6 * len(vcpus) + 2.4))
    axes = axes[:, 0]
    intervals = [(before, after) for before, after in itertools.pairwise(samples)
                 if after.time_ns > before.time_ns]
    rows = [{(r.domid, r.vcpu): r for r in shares(before, after)} for before, after in intervals]
    mids = [((before.time_ns + after.time_ns) / 2 - t0) / 1e6 for before, after in intervals]
    for ax, (domid, _name, vcpu) in zip(axes, vcpus, strict=False):
        series = [[row[(domid, vcpu)].percent[k] if (domid, vcpu) in row else 0.0 for row in rows] for k in range(4)]
        ax.stackplot(mids, *series, colors=STATE_COLOURS, step="mid")
        ax.set_ylim(0, 100)
        ax.set_ylabel(f"d{domid} vCPU {vcpu}\n% of interval", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    timeline = axes[-1]
    for lane, (domid, _name, vcpu) in enumerate(vcpus):
        for before, after in itertools.pairwise(samples):
            state = next((v.state for d in before.domains if d.domid == domid for v in d.vcpus if v.vcpu == vcpu),
                         None)
            if state is None:
                continue
            start = (before.time_ns - t0) / 1e6
            timeline.broken_barh([(start, (after.time_ns - before.time_ns) / 1e6)], (lane - 0.4, 0.8),
                                 facecolors=STATE_COLOURS[state])
    timeline.set_yticks(range(len(vcpus)), [f"d{domid} v{vcpu}" for domid, _n, vcpu in vcpus], fontsize=8)
    timeline.set_ylabel("state at\neach sample", fontsize=8)
    timeline.set_xlabel("system time (ms)")
    figure.legend(handles=[patch(color=c, label=n) for c, n in zip(STATE_COLOURS, STATE_NAMES, strict=True)],
                  loc="upper right", ncol=4, fontsize=8)
    names = ", ".join(sorted({f"d{domid} {name}" for domid, name, _v in vcpus}))
    figure.suptitle(f"{title}: runstate shares per interval ({names})", x=0.02, ha="left", fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    return figure


# ---------------------------------------------------------------------------------------------- metrics


def _metrics(args: argparse.Namespace) -> int:
    client = connect(args)
    with client:
        if args.listen is None:
            sys.stdout.write(prometheus_text(_sample(client)))
            return 0
        host, port = _listen_address(args.listen)
        return _serve_metrics(client, host, port)


def _sample(client: ControlClient) -> Sample:
    try:
        return Sample.from_json(client.request("sample"))
    except (ConnectionError, OSError) as error:
        raise CliError(f"the hypervisor went away ({error})", EXIT_UNAVAILABLE) from None


def _listen_address(text: str) -> tuple[str, int]:
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("127."):
        raise CliError(f"--listen {text}: only a loopback address is served (127.0.0.1, ::1)", EXIT_DATAERR)
    try:
        port = int(port_text)
    except ValueError:
        raise CliError(f"--listen {text}: not a port number", EXIT_DATAERR) from None
    if not 0 <= port <= 65535:
        raise CliError(f"--listen {text}: not a port number", EXIT_DATAERR)
    return host, port


def _serve_metrics(client: ControlClient, host: str, port: int) -> int:
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/", "/metrics"):
                self.send_error(404, "only /metrics is served")
                return
            try:
                with lock:
                    body = prometheus_text(Sample.from_json(client.request("sample"))).encode()
            except (ConnectionError, OSError):
                self.send_error(503, "the hypervisor went away")
                threading.Thread(target=server.shutdown, daemon=True).start()
                return
            self.send_response(200)
            self.send_header("Content-Type", PROMETHEUS_CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        server = Server((host, port), Handler)
    except OSError as error:
        raise CliError(f"--listen {host}:{port}: {error.strerror}", EXIT_DATAERR) from None
    bound = server.server_address
    print(f"xenpy: metrics on http://{bound[0]}:{bound[1]}/metrics (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

