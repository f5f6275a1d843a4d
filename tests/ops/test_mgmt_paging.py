"""The management API on queues whose backlog is paged out to disk: listing them costs no
read of the backlog (the UI lists queues every few seconds, on the broker's event loop, where
reading 10,000 records per queue stalled every client), and the RAM / paged-out / persistent
figures say where the messages are, as RabbitMQ's classic queues do."""

from __future__ import annotations

from typing import Any

import pika
import pytest
from ops_helpers import Api, connect

from storage.message_store import SegmentQueueStore

BACKLOG = 6000  # past the 2048-message RAM window


def fill(url: str, queue: str, count: int, durable: bool, delivery_mode: int) -> None:
    conn = connect(url)
    ch = conn.channel()
    ch.queue_declare(queue, durable=durable)
    props = pika.BasicProperties(delivery_mode=delivery_mode)
    for _ in range(count):
        ch.basic_publish("", queue, b"m" * 100, props)
    ch.queue_declare(queue, passive=True)  # a round trip: every publish is in
    conn.close()


@pytest.fixture
def no_backlog_reads(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def refuse(self: Any) -> Any:
        raise AssertionError("the management API walked a queue's messages")

    monkeypatch.setattr(SegmentQueueStore, "__iter__", refuse)


def test_listing_queues_reads_no_backlog(burrowmq, no_backlog_reads) -> None:  # type: ignore
    fill(burrowmq.url, "durable.jobs", BACKLOG, True, 2)
    fill(burrowmq.url, "small", 10, True, 2)
    fill(burrowmq.url, "scratch", BACKLOG, False, 1)
    api = Api(burrowmq.management_port)
    found = {q["name"]: q for q in api.get("/api/queues")}
    jobs = found["durable.jobs"]
    assert jobs["messages"] == jobs["messages_ready"] == BACKLOG
    assert 0 < jobs["messages_ram"] < BACKLOG
    assert jobs["messages_ready_ram"] + jobs["messages_paged_out"] == BACKLOG
    assert jobs["messages_persistent"] == BACKLOG
    assert jobs["message_bytes"] == BACKLOG * 100
    assert jobs["message_bytes_ram"] + jobs["message_bytes_paged_out"] == BACKLOG * 100
    assert 0 < jobs["message_bytes_ram"] < BACKLOG * 100
    assert jobs["message_bytes_persistent"] == BACKLOG * 100
    small = found["small"]
    assert (small["messages_ram"], small["messages_paged_out"], small["messages_persistent"]) \
        == (10, 0, 10)
    scratch = found["scratch"]  # RabbitMQ: only a durable queue's messages are persistent
    assert (scratch["messages_persistent"], scratch["message_bytes_persistent"]) == (0, 0)
    assert scratch["messages_paged_out"] > 0
    assert api.get("/api/queues/%2F/durable.jobs")["messages_paged_out"] > 0
