"""Xen's public errno values (``xen/include/public/errno.h``; spec 6.10).

A hypercall returns ``-errno`` in ``rax``. These values are Xen's own and are independent of the host's
``errno`` module. ``ERESTART`` is internal to Xen and never reaches a guest.
"""

from enum import IntEnum


class XenErrno(IntEnum):
    """Xen public errno values, spelled as in ``public/errno.h``."""

    EPERM = 1
    ENOENT = 2
    ESRCH = 3
    EINTR = 4
    EIO = 5
    ENXIO = 6
    E2BIG = 7
    ENOEXEC = 8
    EBADF = 9
    ECHILD = 10
    EAGAIN = 11
    ENOMEM = 12
    EACCES = 13
    EFAULT = 14
    EBUSY = 16
    EEXIST = 17
    EXDEV = 18
    ENODEV = 19
    ENOTDIR = 20
    EISDIR = 21
    EINVAL = 22
    ENFILE = 23
    EMFILE = 24
    ENOSPC = 28
    EROFS = 30
    EMLINK = 31
    EDOM = 33
    ERANGE = 34
    EDEADLK = 35
    ENAMETOOLONG = 36
    ENOLCK = 37
    ENOSYS = 38
    ENOTEMPTY = 39
    ENODATA = 61
    ETIME = 62
    EBADMSG = 74
    EOVERFLOW = 75
    EILSEQ = 84
    ERESTART = 85
    ENOTSOCK = 88
    EMSGSIZE = 90
    EOPNOTSUPP = 95
    EADDRINUSE = 98
    EADDRNOTAVAIL = 99
    ENOBUFS = 105
    EISCONN = 106
    ENOTCONN = 107
    ETIMEDOUT = 110
    ECONNREFUSED = 111

    # Aliases, as in public/errno.h.
    EWOULDBLOCK = 11
    EDEADLOCK = 35


globals().update(XenErrno.__members__)


class HypercallError(Exception):
    """Raised inside the hypervisor to make a handler return ``-errno`` to the guest.

    Handlers may raise it at any depth; the dispatcher turns it into the return value.
    """

    def __init__(self, errno: XenErrno, why: str = "") -> None:
        super().__init__(f"{errno.name}: {why}" if why else errno.name)
        self.errno = XenErrno(errno)
