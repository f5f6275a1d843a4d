"""Connection behaviour: login, vhosts, negotiated limits, heartbeats, protocol headers.

Expected replies are RabbitMQ 3.10's (see rabbitmq-behaviour.md sections 1 and 2).
"""

import re
import time

import aio_pika
import pika
import pytest
from pamqp import commands as C
from pamqp import heartbeat as pheartbeat
from pika_helpers import connect, drain
from raw_client import PROTOCOL_HEADER, RawClient

LOGIN_REFUSED = ("ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
                 "For details see the broker logfile.")
CAPABILITIES = ("publisher_confirms", "exchange_exchange_bindings", "basic.nack",
                "consumer_cancel_notify", "connection.blocked", "consumer_priorities",
                "authentication_failure_close", "per_consumer_qos", "direct_reply_to")


def _url(broker, user="guest", password="guest", vhost=""):  # type: ignore[no-untyped-def]
    return f"amqp://{user}:{password}@127.0.0.1:{broker.port}/{vhost}"


def _assert_refused(exc: BaseException, code: int, text: str) -> None:
    """pika reports a handshake-time close either directly or wrapped in a Probable* error."""
    if isinstance(exc, pika.exceptions.ConnectionClosedByBroker):
        assert (exc.reply_code, exc.reply_text) == (code, text)
    else:
        assert f"({code}) '{text}'" in str(exc), str(exc)


# ---- login and vhost ---------------------------------------------------------------------

def test_login_ok(broker):
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    assert conn.is_open
    ch = conn.channel()
    assert ch.is_open
    assert ch.queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")
    conn.close()
    assert conn.is_closed


@pytest.mark.parametrize("user,password", [("guest", "wrong"), ("nobody", "guest")])
def test_bad_credentials_are_refused_with_403(broker, user, password):
    with pytest.raises((pika.exceptions.ProbableAuthenticationError,
                        pika.exceptions.ConnectionClosedByBroker)) as info:
        pika.BlockingConnection(pika.URLParameters(_url(broker, user, password)))
    _assert_refused(info.value, 403, LOGIN_REFUSED)


def test_bad_password_close_frame_raw(broker):
    raw = RawClient(broker.port)
    raw.start_ok(response="\0guest\0nope",
                 client_properties={"capabilities": {"authentication_failure_close": True}})
    raw.expect_close(403, LOGIN_REFUSED, (0, 0))
    raw.send(0, C.Connection.CloseOk())
    assert raw.recv_frame() is None
    raw.close()


def test_unknown_vhost_is_530(broker):
    with pytest.raises((pika.exceptions.ProbableAccessDeniedError,
                        pika.exceptions.ConnectionClosedByBroker)) as info:
        pika.BlockingConnection(pika.URLParameters(_url(broker, vhost="nope")))
    _assert_refused(info.value, 530, "NOT_ALLOWED - vhost nope not found")


@pytest.mark.parametrize("vhost,text", [("cat-nope", "NOT_ALLOWED - vhost cat-nope not found"),
                                        ("", "NOT_ALLOWED - vhost  not found")])
def test_unknown_vhost_close_frame_raw(broker, vhost, text):
    raw = RawClient(broker.port)
    raw.start_ok(client_properties={})
    raw.tune_ok()
    raw.send(0, C.Connection.Open(virtual_host=vhost))
    raw.expect_close(530, text, (10, 40))
    raw.close()


# ---- negotiation -------------------------------------------------------------------------

def test_server_properties_seen_by_pika(broker):
    conn = connect(broker)
    props = conn._impl.server_properties
    assert props["product"] == "RabbitMQ"
    assert re.fullmatch(r"3\.\d+\.\d+", props["version"]), props["version"]
    caps = props["capabilities"]
    assert {name: caps.get(name) for name in CAPABILITIES} == dict.fromkeys(CAPABILITIES, True)
    conn.close()


def test_negotiated_limits(broker):
    conn = connect(broker)
    assert conn._impl.params.frame_max == 131072
    assert conn._impl.params.channel_max == 2047
    assert conn._impl.params.heartbeat == 60
    conn.close()


def test_start_and_tune_raw(broker):
    raw = RawClient(broker.port)
    start = raw.start_ok(client_properties={})
    assert (start.version_major, start.version_minor) == (0, 9)
    assert start.mechanisms.split() == ["AMQPLAIN", "PLAIN"]
    assert start.locales == "en_US"
    tune = raw.expect(C.Connection.Tune)
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (2047, 131072, 60)
    raw.close()


@pytest.mark.parametrize("header,major,minor", [(b"AMQP\x01\x01\x00\x09", 0, 9),
                                                (b"AMQP\x01\x01\x08\x00", 8, 0)])
def test_old_protocol_headers_are_accepted(broker, header, major, minor):
    raw = RawClient(broker.port)
    raw.send_raw(header)
    start = raw.expect(C.Connection.Start)
    assert (start.version_major, start.version_minor) == (major, minor)
    raw.close()


# ---- heartbeats --------------------------------------------------------------------------

def test_silent_client_is_dropped_and_gets_heartbeats(broker_factory):
    broker = broker_factory(heartbeat=1)
    raw = RawClient(broker.port, timeout=8)
    tune = raw.handshake(heartbeat=1)
    assert tune.heartbeat == 1
    started = time.monotonic()
    frames = []
    while True:
        got = raw.recv_frame()
        if got is None:
            break
        frames.append(got[1])
        assert time.monotonic() - started < 6, "silent client was not dropped"
    elapsed = time.monotonic() - started
    raw.close()
    assert 1.5 <= elapsed <= 5.0, elapsed
    # a silent close: nothing but heartbeat frames, and several of them
    assert all(isinstance(f, pheartbeat.Heartbeat) for f in frames), frames
    assert len(frames) >= 2


