"""ConnectionMachine driven with literal bytes; expected answers from rabbitmq-behaviour.md.

Client frames are built with struct (or pamqp.frame.marshal where the bytes are uninteresting);
assertions are on the exact bytes the machine queues and the exact events it yields.
Section numbers refer to /work/shared/rabbitmq-behaviour.md.
"""

from __future__ import annotations

import struct

import pytest
from pamqp import commands as C
from pamqp import encode, frame

from protocol import errors
from protocol.connection import ConnectionMachine, State
from protocol.events import (
    CloseTransport,
    Fault,
    LoginAttempt,
    Method,
    OpenVhost,
    PeerClosed,
    Publish,
)

# ---- literal frames ----------------------------------------------------------------------

HEADER = b"AMQP\x00\x00\x09\x01"
# connection.tune 2047 / 131072 / 60 (section 1: payload 000a001e 07ff 00020000 003c)
TUNE = b"\x01\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x1e\x07\xff\x00\x02\x00\x00\x00\x3c\xce"
# connection.open-ok, known_hosts "" (section 1: payload 000a0029 00)
OPEN_OK = b"\x01\x00\x00\x00\x00\x00\x05\x00\x0a\x00\x29\x00\xce"
CONNECTION_CLOSE_OK = b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x33\xce"
HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"

SERVER_PROPERTIES = {
    "capabilities": {
        "publisher_confirms": True,
        "exchange_exchange_bindings": True,
        "basic.nack": True,
        "consumer_cancel_notify": True,
        "connection.blocked": True,
        "consumer_priorities": True,
        "authentication_failure_close": True,
        "per_consumer_qos": True,
        "direct_reply_to": True,
    },
    "cluster_name": "rabbit@test",
    "copyright": "Copyright (c) 2007-2022 VMware, Inc. or its affiliates.",
    "information": "Licensed under the MPL 2.0. Website: https://rabbitmq.com",
    "platform": "Erlang/OTP 25.2.3",
    "product": "RabbitMQ",
    "version": "3.10.8",
}


