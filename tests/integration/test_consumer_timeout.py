"""The delivery acknowledgement timeout: the channel holding an unacked delivery too long is
closed with RabbitMQ's 406 text (probed on 3.10.8 with consumer_timeout = 5000) and what it held
goes back to the queue; per-queue (argument, policy) and per-consumer values; off when 0."""

import time

import pika
import pytest
from pika_helpers import connect, count, pump, settle

from broker.node import conffile


def _text(number: int, ms: int) -> str:
    return (f"PRECONDITION_FAILED - delivery acknowledgement on channel {number} timed out. "
            f"Timeout value used: {ms} ms. This timeout value can be configured, see "
            "consumers doc guide to learn more")


def _watch(ch) -> list:  # type: ignore[no-untyped-def]
    closed: list = []
    ch._impl.add_on_close_callback(lambda _ch, reason: closed.append(reason))
    return closed


def _reason(closed: list) -> tuple[int, str]:
    reason = closed[0]
    return reason.reply_code, reason.reply_text


@pytest.fixture
def fast(broker_factory):  # type: ignore[no-untyped-def]
    return broker_factory(consumer_timeout=400, consumer_timeout_interval=0.05)


def _fill(ch, queue: str, n: int = 2, arguments=None) -> None:  # type: ignore[no-untyped-def]
    ch.queue_declare(queue, arguments=arguments)
    for i in range(n):
        ch.basic_publish("", queue, f"m{i}".encode())


def test_unacked_consumer_delivery_closes_the_channel_and_requeues(fast):
    conn = connect(fast)
    admin = conn.channel()
    _fill(admin, "ct.q")
    ch = conn.channel()
    closed = _watch(ch)
    ch.basic_qos(prefetch_count=1)
    got: list = []
    ch.basic_consume("ct.q", lambda _c, m, _p, _b: got.append(m.delivery_tag))
    start = time.monotonic()
    pump(conn, lambda: closed, timeout=5)
    assert time.monotonic() - start >= 0.35  # never before the timeout
    assert got == [1]
    assert _reason(closed) == (406, _text(ch.channel_number, 400))
    assert admin.is_open and conn.is_open  # only that channel
    pump(conn, lambda: count(admin, "ct.q") == 2)
    conn.close()


def test_unacked_basic_get_closes_the_channel(fast):
    conn = connect(fast)
    admin = conn.channel()
    _fill(admin, "ct.get")
    ch = conn.channel()
    closed = _watch(ch)
    method, _props, _body = ch.basic_get("ct.get")
    assert method is not None
    pump(conn, lambda: closed, timeout=5)
    assert _reason(closed) == (406, _text(ch.channel_number, 400))
    pump(conn, lambda: count(admin, "ct.get") == 2)
    conn.close()


def test_acks_in_time_keep_the_channel_open(fast):
    conn = connect(fast)
    admin = conn.channel()
    _fill(admin, "ct.ok", 20)
    ch = conn.channel()
    closed = _watch(ch)
    ch.basic_qos(prefetch_count=1)

    def on_message(c, m, _p, _b):  # type: ignore[no-untyped-def]
        time.sleep(0.05)  # each one is acked well within the timeout
        c.basic_ack(m.delivery_tag)

    ch.basic_consume("ct.ok", on_message)
    pump(conn, lambda: count(admin, "ct.ok") == 0, timeout=10)
    settle(conn, 0.6)
    assert not closed and ch.is_open
    conn.close()


def test_queue_argument_overrides_the_default(broker_factory):
    broker = broker_factory(consumer_timeout=60_000, consumer_timeout_interval=0.05)
    conn = connect(broker)
    admin = conn.channel()
    _fill(admin, "ct.arg", arguments={"x-consumer-timeout": 300})
    _fill(admin, "ct.plain")
    ch = conn.channel()
    closed = _watch(ch)
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume("ct.arg", lambda *_a: None)
    pump(conn, lambda: closed, timeout=5)
    assert _reason(closed) == (406, _text(ch.channel_number, 300))
    other = conn.channel()
    other_closed = _watch(other)
    other.basic_consume("ct.plain", lambda *_a: None)
    settle(conn, 0.6)
    assert not other_closed  # the 60 s default applies there
    conn.close()


def test_consumer_argument_and_policy(broker_factory):
    broker = broker_factory(consumer_timeout=60_000, consumer_timeout_interval=0.05)
    broker.call(broker.server.set_policy, "/", "short",
                {"pattern": "^ct\\.pol", "definition": {"consumer-timeout": 250},
                 "apply-to": "queues"})
    conn = connect(broker)
    admin = conn.channel()
    _fill(admin, "ct.pol")
    _fill(admin, "ct.cons")
    ch = conn.channel()
    closed = _watch(ch)
    ch.basic_consume("ct.pol", lambda *_a: None)
    pump(conn, lambda: closed, timeout=5)
    assert _reason(closed) == (406, _text(ch.channel_number, 250))
    ch = conn.channel()
    closed = _watch(ch)
    ch.basic_consume("ct.cons", lambda *_a: None, arguments={"x-consumer-timeout": 200})
    pump(conn, lambda: closed, timeout=5)
    assert _reason(closed) == (406, _text(ch.channel_number, 200))
    conn.close()


def test_zero_turns_it_off(broker_factory):
    broker = broker_factory(consumer_timeout=None, consumer_timeout_interval=0.05)
    conn = connect(broker)
    admin = conn.channel()
    _fill(admin, "ct.off")
    ch = conn.channel()
    closed = _watch(ch)
    ch.basic_consume("ct.off", lambda *_a: None)
    settle(conn, 0.5)
    assert not closed
    conn.close()


def test_no_ack_deliveries_are_not_timed(fast):
    conn = connect(fast)
    admin = conn.channel()
    _fill(admin, "ct.noack")
    ch = conn.channel()
    closed = _watch(ch)
    ch.basic_consume("ct.noack", lambda *_a: None, auto_ack=True)
    settle(conn, 0.7)
    assert not closed and count(admin, "ct.noack") == 0
    conn.close()


@pytest.mark.parametrize("text, value", [("consumer_timeout = 900000", 900000),
                                         ("consumer_timeout = false", None)])
def test_rabbitmq_conf_key(text, value):
    assert conffile.parse_text(text)["consumer_timeout"] == value


def test_aio_pika_sees_the_same_close(fast):  # the text reaches asyncio clients too
    import asyncio

    import aio_pika

    async def run() -> None:
        connection = await aio_pika.connect(fast.url)
        channel = await connection.channel()
        queue = await channel.declare_queue("ct.aio")
        await channel.default_exchange.publish(aio_pika.Message(b"x"), "ct.aio")
        closed = asyncio.get_running_loop().create_future()

        async def on_close(_ch, exc):  # type: ignore[no-untyped-def]
            if not closed.done():
                closed.set_result(exc)

        channel.close_callbacks.add(on_close)
        async def never_ack(_message):  # type: ignore[no-untyped-def]
            return None

        await queue.consume(never_ack)
        exc = await asyncio.wait_for(closed, 5)
        assert "delivery acknowledgement on channel" in str(exc)
        await connection.close()

    asyncio.run(run())


def test_pika_exception_type(fast):
    conn = connect(fast)
    ch = conn.channel()
    _fill(ch, "ct.exc")
    ch.basic_get("ct.exc")
    time.sleep(0.6)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("ct.exc", passive=True)
    assert info.value.reply_code == 406
    conn.close()
