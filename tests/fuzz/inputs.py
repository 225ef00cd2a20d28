"""Fuzzers of what reaches xenpy from outside a guest's CPU: kernel images, xenstore messages and rings, and
control-socket requests.

* **Images**: the bundled test kernels (and their gzip) with bytes flipped, fields of the ELF header and
  program headers set to boundary values, the file cut short or padded. ``boot_pv_image`` either refuses one
  with a ``LoaderError`` (or ``OutOfMachineMemory``) or builds a domain, which then runs for 2 ms of guest time
  with no hypervisor error.
* **xenstore**: requests of every type, valid-looking or not, from a domain's connection and a socket
  connection (paths and values of every shape, transaction ids live or not); raw byte streams into the wire
  reader; a domain's ring page filled with random indices and bytes, then notified. No exception leaves the
  store, every reply is one well-formed message, the ring backend records no fault.
* **Control requests**: random lines, JSON of random shape and random ops with random arguments, to
  ``ControlServer.handle``: always one reply, ``ok`` true or an error code.
* **Save files**: an xl save file of the suspend guest with bits flipped in its headers, record types and lengths
  at boundary values, record bodies (vCPU contexts, shared info, the p2m frames, PAGE_DATA pfn words) garbled,
  records dropped or repeated, the file cut short. ``restore_domain`` either refuses one with a one-line
  ``SaveFileError`` (or ``OutOfMachineMemory``) and leaves no domain, or restores a domain, which then runs
  for 2 ms of guest time with no hypervisor error.

Run: ``.venv/bin/python -m tests.fuzz.inputs --cases 2000 --seed 1`` (``make fuzz``); the quick suite runs a
short campaign (``tests/fuzz/test_fuzz.py``).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

from xenpy.abi.io_xs_wire import XENSTORE_PAYLOAD_MAX
from xenpy.core.memory import OutOfMachineMemory
from xenpy.engine import DEFAULT_ENGINE, create_engine
from xenpy.hypervisor import Hypervisor
from xenpy.loader import LoaderError
from xenpy.toolstack.boot import HYPERVISOR_MEMORY_MIB, boot_pv_image
from xenpy.toolstack.control import ControlServer
from xenpy.toolstack.migration.restore import restore_domain
from xenpy.toolstack.migration.save import save_domain
from xenpy.toolstack.migration.stream import SaveFileError, StreamReader
from xenpy.toolstack.run import run_domain
from xenpy.toolstack.xenstore import Store
from xenpy.toolstack.xenstore.wire import MessageReader, ProtocolError, encode

GUEST_BUILD = Path(__file__).resolve().parents[2] / "guest" / "build"
#: The kernels mutated (small ones: each mutant may be booted).
BASE_IMAGES = ("test-pv64-hello", "test-pv64-timer", "test-pv64-traps")
BOUNDARIES = (0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF, 1 << 63)
#: Offsets and sizes of the ELF64 header fields mutated: e_type, e_machine, e_entry, e_phoff, e_shoff,
#: e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx.
ELF_FIELDS = ((16, 2), (18, 2), (24, 8), (32, 8), (40, 8), (54, 2), (56, 2), (58, 2), (60, 2), (62, 2))
#: Bytes of the ``xsd_sockmsg`` header (type, req_id, tx_id, len).
XSD_SOCKMSG_SIZE = 16
PATH_PIECES = ("/", "/local", "/local/domain/1", "/local/domain/1/data", "/local/domain/0", "data/x", "@releaseDomain",
               "@introduceDomain", "/tool", "", "..", "a" * 3000, "/x//y", "\x00", "name", "control/shutdown")


class InputFuzzError(AssertionError):
    """An invariant broke; the message names the target, the seed and the case."""


# ---------------------------------------------------------------------------------------------- images


def mutate_image(rng: random.Random, data: bytes) -> bytes:
    """One mutant of an image."""
    out = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:  # bytes flipped in the headers
        for _ in range(rng.randint(1, 16)):
            out[rng.randrange(min(len(out), 4096))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # bytes flipped anywhere
        for _ in range(rng.randint(1, 64)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif kind == 2:  # an ELF header field at a boundary value
        offset, size = rng.choice(ELF_FIELDS)
        value = rng.choice(BOUNDARIES) & ((1 << (8 * size)) - 1)
        out[offset:offset + size] = value.to_bytes(size, "little")
    elif kind == 3:  # a program header field at a boundary value
        phoff, phnum = struct.unpack_from("<QxxxxxxH", out, 32)[0], struct.unpack_from("<H", out, 56)[0]
        if phnum and phoff + 56 * phnum <= len(out):
            where = phoff + 56 * rng.randrange(phnum) + rng.choice((0, 4, 8, 16, 24, 32, 40, 48))
            out[where:where + 8] = (rng.choice(BOUNDARIES) & ((1 << 64) - 1)).to_bytes(8, "little")
    elif kind == 4:  # cut short
        del out[rng.randrange(len(out)):]
    else:  # random bytes appended or a random prefix
        extra = bytes(rng.randrange(256) for _ in range(rng.randint(1, 512)))
        out = bytearray(extra + out) if rng.random() < 0.3 else out + extra
    result = bytes(out)
    return gzip.compress(result, mtime=0) if rng.random() < 0.15 else result


def _run_briefly(hv: Hypervisor, domain, where: str) -> None:  # type: ignore[no-untyped-def]
    """Run a mutant's domain for 2 ms of guest time: no exception, no hypervisor error."""
    create_engine(DEFAULT_ENGINE, hv)
    try:
        run_domain(hv, domain, timeout_s=5.0, max_guest_ns=2_000_000)
    except Exception as exc:
        raise InputFuzzError(f"{where}: the run raised {exc!r}") from exc
    if domain.crash_exception is not None:
        raise InputFuzzError(f"{where}: a hypervisor error: {domain.crash_reason}")


