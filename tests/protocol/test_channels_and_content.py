"""ConnectionMachine, section 7 (channel numbers and channel.open) and publish assembly
(method + content header + body frames into Publish events, however the bytes are split).
Literal client bytes in, exact bytes and events out; frames_helpers.py builds them.
"""

from __future__ import annotations

import struct

import pytest
from frames_helpers import (
    HEADER,
    HEARTBEAT,
    PLAIN_GUEST,
    assert_fault,
    body,
    channel_close,
    channel_close_ok,
    channel_close_ok_bytes,
    channel_open,
    content_header,
    feed,
    feed_bytewise,
    method_frame,
    new_machine,
    open_channel,
    open_machine,
    publish,
    queue_declare,
    single_fault,
    sstr,
    tune_ok,
)
from pamqp import commands as C
from pamqp import frame

from protocol.events import Method, Publish

# ======================================================================================
# Section 7: channels
# ======================================================================================


def test_channel_open_yields_method_and_sends_nothing():
    m = open_machine()
    open_channel(m, 1)
    assert m.data_to_send() == b""
    assert m.channel_usable(1)
    assert not m.channel_usable(2)


@pytest.mark.parametrize("data,ids", [
    (queue_declare(5), (50, 10)),
    (publish(5), (60, 40)),
    (channel_close(5), (20, 40)),
    (channel_close_ok(5), (20, 41)),
])
def test_method_on_never_opened_channel_is_504(data, ids):
    m = open_machine()
    open_channel(m, 1)
    events = feed(m, data)
    assert_fault(events, 504, "CHANNEL_ERROR - expected 'channel.open'", *ids)
    assert m.data_to_send() == b""


def test_get_of_the_last_declared_queue_on_a_never_opened_channel_is_a_404() -> None:
    """RabbitMQ quirk (catalogue section 4): basic.get "" is expanded before the channel-state
    check, so the channel is closed with 404 instead of the connection with 504; after the
    client's close-ok the number can be opened."""
    m = open_machine()
    open_channel(m, 1)
    get = method_frame(7, frame.marshal(C.Basic.Get(queue=""), 7)[7:-1])
    events = feed(m, get)
    err = single_fault(events)
    assert (err.code, err.reply_text, err.class_id, err.method_id) == (
        404, "NOT_FOUND - no previously declared queue", 60, 70)
    assert not err.connection_scope
    assert events[0].channel == 7
    named = method_frame(7, frame.marshal(C.Basic.Get(queue="q"), 7)[7:-1])
    assert_fault(feed(m, named), 504, "CHANNEL_ERROR - expected 'channel.open'", 60, 70)


def test_frames_after_a_channel_fault_in_the_same_read_are_handled() -> None:
    m = open_machine()
    get = method_frame(7, frame.marshal(C.Basic.Get(queue=""), 7)[7:-1])
    events = feed(m, get + channel_open(2))
    assert len(events) == 2 and isinstance(events[1], Method) and events[1].channel == 2
    assert single_fault(events[:1]).code == 404


def test_arguments_keep_their_wire_types() -> None:
    """x-arguments come out equal to the numbers sent, each naming its AMQP type the way
    RabbitMQ's texts do (``of type 'short'``); strings, booleans and nested tables as decoded."""
    m = open_machine()
    open_channel(m, 1)
    values = [("b", b"b", struct.pack(">b", -5), "byte"), ("B", b"B", b"\x05", "unsignedbyte"),
              ("s", b"s", struct.pack(">h", 1000), "short"),
              ("u", b"u", struct.pack(">H", 1000), "unsignedshort"),
              ("I", b"I", struct.pack(">i", 1000), "signedint"),
              ("i", b"i", struct.pack(">I", 1000), "unsignedint"),
              ("l", b"l", struct.pack(">q", 1000), "long"),
              ("L", b"L", struct.pack(">Q", 1000), "long"),
              ("f", b"f", struct.pack(">f", 1.5), "float"),
              ("d", b"d", struct.pack(">d", 1.5), "double")]
    table = b"".join(sstr(key) + tag + raw for key, tag, raw, _ in values) + sstr("t") + b"t\x01"
    payload = (struct.pack(">HHH", 50, 10, 0) + sstr("q") + b"\x00"
               + struct.pack(">I", len(table)) + table)
    events = feed(m, method_frame(1, payload))
    assert len(events) == 1 and isinstance(events[0], Method)
    arguments = events[0].method.arguments
    assert {key: getattr(value, "amqp_type", None) for key, value in arguments.items()} == \
        {**{key: name for key, _, _, name in values}, "t": None}
    assert arguments["b"] == -5 and arguments["s"] == 1000 and arguments["d"] == 1.5
    assert arguments["t"] is True


