"""Paging under a backlog, through real clients: every queue kind keeps at most its RAM window
of messages as objects, requeued messages past it are kept as positions, and delivery order,
redelivered flags and priorities are what RabbitMQ gives (sections 9 and 11 of
rabbitmq-behaviour.md: highest priority first, FIFO within a priority, requeued messages back
in their original position).

Not timed: the bound checked is the number of entries in RAM, read from the broker's stores."""

from __future__ import annotations

import random

import pika
import pytest
from pika_helpers import connect, pump

from storage.window import MODES

N = 6000  # about three windows
WINDOW = MODES["default"][0]

pytestmark = pytest.mark.deadline(60)


def stores_of(broker, name: str) -> list:  # type: ignore[no-untyped-def]
    store = broker.server.vhosts["/"].queue(name).store
    levels = getattr(store, "_buckets", None)
    return [s for s in levels if s is not None] if levels is not None else [store]


def in_ram(broker, name: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(entries held as objects, requeued held as positions) over the queue's stores."""
    def read() -> tuple[int, int]:
        stores = stores_of(broker, name)
        return sum(s.in_memory for s in stores), sum(s.paged_requeued for s in stores)
    return broker.call(read)


def consume_all(conn: pika.BlockingConnection, queue: str, n: int, *, ack: bool = True,
                prefetch: int = 0) -> list[tuple[bytes, bool, int | None]]:
    """(body, redelivered, priority) of ``n`` deliveries; acked unless ``ack`` is False."""
    ch = conn.channel()
    ch.basic_qos(prefetch_count=prefetch)
    got: list[tuple[bytes, bool, int | None]] = []

    def on_message(channel, method, props, body) -> None:  # type: ignore[no-untyped-def]
        got.append((body, method.redelivered, props.priority))
        if ack:
            channel.basic_ack(method.delivery_tag)

    ch.basic_consume(queue, on_message)
    pump(conn, lambda: len(got) >= n, timeout=40)
    return got


@pytest.mark.parametrize("kind", ["transient", "durable", "lazy"])
def test_a_backlog_keeps_only_the_window_in_ram_and_requeues_in_order(broker, kind: str) -> None:
    conn = connect(broker)
    ch = conn.channel()
    args = {"x-queue-mode": "lazy"} if kind == "lazy" else {}
    ch.queue_declare("q", durable=kind != "transient", arguments=args)
    props = pika.BasicProperties(delivery_mode=2 if kind != "transient" else 1)
    for i in range(N):
        ch.basic_publish("", "q", b"%05d" % i, props)
    assert ch.queue_declare("q", passive=True).method.message_count == N
    objects, _ = in_ram(broker, "q")
    assert objects <= (WINDOW if kind != "lazy" else 1)

    # a consumer without prefetch limit takes everything, then goes away without acking
    taker = connect(broker)
    got = consume_all(taker, "q", N, ack=False)
    assert [body for body, _, _ in got] == [b"%05d" % i for i in range(N)]
    taker.close()
    pump(conn, lambda: ch.queue_declare("q", passive=True).method.message_count == N)
    objects, paged = in_ram(broker, "q")
    assert objects <= 2 * WINDOW  # (lazy: the requeued ones read from disk are paged too)
    assert paged >= N - 2 * WINDOW

    again = consume_all(conn, "q", N)
    assert [body for body, _, _ in again] == [b"%05d" % i for i in range(N)]
    assert all(redelivered for _, redelivered, _ in again)
    pump(conn, lambda: ch.queue_declare("q", passive=True).method.message_count == 0)
    assert in_ram(broker, "q") == (0, 0)
    conn.close()


@pytest.mark.parametrize("durable", [False, True])
def test_priority_levels_share_the_window(broker, durable: bool) -> None:
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("pq", durable=durable, arguments={"x-max-priority": 9})
    rnd = random.Random(11)
    sent = []
    for i in range(N):
        priority = rnd.randrange(10)
        sent.append((-priority, i))
        ch.basic_publish("", "pq", b"%05d" % i,
                         pika.BasicProperties(priority=priority, delivery_mode=2))
    assert ch.queue_declare("pq", passive=True).method.message_count == N
    objects, _ = in_ram(broker, "pq")
    assert objects <= WINDOW  # ten levels, one window
    assert len(broker.call(lambda: stores_of(broker, "pq"))) == 10

    got = consume_all(conn, "pq", N, prefetch=1)
    assert [(-(p or 0), int(body)) for body, _, p in got] == sorted(sent)
    conn.close()
