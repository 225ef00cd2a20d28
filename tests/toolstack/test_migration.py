"""Save and restore in Xen's stream format (xenpy.toolstack.migration): the bundled suspend guest is saved
mid-test, restored into a hypervisor whose machine frames are laid out differently, and ends in SUCCESS; a
checkpoint resumes it in place; bad files are one clear error and leave no domain behind.

Xen's own validator of the format, ``verify-stream-v2`` (Debian's xen-utils-4.17, which ``xenpy fetch-xen``
unpacks into ``$XENPY_XEN_DIR/tools``), checks every file written here; those tests skip where it is absent, or
fail where ``XENPY_REQUIRE_ORACLE=1`` (CI).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xenpy.core.clock import VirtualClock
from xenpy.core.domain import DomainState
from xenpy.core.memory import OutOfMachineMemory
from xenpy.engine.runner import run_domain_until_stopped
from xenpy.engine.unicorn_engine import UnicornEngine
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import boot_pv_image
from xenpy.toolstack.conformance.fetch import DEFAULT_DEST, tools_dir
from xenpy.toolstack.lifecycle import LifecycleState, lifecycle_of
from xenpy.toolstack.migration.restore import restore_domain
from xenpy.toolstack.migration.save import SaveError, save_domain
from xenpy.toolstack.migration.stream import Record, SaveFileError, StreamReader

pytestmark = pytest.mark.needs_gcc

MEMORY_MIB = 32
TOOLS = tools_dir(Path(os.environ.get("XENPY_XEN_DIR", DEFAULT_DEST)))
VERIFY = TOOLS / "usr" / "lib" / "xen-4.17" / "bin" / "verify-stream-v2"
REQUIRED = os.environ.get("XENPY_REQUIRE_ORACLE") == "1"


def boot_suspend_guest(guest_build_dir: Path, *, seed: int = 0):
    hv = Hypervisor(memory_mib=MEMORY_MIB + 8, seed=seed)
    image = (guest_build_dir / "test-pv64-suspend").read_bytes()
    booted = boot_pv_image(hv, image, max_vcpus=2, memory_mib=MEMORY_MIB, cmdline="wait=5000")
    UnicornEngine(hv)
    lines: list[str] = []
    booted.domain.console.listen(lambda line: lines.append(line.decode()))
    node = f"/local/domain/{booted.domain.domid}/data/suspend"
    for _ in range(100):
        run_domain_until_stopped(hv, booted.domain, max_guest_ns=1_000_000)
        if booted.xenstore.store.read(node) == b"ready":
            break
    assert booted.xenstore.store.read(node) == b"ready", "".join(lines)
    return hv, booted, lines


def restore_and_run(data: bytes, *, start_ns: int = 0, seed: int = 7):
    hv = Hypervisor(memory_mib=MEMORY_MIB + 16, seed=seed, clock=VirtualClock(start_ns=start_ns))
    restored = restore_domain(hv, io.BytesIO(data))
    assert lifecycle_of(restored.domain).state is LifecycleState.PAUSED
    UnicornEngine(hv)
    lines: list[str] = []
    restored.domain.console.listen(lambda line: lines.append(line.decode()))
    run_domain_until_stopped(hv, restored.domain, timeout_s=60)
    return hv, restored, "".join(lines)


def lifecycle_changes(d) -> list[str]:
    """The lifecycle states ``d`` goes through from now on."""
    seen: list[str] = []
    lifecycle_of(d).watch(lambda _d, _old, new: seen.append(new.value))
    return seen


@pytest.fixture(scope="module")
def saved(guest_build_dir: Path):
    """The suspend guest saved once, with the p2m it had and the lifecycle states it went through."""
    hv, booted, _lines = boot_suspend_guest(guest_build_dir)
    d = booted.domain
    out = io.BytesIO()
    before = {"p2m": d.memory.p2m.mfns.copy(), "lifecycle": lifecycle_changes(d)}
    summary = save_domain(hv, d, out)
    return out.getvalue(), summary, before, hv


def test_save_writes_every_page_and_destroys_the_domain(saved) -> None:
    data, summary, before, hv = saved
    assert before["lifecycle"] == ["suspending", "suspended", "saving", "destroyed"]
    assert summary.pages == MEMORY_MIB * 256
    assert summary.bytes == len(data) > MEMORY_MIB << 20
    assert not hv.domains, "xl save destroys the domain once it is written"
    records = [rtype for _at, rtype, _body in _records(data)]
    assert records[:3] == [Record.X86_PV_INFO, Record.STATIC_DATA_END, Record.X86_PV_P2M_FRAMES]
    vcpu = [Record.X86_PV_VCPU_BASIC, Record.X86_PV_VCPU_EXTENDED]
    assert records[-7:] == [Record.X86_TSC_INFO, Record.SHARED_INFO, *vcpu, *vcpu, Record.END]


def _records(data: bytes):
    reader = StreamReader(io.BytesIO(data))
    reader.headers()
    return list(reader.records())


def _verify(path: Path) -> subprocess.CompletedProcess[str]:
    if not VERIFY.is_file():
        if REQUIRED:
            pytest.fail(f"{VERIFY} is missing: run xenpy fetch-xen")
        pytest.skip(f"Xen's verify-stream-v2 is not unpacked ({VERIFY}): run xenpy fetch-xen")
    env = {**os.environ, "PYTHONPATH": str(TOOLS / "usr" / "lib" / "xen-4.17" / "lib" / "python")}
    return subprocess.run([sys.executable, str(VERIFY), "-f", "xl", "-v", "-i", str(path)], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip


def test_xen_verify_stream_v2_accepts_the_save_file(saved, tmp_path: Path) -> None:
    path = tmp_path / "guest.xl"
    path.write_bytes(saved[0])
    done = _verify(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "64bit guest, 4 levels of pagetables" in done.stdout
    assert "Libxl Record: End" in done.stdout


def test_restore_into_another_frame_layout_resumes_the_guest_to_success(saved) -> None:
    data, summary, before, _hv = saved
    _hv, restored, console = restore_and_run(data, start_ns=summary.saved_at_ns)
    d = restored.domain
    assert not np.array_equal(d.memory.p2m.mfns, before["p2m"]), "the restore must not reuse the saver's layout"
    assert "SCHEDOP_shutdown returned 0" in console
    assert console.rstrip().endswith("Test result: SUCCESS"), console
    assert "FAIL" not in console
    assert restored.xenstore.store.read(f"/local/domain/{d.domid}/data/suspend") == b"resumed"
    assert d.tsc_incarnation == 1
    # The guest's view of system time continues from the save (the restoring clock starts at its TSC info).
    t_before, t_after = map(int, re.search(r"system time (\d+) ns before, (\d+) ns after", console).groups())
    assert t_before <= t_after <= summary.saved_at_ns + 10_000_000


def test_checkpoint_resumes_the_same_domain_and_the_file_restores_too(guest_build_dir: Path) -> None:
    hv, booted, lines = boot_suspend_guest(guest_build_dir)
    d = booted.domain
    out = io.BytesIO()
    changes = lifecycle_changes(d)
    save_domain(hv, d, out, checkpoint=True)
    assert d.state is DomainState.RUNNING
    assert changes == ["suspending", "suspended", "saving", "running"]
    run_domain_until_stopped(hv, d, timeout_s=60)
    console = "".join(lines)
    assert "SCHEDOP_shutdown returned 1" in console
    assert console.rstrip().endswith("Test result: SUCCESS"), console
    assert booted.xenstore.store.read(f"/local/domain/{d.domid}/data/suspend") == b"cancelled"
    _hv2, _restored, restored_console = restore_and_run(out.getvalue())
    assert restored_console.rstrip().endswith("Test result: SUCCESS"), restored_console


def test_a_guest_that_does_not_suspend_is_a_clear_error_and_keeps_running(guest_build_dir: Path) -> None:
    hv = Hypervisor(memory_mib=MEMORY_MIB + 8)
    image = (guest_build_dir / "test-pv64-runstate-load").read_bytes()
    booted = boot_pv_image(hv, image, max_vcpus=2, memory_mib=MEMORY_MIB, cmdline="load=spin duration=0")
    UnicornEngine(hv)
    run_domain_until_stopped(hv, booted.domain, max_guest_ns=5_000_000)
    changes = lifecycle_changes(booted.domain)
    with pytest.raises(SaveError, match="did not suspend"):
        save_domain(hv, booted.domain, io.BytesIO(), timeout_s=2)
    assert booted.domain.state is DomainState.RUNNING
    assert changes == ["suspending", "running"]
    with pytest.raises(SaveError, match="is destroyed: only a running or paused domain"):
        hv.destroy_domain(booted.domain)
        save_domain(hv, booted.domain, io.BytesIO())
    assert booted.xenstore.store.read(f"/local/domain/{booted.domain.domid}/control/shutdown") == b""


@pytest.mark.parametrize("keep", [0, 20, 40, 60, 100, 200, 4000, 1 << 20, -5000, -100, -8])
def test_a_truncated_file_is_one_error_and_leaves_no_domain(saved, keep: int) -> None:
    data = saved[0][:keep]
    hv = Hypervisor(memory_mib=MEMORY_MIB + 16)
    with pytest.raises(SaveFileError, match="at byte"):
        restore_domain(hv, io.BytesIO(data))
    assert not hv.domains


def test_mutated_files_restore_or_fail_with_one_error_never_half_restored(saved) -> None:
    """Seeded byte flips in the headers, the records' headers and the vCPU state: SaveFileError, or a domain."""
    data = saved[0]
    rng = np.random.default_rng(1)
    tail = len(data) - 20_000  # the TSC info, shared_info, vCPU records and ENDs
    for case in range(60):
        mutated = bytearray(data)
        where = int(rng.integers(0, 200)) if case % 2 else tail + int(rng.integers(0, 20_000))
        mutated[where] ^= 1 << int(rng.integers(0, 8))
        hv = Hypervisor(memory_mib=MEMORY_MIB + 16)
        try:
            restored = restore_domain(hv, io.BytesIO(bytes(mutated)))
        except (SaveFileError, OutOfMachineMemory):
            assert not hv.domains, f"case {case}: byte {where} left a domain behind"
        else:
            assert restored.domain.state is DomainState.PAUSED


