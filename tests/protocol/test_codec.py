"""protocol.codec: the hand-written hot-path encoders must be byte-equal to pamqp.

pamqp.frame.marshal(obj, channel) is the oracle for encoding and pamqp.frame.unmarshal for
parsing; nothing here touches a socket.
"""

from __future__ import annotations

import struct

import pytest
from frames_helpers import SERVER_PROPERTIES as HANDSHAKE_SERVER_PROPERTIES
from frames_helpers import sstr
from pamqp import body, encode, frame, header, heartbeat
from pamqp import commands as C

from protocol import codec


def unmarshal_all(data: bytes) -> list[tuple[int, object]]:
    """Split a byte string into (channel, frame object) pairs with pamqp, consuming it all."""
    frames = []
    while data:
        consumed, channel, obj = frame.unmarshal(data)
        assert consumed > 0
        frames.append((channel, obj))
        data = data[consumed:]
    return frames


# ---- constants ---------------------------------------------------------------------------


def test_protocol_header_constant_is_amqp_0_9_1():
    assert codec.PROTOCOL_HEADER == b"AMQP\x00\x00\x09\x01"
    assert codec.PROTOCOL_HEADER == header.ProtocolHeader(0, 9, 1).marshal()


def test_heartbeat_frame_constant_matches_pamqp():
    assert codec.HEARTBEAT_FRAME == b"\x08\x00\x00\x00\x00\x00\x00\xce"
    assert codec.HEARTBEAT_FRAME == frame.marshal(heartbeat.Heartbeat(), 0)
    consumed, channel, obj = frame.unmarshal(codec.HEARTBEAT_FRAME)
    assert (consumed, channel) == (8, 0)
    assert isinstance(obj, heartbeat.Heartbeat)


# ---- basic.deliver -------------------------------------------------------------------------

DELIVER_CASES = [
    (1, "ctag", 1, False, "", "q1"),
    (1, "amq.ctag-abc123", 42, True, "amq.direct", "route.key"),
    (7, "c", 2**63 - 1, False, "ex", ""),
    (2047, "consumer/with spaces", 2**63 - 1, True, "x/y#z", "a.b.*"),
    (65535, "x" * 255, 0, False, "e" * 127, "r" * 255),
    (3, "tag", 5, False, "ex", "ключ"),
]


@pytest.mark.parametrize("channel,tag,delivery_tag,redelivered,exchange,rk", DELIVER_CASES)
def test_deliver_frame_equals_pamqp(channel, tag, delivery_tag, redelivered, exchange, rk):
    got = codec.deliver_frame(channel, sstr(tag), delivery_tag, redelivered, sstr(exchange),
                              sstr(rk))
    expected = frame.marshal(C.Basic.Deliver(tag, delivery_tag, redelivered, exchange, rk),
                             channel)
    assert got == expected


def test_deliver_frame_parses_back_with_pamqp():
    data = codec.deliver_frame(5, sstr("ctag-1"), 99, True, sstr("amq.topic"), sstr("a.b"))
    consumed, channel, method = frame.unmarshal(data)
    assert consumed == len(data)
    assert channel == 5
    assert isinstance(method, C.Basic.Deliver)
    assert method.consumer_tag == "ctag-1"
    assert method.delivery_tag == 99
    assert method.redelivered is True
    assert method.exchange == "amq.topic"
    assert method.routing_key == "a.b"


def test_deliver_frame_literal_bytes():
    data = codec.deliver_frame(1, sstr("c"), 1, False, sstr(""), sstr("q"))
    payload = b"\x00\x3c\x00\x3c" + b"\x01c" + b"\x00" * 7 + b"\x01" + b"\x00" + b"\x00" + b"\x01q"
    assert data == b"\x01\x00\x01" + struct.pack(">I", len(payload)) + payload + b"\xce"


