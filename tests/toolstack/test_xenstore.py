"""The xenstore database answers requests as Xen 4.20's C xenstored does (tools/xenstored/core.c, watch.c,
transaction.c, domain.c), for a domU's connection and for the toolstack."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenpy.abi.io_xs_wire import XENSTORE_PAYLOAD_MAX, XENSTORE_REL_PATH_MAX, XsdSockmsgType
from xenpy.toolstack.xenstore import (
    PvDomainInfo,
    Store,
    XsError,
    parse_perms,
    request_shutdown,
    shutdown_acknowledged,
    write_dom0_nodes,
    write_pv_domain_nodes,
)
from xenpy.toolstack.xenstore.store import QUOTA_NODE_SIZE, QUOTA_TRANSACTIONS
from xenpy.toolstack.xenstore.wire import decode_header

T = XsdSockmsgType
DOMU = 5


class Client:
    """Requests on one connection; each returns every message queued in answer, decoded."""

    def __init__(self, store: Store, domid: int | None) -> None:
        self.conn = store.connect_socket() if domid is None else store.connect_domain(domid)
        self.req_id = 0

    def raw(self, msg_type: int, payload: bytes, tx: int = 0) -> list[tuple[str, int, int, bytes]]:
        self.req_id += 1
        self.conn.handle(msg_type, self.req_id, tx, payload)
        return self.drain()

    def drain(self) -> list[tuple[str, int, int, bytes]]:
        out = []
        while (message := self.conn.pop_output()) is not None:
            msg_type, req_id, tx_id, length = decode_header(message)
            assert len(message) == 16 + length
            out.append((T(msg_type).name, req_id, tx_id, message[16:]))
        return out

    def call(self, msg_type: int, *strings: bytes | str, tx: int = 0, raw: bytes | None = None) -> bytes:
        """The reply payload of one request; XsError for XS_ERROR. Watch events are kept in ``events``."""
        payload = raw if raw is not None else b"".join(_b(s) + b"\0" for s in strings)
        out = self.raw(msg_type, payload, tx)
        replies = [m for m in out if m[0] != "XS_WATCH_EVENT"]
        assert len(replies) == 1, out
        name, req_id, tx_id, body = replies[0]
        assert (req_id, tx_id) == (self.req_id, tx)  # echoed
        self.events = [_event(m[3]) for m in out if m[0] == "XS_WATCH_EVENT"]
        if name == "XS_ERROR":
            raise XsError(body.rstrip(b"\0").decode())
        assert name == T(msg_type).name
        return body

    def write(self, path: str, value: bytes | str = b"", tx: int = 0) -> bytes:
        return self.call(T.XS_WRITE, raw=_b(path) + b"\0" + _b(value), tx=tx)

    def read(self, path: str, tx: int = 0) -> bytes:
        return self.call(T.XS_READ, path, tx=tx)

    def ls(self, path: str, tx: int = 0) -> list[str]:
        return [c.decode() for c in self.call(T.XS_DIRECTORY, path, tx=tx).split(b"\0")[:-1]]

    def start(self) -> int:
        return int(self.call(T.XS_TRANSACTION_START, "").rstrip(b"\0"))

    def end(self, tx: int, commit: bool = True) -> bytes:
        return self.call(T.XS_TRANSACTION_END, "T" if commit else "F", tx=tx)


def _b(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _event(payload: bytes) -> tuple[str, str]:
    path, token, rest = payload.split(b"\0")
    assert rest == b""
    return path.decode(), token.decode()


def errno_of(call, *args, **kwargs) -> str:
    with pytest.raises(XsError) as info:
        call(*args, **kwargs)
    return info.value.name


@pytest.fixture
def store() -> Store:
    """A store with domain 0's nodes and a domU home as libxl writes it."""
    store = Store()
    write_dom0_nodes(store)
    info = PvDomainInfo(domid=DOMU, name="guest", uuid="00000000-0000-0000-0000-000000000005", memory_kib=32768,
                        max_vcpus=2, store_mfn=0x1234, store_port=1, console_mfn=0x1235, console_port=2,
                        cmdline="quiet")  # fmt: skip
    write_pv_domain_nodes(store, info)
    return store


