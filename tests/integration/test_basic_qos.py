"""basic.qos (prefetch) semantics against RabbitMQ 3.10 behaviour.

Reply codes, texts and semantics are from /work/shared/rabbitmq-behaviour.md section 5
("basic.qos"): per-consumer prefetch, global=true shared limit, both together.
"""

from __future__ import annotations

import pytest
from pika_helpers import collect, connect, connection_closed, count, fill, pump, settle


# ---- basic.qos ------------------------------------------------------------------------
def test_prefetch_is_per_consumer(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "qa", 10)
    fill(ch, "qb", 10)
    ch.basic_qos(prefetch_count=2)
    _, a = collect(ch, "qa")
    _, b = collect(ch, "qb")
    pump(conn, lambda: len(a) >= 2 and len(b) >= 2)
    settle(conn)
    assert (len(a), len(b)) == (2, 2)
    conn.close()


def test_prefetch_per_consumer_on_one_queue(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 10)
    ch.basic_qos(prefetch_count=2)
    _, a = collect(ch, "q")
    _, b = collect(ch, "q")
    pump(conn, lambda: len(a) + len(b) >= 4)
    settle(conn)
    assert (len(a), len(b)) == (2, 2)
    assert count(ch, "q") == 6
    conn.close()


def test_global_prefetch_is_shared_by_the_channel(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "qa", 10)
    fill(ch, "qb", 10)
    ch.basic_qos(prefetch_count=2, global_qos=True)
    _, a = collect(ch, "qa")
    _, b = collect(ch, "qb")
    pump(conn, lambda: len(a) + len(b) >= 2)
    settle(conn)
    assert len(a) + len(b) == 2
    # acking one frees exactly one slot
    method = (a or b)[0][0]
    ch.basic_ack(method.delivery_tag)
    pump(conn, lambda: len(a) + len(b) >= 3)
    settle(conn)
    assert len(a) + len(b) == 3
    conn.close()


def test_global_and_per_consumer_prefetch_both_apply(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "qa", 10)
    fill(ch, "qb", 10)
    ch.basic_qos(prefetch_count=3, global_qos=True)
    ch.basic_qos(prefetch_count=1)
    _, a = collect(ch, "qa")
    _, b = collect(ch, "qb")
    pump(conn, lambda: len(a) >= 1 and len(b) >= 1)
    settle(conn)
    assert (len(a), len(b)) == (1, 1)
    ch.basic_ack(a[0][0].delivery_tag)
    pump(conn, lambda: len(a) >= 2)
    settle(conn)
    assert (len(a), len(b)) == (2, 1)
    conn.close()


def test_prefetch_is_fixed_when_the_consumer_is_created(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 10)
    ch.basic_qos(prefetch_count=2)
    _, got = collect(ch, "q")
    pump(conn, lambda: len(got) >= 2)
    ch.basic_qos(prefetch_count=5)
    settle(conn)
    assert len(got) == 2
    ch.basic_ack(got[1][0].delivery_tag, multiple=True)
    pump(conn, lambda: len(got) >= 4)
    settle(conn)
    assert len(got) == 4
    conn.close()


def test_ack_releases_the_next_message(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 3)
    ch.basic_qos(prefetch_count=1)
    _, got = collect(ch, "q")
    for n in range(1, 4):
        pump(conn, lambda n=n: len(got) >= n)
        settle(conn, 0.1)
        assert len(got) == n
        ch.basic_ack(got[-1][0].delivery_tag)
    assert [body for _, _, body in got] == [b"m0", b"m1", b"m2"]
    assert [m.delivery_tag for m, _, _ in got] == [1, 2, 3]
    conn.close()


def test_prefetch_size_is_not_implemented(broker):
    conn = connect(broker)
    ch = conn.channel()
    with connection_closed(540, "NOT_IMPLEMENTED - prefetch_size!=0 (1000)"):
        ch.basic_qos(prefetch_size=1000)
    assert conn.is_closed


@pytest.mark.parametrize("count_, global_", [(10, True), (0, False), (65535, False),
                                             (0, True)])
def test_qos_values_accepted(broker, count_, global_):
    conn = connect(broker)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=count_, global_qos=global_)
    assert ch.is_open
    ch.queue_declare("q")  # the channel still answers
    conn.close()
