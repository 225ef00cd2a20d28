"""Booting a PV image into a domain (spec 7.2-7.5), without running it."""

from __future__ import annotations

import pytest

from xenpy.abi.event_channel import EVTCHNSTAT_unbound
from xenpy.core.domain import DomainState
from xenpy.hypervisor import Hypervisor
from xenpy.loader import LoaderError
from xenpy.toolstack.boot import BACKEND_DOMID, boot_pv_image

pytestmark = pytest.mark.needs_gcc


@pytest.fixture
def hello(guest_build_dir) -> bytes:
    return (guest_build_dir / "test-pv64-hello").read_bytes()


def test_boot_builds_a_paused_domu_with_entry_state(hello: bytes) -> None:
    """Spec 7.5: vCPU 0 enters at the ELF entry with rsi = start_info and rsp = top of the boot stack."""
    hv = Hypervisor(nr_pcpus=1, memory_mib=40)
    booted = boot_pv_image(hv, hello, max_vcpus=2, memory_mib=16, cmdline="quiet")
    d = booted.domain
    assert d.domid == 1 and d.state is DomainState.PAUSED
    layout = booted.built.layout
    regs = d.vcpus[0].arch.user_regs
    assert (regs["rip"], regs["rsi"], regs["rsp"]) == (layout.rip, layout.rsi, layout.rsp)
    assert d.vcpus[0].arch.ctrlreg[3] == booted.built.cr3
    assert d.vcpus[0].is_up and not d.vcpus[1].is_initialised
    start_info = d.get_struct("start_info", layout.rsi)
    assert start_info.magic.rstrip(b"\0") == b"xen-3.0-x86_64"
    assert start_info.cmd_line.rstrip(b"\0") == b"quiet"
    assert start_info.shared_info == d.shared_info_maddr
    assert start_info.console.domU.evtchn == booted.console_port
    assert start_info.store_evtchn == booted.store_port


def test_backend_ports_are_unbound_for_domain_0(hello: bytes) -> None:
    """The console and xenstore channels wait for a backend in domain 0, as libxl leaves them."""
    hv = Hypervisor(memory_mib=40)
    booted = boot_pv_image(hv, hello, memory_mib=16)
    for port in (booted.store_port, booted.console_port):
        status, vcpu, _, remote = booted.domain.evtchn.status(port)
        assert (status, vcpu, remote) == (EVTCHNSTAT_unbound, 0, BACKEND_DOMID)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"not an elf", "not an ELF"),
        (b"\x7fELF" + bytes(60), "unknown ELF class"),
    ],
    ids=["not-elf", "bad-class"],
)
def test_bad_image_leaves_no_domain(image: bytes, message: str) -> None:
    hv = Hypervisor(memory_mib=40)
    with pytest.raises(LoaderError, match=message):
        boot_pv_image(hv, image, memory_mib=16)
    assert hv.domains == {}


def test_image_too_big_for_memory_leaves_no_domain(hello: bytes) -> None:
    """A bootstrap region larger than the domain's memory is a LoaderError, and nothing is left behind."""
    hv = Hypervisor(memory_mib=40)
    free_before = hv.machine.nr_free_frames
    with pytest.raises(LoaderError):
        boot_pv_image(hv, _with_big_bss(hello), memory_mib=4)
    assert hv.domains == {}
    assert hv.machine.nr_free_frames == free_before


def _with_big_bss(image: bytes) -> bytes:
    """``image`` with the memory size of its last PT_LOAD segment grown to 8 MiB."""
    import struct

    phoff, = struct.unpack_from("<Q", image, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", image, 0x36)
    data = bytearray(image)
    last = None
    for index in range(phnum):
        offset = phoff + index * phentsize
        if struct.unpack_from("<I", data, offset)[0] == 1:  # PT_LOAD
            last = offset
    assert last is not None
    struct.pack_into("<Q", data, last + 0x28, 8 << 20)  # p_memsz
    return bytes(data)