@pytest.fixture
def guest(store: Store) -> Client:
    return Client(store, DOMU)


@pytest.fixture
def dom0(store: Store) -> Client:
    return Client(store, None)


# ------------------------------------------------------------------ the tree and its initial nodes


def test_fresh_store_has_xenstoreds_manual_nodes() -> None:
    """setup_structure: /, /tool, /tool/xenstored and the two special nodes, all n0."""
    store = Store()
    assert store.directory("/") == ["tool"]
    assert store.directory("/tool") == ["xenstored"]
    for path in ("/", "/tool/xenstored", "@releaseDomain", "@introduceDomain"):
        assert store.get_perms(path) == parse_perms("n0")


def test_libxl_nodes_of_a_pv_domu(store: Store, guest: Client) -> None:
    """The guest reads what libxl gives it, read-only, and owns control/shutdown, data and its friends."""
    home = f"/local/domain/{DOMU}"
    assert guest.read("name") == b"guest"
    assert guest.read("domid") == str(DOMU).encode()
    assert guest.read("memory/target") == guest.read("memory/static-max") == b"32768"
    assert guest.read("cpu/1/availability") == b"online"
    assert guest.read("store/ring-ref") == str(0x1234).encode() and guest.read("store/port") == b"1"
    assert guest.read("console/ring-ref") == str(0x1235).encode() and guest.read("console/port") == b"2"
    assert guest.read("console/type") == b"xenconsoled"
    assert guest.read("control/platform-feature-xs_reset_watches") == b"1"
    vm = guest.read("vm").decode()
    assert guest.read(f"{vm}/uuid") == b"00000000-0000-0000-0000-000000000005"
    assert guest.read(f"{vm}/image/cmdline") == b"quiet"
    assert guest.ls("device") == ["suspend"]
    assert store.get_perms(home) == parse_perms(f"n0 r{DOMU}")
    assert store.get_perms(f"{home}/name") == parse_perms(f"n0 r{DOMU}")
    assert store.get_perms(f"{home}/control/shutdown") == parse_perms(f"n{DOMU}")
    assert store.get_perms(f"{home}/console/backend-id") == parse_perms(f"n{DOMU} r0")
    assert store.read(f"/local/domain/0/backend/console/{DOMU}/0/frontend-id") == str(DOMU).encode()
    assert errno_of(guest.write, "name", "evil") == "EACCES"
    assert errno_of(guest.write, "newnode", "x") == "EACCES"  # its home is read-only to it
    for path in ("control/shutdown", "control/feature-poweroff", "data/x", "device/suspend/event-channel"):
        assert guest.write(path, "1") == b"OK\0"
    assert errno_of(guest.read, "/local/domain/0/name") == "EACCES"
    assert errno_of(guest.ls, "/local/domain") == "EACCES"
    assert errno_of(guest.read, "/libxl") == "EACCES"


def test_read_missing_node_is_enoent_only_where_the_parent_is_readable(guest: Client) -> None:
    """errno_from_parents: a failure tells nothing about a node the caller may not see."""
    assert errno_of(guest.read, "data/missing") == "ENOENT"
    assert errno_of(guest.read, "data/missing/deeper/still") == "ENOENT"
    assert errno_of(guest.read, "/local/domain/0/missing") == "EACCES"
    assert errno_of(guest.read, "/local/domain/99/name") == "EACCES"


def test_relative_paths_are_under_the_domain_home(store: Store, guest: Client, dom0: Client) -> None:
    guest.write("data/rel", "v")
    assert store.read(f"/local/domain/{DOMU}/data/rel") == b"v"
    assert guest.read(f"/local/domain/{DOMU}/data/rel") == b"v"
    assert dom0.read("name") == b"Domain-0"  # a socket client's home is /local/domain/0
    assert guest.call(T.XS_GET_DOMAIN_PATH, "7") == b"/local/domain/7\0"
    assert guest.call(T.XS_GET_DOMAIN_PATH, "-1") == b"/local/domain/4294967295\0"  # atoi into unsigned
    assert errno_of(guest.call, T.XS_GET_DOMAIN_PATH, raw=b"7") == "EINVAL"  # not NUL-terminated