def test_wire_types_survive_a_msgpack_round_trip() -> None:
    """What the durable definitions keep (``wire_types``) types the numbers again after a
    msgpack round trip, which keeps only int and float."""
    import msgpack

    from protocol.tables import TypedInt, wire_types, with_wire_types

    m = open_machine()
    open_channel(m, 1)
    table = sstr("s") + b"s" + struct.pack(">h", 1000) + sstr("l") + b"l" + \
        struct.pack(">q", 7) + sstr("f") + b"f" + struct.pack(">f", 1.5) + sstr("x") + b"S" + \
        struct.pack(">I", 1) + b"y"
    payload = (struct.pack(">HHH", 50, 10, 0) + sstr("q") + b"\x00"
               + struct.pack(">I", len(table)) + table)
    arguments = feed(m, method_frame(1, payload))[0].method.arguments
    types = wire_types(arguments)
    assert types == {"s": "short", "l": "long", "f": "float"}
    back = msgpack.unpackb(msgpack.packb({"a": arguments, "t": types}), raw=False)
    assert not isinstance(back["a"]["s"], TypedInt)  # msgpack forgets the type
    again = with_wire_types(back["a"], back["t"])
    assert again == arguments and wire_types(again) == types


def test_second_channel_open_is_504():
    m = open_machine()
    open_channel(m, 1)
    assert_fault(feed(m, channel_open(1)), 504, "CHANNEL_ERROR - second 'channel.open' seen",
                 20, 10)


def test_two_pipelined_channel_opens_are_504():
    m = open_machine()
    events = feed(m, channel_open(1) + channel_open(1))
    assert len(events) == 2
    assert isinstance(events[0], Method) and isinstance(events[0].method, C.Channel.Open)
    assert_fault(events[1:], 504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)


def test_channel_max_exceeded_is_530():
    m = open_machine(channel_max=2)
    open_channel(m, 1)
    open_channel(m, 2)
    assert_fault(feed(m, channel_open(3)), 530,
                 "NOT_ALLOWED - number of channels opened (2) has reached the negotiated "
                 "channel_max (2)")


def test_channel_max_limits_the_count_not_the_number():
    m = open_machine()
    for ch in (2047, 2048, 65535):
        open_channel(m, ch)
    m1 = open_machine(channel_max=1)
    open_channel(m1, 5)
    assert_fault(feed(m1, channel_open(6)), 530,
                 "NOT_ALLOWED - number of channels opened (1) has reached the negotiated "
                 "channel_max (1)")


@pytest.mark.parametrize(("client", "negotiated"), [(0, 65535), (5, 5), (65535, 65535)])
def test_server_channel_max_0_is_no_limit(client, negotiated):
    """rabbitmq.conf's channel_max = 0 means no limit (RabbitMQ 3.10.8, probed: pika gets
    65535): any answer is taken, 0 (the client's "no limit") too."""
    m = new_machine(channel_max=0)
    feed(m, HEADER)
    feed(m, PLAIN_GUEST)
    m.accept_login()
    m.data_to_send()
    assert feed(m, tune_ok(client, 131072, 60)) == []
    assert m.channel_max == negotiated


