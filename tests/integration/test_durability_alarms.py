"""Disk trouble: the free-disk alarm blocks publishers (and only them) until space returns, and
a failed fsync turns into basic.nack for the publishes it covered without taking the broker
down."""

from __future__ import annotations

import dataclasses
import errno
import time

import pika
import pytest
from durability_clients import abandon
from pika.exceptions import NackError
from pika_helpers import BlockWatch, connect, count, pump

import storage.sync

pytestmark = pytest.mark.deadline(None)  # every wait here has its own bound
PERSISTENT = pika.BasicProperties(delivery_mode=2)
NEVER_ENOUGH = 10**18


def stays(ch, queue: str, expected: int, seconds: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert count(ch, queue) == expected
        time.sleep(0.05)


def block_publisher(pub: pika.BlockingConnection, watch: BlockWatch, queue: str) -> None:
    """First publish: the connection is blocked at its first publish frame, mid-message (a
    message under way counts as publishing; RabbitMQ 3.10.8 does the same: pika's first
    publish under a disk alarm is not routed), so it and the next five are held."""
    ch = pub.channel()
    ch.basic_publish("", queue, b"first", PERSISTENT)
    pump(pub, lambda: bool(watch.blocked), timeout=3)
    assert watch.blocked == ["low on disk"]
    for n in range(5):
        ch.basic_publish("", queue, f"held-{n}".encode(), PERSISTENT)
    pub.process_data_events(time_limit=0.2)  # written out to the (unread) socket


def test_disk_alarm_blocks_publishers_but_not_consumers(brokers) -> None:
    broker = brokers("--disk-free-limit", str(NEVER_ENOUGH))
    consumer = broker.connect()
    cch = consumer.channel()
    cch.queue_declare("alarm", durable=True)
    pub = broker.connect()
    watch = BlockWatch(pub)
    try:
        block_publisher(pub, watch, "alarm")
        stays(cch, "alarm", 0, 0.8)  # nothing of the blocked publisher landed
        method, _props, body = cch.basic_get("alarm", auto_ack=True)
        assert method is None  # a consuming-only connection still works
        assert watch.unblocked == 0
        assert "disk alarm set" in broker.log()
        consumer.close()
    finally:
        broker.kill()  # the publisher's connection is not being read: do not wait on it
        for conn in (pub, consumer):
            abandon(conn)


def test_disk_alarm_clears_and_the_held_publishes_land(broker_factory) -> None:
    broker = broker_factory(disk_free_limit=NEVER_ENOUGH)
    consumer = connect(broker)
    cch = consumer.channel()
    cch.queue_declare("alarm", durable=True)
    pub = connect(broker)
    watch = BlockWatch(pub)
    block_publisher(pub, watch, "alarm")
    stays(cch, "alarm", 0, 0.5)

    def lower_the_limit() -> None:
        node = broker.node
        node.config = dataclasses.replace(node.config, disk_free_limit=1)

    broker.call(lower_the_limit)
    pump(pub, lambda: watch.unblocked > 0, timeout=3)
    assert watch.unblocked == 1
    deadline = time.monotonic() + 3
    while count(cch, "alarm") < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    got = [cch.basic_get("alarm", auto_ack=True)[2] for _ in range(6)]
    assert got == [b"first"] + [f"held-{n}".encode() for n in range(5)]
    # publishing works normally again
    pch = pub.channel()
    pch.confirm_delivery()
    pch.basic_publish("", "alarm", b"after", PERSISTENT)
    assert cch.basic_get("alarm", auto_ack=True)[2] == b"after"
    pub.close()
    consumer.close()


def test_failed_fsync_nacks_and_the_broker_keeps_serving(broker_factory, monkeypatch) -> None:
    broker = broker_factory(disk_free_limit=0)
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("fsync", durable=True)
    ch.queue_declare("in-ram", durable=False)
    ch.confirm_delivery()
    ch.basic_publish("", "fsync", b"before", PERSISTENT)  # acked: the disk is fine
    time.sleep(0.2)  # let the definitions save (which fsyncs too) finish first

    real_fsync = storage.sync.os.fsync
    calls = []

    def failing_fsync(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.sync.os, "fsync", failing_fsync)
    with pytest.raises(NackError):
        ch.basic_publish("", "fsync", b"during", PERSISTENT)
    assert calls, "the group commit never called fsync"
    # a persistent message to a queue that is not on disk needs no fsync: still acked
    ch.basic_publish("", "in-ram", b"ram", PERSISTENT)

    monkeypatch.setattr(storage.sync.os, "fsync", real_fsync)
    ch.basic_publish("", "fsync", b"after", PERSISTENT)  # acked again (raises if nacked)

    got = []
    for _ in range(5):
        method, _props, body = ch.basic_get("fsync", auto_ack=True)
        if method is None:
            break
        got.append(body)
    assert got in ([b"before", b"during", b"after"], [b"before", b"after"]), got
    assert ch.basic_get("in-ram", auto_ack=True)[2] == b"ram"
    # the broker still takes new connections and declarations
    other = connect(broker)
    other.channel().queue_declare("fsync-2", durable=True)
    other.close()
    conn.close()
