"""``xenpy save`` against a running ``xenpy run --control``, and ``xenpy restore``: the suspend guest is saved
mid-test (its run exits with 5), restored by another process and ends in SUCCESS; ``-c`` leaves it running; a
file that is not a save file, or a truncated one, is one line and exit status 65."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.needs_gcc

XENPY = [sys.executable, "-m", "xenpy"]


def start_run(image: Path, socket_path: Path) -> subprocess.Popen[str]:
    """The suspend guest under ``xenpy run --control``, waiting up to a minute for a save."""
    process = subprocess.Popen(
        [*XENPY, "run", str(image), "--vcpus", "2", "--no-input", "--timeout", "120", "--clock", "host",
         "--cmdline", "wait=60000", "--control", str(socket_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not socket_path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the control socket never appeared"
        time.sleep(0.05)
    return process


def xenpy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*XENPY, *args], capture_output=True, text=True, timeout=120, check=False)


def test_save_then_restore_in_another_process(guest_build_dir: Path, tmp_path: Path) -> None:
    sock, saved = tmp_path / "c.sock", tmp_path / "guest.xl"
    run = start_run(guest_build_dir / "test-pv64-suspend", sock)
    try:
        done = xenpy("save", "--control", str(sock), str(saved))
        assert done.returncode == 0, done.stderr
        assert f"saved to {saved}: 8192 pages" in done.stderr and "destroyed" in done.stderr
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 5, err
    assert f"saved away (to {saved})" in err
    assert "Test result" not in out, "the guest was saved before it finished"

    restored = xenpy("restore", str(saved), "--no-input", "--runstate")
    assert restored.returncode == 0, restored.stderr
    assert "SCHEDOP_shutdown returned 0" in restored.stdout
    assert restored.stdout.rstrip().endswith("Test result: SUCCESS"), restored.stdout
    assert f"restored d1 test-pv64-suspend from {saved}: 8192 pages, 2 vCPU(s)" in restored.stderr
    assert "powered off" in restored.stderr


def test_checkpoint_leaves_the_guest_running(guest_build_dir: Path, tmp_path: Path) -> None:
    sock, saved = tmp_path / "c.sock", tmp_path / "guest.xl"
    run = start_run(guest_build_dir / "test-pv64-suspend", sock)
    try:
        done = xenpy("save", "-c", "--control", str(sock), "1", str(saved))
        assert done.returncode == 0, done.stderr
        assert "still running (checkpoint)" in done.stderr
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 0, err
    assert "SCHEDOP_shutdown returned 1" in out and out.rstrip().endswith("Test result: SUCCESS"), out
    assert saved.stat().st_size > 32 << 20


def test_save_of_an_unknown_domain_is_one_error_and_writes_nothing(guest_build_dir: Path, tmp_path: Path) -> None:
    sock = tmp_path / "c.sock"
    run = start_run(guest_build_dir / "test-pv64-suspend", sock)
    try:
        done = xenpy("save", "--control", str(sock), "7", str(tmp_path / "x.xl"))
        assert done.returncode == 65
        assert done.stderr == "xenpy: error: save d7: no domain 7\n"
        assert not (tmp_path / "x.xl").exists()
    finally:
        run.kill()


XL_MAGIC = b"Xen saved domain, xl format\n \0 \r"


@pytest.mark.parametrize("content", [b"", b"not a save file at all\n", XL_MAGIC + bytes(8)],
                         ids=["empty", "text", "truncated-header"])
def test_restore_of_a_bad_file_is_one_line(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.xl"
    bad.write_bytes(content)
    done = xenpy("restore", str(bad), "--no-input")
    assert done.returncode == 65
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"xenpy: error: {bad}: "), done.stderr
    assert "Traceback" not in done.stderr


def test_restore_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    done = xenpy("restore", str(tmp_path / "nope.xl"))
    assert done.returncode == 65 and "No such file or directory" in done.stderr
