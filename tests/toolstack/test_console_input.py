"""Console input from the host: a file descriptor read between scheduler steps into the guest's input ring
(xenconsoled's ``handle_tty_read``), the escape character, and the run loop around it.

The guests are tiny kernels (``loader/elfgen.py``): one spins until ``in_prod`` moves and then executes ``ud2``
(so a crash with #UD proves the byte arrived while it ran), one blocks in SCHEDOP_block with no timer armed.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from loader.elfgen import tiny_kernel, wait_for_input_kernel

from xenpy.abi.io_console import XENCONS_IN_SIZE
from xenpy.engine.unicorn_engine import UnicornEngine
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import boot_pv_image
from xenpy.toolstack.console_input import ESCAPE_CHAR, MAX_QUEUED_INPUT, ConsoleInput, input_kind
from xenpy.toolstack.run import Outcome, run_domain

MEMORY_MIB = 16
SCHEDOP_BLOCK_THEN_UD2 = bytes.fromhex("bf01000000" "b81d000000" "0f05" "0f0b")  # sched_op(SCHEDOP_block)


def wait_for_input() -> bytes:
    return wait_for_input_kernel(MEMORY_MIB)


@pytest.fixture
def pipe():
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        try:
            os.close(fd)
        except OSError:
            pass


def boot(image: bytes):
    hv = Hypervisor(memory_mib=MEMORY_MIB + 8)
    booted = boot_pv_image(hv, image, memory_mib=MEMORY_MIB)
    UnicornEngine(hv)
    return hv, booted


def test_input_kind(pipe, tmp_path) -> None:
    read_fd, _ = pipe
    assert input_kind(read_fd) == "pipe"
    with open(tmp_path / "f", "wb") as f:
        assert input_kind(f.fileno()) == "file"
    with open(os.devnull, "rb") as null:
        assert input_kind(null.fileno()) is None
    assert input_kind(12345) is None


def test_poll_feeds_what_is_ready(pipe) -> None:
    read_fd, write_fd = pipe
    _hv, booted = boot(tiny_kernel(b"\xeb\xfe"))
    source = ConsoleInput(booted.console, read_fd)
    assert source.poll() == 0  # nothing ready: no wait, no block
    os.write(write_fd, b"echo hi\r")
    assert source.poll() == 8
    assert booted.console.total_input_bytes == 8
    os.close(write_fd)
    assert source.poll() == 0 and source.at_eof and not source.is_open


def test_escape_ends_input_and_is_not_sent(pipe) -> None:
    read_fd, write_fd = pipe
    _hv, booted = boot(tiny_kernel(b"\xeb\xfe"))
    source = ConsoleInput(booted.console, read_fd, escape=ESCAPE_CHAR)
    os.write(write_fd, b"ab\x1dcd")
    assert source.poll() == 2 and source.detached
    os.write(write_fd, b"more")
    assert source.poll() == 0 and booted.console.total_input_bytes == 2


def test_reading_stops_while_the_guest_does_not_take_input(pipe) -> None:
    """A guest that never reads gets one ring plus one queue's worth; the rest stays in the pipe."""
    read_fd, write_fd = pipe
    _hv, booted = boot(tiny_kernel(b"\xeb\xfe"))
    source = ConsoleInput(booted.console, read_fd)
    os.write(write_fd, b"z" * 8192)
    while source.poll():
        pass
    assert booted.console.total_input_bytes == XENCONS_IN_SIZE
    assert booted.console.pending_input == MAX_QUEUED_INPUT
    assert source.total_bytes == XENCONS_IN_SIZE + MAX_QUEUED_INPUT


def test_running_guest_sees_input(pipe) -> None:
    """Input written while the guest runs reaches its ring between steps: the spinning guest leaves its loop."""
    read_fd, write_fd = pipe
    hv, booted = boot(wait_for_input())
    timer = threading.Timer(0.3, os.write, (write_fd, b"x"))
    timer.start()
    started = time.monotonic()
    report = run_domain(hv, booted.domain, timeout_s=20, console_input=ConsoleInput(booted.console, read_fd))
    timer.join()
    assert report.outcome is Outcome.CRASH and "#UD" in report.detail, report.detail
    assert time.monotonic() - started >= 0.3


def test_without_input_the_spinning_guest_times_out(pipe) -> None:
    read_fd, _ = pipe
    hv, booted = boot(wait_for_input())
    report = run_domain(hv, booted.domain, timeout_s=0.5, console_input=ConsoleInput(booted.console, read_fd))
    assert report.outcome is Outcome.TIMEOUT and "no shutdown within 0.5 s" in report.detail


def test_stalled_guest_waits_for_input_and_wakes(pipe) -> None:
    """Blocked with no timer: while input may come the run waits; the byte's event wakes the guest (whose
    upcall, with no event callback registered, then crashes it)."""
    read_fd, write_fd = pipe
    hv, booted = boot(tiny_kernel(SCHEDOP_BLOCK_THEN_UD2))
    timer = threading.Timer(0.3, os.write, (write_fd, b"\r"))
    timer.start()
    report = run_domain(hv, booted.domain, timeout_s=20, console_input=ConsoleInput(booted.console, read_fd))
    timer.join()
    assert report.outcome is Outcome.CRASH, report.detail
    assert booted.console.total_input_bytes == 1


def test_stalled_guest_with_input_closed_is_stalled(pipe) -> None:
    read_fd, write_fd = pipe
    os.close(write_fd)
    hv, booted = boot(tiny_kernel(SCHEDOP_BLOCK_THEN_UD2))
    report = run_domain(hv, booted.domain, timeout_s=20, console_input=ConsoleInput(booted.console, read_fd))
    assert report.outcome is Outcome.TIMEOUT and "can never run again" in report.detail


def test_escape_interrupts_the_run(pipe) -> None:
    read_fd, write_fd = pipe
    hv, booted = boot(tiny_kernel(b"\xeb\xfe"))
    threading.Timer(0.2, os.write, (write_fd, bytes([ESCAPE_CHAR]))).start()
    source = ConsoleInput(booted.console, read_fd, escape=ESCAPE_CHAR)
    report = run_domain(hv, booted.domain, timeout_s=20, console_input=source)
    assert report.outcome is Outcome.INTERRUPTED and report.outcome.value == 130
    assert "Ctrl-]" in report.detail


def test_raw_terminal_and_restore() -> None:
    """On a terminal: no echo, no line buffering, no signal keys during the block; the old modes after it."""
    import pty
    import termios

    from xenpy.toolstack.console_input import raw_terminal

    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        assert input_kind(slave) == "tty"
        with raw_terminal(slave):
            lflag = termios.tcgetattr(slave)[3]
            assert not lflag & (termios.ECHO | termios.ICANON | termios.ISIG)
            assert termios.tcgetattr(slave)[1] & termios.OPOST  # the guest's newlines still work
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)