@pytest.mark.parametrize(
    "path",
    ["data/", "data//x", "/", "", "data/a b", "data/caf\xe9", "data/x\ty", "@releaseDomain", "data/\\"],
    ids=["trailing-slash", "double-slash", "root-write", "empty", "space", "non-ascii", "tab", "special", "backslash"],
)
def test_bad_paths_are_einval(guest: Client, path: str) -> None:
    """canonicalize: bad characters, a trailing or double slash, a special name where none is allowed."""
    if path == "/":
        assert errno_of(guest.write, path, "x") == "EACCES"  # valid path, but n0
        return
    assert errno_of(guest.write, path.encode("latin-1"), "x") == "EINVAL"


def test_relative_path_limit_holds_for_domus_only(guest: Client, dom0: Client) -> None:
    """ACC_PATHLEN: at most XENSTORE_REL_PATH_MAX characters after /local/domain/<id>/ for a domU."""
    longest = "data"
    while len(longest) < XENSTORE_REL_PATH_MAX:  # components short enough for the node-size quota
        longest += "/" + "a" * min(99, XENSTORE_REL_PATH_MAX - len(longest) - 1)
    assert len(longest) == XENSTORE_REL_PATH_MAX
    assert guest.write(longest, "") == b"OK\0"
    assert errno_of(guest.write, longest + "b", "") == "EINVAL"
    assert dom0.write(f"/local/domain/{DOMU}/{longest}b", "") == b"OK\0"


def test_requests_need_their_arguments(guest: Client) -> None:
    """onearg and get_strings: a missing NUL, an extra string or no strings at all are EINVAL."""
    assert errno_of(guest.call, T.XS_READ, raw=b"name") == "EINVAL"
    assert errno_of(guest.call, T.XS_READ, raw=b"name\0name\0") == "EINVAL"
    assert errno_of(guest.call, T.XS_WRITE, raw=b"data/x") == "EINVAL"
    assert errno_of(guest.call, T.XS_WATCH, "data") == "EINVAL"
    assert errno_of(guest.call, T.XS_SET_PERMS, "data") == "EINVAL"


def test_write_values_are_binary_and_kept_exactly(guest: Client) -> None:
    value = bytes(range(256)) + b"\0\0"
    guest.write("data/bin", value)
    assert guest.read("data/bin") == value
    guest.write("data/bin", b"")
    assert guest.read("data/bin") == b""


def test_created_nodes_inherit_perms_and_a_domu_owns_them(store: Store, guest: Client, dom0: Client) -> None:
    """construct_node: parents' permissions copied down, the owner replaced by an unprivileged creator."""
    store.set_perms(f"/local/domain/{DOMU}/data", parse_perms(f"n{DOMU} r7 w9"))
    guest.write("data/a/b/c", "x")
    for path in ("data/a", "data/a/b", "data/a/b/c"):
        assert store.get_perms(f"/local/domain/{DOMU}/{path}") == parse_perms(f"n{DOMU} r7 w9")
    dom0.write("/local/domain/0/made/by/dom0", "x")
    assert store.get_perms("/local/domain/0/made/by") == parse_perms("n0")
    assert guest.read("data/a/b") == b""


def test_acl_entries_and_the_default(store: Store) -> None:
    """perm_for_conn: an ACL entry for the domain, else the owner's entry as the default."""
    store.write("/shared/node", "v", parse_perms("n0 r1 w2 b3"))
    store.set_perms("/shared", parse_perms("r0"))  # everyone may read the directory
    one, two, three, four = (Client(store, d) for d in (1, 2, 3, 4))
    assert one.read("/shared/node") == b"v" and errno_of(one.write, "/shared/node", "x") == "EACCES"
    assert errno_of(two.read, "/shared/node") == "EACCES" and two.write("/shared/node", "w") == b"OK\0"
    assert three.read("/shared/node") == b"w" and three.write("/shared/node", "b") == b"OK\0"
    assert errno_of(four.read, "/shared/node") == "EACCES"
    assert four.ls("/shared") == ["node"]


# ------------------------------------------------------------------ mkdir, rm, directory