def _socket_links():
    import socket

    from xenpy.toolstack.migration.transport import Link

    a, b = socket.socketpair()
    return (Link(a.makefile("wb"), a.makefile("rb"), [a.close]), Link(b.makefile("wb"), b.makefile("rb"), [b.close]))


def test_live_migration_in_process_resends_what_the_guest_changed(guest_build_dir: Path) -> None:
    """Pre-copy rounds, the final pause, the receiver's answer: the guest ends in SUCCESS on the other side."""
    import threading

    from xenpy.toolstack.migration.migrate import migrate_domain, receive_domain

    hv, booted, _lines = boot_suspend_guest(guest_build_dir)
    sender, receiver = _socket_links()
    received = {}

    def receive() -> None:
        received["hv"], received["domain"] = receive_domain(
            receiver, lambda cfg, sent_at: Hypervisor(memory_mib=cfg.memory_mib + 16, seed=3,
                                                      clock=VirtualClock(start_ns=sent_at)))

    thread = threading.Thread(target=receive)
    thread.start()
    changes = lifecycle_changes(booted.domain)
    summary = migrate_domain(hv, booted.domain, sender, max_downtime_ms=10_000)
    thread.join(60)
    assert not hv.domains
    assert changes[:2] == ["migrating", "running"] and changes[-3:] == ["suspended", "migrating", "destroyed"]
    assert summary.rounds >= 1 and summary.pages_sent >= MEMORY_MIB * 256 and summary.met
    assert summary.final_pages < MEMORY_MIB * 256
    hv2, restored = received["hv"], received["domain"]
    UnicornEngine(hv2)
    lines: list[str] = []
    restored.domain.console.listen(lambda line: lines.append(line.decode()))
    run_domain_until_stopped(hv2, restored.domain, timeout_s=60)
    console = "".join(lines)
    assert console.rstrip().endswith("Test result: SUCCESS"), console
    assert "FAIL" not in console


