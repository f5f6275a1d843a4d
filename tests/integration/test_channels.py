"""Channel behaviour: open/close, limits, channel.flow, life after a broker channel.close.

Expected replies are RabbitMQ 3.10's (see rabbitmq-behaviour.md section 7).
"""

import struct

import pika
import pytest
from pamqp import commands as C
from pika_helpers import channel_closed, connect, connection_closed, drain, pump
from raw_client import RawClient

EXPECTED_OPEN = "CHANNEL_ERROR - expected 'channel.open'"


# ---- pika ------------------------------------------------------------------------------

def test_open_and_close_channel(broker):
    conn = connect(broker)
    ch = conn.channel()
    assert ch.is_open
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.close()
    assert ch.is_closed and conn.is_open
    ch2 = conn.channel()
    ch2.basic_publish("", q, b"x")
    assert drain(ch2, q) == [b"x"]
    conn.close()


def test_many_channels(broker):
    conn = connect(broker)
    channels = [conn.channel() for _ in range(200)]
    assert len({ch.channel_number for ch in channels}) == 200
    q = channels[0].queue_declare("", exclusive=True).method.queue
    for i, ch in enumerate(channels):
        ch.basic_publish("", q, b"%d" % i)
    assert drain(channels[-1], q) == [b"%d" % i for i in range(200)]
    for ch in channels[::2]:
        ch.close()
    for ch in channels[1::2]:
        assert ch.queue_declare(q, passive=True).method.queue == q
    conn.close()


def test_flow_active_true(broker):
    conn = connect(broker)
    ch = conn.channel()
    assert ch.flow(True) is True
    assert ch.is_open
    conn.close()


def test_flow_active_false_closes_connection(broker):
    conn = connect(broker)
    ch = conn.channel()
    with connection_closed(540, "NOT_IMPLEMENTED - active=false"):
        ch.flow(False)
    assert conn.is_closed


def test_channel_closed_by_broker_then_reuse(broker):
    conn = connect(broker)
    ch = conn.channel()
    other = conn.channel()
    q = other.queue_declare("", exclusive=True).method.queue
    with channel_closed(404, "NOT_FOUND - no queue 'missing-q' in vhost '/'"):
        ch.queue_declare("missing-q", passive=True)
    assert ch.is_closed and conn.is_open
    with pytest.raises(pika.exceptions.ChannelWrongStateError):
        ch.queue_declare("whatever")
    # other channels are unaffected, and a new channel works
    other.basic_publish("", q, b"a")
    assert drain(other, q) == [b"a"]
    fresh = conn.channel()
    fresh.basic_publish("", q, b"b")
    assert drain(fresh, q) == [b"b"]
    conn.close()


def test_channel_close_requeues_unacked(broker):
    conn = connect(broker)
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"one")
    ch.basic_publish("", q, b"two")
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(b))
    pump(conn, lambda: len(got) == 2)
    ch.close()
    ch2 = conn.channel()
    first = ch2.basic_get(q, auto_ack=True)
    second = ch2.basic_get(q, auto_ack=True)
    assert [first[2], second[2]] == [b"one", b"two"]
    assert first[0].redelivered and second[0].redelivered
    conn.close()


# ---- raw frames ------------------------------------------------------------------------

@pytest.mark.parametrize("method,ids", [
    (C.Queue.Declare(queue="q5"), (50, 10)),
    (C.Basic.Publish(exchange="", routing_key="q5"), (60, 40)),
    (C.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0), (20, 40)),
    (C.Channel.CloseOk(), (20, 41)),
])
def test_method_on_unopened_channel(broker, method, ids):
    raw = RawClient(broker.port)
    raw.handshake()
    raw.send(5, method)
    raw.expect_close(504, EXPECTED_OPEN, ids)
    raw.close()


def test_second_channel_open(broker):
    raw = RawClient(broker.port)
    raw.handshake()
    raw.open_channel(1)
    raw.send(1, C.Channel.Open())
    raw.expect_close(504, "CHANNEL_ERROR - second 'channel.open' seen", (20, 10))
    raw.close()


