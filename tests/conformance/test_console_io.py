"""HYPERVISOR_console_io (spec 6.7; ``xen/drivers/char/console.c:do_console_io``, ``guest_console_write``,
``xen/include/xsm/dummy.h:xsm_console_io`` as built with CONFIG_VERBOSE_DEBUG)."""

from __future__ import annotations

import pytest

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import ConsoleIO, Hypercall, SchedOp
from xenpy.abi.sched import SHUTDOWN_poweroff
from xenpy.hypercall.handlers.console_io import CONSOLE_WRITE_PER_INVOCATION

from .conftest import HOLE_GVA, UNMAPPED_GVA, Guest

EFAULT = -XenErrno.EFAULT
EPERM = -XenErrno.EPERM
ENOSYS = -XenErrno.ENOSYS
WRITE = ConsoleIO.CONSOLEIO_write
READ = ConsoleIO.CONSOLEIO_read
INT_MAX = 0x7FFF_FFFF


def console_io(g: Guest, cmd: int, count: int, buffer: int, *, vcpu: int = 0) -> int:
    return g.call(Hypercall.console_io, cmd, count, buffer, vcpu=vcpu)


def put_bytes(g: Guest, data: bytes) -> int:
    gva = g.dom.alloc_guest(max(1, len(data)), 8)
    g.dom.write_guest(gva, data)
    return gva


def write(g: Guest, data: bytes, *, vcpu: int = 0) -> int:
    return console_io(g, WRITE, len(data), put_bytes(g, data), vcpu=vcpu)


def console(g: Guest) -> bytes:
    return g.dom.console.data


def two_pages_second_unmapped(g: Guest) -> int:
    """Two adjacent pages, the second unmapped; returns the gva of the boundary."""
    first = g.page()
    second = g.page()
    assert second == first + 4096
    g.dom.pagetables.unmap(second)
    return second


# ------------------------------------------------------------------------------------------ write


def test_write_appends_the_bytes_unchanged(guest: Guest):
    """spec 6.7: CONSOLEIO_write outputs count bytes of buffer; xenpy keeps them raw (NUL, CR, non-ASCII)."""
    data = b"hello\r\n\x00\x01\xffworld\tend"
    assert write(guest, data) == 0
    assert console(guest) == data


def test_writes_accumulate_in_order_across_vcpus(guest: Guest):
    """``guest_console_write``: the domain's output is one stream, whichever vCPU writes."""
    guest.bring_up(1)
    assert write(guest, b"one ") == 0
    assert write(guest, b"two\n", vcpu=1) == 0
    assert write(guest, b"three") == 0
    assert console(guest) == b"one two\nthree"
    assert guest.dom.console.lines() == [b"one two", b"three"]


def test_write_only_count_bytes(guest: Guest):
    """spec 6.7: exactly ``count`` bytes are taken from buffer."""
    buf = put_bytes(guest, b"0123456789")
    assert console_io(guest, WRITE, 4, buf) == 0
    assert console(guest) == b"0123"


def test_write_zero_count_writes_nothing(guest: Guest):
    """``guest_console_write``: count 0 -> 0 and no output, whatever buffer is."""
    assert console_io(guest, WRITE, 0, UNMAPPED_GVA) == 0
    assert console(guest) == b""


def test_count_is_an_unsigned_int(guest: Guest):
    """``do_console_io(unsigned int cmd, unsigned int count, ...)``: upper halves of rdi/rsi are ignored."""
    buf = put_bytes(guest, b"abcdefgh")
    assert console_io(guest, (1 << 32) | WRITE, (1 << 32) | 3, buf) == 0
    assert console(guest) == b"abc"


def test_long_write_across_pages(guest: Guest):
    """``guest_console_write``: a buffer longer than one piece and one page is output whole."""
    data = bytes(range(256)) * 40  # 10240 bytes, crosses pages, not a multiple of 127
    guest.page()  # start the buffer in the middle of a page
    gva = guest.dom.alloc_guest(len(data), 1)
    guest.dom.write_guest(gva, data)
    assert console_io(guest, WRITE, len(data), gva) == 0
    assert console(guest) == data


@pytest.mark.parametrize("bad", [UNMAPPED_GVA, HOLE_GVA, 0])
def test_bad_buffer_is_efault_and_writes_nothing(guest: Guest, bad):
    """``guest_console_write``: the first piece cannot be read -> -EFAULT, no output."""
    assert console_io(guest, WRITE, 10, bad) == EFAULT
    assert console(guest) == b""


@pytest.mark.parametrize(("before_boundary", "written"), [(200, 127), (254, 254), (253, 127), (126, 0)])
def test_fault_mid_buffer_keeps_the_pieces_before_it(guest: Guest, before_boundary, written):
    """``guest_console_write`` copies 127-byte pieces: pieces read before the fault stay written."""
    boundary = two_pages_second_unmapped(guest)
    start = boundary - before_boundary
    data = bytes(i % 251 + 1 for i in range(before_boundary))
    guest.dom.write_guest(start, data)
    assert console_io(guest, WRITE, 1000, start) == EFAULT
    assert console(guest) == data[:written]


