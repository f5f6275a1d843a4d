"""Hypothesis fuzzing of the sans-IO ConnectionMachine (protocol/connection.py).

Properties (fuzz_wire.py states the contract the Driver checks at every event):
- whatever the bytes, ``events()`` raises nothing: protocol violations come out as a Fault with
  a connection-scope code in {501..505, 530, 540} or as a silent CloseTransport;
- after a Fault the session's connection.close is the only close sent, and the client's
  close-ok then ends the connection (CloseTransport);
- the server's output is always a well-formed frame stream;
- a valid byte stream gives the expected events, and the same events and output however it is
  split across reads; an invalid one gives the same events up to its first terminal event;
- a method in the wrong state or on the wrong channel gets RabbitMQ's answer
  (rabbitmq-behaviour.md sections 1, 7 and 8).

Budget: every test exists twice. The CI variant is derandomized with a fixed max_examples
(the whole module runs in well under 20 s); the ``_soak`` variant is marked ``slow`` (so only
``make soak`` runs it), is randomized and takes FUZZ_EXAMPLES examples (default 5000).
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass, field

import pytest
from fuzz_wire import (
    ALLOWED_CLOSE_CODES,
    GOOD_HEADERS,
    HEADER,
    HEARTBEAT,
    Driver,
    canonical,
    connection_open,
    env_int,
    handshake_bytes,
    method_frame,
    props_bytes,
    publish_frames,
    raw_frame,
    sstr,
    start_ok,
    tune_ok,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import commands as C

from protocol import errors
from protocol.connection import State
from protocol.events import CloseTransport, Fault, LoginAttempt, Method, OpenVhost, PeerClosed
from protocol.events import Publish as PublishEvent

pytestmark = pytest.mark.filterwarnings("ignore:This command is deprecated:DeprecationWarning")

CI_SETTINGS = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                       suppress_health_check=list(HealthCheck))
SOAK_SETTINGS = settings(derandomize=False, database=None, deadline=None, print_blob=True,
                         max_examples=env_int("FUZZ_EXAMPLES", 5000),
                         suppress_health_check=list(HealthCheck))


def fuzz(*strategies, ci_examples: int = 200):  # type: ignore[no-untyped-def]
    """Make the CI test and its slow, bigger-budget soak twin from one property."""

    def wrap(fn):  # type: ignore[no-untyped-def]
        ci = settings(CI_SETTINGS, max_examples=ci_examples)(given(*strategies)(fn))
        soak = pytest.mark.slow(settings(SOAK_SETTINGS)(given(*strategies)(fn)))
        return ci, soak

    return wrap


CONNECTION_CLOSE_OK = method_frame(0, C.Connection.CloseOk())


def open_driver(frame_max: int = 131072, channel_max: int = 2047) -> Driver:
    d = Driver()
    d.feed(handshake_bytes(frame_max=frame_max, channel_max=channel_max))
    assert d.state is State.OPEN, d.events
    d.out.clear()
    return d


def assert_close_ok_ends_after_fault(d: Driver) -> None:
    """A Fault ends its events() run and drops what was buffered: the client's close-ok is
    then the next frame, and it closes the transport."""
    if d.last_feed_events and isinstance(d.last_feed_events[-1], Fault):
        assert d.state is State.CLOSING
        got = d.feed(CONNECTION_CLOSE_OK)
        assert len(got) == 1 and isinstance(got[0], CloseTransport), got
        assert d.state is State.CLOSED


def check_closed_stays_closed(d: Driver) -> None:
    if d.state is State.CLOSED:
        assert d.feed(HEARTBEAT + CONNECTION_CLOSE_OK + b"garbage\x00\xce" * 3) == []


# ---- strategies --------------------------------------------------------------------------

def unchecked(cls):  # type: ignore[no-untyped-def]
    """A builder for a pamqp method that skips pamqp's client-side name validation (RabbitMQ
    takes any UTF-8 name; the machine must too)."""

    def build(**fields):  # type: ignore[no-untyped-def]
        method = cls()
        for key, value in fields.items():
            setattr(method, key, value)
        return method

    return build


names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=24)
scalars = st.one_of(st.integers(-2**31, 2**31 - 1), st.booleans(), names,
                    st.binary(max_size=16).map(bytearray), st.none(),
                    st.lists(st.integers(-100, 100), max_size=3))
tables = st.recursive(st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz-_", max_size=12),
                                      scalars, max_size=4),
                      lambda inner: st.dictionaries(st.text("abcxyz", min_size=1, max_size=4),
                                                    inner, max_size=3),
                      max_leaves=8)
properties = st.builds(
    C.Basic.Properties,
    content_type=st.none() | st.just("text/plain"),
    delivery_mode=st.none() | st.sampled_from([1, 2]),
    priority=st.none() | st.integers(0, 9),
    message_id=st.none() | st.text("0123456789abcdef", max_size=16),
    headers=st.none() | tables,
)


def channel_methods(ch_names):  # type: ignore[no-untyped-def]
    """Valid methods a client sends on an open channel (broker semantics are not modelled:
    they only have to pass through the machine as Method events)."""
    return st.one_of(
        st.builds(unchecked(C.Queue.Declare), queue=names, durable=st.booleans(),
                  exclusive=st.booleans(), auto_delete=st.booleans(), arguments=tables),
        st.builds(unchecked(C.Queue.Bind), queue=names, exchange=st.just("amq.direct"),
                  routing_key=names, arguments=tables),
        st.builds(unchecked(C.Queue.Purge), queue=names),
        st.builds(unchecked(C.Queue.Delete), queue=names, if_unused=st.booleans()),
        st.builds(unchecked(C.Exchange.Declare), exchange=names,
                  exchange_type=st.sampled_from(["direct", "topic", "fanout", "headers"]),
                  arguments=tables),
        st.builds(unchecked(C.Basic.Qos), prefetch_count=st.integers(0, 65535),
                  global_=st.booleans()),
        st.builds(unchecked(C.Basic.Consume), queue=names, consumer_tag=names, arguments=tables),
        st.builds(unchecked(C.Basic.Cancel), consumer_tag=names),
        st.builds(unchecked(C.Basic.Ack), delivery_tag=st.integers(0, 2**63 - 1),
                  multiple=st.booleans()),
        st.builds(unchecked(C.Basic.Nack), delivery_tag=st.integers(0, 2**63 - 1),
                  multiple=st.booleans(), requeue=st.booleans()),
        st.builds(unchecked(C.Basic.Reject), delivery_tag=st.integers(0, 2**63 - 1),
                  requeue=st.booleans()),
        st.builds(unchecked(C.Basic.Get), queue=names, no_ack=st.booleans()),
        st.builds(unchecked(C.Basic.Recover), requeue=st.just(True)),
        st.just(C.Confirm.Select()),
        st.just(C.Tx.Select()),
        st.just(C.Channel.Flow(True)),
    )


@dataclass
class Stream:
    """A valid client byte stream as a list of frames (the protocol header first) and the
    events it must produce, in compact form."""

    frames: list[bytes] = field(default_factory=list)
    expected: list = field(default_factory=list)
    frame_max: int = 131072

    @property
    def data(self) -> bytes:
        return b"".join(self.frames)


def compact(event: object) -> object:
    if isinstance(event, Method):
        return ("M", event.channel, event.method.name)
    if isinstance(event, PublishEvent):
        return ("P", event.channel, event.exchange, event.routing_key, event.properties,
                event.body)
    if isinstance(event, LoginAttempt):
        return ("Login", event.mechanism, event.username, event.password)
    if isinstance(event, OpenVhost):
        return ("Open", event.vhost)
    if isinstance(event, PeerClosed):
        return ("PeerClosed", event.reply_code, event.reply_text)
    return canonical(event)


@st.composite
def valid_streams(draw, max_ops: int = 14) -> Stream:  # type: ignore[no-untyped-def]
    s = Stream()
    s.frame_max = fm = draw(st.sampled_from([4096, 8192, 131072]))
    channel_max = draw(st.integers(3, 2047))
    mechanism = draw(st.sampled_from(["PLAIN", "AMQPLAIN"]))
    user, password = draw(names), draw(names)
    s.frames += [draw(st.sampled_from(GOOD_HEADERS)),
                 start_ok(mechanism, user, password, draw(tables)),
                 tune_ok(channel_max, fm, draw(st.integers(0, 600))),
                 connection_open("/")]
    s.expected += [("Login", mechanism, user, password), ("Open", "/")]
    open_chs: list[int] = []
    free = [1, 2, 3, 2047, 65535]
    for _ in range(draw(st.integers(0, max_ops))):
        kinds = ["heartbeat", "update_secret"]
        if free and len(open_chs) < channel_max:
            kinds.append("open")
        if open_chs:
            kinds += ["method", "method", "publish", "publish", "close", "passive"]
        if len(open_chs) >= 2:
            kinds.append("interleaved")
        kind = draw(st.sampled_from(kinds))
        if kind == "heartbeat":
            s.frames.append(raw_frame(8, 0, b""))
        elif kind == "update_secret":
            s.frames.append(method_frame(0, C.Connection.UpdateSecret("token", "refresh")))
            s.expected.append(("M", 0, "Connection.UpdateSecret"))
        elif kind == "open":
            ch = draw(st.sampled_from(free))
            free.remove(ch)
            open_chs.append(ch)
            s.frames.append(method_frame(ch, C.Channel.Open()))
            s.expected.append(("M", ch, "Channel.Open"))
        elif kind == "method":
            ch = draw(st.sampled_from(open_chs))
            method = draw(channel_methods(names))
            s.frames.append(method_frame(ch, method))
            s.expected.append(("M", ch, method.name))
        elif kind in ("publish", "interleaved"):
            ch = draw(st.sampled_from(open_chs))
            size = draw(st.one_of(st.sampled_from([0, 1, fm - 9, fm - 8, fm - 7, 2 * (fm - 8)]),
                                  st.integers(0, 3 * fm)))
            chunk = draw(st.binary(min_size=1, max_size=8))
            body = (chunk * (size // len(chunk) + 1))[:size]
            props = draw(st.none() | properties)
            exchange, rk = draw(st.sampled_from(["", "amq.topic"])), draw(names)
            frames = publish_frames(ch, body, fm, exchange, rk, props)
            if kind == "interleaved":
                other = draw(st.sampled_from([c for c in open_chs if c != ch]))
                method = draw(channel_methods(names))
                at = draw(st.integers(1, len(frames) - 1))
                frames.insert(at, method_frame(other, method))
                s.expected.append(("M", other, method.name))
            s.frames += frames
            s.expected.append(("P", ch, exchange, rk, props_bytes(props), body))
        elif kind == "close":
            ch = draw(st.sampled_from(open_chs))
            open_chs.remove(ch)
            free.append(ch)
            s.frames.append(method_frame(ch, C.Channel.Close(200, "bye", 0, 0)))
            s.expected.append(("M", ch, "Channel.Close"))
        elif kind == "passive":
            # the Driver answers a passive declare with a 404 channel.close; what the client
            # sends before its close-ok is dropped
            ch = draw(st.sampled_from(open_chs))
            open_chs.remove(ch)
            free.append(ch)
            s.frames.append(method_frame(ch, C.Queue.Declare(queue="missing", passive=True)))
            s.expected.append(("M", ch, "Queue.Declare"))
            for method in draw(st.lists(channel_methods(names), max_size=2)):
                s.frames.append(method_frame(ch, method))
            if draw(st.booleans()):
                s.frames += publish_frames(ch, b"dropped", fm)
            s.frames.append(method_frame(ch, C.Channel.CloseOk()))
    if draw(st.booleans()):
        s.frames.append(method_frame(0, C.Connection.Close(200, "bye", 0, 0)))
        s.expected.append(("PeerClosed", 200, "bye"))
    return s


def feed_in_pieces(data: bytes, cuts: list[int]) -> Driver:
    d = Driver()
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in zip(points, points[1:], strict=False):
        d.feed(data[a:b])
    return d


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


# ---- methods in the wrong state or on the wrong channel -------------------------------------

ACCESS_REQUEST = struct.pack(">I", 0x001E000A) + sstr(b"/data") + b"\x1d"

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # basic.recover-async
    RECOVER_ASYNC = C.Basic.RecoverAsync(True)
CATALOGUE: list[tuple[str, bytes]] = [
    (m.name, bytes(method_frame(0, m)[7:-1])) for m in [
        C.Connection.Start(), C.Connection.StartOk({}, "PLAIN", "\0guest\0guest", "en_US"),
        C.Connection.Secure("x"), C.Connection.SecureOk("x"), C.Connection.Tune(2047, 131072, 60),
        C.Connection.TuneOk(2047, 131072, 0), C.Connection.Open("/"), C.Connection.OpenOk(),
        C.Connection.Close(200, "bye", 0, 0), C.Connection.CloseOk(), C.Connection.Blocked("x"),
        C.Connection.Unblocked(), C.Connection.UpdateSecret("s", "r"),
        C.Connection.UpdateSecretOk(),
        C.Channel.Open(), C.Channel.OpenOk(), C.Channel.Flow(True), C.Channel.FlowOk(True),
        C.Channel.Close(200, "bye", 0, 0), C.Channel.CloseOk(),
        C.Exchange.Declare(exchange="x"), C.Exchange.DeclareOk(),
        C.Exchange.Delete(exchange="x"), C.Exchange.Bind(destination="a", source="b"),
        C.Exchange.Unbind(destination="a", source="b"),
        C.Queue.Declare(queue="q"), C.Queue.DeclareOk("q", 0, 0),
        C.Queue.Bind(queue="q", exchange="amq.direct"), C.Queue.Purge(queue="q"),
        C.Queue.Delete(queue="q"), C.Queue.Unbind(queue="q", exchange="amq.direct"),
        C.Basic.Qos(prefetch_count=10), C.Basic.Consume(queue="q"),
        C.Basic.ConsumeOk("t"), C.Basic.Cancel("t"), C.Basic.Publish(),
        C.Basic.Get(queue="q"), C.Basic.Ack(1), C.Basic.Reject(1),
        RECOVER_ASYNC, C.Basic.Recover(True), C.Basic.Nack(1),
        C.Basic.Deliver("t", 1, False, "", "q"), C.Confirm.Select(), C.Tx.Select(),
        C.Tx.Commit(), C.Tx.Rollback(),
    ]
] + [("Access.Request", ACCESS_REQUEST)]
STATES = ["start_ok", "tune_ok", "open", "running", "running_ch1", "ch1_server_closing",
          "closing"]


def driver_in(state: str) -> Driver:
    d = Driver()
    d.feed(HEADER)
    if state != "start_ok":
        d.feed(start_ok())
    if state not in ("start_ok", "tune_ok"):
        d.feed(tune_ok())
    if state not in ("start_ok", "tune_ok", "open"):
        d.feed(connection_open())
    if state in ("running_ch1", "ch1_server_closing"):
        d.feed(method_frame(1, C.Channel.Open()))
    if state == "ch1_server_closing":
        d.feed(method_frame(1, C.Queue.Declare(queue="missing", passive=True)))
        assert d.machine.closing_channels == {1}
    if state == "closing":
        d.feed(raw_frame(1, 0, b"\x00\x14\x00\x0a", end=b"\x00"))  # bad frame end: 501
        assert d.state is State.CLOSING and d.close_codes == [501]
    d.out.clear()
    return d


def expected_answer(state: str, channel: int, name: str) -> tuple:
    """RabbitMQ's answer (rabbitmq-behaviour.md 1, 7, 8) to one valid method."""
    klass = name.split(".")[0]
    if state in ("start_ok", "tune_ok", "open"):
        if channel:
            return ("fault", 505) if state == "open" else ("silent", 3.0)
        wanted = {"start_ok": "Connection.StartOk", "tune_ok": "Connection.TuneOk",
                  "open": "Connection.Open"}[state]
        if name == wanted:
            return ("ok",)
        if name == "Connection.Close":
            return ("silent", 0.0)
        return ("silent", 3.0)
    if state == "closing":
        if channel == 0 and name in ("Connection.Close", "Connection.CloseOk"):
            return ("silent", 0.0)
        return ("nothing",)
    if state == "ch1_server_closing" and channel == 1:
        return ("nothing",)
    if channel == 0:
        if name == "Connection.Close":
            return ("peer_closed",)
        if name == "Connection.UpdateSecret":
            return ("method",)
        return ("fault", 504)
    if klass == "Connection":
        return ("fault", 503)
    is_open = state == "running_ch1" and channel == 1
    if name == "Channel.Open":
        return ("fault", 504) if is_open else ("method",)
    if not is_open:
        return ("fault", 504)
    if name == "Basic.Publish":
        return ("nothing",)
    return ("method",)


