"""``xenpy run`` with what distributions ship: a bzImage, ``--initrd``, and standard input as console input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from loader.bzimagegen import bzimage_of, make_bzimage
from loader.elfgen import tiny_kernel, wait_for_input_kernel

from xenpy.cli.errors import EXIT_DATAERR
from xenpy.cli.main import main


def xenpy(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xenpy", *args], input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL, capture_output=True, timeout=120)


def test_run_help_documents_images_initrd_and_input(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("bzImage", "--initrd FILE", "--no-input", "Ctrl-]", "raw mode", "130"):
        assert text in out, text


@pytest.mark.needs_gcc
def test_run_a_bzimage_with_an_initrd(capfd, guest_build_dir: Path, tmp_path: Path) -> None:
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    kernel.write_bytes(bzimage_of((guest_build_dir / "test-pv64-hello").read_bytes(), "lz4"))
    initrd.write_bytes(b"070701" + bytes(6000))
    assert main(["run", str(kernel), "--initrd", str(initrd), "--cmdline", "console=hvc0"]) == 0
    out, err = capfd.readouterr()
    assert "6006 bytes" in out and 'cmd_line       "console=hvc0"' in out
    assert "d1 vmlinuz powered off" in err


def test_run_refuses_a_bad_bzimage_and_a_missing_initrd(capfd, tmp_path: Path) -> None:
    bad = tmp_path / "vmlinuz"
    bad.write_bytes(make_bzimage(b"\x42" * 64, version=0x0206))
    assert main(["run", str(bad)]) == EXIT_DATAERR
    _, err = capfd.readouterr()
    assert err == f"xenpy: error: {bad}: bzImage boot protocol too old (0206; 2.08 or later carries a payload)\n"
    assert main(["run", str(bad), "--initrd", str(tmp_path / "absent")]) == EXIT_DATAERR
    _, err = capfd.readouterr()
    assert err.startswith(f"xenpy: error: --initrd {tmp_path / 'absent'}: ") and err.count("\n") == 1


def test_piped_stdin_reaches_the_guest(tmp_path: Path) -> None:
    """A pipe on stdin is console input: the guest waiting for in_prod to move sees it (and ends with #UD);
    with --no-input it waits in vain until the timeout."""
    kernel = tmp_path / "waiter"
    kernel.write_bytes(wait_for_input_kernel(16))
    result = xenpy("run", str(kernel), "--memory", "16", stdin=b"x")
    assert result.returncode == 1 and b"crashed" in result.stderr and b"#UD" in result.stderr, result.stderr
    assert result.stderr.count(b"\n") == 1  # a pipe is not a terminal: no banner, only the summary
    result = xenpy("run", str(kernel), "--memory", "16", "--no-input", "--timeout", "0.5", stdin=b"x")
    assert result.returncode == 3 and b"timed out" in result.stderr


def test_dev_null_stdin_is_not_input(tmp_path: Path) -> None:
    kernel = tmp_path / "waiter"
    kernel.write_bytes(wait_for_input_kernel(16))
    result = xenpy("run", str(kernel), "--memory", "16", "--timeout", "0.5")
    assert result.returncode == 3, result.stderr


def test_terminal_input_and_ctrl_bracket(tmp_path: Path) -> None:
    """On a terminal: a banner names the escape, Ctrl-] ends the run (exit 130), the terminal is restored."""
    import os
    import pty
    import termios
    import time

    kernel = tmp_path / "spin"
    kernel.write_bytes(tiny_kernel(b"\xeb\xfe"))  # jmp .
    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        proc = subprocess.Popen([sys.executable, "-m", "xenpy", "run", str(kernel), "--memory", "16"],
                                stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        banner = proc.stderr.readline()  # printed once the terminal is in raw mode
        assert b"console: this terminal (Ctrl-] ends the run)" in banner
        time.sleep(0.2)
        os.write(master, b"\x1d")
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert b"interrupted (Ctrl-], the console escape character, was typed)" in err
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)
