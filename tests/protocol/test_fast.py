"""protocol.fast: the compiled hot path (``_fast_c``, Cython) and its pure-Python reference
(``_fast_py``) give the same events and the same bytes, and both agree with pamqp.

Every test runs on each implementation there is; when the compiled one is missing the tests of
the pure one still run, and ``test_compiled_module_is_built`` says why the other did not
(it only skips locally: CI sets CI=true and builds it).
"""

from __future__ import annotations

import importlib
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import body as pbody
from pamqp import commands as C
from pamqp import frame, header

from protocol import _fast_py, codec, fast
from protocol.connection import ConnectionMachine
from protocol.events import Ack, Publish

try:
    _fast_c = importlib.import_module("protocol._fast_c")
except ImportError:
    _fast_c = None

IMPLS = [pytest.param(_fast_py, id="pure")]
if _fast_c is not None:
    IMPLS.append(pytest.param(_fast_c, id="compiled"))
FRAME_MAX = 131072
MAX_SIZE = 134217728


def test_compiled_module_is_built() -> None:
    if _fast_c is None:
        if os.environ.get("CI") and not os.environ.get("BURROWMQ_NO_EXTENSIONS"):
            pytest.fail("protocol._fast_c was not built (CI builds it: Cython + a C compiler)")
        pytest.skip("protocol._fast_c not built here (no Cython or no C compiler)")
    assert fast.COMPILED is (not os.environ.get("BURROWMQ_NO_EXTENSIONS"))


def publish_bytes(channel: int, exchange: str, key: str, body: bytes,
                  props: C.Basic.Properties | None = None, mandatory: bool = False,
                  immediate: bool = False, frame_max: int = FRAME_MAX) -> bytes:
    # by hand: pamqp refuses exchange names RabbitMQ takes ("*", spaces...)
    args = (b"\x00\x3c\x00\x28\x00\x00" + codec.shortstr(exchange) + codec.shortstr(key)
            + bytes((int(mandatory) | int(immediate) << 1,)))
    out = struct.pack(">BHI", 1, channel, len(args)) + args + b"\xce"
    out += frame.marshal(header.ContentHeader(0, len(body), props or C.Basic.Properties()),
                         channel)
    for start in range(0, len(body), frame_max - 8):
        out += frame.marshal(pbody.ContentBody(body[start:start + frame_max - 8]), channel)
    return out


def ack_bytes(channel: int, tag: int, multiple: bool = False) -> bytes:
    """basic.ack (pamqp refuses tags past 2**63 - 1; AMQP's longlong is unsigned)."""
    data = struct.pack(">BHIIQBB", 1, channel, 13, 0x003C0050, tag, multiple, 0xCE)
    if tag < 2**63:
        assert data == frame.marshal(C.Basic.Ack(tag, multiple), channel)
    return data


def run_scan(impl, data: bytes, pos: int = 0, limit: int = 1000,  # type: ignore[no-untyped-def]
             open_channels: set | None = None, closing: set | None = None,
             content: dict | None = None, frame_max: int = FRAME_MAX):
    return impl.scan(data, pos, limit, frame_max, MAX_SIZE,
                     {1, 2} if open_channels is None else open_channels, closing or set(),
                     content or {})


def as_tuple(event: object) -> tuple:
    if isinstance(event, Publish):
        return ("P", event.channel, event.exchange, event.routing_key, event.mandatory,
                event.immediate, event.properties, event.body, event.exchange_raw,
                event.routing_key_raw)
    assert isinstance(event, Ack)
    return ("A", event.channel, event.delivery_tag, event.multiple)


# ---- scan ------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_scan_reads_a_run_of_publishes_and_acks(impl) -> None:  # type: ignore[no-untyped-def]
    props = C.Basic.Properties(content_type="text/plain", delivery_mode=2, priority=3,
                               headers={"k": "v"})
    parts = [publish_bytes(1, "", "q", b"a" * 10),
             publish_bytes(2, "amq.direct", "ключ", b"", props, mandatory=True),
             ack_bytes(1, 7),
             ack_bytes(2, 2**64 - 1, True),
             publish_bytes(1, "ex", "rk", b"\x00" * 5000, immediate=True)]
    data = b"".join(parts)
    events, ends = run_scan(impl, data)
    assert [as_tuple(e) for e in events] == [
        ("P", 1, "", "q", False, False, b"\x00\x00", b"a" * 10, b"\x00", b"\x01q"),
        ("P", 2, "amq.direct", "ключ", True, False, props.marshal(), b"", b"\namq.direct",
         codec.shortstr("ключ")),
        ("A", 1, 7, False),
        ("A", 2, 2**64 - 1, True),
        ("P", 1, "ex", "rk", False, True, b"\x00\x00", b"\x00" * 5000, b"\x02ex", b"\x02rk")]
    assert ends == [sum(len(p) for p in parts[:i + 1]) for i in range(len(parts))]


