"""SIGKILL the broker subprocess in the middle of publishing (and consuming), restart it on the
same data directory, and check what the broker promised: every confirmed persistent message is
back, in publish order, exactly once; delivered-but-unacked ones come back redelivered=True;
acked ones may only reappear flagged redelivered (at-least-once).

The kill point is random but seeded (printed with -s); each scenario runs with three seeds.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import pika
import pytest
from durability_clients import (
    abandon,
    body_for,
    drain_all,
    number_of,
    start_consumer,
    start_publisher,
)
from durability_helpers import wait_saved

pytestmark = pytest.mark.deadline(None)  # every wait here has its own bound
SEEDS = [20240601, 7, 1234]


def declare(broker, queue: str, **arguments) -> None:  # type: ignore[no-untyped-def]
    with broker.connect() as conn:
        conn.channel().queue_declare(queue, durable=True, arguments=arguments or None)
    wait_saved(broker.data_dir, queues=(queue,))


def kill_point(seed: int) -> float:
    delay = random.Random(seed).uniform(0.2, 1.0)
    print(f"seed {seed}: SIGKILL {delay:.3f} s into publishing")
    return delay


def check_log_order(numbers: list[int], sent: int) -> None:
    dupes = sorted(n for n, count in Counter(numbers).items() if count > 1)
    assert not dupes, f"duplicated after restart: {dupes[:20]}"
    assert numbers == sorted(numbers), "recovered messages are out of publish order"
    assert all(1 <= n <= sent for n in numbers), "a message that was never published"


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_while_publishing_keeps_every_confirmed_message(brokers, seed: int) -> None:
    delay = kill_point(seed)
    broker = brokers()
    declare(broker, "crash")
    publisher = start_publisher(broker.port, "crash")
    time.sleep(delay)
    broker.kill()
    publisher.join(10)
    assert not publisher.is_alive(), "publisher did not notice the broker died"
    res = publisher.result
    print(f"sent {res.sent}, confirmed {len(res.confirmed)}, nacked {len(res.nacked)}")
    assert res.confirmed, f"nothing confirmed before the kill ({res.error})"
    assert not res.nacked, f"nacked without any disk trouble: {sorted(res.nacked)[:10]}"
    # confirms are cumulative: the confirmed set is always a prefix of what was sent
    assert res.confirmed == set(range(1, max(res.confirmed) + 1))

    broker.start()
    with broker.connect() as conn:
        got = drain_all(conn, "crash")
    numbers = [n for n, _, _ in got]
    check_log_order(numbers, res.sent)
    lost = sorted(res.confirmed - set(numbers))
    assert not lost, f"{len(lost)} confirmed messages lost, first {lost[:10]}"
    flagged = [n for n, redelivered, _ in got if redelivered]
    assert not flagged, f"never-delivered messages flagged redelivered: {flagged[:10]}"
    for n, _, props in got[:50]:
        assert props.delivery_mode == 2 and props.message_id == str(n)


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_while_publishing_and_consuming_is_at_least_once(brokers, seed: int) -> None:
    delay = kill_point(seed)
    broker = brokers()
    declare(broker, "crash")
    consumer = start_consumer(broker.port, "crash", hold=lambda n: n % 10 == 3)
    publisher = start_publisher(broker.port, "crash")
    time.sleep(delay)
    broker.kill()
    publisher.join(10)
    consumer.join(10)
    assert not publisher.is_alive() and not consumer.is_alive()
    pub, con = publisher.result, consumer.result
    delivered = set(con.delivered)
    print(f"sent {pub.sent}, confirmed {len(pub.confirmed)}, delivered {len(delivered)}, "
          f"acked {len(con.acked)}, held unacked {len(con.held)}")
    assert pub.confirmed and delivered and con.held, (pub.error, con.error)
    assert not pub.nacked
    assert len(delivered) == len(con.delivered), "delivered twice during the run"
    assert not con.redelivered_during_run

    broker.start()
    with broker.connect() as conn:
        got = drain_all(conn, "crash")
    numbers = [n for n, _, _ in got]
    check_log_order(numbers, pub.sent)
    back = set(numbers)
    lost = sorted((pub.confirmed - con.acked) - back)
    assert not lost, f"{len(lost)} confirmed, unacked messages lost, first {lost[:10]}"
    held_lost = sorted((con.held & pub.confirmed) - back)
    assert not held_lost
    flags = {n: redelivered for n, redelivered, _ in got}
    unflagged = sorted(n for n in delivered & back if not flags[n])
    assert not unflagged, (
        f"{len(unflagged)} messages delivered before the kill came back with "
        f"redelivered=False (acked: {len(set(unflagged) & con.acked)}, unacked: "
        f"{len(set(unflagged) - con.acked)}), first {unflagged[:10]}")


def test_delivered_unacked_message_comes_back_redelivered_after_kill(brokers) -> None:
    broker = brokers()
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare("unacked", durable=True)
    wait_saved(broker.data_dir, queues=("unacked",))
    ch.confirm_delivery()
    for n in range(1, 7):
        ch.basic_publish("", "unacked", body_for(n), pika.BasicProperties(delivery_mode=2),
                         mandatory=True)
    taken = []
    for _ in range(3):
        method, _props, body = ch.basic_get("unacked", auto_ack=False)
        assert method is not None and not method.redelivered
        taken.append((method.delivery_tag, number_of(body)))
    assert [n for _, n in taken] == [1, 2, 3]
    ch.basic_ack(taken[0][0])  # settle message 1 only
    ch.queue_declare("unacked", passive=True)  # a round trip after the ack
    broker.kill()
    abandon(conn)

    broker.start()
    with broker.connect() as conn:
        got = drain_all(conn, "unacked")
    by_number = {n: redelivered for n, redelivered, _ in got}
    numbers = [n for n, _, _ in got]
    assert numbers in ([1, 2, 3, 4, 5, 6], [2, 3, 4, 5, 6]), numbers
    assert by_number[2] is True and by_number[3] is True, by_number
    assert by_number.get(1, True) is True, "acked message 1 came back unflagged"
    assert [by_number[n] for n in (4, 5, 6)] == [False, False, False]


def test_delivery_is_marked_on_disk_before_the_client_sees_it(brokers) -> None:
    """Deterministic version of the race the at-least-once test can hit: while a group-commit
    fsync is in flight (made slow here: 0.3 s), a consumer gets a confirmed message and the
    broker is SIGKILLed 0.1 s later. The client saw the delivery, so after the restart the
    message must come back with redelivered=True."""
    broker = brokers(slow_fsync=0.3)
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare("marks", durable=True)
    ch.queue_declare("other", durable=True)
    wait_saved(broker.data_dir, queues=("marks", "other"), timeout=5)
    ch.confirm_delivery()
    ch.basic_publish("", "marks", body_for(1), pika.BasicProperties(delivery_mode=2))
    loose = conn.channel()  # no confirms: only starts a group-commit batch
    loose.basic_publish("", "other", b"start a slow fsync", pika.BasicProperties(delivery_mode=2))
    conn.process_data_events(time_limit=0.05)  # the batch (and its 0.3 s fsync) is running
    method, _props, body = ch.basic_get("marks", auto_ack=False)
    assert method is not None and number_of(body) == 1 and not method.redelivered
    time.sleep(0.1)
    broker.kill()
    abandon(conn)

    broker.start()
    with broker.connect() as conn:
        got = drain_all(conn, "marks")
    assert [(n, redelivered) for n, redelivered, _ in got] == [(1, True)], (
        "a message the client received before the crash came back as never delivered")


def test_confirmed_message_in_a_queue_declared_just_before_survives_kill(brokers) -> None:
    """The queue's declaration must be on disk before a message in it is confirmed: recovery
    drops the directory of a queue the saved definitions do not know."""
    broker = brokers(slow_definitions=1.0)
    conn = broker.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("fresh.q", durable=True)
    ch.basic_publish("", "fresh.q", b"confirmed", pika.BasicProperties(delivery_mode=2),
                     mandatory=True)
    broker.kill()
    broker.start()
    conn = broker.connect()
    ch = conn.channel()
    method, _props, body = ch.basic_get("fresh.q", auto_ack=True)
    assert body == b"confirmed", "a confirmed message was lost with its queue"
    conn.close()
