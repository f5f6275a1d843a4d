"""Messages across a restart (SIGTERM, or SIGKILL where noted, then start again on the same
data directory): a TTL that runs out while the broker is down, or during its stop, dead-letters
the message exactly once; a priority queue's messages come back in priority order; a SIGTERM
under load exits cleanly and loses no confirmed, unacked message (and flags the ones
delivered before the stop as redelivered).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time

import pika
import pytest
from durability_clients import PERSISTENT, count, drain_all, start_consumer, start_publisher
from durability_helpers import InProcessBroker, wait_for, wait_saved
from pika_helpers import fanout_pair

pytestmark = pytest.mark.deadline(None)  # every wait here has its own bound


def ttl_queue_and_dlq(ch, ttl_ms: int) -> None:  # type: ignore[no-untyped-def]
    fanout_pair(ch, queue="dead", durable=True)
    ch.queue_declare("q.ttl", durable=True,
                     arguments={"x-message-ttl": ttl_ms, "x-dead-letter-exchange": "dlx"})


def counts(conn: pika.BlockingConnection) -> tuple[int, int]:
    return count(conn, "q.ttl"), count(conn, "dead")


def check_dead_letter(conn: pika.BlockingConnection) -> None:
    method, props, body = conn.channel().basic_get("dead", auto_ack=True)
    assert body == b"expire-me"
    death = props.headers["x-death"][0]
    assert (death["queue"], death["reason"], death["count"]) == ("q.ttl", "expired", 1)


def test_message_expired_across_restart_is_dead_lettered_without_a_consumer(brokers) -> None:
    """A persistent message whose TTL runs out while the broker is down leaves the queue by
    itself at boot and is dead-lettered, as RabbitMQ does when it recovers a queue; nobody has
    to touch the queue first. The TTL (60 s) cannot run out before the stop; the broker comes
    back with its wall clock (in which deadlines are stored) an hour later."""
    broker = brokers()
    with broker.connect() as conn:
        ch = conn.channel()
        ttl_queue_and_dlq(ch, 60_000)
        ch.confirm_delivery()
        ch.basic_publish("", "q.ttl", b"expire-me", PERSISTENT)
        assert counts(conn) == (1, 0)
    wait_saved(broker.data_dir, exchanges=("dlx",), queues=("dead", "q.ttl"), bindings=1)
    broker.clock_offset = 3600.0
    broker.restart()
    with broker.connect() as conn:
        assert counts(conn) == (0, 1), "not dead-lettered once, at boot"
        check_dead_letter(conn)


def test_message_expired_before_a_clean_stop_is_not_dead_lettered_again(brokers) -> None:
    broker = brokers()
    with broker.connect() as conn:
        ch = conn.channel()
        ttl_queue_and_dlq(ch, 50)
        ch.confirm_delivery()
        ch.basic_publish("", "q.ttl", b"expire-me", PERSISTENT)
        wait_for(lambda: counts(conn) == (0, 1), 5, "expired and dead-lettered")
    wait_saved(broker.data_dir, exchanges=("dlx",), queues=("dead", "q.ttl"), bindings=1)
    broker.restart()
    with broker.connect() as conn:
        assert counts(conn) == (0, 1)
        check_dead_letter(conn)


class SlowService:
    """A node service whose stop waits (the stores are closed by then) until ``until``
    (time.monotonic(), the queues' clock) has passed."""

    def __init__(self, until: float) -> None:
        self.until = until

    async def start(self, node) -> None:  # type: ignore[no-untyped-def]
        pass

    async def stop(self) -> None:
        while time.monotonic() < self.until:
            await asyncio.sleep(0.02)


def test_message_due_during_the_stop_is_dead_lettered_once(tmp_path) -> None:
    """The TTL runs out while the node stops, after its stores closed: nothing may expire then
    (it was half saved: the dead letter kept, the source's ack lost, so it was dead-lettered
    again after the restart). It expires once, at the next boot."""
    data = tmp_path / "data"
    ttl = 1.0  # far longer than the stop takes until the stores are closed
    first = InProcessBroker(data)
    try:
        with first.connect() as conn:
            ch = conn.channel()
            ttl_queue_and_dlq(ch, int(ttl * 1000))
            ch.confirm_delivery()
            published = time.monotonic()
            ch.basic_publish("", "q.ttl", b"expire-me", PERSISTENT)
            assert counts(conn) == (1, 0)
        first.node.services.append(SlowService(published + ttl + 0.3))
    finally:
        first.stop()

    second = InProcessBroker(data)
    try:
        with second.connect() as conn:
            assert counts(conn) == (0, 1)
            check_dead_letter(conn)
    finally:
        second.stop()


# ---- priority queue --------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["term", "kill"])
def test_priority_queue_messages_come_back_in_priority_order(brokers, how: str) -> None:
    rng = random.Random(99)
    sent: list[tuple[int, int]] = []  # (number, priority)
    broker = brokers()
    with broker.connect() as conn:
        ch = conn.channel()
        ch.queue_declare("prio", durable=True, arguments={"x-max-priority": 9})
        ch.confirm_delivery()
        for n in range(1, 61):
            prio = rng.choice([None, 0, 1, 3, 5, 7, 9, 12])
            ch.basic_publish("", "prio", str(n).encode(),
                             pika.BasicProperties(delivery_mode=2, priority=prio))
            sent.append((n, min(prio or 0, 9)))
    wait_saved(broker.data_dir, queues=("prio",))
    broker.restart(how)

    with broker.connect() as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        assert count(conn, "prio") == 60
        for n, prio in ((61, 9), (62, 0), (63, 5)):  # new messages slot in after old ones
            ch.basic_publish("", "prio", str(n).encode(),
                             pika.BasicProperties(delivery_mode=2, priority=prio))
            sent.append((n, prio))
        got = []
        for _ in range(len(sent) + 1):
            method, props, body = ch.basic_get("prio", auto_ack=True)
            if method is None:
                break
            assert not method.redelivered
            got.append(int(body))
    expected = [n for n, _ in sorted(sent, key=lambda item: (-item[1], item[0]))]
    assert got == expected


# ---- a clean stop under load --------------------------------------------------------------
def test_sigterm_under_load_stops_cleanly_and_keeps_everything(brokers) -> None:
    """SIGTERM while a publisher (confirms) and an acking consumer are busy: the broker exits 0
    promptly, every confirmed message that was not acked is back, in order, and the ones
    delivered before the stop are flagged. fsync is made slow (0.2 s, a slow disk) so that a
    group-commit batch is surely in flight when the stop runs."""
    broker = brokers(slow_fsync=0.2)
    with broker.connect() as conn:
        conn.channel().queue_declare("busy", durable=True)
    wait_saved(broker.data_dir, queues=("busy",), timeout=5)
    consumer = start_consumer(broker.port, "busy", hold=lambda n: n % 10 == 3)
    publisher = start_publisher(broker.port, "busy")
    time.sleep(0.7)
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGTERM)
    code = broker.wait_exit(5)
    publisher.join(10)
    consumer.join(10)
    assert code == 0, f"exit code {code} on SIGTERM under load:\n{broker.log()[-3000:]}"
    pub, con = publisher.result, consumer.result
    assert pub.confirmed and con.held
    broker.start()
    with broker.connect() as conn:
        got = drain_all(conn, "busy")
    numbers = [n for n, _, _ in got]
    assert numbers == sorted(set(numbers))
    lost = sorted((pub.confirmed - con.acked) - set(numbers))
    assert not lost, f"{len(lost)} confirmed, unacked messages lost: {lost[:10]}"
    flags = {n: redelivered for n, redelivered, _ in got}
    unflagged = sorted(n for n in set(con.delivered) & set(numbers) if not flags[n])
    assert not unflagged, f"delivered before the stop but not flagged: {unflagged[:10]}"
