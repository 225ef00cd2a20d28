"""The xenstore database and its request semantics, as Xen 4.20's C xenstored keeps them.

Sources followed: ``tools/xenstored/core.c`` (``canonicalize``, ``perm_for_conn``, ``errno_from_parents``,
``do_read``/``do_write``/``do_mkdir``/``do_rm``, ``send_directory(_part)``, ``do_get_perms``/``do_set_perms``,
``process_message``), ``watch.c`` (``do_watch``, ``fire_watches``, ``watch_permitted``), ``transaction.c``
(generation counts, ``finalize_transaction``), ``domain.c`` (the implicit path, ``do_get_domain_path``,
``do_reset_watches``, the hard quotas). Everything here is xenpy's own code.

The tree: a node is a path, a value (bytes), its children (in creation order) and permissions, a tuple
``(owner, default), (domid, perms)...``. The owner and privileged connections (dom0's, the Unix socket's) have
every right on a node; another domain has the perms of its ACL entry, else the default. A node a domain creates
inherits the permissions of its parent with the creator as the owner. Failing requests leave no trace: every
check comes before the first change.

Invariants:

* Every node but ``/`` and the special nodes ``@releaseDomain``/``@introduceDomain`` is listed in its parent's
  children, and every listed child exists (in the global tree and in each transaction's view).
* Each write, removal and transaction start takes a fresh ``generation``; a transaction records the generation
  of every node it reads when it first reads it (``NO_GENERATION`` if absent), and its commit fails with
  ``EAGAIN`` if any of them changed meanwhile.
* A request on a connection gets exactly one reply (the request's type, or ``XS_ERROR`` with the errno's name),
  echoing ``req_id`` and ``tx_id``; watch events (``req_id`` 0, ``tx_id`` 0) may come before it.
"""

from __future__ import annotations

import re
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from xenpy.abi.io_xs_wire import XENSTORE_PAYLOAD_MAX, XENSTORE_REL_PATH_MAX, XSD_ERRORS, XsdSockmsgType
from xenpy.abi.xen import DOMID
from xenpy.toolstack.xenstore.wire import encode

# Permission bits (tools/include/xenstore_lib.h); OWNER and IGNORE are xenstored's own.
XS_PERM_NONE = 0x00
XS_PERM_READ = 0x01
XS_PERM_WRITE = 0x02
XS_PERM_OWNER = 0x08
XS_PERM_IGNORE = 0x10
_PERM_MASK = XS_PERM_READ | XS_PERM_WRITE | XS_PERM_OWNER
_PERM_LETTERS = {"n": XS_PERM_NONE, "r": XS_PERM_READ, "w": XS_PERM_WRITE, "b": XS_PERM_READ | XS_PERM_WRITE}
_LETTER_OF = {bits: letter for letter, bits in _PERM_LETTERS.items()}

#: The generation of a node that does not exist.
NO_GENERATION = (1 << 64) - 1

#: xenstored's default hard quotas, which hold for unprivileged domains (``hard_quotas`` in domain.c).
QUOTA_NODES = 1000
QUOTA_WATCHES = 128
QUOTA_OUTSTANDING = 20
QUOTA_MEMORY = 2 * 1024 * 1024 + 512 * 1024
QUOTA_TRANSACTIONS = 10
QUOTA_TRANSACTION_NODES = 1024
QUOTA_PERMS = 5
QUOTA_NODE_SIZE = 2048
#: ``sizeof(struct node_hdr)`` and ``sizeof(struct xs_permissions)``: a node's accounted size is
#: header + perms + value + children.
_NODE_HDR_SIZE = 16
_PERM_SIZE = 8