def test_mkdir_existing_is_ok_and_fires_nothing(guest: Client) -> None:
    guest.call(T.XS_WATCH, "data", "tok")
    guest.call(T.XS_MKDIR, "data/dir")
    assert guest.events == [("data/dir", "tok")]
    assert guest.call(T.XS_MKDIR, "data/dir") == b"OK\0"
    assert guest.events == []
    assert guest.call(T.XS_MKDIR, "data/deep/er") == b"OK\0"
    assert guest.ls("data/deep") == ["er"]


def test_rm(guest: Client, store: Store) -> None:
    """do_rm: a missing node with an existing parent is fine; a missing parent is ENOENT; / is EINVAL."""
    guest.write("data/t/a/1", "x")
    guest.write("data/t/b", "y")
    assert guest.call(T.XS_RM, "data/t/a") == b"OK\0"
    assert guest.ls("data/t") == ["b"]
    assert errno_of(guest.read, "data/t/a/1") == "ENOENT"
    assert guest.call(T.XS_RM, "data/t/nothing") == b"OK\0"
    assert errno_of(guest.call, T.XS_RM, "data/none/nothing") == "ENOENT"
    assert errno_of(guest.call, T.XS_RM, "name") == "EACCES"
    with pytest.raises(XsError, match="EINVAL"):
        store.rm("/")


def test_directory_is_in_creation_order(guest: Client) -> None:
    for name in ("zeta", "alpha", "mid"):
        guest.write(f"data/order/{name}", "")
    guest.call(T.XS_RM, "data/order/alpha")
    guest.write("data/order/alpha", "")
    assert guest.ls("data/order") == ["zeta", "mid", "alpha"]
    assert guest.call(T.XS_DIRECTORY, "data/order/mid") == b""


def test_long_directory_is_e2big_and_directory_part_pages_it(dom0: Client) -> None:
    """send_reply: a reply over XENSTORE_PAYLOAD_MAX is E2BIG; XS_DIRECTORY_PART returns the list in pieces,
    each after the node's generation, the last ending with an empty string."""
    names = [f"child-{i:04d}-" + "x" * 40 for i in range(120)]
    for name in names:
        dom0.write(f"/big/{name}", "")
    assert errno_of(dom0.ls, "/big") == "E2BIG"
    got, offset, generations = [], 0, set()
    while True:
        reply = dom0.call(T.XS_DIRECTORY_PART, "/big", str(offset))
        assert len(reply) <= XENSTORE_PAYLOAD_MAX
        generation, _, chunk = reply.partition(b"\0")
        generations.add(generation)
        done = chunk.endswith(b"\0\0") or chunk == b"\0"
        items = chunk.split(b"\0")[:-2 if done else -1]
        got += [i.decode() for i in items]
        offset += sum(len(i) + 1 for i in items)
        if done:
            break
    assert got == names and len(generations) == 1
    assert dom0.call(T.XS_DIRECTORY_PART, "/big", "999999") == generation + b"\0\0"
    assert errno_of(dom0.call, T.XS_DIRECTORY_PART, "/big") == "EINVAL"


# ------------------------------------------------------------------ permissions


def test_get_and_set_perms_strings(store: Store, guest: Client) -> None:
    guest.write("data/p", "")
    assert guest.call(T.XS_GET_PERMS, "data/p") == f"n{DOMU}\0".encode()
    assert guest.call(T.XS_SET_PERMS, "data/p", f"r{DOMU}", "b0", "w0x10", "n010") == b"OK\0"
    assert store.get_perms(f"/local/domain/{DOMU}/data/p") == parse_perms(f"r{DOMU} b0 w16 n8")  # strtol base 0
    assert guest.call(T.XS_GET_PERMS, "data/p") == f"r{DOMU}\0b0\0w16\0n8\0".encode()
    assert errno_of(guest.call, T.XS_GET_PERMS, "@releaseDomain") == "EACCES"  # special nodes have perms: n0


@pytest.mark.parametrize("bad", ["x1", "r", "rx", "r1x", "", "0x"], ids=repr)
def test_bad_permission_strings_are_einval(guest: Client, bad: str) -> None:
    guest.write("data/p", "")
    assert errno_of(guest.call, T.XS_SET_PERMS, "data/p", bad) == "EINVAL"