def fuzz_images(cases: int, seed: int) -> dict[str, int]:
    """``cases`` mutants booted (or refused); how each ended."""
    rng = random.Random(seed)
    bases = [(GUEST_BUILD / name).read_bytes() for name in BASE_IMAGES]
    endings = {"refused": 0, "booted": 0}
    for case in range(cases):
        image = mutate_image(rng, rng.choice(bases))
        hv = Hypervisor(nr_pcpus=1, memory_mib=16 + HYPERVISOR_MEMORY_MIB)
        try:
            booted = boot_pv_image(hv, image, memory_mib=16, name="mutant")
        except (LoaderError, OutOfMachineMemory) as error:
            if not str(error) or "\n" in str(error):
                raise InputFuzzError(f"images seed {seed}, case {case}: not a one-line error: {error!r}") from None
            endings["refused"] += 1
            continue
        except Exception as exc:
            raise InputFuzzError(f"images seed {seed}, case {case}: the builder raised {exc!r}") from exc
        _run_briefly(hv, booted.domain, f"images seed {seed}, case {case}")
        endings["booted"] += 1
    return endings


# ---------------------------------------------------------------------------------------------- save files

#: The suspend guest's memory when saved for the fuzzer (small: each mutant is restored).
SAVE_MEMORY_MIB = 8


def saved_guest() -> bytes:
    """An xl save file of test-pv64-suspend, taken while it waits for the toolstack."""
    hv = Hypervisor(nr_pcpus=1, memory_mib=SAVE_MEMORY_MIB + HYPERVISOR_MEMORY_MIB)
    booted = boot_pv_image(hv, (GUEST_BUILD / "test-pv64-suspend").read_bytes(), max_vcpus=2,
                           memory_mib=SAVE_MEMORY_MIB, cmdline="wait=60000")  # fmt: skip
    create_engine(DEFAULT_ENGINE, hv)
    node = f"/local/domain/{booted.domain.domid}/data/suspend"
    while booted.xenstore.store.read(node) != b"ready":
        run_domain(hv, booted.domain, timeout_s=30.0, max_guest_ns=1_000_000)
    out = io.BytesIO()
    save_domain(hv, booted.domain, out)
    return out.getvalue()


def _record_spans(data: bytes) -> list[tuple[int, int, int]]:
    """``(offset, type, body length)`` of each libxc record of a save file."""
    reader = StreamReader(io.BytesIO(data))
    reader.headers()
    return [(at, rtype, len(body)) for at, rtype, body in reader.records()]


