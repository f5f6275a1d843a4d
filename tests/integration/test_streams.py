"""Stream queues over AMQP 0-9-1 with pika: RabbitMQ 3.10.8's codes and texts (probed on the
same script) and 3.13's features (filtering, message counts): declare rules, consumer rules,
offsets, independent consumers, the x-stream-offset header, filtering, retention, restart."""

from __future__ import annotations

import datetime
import time

import pika
import pytest
from durability_helpers import InProcessBroker
from pika_helpers import channel_closed, connection_closed, count, pump, settle

S = {"x-queue-type": "stream"}
WHERE = "queue '{}' in vhost '/'"


def declare(ch, name: str, **args) -> None:  # type: ignore[no-untyped-def]
    ch.queue_declare(name, durable=True, arguments={**S, **args})


def publish(ch, queue: str, n: int, start: int = 0, **props) -> None:  # type: ignore[no-untyped-def]
    for i in range(start, start + n):
        ch.basic_publish("", queue, f"m{i}".encode(), pika.BasicProperties(**props))


def consume(conn, ch, queue: str, n: int, offset=None, prefetch: int = 10,  # type: ignore[no-untyped-def]
            ack: bool = True, timeout: float = 5.0, **extra) -> list[tuple[str, int]]:
    """(body, x-stream-offset) of the first n deliveries; fails after ``timeout``."""
    ch.basic_qos(prefetch_count=prefetch)
    got: list[tuple[str, int]] = []
    args = dict(extra)
    if offset is not None:
        args["x-stream-offset"] = offset

    def on_message(c, m, p, b):  # type: ignore[no-untyped-def]
        got.append((b.decode(), p.headers["x-stream-offset"]))
        if ack:
            c.basic_ack(m.delivery_tag)

    tag = ch.basic_consume(queue, on_message, arguments=args)
    pump(conn, lambda: len(got) >= n, timeout)
    ch.basic_cancel(tag)
    return got


# ---- declare ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, prop", [({"exclusive": True}, "exclusive-owner"),
                                      ({"auto_delete": True}, "auto-delete"),
                                      ({"durable": False}, "non-durable")])
def test_declare_properties_refused(ch, kw, prop):
    with channel_closed(406, f"PRECONDITION_FAILED - invalid property '{prop}' for queue 's' "
                             "in vhost '/'"):
        ch.queue_declare("s", **{"durable": True, **kw}, arguments=S)


def test_server_named_refused(ch):
    with channel_closed(406, "PRECONDITION_FAILED - Cannot declare a server-named queue for "
                             "type rabbit_stream_queue"):
        ch.queue_declare("", durable=True, arguments=S)


@pytest.mark.parametrize("arg, value", [
    ("x-message-ttl", 1000), ("x-dead-letter-exchange", "dlx"), ("x-max-priority", 5),
    ("x-max-length", 10), ("x-overflow", "reject-publish"), ("x-expires", 10000),
    ("x-queue-mode", "lazy"), ("x-single-active-consumer", True), ("x-delivery-limit", 3)])
def test_declare_arguments_refused(ch, arg, value):
    with channel_closed(406, f"PRECONDITION_FAILED - invalid arg '{arg}' for queue 's' in "
                             "vhost '/' of queue type rabbit_stream_queue"):
        declare(ch, "s", **{arg: value})


@pytest.mark.parametrize("arg, value, problem", [
    ("x-max-age", 5, "{unacceptable_type,signedint}"),
    ("x-max-age", "0s", "invalid_max_age"),
    ("x-max-age", "1D2h", "invalid_max_age"),
    ("x-max-age", "bogus", "invalid_max_age"),  # RabbitMQ 3.10.8 crashes: 541 INTERNAL_ERROR
    ("x-stream-max-segment-size-bytes", "x", '"expected integer, got longstr"'),
    ("x-stream-max-segment-size-bytes", -1, "{value_negative,-1}"),
    ("x-max-length-bytes", -5, "{value_negative,-5}"),
])
def test_declare_argument_values(ch, arg, value, problem):
    with channel_closed(406, f"PRECONDITION_FAILED - invalid arg '{arg}' for queue 's' in "
                             f"vhost '/': {problem}"):
        declare(ch, "s", **{arg: value})