def test_unsigned_64_bit_delivery_tags_beyond_pamqp_range():
    # AMQP delivery tags are unsigned 64-bit; pamqp packs them signed, so check literally
    top = 2**64 - 1
    deliver = codec.deliver_frame(1, sstr("c"), top, False, sstr(""), sstr("q"))
    assert deliver[7 + 4 + 2:7 + 4 + 2 + 8] == b"\xff" * 8
    get_ok = codec.get_ok_frame(1, top, False, sstr(""), sstr("q"), 0)
    assert get_ok[7 + 4:7 + 4 + 8] == b"\xff" * 8
    assert codec.ack_frame(1, top, False)[11:19] == b"\xff" * 8
    assert codec.nack_frame(1, top, False)[11:19] == b"\xff" * 8


# ---- basic.get-ok -------------------------------------------------------------------------

GET_OK_CASES = [
    (1, 1, False, "", "q", 0),
    (2, 77, True, "amq.fanout", "", 12345),
    (9, 2**63 - 1, False, "x" * 127, "y" * 255, 2**32 - 1),
    (4, 3, True, "ex", "ü", 1),
]


@pytest.mark.parametrize("channel,tag,redelivered,exchange,rk,count", GET_OK_CASES)
def test_get_ok_frame_equals_pamqp(channel, tag, redelivered, exchange, rk, count):
    got = codec.get_ok_frame(channel, tag, redelivered, sstr(exchange), sstr(rk), count)
    expected = frame.marshal(C.Basic.GetOk(tag, redelivered, exchange, rk, count), channel)
    assert got == expected


def test_get_ok_frame_parses_back_with_pamqp():
    data = codec.get_ok_frame(3, 8, True, sstr("ex"), sstr("rk"), 17)
    consumed, channel, method = frame.unmarshal(data)
    assert (consumed, channel) == (len(data), 3)
    assert isinstance(method, C.Basic.GetOk)
    assert (method.delivery_tag, method.redelivered, method.exchange, method.routing_key,
            method.message_count) == (8, True, "ex", "rk", 17)


# ---- basic.return -------------------------------------------------------------------------

RETURN_CASES = [
    (1, 312, "NO_ROUTE", "amq.direct", "nowhere"),
    (2, 313, "NO_CONSUMERS", "", "q"),
    (65535, 312, "x" * 255, "ex", ""),
]


@pytest.mark.parametrize("channel,code,text,exchange,rk", RETURN_CASES)
def test_return_frame_equals_pamqp(channel, code, text, exchange, rk):
    got = codec.return_frame(channel, code, text, sstr(exchange), sstr(rk))
    expected = frame.marshal(C.Basic.Return(code, text, exchange, rk), channel)
    assert got == expected


def test_return_frame_parses_back_with_pamqp():
    data = codec.return_frame(1, 312, "NO_ROUTE", sstr("amq.direct"), sstr("k"))
    consumed, channel, method = frame.unmarshal(data)
    assert (consumed, channel) == (len(data), 1)
    assert isinstance(method, C.Basic.Return)
    assert (method.reply_code, method.reply_text, method.exchange, method.routing_key) == (
        312, "NO_ROUTE", "amq.direct", "k")


# ---- basic.ack / basic.nack -------------------------------------------------------------

@pytest.mark.parametrize("channel", [1, 300, 65535])
# pamqp encodes delivery tags as signed long-longs, so the oracle stops at 2**63 - 1
@pytest.mark.parametrize("tag", [0, 1, 255, 2**32, 2**63 - 1])
@pytest.mark.parametrize("multiple", [False, True])
def test_ack_frame_equals_pamqp(channel, tag, multiple):
    assert codec.ack_frame(channel, tag, multiple) == frame.marshal(
        C.Basic.Ack(tag, multiple), channel)


@pytest.mark.parametrize("tag", [0, 1, 2**40 + 3, 2**63 - 1])
@pytest.mark.parametrize("multiple", [False, True])
@pytest.mark.parametrize("requeue", [False, True])
def test_nack_frame_equals_pamqp(tag, multiple, requeue):
    assert codec.nack_frame(7, tag, multiple, requeue) == frame.marshal(
        C.Basic.Nack(tag, multiple, requeue), 7)


def test_nack_frame_requeue_defaults_to_true():
    assert codec.nack_frame(1, 5, False) == frame.marshal(C.Basic.Nack(5, False, True), 1)


