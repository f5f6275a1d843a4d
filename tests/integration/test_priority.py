"""Priority queues (x-max-priority) against RabbitMQ 3.13 behaviour.

Expected values are from /work/shared/rabbitmq-behaviour.md sections 4 (argument validation) and
9 (ordering): highest priority first, FIFO within a priority, a priority above the max counts as
the max, no priority property counts as 0, and requeued messages go back to their place.
"""

from __future__ import annotations

import asyncio
import time

import aio_pika
import pika
import pytest
from pika_helpers import channel_closed, drain, pump


def _invalid(suffix: str, q: str = "q") -> str:
    return f"PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '{q}' in vhost '/': " \
           f"{suffix}"


def publish(ch, queue: str, body: str, priority: int | None) -> None:  # type: ignore[no-untyped-def]
    props = pika.BasicProperties(priority=priority) if priority is not None else None
    ch.basic_publish("", queue, body.encode(), properties=props)


# The 17-message sequence of section 9: (seq, priority or None).
SEVENTEEN = [(0, 3), (1, 9), (2, 0), (3, 7), (4, 5), (5, 1), (6, None), (7, 6), (8, 2), (9, 8),
             (10, 4), (11, 5), (12, 9), (13, 0), (14, None), (15, 255), (16, 6)]
SEVENTEEN_ORDER = [1, 3, 4, 7, 9, 11, 12, 15, 16, 10, 0, 8, 5, 2, 6, 13, 14]


# ---- x-max-priority validation ----------------------------------------------------------

@pytest.mark.parametrize("value", [1, 5, 10, 255, 0])
def test_max_priority_in_range_is_accepted(ch, value):
    ok = ch.queue_declare(f"q{value}", arguments={"x-max-priority": value})
    assert ok.method.queue == f"q{value}"
    assert ok.method.message_count == 0


@pytest.mark.parametrize("value, suffix", [
    (300, "{max_value_exceeded,300}"),
    (256, "{max_value_exceeded,256}"),
    (-1, "{value_negative,-1}"),
    ("5", '"expected integer, got longstr"'),
])
def test_max_priority_invalid_values(conn, value, suffix):
    ch = conn.channel()
    with channel_closed(406, _invalid(suffix)):
        ch.queue_declare("q", arguments={"x-max-priority": value})
    assert conn.is_open
    # the refused declare created nothing
    with channel_closed(404, "NOT_FOUND - no queue 'q' in vhost '/'"):
        conn.channel().queue_declare("q", passive=True)


def test_max_priority_redeclare_with_other_max_is_refused(conn):
    ch = conn.channel()
    ch.queue_declare("q", arguments={"x-max-priority": 5})
    with channel_closed(406, "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue "
                             "'q' in vhost '/': received '10' but current is '5'"):
        ch.queue_declare("q", arguments={"x-max-priority": 10})


# ---- ordering ---------------------------------------------------------------------------

def test_seventeen_message_order_with_basic_get(ch):
    ch.queue_declare("q", arguments={"x-max-priority": 5})
    for seq, prio in SEVENTEEN:
        publish(ch, "q", str(seq), prio)
    got = []
    for _ in range(len(SEVENTEEN)):
        method, props, body = ch.basic_get("q", auto_ack=True)
        assert method is not None, f"queue ran dry after {got}"
        got.append((int(body), props.priority))
    assert [seq for seq, _ in got] == SEVENTEEN_ORDER
    # the priority property is delivered unchanged (9 and 255 are not clamped to 5)
    assert got == [(seq, dict(SEVENTEEN)[seq]) for seq in SEVENTEEN_ORDER]
    assert ch.basic_get("q") == (None, None, None)


async def test_seventeen_message_order_with_aio_pika(broker):
    conn = await aio_pika.connect(broker.url)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue("q", arguments={"x-max-priority": 5})
        for seq, prio in SEVENTEEN:
            await ch.default_exchange.publish(
                aio_pika.Message(str(seq).encode(), priority=prio), routing_key="q")
        got = []
        for _ in range(len(SEVENTEEN)):
            msg = await asyncio.wait_for(q.get(no_ack=True, fail=False), 5)
            assert msg is not None, f"queue ran dry after {got}"
            got.append(int(msg.body))
            # aio-pika sends priority 0 for "no priority"; the rest arrive unchanged
            assert msg.priority == (dict(SEVENTEEN)[int(msg.body)] or 0)
        assert got == SEVENTEEN_ORDER


FIFO = (("a", 1), ("b", 9), ("c", None), ("d", 5))


