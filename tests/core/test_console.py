"""The domain console stream (``xenpy.core.console``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xenpy.core.console import ConsoleStream


def collect(stream: ConsoleStream) -> list[bytes]:
    chunks: list[bytes] = []
    stream.listen(chunks.append)
    return chunks


def test_bytes_kept_in_order():
    stream = ConsoleStream()
    stream.write(b"abc")
    stream.write(bytearray(b"\x00\xff\n"))
    stream.write(memoryview(b"def"))
    assert stream.data == b"abc\x00\xff\ndef"
    assert stream.total_bytes == len(stream) == 9
    assert stream.dropped_bytes == 0


def test_listener_gets_complete_lines_with_newline():
    stream = ConsoleStream()
    chunks = collect(stream)
    stream.write(b"one\ntwo\nthr")
    assert chunks == [b"one\n", b"two\n"]
    assert stream.partial_line == b"thr"
    stream.write(b"ee\n")
    assert chunks == [b"one\n", b"two\n", b"three\n"]
    assert stream.partial_line == b""


def test_a_line_split_over_many_writes_is_delivered_once():
    stream = ConsoleStream()
    chunks = collect(stream)
    for byte in b"hello\n":
        stream.write(bytes([byte]))
    assert chunks == [b"hello\n"]


def test_flush_delivers_the_partial_line_and_never_repeats_it():
    stream = ConsoleStream()
    chunks = collect(stream)
    stream.write(b"prompt> ")
    assert chunks == []
    stream.flush()
    assert chunks == [b"prompt> "]
    stream.flush()
    assert chunks == [b"prompt> "]
    stream.write(b"answer\n")
    assert chunks == [b"prompt> ", b"answer\n"]
    assert stream.data == b"prompt> answer\n"


def test_overlong_partial_line_is_delivered_in_pieces():
    stream = ConsoleStream(max_line_bytes=4)
    chunks = collect(stream)
    stream.write(b"abcdefghij")
    assert chunks == [b"abcd", b"efgh"]
    assert stream.partial_line == b"ij"
    stream.write(b"klmnop\nq")
    assert chunks == [b"abcd", b"efgh", b"ijkl", b"mnop", b"\n"]
    assert stream.partial_line == b"q"


def test_history_limit_drops_the_oldest_bytes():
    stream = ConsoleStream(history_limit=8)
    stream.write(b"0123456789")
    stream.write(b"ab")
    assert stream.data == b"456789ab"
    assert stream.total_bytes == 12
    assert stream.dropped_bytes == 4


def test_listeners_still_see_everything_beyond_the_history_limit():
    stream = ConsoleStream(history_limit=4)
    chunks = collect(stream)
    stream.write(b"a long line\n")
    assert chunks == [b"a long line\n"]


def test_unsubscribe():
    stream = ConsoleStream()
    chunks: list[bytes] = []
    remove = stream.listen(chunks.append)
    stream.write(b"x\n")
    remove()
    remove()  # harmless twice
    stream.write(b"y\n")
    assert chunks == [b"x\n"]


def test_several_listeners_each_get_every_chunk():
    stream = ConsoleStream()
    first, second = collect(stream), collect(stream)
    stream.write(b"a\nb\n")
    assert first == second == [b"a\n", b"b\n"]


def test_lines_and_text():
    stream = ConsoleStream()
    assert stream.lines() == []
    stream.write(b"one\n\ntwo\nt\xffhree")
    assert stream.lines() == [b"one", b"", b"two", b"t\xffhree"]
    assert stream.text() == "one\n\ntwo\nt\ufffdhree"
    stream.write(b"\n")
    assert stream.lines() == [b"one", b"", b"two", b"t\xffhree"]


def test_empty_write_is_a_no_op():
    stream = ConsoleStream()
    chunks = collect(stream)
    stream.write(b"")
    assert (stream.data, stream.total_bytes, chunks) == (b"", 0, [])


@pytest.mark.parametrize("kwargs", [{"history_limit": 0}, {"max_line_bytes": 0}])
def test_limits_must_be_positive(kwargs):
    with pytest.raises(ValueError):
        ConsoleStream(**kwargs)


@given(
    writes=st.lists(st.binary(max_size=40), max_size=30),
    max_line=st.integers(min_value=1, max_value=16),
)
def test_chunks_concatenate_to_the_stream(writes, max_line):
    """Invariant: listener chunks + the held-back partial line == every byte written, in order; no chunk
    is longer than max_line_bytes (newline included), and a newline only ever ends a chunk."""
    stream = ConsoleStream(max_line_bytes=max_line)
    chunks = collect(stream)
    for data in writes:
        stream.write(data)
    written = b"".join(writes)
    assert b"".join(chunks) + stream.partial_line == written
    assert stream.data == written
    assert b"\n" not in stream.partial_line
    for chunk in chunks:
        assert chunk
        assert b"\n" not in chunk[:-1]
        assert len(chunk) <= max_line
    stream.flush()
    assert b"".join(chunks) == written