def test_ack_frame_literal_bytes():
    assert codec.ack_frame(1, 2, True) == (
        b"\x01\x00\x01\x00\x00\x00\x0d\x00\x3c\x00\x50"
        b"\x00\x00\x00\x00\x00\x00\x00\x02\x01\xce")


def test_nack_frame_parses_back_with_pamqp():
    data = codec.nack_frame(2, 10, True, False)
    consumed, channel, method = frame.unmarshal(data)
    assert (consumed, channel) == (len(data), 2)
    assert isinstance(method, C.Basic.Nack)
    assert (method.delivery_tag, method.multiple, method.requeue) == (10, True, False)


# ---- content frames --------------------------------------------------------------------


def pamqp_content(channel: int, props: C.Basic.Properties, payload: bytes,
                  frame_max: int) -> bytes:
    out = [frame.marshal(header.ContentHeader(0, len(payload), props), channel)]
    limit = frame_max - 8
    for start in range(0, len(payload), limit):
        out.append(frame.marshal(body.ContentBody(payload[start:start + limit]), channel))
    return b"".join(out)


PROPS = [
    C.Basic.Properties(),
    C.Basic.Properties(delivery_mode=2),
    C.Basic.Properties(content_type="text/plain", headers={"a": 1, "b": "x"},
                       delivery_mode=1, priority=5, correlation_id="c1", reply_to="r",
                       expiration="60000", message_id="m", timestamp=None, message_type="t",
                       user_id="guest", app_id="app"),
]


@pytest.mark.parametrize("props", PROPS)
@pytest.mark.parametrize("size", [1, 5, 4087, 4088, 4089, 10000, 8176, 8177])
def test_content_frames_equal_pamqp(props, size):
    payload = bytes(i % 251 for i in range(size))
    got = codec.content_frames(3, props.marshal(), payload, 4096)
    assert got == pamqp_content(3, props, payload, 4096)


def test_content_frames_split_10000_bytes_at_frame_max_4096():
    props = C.Basic.Properties(content_type="application/octet-stream", delivery_mode=2)
    payload = bytes(range(256)) * 39 + bytes(16)  # 10000 bytes
    assert len(payload) == 10000
    data = codec.content_frames(1, props.marshal(), payload, 4096)
    frames = unmarshal_all(data)
    assert [type(obj) for _, obj in frames] == [header.ContentHeader, body.ContentBody,
                                              body.ContentBody, body.ContentBody]
    assert all(ch == 1 for ch, _ in frames)
    hdr = frames[0][1]
    assert hdr.class_id == 60
    assert hdr.weight == 0
    assert hdr.body_size == 10000
    assert hdr.properties.content_type == "application/octet-stream"
    assert hdr.properties.delivery_mode == 2
    sizes = [len(obj.value) for _, obj in frames[1:]]
    assert sizes == [4088, 4088, 1824]
    assert b"".join(obj.value for _, obj in frames[1:]) == payload
    # no frame (7-byte head + payload + end) is larger than frame_max
    pos = 0
    while pos < len(data):
        size = struct.unpack_from(">I", data, pos + 3)[0]
        assert size + 8 <= 4096
        pos += size + 8
    assert data == pamqp_content(1, props, payload, 4096)


def test_content_frames_empty_body_has_no_body_frame():
    props = C.Basic.Properties(delivery_mode=2)
    data = codec.content_frames(1, props.marshal(), b"", 131072)
    assert data == frame.marshal(header.ContentHeader(0, 0, props), 1)
    frames = unmarshal_all(data)
    assert len(frames) == 1
    assert isinstance(frames[0][1], header.ContentHeader)
    assert frames[0][1].body_size == 0


def test_content_frames_empty_body_and_empty_props_literal():
    assert codec.content_frames(2, b"\x00\x00", b"", 131072) == (
        b"\x02\x00\x02\x00\x00\x00\x0e\x00\x3c\x00\x00" + b"\x00" * 8 + b"\x00\x00\xce")