def mutate_save_file(rng: random.Random, data: bytes, spans: list[tuple[int, int, int]]) -> bytes:
    """One mutant of a save file."""
    out = bytearray(data)
    at, _rtype, length = rng.choice(spans)
    kind = rng.randrange(7)
    if kind == 0:  # bits flipped in the xl, libxl and libxc headers
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(spans[0][0])] ^= 1 << rng.randrange(8)
    elif kind == 1:  # a record's type
        out[at : at + 4] = rng.choice((0, 0x13, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, *range(0x13))).to_bytes(
            4, "little")
    elif kind == 2:  # a record's length at a boundary value
        out[at + 4 : at + 8] = (rng.choice(BOUNDARIES) & 0xFFFF_FFFF).to_bytes(4, "little")
    elif kind == 3 and length:  # bytes of a record's body
        for _ in range(rng.randint(1, 8)):
            out[at + 8 + rng.randrange(min(length, 8192))] = rng.randrange(256)
    elif kind == 4:  # a PAGE_DATA pfn word: its pfn or its type
        pages = [s for s in spans if s[1] == 1]
        page_at, _t, _len = rng.choice(pages)
        count = int.from_bytes(out[page_at + 8 : page_at + 12], "little")
        word = page_at + 16 + 8 * rng.randrange(max(1, count))
        out[word + rng.choice((0, 1, 6, 7))] = rng.randrange(256)
    elif kind == 5:  # a record dropped or repeated
        end = at + 8 + ((length + 7) & ~7)
        out = out[:at] + out[end:] if rng.random() < 0.5 else out[:end] + out[at:end] + out[end:]
    else:  # cut short
        del out[rng.randrange(len(out)):]
    return bytes(out)


def fuzz_save_files(cases: int, seed: int) -> dict[str, int]:
    """``cases`` mutants of a save file restored (or refused); how each ended."""
    rng = random.Random(seed)
    data = saved_guest()
    spans = _record_spans(data)
    endings = {"refused": 0, "restored": 0}
    for case in range(cases):
        mutant = mutate_save_file(rng, data, spans)
        hv = Hypervisor(nr_pcpus=1, memory_mib=SAVE_MEMORY_MIB + 2 * HYPERVISOR_MEMORY_MIB, seed=case + 1)
        try:
            restored = restore_domain(hv, io.BytesIO(mutant))
        except (SaveFileError, OutOfMachineMemory) as error:
            if not str(error) or "\n" in str(error):
                raise InputFuzzError(f"save files seed {seed}, case {case}: not a one-line error: {error!r}") from None
            if hv.domains:
                raise InputFuzzError(f"save files seed {seed}, case {case}: a refused file left a domain") from None
            endings["refused"] += 1
            continue
        except Exception as exc:
            raise InputFuzzError(f"save files seed {seed}, case {case}: the restore raised {exc!r}") from exc
        _run_briefly(hv, restored.domain, f"save files seed {seed}, case {case}")
        endings["restored"] += 1
    return endings


# ---------------------------------------------------------------------------------------------- xenstore


def _payload(rng: random.Random) -> bytes:
    parts = [rng.choice(PATH_PIECES).encode() for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.3:
        parts.append(bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))))
    if rng.random() < 0.05:
        parts.append(b"v" * rng.choice((XENSTORE_PAYLOAD_MAX, XENSTORE_PAYLOAD_MAX + 1)))
    return b"\0".join(parts) + (b"\0" if rng.random() < 0.7 else b"")


def _check_replies(conn, where: str) -> None:  # type: ignore[no-untyped-def]
    while (message := conn.pop_output()) is not None:
        if len(message) < XSD_SOCKMSG_SIZE:
            raise InputFuzzError(f"{where}: a reply shorter than its header: {message!r}")
        length = struct.unpack_from("<I", message, 12)[0]
        if length != len(message) - XSD_SOCKMSG_SIZE or length > XENSTORE_PAYLOAD_MAX:
            raise InputFuzzError(f"{where}: a reply whose length field says {length}, not {len(message) - 16}")
    if conn.queued_bytes != 0 or conn.outstanding != 0:
        raise InputFuzzError(f"{where}: output accounting off: {conn.queued_bytes} bytes, {conn.outstanding}")


