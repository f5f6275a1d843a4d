"""Message TTL, queue expiry and dead-lettering (x-death) against RabbitMQ 3.13 behaviour.

Expected values are from /work/shared/rabbitmq-behaviour.md sections 4 (argument validation),
5 (expiration property) and 10 (dead-lettering and x-death); maxlen dead-lettering is in
test_limits.py. The x-death checks ignore the ``x-last-death-*`` headers, which RabbitMQ 3.13
may add and 3.10 does not.
"""

from __future__ import annotations

import datetime
import struct
import time

import aio_pika
import pika
import pytest
from pamqp import commands as C
from pika_helpers import (
    INVALID_EXPIRATIONS,
    PROPS,
    aio_get_within,
    assert_single_death,
    channel_closed,
    check_time,
    collect,
    count,
    death_headers,
    drain,
    fanout_pair,
    get_within,
)
from raw_client import RawClient

NOT_FOUND_Q = "NOT_FOUND - no queue '{}' in vhost '/'"
FIRST_KEYS = ["count", "reason", "queue", "time", "exchange", "routing-keys"]


# ---- argument and property validation ---------------------------------------------------

@pytest.mark.parametrize("arg, value, suffix", [
    ("x-message-ttl", -1, "{value_negative,-1}"),
    ("x-message-ttl", "abc", '"expected integer, got longstr"'),
    ("x-expires", 0, "{value_zero,0}"),
    ("x-expires", -1, "{value_negative,-1}"),
])
def test_invalid_ttl_argument(conn, arg, value, suffix):
    with channel_closed(406, f"PRECONDITION_FAILED - invalid arg '{arg}' for queue 'q' in "
                             f"vhost '/': {suffix}"):
        conn.channel().queue_declare("q", arguments={arg: value})


def test_message_ttl_as_double_is_refused(broker):
    """pika and pamqp cannot encode a 'd' (double) field value, so the frame is built here."""
    raw = RawClient.open(broker.port)
    try:
        key = b"x-message-ttl"
        table = bytes([len(key)]) + key + b"d" + struct.pack(">d", 1.5)
        payload = (b"\x00\x32\x00\x0a\x00\x00\x01q\x00" + struct.pack(">I", len(table))
                   + table)
        raw.send_raw(struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce")
        raw.expect_close(406, "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in "
                              "vhost '/': \"expected integer, got double\"", (50, 10),
                         kind=C.Channel.Close)
    finally:
        raw.close()


@pytest.mark.parametrize("value", [0, 5000000000])
def test_message_ttl_accepted(ch, value):
    ch.queue_declare("q", arguments={"x-message-ttl": value})


@pytest.mark.parametrize("expiration, suffix", INVALID_EXPIRATIONS)
def test_invalid_expiration_property(conn, expiration, suffix):
    ch = conn.channel()
    ch.queue_declare("q")
    with channel_closed(406, f"PRECONDITION_FAILED - invalid expiration '{expiration}': "
                             f"{suffix}"):
        ch.basic_publish("", "q", b"x", pika.BasicProperties(expiration=expiration))
        ch.queue_declare("q", passive=True)
    assert count(conn.channel(), "q") == 0


# ---- expiry (the rules themselves: tests/core/test_core_ttl.py, on a fake clock) ---------

def test_expiration_zero_is_dropped_without_a_consumer(ch):
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"now", pika.BasicProperties(expiration="0"))
    assert ch.basic_get("q") == (None, None, None)


def test_expiration_zero_goes_to_a_waiting_consumer(conn):
    """RabbitMQ 3.10.8: a consumer that can take it when it is published gets it; one without
    credit does not, and the message is dead-lettered (expired) at once."""
    ch = conn.channel()
    fanout_pair(ch)
    ch.queue_declare("q", arguments={"x-dead-letter-exchange": "dlx"})
    ch.basic_qos(prefetch_count=1)
    _tag, got = collect(ch, "q")
    ch.basic_publish("", "q", b"now", pika.BasicProperties(expiration="0"))
    deadline = time.monotonic() + 3
    while not got and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert [body for _m, _p, body in got] == [b"now"]
    ch.basic_publish("", "q", b"no credit", pika.BasicProperties(expiration="0"))
    method, props, body = get_within(ch, "dlq")
    assert body == b"no credit" and props.headers["x-death"][0]["reason"] == "expired"
    assert count(ch, "q") == 0 and drain(ch, "dlq") == []
    assert [body for _m, _p, body in got] == [b"now"]


def test_x_expires_removes_an_unused_queue(broker, conn):
    ch = conn.channel()
    ch.queue_declare("q", arguments={"x-expires": 50})
    deadline = time.monotonic() + 3
    while broker.call(lambda: "q" in broker.server.vhosts["/"].queues):
        assert time.monotonic() < deadline, "x-expires did not remove the queue"
        time.sleep(0.01)
    with channel_closed(404, NOT_FOUND_Q.format("q")):
        ch.queue_declare("q", passive=True)


