"""``xenpy run``: Ctrl-C asks the guest to power off through xenstore (a second one stops the run), and
``--xenstore-socket`` serves the store to clients while the guest runs."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loader.elfgen import tiny_kernel

from xenpy.abi.io_xs_wire import XsdSockmsgType
from xenpy.cli.errors import EXIT_DATAERR
from xenpy.cli.main import main
from xenpy.toolstack.xenstore.wire import MessageReader, encode

SPIN = b"\xeb\xfe"  # jmp . : a kernel that never shuts down


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "xenpy", "run", *args, "--no-input"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def wait_for(path: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_first_ctrl_c_asks_the_guest_to_power_off_the_second_stops(tmp_path: Path) -> None:
    kernel = tmp_path / "spin"
    kernel.write_bytes(tiny_kernel(SPIN))
    sock = tmp_path / "xs.sock"
    proc = start(str(kernel), "--timeout", "60", "--xenstore-socket", str(sock))
    wait_for(sock)  # the run has started
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)
    assert proc.poll() is None, "a first Ctrl-C only asks the guest"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert b"asked d1 to power off (control/shutdown)" in err


def test_xenstore_socket_answers_while_the_guest_runs(tmp_path: Path) -> None:
    kernel = tmp_path / "spin"
    kernel.write_bytes(tiny_kernel(SPIN))
    sock = tmp_path / "xs.sock"
    proc = start(str(kernel), "--timeout", "20", "--xenstore-socket", str(sock))
    try:
        wait_for(sock)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(20)
            client.connect(str(sock))
            client.sendall(encode(XsdSockmsgType.XS_READ, 7, 0, b"/local/domain/1/name\0"))
            reader, replies = MessageReader(), []
            while not replies:
                replies = reader.feed(client.recv(4096))
        assert (replies[0].type, replies[0].req_id, replies[0].payload) == (XsdSockmsgType.XS_READ, 7, b"spin")
    finally:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)  # two signals close together are one to the process
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_bad_xenstore_socket_path_is_one_line(capfd, tmp_path: Path) -> None:
    kernel = tmp_path / "spin"
    kernel.write_bytes(tiny_kernel(SPIN))
    bad = tmp_path / "no-such-dir" / "xs.sock"
    assert main(["run", str(kernel), "--no-input", "--xenstore-socket", str(bad)]) == EXIT_DATAERR
    _, err = capfd.readouterr()
    assert err.startswith(f"xenpy: error: --xenstore-socket {bad}: ") and err.count("\n") == 1


@pytest.mark.parametrize("text", ["control/shutdown", "xl shutdown", "--xenstore-socket PATH"])
def test_run_help_documents_the_shutdown_request(capsys, text: str) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert text in " ".join(capsys.readouterr().out.split())