@pytest.mark.parametrize("args", [{"x-max-age": "7D"}, {"x-max-age": "12h"}, {"x-max-age": "1Y"},
                                  {"x-stream-max-segment-size-bytes": 1000},
                                  {"x-max-length-bytes": 100000}, {"x-initial-cluster-size": 1},
                                  {"x-stream-filter-size-bytes": 32}])
def test_declare_accepted_arguments(ch, args):
    declare(ch, "s", **args)
    declare(ch, "s", **args)  # and redeclared the same


def test_redeclare_must_be_equivalent(conn):
    ch = conn.channel()
    declare(ch, "s")
    with channel_closed(406, "PRECONDITION_FAILED - inequivalent arg 'x-max-age' for queue 's' "
                             "in vhost '/': received the value '1D' of type 'longstr' but "
                             "current is none"):
        declare(ch, "s", **{"x-max-age": "1D"})
    ch = conn.channel()
    with channel_closed(406, "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue "
                             "'s' in vhost '/': received none but current is the value 'stream' "
                             "of type 'longstr'"):
        ch.queue_declare("s", durable=True)


def test_message_count_is_the_stream_length_and_consuming_keeps_it(conn, ch):
    declare(ch, "s")
    ch.confirm_delivery()
    publish(ch, "s", 10)
    assert count(ch, "s") == 10  # RabbitMQ 3.13 counts the stream; 3.10.8 answers 0
    assert len(consume(conn, ch, "s", 10, "first")) == 10
    assert count(ch, "s") == 10


# ---- consumers -------------------------------------------------------------------------------
def test_consumer_needs_a_prefetch(conn):
    ch = conn.channel()
    declare(ch, "s")
    text = ("PRECONDITION_FAILED - consumer prefetch count is not set for "
            f"'{WHERE.format('s')}'")
    with channel_closed(406, text):
        ch.basic_consume("s", lambda *a: None)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=0)
    with channel_closed(406, text):
        ch.basic_consume("s", lambda *a: None)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10, global_qos=True)
    with channel_closed(406, text):
        ch.basic_consume("s", lambda *a: None)


def test_consumer_needs_manual_ack(conn, ch):
    declare(ch, "s")
    ch.basic_qos(prefetch_count=10)
    with connection_closed(540, "NOT_IMPLEMENTED - automatic acknowledgement not supported by "
                                f"stream queues {WHERE.format('s')}"):
        ch.basic_consume("s", lambda *a: None, auto_ack=True)


def test_consumer_priority_refused(conn, ch):
    declare(ch, "s")
    ch.basic_qos(prefetch_count=10)
    with channel_closed(406, f"PRECONDITION_FAILED - invalid arg 'x-priority' for "
                             f"{WHERE.format('s')} of queue type rabbit_stream_queue"):
        ch.basic_consume("s", lambda *a: None, arguments={"x-priority": 5})


@pytest.mark.parametrize("offset", ["bogus", "1x", True])
def test_invalid_offset(conn, ch, offset):
    declare(ch, "s")
    ch.basic_qos(prefetch_count=10)
    with channel_closed(406, f"PRECONDITION_FAILED - invalid arg 'x-stream-offset' for "
                             f"{WHERE.format('s')}", prefix=True):
        ch.basic_consume("s", lambda *a: None, arguments={"x-stream-offset": offset})


@pytest.mark.parametrize("call, text", [
    (lambda ch: ch.basic_get("s"), "basic.get not supported by stream queues"),
    (lambda ch: ch.basic_get("s", auto_ack=True), "basic.get not supported by stream queues"),
    (lambda ch: ch.queue_purge("s"), "queue.purge not supported by stream queues"),
])
def test_get_and_purge_not_implemented(conn, ch, call, text):
    declare(ch, "s")
    with connection_closed(540, f"NOT_IMPLEMENTED - {text} {WHERE.format('s')}"):
        call(ch)


