"""basic.consume / basic.cancel against RabbitMQ 3.10 behaviour.

Reply codes and texts are from /work/shared/rabbitmq-behaviour.md section 5. Things the
clients refuse to send (an empty consumer tag, a reused tag) go over raw pamqp frames.
"""

from __future__ import annotations

import re

from pamqp import commands as C
from pika_helpers import channel_closed, collect, connect, count, fill, pump, settle
from raw_client import RawClient

IN_EXCLUSIVE_USE = "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use"


# ---- basic.consume / basic.cancel ------------------------------------------------------
def test_server_generates_consumer_tag(broker):
    raw = RawClient.open(broker.port)
    raw.declare("q")
    tags = []
    for _ in range(2):
        raw.send(1, C.Basic.Consume(queue="q", consumer_tag=""))
        tags.append(raw.expect(C.Basic.ConsumeOk).consumer_tag)
    for tag in tags:
        assert re.fullmatch(r"amq\.ctag-[A-Za-z0-9_-]{22}", tag), tag
    assert tags[0] != tags[1]
    raw.close()


def test_client_tag_with_amq_ctag_prefix_accepted(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 1)
    tag, got = collect(ch, "q", consumer_tag="amq.ctag-mine")
    assert tag == "amq.ctag-mine"
    pump(conn, lambda: got)
    assert got[0][0].consumer_tag == "amq.ctag-mine"
    conn.close()


def test_reused_consumer_tag_closes_the_connection(broker):
    raw = RawClient.open(broker.port)
    raw.declare("q")
    raw.send(1, C.Basic.Consume(queue="q", consumer_tag="dup"))
    assert raw.expect(C.Basic.ConsumeOk).consumer_tag == "dup"
    raw.send(1, C.Basic.Consume(queue="q", consumer_tag="dup"))
    raw.expect_close(530, "NOT_ALLOWED - attempt to reuse consumer tag 'dup'", (60, 20),
                     channel=0)
    raw.send(0, C.Connection.CloseOk())
    raw.close()


def test_same_consumer_tag_on_two_channels(broker):
    conn = connect(broker)
    ch1, ch2 = conn.channel(), conn.channel()
    ch1.queue_declare("q")
    t1, got1 = collect(ch1, "q", consumer_tag="dup")
    t2, got2 = collect(ch2, "q", consumer_tag="dup")
    assert t1 == t2 == "dup"
    for i in range(2):
        ch1.basic_publish("", "q", f"m{i}".encode())
    pump(conn, lambda: len(got1) + len(got2) >= 2)
    assert (len(got1), len(got2)) == (1, 1)
    conn.close()


def test_exclusive_consume_refused_when_another_consumer_exists(broker):
    conn = connect(broker)
    ch1, ch2 = conn.channel(), conn.channel()
    ch1.queue_declare("q")
    collect(ch1, "q")
    with channel_closed(403, IN_EXCLUSIVE_USE):
        ch2.basic_consume("q", lambda *a: None, exclusive=True)
    # same channel too
    with channel_closed(403, IN_EXCLUSIVE_USE):
        ch1.basic_consume("q", lambda *a: None, exclusive=True)
    conn.close()


def test_consume_refused_while_exclusive_consumer_exists(broker):
    conn = connect(broker)
    other = connect(broker)
    ch1 = conn.channel()
    ch1.queue_declare("q")
    collect(ch1, "q", exclusive=True)
    ch2 = other.channel()
    with channel_closed(403, IN_EXCLUSIVE_USE):
        ch2.basic_consume("q", lambda *a: None)
    # basic.get is still allowed
    ch3 = other.channel()
    assert ch3.basic_get("q") == (None, None, None)
    other.close()
    conn.close()


def test_cancel_stops_deliveries(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 1)
    tag, got = collect(ch, "q", auto_ack=True)
    pump(conn, lambda: got)
    ch.basic_cancel(tag)
    ch.basic_publish("", "q", b"after1")
    ch.basic_publish("", "q", b"after2")
    settle(conn)
    assert [b for _, _, b in got] == [b"m0"]
    assert count(ch, "q") == 2
    conn.close()


def test_cancel_of_unknown_tag_is_ok(broker):
    raw = RawClient.open(broker.port)
    raw.send(1, C.Basic.Cancel(consumer_tag="nope"))
    assert raw.expect(C.Basic.CancelOk).consumer_tag == "nope"
    raw.declare("q")  # channel still open
    raw.close()


def test_no_ack_consumer(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 3)
    ch.basic_qos(prefetch_count=1)  # prefetch does not limit no-ack consumers
    _, got = collect(ch, "q", auto_ack=True)
    pump(conn, lambda: len(got) >= 3)
    assert [b for _, _, b in got] == [b"m0", b"m1", b"m2"]
    ch.close()
    ch = conn.channel()
    assert count(ch, "q") == 0  # nothing was held unacked
    conn.close()


def test_round_robin_between_consumers(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    _, a = collect(ch, "q", auto_ack=True)
    _, b = collect(ch, "q", auto_ack=True)
    for i in range(6):
        ch.basic_publish("", "q", f"m{i}".encode())
    pump(conn, lambda: len(a) + len(b) >= 6)
    bodies_a = {body for _, _, body in a}
    bodies_b = {body for _, _, body in b}
    evens, odds = {b"m0", b"m2", b"m4"}, {b"m1", b"m3", b"m5"}
    assert {frozenset(bodies_a), frozenset(bodies_b)} == {frozenset(evens), frozenset(odds)}
    conn.close()


def test_consume_on_missing_queue(broker):
    conn = connect(broker)
    ch = conn.channel()
    with channel_closed(404, "NOT_FOUND - no queue 'cat-missing-q' in vhost '/'"):
        ch.basic_consume("cat-missing-q", lambda *a: None)
    assert conn.is_open
    conn.close()


def test_consume_with_invalid_x_priority(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    with channel_closed(406, "PRECONDITION_FAILED - invalid arg 'x-priority' for queue 'q' in "
                             "vhost '/': \"expected integer, got longstr\""):
        ch.basic_consume("q", lambda *a: None, arguments={"x-priority": "abc"})
    conn.close()


def test_higher_priority_consumer_gets_everything(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    ch.basic_qos(prefetch_count=100)
    _, low = collect(ch, "q", arguments={"x-priority": 1})
    _, high = collect(ch, "q", arguments={"x-priority": 10})
    for i in range(6):
        ch.basic_publish("", "q", f"m{i}".encode())
    pump(conn, lambda: len(low) + len(high) >= 6)
    assert (len(low), len(high)) == (0, 6)
    conn.close()