def test_channel_number_reusable_after_close(broker):
    raw = RawClient(broker.port)
    raw.handshake()
    raw.open_channel(1)
    raw.send(1, C.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0))
    raw.expect(C.Channel.CloseOk)
    raw.open_channel(1)
    raw.close()


def test_after_server_channel_close(broker):
    raw = RawClient(broker.port)
    raw.handshake()
    raw.open_channel(1)
    raw.send(1, C.Queue.Declare(queue="nope-q", passive=True))
    raw.expect_close(404, "NOT_FOUND - no queue 'nope-q' in vhost '/'", (50, 10),
                     kind=C.Channel.Close)
    # before close-ok: methods are dropped silently
    raw.send(1, C.Queue.Declare(queue="dropped-q"))
    raw.send(1, C.Channel.CloseOk())
    raw.open_channel(1)
    raw.send(1, C.Queue.Declare(queue="dropped-q", passive=True))
    close = raw.expect(C.Channel.Close)
    assert (close.reply_code, close.reply_text) == (
        404, "NOT_FOUND - no queue 'dropped-q' in vhost '/'")
    raw.send(1, C.Channel.CloseOk())
    # after close-ok, without channel.open: connection error
    raw.send(1, C.Queue.Declare(queue="x"))
    raw.expect_close(504, EXPECTED_OPEN, (50, 10))
    raw.close()


def test_no_close_ok_other_channels_keep_working(broker):
    raw = RawClient(broker.port)
    raw.handshake()
    raw.open_channel(1)
    raw.open_channel(2)
    raw.send(1, C.Queue.Declare(queue="nope-q", passive=True))
    assert raw.expect(C.Channel.Close).reply_code == 404
    raw.send(2, C.Queue.Declare(queue="alive-q", exclusive=True))
    assert raw.expect(C.Queue.DeclareOk, channel=2).queue == "alive-q"
    raw.close()


def test_channel_max_limits_open_count(broker):
    raw = RawClient(broker.port)
    raw.handshake(channel_max=2, client_properties={})
    raw.open_channel(7)      # the channel *number* is not limited
    raw.open_channel(2047)
    raw.send(3, C.Channel.Open())
    raw.expect_close(530, "NOT_ALLOWED - number of channels opened (2) has reached "
                          "the negotiated channel_max (2)", (0, 0))
    raw.close()


def test_high_channel_numbers_allowed(broker):
    raw = RawClient(broker.port)
    raw.handshake()
    for number in (2047, 2048, 65535):
        raw.open_channel(number)
    raw.close()


def test_flow_false_close_frame(broker):
    raw = RawClient(broker.port)
    raw.handshake()
    raw.open_channel(1)
    raw.send(1, C.Channel.Flow(active=True))
    assert raw.expect(C.Channel.FlowOk).active is True
    raw.send(1, C.Channel.Flow(active=False))
    raw.expect_close(540, "NOT_IMPLEMENTED - active=false", (20, 20))
    raw.close()


@pytest.mark.parametrize("method,ids", [
    (C.Channel.FlowOk(active=True), (20, 21)),
    (C.Connection.Tune(channel_max=0, frame_max=0, heartbeat=0), (10, 30)),
])
def test_unimplemented_methods_on_channel(broker, method, ids):
    raw = RawClient(broker.port)
    raw.handshake()
    raw.open_channel(1)
    raw.send(1, method)
    raw.expect_close(503, "COMMAND_INVALID - unimplemented method", ids)
    raw.close()


def test_access_request(broker):
    # pamqp has no access class: build access.request (30/10) by hand
    raw = RawClient(broker.port)
    raw.handshake()
    raw.open_channel(1)
    payload = struct.pack(">HHB", 30, 10, 5) + b"/data" + b"\x00"
    raw.send_raw(struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce")
    frame = raw.recv_frame_bytes()
    assert frame == struct.pack(">BHI", 1, 1, 6) + bytes.fromhex("001e000b0001") + b"\xce"
    raw.close()