# ---- dead-lettering: reasons and x-death ------------------------------------------------

@pytest.mark.parametrize("how", ["reject", "nack"])
def test_rejected_message_is_dead_lettered_with_x_death(ch, how):
    fanout_pair(ch)
    ch.queue_declare("src", arguments={"x-dead-letter-exchange": "dlx"})
    ch.basic_publish("", "src", b"body", pika.BasicProperties(**PROPS))
    method, _, _ = ch.basic_get("src")
    if how == "reject":
        ch.basic_reject(method.delivery_tag, requeue=False)
    else:
        ch.basic_nack(method.delivery_tag, requeue=False)
    method, props, body = get_within(ch, "dlq")
    assert (method.exchange, method.routing_key, method.redelivered, body) == \
        ("dlx", "src", False, b"body")
    assert_single_death(props, "rejected", "src", "", ["src"])
    assert count(ch, "src") == 0


def test_queue_ttl_expiry_is_dead_lettered(ch):
    fanout_pair(ch)
    ch.queue_declare("src", arguments={"x-dead-letter-exchange": "dlx", "x-message-ttl": 50})
    ch.basic_publish("", "src", b"body", pika.BasicProperties(**PROPS))
    method, props, body = get_within(ch, "dlq")
    assert (method.exchange, method.routing_key, body) == ("dlx", "src", b"body")
    assert_single_death(props, "expired", "src", "", ["src"])
    assert props.expiration is None


def test_per_message_expiry_records_original_expiration(ch):
    fanout_pair(ch)
    ch.queue_declare("src", arguments={"x-dead-letter-exchange": "dlx"})
    ch.basic_publish("", "src", b"body", pika.BasicProperties(expiration="50", **PROPS))
    method, props, body = get_within(ch, "dlq")
    assert body == b"body"
    assert_single_death(props, "expired", "src", "", ["src"], **{"original-expiration": "50"})
    assert props.expiration is None


@pytest.mark.parametrize("expiration, keys", [
    (None, FIRST_KEYS), ("50", [*FIRST_KEYS, "original-expiration"])])
def test_first_x_death_entry_key_order(ch, expiration, keys):
    """Section 10: the first entry written is count, reason, queue, time, exchange,
    routing-keys[, original-expiration] - in that order, not sorted."""
    fanout_pair(ch)
    ch.queue_declare("src", arguments={"x-dead-letter-exchange": "dlx"})
    ch.basic_publish("", "src", b"body", pika.BasicProperties(expiration=expiration))
    if expiration is None:
        method, _, _ = ch.basic_get("src")
        ch.basic_reject(method.delivery_tag, requeue=False)
    _, props, _ = get_within(ch, "dlq")
    assert list(props.headers["x-death"][0]) == keys


def test_quorum_delivery_limit_dead_letters(ch):
    fanout_pair(ch)
    ch.queue_declare("src", durable=True, arguments={
        "x-queue-type": "quorum", "x-delivery-limit": 1, "x-dead-letter-exchange": "dlx"})
    ch.basic_publish("", "src", b"body", pika.BasicProperties(**PROPS))
    for _ in range(2):
        method, _, _ = get_within(ch, "src", auto_ack=False)
        ch.basic_nack(method.delivery_tag, requeue=True)
    method, props, body = get_within(ch, "dlq")
    assert body == b"body"
    assert props.headers["x-death"][0]["reason"] == "delivery_limit"
    assert props.headers["x-first-death-reason"] == "delivery_limit"
    assert props.headers["x-first-death-queue"] == "src"
    assert ch.basic_get("src") == (None, None, None)


def test_same_queue_same_reason_bumps_count(ch):
    """A rejection cycle is not dropped; the repeated (queue, reason) bumps the count."""
    ch.queue_declare("q", arguments={"x-dead-letter-exchange": "",
                                     "x-dead-letter-routing-key": "q"})
    ch.basic_publish("", "q", b"body", pika.BasicProperties(**PROPS))
    for _ in range(2):
        method, _, _ = get_within(ch, "q", auto_ack=False)
        ch.basic_reject(method.delivery_tag, requeue=False)
    method, props, body = get_within(ch, "q")
    assert (method.exchange, method.routing_key, body) == ("", "q", b"body")
    headers = death_headers(props.headers)
    deaths = headers.pop("x-death")
    assert len(deaths) == 1, deaths
    check_time(deaths[0]["time"])
    assert {k: v for k, v in deaths[0].items() if k != "time"} == {
        "count": 2, "reason": "rejected", "queue": "q", "exchange": "",
        "routing-keys": ["q"]}
    assert headers == {"h": "v", "x-first-death-exchange": "", "x-first-death-queue": "q",
                       "x-first-death-reason": "rejected"}