def test_client_heartbeats_keep_connection_alive(broker_factory):
    broker = broker_factory(heartbeat=1)
    conn = connect(broker)
    assert conn._impl.params.heartbeat == 1
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    assert conn.is_open
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"still here")
    assert drain(ch, q) == [b"still here"]
    conn.close()


def test_client_heartbeat_frame_gets_no_reply(broker):
    raw = RawClient(broker.port, timeout=1)
    raw.handshake()
    raw.send_raw(pheartbeat.Heartbeat.marshal())
    raw.send(1, C.Channel.Open())
    assert isinstance(raw.expect(C.Channel.OpenOk), C.Channel.OpenOk)
    raw.close()


# ---- closing -----------------------------------------------------------------------------

def test_client_connection_close(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("closing-q")
    conn.close()
    assert conn.is_closed and ch.is_closed
    other = connect(broker)
    assert other.channel().queue_declare("closing-q", passive=True).method.queue == "closing-q"
    other.close()


def test_client_connection_close_raw(broker):
    raw = RawClient(broker.port)
    raw.handshake()
    raw.send(0, C.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
    raw.expect(C.Connection.CloseOk)
    assert raw.recv_frame() is None
    raw.close()


async def test_update_secret(broker):
    conn = await aio_pika.connect(broker.url)
    async with conn:
        ok = await conn.update_secret("guest", reason="rotation")
        assert ok.name == "Connection.UpdateSecretOk"
        ch = await conn.channel()
        q = await ch.declare_queue("", exclusive=True)
        await ch.default_exchange.publish(aio_pika.Message(b"after"), routing_key=q.name)
        msg = await q.get(timeout=3)
        assert msg.body == b"after"


# ---- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("header", [b"AMQP\x00\x00\x09\x02", b"AMQP\x00\x00\x09\x00",
                                    b"AMQP\x01\x01\x00\x0a", b"AMQP\x00\x01\x00\x00",
                                    b"amqp\x00\x00\x09\x01", b"XXXXXXXX",
                                    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"])
def test_bad_protocol_header_gets_ours_then_eof(broker, header):
    raw = RawClient(broker.port)
    raw.send_raw(header)
    assert raw.recv_raw(time.monotonic() + 3) == PROTOCOL_HEADER
    raw.close()


def test_other_clients_unaffected_by_garbage(broker):
    conn = connect(broker)
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    bad_header = RawClient(broker.port)
    bad_header.send_raw(b"\x00\xffgarbage\x01\x02\x03" * 10)
    bad_frames = RawClient(broker.port)
    bad_frames.handshake()
    bad_frames.send_raw(b"\x09\x00\x00\x00\x00\x00\x03abc\xce")
    close = bad_frames.expect(C.Connection.Close)
    assert (close.reply_code, close.reply_text) == (
        501, 'FRAME_ERROR - type 9, all octets = <<"abc">>: unknown_frame')
    assert bad_header.recv_raw(time.monotonic() + 3) == PROTOCOL_HEADER
    for i in range(3):
        ch.basic_publish("", q, b"m%d" % i)
    assert drain(ch, q) == [b"m0", b"m1", b"m2"]
    fresh = connect(broker)
    fresh_ch = fresh.channel()
    fresh_ch.basic_publish("", q, b"from fresh")
    assert drain(ch, q) == [b"from fresh"]
    fresh.close()
    bad_header.close()
    bad_frames.close()
    conn.close()


# ---- when the socket closes after a connection error (section 8) -------------------------

def _socket_closed_within(raw: RawClient, seconds: float) -> bool:
    raw.sock.settimeout(seconds)
    try:
        return raw.sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_close_ok_after_frame_too_large_is_not_read(broker):
    """RabbitMQ stops reading after frame_too_large: the socket closes 3 s after the close
    frame, close-ok or not. After an unknown frame type it reads the close-ok and closes."""
    raw = RawClient.open(broker.port)
    raw.send_raw(b"\x03\x00\x01" + (131073).to_bytes(4, "big"))  # judged by its header
    raw.expect(C.Connection.Close)
    raw.send(0, C.Connection.CloseOk())
    started = time.monotonic()
    assert not _socket_closed_within(raw, 1.5)
    assert _socket_closed_within(raw, 5)
    assert 2.5 < time.monotonic() - started < 5
    raw.close()
    raw = RawClient.open(broker.port)
    raw.send_raw(b"\x09\x00\x00\x00\x00\x00\x03abc\xce")
    raw.expect(C.Connection.Close)
    raw.send(0, C.Connection.CloseOk())
    assert _socket_closed_within(raw, 1)
    raw.close()


def test_a_connection_error_waits_for_close_ok_past_the_handshake_timeout(broker_factory):
    """A connection error once the connection is open waits 30 s for the close-ok (RabbitMQ);
    the handshake timeout, long over, does not cut that short."""
    broker = broker_factory(handshake_timeout=1)
    raw = RawClient.open(broker.port)
    raw.send_raw(b"\x09\x00\x00\x00\x00\x00\x03abc\xce")  # unknown frame type: 501
    raw.expect(C.Connection.Close)
    assert not _socket_closed_within(raw, 2)
    raw.send(0, C.Connection.CloseOk())
    assert _socket_closed_within(raw, 1)
    raw.close()
