"""Shared by the ConnectionMachine fuzz tests (test_machine_fuzz.py,
test_machine_state_table.py, test_machine_regressions.py): hypothesis settings and ``fuzz``, the
CI/soak twin maker; the after-the-fact checks on a Driver; strategies for valid client streams.

Budget: every test exists twice. The CI variant is derandomized with a fixed max_examples
(the whole module runs in well under 20 s); the ``_soak`` variant is marked ``slow`` (so only
``make soak`` runs it), is randomized and takes FUZZ_EXAMPLES examples (default 5000).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from fuzz_wire import (
    GOOD_HEADERS,
    HEARTBEAT,
    Driver,
    as_method,
    canonical,
    connection_open,
    env_int,
    handshake_bytes,
    method_frame,
    props_bytes,
    publish_frames,
    raw_frame,
    start_ok,
    tune_ok,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import commands as C

from protocol.connection import State
from protocol.errors import UnreadableFrame
from protocol.events import CloseTransport, Fault, LoginAttempt, Method, OpenVhost, PeerClosed
from protocol.events import Publish as PublishEvent

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
    then the next frame, and it closes the transport -- unless the fault was a frame RabbitMQ
    stops reading at (frame_too_large, bad frame end): then nothing more is read."""
    if d.last_feed_events and isinstance(d.last_feed_events[-1], Fault):
        assert d.state is State.CLOSING
        if isinstance(d.last_feed_events[-1].error, UnreadableFrame):
            assert d.feed(CONNECTION_CLOSE_OK) == [] and d.state is State.CLOSING
            return
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
    event = as_method(event)
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