@pytest.mark.parametrize("impl", IMPLS)
def test_scan_stops_at_anything_else(impl) -> None:  # type: ignore[no-untyped-def]
    one = publish_bytes(1, "", "q", b"x")
    cases = {
        "other method": frame.marshal(C.Basic.Qos(prefetch_count=1), 1),
        "heartbeat": b"\x08\x00\x00\x00\x00\x00\x00\xce",
        "closed channel": publish_bytes(3, "", "q", b"x"),
        "body in two frames": publish_bytes(1, "", "q", b"y" * 100, frame_max=4096 + 8)[:0]
        + publish_bytes(1, "", "q", b"y" * 5000, frame_max=4096),
        "bad end marker": one[:-1] + b"\x00",
        "truncated": one[:-3],
        "header on another channel": one.replace(b"\x02\x00\x01", b"\x02\x00\x02", 1),
        "not utf-8": publish_bytes(1, "", "q", b"x").replace(b"\x01q", b"\x01\xff", 1),
        "publish without content": frame.marshal(C.Basic.Publish(routing_key="q"), 1),
        "ack with a trailing byte": struct.pack(">BHIIQBBB", 1, 1, 14, 0x003C0050, 1, 0, 0,
                                                0xCE),
    }
    for name, tail in cases.items():
        events, ends = run_scan(impl, one + tail, frame_max=4096 if "two" in name else FRAME_MAX)
        assert len(events) == 1 and ends == [len(one)], name


@pytest.mark.parametrize("impl", IMPLS)
def test_scan_respects_channel_state_and_limit(impl) -> None:  # type: ignore[no-untyped-def]
    data = publish_bytes(1, "", "q", b"1") + publish_bytes(1, "", "q", b"2")
    assert run_scan(impl, data, closing={1}) == ([], [])
    assert run_scan(impl, data, content={1: object()}) == ([], [])
    assert run_scan(impl, data, open_channels=set()) == ([], [])
    events, ends = run_scan(impl, data, limit=1)
    assert [e.body for e in events] == [b"1"] and ends == [len(data) // 2]
    events, _ = run_scan(impl, data, pos=len(data) // 2)
    assert [e.body for e in events] == [b"2"]


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("p"), st.integers(1, 3), st.text(max_size=20), st.text(max_size=40),
              st.binary(max_size=300), st.booleans(), st.booleans()),
    st.tuples(st.just("a"), st.integers(0, 3), st.integers(0, 2**64 - 1), st.booleans())),
    max_size=12), st.integers(0, 400), st.binary(max_size=3))
def test_pure_and_compiled_scan_agree(items, cut, junk) -> None:  # type: ignore[no-untyped-def]
    """Any stream, cut anywhere and with junk after it: the same events, the same ends."""
    parts = []
    for item in items:
        if item[0] == "p":
            _, ch, ex, key, body, mandatory, immediate = item
            if len(ex.encode()) > 255 or len(key.encode()) > 255:
                continue
            parts.append(publish_bytes(ch, ex, key, body, mandatory=mandatory,
                                       immediate=immediate))
        else:
            parts.append(ack_bytes(item[1], item[2], item[3]))
    data = b"".join(parts)
    data = data[:len(data) - cut] + junk if cut < len(data) else junk
    pure = run_scan(_fast_py, data)
    if _fast_c is not None:
        compiled = run_scan(_fast_c, data)
        assert [as_tuple(e) for e in compiled[0]] == [as_tuple(e) for e in pure[0]]
        assert compiled[1] == pure[1]
    # and the machine, frame by frame, agrees with the fast path on what it parsed
    machine = _open_machine()
    machine.receive_data(data, 0.0)
    slow = [e for e in machine.events() if isinstance(e, (Publish, Ack))]
    assert [as_tuple(e) for e in slow[:len(pure[0])]] == [as_tuple(e) for e in pure[0]]


