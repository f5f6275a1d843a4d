"""Hypothesis fuzzing of the sans-IO ConnectionMachine (protocol/connection.py): properties.

Properties (fuzz_wire.py states the contract the Driver checks at every event):
- whatever the bytes, ``events()`` raises nothing: protocol violations come out as a Fault with
  a connection-scope code in {501..505, 530, 540} or as a silent CloseTransport;
- after a Fault the session's connection.close is the only close sent, and the client's
  close-ok then ends the connection (CloseTransport);
- the server's output is always a well-formed frame stream;
- a valid byte stream gives the expected events, and the same events and output however it is
  split across reads; an invalid one gives the same events up to its first terminal event;
- content frames out of place get only 501 or 505 closes, and cut or padded method arguments
  a 501.

Budget: every test exists twice. The CI variant is derandomized with a fixed max_examples
(the whole module runs in well under 20 s); the ``_soak`` variant is marked ``slow`` (so only
``make soak`` runs it), is randomized and takes FUZZ_EXAMPLES examples (default 5000).

Shared settings, checks and strategies: machine_strategies.py. Methods in the wrong state or
on the wrong channel (RabbitMQ's answers, sections 1, 7 and 8): test_machine_state_table.py;
the fuzzers' findings as fixed cases: test_machine_regressions.py.
"""

from __future__ import annotations

import struct

import pytest
from fuzz_wire import (
    GOOD_HEADERS,
    HEADER,
    HEARTBEAT,
    Driver,
    method_frame,
    raw_frame,
    start_ok,
    tune_ok,
)
from hypothesis import strategies as st
from machine_strategies import (
    Stream,
    assert_close_ok_ends_after_fault,
    check_closed_stays_closed,
    compact,
    feed_in_pieces,
    fuzz,
    open_driver,
    valid_streams,
)
from pamqp import commands as C

from protocol import errors
from protocol.connection import State
from protocol.events import CloseTransport, PeerClosed
from protocol.events import Publish as PublishEvent

pytestmark = pytest.mark.filterwarnings("ignore:This command is deprecated:DeprecationWarning")


# ---- valid streams -----------------------------------------------------------------------

def _valid_stream_split_anywhere(stream: Stream, cuts: list[int]) -> None:
    data = stream.data
    whole = Driver()
    whole.feed(data)
    assert [compact(e) for e in whole.last_feed_events] == stream.expected
    assert not whole.faults and whole.close_codes == []
    frames = whole.check_output()
    assert not any(isinstance(f, C.Connection.Close | C.Channel.Close) and
                   getattr(f, "reply_code", 0) != 404 for _, f in frames)
    pieces = feed_in_pieces(data, cuts)
    assert pieces.events == whole.events
    assert bytes(pieces.out) == bytes(whole.out)
    assert pieces.state is whole.state


test_valid_stream_split_anywhere, test_valid_stream_split_anywhere_soak = fuzz(
    valid_streams(), st.lists(st.integers(0, 2**31), max_size=40), ci_examples=250,
)(_valid_stream_split_anywhere)


def _valid_stream_frame_by_frame(stream: Stream) -> None:
    """Fed one frame per read, and then one byte per read for the handshake part."""
    whole = Driver()
    whole.feed(stream.data)
    by_frame = Driver()
    for frame in stream.frames:
        by_frame.feed(frame)
    assert by_frame.events == whole.events
    assert bytes(by_frame.out) == bytes(whole.out)
    head = b"".join(stream.frames[:4])
    bytewise = Driver()
    for i in range(len(head)):
        bytewise.feed(head[i:i + 1])
    bytewise.feed(b"".join(stream.frames[4:]))
    assert bytewise.events == whole.events


test_valid_stream_frame_by_frame, test_valid_stream_frame_by_frame_soak = fuzz(
    valid_streams(max_ops=8), ci_examples=60,
)(_valid_stream_frame_by_frame)


# ---- mutated and truncated valid streams ----------------------------------------------------

FRAME_TYPES = [0, 1, 2, 3, 4, 8, 9, 0xCE, 0xFF]
CHANNELS = [0, 1, 2, 3, 4, 5, 2047, 2048, 65535]