def test_content_frames_body_exactly_frame_max_minus_8_is_one_frame():
    payload = b"z" * (131072 - 8)
    data = codec.content_frames(1, b"\x00\x00", payload, 131072)
    frames = unmarshal_all(data)
    assert len(frames) == 2
    assert frames[1][1].value == payload


def test_content_frames_one_byte_over_limit_gives_two_body_frames():
    payload = b"z" * (131072 - 7)
    frames = unmarshal_all(codec.content_frames(1, b"\x00\x00", payload, 131072))
    assert [len(obj.value) for _, obj in frames[1:]] == [131064, 1]


def test_content_frames_accept_memoryview_compatible_bytes():
    payload = bytearray(b"abc" * 3000)
    data = codec.content_frames(1, b"\x00\x00", bytes(payload), 4096)
    assert b"".join(obj.value for _, obj in unmarshal_all(data)[1:]) == bytes(payload)


# ---- method frames ---------------------------------------------------------------------

# the connection.start properties of the handshake tests, under this file's own cluster name
SERVER_PROPERTIES = dict(HANDSHAKE_SERVER_PROPERTIES, cluster_name="rabbit@vm")

METHODS = [
    C.Connection.Start(0, 9, SERVER_PROPERTIES, "AMQPLAIN PLAIN", "en_US"),
    C.Connection.Start(8, 0, {"product": "x", "capabilities": {}}, "AMQPLAIN PLAIN", "en_US"),
    C.Connection.Tune(2047, 131072, 60),
    C.Connection.OpenOk(),
    C.Connection.Close(320, "CONNECTION_FORCED - broker forced connection closure", 0, 0),
    C.Connection.CloseOk(),
    C.Connection.Blocked("low on memory"),
    C.Channel.OpenOk(),
    C.Channel.Close(406, "PRECONDITION_FAILED - unknown delivery tag 1", 60, 80),
    C.Channel.Close(404, "NOT_FOUND - no queue 'q' in vhost '/'", 50, 10),
    C.Channel.CloseOk(),
    C.Channel.FlowOk(True),
    C.Queue.DeclareOk("q1", 0, 0),
    C.Queue.DeclareOk("amq.gen-JzTY20BRgKO-HjmUJj0wLg", 123456, 7),
    C.Queue.PurgeOk(10),
    C.Queue.DeleteOk(3),
    C.Queue.BindOk(),
    C.Exchange.DeclareOk(),
    C.Basic.ConsumeOk("amq.ctag-abc"),
    C.Basic.ConsumeOk(""),
    C.Basic.CancelOk("ctag"),
    C.Basic.Cancel("ctag", False),
    C.Basic.QosOk(),
    C.Basic.GetEmpty(),
    C.Basic.RecoverOk(),
    C.Confirm.SelectOk(),
    C.Tx.CommitOk(),
    # client-side methods too: bit packing followed by a table, several bits in a row
    C.Queue.Declare(0, "q", False, True, False, True, False, {"x-max-length": 10}),
    C.Exchange.Declare(0, "ex", "topic", True, True, False, True, True,
                       {"alternate-exchange": "ae"}),
    C.Basic.Publish(0, "amq.direct", "rk", True, False),
    C.Basic.Nack(5, True, False),
]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@pytest.mark.parametrize("channel", [0, 1, 65535])
def test_method_frame_equals_pamqp(method, channel):
    assert codec.method_frame(channel, method) == frame.marshal(method, channel)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_marshal_method_is_the_frame_payload(method):
    expected = frame.marshal(method, 0)
    assert codec.marshal_method(method) == expected[7:-1]


def test_connection_start_with_server_properties_parses_back():
    data = codec.method_frame(0, METHODS[0])
    consumed, channel, method = frame.unmarshal(data)
    assert (consumed, channel) == (len(data), 0)
    assert isinstance(method, C.Connection.Start)
    assert (method.version_major, method.version_minor) == (0, 9)
    assert method.server_properties == SERVER_PROPERTIES
    assert method.mechanisms == "AMQPLAIN PLAIN"
    assert method.locales == "en_US"