def test_set_perms_rules_for_a_domu(store: Store, guest: Client) -> None:
    """A domU needs to own the node, may not give it away (EPERM), and may set at most 5 entries (ENOSPC)."""
    guest.write("data/p", "")
    assert errno_of(guest.call, T.XS_SET_PERMS, "data/p", "n0") == "EPERM"
    assert errno_of(guest.call, T.XS_SET_PERMS, "data/p", f"n{DOMU}", "r1", "r2", "r3", "r4", "r6") == "ENOSPC"
    assert errno_of(guest.call, T.XS_SET_PERMS, "name", f"n{DOMU}") == "EACCES"
    store.write("/local/domain/5/data/theirs", "", parse_perms(f"n0 b{DOMU}"))  # writable, but not owned
    assert errno_of(guest.call, T.XS_SET_PERMS, "data/theirs", "n0") == "EACCES"


def test_permissions_for_absent_domains_are_ignored() -> None:
    """domain_alloc_permrefs: an ACL entry for a domain that does not exist grants nothing (it might be reused);
    an absent owner is ENOENT."""
    alive = {0, 1}
    store = Store(domain_exists=alive.__contains__)
    store.write("/n", "v", parse_perms("n0 r2"))
    alive.add(2)  # domain 2 appears later: the entry stays ignored
    assert errno_of(Client(store, 2).read, "/n") == "EACCES"
    assert store.get_perms("/n") == parse_perms("n0 r2")
    with pytest.raises(XsError, match="ENOENT"):
        store.set_perms("/n", parse_perms("n3"))


def test_node_size_quota_for_a_domu(guest: Client, dom0: Client) -> None:
    """ACC_NODESZ: a node of more than 2048 accounted bytes is ENOSPC for a domU; dom0 has no limit."""
    header = 16 + 8  # node_hdr and one permission
    assert guest.write("data/big", b"x" * (QUOTA_NODE_SIZE - header)) == b"OK\0"
    assert errno_of(guest.write, "data/big", b"x" * (QUOTA_NODE_SIZE - header + 1)) == "ENOSPC"
    assert dom0.write(f"/local/domain/{DOMU}/data/big", b"x" * 4000) == b"OK\0"


# ------------------------------------------------------------------ watches


def test_watch_fires_at_once_then_on_changes_below(guest: Client, dom0: Client) -> None:
    """do_watch fires once up front (after the ack); a write fires watches on the node and its ancestors."""
    out = guest.raw(T.XS_WATCH, b"data/w\0tok\0")
    assert [m[0] for m in out] == ["XS_WATCH", "XS_WATCH_EVENT"]
    assert _event(out[1][3]) == ("data/w", "tok") and out[1][1:3] == (0, 0)
    dom0.write(f"/local/domain/{DOMU}/data/w/child", "1")
    assert [_event(m[3]) for m in guest.drain()] == [("data/w/child", "tok")]
    dom0.write(f"/local/domain/{DOMU}/data/w", "2")
    assert [_event(m[3]) for m in guest.drain()] == [("data/w", "tok")]
    dom0.write(f"/local/domain/{DOMU}/data/other", "3")  # not below the watch
    dom0.write(f"/local/domain/{DOMU}/data", "4")  # a parent: no event either
    assert guest.drain() == []


def test_absolute_watch_gets_absolute_paths(guest: Client, dom0: Client) -> None:
    home = f"/local/domain/{DOMU}"
    guest.call(T.XS_WATCH, f"{home}/data", "abs")
    assert guest.events == [(f"{home}/data", "abs")]
    dom0.write(f"{home}/data/x", "1")
    assert [_event(m[3]) for m in guest.drain()] == [(f"{home}/data/x", "abs")]