def test_a_receiver_that_refuses_leaves_the_source_running(guest_build_dir: Path) -> None:
    import threading

    from xenpy.toolstack.migration.migrate import migrate_domain
    from xenpy.toolstack.migration.transport import MigrationError

    hv, booted, lines = boot_suspend_guest(guest_build_dir)
    sender, receiver = _socket_links()

    def refuse() -> None:
        reader = StreamReader(receiver.rfile)
        reader.headers()
        for _record in reader.records():
            pass
        receiver.send_verdict("no room for it here")

    thread = threading.Thread(target=refuse)
    thread.start()
    with pytest.raises(MigrationError, match="the receiver refused the domain: no room for it here"):
        migrate_domain(hv, booted.domain, sender)
    thread.join(60)
    d = booted.domain
    assert lifecycle_of(d).state is LifecycleState.RUNNING
    run_domain_until_stopped(hv, d, timeout_s=60)
    console = "".join(lines)
    assert "SCHEDOP_shutdown returned 1" in console and console.rstrip().endswith("Test result: SUCCESS"), console


def test_a_configuration_naming_an_unknown_profile_is_one_error(saved) -> None:
    """Regression (found by the save-file fuzzer): a garbled profile name raised KeyError from the domain's
    creation."""
    data = saved[0]
    assert b'"profile": "head"' in data[:1024]
    hv = Hypervisor(memory_mib=MEMORY_MIB + 16)
    with pytest.raises(SaveFileError, match="names Xen profile 'hecd', which xenpy does not know"):
        restore_domain(hv, io.BytesIO(data.replace(b'"profile": "head"', b'"profile": "hecd"', 1)))
    assert not hv.domains


def test_a_checkpoint_of_a_paused_domain_leaves_it_paused(guest_build_dir: Path) -> None:
    hv, booted, lines = boot_suspend_guest(guest_build_dir)
    d = booted.domain
    d.pause()
    save_domain(hv, d, io.BytesIO(), checkpoint=True)
    assert d.state is DomainState.PAUSED and lifecycle_of(d).state is LifecycleState.PAUSED
    d.unpause()
    run_domain_until_stopped(hv, d, timeout_s=60)
    assert "".join(lines).rstrip().endswith("Test result: SUCCESS")