def raw_frame(ftype: int, channel: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + end


def sstr(value: str) -> bytes:
    raw = value.encode()
    return bytes((len(raw),)) + raw


def lstr(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def method_frame(channel: int, payload: bytes) -> bytes:
    return raw_frame(1, channel, payload)


def channel_open(channel: int) -> bytes:
    # channel.open with out_of_band "0", as pamqp and most clients send it
    return method_frame(channel, b"\x00\x14\x00\x0a\x01\x30")


def channel_close(channel: int, code: int = 200, text: str = "bye") -> bytes:
    return method_frame(channel, b"\x00\x14\x00\x28" + struct.pack(">H", code) + sstr(text)
                        + b"\x00\x00\x00\x00")


def channel_close_ok(channel: int) -> bytes:
    return method_frame(channel, b"\x00\x14\x00\x29")


def queue_declare(channel: int, queue: str = "q") -> bytes:
    # ticket 0, queue, bits 0, arguments {}
    return method_frame(channel, b"\x00\x32\x00\x0a\x00\x00" + sstr(queue) + b"\x00"
                        + b"\x00\x00\x00\x00")


def publish(channel: int, exchange: str = "", routing_key: str = "q",
            mandatory: bool = False, immediate: bool = False) -> bytes:
    bits = int(mandatory) | int(immediate) << 1
    return method_frame(channel, b"\x00\x3c\x00\x28\x00\x00" + sstr(exchange)
                        + sstr(routing_key) + bytes((bits,)))


def content_header(channel: int, size: int, props: bytes = b"\x00\x00",
                   class_id: int = 60) -> bytes:
    return raw_frame(2, channel, struct.pack(">HHQ", class_id, 0, size) + props)


def body(channel: int, data: bytes) -> bytes:
    return raw_frame(3, channel, data)


def start_ok(mechanism: str, response: bytes, client_properties: dict | None = None,
             locale: str = "en_US") -> bytes:
    payload = (b"\x00\x0a\x00\x0b" + encode.field_table(client_properties or {})
               + sstr(mechanism) + lstr(response) + sstr(locale))
    return method_frame(0, payload)


def tune_ok(channel_max: int = 2047, frame_max: int = 131072, heartbeat: int = 60) -> bytes:
    return method_frame(0, b"\x00\x0a\x00\x1f" + struct.pack(">HIH", channel_max, frame_max,
                                                              heartbeat))


def connection_open(vhost: str = "/") -> bytes:
    return method_frame(0, b"\x00\x0a\x00\x28" + sstr(vhost) + b"\x00\x00")


def connection_close(code: int = 200, text: str = "Goodbye") -> bytes:
    return method_frame(0, b"\x00\x0a\x00\x32" + struct.pack(">H", code) + sstr(text)
                        + b"\x00\x00\x00\x00")


def connection_close_ok() -> bytes:
    return method_frame(0, b"\x00\x0a\x00\x33")


def channel_close_ok_bytes(channel: int) -> bytes:
    return b"\x01" + struct.pack(">H", channel) + b"\x00\x00\x00\x04\x00\x14\x00\x29\xce"


PLAIN_GUEST = start_ok("PLAIN", b"\x00guest\x00guest")


# ---- driving helpers ---------------------------------------------------------------------


def feed(machine: ConnectionMachine, data: bytes, now: float = 0.0) -> list:
    machine.receive_data(data, now)
    return list(machine.events())


def feed_bytewise(machine: ConnectionMachine, data: bytes) -> list:
    events: list = []
    for i in range(len(data)):
        events += feed(machine, data[i:i + 1])
    return events


def new_machine(**kwargs) -> ConnectionMachine:
    return ConnectionMachine(dict(SERVER_PROPERTIES), **kwargs)


def open_machine(channel_max: int = 2047, frame_max: int = 131072,
                 heartbeat: int = 60) -> ConnectionMachine:
    """A machine taken through the whole handshake, with nothing queued."""
    m = new_machine()
    assert feed(m, HEADER) == []
    assert m.data_to_send()[7:13] == b"\x00\x0a\x00\x0a\x00\x09"  # connection.start 0-9
    events = feed(m, PLAIN_GUEST)
    assert len(events) == 1 and isinstance(events[0], LoginAttempt)
    m.accept_login()
    assert m.data_to_send() == TUNE
    assert feed(m, tune_ok(channel_max, frame_max, heartbeat)) == []
    assert feed(m, connection_open("/")) == [OpenVhost("/")]
    m.open_ok()
    assert m.data_to_send() == OPEN_OK
    assert m.is_open
    return m


def open_channel(machine: ConnectionMachine, channel: int) -> None:
    events = feed(machine, channel_open(channel))
    assert len(events) == 1, events
    assert isinstance(events[0], Method)
    assert events[0].channel == channel
    assert isinstance(events[0].method, C.Channel.Open)


def single_fault(events: list) -> errors.AMQPError:
    assert len(events) == 1, events
    assert isinstance(events[0], Fault), events
    return events[0].error


def assert_fault(events: list, code: int, reply_text: str, class_id: int = 0,
                 method_id: int = 0) -> errors.AMQPError:
    err = single_fault(events)
    assert isinstance(err, errors.AMQPError)
    assert (err.code, err.reply_text, err.class_id, err.method_id) == (
        code, reply_text, class_id, method_id)
    assert err.connection_scope
    return err


def parse_one(data: bytes):
    consumed, channel, obj = frame.unmarshal(data)
    assert consumed == len(data), "more than one frame queued"
    return channel, obj


# ======================================================================================
# Section 1: handshake
# ======================================================================================


def test_good_header_sends_connection_start():
    m = new_machine()
    assert feed(m, HEADER) == []
    data = m.data_to_send()
    assert data == frame.marshal(
        C.Connection.Start(0, 9, SERVER_PROPERTIES, "AMQPLAIN PLAIN", "en_US"), 0)
    assert data[:7] == b"\x01\x00\x00" + struct.pack(">I", len(data) - 8)
    assert data[7:13] == b"\x00\x0a\x00\x0a\x00\x09"
    assert data[-1:] == b"\xce"
    channel, start = parse_one(data)
    assert channel == 0
    assert isinstance(start, C.Connection.Start)
    assert (start.version_major, start.version_minor) == (0, 9)
    assert start.mechanisms == "AMQPLAIN PLAIN"
    assert start.locales == "en_US"
    assert start.server_properties == SERVER_PROPERTIES
    assert m.state is State.AWAIT_START_OK


def test_old_0_9_header_is_accepted_with_full_capabilities():
    m = new_machine()
    assert feed(m, b"AMQP\x01\x01\x00\x09") == []
    _, start = parse_one(m.data_to_send())
    assert isinstance(start, C.Connection.Start)
    assert (start.version_major, start.version_minor) == (0, 9)
    assert start.server_properties["capabilities"] == SERVER_PROPERTIES["capabilities"]


def test_0_8_header_gets_version_8_0_and_empty_capabilities():
    m = new_machine()
    assert feed(m, b"AMQP\x01\x01\x08\x00") == []
    data = m.data_to_send()
    channel, start = parse_one(data)
    assert channel == 0
    assert isinstance(start, C.Connection.Start)
    assert (start.version_major, start.version_minor) == (8, 0)
    assert start.server_properties["capabilities"] == {}
    assert start.server_properties["product"] == "RabbitMQ"
    assert start.mechanisms == "AMQPLAIN PLAIN"
    assert start.locales == "en_US"
    expected_props = dict(SERVER_PROPERTIES, capabilities={})
    assert data == frame.marshal(
        C.Connection.Start(8, 0, expected_props, "AMQPLAIN PLAIN", "en_US"), 0)
    # the server_properties given to the machine are not mutated
    assert SERVER_PROPERTIES["capabilities"]["publisher_confirms"] is True


BAD_HEADERS = [
    b"AMQP\x00\x00\x09\x00",
    b"AMQP\x00\x00\x09\x02",
    b"AMQP\x01\x01\x00\x0a",
    b"AMQP\x00\x01\x00\x00",
    b"AMQP\x03\x01\x00\x00",
    b"amqp\x00\x00\x09\x01",
    b"XXXXXXXX",
    b"GET / HTTP/1.1\r\n",
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
]


@pytest.mark.parametrize("bad", BAD_HEADERS)
def test_bad_header_gets_amqp_0_9_1_header_and_immediate_close(bad):
    m = new_machine()
    events = feed(m, bad)
    assert m.data_to_send() == b"AMQP\x00\x00\x09\x01"
    assert len(events) == 1
    assert isinstance(events[0], CloseTransport)
    assert events[0].delay == 0.0
    assert m.state is State.CLOSED
    # nothing more, whatever follows
    assert feed(m, PLAIN_GUEST) == []
    assert m.data_to_send() == b""


def test_header_split_across_two_receive_data_calls():
    m = new_machine()
    assert feed(m, b"AMQP") == []
    assert m.data_to_send() == b""
    assert m.state is State.AWAIT_HEADER
    assert feed(m, b"\x00\x00\x09\x01") == []
    _, start = parse_one(m.data_to_send())
    assert isinstance(start, C.Connection.Start)
    assert m.state is State.AWAIT_START_OK


def test_header_fed_one_byte_at_a_time():
    m = new_machine()
    for i in range(7):
        assert feed(m, HEADER[i:i + 1]) == []
        assert m.data_to_send() == b""
    assert feed(m, HEADER[7:]) == []
    _, start = parse_one(m.data_to_send())
    assert isinstance(start, C.Connection.Start)


def test_only_amqp_sends_nothing_and_does_not_close():
    m = new_machine()
    assert feed(m, b"AMQP") == []
    assert m.data_to_send() == b""
    assert m.state is State.AWAIT_HEADER


def test_header_and_start_ok_in_one_buffer():
    m = new_machine()
    events = feed(m, HEADER + PLAIN_GUEST)
    assert events == [LoginAttempt("PLAIN", "guest", "guest", {})]
    _, start = parse_one(m.data_to_send())
    assert isinstance(start, C.Connection.Start)


def _after_start() -> ConnectionMachine:
    m = new_machine()
    assert feed(m, HEADER) == []
    m.data_to_send()
    return m


def test_plain_start_ok_gives_login_attempt():
    m = _after_start()
    client_props = {"product": "pika", "capabilities": {"authentication_failure_close": True,
                                                         "basic.nack": True}}
    events = feed(m, start_ok("PLAIN", b"\x00alice\x00s3cret", client_props))
    assert events == [LoginAttempt("PLAIN", "alice", "s3cret", client_props)]
    assert m.mechanism == "PLAIN"
    assert m.client_capability("authentication_failure_close") is True
    assert m.client_capability("connection.blocked") is False
    assert m.data_to_send() == b""  # nothing until the session answers


def test_amqplain_start_ok_gives_login_attempt():
    m = _after_start()
    # AMQPLAIN response = a field table without its 4-byte length prefix
    response = (sstr("LOGIN") + b"S" + lstr(b"bob") + sstr("PASSWORD") + b"S" + lstr(b"pw!"))
    events = feed(m, start_ok("AMQPLAIN", response))
    assert events == [LoginAttempt("AMQPLAIN", "bob", "pw!", {})]
    assert m.mechanism == "AMQPLAIN"


@pytest.mark.parametrize("user,password", [
    ("jürgen", "päss"),      # characters inside latin-1
    ("jürgen", "päss€"),     # a character outside latin-1
])
@pytest.mark.parametrize("mechanism", ["PLAIN", "AMQPLAIN"])
def test_start_ok_with_utf8_credentials(mechanism, user, password):
    # credentials are UTF-8 binaries; non-ASCII names and passwords must reach the session
    m = _after_start()
    u, p = user.encode(), password.encode()
    if mechanism == "PLAIN":
        response = b"\x00" + u + b"\x00" + p
    else:
        response = sstr("LOGIN") + b"S" + lstr(u) + sstr("PASSWORD") + b"S" + lstr(p)
    events = feed(m, start_ok(mechanism, response))
    assert events == [LoginAttempt(mechanism, user, password, {})]


def test_start_ok_with_unknown_locale_is_accepted():
    m = _after_start()
    events = feed(m, start_ok("PLAIN", b"\x00guest\x00guest", locale="xx_XX"))
    assert events == [LoginAttempt("PLAIN", "guest", "guest", {})]


@pytest.mark.parametrize("mechanism,response", [
    ("FOO", b"\x00guest\x00guest"),          # unknown mechanism
    ("PLAIN", b"garbage"),                   # PLAIN without NULs
    ("AMQPLAIN", b"\x00guest\x00guest"),     # AMQPLAIN with a PLAIN-style response
])
def test_bad_start_ok_is_a_silent_close_after_3s(mechanism, response):
    m = _after_start()
    events = feed(m, start_ok(mechanism, response))
    assert len(events) == 1 and isinstance(events[0], CloseTransport), events
    assert events[0].delay == 3.0
    assert m.data_to_send() == b""


def test_accept_login_sends_tune():
    m = _after_start()
    feed(m, PLAIN_GUEST)
    m.accept_login()
    data = m.data_to_send()
    assert data == TUNE
    channel, tune = parse_one(data)
    assert channel == 0
    assert isinstance(tune, C.Connection.Tune)
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (2047, 131072, 60)
    assert m.state is State.AWAIT_TUNE_OK


def _after_login() -> ConnectionMachine:
    m = _after_start()
    feed(m, PLAIN_GUEST)
    m.accept_login()
    assert m.data_to_send() == TUNE
    return m


@pytest.mark.parametrize("channel_max,frame_max,heartbeat", [
    (2047, 1024, 60),
    (2047, 4095, 60),
    (2047, 0, 60),
    (2047, 262144, 60),
    (0, 131072, 60),
    (4000, 131072, 60),
])
def test_bad_tune_ok_is_a_silent_close_after_3s(channel_max, frame_max, heartbeat):
    m = _after_login()
    events = feed(m, tune_ok(channel_max, frame_max, heartbeat))
    assert len(events) == 1 and isinstance(events[0], CloseTransport), events
    assert events[0].delay == 3.0
    assert m.data_to_send() == b""
    assert m.state is State.CLOSED


@pytest.mark.parametrize("channel_max,frame_max,heartbeat", [
    (2047, 4096, 60),
    (2047, 131072, 5),
    (2047, 131072, 600),
    (2047, 131072, 0),
    (1, 131072, 60),
])
def test_acceptable_tune_ok(channel_max, frame_max, heartbeat):
    m = _after_login()
    assert feed(m, tune_ok(channel_max, frame_max, heartbeat)) == []
    assert m.data_to_send() == b""
    assert (m.channel_max, m.frame_max, m.heartbeat) == (channel_max, frame_max, heartbeat)
    assert feed(m, connection_open("/")) == [OpenVhost("/")]


def test_connection_open_instead_of_tune_ok_is_a_silent_close_after_3s():
    m = _after_login()
    events = feed(m, connection_open("/"))
    assert len(events) == 1 and isinstance(events[0], CloseTransport), events
    assert events[0].delay == 3.0
    assert m.data_to_send() == b""


def test_open_gives_open_vhost_and_open_ok_sends_open_ok():
    m = _after_login()
    assert feed(m, tune_ok()) == []
    assert feed(m, connection_open("my-vhost")) == [OpenVhost("my-vhost")]
    assert m.data_to_send() == b""
    assert not m.is_open
    m.open_ok()
    data = m.data_to_send()
    assert data == OPEN_OK
    channel, open_ok = parse_one(data)
    assert channel == 0 and isinstance(open_ok, C.Connection.OpenOk)
    assert m.is_open


def test_empty_vhost_is_passed_through():
    m = _after_login()
    feed(m, tune_ok())
    assert feed(m, connection_open("")) == [OpenVhost("")]


def test_pipelined_handshake_sees_session_answers_between_events():
    # events() parses lazily: answering an event before asking for the next one lets a
    # pipelined channel.open see the connection as open.
    m = new_machine()
    m.receive_data(HEADER + PLAIN_GUEST, 0.0)
    got = []
    for event in m.events():
        got.append(event)
        if isinstance(event, LoginAttempt):
            m.accept_login()
    assert got == [LoginAttempt("PLAIN", "guest", "guest", {})]
    assert m.data_to_send().endswith(TUNE)
    m.receive_data(tune_ok() + connection_open("/") + channel_open(1), 0.0)
    got = []
    for event in m.events():
        got.append(event)
        if isinstance(event, OpenVhost):
            m.open_ok()
    assert got[0] == OpenVhost("/")
    assert len(got) == 2
    assert isinstance(got[1], Method) and isinstance(got[1].method, C.Channel.Open)
    assert got[1].channel == 1
    assert m.data_to_send() == OPEN_OK


def test_channel_open_before_connection_open_is_505():
    m = _after_login()
    assert feed(m, tune_ok()) == []
    events = feed(m, channel_open(1))
    assert_fault(events, 505, "UNEXPECTED_FRAME - type 1, all octets = <<0,20,0,10,1,48>>")
    assert m.data_to_send() == b""


def test_connection_open_again_after_open_ok_is_504():
    m = open_machine()
    events = feed(m, connection_open("/"))
    assert_fault(events, 504, "CHANNEL_ERROR - unexpected method in connection state running",
                 10, 40)


def test_client_heartbeat_on_channel_0_gets_no_reply():
    m = open_machine()
    assert feed(m, HEARTBEAT) == []
    assert m.data_to_send() == b""
    assert m.is_open


def test_peer_timeout_is_three_heartbeat_intervals():
    m = open_machine(heartbeat=2)
    feed(m, HEARTBEAT, now=100.0)
    assert m.last_received == 100.0
    assert not m.peer_timed_out(105.9)
    assert m.peer_timed_out(106.1)
    feed(m, HEARTBEAT, now=106.0)
    assert not m.peer_timed_out(106.1)


def test_heartbeat_0_never_times_out():
    m = open_machine(heartbeat=0)
    assert not m.peer_timed_out(10_000.0)


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
# Section 8: frame-level errors
# ======================================================================================


@pytest.mark.parametrize("data,ids", [
    (queue_declare(0), (50, 10)),
    (publish(0), (60, 40)),
    (channel_open(0), (20, 10)),
    (channel_close(0), (20, 40)),
    (method_frame(0, b"\x00\x3c\x00\x0a\x00\x00\x00\x00\x00\x0a\x00"), (60, 10)),  # basic.qos
])
def test_channel_method_on_channel_0_is_504(data, ids):
    m = open_machine()
    assert_fault(feed(m, data), 504,
                 "CHANNEL_ERROR - unexpected method in connection state running", *ids)


def test_content_header_without_publish_is_505():
    m = open_machine()
    open_channel(m, 1)
    assert_fault(feed(m, content_header(1, 5)), 505,
                 "UNEXPECTED_FRAME - expected method frame, got non method frame instead")


def test_body_without_publish_is_505():
    m = open_machine()
    open_channel(m, 1)
    assert_fault(feed(m, body(1, b"hello")), 505,
                 "UNEXPECTED_FRAME - expected method frame, got non method frame instead")


def test_content_header_on_channel_0_is_505():
    m = open_machine()
    assert_fault(feed(m, content_header(0, 5)), 505,
                 "UNEXPECTED_FRAME - type 2, all octets = <<0,60,0,0,0,0,0,0,0,0,0,5,0,0>>")


def test_body_on_channel_0_is_505():
    m = open_machine()
    assert_fault(feed(m, body(0, b"hello")), 505,
                 'UNEXPECTED_FRAME - type 3, all octets = <<"hello">>')


def test_publish_then_method_is_505_expected_content_header():
    m = open_machine()
    open_channel(m, 1)
    assert feed(m, publish(1)) == []
    assert_fault(feed(m, queue_declare(1)), 505,
                 "UNEXPECTED_FRAME - expected content header for class 60, got non content "
                 "header frame instead", 60, 40)


def test_publish_and_header_then_method_is_505_expected_content_body():
    m = open_machine()
    open_channel(m, 1)
    assert feed(m, publish(1) + content_header(1, 10)) == []
    assert_fault(feed(m, queue_declare(1)), 505,
                 "UNEXPECTED_FRAME - expected content body, got non content body frame instead",
                 60, 40)


def test_header_with_class_50_is_505():
    m = open_machine()
    open_channel(m, 1)
    assert feed(m, publish(1)) == []
    assert_fault(feed(m, content_header(1, 5, class_id=50)), 505,
                 "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 "
                 "instead", 60, 40)


@pytest.mark.parametrize("bodies", [[b"x" * 10], [b"abc", b"def"]])
def test_body_longer_than_size_waits_then_method_is_505(bodies):
    m = open_machine()
    open_channel(m, 1)
    data = publish(1) + content_header(1, 5) + b"".join(body(1, b) for b in bodies)
    assert feed(m, data) == []
    assert m.data_to_send() == b""
    assert_fault(feed(m, queue_declare(1)), 505,
                 "UNEXPECTED_FRAME - expected content body, got non content body frame instead",
                 60, 40)


def test_size_0_header_then_empty_body_frame_is_505():
    m = open_machine()
    open_channel(m, 1)
    events = feed(m, publish(1) + content_header(1, 0))
    assert len(events) == 1 and isinstance(events[0], Publish)
    assert_fault(feed(m, body(1, b"")), 505,
                 "UNEXPECTED_FRAME - expected method frame, got non method frame instead")


@pytest.mark.parametrize("size", [131073, 200000])
def test_oversize_body_frame_is_frame_too_large(size):
    m = open_machine()
    open_channel(m, 1)
    assert feed(m, publish(1) + content_header(1, size)) == []
    assert_fault(feed(m, body(1, b"b" * size)), 501,
                 f"FRAME_ERROR - type 3, all octets = <<>>: {{frame_too_large,{size},131064}}")


def test_oversize_body_with_frame_max_4096_quotes_4088():
    m = open_machine(frame_max=4096)
    open_channel(m, 1)
    assert feed(m, publish(1) + content_header(1, 5000)) == []
    assert_fault(feed(m, body(1, b"b" * 5000)), 501,
                 "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,5000,4088}")


def test_oversize_method_frame_is_frame_too_large():
    m = open_machine()
    open_channel(m, 1)
    payload = b"\x00\x32\x00\x0a" + b"\x00" * (200035 - 4)
    assert_fault(feed(m, method_frame(1, payload)), 501,
                 "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,200035,131064}")


@pytest.mark.parametrize("size", [131064, 131065, 131072])
def test_body_payload_up_to_frame_max_is_accepted(size):
    m = open_machine()
    open_channel(m, 1)
    data = b"".join(bytes((i % 256,)) for i in range(256)) * (size // 256 + 1)
    data = data[:size]
    events = feed(m, publish(1) + content_header(1, size) + body(1, data))
    assert len(events) == 1 and isinstance(events[0], Publish)
    assert events[0].body == data


@pytest.mark.parametrize("ftype", [9, 4, 0])
def test_unknown_frame_type_is_501(ftype):
    m = open_machine()
    assert_fault(feed(m, raw_frame(ftype, 0, b"abc")), 501,
                 f'FRAME_ERROR - type {ftype}, all octets = <<"abc">>: unknown_frame')


def test_method_frame_with_bad_end_byte_is_501():
    m = open_machine()
    open_channel(m, 1)
    payload = b"\x00\x32\x00\x0a\x00\x00\x00\x00\x00\x00\x00\x00"  # queue.declare, all zero
    events = feed(m, raw_frame(1, 1, payload, end=b"\x00"))
    # RabbitMQ's pretty printer breaks the term: newline + 53 spaces (section 8)
    assert_fault(events, 501,
                 "FRAME_ERROR - type 1, all octets = <<0,50,0,10,0,0,0,0,0,0,0,0>>: "
                 "{invalid_frame_end_marker,\n" + " " * 53 + "0}")


def test_heartbeat_with_bad_end_byte_is_501():
    m = open_machine()
    assert_fault(feed(m, b"\x08\x00\x00\x00\x00\x00\x00\xff"), 501,
                 "FRAME_ERROR - type 8, all octets = <<>>: {invalid_frame_end_marker,255}")


def test_heartbeat_on_channel_1_is_505():
    m = open_machine()
    open_channel(m, 1)
    assert_fault(feed(m, raw_frame(8, 1, b"")), 505, "UNEXPECTED_FRAME - type 8, all octets = <<>>")


def test_heartbeat_with_payload_is_501():
    m = open_machine()
    assert_fault(feed(m, raw_frame(8, 0, b"abc")), 501,
                 'FRAME_ERROR - type 8, all octets = <<"abc">>: unknown_frame')


def test_method_frame_of_two_bytes_is_501():
    m = open_machine()
    open_channel(m, 1)
    assert_fault(feed(m, method_frame(1, b"\x00\x32")), 501,
                 "FRAME_ERROR - type 1, all octets = <<0,50>>: unknown_frame")


def test_queue_declare_with_truncated_arguments_is_501():
    m = open_machine()
    open_channel(m, 1)
    assert_fault(feed(m, method_frame(1, b"\x00\x32\x00\x0a\x00\x00\x05ab")), 501,
                 "FRAME_ERROR - cannot decode <<0,0,5,97,98>>", 50, 10)


def test_queue_declare_with_trailing_junk_is_501():
    m = open_machine()
    open_channel(m, 1)
    args = b"\x00\x00" + sstr("q") + b"\x00" + b"\x00\x00\x00\x00" + b"junk"
    expected = "<<" + ",".join(str(b) for b in args) + ">>"
    assert_fault(feed(m, method_frame(1, b"\x00\x32\x00\x0a" + args)), 501,
                 f"FRAME_ERROR - cannot decode {expected}", 50, 10)


@pytest.mark.parametrize("index", [b"\x00\x3c\x03\xe7", b"\x00\x63\x00\x0a"])  # 60/999, 99/10
def test_unknown_method_is_an_immediate_silent_close(index):
    m = open_machine()
    open_channel(m, 1)
    events = feed(m, method_frame(1, index + b"\x00\x00"))
    assert len(events) == 1 and isinstance(events[0], CloseTransport), events
    assert events[0].delay == 0.0
    assert m.data_to_send() == b""


def test_field_table_with_unknown_type_tag_is_an_immediate_silent_close():
    m = open_machine()
    open_channel(m, 1)
    table = sstr("a") + b"Z" + b"xxx"
    payload = (b"\x00\x32\x00\x0a\x00\x00" + sstr("q") + b"\x00"
               + struct.pack(">I", len(table)) + table)
    events = feed(m, method_frame(1, payload))
    assert len(events) == 1 and isinstance(events[0], CloseTransport), events
    assert events[0].delay == 0.0
    assert m.data_to_send() == b""


def test_fault_then_close_connection_sends_the_close_frame():
    m = open_machine()
    open_channel(m, 1)
    feed(m, publish(1))
    err = single_fault(feed(m, queue_declare(1)))
    m.close_connection(err)
    data = m.data_to_send()
    assert data == frame.marshal(C.Connection.Close(505, err.reply_text, 60, 40), 0)
    channel, close = parse_one(data)
    assert channel == 0
    assert (close.reply_code, close.class_id, close.method_id) == (505, 60, 40)
    assert close.reply_text.startswith("UNEXPECTED_FRAME - expected content header")
    events = feed(m, connection_close_ok())
    assert len(events) == 1 and isinstance(events[0], CloseTransport)
    assert m.state is State.CLOSED


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


# ======================================================================================
# Close handshakes
# ======================================================================================


def test_client_connection_close():
    m = open_machine()
    open_channel(m, 1)
    events = feed(m, connection_close(200, "Goodbye"))
    assert events == [PeerClosed(200, "Goodbye")]
    assert m.data_to_send() == CONNECTION_CLOSE_OK
    assert m.state is State.CLOSED
    assert feed(m, queue_declare(1)) == []
    assert m.data_to_send() == b""


def test_close_connection_then_client_close_ok():
    m = open_machine()
    open_channel(m, 1)
    err = errors.ConnectionForced("broker forced connection closure with reason 'shutdown'")
    m.close_connection(err)
    data = m.data_to_send()
    assert data == frame.marshal(C.Connection.Close(
        320, "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
        0, 0), 0)
    # a second close_connection does not queue a second frame
    m.close_connection(errors.InternalError("again"))
    assert m.data_to_send() == b""
    # client methods are ignored while waiting for close-ok
    assert feed(m, queue_declare(1) + channel_open(2) + HEARTBEAT) == []
    assert m.data_to_send() == b""
    events = feed(m, connection_close_ok())
    assert len(events) == 1 and isinstance(events[0], CloseTransport)
    assert m.state is State.CLOSED
    assert m.data_to_send() == b""


def test_content_frames_are_ignored_while_waiting_for_close_ok():
    m = open_machine()
    open_channel(m, 1)
    m.close_connection(errors.ConnectionForced("bye"))
    m.data_to_send()
    events = feed(m, publish(1) + content_header(1, 3) + body(1, b"abc"))
    assert events == []
    assert m.data_to_send() == b""
    events = feed(m, connection_close_ok())
    assert len(events) == 1 and isinstance(events[0], CloseTransport)


def test_close_ok_after_ignored_content_in_the_same_buffer_still_closes():
    m = open_machine()
    open_channel(m, 1)
    m.close_connection(errors.ConnectionForced("bye"))
    m.data_to_send()
    events = feed(m, publish(1) + content_header(1, 3) + body(1, b"abc")
                  + connection_close_ok())
    assert len(events) == 1 and isinstance(events[0], CloseTransport), events
    assert m.state is State.CLOSED


def test_close_connection_crossed_by_client_close():
    m = open_machine()
    m.close_connection(errors.ConnectionForced("bye"))
    m.data_to_send()
    events = feed(m, connection_close(200, "me too"))
    assert len(events) == 1 and isinstance(events[0], CloseTransport)
    assert m.data_to_send() == CONNECTION_CLOSE_OK


def test_close_channel_drops_methods_until_close_ok():
    m = open_machine()
    open_channel(m, 1)
    open_channel(m, 2)
    err = errors.PreconditionFailed("unknown delivery tag 1", 60, 80)
    m.close_channel(1, err)
    data = m.data_to_send()
    assert data == frame.marshal(
        C.Channel.Close(406, "PRECONDITION_FAILED - unknown delivery tag 1", 60, 80), 1)
    assert not m.channel_usable(1)
    # everything on channel 1 is dropped, content included
    dropped = (queue_declare(1) + publish(1) + content_header(1, 3) + body(1, b"abc")
               + channel_open(1) + HEARTBEAT)
    assert feed(m, dropped) == []
    assert m.data_to_send() == b""
    # other channels keep working
    events = feed(m, queue_declare(2, "still-works"))
    assert len(events) == 1 and events[0].channel == 2
    # close-ok frees the number; channel.open works again
    assert feed(m, channel_close_ok(1)) == []
    assert m.data_to_send() == b""
    open_channel(m, 1)
    assert m.channel_usable(1)


def test_close_channel_crossed_by_client_channel_close():
    m = open_machine()
    open_channel(m, 1)
    m.close_channel(1, errors.NotFound("no queue 'q' in vhost '/'", 50, 10))
    m.data_to_send()
    assert feed(m, channel_close(1)) == []
    assert m.data_to_send() == channel_close_ok_bytes(1)
    assert feed(m, channel_close_ok(1)) == []
    open_channel(m, 1)


def test_method_after_server_close_and_close_ok_without_open_is_504():
    m = open_machine()
    open_channel(m, 1)
    m.close_channel(1, errors.NotFound("no exchange 'x' in vhost '/'", 60, 40))
    m.data_to_send()
    assert feed(m, channel_close_ok(1)) == []
    assert_fault(feed(m, queue_declare(1)), 504, "CHANNEL_ERROR - expected 'channel.open'",
                 50, 10)


def test_close_channel_discards_a_half_received_message():
    m = open_machine()
    open_channel(m, 1)
    assert feed(m, publish(1) + content_header(1, 10) + body(1, b"12345")) == []
    m.close_channel(1, errors.PreconditionFailed("x"))
    m.data_to_send()
    assert feed(m, body(1, b"67890")) == []
    assert feed(m, channel_close_ok(1)) == []
    open_channel(m, 1)
    events = feed(m, publish(1, "", "fresh") + content_header(1, 2) + body(1, b"ok"))
    assert events == [Publish(1, "", "fresh", False, False, b"\x00\x00", b"ok")]


def test_close_channel_reply_text_is_truncated_to_255_bytes():
    m = open_machine()
    open_channel(m, 1)
    m.close_channel(1, errors.PreconditionFailed("x" * 400))
    _, close = parse_one(m.data_to_send())
    assert len(close.reply_text) == 255
    assert close.reply_text.startswith("PRECONDITION_FAILED - xxx")