@pytest.mark.parametrize("settle_call", [
    lambda ch, tag: ch.basic_nack(tag, requeue=True),
    lambda ch, tag: ch.basic_nack(tag, requeue=False),
    lambda ch, tag: ch.basic_reject(tag),
    lambda ch, tag: ch.basic_nack(0, multiple=True),
])
def test_nack_and_reject_close_the_connection(conn, ch, settle_call):
    declare(ch, "s")
    publish(ch, "s", 3)
    ch.basic_qos(prefetch_count=3)
    tags: list[int] = []
    ch.basic_consume("s", lambda c, m, p, b: tags.append(m.delivery_tag),
                     arguments={"x-stream-offset": "first"})
    pump(conn, lambda: len(tags) == 3)
    with connection_closed(540, "NOT_IMPLEMENTED - basic.nack and basic.reject not supported "
                                f"by stream queues {WHERE.format('s')}"):
        settle_call(ch, tags[0])
        ch.basic_qos(prefetch_count=3)


def test_prefetch_is_credit_and_acks_give_it_back(conn, ch):
    declare(ch, "s")
    publish(ch, "s", 10)
    ch.basic_qos(prefetch_count=3)
    got: list = []
    ch.basic_consume("s", lambda c, m, p, b: got.append(m), arguments={"x-stream-offset": 0})
    pump(conn, lambda: len(got) == 3)
    settle(conn, 0.3)
    assert len(got) == 3  # no ack, no more
    ch.basic_ack(got[-1].delivery_tag, multiple=True)
    pump(conn, lambda: len(got) == 6)
    assert not any(m.redelivered for m in got)


# ---- offsets ---------------------------------------------------------------------------------
def test_offset_specs(conn, ch):
    declare(ch, "s")
    ch.confirm_delivery()
    publish(ch, "s", 10)
    bodies = [f"m{i}" for i in range(10)]
    assert [b for b, _ in consume(conn, ch, "s", 10, "first")] == bodies
    assert consume(conn, ch, "s", 10, "first")[3] == ("m3", 3)  # the header is the offset
    assert [b for b, _ in consume(conn, ch, "s", 5, 5)] == bodies[5:]
    assert [b for b, _ in consume(conn, ch, "s", 10, -1)] == bodies  # before first: first
    assert consume(conn, ch, "s", 1, "last") == [("m9", 9)]  # each confirmed publish: a chunk
    assert [b for b, _ in consume(conn, ch, "s", 10, "10m")] == bodies
    past = datetime.datetime(2000, 1, 1)
    assert [b for b, _ in consume(conn, ch, "s", 10, past)] == bodies
    for spec in ("next", None, 100, datetime.datetime(2100, 1, 1), "1s"):
        if spec == "1s":
            time.sleep(1.1)
        ch.basic_qos(prefetch_count=10)
        got: list = []
        args = {} if spec is None else {"x-stream-offset": spec}
        tag = ch.basic_consume("s", lambda c, m, p, b, got=got: got.append(
            p.headers["x-stream-offset"]), arguments=args)
        settle(conn, 0.2)
        assert got == [], spec
        ch.basic_cancel(tag)


def test_last_is_the_newest_chunk(conn, ch):
    declare(ch, "s")
    publish(ch, "s", 5)  # one loop turn on the broker: likely one chunk, at least the last one
    pump(conn, lambda: count(ch, "s") == 5)
    got = consume(conn, ch, "s", 1, "last")
    assert got[-1] == ("m4", 4) or got[0][1] <= 4


def test_three_consumers_first_offset_and_next_read_independently(conn):
    admin = conn.channel()
    declare(admin, "s3")
    admin.confirm_delivery()
    publish(admin, "s3", 50)
    chans = [conn.channel() for _ in range(3)]
    got: list[list[int]] = [[], [], []]
    for i, (ch, spec) in enumerate(zip(chans, ["first", 20, "next"], strict=True)):
        ch.basic_qos(prefetch_count=7)

        def on_message(c, m, p, b, i=i):  # type: ignore[no-untyped-def]
            got[i].append(p.headers["x-stream-offset"])
            c.basic_ack(m.delivery_tag)

        ch.basic_consume("s3", on_message, arguments={"x-stream-offset": spec})
    pump(conn, lambda: len(got[0]) == 50 and len(got[1]) == 30)
    assert got[2] == []
    publish(admin, "s3", 10, start=50)
    pump(conn, lambda: len(got[0]) == 60 and len(got[1]) == 40 and len(got[2]) == 10)
    assert got[0] == list(range(60))
    assert got[1] == list(range(20, 60))
    assert got[2] == list(range(50, 60))
    assert count(admin, "s3") == 60  # nothing consumed away


