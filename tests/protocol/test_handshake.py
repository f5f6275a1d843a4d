"""ConnectionMachine, section 1: protocol header, start-ok, tune-ok, open, heartbeats.

Literal client bytes in, exact bytes and events out; frames_helpers.py builds them.
"""

from __future__ import annotations

import struct

import pytest
from frames_helpers import (
    HEADER,
    HEARTBEAT,
    OPEN_OK,
    PLAIN_GUEST,
    SERVER_PROPERTIES,
    TUNE,
    assert_fault,
    channel_open,
    connection_open,
    feed,
    lstr,
    new_machine,
    open_machine,
    parse_one,
    sstr,
    start_ok,
    tune_ok,
)
from pamqp import commands as C
from pamqp import frame

from protocol.connection import ConnectionMachine, State
from protocol.events import CloseTransport, LoginAttempt, Method, OpenVhost

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