def test_rm_fires_for_every_removed_node_children_first(guest: Client, dom0: Client) -> None:
    """delnode_sub: each removed node fires its exact watches (children first), the removed root its ancestors'."""
    dom0.write(f"/local/domain/{DOMU}/data/r/a/1", "")
    dom0.write(f"/local/domain/{DOMU}/data/r/b", "")
    for path, token in (("data", "up"), ("data/r/a/1", "leaf"), ("data/r/b", "b")):
        guest.call(T.XS_WATCH, path, token)
    guest.call(T.XS_RM, "data/r")
    assert guest.events == [("data/r/a/1", "leaf"), ("data/r/b", "b"), ("data/r", "up")]


def test_watch_needs_read_access_to_node_or_parent(store: Store, dom0: Client) -> None:
    """watch_permitted: no event on a node the watcher can read neither nor its parent (the first one fires)."""
    other = Client(store, 9)
    other.call(T.XS_WATCH, "/local/domain/0/secret", "t")
    assert other.events == [("/local/domain/0/secret", "t")]
    dom0.write("/local/domain/0/secret", "s")
    assert other.drain() == []
    dom0.write("/local/domain/0/open/x", "s")
    store.set_perms("/local/domain/0/open", parse_perms("n0 r9"))
    other.call(T.XS_WATCH, "/local/domain/0/open", "o")
    dom0.write("/local/domain/0/open/x", "again")  # x is n0, its parent readable
    assert [_event(m[3]) for m in other.drain()] == [("/local/domain/0/open/x", "o")]


def test_watch_duplicates_unwatch_and_reset(guest: Client) -> None:
    guest.call(T.XS_WATCH, "data", "t")
    assert errno_of(guest.call, T.XS_WATCH, "data", "t") == "EEXIST"
    assert guest.call(T.XS_WATCH, "data", "t2") == b"OK\0"
    assert guest.call(T.XS_UNWATCH, "data", "t") == b"OK\0"
    assert errno_of(guest.call, T.XS_UNWATCH, "data", "t") == "ENOENT"
    assert guest.call(T.XS_RESET_WATCHES, raw=b"") == b"OK\0"
    assert guest.conn.watches == []


def test_special_watches(store: Store, dom0: Client, guest: Client) -> None:
    """@introduceDomain and @releaseDomain fire for watchers allowed to read them (n0: dom0 only)."""
    dom0.call(T.XS_WATCH, "@introduceDomain", "in")
    dom0.call(T.XS_WATCH, "@releaseDomain", "out")
    guest.call(T.XS_WATCH, "@releaseDomain", "g")
    assert guest.events == [("@releaseDomain", "g")]
    assert errno_of(guest.read, "@releaseDomain") == "EINVAL"  # only watches and perms take special names
    third = store.connect_domain(3)
    store.disconnect(third)
    assert [_event(m[3]) for m in dom0.drain()] == [("@introduceDomain", "in"), ("@releaseDomain", "out")]
    assert guest.drain() == []


def test_identical_pending_events_are_sent_once(guest: Client, dom0: Client) -> None:
    guest.call(T.XS_WATCH, "data", "t")
    for _ in range(3):
        dom0.write(f"/local/domain/{DOMU}/data/same", "x")
    assert [_event(m[3]) for m in guest.drain()] == [("data/same", "t")]


def test_request_shutdown_reaches_a_guest_watch(store: Store, guest: Client) -> None:
    guest.call(T.XS_WATCH, "control/shutdown", "shutdown")
    request_shutdown(store, DOMU, "reboot")
    assert [_event(m[3]) for m in guest.drain()] == [("control/shutdown", "shutdown")]
    assert guest.read("control/shutdown") == b"reboot" and not shutdown_acknowledged(store, DOMU)
    guest.write("control/shutdown", "")  # the guest's acknowledgement
    assert shutdown_acknowledged(store, DOMU)
    with pytest.raises(ValueError, match="unknown shutdown command"):
        request_shutdown(store, DOMU, "explode")


# ------------------------------------------------------------------ transactions