def test_headers_and_properties_kept(conn, ch):
    declare(ch, "s")
    ch.confirm_delivery()
    ch.basic_publish("", "s", b"x", pika.BasicProperties(
        headers={"a": 1, "x-stream-offset": 99}, message_id="mid", expiration="1",
        delivery_mode=1, priority=7))
    ch.basic_qos(prefetch_count=1)
    got: list = []
    ch.basic_consume("s", lambda c, m, p, b: got.append((m, p)),
                     arguments={"x-stream-offset": "first"})
    pump(conn, lambda: got)
    method, props = got[0]
    assert props.headers == {"a": 1, "x-stream-offset": 0}
    assert (props.message_id, props.expiration, props.delivery_mode, props.priority) == \
        ("mid", "1", 1, 7)
    assert (method.exchange, method.routing_key, method.redelivered) == ("", "s", False)


def test_transient_messages_are_kept_too(conn, ch):
    declare(ch, "s")
    ch.confirm_delivery()
    publish(ch, "s", 3, delivery_mode=1)
    assert len(consume(conn, ch, "s", 3, "first")) == 3


# ---- filtering (3.13) ------------------------------------------------------------------------
def test_filtering(conn, ch):
    declare(ch, "f")
    ch.confirm_delivery()
    for i, value in enumerate(["red", "blue", None, "red", "green", None]):
        headers = {"x-stream-filter-value": value} if value else {}
        ch.basic_publish("", "f", f"f{i}".encode(), pika.BasicProperties(headers=headers))

    def bodies(**args):  # type: ignore[no-untyped-def]
        return _collect_all(conn, ch, "f", args)

    assert bodies(**{"x-stream-filter": "red"}) == ["f0", "f3"]
    assert bodies(**{"x-stream-filter": ["red", "green"]}) == ["f0", "f3", "f4"]
    assert bodies(**{"x-stream-filter": "red", "x-stream-match-unfiltered": True}) == \
        ["f0", "f2", "f3", "f5"]
    assert bodies() == [f"f{i}" for i in range(6)]
    assert bodies(**{"x-stream-filter": 5}) == [f"f{i}" for i in range(6)]  # not a filter
    assert bodies(**{"x-stream-match-unfiltered": True}) == [f"f{i}" for i in range(6)]


def _collect_all(conn, ch, queue, args) -> list[str]:  # type: ignore[no-untyped-def]
    ch.basic_qos(prefetch_count=10)
    got: list[str] = []

    def on_message(c, m, p, b):  # type: ignore[no-untyped-def]
        got.append(b.decode())
        c.basic_ack(m.delivery_tag)

    tag = ch.basic_consume(queue, on_message, arguments={"x-stream-offset": "first", **args})
    settle(conn, 0.3)
    ch.basic_cancel(tag)
    return got


def test_a_filter_skipping_a_long_run_does_not_stall(conn, ch):
    declare(ch, "f2")
    for _ in range(10_000):
        ch.basic_publish("", "f2", b"x", pika.BasicProperties(
            headers={"x-stream-filter-value": "other"}))
    ch.basic_publish("", "f2", b"wanted", pika.BasicProperties(
        headers={"x-stream-filter-value": "mine"}))
    pump(conn, lambda: count(ch, "f2") == 10_001, timeout=15)
    ch.basic_qos(prefetch_count=10)
    got: list = []
    ch.basic_consume("f2", lambda c, m, p, b: got.append(b),
                     arguments={"x-stream-offset": "first", "x-stream-filter": "mine"})
    pump(conn, lambda: got, timeout=10)
    assert got == [b"wanted"]


# ---- delete, retention, restart --------------------------------------------------------------
def test_delete_ignores_if_empty_and_if_unused(conn, ch):
    declare(ch, "s")
    publish(ch, "s", 3)
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume("s", lambda *a: None)
    other = conn.channel()
    assert other.queue_delete("s", if_unused=True, if_empty=True).method.message_count == 0