def test_channel_number_reusable_after_client_close():
    m = open_machine()
    open_channel(m, 1)
    events = feed(m, channel_close(1, 406, "client says no"))
    assert len(events) == 1 and isinstance(events[0], Method)
    assert events[0].channel == 1 and isinstance(events[0].method, C.Channel.Close)
    assert events[0].method.reply_code == 406
    m.channel_close_ok(1)
    assert m.data_to_send() == channel_close_ok_bytes(1)
    open_channel(m, 1)


@pytest.mark.parametrize("payload,ids", [
    (b"\x00\x0a\x00\x32\x00\xc8\x00\x00\x00\x00\x00", (10, 50)),          # connection.close
    (b"\x00\x0a\x00\x1e\x07\xff\x00\x02\x00\x00\x00\x3c", (10, 30)),      # connection.tune
])
def test_connection_method_on_a_channel_is_503(payload, ids):
    m = open_machine()
    open_channel(m, 1)
    assert_fault(feed(m, method_frame(1, payload)), 503, "COMMAND_INVALID - unimplemented method",
                 *ids)


# ======================================================================================
# Publish assembly
# ======================================================================================

PROPS = C.Basic.Properties(content_type="text/plain", delivery_mode=2, priority=3,
                           headers={"k": "v"}, expiration="1000").marshal()


def test_publish_with_one_body_frame():
    m = open_machine()
    open_channel(m, 1)
    events = feed(m, publish(1, "amq.direct", "rk") + content_header(1, 5, PROPS)
                  + body(1, b"hello"))
    assert events == [Publish(1, "amq.direct", "rk", False, False, PROPS, b"hello")]
    assert m.data_to_send() == b""


def test_publish_mandatory_and_immediate_bits():
    m = open_machine()
    open_channel(m, 1)
    events = feed(m, publish(1, "", "q", mandatory=True) + content_header(1, 1) + body(1, b"x"))
    assert events == [Publish(1, "", "q", True, False, b"\x00\x00", b"x")]
    events = feed(m, publish(1, "", "q", immediate=True) + content_header(1, 1) + body(1, b"y"))
    assert events == [Publish(1, "", "q", False, True, b"\x00\x00", b"y")]
    events = feed(m, publish(1, "", "q", True, True) + content_header(1, 1) + body(1, b"z"))
    assert events == [Publish(1, "", "q", True, True, b"\x00\x00", b"z")]


def test_publish_with_several_body_frames():
    m = open_machine()
    open_channel(m, 1)
    payload = bytes(range(256)) * 40  # 10240 bytes
    parts = [payload[:4088], payload[4088:8176], payload[8176:]]
    data = publish(1, "ex", "a.b") + content_header(1, len(payload), PROPS)
    events = feed(m, data)
    assert events == []
    assert feed(m, body(1, parts[0])) == []
    assert feed(m, body(1, parts[1])) == []
    events = feed(m, body(1, parts[2]))
    assert events == [Publish(1, "ex", "a.b", False, False, PROPS, payload)]


def test_publish_with_size_0_and_no_body_frame():
    m = open_machine()
    open_channel(m, 1)
    events = feed(m, publish(1, "", "q") + content_header(1, 0, PROPS))
    assert events == [Publish(1, "", "q", False, False, PROPS, b"")]
    # and the channel is ready for the next method straight away
    events = feed(m, queue_declare(1))
    assert len(events) == 1 and isinstance(events[0].method, C.Queue.Declare)


def test_publish_unicode_routing_key():
    m = open_machine()
    open_channel(m, 1)
    events = feed(m, publish(1, "börse", "ключ.*") + content_header(1, 2) + body(1, b"hi"))
    assert events == [Publish(1, "börse", "ключ.*", False, False, b"\x00\x00", b"hi")]


