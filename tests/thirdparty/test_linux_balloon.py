"""Debian's Linux balloon driver follows the toolstack's ``memory/target`` on xenpy, as ``xl mem-set`` sets it:
the domain's pages fall to the target (XENMEM_decrease_reservation) and rise back (XENMEM_populate_physmap),
and the monitor's sample and Prometheus metrics show it.

Slow, and skipped without Debian's packages, as ``test_linux.py``.
"""

from __future__ import annotations

import pytest

from xenpy.engine import DEFAULT_ENGINE, create_engine
from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.boot import HYPERVISOR_MEMORY_MIB, boot_pv_image
from xenpy.toolstack.monitor import prometheus_text, take_sample
from xenpy.toolstack.run import Outcome, run_domain

from . import debian

pytestmark = pytest.mark.slow

MEMORY_MIB = 256
INIT = """/bin/busybox --install -s
mount -t proc proc /proc
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


def test_linux_balloon_follows_memory_target(packages) -> None:
    kernel, busybox = packages
    hv = Hypervisor(memory_mib=MEMORY_MIB + HYPERVISOR_MEMORY_MIB)
    booted = boot_pv_image(hv, kernel, memory_mib=MEMORY_MIB, initrd=debian.initramfs(INIT, busybox),
                           cmdline="console=hvc0 quiet")  # fmt: skip
    chunks: list[bytes] = []
    booted.domain.console.listen(chunks.append)
    create_engine(DEFAULT_ENGINE, hv)
    for _ in range(30):
        report = run_domain(hv, booted.domain, timeout_s=120, max_guest_ns=10**9)
        if b"init-ready" in b"".join(chunks) or report.outcome is not Outcome.TIMEOUT:
            break
    assert b"init-ready" in b"".join(chunks)
    d = booted.domain
    assert d.memory_stats().total_kib == MEMORY_MIB * 1024
    target = f"/local/domain/{d.domid}/memory/target"

    booted.xenstore.store.write(target, str(128 * 1024))
    run_domain(hv, d, timeout_s=120, max_guest_ns=2 * 10**9)
    down = d.memory_stats()
    assert down.total_kib == 128 * 1024 and down.ballooned_kib == 128 * 1024, down
    (sampled,) = take_sample(hv).domains
    assert (sampled.memory_kib, sampled.max_memory_kib, sampled.ballooned_kib) == (128 * 1024, 256 * 1024,
                                                                                    128 * 1024)
    assert f'xen_domain_memory_ballooned_bytes{{domain="{d.name}",domid="{d.domid}"}} {128 << 20}' in \
        prometheus_text(take_sample(hv))

    booted.xenstore.store.write(target, str(MEMORY_MIB * 1024))
    run_domain(hv, d, timeout_s=120, max_guest_ns=2 * 10**9)
    up = d.memory_stats()
    assert up.total_kib == MEMORY_MIB * 1024 and up.ballooned_kib == 0, up
    assert d.state.value == "running"
