"""basic.publish against RabbitMQ 3.10 behaviour: errors, basic.return, properties, sizes.

Reply codes and texts are from /work/shared/rabbitmq-behaviour.md section 5. basic.publish has
no reply, so a channel error is surfaced by the next synchronous call. immediate=true is sent
over raw pamqp frames because pika cannot send it.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import os

import aio_pika
import pika
import pytest
from pamqp import body as pamqp_body
from pamqp import commands as C
from pamqp import header as pamqp_header
from pika_helpers import INVALID_EXPIRATIONS, connect, count, expect_channel_error, pump, settle
from raw_client import RawClient

pytestmark = pytest.mark.deadline(30)


HEADERS = {
    "str": "héllo",
    "bytes": b"\x00\xffraw",
    "int": 42,
    "negative": -7,
    "big": 2**40,
    "bool_t": True,
    "bool_f": False,
    "decimal": decimal.Decimal("3.14"),
    "none": None,
    "list": [1, "two", [3], {"four": 4}],
    "table": {"nested": {"deeper": "yes"}, "n": 1},
    "when": datetime.datetime(2024, 5, 6, 7, 8, 9),
}


def full_properties() -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type="application/octet-stream", content_encoding="identity",
        headers=HEADERS, delivery_mode=2, priority=5, correlation_id="corr-1",
        reply_to="replies", expiration="60000", message_id="msg-1", timestamp=1700000000,
        type="kind", user_id="guest", app_id="tests")


def assert_same_properties(got: pika.BasicProperties, sent: pika.BasicProperties) -> None:
    for name in ("content_type", "content_encoding", "delivery_mode", "priority",
                 "correlation_id", "reply_to", "expiration", "message_id", "timestamp",
                 "type", "user_id", "app_id", "cluster_id"):
        assert getattr(got, name) == getattr(sent, name), name
    assert got.headers.keys() == sent.headers.keys()
    for key, value in sent.headers.items():
        received = got.headers[key]
        if isinstance(value, datetime.datetime):
            received = received.replace(tzinfo=None)
        assert received == value, key


# ---- errors -----------------------------------------------------------------------------
def test_immediate_is_not_implemented(broker):
    raw = RawClient.open(broker.port)
    raw.declare("q")
    raw.publish("q", b"x", immediate=True)
    raw.expect_close(540, "NOT_IMPLEMENTED - immediate=true", (60, 40), channel=0)
    raw.send(0, C.Connection.CloseOk())
    raw.close()


def test_publish_to_missing_exchange(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.basic_publish("nope", "rk", b"x")
    expect_channel_error(ch, 404, "NOT_FOUND - no exchange 'nope' in vhost '/'")
    assert conn.is_open
    conn.close()


@pytest.mark.parametrize("value, reason", INVALID_EXPIRATIONS)
def test_invalid_expiration(broker, value, reason):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"x", pika.BasicProperties(expiration=value))
    expect_channel_error(ch, 406, f"PRECONDITION_FAILED - invalid expiration '{value}': {reason}")
    assert count(conn.channel(), "q") == 0
    conn.close()


def test_expiration_zero_is_accepted_and_expires_at_once(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"x", pika.BasicProperties(expiration="0"))
    assert count(ch, "q") == 0
    assert ch.basic_get("q") == (None, None, None)
    conn.close()


def test_message_over_max_size(broker_factory):
    running = broker_factory(max_message_size=1000)
    conn = connect(running)
    ch = conn.channel()
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"a" * 2000)
    expect_channel_error(
        ch, 406, "PRECONDITION_FAILED - message size 2000 is larger than configured max size 1000")
    # the connection stays usable; exactly the limit is accepted, one more is not
    ch = conn.channel()
    ch.basic_publish("", "q", b"b" * 1000)
    assert count(ch, "q") == 1
    ch.basic_publish("", "q", b"c" * 1001)
    expect_channel_error(
        ch, 406, "PRECONDITION_FAILED - message size 1001 is larger than configured max size 1000")
    _, _, body = conn.channel().basic_get("q", auto_ack=True)
    assert body == b"b" * 1000
    conn.close()


def test_user_id_must_match_the_login_user(broker):
    # Not in the behaviour doc; RabbitMQ's rabbit_channel:check_user_id_header text.
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"x", pika.BasicProperties(user_id="bob"))
    expect_channel_error(ch, 406, "PRECONDITION_FAILED - user_id property set to 'bob' but "
                                  "authenticated user was 'guest'")
    conn.close()


# ---- basic.return -----------------------------------------------------------------------
def test_mandatory_unroutable_is_returned_with_content(broker):
    conn = connect(broker)
    ch = conn.channel()
    returned: list = []
    ch.add_on_return_callback(lambda _c, m, p, b: returned.append((m, p, b)))
    props = pika.BasicProperties(content_type="text/plain", correlation_id="c-9",
                                 headers={"k": "v", "n": 3}, priority=2)
    ch.basic_publish("amq.direct", "nowhere", b"lost body", props, mandatory=True)
    pump(conn, lambda: returned)
    method, got, body = returned[0]
    assert (method.reply_code, method.reply_text) == (312, "NO_ROUTE")
    assert (method.exchange, method.routing_key) == ("amq.direct", "nowhere")
    assert body == b"lost body"
    assert (got.content_type, got.correlation_id, got.priority) == ("text/plain", "c-9", 2)
    assert got.headers == {"k": "v", "n": 3}
    assert ch.is_open
    conn.close()


def test_mandatory_to_default_exchange_missing_queue(broker):
    conn = connect(broker)
    ch = conn.channel()
    returned: list = []
    ch.add_on_return_callback(lambda _c, m, p, b: returned.append((m, b)))
    ch.basic_publish("", "no-such-queue", b"x", mandatory=True)
    pump(conn, lambda: returned)
    method, body = returned[0]
    assert (method.reply_code, method.reply_text, method.exchange, method.routing_key) == \
        (312, "NO_ROUTE", "", "no-such-queue")
    assert body == b"x"
    conn.close()


def test_unroutable_without_mandatory_is_dropped_silently(broker):
    conn = connect(broker)
    ch = conn.channel()
    returned: list = []
    ch.add_on_return_callback(lambda *a: returned.append(a))
    ch.basic_publish("amq.direct", "nowhere", b"x")
    ch.queue_declare("q")
    settle(conn)
    assert returned == []
    assert ch.is_open
    conn.close()


def test_routed_mandatory_is_not_returned(broker):
    conn = connect(broker)
    ch = conn.channel()
    returned: list = []
    ch.add_on_return_callback(lambda *a: returned.append(a))
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"x", mandatory=True)
    assert count(ch, "q") == 1
    settle(conn)
    assert returned == []
    conn.close()


# ---- content ----------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1024 * 1024, 5 * 1024 * 1024])
def test_large_message_with_all_properties(broker, size):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    payload = os.urandom(size)
    props = full_properties()
    ch.basic_publish("", "q", payload, props)
    method, got, body = ch.basic_get("q", auto_ack=True)
    assert method is not None
    assert len(body) == size and body == payload
    assert (method.exchange, method.routing_key, method.redelivered) == ("", "q", False)
    assert_same_properties(got, props)
    conn.close()


def test_large_message_to_a_consumer(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    payloads = [os.urandom(3 * 1024 * 1024 + i) for i in range(2)]
    got: list = []
    ch.basic_consume("q", lambda _c, m, p, b: got.append((p, b)), auto_ack=True)
    for payload in payloads:
        ch.basic_publish("", "q", payload, full_properties())
    pump(conn, lambda: len(got) >= 2, timeout=15)
    assert [b for _, b in got] == payloads
    for props, _ in got:
        assert_same_properties(props, full_properties())
    conn.close()


def test_body_is_split_by_negotiated_frame_max(broker):
    raw = RawClient.open(broker.port, frame_max=4096)
    raw.declare("q")
    payload = os.urandom(50_000)
    chunks = [payload[i:i + 4000] for i in range(0, len(payload), 4000)]
    raw.send(1, C.Basic.Publish(exchange="", routing_key="q"))
    raw.send(1, pamqp_header.ContentHeader(0, len(payload), C.Basic.Properties()))
    for chunk in chunks:
        raw.send(1, pamqp_body.ContentBody(chunk))
    raw.send(1, C.Basic.Get(queue="q", no_ack=True))
    ok = raw.expect(C.Basic.GetOk)
    assert ok.message_count == 0
    head = raw.expect(pamqp_header.ContentHeader)
    assert head.body_size == len(payload)
    received = b""
    while len(received) < len(payload):
        part = raw.expect(pamqp_body.ContentBody).value
        assert len(part) <= 4096 - 8  # payload + 8 bytes of framing fit frame_max
        received += part
    assert received == payload
    raw.close()


def test_empty_body(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"", pika.BasicProperties(content_type="text/plain"))
    method, props, body = ch.basic_get("q", auto_ack=True)
    assert (body, props.content_type, method.message_count) == (b"", "text/plain", 0)
    got: list = []
    ch.basic_consume("q", lambda _c, m, p, b: got.append(b), auto_ack=True)
    ch.basic_publish("", "q", b"")
    pump(conn, lambda: got)
    assert got == [b""]
    conn.close()


def test_no_properties_at_all(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"bare")
    _, props, body = ch.basic_get("q", auto_ack=True)
    assert body == b"bare"
    assert (props.headers, props.content_type, props.user_id, props.expiration) == \
        (None, None, None, None)
    conn.close()


async def test_aio_pika_large_message_and_properties(broker):
    payload = os.urandom(5 * 1024 * 1024)
    stamp = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    conn = await aio_pika.connect(broker.url)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue("big")
        await ch.default_exchange.publish(aio_pika.Message(
            payload, headers={"a": 1, "b": "two", "c": [1, 2], "d": {"e": True}, "f": 1.5},
            content_type="application/x-test", correlation_id="cid", message_id="mid",
            timestamp=stamp, priority=3, expiration=60, delivery_mode=2, app_id="aio",
            type="t", user_id="guest", reply_to="r"), routing_key="big")
        msg = await asyncio.wait_for(q.get(no_ack=True), 10)
        assert msg.body == payload
        assert msg.headers == {"a": 1, "b": "two", "c": [1, 2], "d": {"e": True}, "f": 1.5}
        assert (msg.content_type, msg.correlation_id, msg.message_id) == \
            ("application/x-test", "cid", "mid")
        assert msg.timestamp.replace(tzinfo=datetime.UTC) == stamp
        assert (msg.priority, msg.app_id, msg.type, msg.user_id, msg.reply_to) == \
            (3, "aio", "t", "guest", "r")
        assert msg.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert msg.properties.expiration == "60000"