def _open_machine() -> ConnectionMachine:
    """A machine past the handshake with channels 1 and 2 open."""
    machine = ConnectionMachine({})
    machine.receive_data(b"AMQP\x00\x00\x09\x01", 0.0)
    list(machine.events())
    for method in (C.Connection.StartOk({}, "PLAIN", "\x00guest\x00guest", "en_US"),):
        machine.receive_data(frame.marshal(method, 0), 0.0)
        list(machine.events())
    machine.accept_login()
    machine.receive_data(frame.marshal(C.Connection.TuneOk(2047, FRAME_MAX, 0), 0), 0.0)
    machine.receive_data(frame.marshal(C.Connection.Open("/"), 0), 0.0)
    list(machine.events())
    machine.open_ok()
    for ch in (1, 2):
        machine.receive_data(frame.marshal(C.Channel.Open(), ch), 0.0)
    list(machine.events())
    machine.data_to_send()
    return machine


def test_machine_gives_the_same_events_with_either_implementation(monkeypatch) -> None:
    import protocol.connection as connection

    data = b"".join([publish_bytes(1, "", "q", b"a"), ack_bytes(1, 1),
                     frame.marshal(C.Basic.Qos(prefetch_count=5), 1),
                     publish_bytes(2, "x", "y", b"b" * 70000)] * 3)
    seen = []
    for impl in [p.values[0] for p in IMPLS]:
        monkeypatch.setattr(connection, "fast", impl)
        machine = _open_machine()
        machine.receive_data(data, 0.0)
        seen.append([as_tuple(e) if isinstance(e, (Publish, Ack)) else e.method.name
                     for e in machine.events()])
    assert seen[0][:4] == [as_tuple(Publish(1, "", "q", False, False, b"\x00\x00", b"a",
                                            b"\x00", b"\x01q")),
                           ("A", 1, 1, False), "Basic.Qos", seen[0][3]]
    assert len(seen[0]) == 12 and all(s == seen[0] for s in seen)


# ---- deliver_message -------------------------------------------------------------------------

DELIVERIES = [
    (1, "ctag", 1, False, "", "q1", C.Basic.Properties(), b"hello"),
    (7, "amq.ctag-x", 2**63 - 1, True, "amq.direct", "ключ",
     C.Basic.Properties(delivery_mode=2, headers={"a": 1}, priority=9), b"\x00" * 1024),
    (2047, "t" * 255, 0, False, "e" * 127, "r" * 255, C.Basic.Properties(), b"z" * 131064),
    (3, "c", 5, True, "ex", "", C.Basic.Properties(content_type="x"), b""),
    (3, "c", 5, True, "ex", "", C.Basic.Properties(), b"s" * 131065),  # split in two bodies
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", DELIVERIES)
def test_deliver_message_equals_pamqp(impl, case) -> None:  # type: ignore[no-untyped-def]
    channel, tag, dtag, redelivered, exchange, key, props, body = case
    got = impl.deliver_message(channel, codec.shortstr(tag), dtag, redelivered,
                               codec.shortstr(exchange), codec.shortstr(key), props.marshal(),
                               body, FRAME_MAX)
    want = frame.marshal(C.Basic.Deliver(tag, dtag, redelivered, exchange, key), channel)
    want += frame.marshal(header.ContentHeader(0, len(body), props), channel)
    for start in range(0, len(body), FRAME_MAX - 8):
        want += frame.marshal(pbody.ContentBody(body[start:start + FRAME_MAX - 8]), channel)
    assert got == want
    assert got == codec.deliver_message(channel, codec.shortstr(tag), dtag, redelivered,
                                        codec.shortstr(exchange), codec.shortstr(key),
                                        props.marshal(), body, FRAME_MAX)


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None)
@given(st.integers(0, 65535), st.binary(max_size=255), st.integers(0, 2**64 - 1),
       st.booleans(), st.binary(max_size=255), st.binary(max_size=255),
       st.binary(min_size=2, max_size=100), st.binary(max_size=3000),
       st.sampled_from([4096, 131072]))
def test_deliver_message_pure_and_compiled_agree(channel, tag, dtag, redelivered, exchange,
                                                  key, props, body, frame_max) -> None:  # type: ignore
    args = (channel, bytes((len(tag),)) + tag, dtag, redelivered,
            bytes((len(exchange),)) + exchange, bytes((len(key),)) + key, props, body,
            frame_max)
    pure = _fast_py.deliver_message(*args)
    if _fast_c is not None:
        assert _fast_c.deliver_message(*args) == pure
    size = struct.unpack_from(">I", pure, 3)[0]
    assert pure[7 + size] == 0xCE