_VALID_PATH = re.compile(rb"[A-Za-z0-9\-/_@]*")
# sscanf(name, "/local/domain/%5u/%n"): up to five characters of sign and digits, then a slash.
_LOCAL_DOMAIN = re.compile(r"/local/domain/([+-]?\d+)/")
_STRTOL = re.compile(rb"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_ATOI = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_U32 = 0xFFFF_FFFF

T = XsdSockmsgType
#: Requests only a privileged connection may make (``XS_FLAG_PRIV``).
_PRIVILEGED_ONLY = frozenset(
    {T.XS_CONTROL, T.XS_INTRODUCE, T.XS_RELEASE, T.XS_IS_DOMAIN_INTRODUCED, T.XS_RESUME, T.XS_SET_TARGET}
)
#: Requests that ignore the transaction id (``XS_FLAG_NOTID``).
_NO_TRANSACTION = frozenset({T.XS_WATCH, T.XS_UNWATCH})


class Perm(NamedTuple):
    """One permission entry: a domain and its ``XS_PERM_*`` bits (the first entry of a node is the owner's,
    whose bits are the default for domains the others do not name)."""

    domid: int
    perms: int

    def __str__(self) -> str:
        """``"r5"``, as ``GET_PERMS`` returns it (the id printed as a C ``int``)."""
        domid = self.domid - (1 << 32) if self.domid >= 1 << 31 else self.domid
        return f"{_LETTER_OF.get(self.perms & ~XS_PERM_IGNORE, 'n')}{domid}"


Perms = tuple[Perm, ...]


def parse_perms(strings: str | list[str] | tuple[str, ...]) -> Perms:
    """Permissions from their strings (``"n0 r5"`` or ``["n0", "r5"]``), as ``xenstore-chmod`` takes them.

    Raises:
        ValueError: a string that is not a letter of ``nrwb`` and a domain id.
    """
    items = strings.split() if isinstance(strings, str) else list(strings)
    perms = tuple(_perm_of(item.encode("ascii")) for item in items)
    if not perms or None in perms:
        raise ValueError(f"bad permissions {strings!r}")
    return perms  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Node:
    """One node of the tree (immutable: a change makes a new node).

    Attributes:
        value: the node's data (binary; xenstored keeps no terminating NUL).
        perms: owner first.
        children: names of the children, in creation order.
        generation: the global generation count of the node's last change.
    """

    value: bytes
    perms: Perms
    children: tuple[str, ...] = ()
    generation: int = 0

    @property
    def owner(self) -> int:
        """The owning domain."""
        return self.perms[0].domid

    @property
    def accounted_size(self) -> int:
        """Bytes xenstored accounts for the node (``calc_node_acc_size``)."""
        children = sum(len(name) + 1 for name in self.children)
        return _NODE_HDR_SIZE + _PERM_SIZE * len(self.perms) + len(self.value) + children


class XsError(Exception):
    """A request fails with ``name`` (an errno name of ``xsd_errors``, e.g. ``"ENOENT"``)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name if name in XSD_ERRORS else "EINVAL"


@dataclass(slots=True)
class _Access:
    """A node a transaction touched (``struct accessed_node``)."""

    node: Node | None  # the transaction's view (None: absent)
    generation: int  # global generation when first read (NO_GENERATION if absent)
    check_gen: bool  # read before any write: checked at commit
    old_perms: Perms | None  # permissions when first touched, for watch events
    modified: bool = False
    fire_watch: bool = False
    watch_exact: bool = False


@dataclass(slots=True)
class Transaction:
    """An open transaction of a connection."""

    id: int
    generation: int
    accessed: dict[str, _Access] = field(default_factory=dict)
    fail: bool = False


@dataclass(frozen=True, slots=True)
class Watch:
    """A watch: the canonical path, the token, and how much of an event's path to strip (a relative watch gets
    events relative to the connection's domain path)."""

    node: str
    token: bytes
    prefix_len: int


class Connection:
    """One client of the store: a domain's ring or a Unix-socket client.

    Output (replies and watch events, whole messages) queues in the connection; its transport takes it with
    :meth:`pop_output`, told by ``on_output`` that there is some.

    Attributes:
        domid: the client's domain (0 for a socket client).
        privileged: dom0 or a socket client: every right on every node, no quota.
        is_domain: a domain's ring (not a socket): watch and transaction quotas apply.
        implicit_path: what relative paths are relative to (``/local/domain/<domid>``).
        watches: the connection's watches, in creation order.
        transactions: open transactions by id.
        on_output: called after output was queued.
        outstanding: replies queued and not yet taken.
        queued_bytes: bytes of queued output.
    """

    def __init__(self, store: Store, domid: int, *, privileged: bool, is_domain: bool) -> None:
        self.store = store
        self.domid = domid
        self.privileged = privileged
        self.is_domain = is_domain
        self.implicit_path = store.domain_path(domid) if is_domain else store.domain_path(0)
        self.watches: list[Watch] = []
        self.transactions: dict[int, Transaction] = {}
        self.next_transaction_id = 0
        self.on_output: Callable[[], None] | None = None
        self.outstanding = 0
        self.queued_bytes = 0
        self.closed = False
        self._out: deque[tuple[bytes, bool]] = deque()  # (message, is a reply)
        self._request: tuple[int, int, int] = (0, 0, 0)  # type, req_id, tx_id being answered
        self.transaction: Transaction | None = None  # the transaction of the request being answered

    @property
    def unprivileged(self) -> bool:
        """Quotas and permissions apply."""
        return not self.privileged

    def handle(self, msg_type: int, req_id: int, tx_id: int, payload: bytes) -> None:
        """Answer one request (the reply is queued)."""
        self.store.process(self, msg_type, req_id, tx_id, payload)

    def has_output(self) -> bool:
        """Output is waiting to be taken."""
        return bool(self._out)

    def pop_output(self) -> bytes | None:
        """The next whole message to send, or None."""
        if not self._out:
            return None
        message, is_reply = self._out.popleft()
        self.queued_bytes -= len(message)
        if is_reply:
            self.outstanding -= 1
        return message

    def reset(self) -> None:
        """Drop the watches, transactions and queued output (xenstored's ``ignore_connection``)."""
        self.watches.clear()
        self.transactions.clear()
        self._out.clear()
        self.outstanding = self.queued_bytes = 0

    # -------------------------------------------------------------- queueing (the store calls these)

    def _queue(self, message: bytes, *, is_reply: bool) -> None:
        if self.closed:
            return
        self._out.append((message, is_reply))
        self.queued_bytes += len(message)
        if is_reply:
            self.outstanding += 1
        if self.on_output is not None:
            self.on_output()

    def _reply(self, payload: bytes, msg_type: int | None = None) -> None:
        """``send_reply``: the answer to the current request (``E2BIG`` if it does not fit a message)."""
        request_type, req_id, tx_id = self._request
        if len(payload) > XENSTORE_PAYLOAD_MAX:
            msg_type, payload = T.XS_ERROR, b"E2BIG\0"
        self._queue(encode(request_type if msg_type is None else msg_type, req_id, tx_id, payload), is_reply=True)

    def _event(self, path: str, token: bytes) -> None:
        """``send_event``: queue a watch event, unless too long, already queued, or over the memory quota."""
        payload = path.encode("ascii") + b"\0" + token + b"\0"
        if len(payload) > XENSTORE_PAYLOAD_MAX:
            return
        message = encode(T.XS_WATCH_EVENT, 0, 0, payload)
        if not path.startswith("@") and (message, False) in self._out:
            return
        if self.unprivileged and self.queued_bytes + len(message) > QUOTA_MEMORY:
            return
        self._queue(message, is_reply=False)

    def __repr__(self) -> str:
        kind = "domain" if self.is_domain else "socket"
        return f"<xenstore Connection {kind} {self.domid} watches={len(self.watches)}>"


class Store:
    """The xenstore tree, its connections and their watches and transactions.

    Args:
        domain_exists: whether a domain id names a domain (permissions ``SET_PERMS`` gives to any other are
            ignored, and an owner that does not exist is ``ENOENT``); every id exists by default.

    Attributes:
        generation: the global generation count.
        connections: every connection, in creation order (the order watch events are queued in).
        toolstack: the store's own privileged connection, through which the Python API acts (as dom0).
        lock: held while a request is answered; the Python API takes it too.
    """

    def __init__(self, *, domain_exists: Callable[[int], bool] | None = None) -> None:
        self.domain_exists = domain_exists or (lambda _domid: True)
        self.generation = 0
        self._nodes: dict[str, Node] = {}
        self._owned: Counter[int] = Counter()
        self.connections: list[Connection] = []
        self.lock = threading.RLock()
        self.toolstack = Connection(self, 0, privileged=True, is_domain=False)
        root = (Perm(0, XS_PERM_NONE),)  # setup_structure's manual nodes
        for path, children in (("/", ("tool",)), ("/tool", ("xenstored",)), ("/tool/xenstored", ()),
                               ("@releaseDomain", ()), ("@introduceDomain", ())):  # fmt: skip
            self._set_global(path, Node(b"", root, children))

    # ================================================================== connections

    @staticmethod
    def domain_path(domid: int) -> str:
        """``/local/domain/<domid>``, the home of a domain's nodes."""
        return f"/local/domain/{domid & _U32}"

    def connect_domain(self, domid: int) -> Connection:
        """The connection of domain ``domid``'s ring (``introduce_domain``; fires ``@introduceDomain``)."""
        with self.lock:
            conn = Connection(self, domid, privileged=domid == 0, is_domain=True)
            self.connections.append(conn)
            if domid != 0:
                self._fire_special("@introduceDomain")
            return conn

    def connect_socket(self) -> Connection:
        """The connection of a Unix-socket client (privileged, as xenstored's socket connections)."""
        with self.lock:
            conn = Connection(self, 0, privileged=True, is_domain=False)
            self.connections.append(conn)
            return conn

    def disconnect(self, conn: Connection) -> None:
        """Forget ``conn`` with its watches and transactions; a domain's release fires ``@releaseDomain``."""
        with self.lock:
            if conn in self.connections:
                self.connections.remove(conn)
            conn.reset()
            conn.closed = True
            if conn.is_domain:
                self._fire_special("@releaseDomain")

    def fire_release_domain(self) -> None:
        """Fire ``@releaseDomain`` (a domain shut down or went away)."""
        with self.lock:
            self._fire_special("@releaseDomain")

    def is_introduced(self, domid: int) -> bool:
        """A domain has a ring connection (dom0 always counts)."""
        return domid == 0 or any(c.is_domain and c.domid == domid for c in self.connections)

    # ================================================================== the Python API (as the toolstack)

    def read(self, path: str) -> bytes | None:
        """The value of ``path`` (absolute, or relative to /local/domain/0), None if absent."""
        try:
            return self._call(T.XS_READ, _arg(path))
        except XsError as error:
            if error.name == "ENOENT":
                return None
            raise

    def write(self, path: str, value: bytes | str = b"", perms: Perms | None = None) -> None:
        """Write ``value`` (creating missing parents), then set ``perms`` if given.

        Raises:
            XsError: a bad path (``EINVAL``), or bad permissions.
        """
        data = value.encode() if isinstance(value, str) else bytes(value)
        self._call(T.XS_WRITE, path.encode("ascii") + b"\0" + data)
        if perms is not None:
            self.set_perms(path, perms)

    def mkdir(self, path: str, perms: Perms | None = None) -> None:
        """Create ``path`` with an empty value if absent, then set ``perms`` if given."""
        self._call(T.XS_MKDIR, _arg(path))
        if perms is not None:
            self.set_perms(path, perms)

    def rm(self, path: str) -> None:
        """Remove ``path`` and everything below it (nothing if absent and its parent exists)."""
        self._call(T.XS_RM, _arg(path))

    def directory(self, path: str) -> list[str]:
        """The children of ``path``, in creation order.

        Raises:
            XsError: ``ENOENT`` for a missing node.
        """
        return _strings(self._call(T.XS_DIRECTORY, _arg(path)))

    def get_perms(self, path: str) -> Perms:
        """The permissions of ``path``."""
        return parse_perms(_strings(self._call(T.XS_GET_PERMS, _arg(path))))

    def set_perms(self, path: str, perms: Perms) -> None:
        """Set the permissions of ``path``."""
        self._call(T.XS_SET_PERMS, _arg(path) + b"".join(str(p).encode() + b"\0" for p in perms))

    def exists(self, path: str) -> bool:
        """``path`` is a node."""
        return self.read(path) is not None

    def walk(self, path: str = "/") -> Iterator[tuple[str, Node]]:
        """Every node at and below ``path``, parents before children (the global tree, no permission check)."""
        with self.lock:
            stack = [path]
            while stack:
                name = stack.pop()
                node = self._nodes.get(name)
                if node is None:
                    continue
                yield name, node
                stack.extend(reversed([_child_path(name, child) for child in node.children]))

    def _call(self, msg_type: int, payload: bytes) -> bytes:
        """One request on the toolstack's connection; its reply payload, or the error raised."""
        with self.lock:
            conn = self.toolstack
            self.process(conn, msg_type, 0, 0, payload)
            reply = conn.pop_output()
            while conn.pop_output() is not None:  # the toolstack has no watches: nothing else is queued
                pass
        assert reply is not None
        reply_type = int.from_bytes(reply[:4], "little")
        body = reply[16:]
        if reply_type == T.XS_ERROR:
            raise XsError(body.rstrip(b"\0").decode("ascii"))
        return body

    # ================================================================== requests

    def process(self, conn: Connection, msg_type: int, req_id: int, tx_id: int, payload: bytes) -> None:
        """Answer one request of ``conn`` (``process_message``): queue its reply, and the watch events it fires."""
        with self.lock:
            conn._request = (msg_type, req_id, tx_id)
            try:
                handler = _HANDLERS.get(msg_type)
                if handler is None:
                    raise XsError("ENOSYS")
                if msg_type in _PRIVILEGED_ONLY and conn.unprivileged:
                    raise XsError("EACCES")
                if msg_type not in _NO_TRANSACTION and tx_id != 0:
                    conn.transaction = conn.transactions.get(tx_id)
                    if conn.transaction is None:
                        raise XsError("ENOENT")
                handler(self, conn, payload)
            except XsError as error:
                conn._reply(error.name.encode("ascii") + b"\0", T.XS_ERROR)
            finally:
                conn.transaction = None

    # ------------------------------------------------------------------ reads and writes through a transaction

    def _read(self, conn: Connection, name: str) -> Node | None:
        """``read_node``: the node as ``conn`` sees it (its transaction's view, recording the first read)."""
        tx = conn.transaction
        if tx is None:
            return self._nodes.get(name)
        access = tx.accessed.get(name)
        if access is not None:
            return access.node
        self._check_transaction_nodes(conn, tx)
        node = self._nodes.get(name)
        generation = node.generation if node is not None else NO_GENERATION
        tx.accessed[name] = _Access(node, generation, True, node.perms if node is not None else None)
        return node

    def _check_transaction_nodes(self, conn: Connection, tx: Transaction) -> None:
        if conn.unprivileged and len(tx.accessed) + 1 > QUOTA_TRANSACTION_NODES:
            tx.fail = True
            raise XsError("ENOSPC")

    def _access_for_write(self, conn: Connection, tx: Transaction, name: str) -> _Access:
        access = tx.accessed.get(name)
        if access is None:
            self._check_transaction_nodes(conn, tx)
            access = tx.accessed[name] = _Access(None, NO_GENERATION, False, None)
        return access

    def _next_generation(self) -> int:
        self.generation += 1
        return self.generation

    def _put(self, conn: Connection, name: str, node: Node) -> None:
        """``write_node``: store ``node`` (in the transaction if there is one) with a fresh generation."""
        node = replace(node, generation=self._next_generation())
        tx = conn.transaction
        if tx is None:
            self._set_global(name, node)
            return
        access = self._access_for_write(conn, tx, name)
        access.node = node
        access.modified = True

    def _delete(self, conn: Connection, name: str) -> None:
        self._next_generation()
        tx = conn.transaction
        if tx is None:
            self._del_global(name)
            return
        access = self._access_for_write(conn, tx, name)
        access.node = None
        access.modified = True

    def _set_global(self, name: str, node: Node) -> None:
        old = self._nodes.get(name)
        if old is not None:
            self._owned[old.owner] -= 1
        self._nodes[name] = node
        self._owned[node.owner] += 1

    def _del_global(self, name: str) -> None:
        old = self._nodes.pop(name, None)
        if old is not None:
            self._owned[old.owner] -= 1

    def _owned_count(self, conn: Connection) -> int:
        """Nodes ``conn``'s domain owns, as its transaction (if any) sees the tree (``domain_nbentry``)."""
        count = self._owned[conn.domid]
        tx = conn.transaction
        if tx is not None:
            for name, access in tx.accessed.items():
                if not access.modified:
                    continue
                old = self._nodes.get(name)
                count -= old is not None and old.owner == conn.domid
                count += access.node is not None and access.node.owner == conn.domid
        return count

    def _check_size(self, conn: Connection, node: Node) -> None:
        """``write_node_raw``'s node-size quota."""
        if conn.unprivileged and node.accounted_size > QUOTA_NODE_SIZE:
            raise XsError("ENOSPC")

    # ------------------------------------------------------------------ paths and permissions

    def _canonicalize(self, conn: Connection, path: bytes | None, *, allow_special: bool) -> str:
        """``canonicalize``: the absolute path of ``path``, or ``EINVAL``."""
        if path is None or not _VALID_PATH.fullmatch(path) or (path.startswith(b"@") and not allow_special):
            raise XsError("EINVAL")
        name = path.decode("ascii")
        if not name.startswith(("/", "@")):
            name = f"{conn.implicit_path}/{name}"
        match = _LOCAL_DOMAIN.match(name)
        local_off = match.end() if match is not None and len(match.group(1)) <= 5 else 0
        if (name.endswith("/") and name != "/") or "//" in name:
            raise XsError("EINVAL")
        if conn.unprivileged and len(name) - local_off > XENSTORE_REL_PATH_MAX:
            raise XsError("EINVAL")
        return name

    @staticmethod
    def _perm_for(conn: Connection, perms: Perms) -> int:
        """``perm_for_conn``: the rights of ``conn`` on a node with ``perms``."""
        if conn.privileged or perms[0].domid == conn.domid:
            return _PERM_MASK
        for entry in perms[1:]:
            if not entry.perms & XS_PERM_IGNORE and entry.domid == conn.domid:
                return entry.perms & _PERM_MASK
        return perms[0].perms & _PERM_MASK

    def _errno_from_parents(self, conn: Connection, name: str, errnum: str, perm: int) -> str:
        """``errno_from_parents``: ``errnum`` only if the nearest existing ancestor grants ``conn`` ``perm``
        (else ``EACCES``, so a failure tells nothing about nodes ``conn`` may not see)."""
        node = None
        while True:
            name = _parent(name)
            node = self._read(conn, name)
            if node is not None or name == "/":
                break
        parent_perm = self._perm_for(conn, node.perms) if node is not None else XS_PERM_NONE
        return errnum if parent_perm & perm else "EACCES"

    def _lookup(self, conn: Connection, path: bytes | None, perm: int, *, allow_special: bool = False
                ) -> tuple[str, Node | None]:  # fmt: skip
        """``get_node``: the canonical name and the node, which is None when it does not exist and ``conn`` may
        know that; raises ``EINVAL``, ``EACCES`` (or ``ENOSPC`` in a full transaction)."""
        name = self._canonicalize(conn, path, allow_special=allow_special)
        node = self._read(conn, name)
        if node is not None and self._perm_for(conn, node.perms) & perm == perm:
            return name, node
        errnum = self._errno_from_parents(conn, name, "EACCES" if node is not None else "ENOENT", perm)
        if errnum != "ENOENT":
            raise XsError(errnum)
        return name, None

    def _existing(self, conn: Connection, path: bytes | None, perm: int, *, allow_special: bool = False
                  ) -> tuple[str, Node]:  # fmt: skip
        name, node = self._lookup(conn, path, perm, allow_special=allow_special)
        if node is None:
            raise XsError("ENOENT")
        return name, node

    # ------------------------------------------------------------------ tree changes

    def _create(self, conn: Connection, name: str, value: bytes) -> Node:
        """``create_node``: ``name`` with ``value``, and any missing ancestors (empty), each inheriting the
        permissions of its parent with an unprivileged creator as the owner."""
        missing = [name]  # the nodes to create, deepest first
        while True:
            parent_name = _parent(missing[-1])
            parent = self._read(conn, parent_name)
            if parent is not None:
                break
            if parent_name == "/":
                raise XsError("ENOENT")
            missing.append(parent_name)
        if conn.unprivileged and self._owned_count(conn) + len(missing) > QUOTA_NODES:
            raise XsError("ENOSPC")
        changes: dict[str, Node] = {}  # the existing ancestor, then the new nodes top-down
        for path in reversed(missing):
            parent = changes[parent_name] = replace(parent, children=(*parent.children, _basename(path)))
            perms = parent.perms
            if conn.unprivileged:
                perms = (Perm(conn.domid, perms[0].perms), *perms[1:])
            parent_name, parent = path, Node(value if path == name else b"", perms)
            changes[path] = parent
        for node in changes.values():
            self._check_size(conn, node)
        for path, node in changes.items():
            self._put(conn, path, node)
        return changes[name]

    def _remove(self, conn: Connection, name: str) -> None:
        """``rm_node``: ``name`` and its subtree; watch events for each node, children first."""
        parent_name = _parent(name)
        parent = self._read(conn, parent_name)
        if parent is None:
            raise XsError("EINVAL")
        root = self._read(conn, name)
        assert root is not None
        order: list[tuple[str, Node]] = []  # post-order, as walk_node_tree's exit callbacks
        stack: list[tuple[str, Node, bool]] = [(name, root, False)]
        while stack:
            path, node, expanded = stack.pop()
            if expanded:
                order.append((path, node))
                continue
            stack.append((path, node, True))
            for child in reversed(node.children):
                child_path = _child_path(path, child)
                child_node = self._read(conn, child_path)
                if child_node is not None:
                    stack.append((child_path, child_node, False))
        for path, node in order:
            self._delete(conn, path)
            self._fire(conn, path, node.perms, exact=path != name)
        children = tuple(child for child in parent.children if child != _basename(name))
        self._put(conn, parent_name, replace(parent, children=children))

    # ------------------------------------------------------------------ watches

    def _fire(self, conn: Connection | None, name: str, perms: Perms | None, *, exact: bool,
              old_perms: Perms | None = None) -> None:  # fmt: skip
        """``fire_watches``: queue an event on every watch of ``name`` (or, unless ``exact``, of an ancestor) whose
        connection may read the node or its parent; in a transaction, remember it for the commit."""
        if conn is not None and conn.transaction is not None:
            access = conn.transaction.accessed.get(name)
            if access is None:
                conn.transaction.fail = True
            elif not access.fire_watch:
                access.fire_watch, access.watch_exact = True, exact
            elif not exact:
                access.watch_exact = False
            return
        for watcher in self.connections:
            if not watcher.watches or not self._watch_permitted(watcher, name, perms, old_perms):
                continue
            for watch in watcher.watches:
                if name == watch.node if exact else _is_child(name, watch.node):
                    watcher._event(name[watch.prefix_len :], watch.token)

    def _watch_permitted(self, watcher: Connection, name: str, perms: Perms | None, old_perms: Perms | None) -> bool:
        """``watch_permitted``: ``watcher`` may read the node (before or after the change) or its parent."""
        if old_perms is not None and self._perm_for(watcher, old_perms) & XS_PERM_READ:
            return True
        if perms is None:
            node = self._nodes.get(name)
            if node is None:
                return False
            perms = node.perms
        if self._perm_for(watcher, perms) & XS_PERM_READ:
            return True
        parent = self._nodes.get(_parent(name))
        return parent is not None and bool(self._perm_for(watcher, parent.perms) & XS_PERM_READ)

    def _fire_special(self, name: str) -> None:
        """``fire_special_watches``: an exact event on a special node, for watchers its permissions let read."""
        node = self._nodes.get(name)
        if node is not None:
            self._fire(None, name, node.perms, exact=True)

    # ================================================================== one method per request type

    def _do_read(self, conn: Connection, payload: bytes) -> None:
        _name, node = self._existing(conn, _onearg(payload), XS_PERM_READ)
        conn._reply(node.value)

    def _do_directory(self, conn: Connection, payload: bytes) -> None:
        _name, node = self._existing(conn, _onearg(payload), XS_PERM_READ)
        conn._reply(_children_blob(node))

    def _do_directory_part(self, conn: Connection, payload: bytes) -> None:
        if payload.count(b"\0") != 2:
            raise XsError("EINVAL")
        path, offset_arg, _rest = payload.split(b"\0", 2)
        _name, node = self._existing(conn, path, XS_PERM_READ)
        offset = _atoi(offset_arg)
        blob = _children_blob(node)
        gen = str(node.generation).encode() + b"\0"
        if offset < 0 or offset >= len(blob):
            conn._reply(gen + b"\0")
            return
        length, maxlen, child = 0, XENSTORE_PAYLOAD_MAX - len(gen) - 1, offset
        while length + (blob.index(b"\0", child) - child) < maxlen:
            step = blob.index(b"\0", child) - child + 1
            length, child = length + step, child + step
            if offset + length == len(blob):
                break
        data = gen + blob[offset : offset + length]
        conn._reply(data + b"\0" if offset + length == len(blob) else data)

    def _do_write(self, conn: Connection, payload: bytes) -> None:
        if b"\0" not in payload:
            raise XsError("EINVAL")
        path, value = payload.split(b"\0", 1)
        name, node = self._lookup(conn, path, XS_PERM_WRITE)
        if node is None:
            node = self._create(conn, name, value)
        else:
            node = replace(node, value=value)
            self._check_size(conn, node)
            self._put(conn, name, node)
        self._fire(conn, name, node.perms, exact=False)
        conn._reply(b"OK\0")

    def _do_mkdir(self, conn: Connection, payload: bytes) -> None:
        name, node = self._lookup(conn, _onearg(payload), XS_PERM_WRITE)
        if node is None:
            node = self._create(conn, name, b"")
            self._fire(conn, name, node.perms, exact=False)
        conn._reply(b"OK\0")

    def _do_rm(self, conn: Connection, payload: bytes) -> None:
        name, node = self._lookup(conn, _onearg(payload), XS_PERM_WRITE)
        if node is None:
            if self._read(conn, _parent(name)) is None:
                raise XsError("ENOENT")
            conn._reply(b"OK\0")
            return
        if name == "/":
            raise XsError("EINVAL")
        self._remove(conn, name)
        conn._reply(b"OK\0")

    def _do_get_perms(self, conn: Connection, payload: bytes) -> None:
        _name, node = self._existing(conn, _onearg(payload), XS_PERM_READ, allow_special=True)
        conn._reply(b"".join(str(perm).encode("ascii") + b"\0" for perm in node.perms))

    def _do_set_perms(self, conn: Connection, payload: bytes) -> None:
        count = payload.count(b"\0") - 1
        if count < 1:
            raise XsError("EINVAL")
        if conn.unprivileged and count > QUOTA_PERMS:
            raise XsError("ENOSPC")
        parts = payload.split(b"\0")
        perms = [_perm_of(item) for item in parts[1 : 1 + count]]
        if None in perms:
            raise XsError("EINVAL")
        perms = [p if self.domain_exists(p.domid) else Perm(p.domid, p.perms | XS_PERM_IGNORE) for p in perms]
        if perms[0].perms & XS_PERM_IGNORE:
            raise XsError("ENOENT")
        name, node = self._existing(conn, parts[0], XS_PERM_WRITE | XS_PERM_OWNER, allow_special=True)
        if conn.unprivileged and perms[0].domid != node.owner:
            raise XsError("EPERM")
        changed = replace(node, perms=tuple(perms))
        self._check_size(conn, changed)
        self._put(conn, name, changed)
        self._fire(conn, name, changed.perms, exact=False, old_perms=node.perms)
        conn._reply(b"OK\0")

    def _do_watch(self, conn: Connection, payload: bytes) -> None:
        strings = _strings(payload, raw=True)
        if len(strings) != 2:
            raise XsError("EINVAL")
        path, token = strings
        relative = not path.startswith((b"/", b"@"))
        name = self._canonicalize(conn, path, allow_special=True)
        if any(w.node == name and w.token == token for w in conn.watches):
            raise XsError("EEXIST")
        if conn.is_domain and len(conn.watches) > QUOTA_WATCHES:
            raise XsError("E2BIG")
        watch = Watch(name, token, len(conn.implicit_path) + 1 if relative else 0)
        conn.watches.append(watch)
        conn._reply(b"OK\0")
        conn._event(name[watch.prefix_len :], token)  # "we fire once up front"

    def _do_unwatch(self, conn: Connection, payload: bytes) -> None:
        strings = _strings(payload, raw=True)
        if len(strings) != 2:
            raise XsError("EINVAL")
        name = self._canonicalize(conn, strings[0], allow_special=True)
        for index, watch in enumerate(conn.watches):
            if watch.node == name and watch.token == strings[1]:
                del conn.watches[index]
                conn._reply(b"OK\0")
                return
        raise XsError("ENOENT")

    def _do_transaction_start(self, conn: Connection, payload: bytes) -> None:
        if conn.transaction is not None:
            raise XsError("EBUSY")
        if conn.is_domain and len(conn.transactions) > QUOTA_TRANSACTIONS:
            raise XsError("ENOSPC")
        while True:
            tx_id = conn.next_transaction_id
            conn.next_transaction_id = (tx_id + 1) & _U32
            if tx_id != 0 and tx_id not in conn.transactions:
                break
        conn.transactions[tx_id] = Transaction(tx_id, self._next_generation())
        conn._reply(f"{tx_id}\0".encode())

    def _do_transaction_end(self, conn: Connection, payload: bytes) -> None:
        arg = _onearg(payload)
        if arg not in (b"T", b"F"):
            raise XsError("EINVAL")
        tx = conn.transaction
        if tx is None:
            raise XsError("ENOENT")
        del conn.transactions[tx.id]
        conn.transaction = None
        if arg == b"T":
            if tx.fail:
                raise XsError("ENOMEM")
            self._commit(tx)
        conn._reply(b"OK\0")

    def _commit(self, tx: Transaction) -> None:
        """``finalize_transaction``: ``EAGAIN`` if a node the transaction read changed since; else make its
        changes global, firing the watch events it held back."""
        for name, access in tx.accessed.items():
            if access.check_gen:
                current = self._nodes.get(name)
                if (current.generation if current is not None else NO_GENERATION) != access.generation:
                    raise XsError("EAGAIN")
        for name, access in tx.accessed.items():
            if not access.modified:
                continue
            if access.node is None:
                self._del_global(name)
            else:
                self._set_global(name, replace(access.node, generation=self._next_generation()))
            if access.fire_watch:
                self._fire(None, name, None, exact=access.watch_exact, old_perms=access.old_perms)

    def _do_get_domain_path(self, conn: Connection, payload: bytes) -> None:
        arg = _onearg(payload)
        if arg is None:
            raise XsError("EINVAL")
        conn._reply(self.domain_path(_atoi(arg)).encode() + b"\0")

    def _do_reset_watches(self, conn: Connection, payload: bytes) -> None:
        conn.watches.clear()
        conn.transactions.clear()
        conn._reply(b"OK\0")

    def _do_is_domain_introduced(self, conn: Connection, payload: bytes) -> None:
        arg = _onearg(payload)
        if arg is None:
            raise XsError("EINVAL")
        domid = _atoi(arg) & _U32
        conn._reply(b"T\0" if domid == DOMID.DOMID_SELF or self.is_introduced(domid) else b"F\0")

    def _do_not_served(self, conn: Connection, payload: bytes) -> None:
        """CONTROL, INTRODUCE, RELEASE, RESUME, SET_TARGET from a privileged client: the domains of this store
        are introduced by the toolstack, not over the protocol."""
        raise XsError("ENOSYS")


_HANDLERS: dict[int, Callable[[Store, Connection, bytes], None]] = {
    T.XS_CONTROL: Store._do_not_served,
    T.XS_DIRECTORY: Store._do_directory,
    T.XS_READ: Store._do_read,
    T.XS_GET_PERMS: Store._do_get_perms,
    T.XS_WATCH: Store._do_watch,
    T.XS_UNWATCH: Store._do_unwatch,
    T.XS_TRANSACTION_START: Store._do_transaction_start,
    T.XS_TRANSACTION_END: Store._do_transaction_end,
    T.XS_INTRODUCE: Store._do_not_served,
    T.XS_RELEASE: Store._do_not_served,
    T.XS_GET_DOMAIN_PATH: Store._do_get_domain_path,
    T.XS_WRITE: Store._do_write,
    T.XS_MKDIR: Store._do_mkdir,
    T.XS_RM: Store._do_rm,
    T.XS_SET_PERMS: Store._do_set_perms,
    T.XS_IS_DOMAIN_INTRODUCED: Store._do_is_domain_introduced,
    T.XS_RESUME: Store._do_not_served,
    T.XS_SET_TARGET: Store._do_not_served,
    T.XS_RESET_WATCHES: Store._do_reset_watches,
    T.XS_DIRECTORY_PART: Store._do_directory_part,
}


# ====================================================================== helpers


def _parent(name: str) -> str:
    """``get_parent``: the path up to the last slash after the first character (``/`` for top-level names)."""
    slash = name.rfind("/", 1)
    return name[:slash] if slash > 0 else "/"


def _basename(name: str) -> str:
    return name[name.rfind("/") + 1 :]


def _child_path(parent: str, child: str) -> str:
    return f"/{child}" if parent == "/" else f"{parent}/{child}"


def _is_child(child: str, parent: str) -> bool:
    """``is_child``: ``child`` is ``parent`` or below it (everything is below ``/``)."""
    if parent == "/":
        return True
    return child.startswith(parent) and (len(child) == len(parent) or child[len(parent)] == "/")


def _children_blob(node: Node) -> bytes:
    return b"".join(child.encode("ascii") + b"\0" for child in node.children)


def _onearg(payload: bytes) -> bytes | None:
    """``onearg``: the payload if it is exactly one NUL-terminated string (without the NUL), else None."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        return None
    return payload[:-1]


def _arg(path: str) -> bytes:
    return path.encode("ascii") + b"\0"


def _strings(payload: bytes, *, raw: bool = False) -> list:
    """``get_strings``: the NUL-terminated strings of ``payload`` (bytes after the last NUL are ignored)."""
    items = payload.split(b"\0")[:-1]
    return items if raw else [item.decode("ascii", "replace") for item in items]


def _atoi(arg: bytes) -> int:
    """C's ``atoi``: the leading decimal integer, 0 if none."""
    match = _ATOI.match(arg)
    return int(match.group(1)) if match else 0


def _perm_of(item: bytes) -> Perm | None:
    """One permission string as ``xenstore_strings_to_perms`` reads it (``strtol(..., 0)`` for the id)."""
    if not item or chr(item[0]) not in _PERM_LETTERS:
        return None
    digits = item[1:]
    match = _STRTOL.fullmatch(digits)
    if not digits or match is None:
        return None
    sign, number = match.groups()
    if number[:2] in (b"0x", b"0X"):
        value = int(number[2:], 16)
    elif number.startswith(b"0"):
        value = int(number, 8)
    else:
        value = int(number)
    value = -value if sign == b"-" else value
    value = max(-(1 << 63), min(value, (1 << 63) - 1))  # strtol saturates at LONG_MIN/LONG_MAX
    return Perm(value & _U32, _PERM_LETTERS[chr(item[0])])
