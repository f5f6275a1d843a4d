"""basic.ack / nack / reject / recover and requeue order against RabbitMQ 3.10 behaviour.

Reply codes and texts are from /work/shared/rabbitmq-behaviour.md section 5. ack, nack and
reject have no reply, so a channel error is surfaced by the next synchronous call.
"""

from __future__ import annotations

import pytest
from pika_helpers import (
    connect,
    connection_closed,
    count,
    expect_channel_error,
    fill,
    pump,
    settle,
)


def get(ch, queue: str, **kw):
    method, _, body = ch.basic_get(queue, **kw)
    assert method is not None, "expected a message, got get-empty"
    return method, body


def drain(ch, queue: str) -> list[tuple[bytes, bool]]:
    """Get everything left (no-ack): [(body, redelivered), ...]."""
    out = []
    while True:
        method, _, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append((body, method.redelivered))


# ---- unknown / stale delivery tags ------------------------------------------------------
def test_ack_unknown_tag(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.basic_ack(99)
    expect_channel_error(ch, 406, "PRECONDITION_FAILED - unknown delivery tag 99")
    assert conn.is_open
    conn.channel().queue_declare("still-works")
    conn.close()


def test_ack_tag_zero_not_multiple(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.basic_ack(0, multiple=False)
    expect_channel_error(ch, 406, "PRECONDITION_FAILED - unknown delivery tag 0")
    conn.close()


def test_double_ack(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 1)
    method, _ = get(ch, "q")
    assert method.delivery_tag == 1
    ch.basic_ack(1)
    ch.basic_ack(1)
    expect_channel_error(ch, 406, "PRECONDITION_FAILED - unknown delivery tag 1")
    conn.close()


@pytest.mark.parametrize("acks, unknown", [
    ([(5, True)], 5),
    ([(1, False), (1, True)], 1),
], ids=["beyond-outstanding", "of-an-already-acked-tag"])
def test_ack_multiple_of_an_unknown_tag(broker, acks, unknown):
    """Two messages outstanding (tags 1 and 2); ``acks``: (tag, multiple) in order."""
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 2)
    get(ch, "q")
    get(ch, "q")
    for tag, multiple in acks:
        ch.basic_ack(tag, multiple=multiple)
    expect_channel_error(ch, 406, f"PRECONDITION_FAILED - unknown delivery tag {unknown}")
    conn.close()


def test_nack_and_reject_unknown_tags(broker):
    conn = connect(broker)
    for send, text in [
        (lambda c: c.basic_nack(7), "PRECONDITION_FAILED - unknown delivery tag 7"),
        (lambda c: c.basic_nack(9, multiple=True), "PRECONDITION_FAILED - unknown delivery tag 9"),
        (lambda c: c.basic_reject(7), "PRECONDITION_FAILED - unknown delivery tag 7"),
        (lambda c: c.basic_reject(0), "PRECONDITION_FAILED - unknown delivery tag 0"),
    ]:
        ch = conn.channel()
        send(ch)
        expect_channel_error(ch, 406, text)
    conn.close()


def test_ack_on_another_channel(broker):
    conn = connect(broker)
    ch1, ch2 = conn.channel(), conn.channel()
    fill(ch1, "q", 1)
    method, _ = get(ch1, "q")
    ch2.basic_ack(method.delivery_tag)
    expect_channel_error(ch2, 406, "PRECONDITION_FAILED - unknown delivery tag 1")
    ch1.basic_ack(method.delivery_tag)  # still outstanding on ch1
    ch1.basic_qos(prefetch_count=0)
    conn.close()


# ---- successful settlement --------------------------------------------------------------
def test_ack_multiple_acks_up_to_the_tag(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 3)
    tags = [get(ch, "q")[0].delivery_tag for _ in range(3)]
    assert tags == [1, 2, 3]
    ch.basic_ack(2, multiple=True)
    ch.basic_ack(2)  # 2 is settled now
    expect_channel_error(ch, 406, "PRECONDITION_FAILED - unknown delivery tag 2")
    ch = conn.channel()
    assert drain(ch, "q") == [(b"m2", True)]  # only tag 3 was left unacked
    conn.close()


def test_ack_zero_multiple_acks_everything(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.basic_ack(0, multiple=True)  # nothing outstanding: accepted silently
    ch.basic_qos(prefetch_count=0)
    fill(ch, "q", 3)
    for _ in range(3):
        get(ch, "q")
    ch.basic_ack(0, multiple=True)
    ch.basic_ack(3)
    expect_channel_error(ch, 406, "PRECONDITION_FAILED - unknown delivery tag 3")
    ch = conn.channel()
    assert count(ch, "q") == 0
    conn.close()


@pytest.mark.parametrize("how", ["nack", "reject"])
def test_requeue_sets_redelivered_and_new_tag(broker, how):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 1)
    method, body = get(ch, "q")
    assert (body, method.redelivered, method.delivery_tag) == (b"m0", False, 1)
    if how == "nack":
        ch.basic_nack(1, requeue=True)
    else:
        ch.basic_reject(1, requeue=True)
    method, body = get(ch, "q")
    assert (body, method.redelivered, method.delivery_tag) == (b"m0", True, 2)
    ch.basic_ack(2)
    assert count(ch, "q") == 0
    conn.close()


def test_requeued_messages_keep_queue_order(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 4)
    assert [get(ch, "q")[1] for _ in range(3)] == [b"m0", b"m1", b"m2"]
    ch.basic_nack(2, requeue=True)  # m1
    ch.basic_nack(1, requeue=True)  # m0
    got = [get(ch, "q", auto_ack=True) for _ in range(3)]
    assert [(body, m.redelivered) for m, body in got] == \
        [(b"m0", True), (b"m1", True), (b"m3", False)]
    conn.close()


def test_nack_multiple_requeues_in_order(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 3)
    for _ in range(3):
        get(ch, "q")
    ch.basic_nack(2, multiple=True, requeue=True)
    assert drain(ch, "q") == [(b"m0", True), (b"m1", True)]
    ch.basic_ack(3)
    ch.basic_qos(prefetch_count=0)
    conn.close()


def test_channel_close_requeues_in_original_order(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 3)
    get(ch, "q")
    get(ch, "q")
    ch.close()
    ch = conn.channel()
    assert drain(ch, "q") == [(b"m0", True), (b"m1", True), (b"m2", False)]
    conn.close()


def test_channel_close_restores_message_count(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 2)
    get(ch, "q")
    assert count(ch, "q") == 1
    ch.close()
    assert count(conn.channel(), "q") == 2
    conn.close()


def test_connection_close_requeues(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 3)
    get(ch, "q")
    get(ch, "q")
    conn.close()
    other = connect(broker)
    ch = other.channel()
    pump(other, lambda: count(ch, "q") == 3)
    assert drain(ch, "q") == [(b"m0", True), (b"m1", True), (b"m2", False)]
    other.close()


def test_consumer_unacked_requeued_when_channel_closes(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 3)
    got: list = []
    ch.basic_consume("q", lambda _c, m, _p, b: got.append(b))
    pump(conn, lambda: len(got) >= 3)
    ch.close()
    ch = conn.channel()
    assert drain(ch, "q") == [(b"m0", True), (b"m1", True), (b"m2", True)]
    conn.close()


def test_reject_without_requeue_drops(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 2)
    get(ch, "q")
    ch.basic_reject(1, requeue=False)
    ch.basic_nack(0, multiple=True, requeue=False)  # nothing outstanding
    assert count(ch, "q") == 1
    ch.close()
    ch = conn.channel()
    assert drain(ch, "q") == [(b"m1", False)]
    conn.close()


def test_nack_without_requeue_drops(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 2)
    get(ch, "q")
    get(ch, "q")
    ch.basic_nack(2, multiple=True, requeue=False)
    ch.close()
    assert count(conn.channel(), "q") == 0
    conn.close()


# ---- basic.recover ----------------------------------------------------------------------
def test_recover_requeue_redelivers_to_consumer(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 2)
    got: list = []
    ch.basic_consume("q", lambda _c, m, _p, b: got.append((m.delivery_tag, m.redelivered, b)))
    pump(conn, lambda: len(got) >= 2)
    assert got == [(1, False, b"m0"), (2, False, b"m1")]
    ch.basic_recover(requeue=True)
    pump(conn, lambda: len(got) >= 4)
    assert got[2:] == [(3, True, b"m0"), (4, True, b"m1")]
    ch.basic_ack(1)  # the old tags are gone
    expect_channel_error(ch, 406, "PRECONDITION_FAILED - unknown delivery tag 1")
    conn.close()


def test_recover_requeue_after_get(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 2)
    get(ch, "q")
    ch.basic_recover(requeue=True)
    assert drain(ch, "q") == [(b"m0", True), (b"m1", False)]
    conn.close()


def test_recover_without_requeue_is_not_implemented(broker):
    conn = connect(broker)
    ch = conn.channel()
    with connection_closed(540, "NOT_IMPLEMENTED - requeue=false"):
        ch.basic_recover(requeue=False)
    assert conn.is_closed


def test_ack_then_more_deliveries_with_prefetch(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 4)
    ch.basic_qos(prefetch_count=2)
    got: list = []
    ch.basic_consume("q", lambda _c, m, _p, b: got.append((m.delivery_tag, b)))
    pump(conn, lambda: len(got) >= 2)
    settle(conn)
    assert len(got) == 2
    ch.basic_ack(got[-1][0], multiple=True)
    pump(conn, lambda: len(got) >= 4)
    assert got == [(1, b"m0"), (2, b"m1"), (3, b"m2"), (4, b"m3")]
    conn.close()
