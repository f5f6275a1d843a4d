"""The built-in plugins' durable state across a leader's SIGKILL, used through a follower as a
client of a cluster would: a stream read from an offset with a filter, a persistent message
held by a delayed exchange, and a deduplication exchange's disk cache (a duplicate published
after the failover is still dropped)."""

from __future__ import annotations

import time

import pika
from brokers import BrokerCluster

PERSISTENT = 2


def publish_all(url: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("events", durable=True, arguments={"x-queue-type": "stream"})
    for i in range(200):
        ch.basic_publish("", "events", b"e%d" % i, pika.BasicProperties(
            delivery_mode=PERSISTENT, headers={"x-stream-filter-value": "odd" if i % 2 else
                                               "even"}))
    ch.exchange_declare("later", "x-delayed-message", durable=True,
                        arguments={"x-delayed-type": "direct"})
    ch.queue_declare("due", durable=True)
    ch.queue_bind("due", "later", "k")
    ch.basic_publish("later", "k", b"held", pika.BasicProperties(
        delivery_mode=PERSISTENT, headers={"x-delay": 4000}))
    ch.exchange_declare("once", "x-message-deduplication", durable=True,
                        arguments={"x-cache-size": 100, "x-cache-persistence": "disk"})
    ch.queue_declare("orders", durable=True)
    ch.queue_bind("orders", "once", "")
    ch.basic_publish("once", "", b"order-1", pika.BasicProperties(
        delivery_mode=PERSISTENT, headers={"x-deduplication-header": "order-1"}))
    conn.close()


def test_streams_delayed_and_dedup_survive_a_leader_kill(cluster3: BrokerCluster) -> None:
    old = cluster3.leader()
    assert old is not None
    follower = next(n for n in cluster3.nodes if n is not old)
    publish_all(follower.url)  # spliced to the leader
    time.sleep(0.5)  # the dedup cache's plain writes reach the followers (not confirmed)
    old.kill()
    cluster3.wait_leader(20, not_=old)
    survivor = next(n for n in cluster3.nodes if n is not old and n.running)
    conn = pika.BlockingConnection(pika.URLParameters(survivor.url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("once", "", b"order-1 again", pika.BasicProperties(
        delivery_mode=PERSISTENT, headers={"x-deduplication-header": "order-1"}))
    assert ch.queue_declare("orders", passive=True).method.message_count == 1

    ch.basic_qos(prefetch_count=50)
    offsets: list[int] = []
    ch.basic_consume("events", lambda c, m, p, b: (offsets.append(p.headers["x-stream-offset"]),
                                                   c.basic_ack(m.delivery_tag)),
                     arguments={"x-stream-offset": 100, "x-stream-filter": "odd"})
    deadline = time.monotonic() + 10
    while len(offsets) < 50 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    assert offsets == list(range(101, 200, 2))

    held = None
    deadline = time.monotonic() + 15
    while held is None and time.monotonic() < deadline:
        _method, _props, held = ch.basic_get("due", auto_ack=True)
        conn.sleep(0.2)
    assert held == b"held"
    conn.close()
