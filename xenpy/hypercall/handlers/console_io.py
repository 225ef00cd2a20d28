"""``HYPERVISOR_console_io(unsigned int cmd, unsigned int count, char *buffer)`` (hypercall 18; spec 6.7).

Implements ``xen/drivers/char/console.c:do_console_io`` and ``guest_console_write`` with the XSM dummy policy
(``xen/include/xsm/dummy.h:xsm_console_io``).

Which domains may use it depends on how Xen was built. xenpy behaves like a ``CONFIG_VERBOSE_DEBUG`` build,
whose XSM default lets **every** domain write (that is how a PV guest without a console backend prints), while
everything else needs privilege (the hardware domain): a domU's CONSOLEIO_read, and any other command, is
refused with -EPERM before the command is looked at. A release build would refuse a domU's write too.

What a domain writes goes, byte for byte, to its console stream (``domain.console``, a
:class:`xenpy.core.console.ConsoleStream`): no ``(d<domid>)`` prefix and no filtering of non-printable
characters, unlike Xen's own log. Xen's serial input ring has no source in xenpy, so CONSOLEIO_read never finds
a character to return.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.errno import HypercallError, XenErrno
from xenpy.abi.generated.hypercalls import ConsoleIO, Hypercall
from xenpy.core.memory import PAGE_SIZE
from xenpy.hypercall.context import PREEMPT_ENTRIES
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.hypercall.context import HypercallContext

#: ``guest_console_write`` copies the buffer in pieces of ``sizeof(kbuf) - 1`` bytes.
CONSOLE_WRITE_CHUNK = 127
#: Bytes (whole pieces) one invocation writes before it ends with a continuation for the rest.
CONSOLE_WRITE_PER_INVOCATION = PREEMPT_ENTRIES * CONSOLE_WRITE_CHUNK
_INT_MAX = 0x7FFF_FFFF
_U64 = (1 << 64) - 1


def _xsm_console_io(d: Domain, cmd: int) -> None:
    """``xsm_console_io`` (dummy policy, CONFIG_VERBOSE_DEBUG): write for all, the rest for privilege."""
    if cmd == ConsoleIO.CONSOLEIO_write or d.is_hardware_domain:
        return
    raise HypercallError(XenErrno.EPERM)


def guest_console_write(ctx: HypercallContext, buffer_gva: int, count: int) -> None:
    """``guest_console_write``: copy ``count`` bytes from ``buffer_gva`` to the calling domain's console stream.

    Xen copies the buffer in pieces of :data:`CONSOLE_WRITE_CHUNK` bytes and outputs each piece once it has
    been read; xenpy reads page by page and appends exactly the pieces Xen would have output.

    Raises:
        GuestFault: a piece cannot be read; the pieces before it have been written (the handler returns
            -EFAULT).
    """
    stream = ctx.domain.console
    gva = buffer_gva
    read = bytearray()  # bytes read but not yet appended: less than one piece
    while count > 0:
        nbytes = min(count, PAGE_SIZE - (gva & (PAGE_SIZE - 1)))
        # A fault here drops ``read``: Xen never outputs the piece that reaches the faulting page.
        read += ctx.copy_from_guest(gva, nbytes)
        gva = (gva + nbytes) & _U64
        count -= nbytes
        whole = len(read) - len(read) % CONSOLE_WRITE_CHUNK
        stream.write(read[:whole])
        del read[:whole]
    stream.write(read)


@hypercall_handler(Hypercall.console_io, effects=Effect.NONE)
def do_console_io(ctx: HypercallContext, cmd: int, count: int, buffer: int) -> int:
    """Write to (or read from) Xen's console.

    Arguments: ``cmd`` (``CONSOLEIO_*``, unsigned int), ``count`` (unsigned int), ``buffer`` (guest
    pointer).

    First the privilege check: any domain may write; CONSOLEIO_read and every other ``cmd`` need privilege
    (the hardware domain), else -EPERM. Then:

    * CONSOLEIO_write (0): appends the ``count`` bytes at ``buffer`` to the domain's console stream, in pieces
      of 127 bytes; -EFAULT if a piece cannot be read (the pieces before it stay written; a buffer that is
      bad from its first byte writes nothing). ``count == 0`` writes nothing. Returns 0. Past
      :data:`CONSOLE_WRITE_PER_INVOCATION` bytes the call ends with a continuation for the rest, as Xen's does
      when preempted between pieces (the output is the same).
    * CONSOLEIO_read (1): ``count > INT_MAX`` -> -E2BIG; otherwise returns the number of characters copied to
      ``buffer`` from the serial input ring, which xenpy never fills: 0, and ``buffer`` is not touched.
    * Any other ``cmd`` (privileged caller): -ENOSYS.
    """
    _xsm_console_io(ctx.domain, cmd)
    if cmd == ConsoleIO.CONSOLEIO_write:
        if count > CONSOLE_WRITE_PER_INVOCATION:
            # Xen's guest_console_write continues between pieces when preempted: here after a bounded number.
            guest_console_write(ctx, buffer, CONSOLE_WRITE_PER_INVOCATION)
            rest = (buffer + CONSOLE_WRITE_PER_INVOCATION) & _U64
            return ctx.create_continuation(Hypercall.console_io, cmd, count - CONSOLE_WRITE_PER_INVOCATION, rest)
        guest_console_write(ctx, buffer, count)
        return 0
    if cmd == ConsoleIO.CONSOLEIO_read:
        if count > _INT_MAX:
            raise HypercallError(XenErrno.E2BIG)
        return 0
    raise HypercallError(XenErrno.ENOSYS)
