"""Consumer priorities, single active consumer and direct reply-to against RabbitMQ 3.13.

Expected values are from /work/shared/rabbitmq-behaviour.md section 5 ("Consumers": x-priority
validation and ordering; "Direct reply-to": codes, texts and the rewritten reply_to) and
section 4 (x-single-active-consumer validation).
"""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pika
from pika_helpers import aio_get_within, channel_closed, connect, get_within, pump, settle

REPLY_TO = "amq.rabbitmq.reply-to"


def consumer(conn, queue: str, prefetch: int = 0, **kw):  # type: ignore[no-untyped-def]
    """A consumer on its own channel; returns (channel, tag, received list)."""
    ch = conn.channel()
    if prefetch:
        ch.basic_qos(prefetch_count=prefetch)
    got: list = []
    tag = ch.basic_consume(queue, lambda c, m, p, b: got.append((m, b)), **kw)
    return ch, tag, got


def bodies(got: list) -> list[bytes]:
    return [b for _, b in got]


# ---- consumer priorities (overflow to lower ones, round-robin: tests/core) ---------------

def test_invalid_consumer_priority(conn):
    ch = conn.channel()
    ch.queue_declare("q")
    with channel_closed(406, "PRECONDITION_FAILED - invalid arg 'x-priority' for queue 'q' in "
                             "vhost '/': \"expected integer, got longstr\""):
        ch.basic_consume("q", lambda *a: None, arguments={"x-priority": "abc"})


def test_all_messages_go_to_the_higher_priority_consumer(conn):
    pub = conn.channel()
    pub.queue_declare("q")
    _, _, low = consumer(conn, "q", prefetch=100, arguments={"x-priority": 1})
    _, _, high = consumer(conn, "q", prefetch=100, arguments={"x-priority": 10})
    for i in range(6):
        pub.basic_publish("", "q", f"m{i}".encode())
    pump(conn, lambda: len(high) + len(low) == 6)
    settle(conn)
    assert bodies(high) == [f"m{i}".encode() for i in range(6)]
    assert low == []


# ---- single active consumer -------------------------------------------------------------

def test_single_active_consumer_invalid_value(conn):
    with channel_closed(406, "PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for "
                             "queue 'q' in vhost '/': {unacceptable_type,longstr}"):
        conn.channel().queue_declare("q", arguments={"x-single-active-consumer": "yes"})


def test_single_active_consumer_takeover_on_cancel(conn):
    pub = conn.channel()
    pub.queue_declare("q", arguments={"x-single-active-consumer": True})
    first_ch, first_tag, first = consumer(conn, "q", auto_ack=True)
    _, _, second = consumer(conn, "q", auto_ack=True)
    for i in range(4):
        pub.basic_publish("", "q", f"m{i}".encode())
    pump(conn, lambda: len(first) == 4)
    settle(conn)
    assert second == []
    assert pub.queue_declare("q", passive=True).method.consumer_count == 2
    first_ch.basic_cancel(first_tag)
    for i in range(4, 6):
        pub.basic_publish("", "q", f"m{i}".encode())
    pump(conn, lambda: len(second) == 2)
    assert bodies(second) == [b"m4", b"m5"]
    assert len(first) == 4


def test_single_active_consumer_takeover_gets_unacked_back(conn):
    pub = conn.channel()
    pub.queue_declare("q", arguments={"x-single-active-consumer": True})
    first_ch, _, first = consumer(conn, "q")
    _, _, second = consumer(conn, "q", auto_ack=True)
    for i in range(3):
        pub.basic_publish("", "q", f"m{i}".encode())
    pump(conn, lambda: len(first) == 3)
    first_ch.close()  # unacked messages go back, in order, to the new active consumer
    pump(conn, lambda: len(second) == 3)
    assert bodies(second) == [b"m0", b"m1", b"m2"]
    assert all(m.redelivered for m, _ in second)


