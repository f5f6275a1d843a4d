"""basic.get against RabbitMQ 3.10 behaviour (rabbitmq-behaviour.md section 5, "basic.get").

get-empty carries cluster_id ""; get-ok message_count is the number of ready messages left
after this one; a no-ack get removes the message for good.
"""

from __future__ import annotations

import asyncio

import aio_pika
from pamqp import commands as C
from pika_helpers import connect, count, fill


async def test_get_on_empty_queue_is_get_empty(broker):
    conn = await aio_pika.connect(broker.url)
    async with conn:
        ch = await conn.channel()
        await ch.declare_queue("q")
        raw = await ch.get_underlay_channel()
        delivered = await asyncio.wait_for(raw.basic_get("q"), 5)
        assert isinstance(delivered.delivery, C.Basic.GetEmpty), delivered.delivery
        assert delivered.delivery.cluster_id == ""
        assert delivered.body == b""


def test_get_empty_with_pika(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    assert ch.basic_get("q") == (None, None, None)
    assert ch.is_open
    conn.close()


def test_get_ok_message_count_counts_remaining(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 3)
    seen = []
    for _ in range(3):
        method, _, body = ch.basic_get("q")
        seen.append((body, method.message_count, method.delivery_tag, method.redelivered))
    assert seen == [(b"m0", 2, 1, False), (b"m1", 1, 2, False), (b"m2", 0, 3, False)]
    assert ch.basic_get("q") == (None, None, None)
    conn.close()


def test_get_ok_carries_exchange_and_routing_key(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    ch.queue_bind("q", "amq.direct", "rk-1")
    ch.basic_publish("amq.direct", "rk-1", b"routed")
    method, _, body = ch.basic_get("q", auto_ack=True)
    assert (method.exchange, method.routing_key, body) == ("amq.direct", "rk-1", b"routed")
    conn.close()


def test_get_no_ack_removes_the_message(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 2)
    method, _, body = ch.basic_get("q", auto_ack=True)
    assert (body, method.message_count) == (b"m0", 1)
    method, _, body = ch.basic_get("q")  # this one stays unacked
    assert body == b"m1"
    assert count(ch, "q") == 0
    ch.close()
    ch = conn.channel()
    assert count(ch, "q") == 1  # the unacked one came back, the no-ack one did not
    method, _, body = ch.basic_get("q", auto_ack=True)
    assert (body, method.redelivered, method.message_count) == (b"m1", True, 0)
    assert ch.basic_get("q") == (None, None, None)
    conn.close()


async def test_aio_pika_get_and_ack(broker):
    conn = await aio_pika.connect(broker.url)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue("q")
        for i in range(2):
            await ch.default_exchange.publish(aio_pika.Message(f"m{i}".encode()),
                                              routing_key="q")
        first = await asyncio.wait_for(q.get(), 5)
        assert first.body == b"m0"
        await first.ack()
        second = await asyncio.wait_for(q.get(no_ack=True), 5)
        assert second.body == b"m1"
        assert await asyncio.wait_for(q.get(fail=False), 5) is None