def test_retention_by_bytes_moves_the_first_offset(conn, ch):
    declare(ch, "r", **{"x-max-length-bytes": 20_000, "x-stream-max-segment-size-bytes": 5_000})
    ch.confirm_delivery()
    for i in range(300):
        ch.basic_publish("", "r", b"%06d" % i + b"x" * 200)
    remaining = count(ch, "r")
    assert 0 < remaining < 300
    got = consume(conn, ch, "r", remaining, "first")
    first = 300 - remaining
    assert got[0][1] == first and got[-1][1] == 299
    assert int(got[0][0][:6]) == first


def test_policy_retention(broker, conn, ch):
    broker.call(broker.server.set_policy, "/", "keep-little",
                {"pattern": "^pr$", "definition": {"max-length-bytes": 20_000},
                 "apply-to": "queues"})
    declare(ch, "pr", **{"x-stream-max-segment-size-bytes": 5_000})
    ch.confirm_delivery()
    for _ in range(300):
        ch.basic_publish("", "pr", b"x" * 200)
    assert 0 < count(ch, "pr") < 300


def test_offsets_and_retention_survive_a_restart(tmp_path):
    data = tmp_path / "data"
    broker = InProcessBroker(data)
    conn = broker.connect()
    ch = conn.channel()
    declare(ch, "rs", **{"x-max-length-bytes": 20_000, "x-stream-max-segment-size-bytes": 5_000})
    ch.confirm_delivery()
    for i in range(300):
        ch.basic_publish("", "rs", b"%06d" % i + b"x" * 200)
    before = count(ch, "rs")
    conn.close()
    broker.stop()
    broker = InProcessBroker(data)
    try:
        conn = broker.connect()
        ch = conn.channel()
        assert count(ch, "rs") == before
        got = consume(conn, ch, "rs", before, "first")
        assert [o for _, o in got] == list(range(300 - before, 300))
        ch.confirm_delivery()
        for i in range(300, 600):
            ch.basic_publish("", "rs", b"%06d" % i + b"x" * 200)
        after = count(ch, "rs")
        assert after < 300  # retention still applies after the restart
        got = consume(conn, ch, "rs", 1, "last")
        assert got[0][1] == 599  # offsets went on where they stopped
        conn.close()
    finally:
        broker.stop()


@pytest.mark.deadline(60)
def test_kill_9_keeps_every_confirmed_message_and_offset(brokers):
    broker = brokers()
    conn = broker.connect()
    ch = conn.channel()
    declare(ch, "k9", **{"x-stream-max-segment-size-bytes": 50_000})
    ch.confirm_delivery()
    for i in range(2000):  # transient ones too: a stream keeps everything
        ch.basic_publish("", "k9", b"%06d" % i + b"y" * 100,
                         pika.BasicProperties(delivery_mode=1 + i % 2))
    # more in flight, unconfirmed, when the broker dies
    loose = conn.channel()
    for i in range(2000, 2500):
        loose.basic_publish("", "k9", b"%06d" % i + b"y" * 100)
    broker.kill()
    broker.start()
    with broker.connect() as conn:
        ch = conn.channel()
        n = count(ch, "k9")
        assert 2000 <= n <= 2500
        got = consume(conn, ch, "k9", n, "first", prefetch=500, timeout=20)
        assert [o for _, o in got] == list(range(n))
        assert [int(b[:6]) for b, _ in got] == list(range(n))
        ch.confirm_delivery()
        publish(ch, "k9", 1)
        assert consume(conn, ch, "k9", 1, "last")[0][1] == n


async def test_aio_pika_reads_a_stream_from_an_offset(broker):
    import asyncio

    import aio_pika

    connection = await aio_pika.connect(broker.url)
    channel = await connection.channel()
    queue = await channel.declare_queue("aio-s", durable=True, arguments=S)
    for i in range(5):
        await channel.default_exchange.publish(aio_pika.Message(f"a{i}".encode()), "aio-s")
    await channel.set_qos(prefetch_count=2)
    got: list[tuple[bytes, int]] = []
    done = asyncio.get_running_loop().create_future()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        got.append((message.body, message.headers["x-stream-offset"]))
        await message.ack()
        if len(got) == 3 and not done.done():
            done.set_result(None)

    await queue.consume(on_message, arguments={"x-stream-offset": 2})
    await asyncio.wait_for(done, 5)
    assert got == [(b"a2", 2), (b"a3", 3), (b"a4", 4)]
    await connection.close()
