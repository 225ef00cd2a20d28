"""Debian's Linux kernel on xenpy's xenstore: the toolstack's ``control/shutdown`` request (as ``xl shutdown``
writes it) reaches the guest's xenbus watch, the guest acknowledges it and powers off.

Slow, and skipped without Debian's packages, as ``test_linux.py`` (the same kernel and busybox initramfs).
"""

from __future__ import annotations

import pytest

from xenpy.engine import DEFAULT_ENGINE, create_engine
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import HYPERVISOR_MEMORY_MIB, boot_pv_image
from xenpy.toolstack.run import Outcome, run_domain
from xenpy.toolstack.xenstore import shutdown_acknowledged

from . import debian

pytestmark = pytest.mark.slow

MEMORY_MIB = 256
# Linux's "poweroff" handler runs /sbin/poweroff (orderly_poweroff); here that is busybox's, forced.
INIT = """/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
rm -f /sbin/poweroff
printf '#!/bin/sh\\nexec /bin/busybox poweroff -f\\n' > /sbin/poweroff
chmod +x /sbin/poweroff
echo init-ready
exec sh
"""


@pytest.fixture(scope="module")
def packages() -> tuple[bytes, bytes]:
    if not debian.apt_available():
        pytest.skip("apt-get is not available: cannot fetch Debian's kernel and busybox")
    try:
        return debian.kernel_image(), debian.busybox_binary()
    except debian.FetchError as exc:
        pytest.skip(str(exc))


def test_control_shutdown_powers_linux_off(packages) -> None:
    kernel, busybox = packages
    hv = Hypervisor(memory_mib=MEMORY_MIB + HYPERVISOR_MEMORY_MIB)
    booted = boot_pv_image(hv, kernel, memory_mib=MEMORY_MIB, initrd=debian.initramfs(INIT, busybox),
                           cmdline="console=hvc0 quiet")  # fmt: skip
    chunks: list[bytes] = []
    booted.domain.console.listen(chunks.append)
    create_engine(DEFAULT_ENGINE, hv)
    for _ in range(30):  # up to 30 s of guest time to reach the shell
        report = run_domain(hv, booted.domain, timeout_s=120, max_guest_ns=10**9)
        if b"init-ready" in b"".join(chunks) or report.outcome is not Outcome.TIMEOUT:
            break
    console = b"".join(chunks).decode(errors="replace")
    assert "init-ready" in console, console[-2000:]
    xenstore = booted.xenstore
    assert xenstore is not None
    home = f"/local/domain/{booted.domain.domid}"
    assert xenstore.store.read(f"{home}/control/feature-poweroff") == b"1"  # written by Linux's xenbus
    xenstore.request_shutdown("poweroff")
    report = run_domain(hv, booted.domain, timeout_s=120, max_guest_ns=20 * 10**9)
    console = b"".join(chunks).decode(errors="replace")
    assert shutdown_acknowledged(xenstore.store, booted.domain.domid)
    assert report.outcome is Outcome.POWEROFF, (report, console[-2000:])
    assert xenstore.fault is None and xenstore.requests > 10
