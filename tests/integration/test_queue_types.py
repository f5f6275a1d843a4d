"""Queue types (x-queue-type, x-queue-mode) and quorum-queue rules against RabbitMQ 3.13.

Expected values are from /work/shared/rabbitmq-behaviour.md section 4 and RabbitMQ 3.13's
sources: rabbit_quorum_queue:declare checks auto-delete, then exclusive, then durability;
rabbit_channel refuses a server-named queue of a type that does not allow it
("Cannot declare a server-named queue for type ~tp"); quorum queues refuse global QoS at
basic.consume with a 540 connection error; they count returns in x-delivery-count and drop
(or dead-letter) a message returned more than x-delivery-limit times.
"""

from __future__ import annotations

import asyncio
import time

import aio_pika
import pytest
from pika_helpers import channel_closed, connection_closed, drain, pump

QUORUM = {"x-queue-type": "quorum"}


def _property(prop: str, q: str = "q") -> str:
    return f"PRECONDITION_FAILED - invalid property '{prop}' for queue '{q}' in vhost '/'"


def _invalid(arg: str, suffix: str, q: str = "q") -> str:
    return f"PRECONDITION_FAILED - invalid arg '{arg}' for queue '{q}' in vhost '/': {suffix}"


def assert_no_queue(conn, name: str = "q") -> None:  # type: ignore[no-untyped-def]
    with channel_closed(404, f"NOT_FOUND - no queue '{name}' in vhost '/'"):
        conn.channel().queue_declare(name, passive=True)


# ---- quorum declare rules ---------------------------------------------------------------

def test_quorum_queue_declare_ok(ch):
    ok = ch.queue_declare("q", durable=True, arguments=QUORUM)
    assert (ok.method.queue, ok.method.message_count, ok.method.consumer_count) == ("q", 0, 0)
    ch.basic_publish("", "q", b"x")
    assert drain(ch, "q") == [b"x"]
    ch.queue_declare("q", durable=True, arguments=QUORUM)  # same declaration again


@pytest.mark.parametrize("flags, prop", [
    ({"durable": False}, "non-durable"),
    ({"durable": True, "exclusive": True}, "exclusive-owner"),
    ({"durable": True, "auto_delete": True}, "auto-delete"),
])
def test_quorum_refuses_properties(conn, flags, prop):
    with channel_closed(406, _property(prop)):
        conn.channel().queue_declare("q", arguments=QUORUM, **flags)
    assert_no_queue(conn)


@pytest.mark.parametrize("flags, prop", [
    ({"durable": False, "exclusive": True}, "exclusive-owner"),
    ({"durable": False, "auto_delete": True}, "auto-delete"),
    ({"durable": True, "exclusive": True, "auto_delete": True}, "auto-delete"),
])
def test_quorum_property_check_order(conn, flags, prop):
    """auto-delete is checked first, then exclusive, then durability."""
    with channel_closed(406, _property(prop)):
        conn.channel().queue_declare("q", arguments=QUORUM, **flags)


def test_server_named_quorum_queue_is_refused(conn):
    with channel_closed(406, "PRECONDITION_FAILED - Cannot declare a server-named queue for "
                             "type rabbit_quorum_queue"):
        conn.channel().queue_declare("", durable=True, arguments=QUORUM)


def test_quorum_with_max_priority_is_refused(conn):
    with channel_closed(406, "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'q' "
                             "in vhost '/' of queue type rabbit_quorum_queue"):
        conn.channel().queue_declare("q", durable=True,
                                     arguments={**QUORUM, "x-max-priority": 5})


def test_redeclare_classic_as_quorum_is_refused(conn):
    ch = conn.channel()
    ch.queue_declare("q", durable=True)
    with channel_closed(406, "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue "
                             "'q' in vhost '/': received the value 'quorum' of type 'longstr' "
                             "but current is none"):
        ch.queue_declare("q", durable=True, arguments=QUORUM)