def test_transaction_isolation_and_commit(guest: Client, dom0: Client) -> None:
    """Writes in a transaction are seen in it only, and fire their watches when it commits."""
    guest.write("data/ta", "a")
    guest.call(T.XS_WATCH, "data", "w")
    tx = guest.start()
    assert tx == 1
    guest.write("data/ta", "b", tx=tx)
    guest.write("data/new/node", "c", tx=tx)
    assert guest.events == []
    assert guest.read("data/ta", tx=tx) == b"b" and guest.read("data/ta") == b"a"
    assert errno_of(guest.read, "data/new/node") == "ENOENT"
    assert guest.ls("data/new", tx=tx) == ["node"]
    assert guest.end(tx) == b"OK\0"
    assert guest.events == [("data/ta", "w"), ("data/new/node", "w")]
    assert guest.read("data/ta") == b"b" and dom0.read(f"/local/domain/{DOMU}/data/new/node") == b"c"
    assert guest.start() == 2


def test_transaction_abort_discards(guest: Client) -> None:
    guest.write("data/ta", "a")
    tx = guest.start()
    guest.write("data/ta", "b", tx=tx)
    guest.call(T.XS_RM, "data", tx=tx)
    assert guest.end(tx, commit=False) == b"OK\0"
    assert guest.read("data/ta") == b"a"


def test_transaction_conflict_is_eagain(guest: Client, dom0: Client) -> None:
    """test-xenstore's "ta err": a node read in the transaction changes outside it; the commit is EAGAIN and
    nothing of the transaction is applied."""
    guest.write("data/ta", "a")
    tx = guest.start()
    assert guest.read("data/ta", tx=tx) == b"a"
    dom0.write(f"/local/domain/{DOMU}/data/ta", "b")
    assert guest.read("data/ta", tx=tx) == b"a"
    guest.write("data/ta", "c", tx=tx)
    assert errno_of(guest.end, tx) == "EAGAIN"
    assert guest.read("data/ta") == b"b"
    assert errno_of(guest.end, tx) == "ENOENT"  # the failed transaction is gone


def test_transaction_conflict_on_a_node_created_outside(guest: Client, dom0: Client) -> None:
    tx = guest.start()
    assert errno_of(guest.read, "data/later", tx=tx) == "ENOENT"
    dom0.write(f"/local/domain/{DOMU}/data/later", "x")
    guest.write("data/unrelated", "y", tx=tx)
    assert errno_of(guest.end, tx) == "EAGAIN"


def test_transactions_that_do_not_overlap_both_commit(guest: Client, dom0: Client) -> None:
    guest.write("data/one", "1")
    dom0.write("/local/domain/0/two", "2")
    tx = guest.start()
    guest.read("data/one", tx=tx)
    dom0.write("/local/domain/0/two", "3")  # never read by the transaction
    guest.write("data/one", "4", tx=tx)
    assert guest.end(tx) == b"OK\0"


def test_transaction_errors(guest: Client) -> None:
    assert errno_of(guest.read, "name", tx=42) == "ENOENT"  # transaction_lookup
    tx = guest.start()
    assert errno_of(guest.call, T.XS_TRANSACTION_START, "", tx=tx) == "EBUSY"
    assert errno_of(guest.call, T.XS_TRANSACTION_END, "X", tx=tx) == "EINVAL"
    assert errno_of(guest.call, T.XS_TRANSACTION_END, "T") == "ENOENT"  # no transaction id
    assert guest.end(tx) == b"OK\0"
    opened = [guest.start() for _ in range(QUOTA_TRANSACTIONS + 1)]  # xenstored checks "more than" the quota
    assert errno_of(guest.start) == "ENOSPC"
    assert len(set(opened)) == len(opened)


def test_watches_ignore_the_transaction_id(guest: Client) -> None:
    """XS_FLAG_NOTID: WATCH with a stale transaction id still works."""
    assert guest.call(T.XS_WATCH, "data", "t", tx=1234) == b"OK\0"


# ------------------------------------------------------------------ message types


