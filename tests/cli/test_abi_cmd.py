"""``xenpy abi``: show and decode structures; bad input gets one clear line and a non-zero exit."""

import re
import struct
import subprocess
import sys

import pytest

from xenpy.cli.errors import EXIT_DATAERR, EXIT_USAGE
from xenpy.cli.main import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exit_:  # argparse usage errors and --help
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def field_row(out: str, field: str) -> tuple[int, int, str]:
    for line in out.splitlines():
        match = re.fullmatch(r"\s*(\d+)\s+(\d+)\s+(.+?)\s+" + re.escape(field), line)
        if match:
            return int(match.group(1)), int(match.group(2)), match.group(3)
    raise AssertionError(f"no row for {field} in:\n{out}")


def test_show_runstate_info_x86_32(capsys) -> None:
    """Spec 5.1: on x86_32 state_entry_time is at offset 4 and the struct is 44 bytes."""
    status, out, _ = run(capsys, "abi", "show", "vcpu_runstate_info", "--arch", "x86_32")
    assert status == 0
    assert "sizeof 44" in out.splitlines()[0]
    assert field_row(out, "state_entry_time") == (4, 8, "uint64_t")
    assert field_row(out, "time") == (12, 32, "uint64_t[4]")


def test_show_nested_members_x86_64(capsys) -> None:
    """Spec 5.3: vcpu_info.arch.cr2 at 16 and vcpu_info.time at 32 on x86_64."""
    status, out, _ = run(capsys, "abi", "show", "vcpu_info")
    assert status == 0
    assert field_row(out, "arch.cr2")[:2] == (16, 8)
    assert field_row(out, "time")[:2] == (32, 32)


def test_list_names_every_structure(capsys) -> None:
    status, out, _ = run(capsys, "abi", "list", "--arch", "x86_32")
    assert status == 0
    sizes = dict(line.split()[:2] for line in out.splitlines())
    assert sizes["shared_info"] == "2344"
    assert sizes["vcpu_guest_context"] == "2800"
    assert "iret_context" not in sizes  # x86_64 only


def test_decode_hex(capsys) -> None:
    data = struct.pack("<QII", 100_000_000, 1, 0)
    status, out, _ = run(capsys, "abi", "decode", "vcpu_set_singleshot_timer", "--hex", data.hex())
    assert status == 0
    assert re.search(r"^\s+0\s+timeout_abs_ns = 100000000 \(0x5f5e100\)$", out, re.M)
    assert re.search(r"^\s+8\s+flags = 1$", out, re.M)


def test_decode_file_with_offset(tmp_path, capsys) -> None:
    runstate = struct.pack("<i4xQ4Q", 2, 1234, 10, 20, 30, 40)
    path = tmp_path / "dump.bin"
    path.write_bytes(b"\xff" * 16 + runstate + b"\xee" * 8)
    status, out, _ = run(capsys, "abi", "decode", "vcpu_runstate_info", str(path), "--offset", "16")
    assert status == 0
    assert "state = 2" in out
    assert "time = [10, 20, 30, 40]" in out


def test_decode_start_info_strings(capsys) -> None:
    from xenpy.abi import x86_64

    raw = x86_64.start_info.build(dict(
        magic=b"xen-3.0-x86_64".ljust(32, b"\0"), nr_pages=256, shared_info=0x1000, flags=0, store_mfn=0,
        store_evtchn=1, console=dict(domU=dict(mfn=7, evtchn=2)), pt_base=0, nr_pt_frames=0, mfn_list=0,
        mod_start=0, mod_len=0, cmd_line=b"console=hvc0".ljust(1024, b"\0"), first_p2m_pfn=0, nr_p2m_frames=0))
    status, out, _ = run(capsys, "abi", "decode", "start_info", "--hex", raw.hex())
    assert status == 0
    assert "magic = 'xen-3.0-x86_64'" in out
    assert "console.domU.evtchn = 2" in out
    assert "cmd_line = 'console=hvc0'" in out


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["abi", "show", "no_such_struct"], EXIT_DATAERR, "unknown structure 'no_such_struct'"),
        (["abi", "decode", "vcpu_runstate_info", "--hex", "00" * 47], EXIT_DATAERR, "is 48 bytes; got 47"),
        (["abi", "decode", "vcpu_runstate_info", "--arch", "x86_32", "--hex", "00" * 48], EXIT_DATAERR,
         "is 44 bytes; got 48"),
        (["abi", "decode", "vcpu_runstate_info", "--hex", "zz"], EXIT_DATAERR, "not a hexadecimal"),
        (["abi", "decode", "vcpu_runstate_info", "/nonexistent/file"], EXIT_DATAERR, "cannot read"),
        (["abi", "show", "vcpu_info", "--arch", "arm64"], EXIT_USAGE, "invalid choice"),
    ],
)
def test_bad_input_one_line(capsys, argv, status, message) -> None:
    got, _, err = run(capsys, *argv)
    assert got == status
    error_lines = [line for line in err.splitlines() if "error" in line]
    assert len(error_lines) == 1 and message in error_lines[0], err
    assert "Traceback" not in err


def test_console_script_reports_without_traceback() -> None:
    result = subprocess.run([sys.executable, "-m", "xenpy", "abi", "show", "bogus"], capture_output=True,
                            text=True)
    assert result.returncode == EXIT_DATAERR
    assert result.stderr.strip().startswith("xenpy: error: unknown structure")
    assert "Traceback" not in result.stderr