def test_tune_and_open_ok_payloads_match_rabbitmq():
    # rabbitmq-behaviour.md section 1: tune payload 000a001e 07ff 00020000 003c,
    # open-ok 000a0029 00
    assert codec.marshal_method(C.Connection.Tune(2047, 131072, 60)) == bytes.fromhex(
        "000a001e07ff00020000003c")
    assert codec.marshal_method(C.Connection.OpenOk()) == bytes.fromhex("000a002900")


def test_channel_open_ok_with_empty_channel_id_matches_rabbitmq():
    # RabbitMQ sends channel.open-ok with channel_id = empty longstr; pamqp's constructor
    # insists on "0", so the attribute is set after construction.
    method = C.Channel.OpenOk()
    method.channel_id = ""
    assert codec.marshal_method(method) == bytes.fromhex("0014000b00000000")


def test_channel_close_literal_bytes():
    text = "NOT_FOUND - x"
    payload = (b"\x00\x14\x00\x28" + b"\x01\x94" + bytes((len(text),)) + text.encode()
               + b"\x00\x32\x00\x0a")
    assert codec.method_frame(3, C.Channel.Close(404, text, 50, 10)) == (
        b"\x01\x00\x03" + struct.pack(">I", len(payload)) + payload + b"\xce")


def test_method_frame_accepts_names_pamqp_validation_refuses():
    method = C.Queue.DeclareOk("placeholder", 1, 2)
    method.queue = "ä queue*"  # RabbitMQ accepts it; pamqp's validation does not
    with pytest.raises(ValueError):
        frame.marshal(method, 1)
    data = codec.method_frame(1, method)
    consumed, channel, parsed = frame.unmarshal(data)
    assert (consumed, channel) == (len(data), 1)
    assert isinstance(parsed, C.Queue.DeclareOk)
    assert (parsed.queue, parsed.message_count, parsed.consumer_count) == ("ä queue*", 1, 2)


def test_method_frame_none_table_encodes_as_empty_table():
    method = C.Connection.Start(0, 9, None, "PLAIN", "en_US")
    data = codec.method_frame(0, method)
    _, _, parsed = frame.unmarshal(data)
    assert parsed.server_properties == {}
    # the table is a 4-byte zero length between the version octets and mechanisms
    assert data[7:17] == b"\x00\x0a\x00\x0a\x00\x09\x00\x00\x00\x00"


# ---- small helpers ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "a", "amq.direct", "ключ", "x" * 255])
def test_shortstr_matches_pamqp(value):
    assert codec.shortstr(value) == encode.short_string(value)


@pytest.mark.parametrize("table", [{}, {"a": 1}, SERVER_PROPERTIES,
                                   {"x-death": [{"count": 1, "queue": "q"}]}])
def test_encode_table_matches_pamqp(table):
    assert codec.encode_table(table) == encode.field_table(table)


@pytest.mark.parametrize("data,text", [
    (b"", "<<>>"),
    (b"abc", '<<"abc">>'),
    (b"hello", '<<"hello">>'),
    (b"\x00\x32", "<<0,50>>"),
    (b"\x00\x14\x00\x0a\x01\x30", "<<0,20,0,10,1,48>>"),
    (b'say "hi"', '<<"say \\"hi\\"">>'),
    (b"a\\b", '<<"a\\\\b">>'),
    (b"ab\x7f", "<<97,98,127>>"),
])
def test_erlang_binary(data, text):
    assert codec.erlang_binary(data) == text


@pytest.mark.parametrize("props", PROPS)
@pytest.mark.parametrize("size", [0, 1, 4088, 4089, 10000])
@pytest.mark.parametrize("redelivered", [False, True])
def test_deliver_message_equals_pamqp_deliver_header_and_bodies(props, size, redelivered):
    payload = bytes(i % 251 for i in range(size))
    got = codec.deliver_message(5, sstr("ctag"), 9, redelivered, sstr("ex"), sstr("rk"),
                                props.marshal(), payload, 4096)
    method = frame.marshal(C.Basic.Deliver("ctag", 9, redelivered, "ex", "rk"), 5)
    assert got == method + pamqp_content(5, props, payload, 4096)