def fuzz_xenstore(cases: int, seed: int) -> int:
    """``cases`` requests to a store from a domain and a socket client, and byte streams to the wire reader;
    the number of requests answered."""
    rng = random.Random(seed)
    store = Store()
    domain = store.connect_domain(1)
    socket_client = store.connect_socket()
    answered = 0
    for case in range(cases):
        where = f"xenstore seed {seed}, case {case}"
        conn = domain if rng.random() < 0.7 else socket_client
        if rng.random() < 0.1:  # raw bytes into the wire reader
            reader = MessageReader()
            stream = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
            if rng.random() < 0.5:
                stream = encode(rng.randrange(40), rng.randrange(1 << 32), 0, _payload(rng)) + stream
            try:
                messages = reader.feed(stream)
            except ProtocolError:
                continue
            except Exception as exc:
                raise InputFuzzError(f"{where}: the reader raised {exc!r}") from exc
        else:
            tx_ids = [0, *conn.transactions, rng.randrange(1 << 32)]
            messages = None
            request = (rng.choice((*range(0, 32), 0xFFFF, rng.randrange(1 << 32))), rng.randrange(1 << 32),
                       rng.choice(tx_ids), _payload(rng))
        try:
            if messages is None:
                conn.handle(*request)
                answered += 1
            else:
                for m in messages:
                    conn.handle(m.type, m.req_id, m.tx_id, m.payload)
                    answered += 1
        except Exception as exc:
            raise InputFuzzError(f"{where}: the store raised {exc!r}") from exc
        _check_replies(conn, where)
        if len(conn.transactions) > 8 and rng.random() < 0.5:
            store.disconnect(conn)
            if conn is domain:
                domain = store.connect_domain(1)
            else:
                socket_client = store.connect_socket()
    return answered


def fuzz_xenstore_ring(cases: int, seed: int) -> int:
    """``cases`` random fillings of a booted domain's store ring, each followed by a notify; the number of
    requests the backend read."""
    rng = random.Random(seed)
    hv = Hypervisor(nr_pcpus=1, memory_mib=16 + HYPERVISOR_MEMORY_MIB)
    booted = boot_pv_image(hv, (GUEST_BUILD / "test-pv64-hello").read_bytes(), memory_mib=16, name="ring")
    backend = booted.xenstore
    assert backend is not None
    frame = hv.machine.frames[booted.built.store_mfn]  # req[1024], rsp[1024], then the four indices
    for case in range(cases):
        where = f"xenstore ring seed {seed}, case {case}"
        kind = rng.randrange(3)
        if kind == 0:  # well-formed requests, then notify
            data = b"".join(encode(rng.randrange(32), rng.randrange(1 << 32), 0, _payload(rng))
                            for _ in range(rng.randint(1, 4)))[:1024]
            prod = struct.unpack_from("<I", bytes(frame[2048 + 4:2048 + 8]))[0]
            for i, byte in enumerate(data):
                frame[(prod + i) % 1024] = byte
            struct.pack_into("<I", frame, 2048 + 4, (prod + len(data)) & 0xFFFF_FFFF)
        elif kind == 1:  # random indices
            struct.pack_into("<IIII", frame, 2048, *(rng.randrange(1 << 32) for _ in range(4)))
        else:  # random bytes in the request ring
            for _ in range(rng.randint(1, 64)):
                frame[rng.randrange(1024)] = rng.randrange(256)
        try:
            backend.notify()
        except Exception as exc:
            raise InputFuzzError(f"{where}: notify raised {exc!r}") from exc
        if backend.fault is not None:
            raise InputFuzzError(f"{where}: the backend faulted: {backend.fault!r}")
        if backend.error and rng.random() < 0.5:  # a broken ring is ignored; start again with a fresh domain
            return backend.requests + fuzz_xenstore_ring(cases - case - 1, seed + 1) if case + 1 < cases else 0
    return backend.requests


# ---------------------------------------------------------------------------------------------- control