def test_classic_type_equals_no_type(ch):
    ch.queue_declare("q")
    ch.queue_declare("q", arguments={"x-queue-type": "classic"})
    ch.queue_declare("q2", arguments={"x-queue-type": "classic"})
    ch.queue_declare("q2")


@pytest.mark.parametrize("value, suffix", [
    ("foo", "\"unsupported queue type 'foo'\""),
    (1, "{unacceptable_type,signedint}"),
])
def test_invalid_queue_type(conn, value, suffix):
    with channel_closed(406, _invalid("x-queue-type", suffix)):
        conn.channel().queue_declare("q", durable=True, arguments={"x-queue-type": value})


# ---- x-queue-mode -----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["lazy", "default"])
def test_queue_mode_accepted(ch, mode):
    ch.queue_declare("q", arguments={"x-queue-mode": mode})
    for i in range(3):
        ch.basic_publish("", "q", f"m{i}".encode())
    assert drain(ch, "q") == [b"m0", b"m1", b"m2"]


def test_queue_mode_invalid(conn):
    with channel_closed(406, _invalid("x-queue-mode", "\"unsupported queue mode 'foo'\"")):
        conn.channel().queue_declare("q", arguments={"x-queue-mode": "foo"})


def test_queue_mode_redeclare_mismatch(conn):
    ch = conn.channel()
    ch.queue_declare("q", arguments={"x-queue-mode": "lazy"})
    with channel_closed(406, "PRECONDITION_FAILED - inequivalent arg 'x-queue-mode' for queue "
                             "'q' in vhost '/': received 'default' but current is 'lazy'"):
        ch.queue_declare("q", arguments={"x-queue-mode": "default"})


# ---- global QoS -------------------------------------------------------------------------

def test_quorum_refuses_global_qos_at_consume(conn):
    ch = conn.channel()
    ch.queue_declare("q", durable=True, arguments=QUORUM)
    ch.basic_qos(prefetch_count=10, global_qos=True)  # qos-ok: refused only at consume
    with connection_closed(540, "NOT_IMPLEMENTED - queue 'q' in vhost '/' does not support "
                                "global qos"):
        ch.basic_consume("q", lambda *a: None)
        pump(conn, lambda: False, timeout=3)


def test_quorum_accepts_per_consumer_qos(conn):
    ch = conn.channel()
    ch.queue_declare("q", durable=True, arguments=QUORUM)
    ch.basic_qos(prefetch_count=1)
    for i in range(3):
        ch.basic_publish("", "q", f"m{i}".encode())
    got: list = []
    ch.basic_consume("q", lambda c, m, p, b: got.append(b))
    pump(conn, lambda: got)
    conn.process_data_events(time_limit=0.1)
    assert got == [b"m0"]


# ---- delivery count and limit -----------------------------------------------------------

def test_x_delivery_count_header_on_redelivery(conn):
    ch = conn.channel()
    ch.queue_declare("q", durable=True, arguments=QUORUM)
    ch.basic_publish("", "q", b"x")
    method, props, _ = ch.basic_get("q")
    assert method.redelivered is False
    assert "x-delivery-count" not in (props.headers or {})
    ch.basic_nack(method.delivery_tag, requeue=True)
    method, props, _ = ch.basic_get("q")
    assert method.redelivered is True
    assert props.headers["x-delivery-count"] == 1
    ch.basic_reject(method.delivery_tag, requeue=True)
    method, props, _ = ch.basic_get("q")
    assert props.headers["x-delivery-count"] == 2


def test_x_delivery_count_with_a_consumer(conn):
    ch = conn.channel()
    ch.queue_declare("q", durable=True, arguments=QUORUM)
    ch.basic_publish("", "q", b"x")
    seen: list = []

    def on_message(c, method, props, body):  # type: ignore[no-untyped-def]
        seen.append((method.redelivered, (props.headers or {}).get("x-delivery-count")))
        if len(seen) < 3:
            c.basic_nack(method.delivery_tag, requeue=True)
        else:
            c.basic_ack(method.delivery_tag)

    ch.basic_consume("q", on_message)
    pump(conn, lambda: len(seen) == 3)
    assert seen == [(False, None), (True, 1), (True, 2)]


