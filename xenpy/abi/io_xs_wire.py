"""``public/io/xs_wire.h``: the xenstore wire protocol and the ring page a domain shares with xenstored.

A message is an ``xsd_sockmsg`` header (``type``, ``req_id``, ``tx_id``, ``len``: four little-endian 32-bit
words) followed by ``len`` bytes of payload, at most ``XENSTORE_PAYLOAD_MAX``; the same bytes travel over
xenstored's Unix socket and over a domain's ``xenstore_domain_interface`` page (``start_info.store_mfn``),
whose two 1024-byte rings run with free-running 32-bit indices reduced by ``MASK_XENSTORE_IDX``. Errors travel
as ``XS_ERROR`` with the errno's *name* (one of :data:`XSD_ERRORS`) as a NUL-terminated payload.

The values are those of Xen 4.17 to 4.20 (the header did not change between them).
"""

from enum import IntEnum

from xenpy.abi.cstruct import CStruct, Width


class XsdSockmsgType(IntEnum):
    """``enum xsd_sockmsg_type``: the message types."""

    XS_CONTROL = 0
    XS_DEBUG = 0  # the old name of XS_CONTROL
    XS_DIRECTORY = 1
    XS_READ = 2
    XS_GET_PERMS = 3
    XS_WATCH = 4
    XS_UNWATCH = 5
    XS_TRANSACTION_START = 6
    XS_TRANSACTION_END = 7
    XS_INTRODUCE = 8
    XS_RELEASE = 9
    XS_GET_DOMAIN_PATH = 10
    XS_WRITE = 11
    XS_MKDIR = 12
    XS_RM = 13
    XS_SET_PERMS = 14
    XS_WATCH_EVENT = 15
    XS_ERROR = 16
    XS_IS_DOMAIN_INTRODUCED = 17
    XS_RESUME = 18
    XS_SET_TARGET = 19
    # 20 was XS_RESTRICT, removed
    XS_RESET_WATCHES = 21
    XS_DIRECTORY_PART = 22
    XS_INVALID = 0xFFFF  # guaranteed to remain an invalid type


#: Number of valid message types (``XS_TYPE_COUNT``).
XS_TYPE_COUNT = 23


class XsWatchType(IntEnum):
    """``enum xs_watch_type``: the strings of an ``XS_WATCH_EVENT`` payload, in order."""

    XS_WATCH_PATH = 0
    XS_WATCH_TOKEN = 1


#: ``xsd_errors``: the errno names a server may send in ``XS_ERROR``, in the header's order. A server maps
#: any other errno to the first entry, ``EINVAL``.
XSD_ERRORS = (
    "EINVAL",
    "EACCES",
    "EEXIST",
    "EISDIR",
    "ENOENT",
    "ENOMEM",
    "ENOSPC",
    "EIO",
    "ENOTEMPTY",
    "ENOSYS",
    "EROFS",
    "EBUSY",
    "EAGAIN",
    "EISCONN",
    "E2BIG",
    "EPERM",
)

XENSTORE_RING_SIZE = 1024
#: The largest payload of a message ("violating this is very bad": the server drops the connection).
XENSTORE_PAYLOAD_MAX = 4096
#: Path length limits (violating these just gets an error back).
XENSTORE_ABS_PATH_MAX = 3072
XENSTORE_REL_PATH_MAX = 2048

#: ``server_features`` bits.
XENSTORE_SERVER_FEATURE_RECONNECTION = 1
XENSTORE_SERVER_FEATURE_ERROR = 2

#: ``connection`` values.
XENSTORE_CONNECTED = 0
XENSTORE_RECONNECT = 1

#: ``error`` values.
XENSTORE_ERROR_NONE = 0
XENSTORE_ERROR_COMM = 1
XENSTORE_ERROR_RINGIDX = 2
XENSTORE_ERROR_PROTO = 3


def define(w: Width, abi: dict) -> None:
    """Add this header's structures for width ``w`` to ``abi`` (the layout is the same on both widths)."""
    abi["xsd_sockmsg"] = CStruct(
        "xsd_sockmsg",
        ("type", w.uint32_t),
        ("req_id", w.uint32_t),
        ("tx_id", w.uint32_t),
        ("len", w.uint32_t),
    )
    abi["xenstore_domain_interface"] = CStruct(
        "xenstore_domain_interface",
        ("req", w.array(w.char, XENSTORE_RING_SIZE)),
        ("rsp", w.array(w.char, XENSTORE_RING_SIZE)),
        ("req_cons", w.uint32_t),
        ("req_prod", w.uint32_t),
        ("rsp_cons", w.uint32_t),
        ("rsp_prod", w.uint32_t),
        ("server_features", w.uint32_t),
        ("connection", w.uint32_t),
        ("error", w.uint32_t),
    )