async def test_single_active_consumer_aio_pika(broker):
    conn = await aio_pika.connect(broker.url)
    async with conn:
        ch1 = await conn.channel()
        ch2 = await conn.channel()
        q1 = await ch1.declare_queue("q", arguments={"x-single-active-consumer": True})
        q2 = await ch2.declare_queue("q", passive=True)
        got1: list[bytes] = []
        got2: list[bytes] = []

        async def on1(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
            got1.append(msg.body)

        async def on2(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
            got2.append(msg.body)

        tag1 = await q1.consume(on1, no_ack=True)
        await q2.consume(on2, no_ack=True)
        for i in range(3):
            await ch1.default_exchange.publish(aio_pika.Message(f"a{i}".encode()), "q")

        async def until(cond) -> None:  # type: ignore[no-untyped-def]
            while not cond():
                await asyncio.sleep(0.01)

        await asyncio.wait_for(until(lambda: len(got1) == 3), 5)
        await q1.cancel(tag1)
        await ch1.default_exchange.publish(aio_pika.Message(b"b"), "q")
        await asyncio.wait_for(until(lambda: got2), 5)
        assert (got1, got2) == ([b"a0", b"a1", b"a2"], [b"b"])


# ---- direct reply-to --------------------------------------------------------------------

def test_direct_reply_to_round_trip(broker, conn):
    client = conn.channel()
    replies: list = []
    client.basic_consume(REPLY_TO, lambda c, m, p, b: replies.append((m, p, b)), auto_ack=True)
    server_conn = connect(broker)
    try:
        server = server_conn.channel()
        server.queue_declare("rpc")
        client.basic_publish("", "rpc", b"ping",
                             pika.BasicProperties(reply_to=REPLY_TO, correlation_id="c-1"))
        method, props, body = get_within(server, "rpc")
        assert body == b"ping"
        assert props.reply_to.startswith(REPLY_TO + "."), props.reply_to
        assert props.correlation_id == "c-1"
        server.basic_publish("", props.reply_to, b"pong",
                             pika.BasicProperties(correlation_id=props.correlation_id))
        pump(conn, lambda: replies)
        method, rprops, rbody = replies[0]
        assert rbody == b"pong"
        assert rprops.correlation_id == "c-1"
        assert (method.exchange, method.routing_key) == ("", props.reply_to)
    finally:
        server_conn.close()


def test_direct_reply_consumer_must_be_no_ack(conn):
    ch = conn.channel()
    with channel_closed(406, "PRECONDITION_FAILED - reply consumer cannot acknowledge"):
        ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=False)


def test_reply_to_without_reply_consumer(conn):
    ch = conn.channel()
    ch.queue_declare("rpc")
    with channel_closed(406, "PRECONDITION_FAILED - fast reply consumer does not exist"):
        ch.basic_publish("", "rpc", b"ping", pika.BasicProperties(reply_to=REPLY_TO))
        ch.queue_declare("rpc", passive=True)
    assert conn.channel().queue_declare("rpc", passive=True).method.message_count == 0


def test_passive_declare_of_reply_queue_while_consuming(conn):
    ch = conn.channel()
    ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    ok = ch.queue_declare(REPLY_TO, passive=True)
    assert (ok.method.queue, ok.method.message_count, ok.method.consumer_count) == \
        (REPLY_TO, 0, 1)


async def test_direct_reply_to_round_trip_aio_pika(broker):
    client_conn = await aio_pika.connect(broker.url)
    server_conn = await aio_pika.connect(broker.url)
    async with client_conn, server_conn:
        client = await client_conn.channel()
        server = await server_conn.channel()
        rpc = await server.declare_queue("rpc")
        reply_queue = await client.get_queue(REPLY_TO, ensure=False)
        replies: asyncio.Queue = asyncio.Queue()
        await reply_queue.consume(replies.put, no_ack=True)
        corr = str(uuid.uuid4())
        await client.default_exchange.publish(
            aio_pika.Message(b"ping", reply_to=REPLY_TO, correlation_id=corr), "rpc")
        request = await aio_get_within(rpc, 5)
        assert request.reply_to.startswith(REPLY_TO + ".")
        await server.default_exchange.publish(
            aio_pika.Message(b"pong", correlation_id=request.correlation_id), request.reply_to)
        reply = await asyncio.wait_for(replies.get(), 5)
        assert (reply.body, reply.correlation_id) == (b"pong", corr)


def test_qos_on_a_channel_with_a_reply_consumer(conn):
    """basic.qos wakes the channel's consumed queues; the reply consumer has none (mypy found
    it calling wake() on None, which killed the connection)."""
    ch = conn.channel()
    ch.queue_declare("after-qos")
    ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    ch.basic_qos(prefetch_count=5)
    assert ch.queue_declare("after-qos", passive=True).method.message_count == 0