def test_write_ending_exactly_at_the_fault_succeeds(guest: Guest):
    """``guest_console_write`` reads only ``count`` bytes: a buffer ending at an unmapped page is fine."""
    boundary = two_pages_second_unmapped(guest)
    guest.dom.write_guest(boundary - 300, b"x" * 300)
    assert console_io(guest, WRITE, 300, boundary - 300) == 0
    assert console(guest) == b"x" * 300


def test_streams_are_per_domain(make_guest):
    """xenpy: each domain has its own console stream."""
    a = make_guest()
    b = make_guest()
    assert write(a, b"from a\n") == 0
    assert write(b, b"from b\n") == 0
    assert console(a) == b"from a\n"
    assert console(b) == b"from b\n"


def test_listeners_see_lines_as_they_complete(guest: Guest):
    """xenpy: listeners get each complete line once; a partial line waits for its newline."""
    seen: list[bytes] = []
    guest.dom.console.listen(seen.append)
    assert write(guest, b"boot: ok\nloading") == 0
    assert seen == [b"boot: ok\n"]
    assert write(guest, b" done\n") == 0
    assert seen == [b"boot: ok\n", b"loading done\n"]


# ------------------------------------------------------------------------------------------ privilege


@pytest.mark.parametrize("count", [0, 16, INT_MAX + 1])
def test_read_is_eperm_for_a_domu(guest: Guest, count):
    """spec 6.7: only write is open to a domU; read needs privilege (checked before count)."""
    buf = put_bytes(guest, b"\xaa" * 16)
    assert console_io(guest, READ, count, buf) == EPERM
    assert guest.dom.read_guest(buf, 16) == b"\xaa" * 16


@pytest.mark.parametrize("cmd", [2, 3, 0xFFFF_FFFF])
def test_unknown_cmd_is_eperm_for_a_domu(guest: Guest, cmd):
    """``xsm_console_io``: the privilege check comes before the command is decoded."""
    assert console_io(guest, cmd, 1, put_bytes(guest, b"x")) == EPERM
    assert console(guest) == b""


def test_read_for_the_hardware_domain_returns_no_input(make_guest):
    """spec 6.7: a privileged read returns the characters copied; xenpy has no serial input: 0, buffer unchanged."""
    g = make_guest(hardware_domain=True)
    buf = put_bytes(g, b"\xaa" * 16)
    assert console_io(g, READ, 16, buf) == 0
    assert console_io(g, READ, INT_MAX, buf) == 0
    assert g.dom.read_guest(buf, 16) == b"\xaa" * 16


@pytest.mark.parametrize("count", [INT_MAX + 1, 0xFFFF_FFFF])
def test_read_count_above_int_max_is_e2big(make_guest, count):
    """spec 6.7: read with count > INT_MAX -> -E2BIG."""
    g = make_guest(hardware_domain=True)
    assert console_io(g, READ, count, g.page()) == -XenErrno.E2BIG


@pytest.mark.parametrize("cmd", [2, 3, 0xFFFF_FFFF])
def test_unknown_cmd_is_enosys_for_the_hardware_domain(make_guest, cmd):
    """spec 6.7: unknown cmd -> -ENOSYS (privileged caller)."""
    g = make_guest(hardware_domain=True)
    assert console_io(g, cmd, 1, g.page()) == ENOSYS


def test_partial_last_line_reaches_listeners_at_shutdown(guest: Guest):
    """xenpy: when the domain shuts down, its unterminated last line is delivered to the listeners."""
    seen: list[bytes] = []
    guest.dom.console.listen(seen.append)
    assert write(guest, b"Test result: SUCCESS") == 0
    assert seen == []
    assert guest.sched_op(SchedOp.SCHEDOP_shutdown, guest.put("sched_shutdown", reason=SHUTDOWN_poweroff)) == 0
    assert seen == [b"Test result: SUCCESS"]
    assert console(guest) == b"Test result: SUCCESS"


def test_partial_last_line_reaches_listeners_when_destroyed(guest: Guest):
    """xenpy: destroying a domain delivers its unterminated last line to the listeners."""
    seen: list[bytes] = []
    guest.dom.console.listen(seen.append)
    assert write(guest, b"last words") == 0
    guest.hv.destroy_domain(guest.dom)
    assert seen == [b"last words"]


def test_hardware_domain_writes_too(make_guest):
    """``guest_console_write``: the hardware domain's bytes go to its own stream."""
    g = make_guest(hardware_domain=True)
    assert write(g, b"dom0\n") == 0
    assert console(g) == b"dom0\n"


def test_long_write_continues_with_the_same_output(guest: Guest):
    """A write longer than CONSOLE_WRITE_PER_INVOCATION ends with continuations for the rest (as Xen's
    guest_console_write when preempted between pieces); the console receives every byte, in order."""
    data = bytes(range(256)) * (2 * CONSOLE_WRITE_PER_INVOCATION // 256 + 1)
    seen = []
    guest.hv.add_hypercall_hook(pre=lambda _v, nr, args: seen.append(args[1]) if nr == Hypercall.console_io else None)
    assert write(guest, data) == 0
    assert console(guest) == data
    assert seen == [len(data), len(data) - CONSOLE_WRITE_PER_INVOCATION, len(data) - 2 * CONSOLE_WRITE_PER_INVOCATION]
