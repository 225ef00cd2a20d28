"""``xenpy migrate`` between two processes: the suspend guest of a ``xenpy run --control`` moves live to a
``xenpy restore --incoming`` over a Unix socket, over TCP and through an ssh-like command, and ends there in
SUCCESS with the downtime bound met; a migration to nowhere leaves the source guest running."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.needs_gcc

XENPY = [sys.executable, "-m", "xenpy"]


def wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def start_source(image: Path, sock: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [*XENPY, "run", str(image), "--vcpus", "2", "--no-input", "--timeout", "120", "--cmdline", "wait=60000",
         "--control", str(sock)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(sock, process)
    return process


def migrate(sock: Path, address: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*XENPY, "migrate", "--control", str(sock), *extra, address], capture_output=True,
                          text=True, timeout=180, check=False)  # fmt: skip


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, out, err


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_live_migration_between_two_processes(guest_build_dir: Path, tmp_path: Path, transport: str) -> None:
    sock = tmp_path / "source.sock"
    if transport == "unix":
        address, ready = f"unix:{tmp_path / 'incoming.sock'}", tmp_path / "incoming.sock"
    else:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        address, ready = f"tcp:127.0.0.1:{port}", None
    receiver = subprocess.Popen([*XENPY, "restore", "--incoming", address, "--no-input", "--timeout", "120"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    source = start_source(guest_build_dir / "test-pv64-suspend", sock)
    try:
        if ready is not None:
            wait_for(ready, receiver)
        else:
            time.sleep(2)
        done = migrate(sock, address, "--max-downtime", "5000")
        assert done.returncode == 0, done.stderr
        summary = re.search(r"migrated to .*: (\d+) round\(s\), (\d+) pages sent \((\d+) resent, (\d+) while "
                            r"paused\).*downtime ([\d.]+) ms, within the 5000 ms bound", done.stderr)
        assert summary, done.stderr
        rounds, sent, _resent, final, _downtime = summary.groups()
        assert int(rounds) >= 1 and int(sent) >= 8192 and int(final) < 8192
    finally:
        source_rc, source_out, source_err = finish(source)
        rc, out, err = finish(receiver)
    assert source_rc == 5 and "migrated away (to " in source_err, source_err
    assert "Test result" not in source_out
    assert rc == 0, err
    assert "SCHEDOP_shutdown returned 0" in out and out.rstrip().endswith("Test result: SUCCESS"), out


def test_migration_through_an_ssh_command(guest_build_dir: Path, tmp_path: Path) -> None:
    """``xenpy migrate HOST`` runs ``ssh HOST xenpy restore --incoming -``; a stand-in for ssh runs it here."""
    fake_ssh = tmp_path / "fake-ssh"
    fake_ssh.write_text(f"#!/bin/sh\nshift\nshift\nexec {sys.executable} -m xenpy \"$@\" --no-input "
                        f"2>{tmp_path / 'remote.err'}\n")
    fake_ssh.chmod(fake_ssh.stat().st_mode | stat.S_IEXEC)
    sock = tmp_path / "source.sock"
    source = start_source(guest_build_dir / "test-pv64-suspend", sock)
    try:
        done = migrate(sock, "otherhost", "--ssh-command", str(fake_ssh), "--max-downtime", "5000")
        assert done.returncode == 0, done.stderr
    finally:
        source_rc, _out, source_err = finish(source)
    assert source_rc == 5, source_err
    remote = tmp_path / "remote.err"
    deadline = time.monotonic() + 60
    while "Test result" not in remote.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = remote.read_text()
    assert "received d1" in text and "Test result: SUCCESS" in text, text


def test_a_migration_to_nowhere_is_one_error_and_the_guest_runs_on(guest_build_dir: Path, tmp_path: Path) -> None:
    sock = tmp_path / "source.sock"
    source = start_source(guest_build_dir / "test-pv64-suspend", sock)
    try:
        done = migrate(sock, "unix:" + str(tmp_path / "nobody.sock"))
        assert done.returncode == 65
        assert done.stderr.startswith("xenpy: error: migrate d1: cannot connect to unix:"), done.stderr
        assert done.stderr.count("\n") == 1
        # The guest is still there, and a checkpoint still works.
        saved = subprocess.run([*XENPY, "save", "-c", "--control", str(sock), str(tmp_path / "g.xl")],
                               capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert saved.returncode == 0, saved.stderr
    finally:
        source_rc, source_out, _err = finish(source)
    assert source_rc == 0 and source_out.rstrip().endswith("Test result: SUCCESS"), source_out