def test_two_hops_newest_entry_first(ch):
    for name in ("dlx1", "dlx2"):
        ch.exchange_declare(name, "fanout")
    ch.queue_declare("src", arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "dlx1",
                                       "x-dead-letter-routing-key": "new-rk"})
    ch.queue_declare("hop1", arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "dlx2"})
    ch.queue_bind("hop1", "dlx1")
    ch.queue_declare("final")
    ch.queue_bind("final", "dlx2")
    ch.basic_publish("", "src", b"body", pika.BasicProperties(**PROPS))
    method, props, body = get_within(ch, "final")
    assert (method.exchange, method.routing_key, body) == ("dlx2", "new-rk", b"body")
    headers = death_headers(props.headers)
    deaths = headers.pop("x-death")
    assert len(deaths) == 2, deaths
    for entry in deaths:
        check_time(entry["time"])
    assert [{k: v for k, v in d.items() if k != "time"} for d in deaths] == [
        {"count": 1, "reason": "expired", "queue": "hop1", "exchange": "dlx1",
         "routing-keys": ["new-rk"]},
        {"count": 1, "reason": "expired", "queue": "src", "exchange": "",
         "routing-keys": ["src"]},
    ]
    assert headers == {"h": "v", "x-first-death-exchange": "", "x-first-death-queue": "src",
                       "x-first-death-reason": "expired"}


def test_last_death_headers_name_the_newest_death(ch):
    """RabbitMQ 3.13 adds x-last-death-*: the newest death, while x-first-death-* stays."""
    ch.queue_declare("final")
    ch.queue_declare("hop1", arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "",
                                        "x-dead-letter-routing-key": "final"})
    ch.queue_declare("src", arguments={"x-dead-letter-exchange": "",
                                       "x-dead-letter-routing-key": "hop1"})
    ch.basic_publish("", "src", b"body")
    method, _props, _body = get_within(ch, "src", auto_ack=False)
    ch.basic_reject(method.delivery_tag, requeue=False)
    _method, props, _body = get_within(ch, "final")
    deaths = {k: v for k, v in props.headers.items() if k.startswith("x-") and "death-" in k}
    assert deaths == {"x-first-death-exchange": "", "x-first-death-queue": "src",
                      "x-first-death-reason": "rejected", "x-last-death-exchange": "",
                      "x-last-death-queue": "hop1", "x-last-death-reason": "expired"}


def test_original_headers_and_properties_are_preserved(ch):
    fanout_pair(ch)
    ch.queue_declare("src", arguments={"x-dead-letter-exchange": "dlx"})
    stamp = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    headers = {"s": "str", "i": 7, "big": 2**40, "neg": -3, "b": True, "f": {"k": "v"},
               "a": [1, "two"], "t": stamp, "n": None}
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="gzip", headers=headers,
        delivery_mode=2, priority=3, correlation_id="corr", reply_to="back",
        message_id="mid", timestamp=1700000000, type="kind", user_id="guest",
        app_id="app")
    ch.basic_publish("", "src", b"{}", props)
    method, _, _ = ch.basic_get("src")
    ch.basic_reject(method.delivery_tag, requeue=False)
    _, got, body = get_within(ch, "dlq")
    assert body == b"{}"
    for key in ("content_type", "content_encoding", "delivery_mode", "priority",
                "correlation_id", "reply_to", "message_id", "timestamp", "type", "user_id",
                "app_id"):
        assert getattr(got, key) == getattr(props, key), key
    assert got.expiration is None
    assert {k: v for k, v in got.headers.items() if not k.startswith("x-")} == headers


async def test_aio_pika_dead_letter_headers(broker):
    conn = await aio_pika.connect(broker.url)
    async with conn:
        ch = await conn.channel()
        dlx = await ch.declare_exchange("dlx", aio_pika.ExchangeType.FANOUT)
        dlq = await ch.declare_queue("dlq")
        await dlq.bind(dlx)
        src = await ch.declare_queue("src", arguments={"x-dead-letter-exchange": "dlx",
                                                       "x-message-ttl": 50})
        await ch.default_exchange.publish(
            aio_pika.Message(b"body", headers={"h": "v"}, message_id="mid-1"),
            routing_key=src.name)
        msg = await aio_get_within(dlq, 3)
        assert (msg.exchange, msg.routing_key, msg.body) == ("dlx", "src", b"body")
        assert msg.message_id == "mid-1"
        deaths = msg.headers["x-death"]
        assert len(deaths) == 1
        entry = dict(deaths[0])
        check_time(entry.pop("time"))
        assert entry == {"count": 1, "reason": "expired", "queue": "src", "exchange": "",
                         "routing-keys": ["src"]}
        assert msg.headers["h"] == "v"
        assert msg.headers["x-first-death-reason"] == "expired"
        assert msg.headers["x-first-death-queue"] == "src"
        assert msg.headers["x-first-death-exchange"] == ""