@pytest.mark.parametrize("arguments, sent, expected", [
    # 255, 5, 9, 6 share the top bucket (FIFO); 4 comes after all of them
    pytest.param({"x-max-priority": 5}, (("a", 255), ("b", 4), ("c", 5), ("d", 9), ("e", 6)),
                 [b"a", b"c", b"d", b"e", b"b"], id="above-max-counts-as-max"),
    pytest.param({"x-max-priority": 3}, (("a", None), ("b", 0), ("c", 1), ("d", None), ("e", 0)),
                 [b"c", b"a", b"b", b"d", b"e"], id="missing-is-priority-zero"),
    pytest.param(None, FIFO, [b"a", b"b", b"c", b"d"], id="no-max-priority-is-fifo"),
    pytest.param({"x-max-priority": 0}, FIFO, [b"a", b"b", b"c", b"d"],
                 id="max-priority-0-is-fifo"),
])
def test_delivery_order(ch, arguments, sent, expected):
    ch.queue_declare("q", arguments=arguments)
    for body, prio in sent:
        publish(ch, "q", body, prio)
    assert drain(ch, "q") == expected


def test_fifo_within_priority_after_nack_requeue(ch):
    ch.queue_declare("q", arguments={"x-max-priority": 5})
    for body in ("a1", "a2", "a3"):
        publish(ch, "q", body, 1)
    m1, _, b1 = ch.basic_get("q")
    m2, _, b2 = ch.basic_get("q")
    assert (b1, b2) == (b"a1", b"a2")
    publish(ch, "q", "a4", 1)
    publish(ch, "q", "hi", 5)
    # requeue in reverse order: they go back to their original place in their bucket
    ch.basic_nack(m2.delivery_tag, requeue=True)
    ch.basic_nack(m1.delivery_tag, requeue=True)
    got = []
    for _ in range(5):
        method, props, body = ch.basic_get("q", auto_ack=True)
        got.append((body, method.redelivered, props.priority))
    assert got == [(b"hi", False, 5), (b"a1", True, 1), (b"a2", True, 1), (b"a3", False, 1),
                   (b"a4", False, 1)]


def test_requeue_of_low_priority_does_not_jump_ahead_of_high(ch):
    ch.queue_declare("q", arguments={"x-max-priority": 10})
    publish(ch, "q", "low", 1)
    method, _, body = ch.basic_get("q")
    assert body == b"low"
    publish(ch, "q", "high", 10)
    publish(ch, "q", "mid", 5)
    ch.basic_reject(method.delivery_tag, requeue=True)
    assert drain(ch, "q") == [b"high", b"mid", b"low"]


def test_consumer_with_prefetch_one_gets_priority_order(conn):
    ch = conn.channel()
    ch.queue_declare("q", arguments={"x-max-priority": 10})
    for body, prio in (("p1a", 1), ("p1b", 1), ("p1c", 1), ("p10", 10), ("p5", 5)):
        publish(ch, "q", body, prio)
    ch.basic_qos(prefetch_count=1)
    got: list[tuple[bytes, int]] = []

    def on_message(c, method, props, body):  # type: ignore[no-untyped-def]
        got.append((body, props.priority))
        c.basic_ack(method.delivery_tag)

    ch.basic_consume("q", on_message)
    pump(conn, lambda: len(got) == 5)
    assert got == [(b"p10", 10), (b"p5", 5), (b"p1a", 1), (b"p1b", 1), (b"p1c", 1)]


def test_prefetch_one_sees_a_higher_priority_published_while_busy(conn):
    ch = conn.channel()
    ch.queue_declare("q", arguments={"x-max-priority": 10})
    for body in ("l1", "l2", "l3"):
        publish(ch, "q", body, 1)
    ch.basic_qos(prefetch_count=1)
    held: list = []
    ch.basic_consume("q", lambda c, m, p, b: held.append((m, b)))
    pump(conn, lambda: len(held) == 1)
    # one message in flight; a high-priority one arrives and must be next
    publish(ch, "q", "h", 9)
    time.sleep(0.05)
    conn.process_data_events(time_limit=0.05)
    assert [b for _, b in held] == [b"l1"]
    while len(held) < 4:
        before = len(held)
        ch.basic_ack(held[-1][0].delivery_tag)
        pump(conn, lambda n=before: len(held) == n + 1)
    ch.basic_ack(held[-1][0].delivery_tag)
    assert [b for _, b in held] == [b"l1", b"h", b"l2", b"l3"]


async def test_aio_pika_consumer_prefetch_one_priority_order(broker):
    conn = await aio_pika.connect(broker.url)
    async with conn:
        ch = await conn.channel()
        await ch.set_qos(prefetch_count=1)
        q = await ch.declare_queue("q", arguments={"x-max-priority": 10})
        for body, prio in (("p1a", 1), ("p1b", 1), ("p1c", 1), ("p10", 10), ("p5", 5)):
            await ch.default_exchange.publish(aio_pika.Message(body.encode(), priority=prio),
                                              routing_key="q")
        got = []

        async def consume() -> None:
            async with q.iterator() as it:
                async for msg in it:
                    got.append(msg.body)
                    await msg.ack()
                    if len(got) == 5:
                        return

        await asyncio.wait_for(consume(), 5)
        assert got == [b"p10", b"p5", b"p1a", b"p1b", b"p1c"]