def test_delivery_limit_drops_the_message(conn):
    ch = conn.channel()
    ch.queue_declare("q", durable=True, arguments={**QUORUM, "x-delivery-limit": 2})
    ch.basic_publish("", "q", b"poison")
    ch.basic_publish("", "q", b"next")
    deliveries = 0
    while True:
        method, _, body = ch.basic_get("q")
        assert method is not None
        if body != b"poison":
            break
        deliveries += 1
        ch.basic_nack(method.delivery_tag, requeue=True)
    assert body == b"next"
    assert deliveries == 3  # first delivery plus two returns; the third return drops it
    ch.basic_ack(method.delivery_tag)
    assert ch.basic_get("q") == (None, None, None)


def _returned(conn, how: str, arguments: dict) -> list:  # type: ignore[no-untyped-def]
    """m1..m4 in q; a second channel takes m1 and m2 and hands them back by ``how``; then
    (body, redelivered, x-delivery-count) of everything ready, in order."""
    ch = conn.channel()
    ch.queue_declare("q", durable=True, arguments={**QUORUM, **arguments})
    for i in range(1, 5):
        ch.basic_publish("", "q", f"m{i}".encode())
    taker = conn.channel()
    m1, m2 = taker.basic_get("q")[0], taker.basic_get("q")[0]
    if how == "nack":
        taker.basic_nack(m1.delivery_tag, requeue=True)
        taker.basic_nack(m2.delivery_tag, requeue=True)
    elif how == "reject, reversed":
        taker.basic_reject(m2.delivery_tag, requeue=True)
        taker.basic_reject(m1.delivery_tag, requeue=True)
    elif how == "nack multiple":
        taker.basic_nack(m2.delivery_tag, multiple=True, requeue=True)
    elif how == "recover":
        taker.basic_recover(requeue=True)
    else:
        taker.close()
    out = []
    while True:
        method, props, body = ch.basic_get("q", auto_ack=True)
        if method is None:
            return out
        out.append((body.decode(), method.redelivered,
                    (props.headers or {}).get("x-delivery-count")))


FRESH = [("m3", False, None), ("m4", False, None)]
RETURNED = [("m1", True, 1), ("m2", True, 1)]


@pytest.mark.parametrize("how", ["nack", "nack multiple", "recover"])
def test_quorum_nack_requeues_at_the_back(conn, how):
    """RabbitMQ 3.10.8 (probed) and 3.13 (documented): a quorum queue without a delivery limit
    puts what the client hands back at the back (its log can be truncated)."""
    assert _returned(conn, how, {}) == FRESH + RETURNED


def test_quorum_returns_go_to_the_back_in_their_order(conn):
    assert _returned(conn, "reject, reversed", {}) == FRESH + RETURNED[::-1]


@pytest.mark.parametrize("how, arguments", [
    ("nack", {"x-delivery-limit": 5}),
    ("close", {}),
])
def test_quorum_requeue_keeps_the_original_position(conn, how, arguments):
    """With a delivery limit, or when the channel goes away: the original position."""
    assert _returned(conn, how, arguments) == RETURNED + FRESH


def test_invalid_delivery_limit(conn):
    with channel_closed(406, _invalid("x-delivery-limit", "{value_negative,-1}")):
        conn.channel().queue_declare("q", durable=True,
                                     arguments={**QUORUM, "x-delivery-limit": -1})


async def test_aio_pika_quorum_redelivery_count(broker):
    conn = await aio_pika.connect(broker.url)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue("q", durable=True, arguments=QUORUM)
        await ch.default_exchange.publish(aio_pika.Message(b"x"), "q")
        first = await asyncio.wait_for(q.get(), 5)
        assert "x-delivery-count" not in first.headers
        await first.nack(requeue=True)
        deadline = time.monotonic() + 3
        while (second := await q.get(fail=False)) is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert second.redelivered
        assert second.headers["x-delivery-count"] == 1
        await second.ack()