def test_unknown_and_privileged_requests(guest: Client, dom0: Client) -> None:
    """ENOSYS for types without a handler (XS_WATCH_EVENT, XS_ERROR, 20, XS_TYPE_COUNT and up); EACCES for the
    XS_FLAG_PRIV ones from a domU."""
    for msg_type in (T.XS_WATCH_EVENT, T.XS_ERROR, 20, 23, 0x1234, T.XS_INVALID):
        guest.req_id += 1
        guest.conn.handle(msg_type, guest.req_id, 0, b"")
        assert guest.drain() == [("XS_ERROR", guest.req_id, 0, b"ENOSYS\0")]
    for msg_type in (T.XS_CONTROL, T.XS_INTRODUCE, T.XS_RELEASE, T.XS_IS_DOMAIN_INTRODUCED, T.XS_RESUME,
                     T.XS_SET_TARGET):  # fmt: skip
        assert errno_of(guest.call, msg_type, "1") == "EACCES"
    assert dom0.call(T.XS_IS_DOMAIN_INTRODUCED, str(DOMU)) == b"T\0"
    assert dom0.call(T.XS_IS_DOMAIN_INTRODUCED, "77") == b"F\0"


# ------------------------------------------------------------------ a property


_NAMES = st.sampled_from(["a", "b", "c"])
_PATHS = st.lists(_NAMES, min_size=1, max_size=3).map(lambda parts: "data/p/" + "/".join(parts))
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), _PATHS, st.binary(max_size=8)),
        st.tuples(st.just("mkdir"), _PATHS),
        st.tuples(st.just("rm"), _PATHS),
        st.tuples(st.just("read"), _PATHS),
        st.tuples(st.just("ls"), _PATHS),
        st.tuples(st.just("raw"), st.integers(0, 30), st.binary(max_size=12)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ops=_OPS)
def test_random_requests_match_a_model(ops: list) -> None:
    """Any request sequence gets one reply per request and never raises; values and directory listings are
    those of a model tree (children in creation order)."""
    store = Store()
    store.write(f"/local/domain/{DOMU}/data/p", b"", parse_perms(f"n{DOMU}"))
    guest = Client(store, DOMU)
    model: dict[str, bytes] = {"data/p": b""}
    children: dict[str, list[str]] = {"data/p": []}

    def create(path: str, value: bytes | None) -> None:
        if path not in model:
            parent = path.rsplit("/", 1)[0]
            create(parent, None)
            children[parent].append(path.rsplit("/", 1)[1])
            children[path] = []
            model[path] = b""
        if value is not None:
            model[path] = value

    def remove(path: str) -> None:
        for child in children.pop(path):
            remove(f"{path}/{child}")
        del model[path]

    for op in ops:
        if op[0] == "write":
            assert guest.write(op[1], op[2]) == b"OK\0"
            create(op[1], op[2])
        elif op[0] == "mkdir":
            assert guest.call(T.XS_MKDIR, op[1]) == b"OK\0"
            create(op[1], None)
        elif op[0] == "rm":
            if op[1].rsplit("/", 1)[0] in model:
                assert guest.call(T.XS_RM, op[1]) == b"OK\0"
                if op[1] in model:
                    remove(op[1])
                    children[op[1].rsplit("/", 1)[0]].remove(op[1].rsplit("/", 1)[1])
            else:
                assert errno_of(guest.call, T.XS_RM, op[1]) == "ENOENT"
        elif op[0] == "read":
            if op[1] in model:
                assert guest.read(op[1]) == model[op[1]]
            else:
                assert errno_of(guest.read, op[1]) == "ENOENT"
        elif op[0] == "ls":
            if op[1] in model:
                assert guest.ls(op[1]) == children[op[1]]
            else:
                assert errno_of(guest.ls, op[1]) == "ENOENT"
        else:
            out = guest.raw(op[1], op[2])
            assert [m[0] for m in out if m[0] != "XS_WATCH_EVENT"] in (
                [T(op[1]).name if op[1] in T._value2member_map_ else "XS_ERROR"],
                ["XS_ERROR"],
            )
            # a raw request may have changed the tree: resynchronise the model from the store
            model = {p[len(f"/local/domain/{DOMU}/"):]: n.value
                     for p, n in store.walk(f"/local/domain/{DOMU}/data/p")}  # fmt: skip
            children = {p[len(f"/local/domain/{DOMU}/"):]: list(n.children)
                        for p, n in store.walk(f"/local/domain/{DOMU}/data/p")}  # fmt: skip
    assert [p for p, _ in store.walk("/")] == list(dict.fromkeys(p for p, _ in store.walk("/")))  # no duplicates