@st.composite
def mutated_streams(draw) -> tuple[bytes, list[str]]:  # type: ignore[no-untyped-def]
    stream = draw(valid_streams(max_ops=10))
    frames = [bytearray(f) for f in stream.frames]
    done: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(1 if draw(st.integers(0, 9)) else 0, len(frames) - 1))
        f = frames[i]
        kind = draw(st.sampled_from(
            ["type", "channel", "size", "end", "cut_args", "junk_args", "cut_raw", "flip",
             "drop", "dup", "swap"]))
        if (i == 0 or len(f) < 8) and kind not in ("flip", "cut_raw", "drop", "dup", "swap"):
            kind = "flip"
        if not f and kind in ("flip", "cut_raw"):
            kind = "drop"
        done.append(f"{kind}@{i}")
        if kind == "type":
            f[0] = draw(st.sampled_from(FRAME_TYPES))
        elif kind == "channel":
            f[1:3] = struct.pack(">H", draw(st.sampled_from(CHANNELS)))
        elif kind == "size":
            size = struct.unpack_from(">I", f, 3)[0]
            f[3:7] = struct.pack(">I", draw(st.one_of(
                st.integers(max(0, size - 3), size + 3), st.sampled_from([0, 4095, 131072,
                                                                          131073, 2**32 - 1]),
                st.integers(0, 2**32 - 1))))
        elif kind == "end":
            f[-1] = draw(st.integers(0, 255))
        elif kind in ("cut_args", "junk_args") and len(f) > 8:
            payload = f[7:-1]
            if kind == "cut_args":
                payload = payload[:draw(st.integers(0, len(payload) - 1))]
            else:
                payload += draw(st.binary(min_size=1, max_size=12))
            frames[i] = bytearray(raw_frame(f[0], struct.unpack_from(">H", f, 1)[0],
                                            bytes(payload)))
        elif kind == "cut_raw":
            frames[i] = f[:draw(st.integers(0, len(f) - 1))]
        elif kind == "flip" and f:
            at = draw(st.integers(0, len(f) - 1))
            f[at] ^= draw(st.integers(1, 255))
        elif kind == "drop" and len(frames) > 1:
            del frames[i]
        elif kind == "dup":
            frames.insert(i, bytearray(f))
        elif kind == "swap":
            j = draw(st.integers(0, len(frames) - 1))
            frames[i], frames[j] = frames[j], frames[i]
    data = bytearray(b"".join(frames))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "set"]))
        done.append(f"{op}@{at}")
        if op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif at < len(data):
            data[at] = draw(st.integers(0, 255))
    return bytes(data), done


def _first_terminal(events: list) -> list:
    for i, e in enumerate(events):
        if isinstance(e, tuple) and e[:1] == ("Fault",) or isinstance(
                e, CloseTransport | PeerClosed):
            return events[:i + 1]
    return events


def _mutated_stream(case: tuple[bytes, list[str]], cuts: list[int]) -> None:
    data, _mutations = case
    d = Driver()
    d.feed(data)
    d.check_output()
    pieces = feed_in_pieces(data, cuts)
    pieces.check_output()
    assert _first_terminal(pieces.events) == _first_terminal(d.events)
    assert_close_ok_ends_after_fault(d)
    check_closed_stays_closed(d)


test_mutated_stream, test_mutated_stream_soak = fuzz(
    mutated_streams(), st.lists(st.integers(0, 2**31), max_size=8), ci_examples=400,
)(_mutated_stream)


# ---- random input after a valid handshake ----------------------------------------------------

def _random_bytes_after_handshake(junk: bytes, frame_max: int) -> None:
    d = open_driver(frame_max=frame_max)
    d.feed(junk)
    d.check_output()
    assert_close_ok_ends_after_fault(d)
    check_closed_stays_closed(d)


test_random_bytes_after_handshake, test_random_bytes_after_handshake_soak = fuzz(
    st.binary(max_size=2048), st.sampled_from([4096, 131072]), ci_examples=300,
)(_random_bytes_after_handshake)


random_frames = st.lists(st.builds(
    raw_frame, st.sampled_from(FRAME_TYPES), st.sampled_from(CHANNELS), st.binary(max_size=48),
    st.sampled_from([b"\xce", b"\xce", b"\xce", b"\x00"])), min_size=1, max_size=8)

METHOD_IDS = sorted(C.INDEX_MAPPING) + [0x001E000A, 0x003C03E7, 0x0063000A]
method_with_random_args = st.builds(
    lambda ch, index, args: raw_frame(1, ch, struct.pack(">I", index) + args),
    st.sampled_from([0, 1, 2, 5]), st.sampled_from(METHOD_IDS), st.binary(max_size=64))


def _random_frames_after_handshake(frames: list[bytes], open_first: bool) -> None:
    d = open_driver()
    if open_first:
        d.feed(method_frame(1, C.Channel.Open()) + method_frame(2, C.Channel.Open()))
    d.feed(b"".join(frames))
    d.check_output()
    assert_close_ok_ends_after_fault(d)
    check_closed_stays_closed(d)


test_random_frames_after_handshake, test_random_frames_after_handshake_soak = fuzz(
    st.lists(st.one_of(random_frames.map(b"".join), method_with_random_args), min_size=1,
             max_size=6),
    st.booleans(), ci_examples=400,
)(_random_frames_after_handshake)


def _random_bytes_during_handshake(stage: int, junk: bytes) -> None:
    """Junk after the header, after start-ok, or after tune-ok."""
    prefix = [HEADER, start_ok(), tune_ok()][:stage + 1]
    d = Driver()
    d.feed(b"".join(prefix))
    d.feed(junk)
    d.check_output()
    assert_close_ok_ends_after_fault(d)
    check_closed_stays_closed(d)