def _json_value(rng: random.Random, depth: int = 0):  # type: ignore[no-untyped-def]
    kind = rng.randrange(8 if depth < 2 else 5)
    if kind == 0:
        return rng.choice(BOUNDARIES) * rng.choice((1, -1))
    if kind == 1:
        return rng.choice(("guest", "", "1", "x" * 100, "\u00e9", "ctl"))
    if kind == 2:
        return rng.random() * rng.choice((1, 1e9, -1))
    if kind == 3:
        return rng.choice((True, False, None))
    if kind == 4:
        return rng.randrange(-2, 5)
    if kind == 5:
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(("domain", "reason", "weight", "cap", "interval", "op", "id")): _json_value(rng, depth + 1)
            for _ in range(rng.randint(0, 3))}


def fuzz_control(cases: int, seed: int) -> dict[str, int]:
    """``cases`` request lines to a control server over a test domain; the reply codes seen."""
    from xenpy.hypervisor import DomainConfig

    rng = random.Random(seed)
    hv = Hypervisor(nr_pcpus=1, memory_mib=32)
    codes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as directory:
        server = ControlServer(hv, Path(directory) / "control.sock",
                               request_shutdown=lambda _d, _r: None)  # fmt: skip
        ours, theirs = socket.socketpair()
        client = server._new_client(ours)  # a client record (handle() never touches its socket)
        ops = [*server.ops, "nosuch", ""]
        for case in range(cases):
            if not hv.domains or (len(hv.domains) < 3 and rng.random() < 0.02):
                d = hv.create_domain(DomainConfig(max_vcpus=rng.randint(1, 3), memory_mib=2, name="guest"))
                d.unpause()
            kind = rng.randrange(4)
            if kind == 0:
                line = bytes(rng.randrange(256) for _ in range(rng.randint(0, 80)))
            elif kind == 1:
                line = json.dumps(_json_value(rng)).encode()
            else:
                request = {"op": rng.choice(ops), **{k: _json_value(rng, 1) for k in
                                                     rng.sample(("domain", "reason", "weight", "cap", "interval",
                                                                 "id"), rng.randint(0, 3))}}
                if rng.random() < 0.5:
                    request["domain"] = rng.choice((*hv.domains, "guest", 99))
                line = json.dumps(request).encode()
            try:
                reply = server.handle(client, line)
            except Exception as exc:
                raise InputFuzzError(f"control seed {seed}, case {case}: handle raised {exc!r} for {line!r}") from exc
            if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
                raise InputFuzzError(f"control seed {seed}, case {case}: not a reply: {reply!r}")
            json.dumps(reply)
            code = "ok" if reply["ok"] else reply["error"]["code"]
            codes[code] = codes.get(code, 0) + 1
            hv.run_for(100_000)
        ours.close()
        theirs.close()
        server.close()
    return codes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz xenpy's inputs: images, xenstore, control requests, save "
                                     "files.")
    parser.add_argument("--cases", type=int, default=2000, help="cases per target (default 2000)")
    parser.add_argument("--seed", type=int, default=1, help="the random seed (default 1)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        images = fuzz_images(max(1, args.cases // 5), args.seed)
        print(f"images: {sum(images.values())} mutants, {images['refused']} refused with one line, "
              f"{images['booted']} booted and ran ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
        answered = fuzz_xenstore(args.cases * 10, args.seed)
        ring = fuzz_xenstore_ring(args.cases, args.seed)
        print(f"xenstore: {answered} requests answered, {ring} read from broken rings "
              f"({time.perf_counter() - start:.1f} s)", file=sys.stderr)
        codes = fuzz_control(args.cases * 5, args.seed)
        saves = fuzz_save_files(max(1, args.cases // 10), args.seed)
        print(f"save files: {sum(saves.values())} mutants, {saves['refused']} refused with one line, "
              f"{saves['restored']} restored and ran ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    except InputFuzzError as failure:
        print(f"FAIL: {failure}", file=sys.stderr)
        return 1
    print(f"images {sum(images.values())}, xenstore {answered} + ring {ring}, save files {sum(saves.values())}, "
          f"control {sum(codes.values())} "
          f"(replies: {', '.join(f'{k} {v}' for k, v in sorted(codes.items()))}); no invariant broken "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
