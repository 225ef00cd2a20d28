"""``xenpy run --control`` with the load guest, watched and driven by ``xenpy top``, ``ctl`` and ``runstate``.

Two runs of ``test-pv64-runstate-load`` on 2 pCPUs side by side: one with three spinning vCPUs (with vCPU 0,
the monitor, four vCPUs compete for two pCPUs) and one with a single spinner. ``xenpy top -b`` shows every vCPU's
four shares summing to 100 and the spinners' runnable share rising when they outnumber the pCPUs; then the
other commands attach to the first run, which the toolstack shuts down through xenstore; the second is capped
at half a pCPU, which parks its spinner half the time, and destroyed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.needs_gcc

XENPY = [sys.executable, "-m", "xenpy"]


class Run:
    """A ``xenpy run --control`` of the load guest in the background."""

    def __init__(self, image: Path, socket_path: Path, load: str) -> None:
        self.socket = socket_path
        self.process = subprocess.Popen(
            [*XENPY, "run", str(image), "--vcpus", "4", "--pcpus", "2", "--no-input", "--timeout", "300",
             "--cmdline", f"load={load}", "--control", str(socket_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not socket_path.exists():
            assert self.process.poll() is None, self.process.communicate()
            assert time.monotonic() < deadline, "the control socket never appeared"
            time.sleep(0.05)

    def xenpy(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*XENPY, *args, "--control", str(self.socket)], capture_output=True, text=True,
                              timeout=120, check=False)

    def wait(self) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=120)
        return self.process.returncode, out, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def runs(guest_build_dir: Path, tmp_path: Path) -> Iterator[tuple[Run, Run]]:
    image = guest_build_dir / "test-pv64-runstate-load"
    crowded = Run(image, tmp_path / "crowded.sock", "spin,spin,spin")
    alone = Run(image, tmp_path / "alone.sock", "spin,idle")
    try:
        yield crowded, alone
    finally:
        crowded.kill()
        alone.kill()


def top_rows(run: Run) -> list[dict[str, str]]:
    done = run.xenpy("top", "-b", "-n", "3", "-d", "0.3")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert len(rows) == 3 * 4  # three intervals, four vCPUs
    for row in rows:
        shares = [float(row[state]) for state in ("running", "runnable", "blocked", "offline")]
        assert round(sum(shares), 1) == 100.0, row
    return rows


def mean_runnable(rows: list[dict[str, str]], vcpus: set[int]) -> float:
    picked = [float(r["runnable"]) for r in rows if int(r["vcpu"]) in vcpus]
    return sum(picked) / len(picked)


def test_top_ctl_runstate_against_running_guests(runs: tuple[Run, Run], tmp_path: Path) -> None:
    crowded, alone = runs

    # Four busy vCPUs on two pCPUs wait; one alone does not.
    crowded_rows, alone_rows = top_rows(crowded), top_rows(alone)
    assert mean_runnable(crowded_rows, {1, 2, 3}) > 15.0
    assert mean_runnable(alone_rows, {1}) < 5.0
    assert {r["state"] for r in alone_rows if r["vcpu"] in ("2", "3")} == {"blocked"}

    # A cap of 50 (per cent of one pCPU) for the whole domain: the spinner is parked (offline) once the budget
    # of each 10 ms period is spent.
    capped = alone.xenpy("ctl", "sched-credit2", "-c", "50", "test-pv64-runstate-load")
    assert capped.returncode == 0 and capped.stdout.split()[-2:] == ["256", "50"], capped.stderr
    def spinner_times() -> list[int]:
        (v1,) = [v for v in json.loads(alone.xenpy("ctl", "vcpu-list", "--json").stdout) if v["vcpu"] == 1]
        return [v1[f"{state}_ns"] for state in ("running", "runnable", "blocked", "offline")]

    before = spinner_times()
    time.sleep(2.0)
    spent = [b - a for a, b in zip(before, spinner_times(), strict=True)]
    span = sum(spent)
    # Half of each 10 ms period, within one period's budget over the span; uncapped it ran all the time.
    assert span > 15_000_000, spent
    assert spent[0] < 0.8 * span and spent[3] > 0.15 * span, spent

    listed = crowded.xenpy("ctl", "list")
    assert listed.returncode == 0 and "test-pv64-runstate-load" in listed.stdout.splitlines()[1]
    vcpus = json.loads(crowded.xenpy("ctl", "vcpu-list", "--json").stdout)
    assert [v["vcpu"] for v in vcpus] == [0, 1, 2, 3] and all(v["running_ns"] > 0 for v in vcpus)

    record = tmp_path / "record.jsonl"
    done = crowded.xenpy("runstate", "record", "-n", "6", "-d", "0.1", "-o", str(record))
    assert done.returncode == 0, done.stderr
    lines = record.read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line)["domains"][0]["vcpus"] for line in lines)
    pytest.importorskip("matplotlib")
    png = tmp_path / "record.png"
    done = subprocess.run([*XENPY, "runstate", "plot", str(record), "-o", str(png)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    parser = pytest.importorskip("prometheus_client.parser")
    metrics = crowded.xenpy("runstate", "metrics")
    families = {f.name: f for f in parser.text_string_to_metric_families(metrics.stdout)}
    states = {s.labels["state"] for s in families["xen_vcpu_runstate_seconds"].samples}
    assert states == {"running", "runnable", "blocked", "offline"}

    # The guest reads control/shutdown: it stops its load, reports and powers off.
    assert crowded.xenpy("ctl", "shutdown", "1").returncode == 0
    status, out, err = crowded.wait()
    assert status == 0, err
    assert 'the toolstack asked for "poweroff"' in out and "Test result: SUCCESS" in out

    assert alone.xenpy("ctl", "destroy", "test-pv64-runstate-load").returncode == 0
    status, _out, err = alone.wait()
    assert status == 4 and "destroyed" in err


def test_no_running_xenpy_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    env.pop("XENPY_CONTROL", None)
    for command in (["top", "-b", "-n", "1"], ["ctl", "list"], ["runstate", "metrics"]):
        done = subprocess.run([*XENPY, *command], capture_output=True, text=True, env=env, timeout=60, check=False)
        assert done.returncode == 69
        assert done.stderr.count("\n") == 1 and "no running xenpy" in done.stderr
    done = subprocess.run([*XENPY, "top", "-b", "--control", str(tmp_path / "none.sock")], capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr.strip()) == (69, f"xenpy: error: no running xenpy at {tmp_path}/none.sock")


def test_bad_record_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"time_ns": 1}\n')
    done = subprocess.run([*XENPY, "runstate", "plot", str(bad), "-o", str(tmp_path / "x.png")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 65 and done.stderr.count("\n") == 1
    assert "bad.jsonl:1: not a runstate sample" in done.stderr


def test_live_view_lines() -> None:
    """The live view: a header with both clocks, a row per domain (mean shares), a row per vCPU."""
    from xenpy.cli.top_cmd import render
    from xenpy.hypervisor import DomainConfig, Hypervisor
    from xenpy.toolstack.monitor import take_sample

    hv = Hypervisor(nr_pcpus=1, memory_mib=32)
    dom = hv.create_domain(DomainConfig(max_vcpus=2, memory_mib=2, periodic_period_ns=0, name="two"))
    dom.unpause()
    hv.bring_up_vcpus(dom)
    before = take_sample(hv)
    hv.run_for(50_000_000)
    lines = render({"pid": 1, "sched": "credit2", "pcpus": 1, "clock": "virtual"}, before, take_sample(hv), 0.5)
    assert lines[0].startswith("xenpy top - pid 1  sched credit2  pCPUs 1  clock virtual")
    assert "(+50.0 ms in 0.50 s)" in lines[0]
    assert lines[3].split()[:6] == ["DOMAIN", "ID", "VCPU", "STATE", "PCPU", "RUN%"]
    domain_row, *vcpu_rows = lines[4:]
    assert domain_row.split()[:3] == ["two", str(dom.domid), "all"]
    assert [row.split()[0] for row in vcpu_rows] == ["0", "1"]
    for row in vcpu_rows:
        running, runnable, blocked, offline, steal = (float(x) for x in row.split()[3:8])
        assert running + runnable + blocked + offline == pytest.approx(100.0) and steal == runnable


def test_top_flags_are_checked() -> None:
    for flags in (["-d", "0"], ["-n", "0"], ["--format", "xml"]):
        done = subprocess.run([*XENPY, "top", "-b", *flags], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 64 and done.stderr.count("\n") == 1, flags


def test_bad_control_socket_path_is_one_line(tmp_path: Path, guest_build_dir: Path) -> None:
    bad = tmp_path / "no-such-dir" / "control.sock"
    done = subprocess.run([*XENPY, "run", str(guest_build_dir / "test-pv64-hello"), "--no-input", "--control",
                           str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 65
    assert done.stderr.strip() == f"xenpy: error: --control {bad}: No such file or directory"