def test_publish_properties_are_the_raw_bytes_on_the_wire():
    m = open_machine()
    open_channel(m, 1)
    odd_props = b"\x90\x00" + sstr("a/b") + b"\x01"  # content_type + delivery_mode
    events = feed(m, publish(1) + content_header(1, 3, odd_props) + body(1, b"abc"))
    assert len(events) == 1
    assert events[0].properties == odd_props
    assert type(events[0].properties) is bytes


def _session_bytes() -> bytes:
    return (channel_open(1) + channel_open(2)
            + publish(1, "amq.topic", "a.b") + content_header(1, 7, PROPS)
            + body(1, b"abc") + body(1, b"defg")
            + queue_declare(2, "q2")
            + publish(2, "", "q2", mandatory=True) + content_header(2, 0)
            + publish(1, "", "q") + content_header(1, 2) + body(1, b"xy")
            + HEARTBEAT
            + channel_close(2))


def _describe(events: list) -> list:
    out = []
    for e in events:
        if isinstance(e, Method):
            out.append(("method", e.channel, type(e.method).__name__,
                        getattr(e.method, "queue", None)))
        else:
            out.append(e)
    return out


def test_events_for_a_session_in_one_buffer():
    m = open_machine()
    events = _describe(feed(m, _session_bytes()))
    assert events == [
        ("method", 1, "Open", None),
        ("method", 2, "Open", None),
        Publish(1, "amq.topic", "a.b", False, False, PROPS, b"abcdefg"),
        ("method", 2, "Declare", "q2"),
        Publish(2, "", "q2", True, False, b"\x00\x00", b""),
        Publish(1, "", "q", False, False, b"\x00\x00", b"xy"),
        ("method", 2, "Close", None),
    ]


def test_bytes_fed_one_at_a_time_give_the_same_events():
    whole = open_machine()
    expected = _describe(feed(whole, _session_bytes()))
    m = open_machine()
    got = _describe(feed_bytewise(m, _session_bytes()))
    assert got == expected
    assert len(got) == 7


def test_bytes_fed_in_uneven_chunks_give_the_same_events():
    whole = open_machine()
    expected = _describe(feed(whole, _session_bytes()))
    m = open_machine()
    data = _session_bytes()
    got: list = []
    pos, step = 0, 1
    while pos < len(data):
        got += feed(m, data[pos:pos + step])
        pos += step
        step = step * 3 % 17 + 1
    assert _describe(got) == expected


def test_data_fed_while_iterating_events_is_kept_in_order():
    m = open_machine()
    open_channel(m, 1)
    first = publish(1, "", "a") + content_header(1, 1) + body(1, b"1")
    second = publish(1, "", "b") + content_header(1, 1) + body(1, b"2")
    m.receive_data(first + second[:5], 0.0)
    got = []
    for event in m.events():
        got.append(event)
        m.receive_data(second[5:], 0.0)  # arrives while the session handles the event
    got += list(m.events())
    assert [e.routing_key for e in got] == ["a", "b"]
    assert [e.body for e in got] == [b"1", b"2"]


def test_two_messages_in_one_buffer_give_two_events_in_order():
    m = open_machine()
    open_channel(m, 1)
    data = (publish(1, "", "first") + content_header(1, 3) + body(1, b"one")
            + publish(1, "", "second") + content_header(1, 3, PROPS) + body(1, b"two"))
    assert feed(m, data) == [
        Publish(1, "", "first", False, False, b"\x00\x00", b"one"),
        Publish(1, "", "second", False, False, PROPS, b"two"),
    ]


def test_content_interleaved_with_a_method_on_another_channel():
    m = open_machine()
    open_channel(m, 1)
    open_channel(m, 2)
    events = feed(m, publish(1) + content_header(1, 4) + queue_declare(2, "other")
                  + body(1, b"data"))
    assert len(events) == 2
    assert isinstance(events[0], Method) and events[0].channel == 2
    assert events[0].method.queue == "other"
    assert events[1] == Publish(1, "", "q", False, False, b"\x00\x00", b"data")
