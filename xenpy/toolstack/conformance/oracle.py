"""Real Xen as the reference: boot a PV64 kernel as dom0 of a Xen hypervisor under QEMU (TCG).

QEMU loads Xen with ``-kernel`` (a multiboot ELF) and the test kernel as its first module (``-initrd``, the
module string after the path is dom0's command line). Xen's log and the kernel's ``console_io`` output share
the serial console. When dom0 shuts down Xen prints ``Hardware Dom0 halted``/``shutdown``/``crashed`` (or
panics) and waits: QEMU is stopped then.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

QEMU = "qemu-system-x86_64"

#: Xen's last words about dom0, and what they mean.
_ENDINGS = (
    (re.compile(r"Hardware Dom0 halted"), "halted"),
    (re.compile(r"Hardware Dom0 shutdown"), "shutdown"),
    (re.compile(r"Hardware Dom0 crashed"), "crashed"),
    (re.compile(r"Panic on CPU"), "panic"),
)
_XEN_VERSION = re.compile(r"\(XEN\) Xen version (\S+)")


class OracleError(Exception):
    """Real Xen cannot be run: no QEMU, no such Xen image, or QEMU failed to start (one line)."""


@dataclass(frozen=True)
class XenBoot:
    """One kernel booted as dom0 of a real Xen.

    Attributes:
        console: what the kernel printed (every serial line not from Xen's log), ``\\r`` removed.
        log: the whole serial output.
        ending: ``halted``, ``shutdown``, ``crashed``, ``panic``, or ``timeout`` (no end within the limit).
        xen_version: the version Xen's banner gives (``4.20.4``), or ``""`` if it printed none.
        seconds: wall time from QEMU's start to the end.
    """

    console: str
    log: str
    ending: str
    xen_version: str
    seconds: float


def find_qemu() -> str | None:
    """The path of ``qemu-system-x86_64`` on PATH, or None."""
    return shutil.which(QEMU)


#: QEMU's CPU model for the oracle: everything TCG emulates but SMAP. With SMAP, Xen under TCG takes a #PF of its
#: own on a PV guest's fault path (creating the bounce frame of a fault on the guest's own GDT, or Linux's first
#: exception as dom0) and crashes the guest; SMAP is Xen's own protection, not part of the PV interface.
QEMU_CPU = "max,-smap"


def boot_on_xen(
    xen: Path,
    image: Path,
    cmdline: str = "",
    *,
    vcpus: int = 1,
    pcpus: int | None = None,
    timeout_s: float = 120.0,
    qemu: str | None = None,
    initrd: Path | None = None,
    dom0_mem_mib: int = 64,
) -> XenBoot:
    """Boot ``image`` as dom0 (with ``vcpus`` vCPUs, ``dom0_mem_mib`` of memory, ``cmdline`` and, if given, the
    module ``initrd``) on the Xen hypervisor ``xen``, in a QEMU machine of ``pcpus`` CPUs (default: as many as
    the vCPUs, at least 2).

    Raises:
        OracleError: QEMU is missing, ``xen`` or ``image`` is not a file, or QEMU could not start.
    """
    qemu = qemu or find_qemu()
    if qemu is None:
        raise OracleError(f"{QEMU} not found on PATH (Debian: apt-get install qemu-system-x86)")
    files = ((xen, "Xen image"), (image, "kernel image"), *(((initrd, "initrd"),) if initrd else ()))
    for path, what in files:
        if not Path(path).is_file():
            raise OracleError(f"{path}: no such {what}")
    if "," in str(image) or "," in cmdline or "," in str(initrd or ""):
        raise OracleError("QEMU's -initrd cannot take a ',' in the kernel's or initrd's path or the command line")
    xen_args = (
        f"console=com1 com1=115200 dom0_mem={dom0_mem_mib}M dom0_max_vcpus={vcpus} loglvl=all guest_loglvl=all"
    )
    modules = f"{image} {cmdline}".rstrip() + (f",{initrd}" if initrd else "")
    argv = [
        qemu, "-M", "q35", "-cpu", QEMU_CPU, "-m", "512", "-smp", str(pcpus or max(2, vcpus)),
        "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-display", "none",
        "-kernel", str(xen), "-append", xen_args,
        "-initrd", modules,
    ]  # fmt: skip
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
    except OSError as exc:
        raise OracleError(f"{qemu}: {exc.strerror}") from None
    assert proc.stdout is not None
    chunks: list[bytes] = []
    ending = "timeout"
    pending = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while ending == "timeout":
            left = timeout_s - (time.monotonic() - start)
            if left <= 0 or not sel.select(timeout=left):
                break
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                ending = "exited"
                break
            chunks.append(data)
            pending = (pending + data)[-4096:]
            text = pending.decode(errors="replace")
            for pattern, name in _ENDINGS:
                if pattern.search(text):
                    ending = name
                    break
    _stop(proc)
    seconds = time.monotonic() - start
    log = b"".join(chunks).decode(errors="replace").replace("\r", "")
    if ending == "exited" and proc.returncode not in (0, None) and "(XEN)" not in log:
        raise OracleError(f"{qemu} exited with status {proc.returncode}: {log.strip().splitlines()[-1:]}")
    version = _XEN_VERSION.search(log)
    return XenBoot(
        console=guest_console(log),
        log=log,
        ending=ending,
        xen_version=version.group(1) if version else "",
        seconds=seconds,
    )


def guest_console(log: str) -> str:
    """The kernel's lines of a serial log: every line that is not Xen's (``(XEN)``) or QEMU's firmware's."""
    lines = []
    for line in log.splitlines():
        # Xen's log may start mid-line after a guest write; keep the guest's part.
        head, sep, _ = line.partition("(XEN)")
        if sep:
            line = head
        line = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc", "", line)
        if line.strip() and not line.startswith(("SeaBIOS", "iPXE", "Booting from", "Machine UUID")):
            lines.append(line)
    return "\n".join(lines) + ("\n" if lines else "")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop QEMU (its process group) and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