def _wrong_state(state: str, channel: int, entry: tuple[str, bytes]) -> None:
    name, payload = entry
    d = driver_in(state)
    got = d.feed(raw_frame(1, channel, payload))
    d.check_output()
    want = expected_answer(state, channel, name)
    kinds = [type(e).__name__ for e in got]
    if want[0] == "fault":
        assert kinds == ["Fault"], (want, got)
        assert got[0].error.code == want[1], (want, got[0].error.reply_text)
        assert d.close_codes == [want[1]]
        assert_close_ok_ends_after_fault(d)
    elif want[0] == "silent":
        assert kinds == ["CloseTransport"], (want, got)
        assert got[0].delay == want[1], (want, got)
        frames = d.check_output()
        assert all(isinstance(f, C.Connection.CloseOk) for _, f in frames), frames
    elif want[0] == "nothing":
        assert got == [], (want, got)
    elif want[0] == "peer_closed":
        assert kinds == ["PeerClosed"], got
    elif want[0] == "method":
        assert kinds == ["Method"] and got[0].channel == channel, (want, got)
    else:  # the handshake step itself
        assert kinds in (["LoginAttempt"], [], ["OpenVhost"]), got
        assert not d.faults
    check_closed_stays_closed(d)


test_method_in_wrong_state, test_method_in_wrong_state_soak = fuzz(
    st.sampled_from(STATES), st.sampled_from([0, 1, 2, 65535]), st.sampled_from(CATALOGUE),
    ci_examples=400,
)(_wrong_state)