test_random_bytes_during_handshake, test_random_bytes_during_handshake_soak = fuzz(
    st.integers(0, 2), st.one_of(st.binary(max_size=512), random_frames.map(b"".join),
                                 method_with_random_args),
    ci_examples=300,
)(_random_bytes_during_handshake)


def _random_header(data: bytes) -> None:
    d = Driver()
    d.feed(data)
    if data[:8] in GOOD_HEADERS:
        return
    if len(data) < 8:
        assert d.events == [] and d.out == b"" and d.state is State.AWAIT_HEADER
        return
    assert [type(e) for e in d.last_feed_events] == [CloseTransport]
    assert bytes(d.out) == HEADER
    check_closed_stays_closed(d)


test_random_header, test_random_header_soak = fuzz(
    st.one_of(st.binary(max_size=24), st.binary(max_size=16).map(lambda b: b"AMQP" + b)),
    ci_examples=150,
)(_random_header)



# ---- content frames out of place ------------------------------------------------------------

def _content_out_of_place(body_size: int, announced: int, extra: list[str]) -> None:
    """publish + header(announced) + body(body_size) + whatever follows on the same channel:
    only 505s and silent waits, never a crash, and a complete message is exact."""
    d = open_driver()
    d.feed(method_frame(1, C.Channel.Open()))
    frames = [method_frame(1, C.Basic.Publish(routing_key="q")),
              struct.pack(">BHI", 2, 1, 14) + struct.pack(">HHQ", 60, 0, announced)
              + b"\x00\x00\xce"]
    if body_size:
        frames.append(raw_frame(3, 1, b"b" * body_size))
    follow = {"method": method_frame(1, C.Basic.Qos(prefetch_count=1)),
              "header": raw_frame(2, 1, struct.pack(">HHQ", 60, 0, 1) + b"\x00\x00"),
              "body": raw_frame(3, 1, b"x"),
              "heartbeat": HEARTBEAT,
              "publish": method_frame(1, C.Basic.Publish(routing_key="q"))}
    frames += [follow[e] for e in extra]
    d.feed(b"".join(frames))
    for code in d.close_codes:
        assert code in (501, 505)
    publishes = [e for e in d.events if isinstance(e, PublishEvent)]
    if publishes:
        assert len(publishes[0].body) == announced
    for p in publishes[1:]:
        assert len(p.body) == 1  # the follow-up "header" announces one byte
    assert_close_ok_ends_after_fault(d)


test_content_out_of_place, test_content_out_of_place_soak = fuzz(
    st.integers(0, 40), st.integers(0, 40),
    st.lists(st.sampled_from(["method", "header", "body", "heartbeat", "publish"]),
             max_size=4),
    ci_examples=200,
)(_content_out_of_place)


# ---- malformed method arguments (RabbitMQ: 501 "cannot decode") ------------------------------

ARG_METHODS = [
    C.Queue.Declare(queue="q", arguments={"x-max-length": 10}),
    C.Queue.Bind(queue="q", exchange="amq.direct", routing_key="k"),
    C.Exchange.Declare(exchange="x", exchange_type="topic"),
    C.Basic.Consume(queue="q", consumer_tag="tag"), C.Basic.Qos(prefetch_count=5),
    C.Basic.Ack(7), C.Basic.Nack(7), C.Basic.Reject(7), C.Basic.Get(queue="q"),
    C.Basic.Cancel("tag"), C.Queue.Delete(queue="q"), C.Queue.Purge(queue="q"),
    C.Basic.Publish(exchange="amq.direct", routing_key="key"),
    C.Basic.Publish(exchange="", routing_key=""),
]


def _cut_or_padded_arguments(method_index: int, cut: int | None, junk: bytes) -> None:
    """A method on an open channel whose arguments are cut short, or carry trailing bytes,
    inside a self-consistent frame: RabbitMQ closes the connection with 501 FRAME_ERROR
    (section 8: "truncated arguments", "trailing junk"); basic.publish included."""
    method = ARG_METHODS[method_index]
    payload = bytes(method_frame(1, method)[7:-1])
    if cut is not None:
        payload = payload[:4 + cut % (len(payload) - 4)]
    else:
        payload += junk
    d = open_driver()
    d.feed(method_frame(1, C.Channel.Open()))
    got = d.feed(raw_frame(1, 1, payload))
    assert [type(e).__name__ for e in got] == ["Fault"], (method.name, payload, got)
    assert got[0].error.code == 501, got[0].error.reply_text
    assert isinstance(got[0].error, errors.FrameError)
    assert_close_ok_ends_after_fault(d)


test_cut_or_padded_arguments, test_cut_or_padded_arguments_soak = fuzz(
    st.integers(0, len(ARG_METHODS) - 1), st.none() | st.integers(0, 255),
    st.binary(min_size=1, max_size=8), ci_examples=200,
)(_cut_or_padded_arguments)