def test_every_method_in_every_state() -> None:
    """The exhaustive table behind the property above: 7 states x 4 channels x 48 methods."""
    for state in STATES:
        for channel in (0, 1, 2):
            for entry in CATALOGUE:
                _wrong_state(state, channel, entry)


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


@pytest.mark.parametrize("payload", [
    # basic.publish cut before the routing key, before the bits, mid-exchange-name
    b"\x00\x3c\x00\x28\x00\x00\x00",
    b"\x00\x3c\x00\x28\x00\x00\x00\x01q",
    b"\x00\x3c\x00\x28\x00\x00\x05amq",
    b"\x00\x3c\x00\x28\x00",
    # trailing junk after the bits
    b"\x00\x3c\x00\x28\x00\x00\x00\x01q\x00junk",
], ids=["no-rk", "no-bits", "cut-exchange", "cut-ticket", "trailing-junk"])
def test_malformed_publish_is_frame_error(payload: bytes) -> None:
    """Regression cases found by the fuzzers: basic.publish is parsed by hand (the hot path,
    protocol/methods.py parse_publish) and must fail as the other methods do."""
    _cut_or_padded_arguments_direct(payload)


def _cut_or_padded_arguments_direct(payload: bytes) -> None:
    d = open_driver()
    d.feed(method_frame(1, C.Channel.Open()))
    got = d.feed(raw_frame(1, 1, payload))
    assert [type(e).__name__ for e in got] == ["Fault"], got
    assert got[0].error.code == 501, got[0].error.reply_text


@pytest.mark.parametrize("field", ["exchange", "routing_key"])
def test_publish_with_non_utf8_name_does_not_escape(field: str) -> None:
    """shortstr bytes that are not UTF-8 (found by the fuzzers): any designed outcome
    (a Publish with the bytes kept, a 501, a silent close), never a UnicodeDecodeError."""
    name = b"\xff\xfe"
    exchange, rk = (name, b"q") if field == "exchange" else (b"", name)
    payload = b"\x00\x3c\x00\x28\x00\x00" + sstr(exchange) + sstr(rk) + b"\x00"
    d = open_driver()
    d.feed(method_frame(1, C.Channel.Open()))
    d.feed(raw_frame(1, 1, payload) + raw_frame(2, 1, struct.pack(">HHQ", 60, 0, 0)
                                                 + b"\x00\x00"))
    for code in d.close_codes:
        assert code in ALLOWED_CLOSE_CODES
