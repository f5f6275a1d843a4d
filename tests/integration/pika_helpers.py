"""Blocking pika helpers shared by the integration tests (not a test module).

Exact close codes and texts (``channel_closed``, ``connection_closed``), an event pump with a
deadline (so a hang fails instead of hanging), and the small steps the tests repeat: fill a
queue, count it, drain it, collect deliveries, wait for a message (pika or aio-pika), set up a
DLX and check x-death headers. The raw-socket client is in raw_client.py; the ``conn`` / ``ch``
fixtures and the per-test deadline are in conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import Callable, Iterator

import pika
import pytest
from raw_client import PROTOCOL_HEADER as PROTOCOL_HEADER  # re-export: they used to be here
from raw_client import RawClient as RawClient

LOCKED = ("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{}' in vhost '/'. "
          "It could be originally declared on another connection or the exclusive property "
          "value does not match that of the original declaration.")


# Invalid values of the expiration property and the reason RabbitMQ gives for each.
INVALID_EXPIRATIONS = [
    ("abc", "no_integer"),
    ("-1", "{value_negative,-1}"),
    ("1.5", '{leftover_string,".5"}'),
    (" 10", "no_integer"),
    ("99999999999999999999", "{value_too_large,\n" + " " * 44 + "99999999999999999999}"),
]


def connect(broker, **overrides) -> pika.BlockingConnection:  # type: ignore[no-untyped-def]
    params = pika.URLParameters(broker.url)
    for key, value in overrides.items():
        setattr(params, key, value)
    return pika.BlockingConnection(params)


# ---- broker-side closes --------------------------------------------------------------------
@contextlib.contextmanager
def channel_closed(code: int, text: str, prefix: bool = False) -> Iterator[None]:
    """The block must end in a channel.close from the broker with exactly code and text
    (``prefix``: a text that starts with ``text``)."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        yield
    got = (info.value.reply_code, info.value.reply_text)
    if prefix:
        assert got[0] == code and got[1].startswith(text), got
    else:
        assert got == (code, text)


@contextlib.contextmanager
def connection_closed(code: int, text: str) -> Iterator[None]:
    """The block must end in a connection.close from the broker with exactly code and text."""
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        yield
    assert (info.value.reply_code, info.value.reply_text) == (code, text)


def expect_channel_error(ch, code: int, text: str) -> None:  # type: ignore[no-untyped-def]
    """The channel was closed with code and text; methods without a reply (publish, ack)
    surface it at the next synchronous call."""
    with channel_closed(code, text):
        ch.basic_qos(prefetch_count=0)


class BlockWatch:
    """Records connection.blocked reasons and connection.unblocked on a pika connection."""

    def __init__(self, conn: pika.BlockingConnection) -> None:
        self.blocked: list[str] = []
        self.unblocked = 0
        conn.add_on_connection_blocked_callback(
            lambda _conn, frame: self.blocked.append(frame.method.reason))
        conn.add_on_connection_unblocked_callback(lambda _conn, _frame: self._unblock())

    def _unblock(self) -> None:
        self.unblocked += 1


# ---- waiting -------------------------------------------------------------------------------
def pump(conn: pika.BlockingConnection, until: Callable[[], object],
         timeout: float = 5.0) -> None:
    """Process I/O until ``until()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        conn.process_data_events(time_limit=0.02)


def settle(conn: pika.BlockingConnection, seconds: float = 0.2) -> None:
    """Give the broker time to send anything else that it (wrongly) might."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        conn.process_data_events(time_limit=0.02)


def get_within(ch, queue: str, timeout: float = 3.0,
               auto_ack: bool = True):  # type: ignore[no-untyped-def]
    """basic.get until a message arrives; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=auto_ack)
        if method is not None:
            return method, props, body
        assert time.monotonic() < deadline, f"nothing arrived in '{queue}' within {timeout} s"
        time.sleep(0.02)


async def aio_get_within(queue, timeout: float):  # type: ignore[no-untyped-def]
    """aio-pika: get (no-ack) from ``queue`` until a message arrives; fail after ``timeout``."""
    async def poll():  # type: ignore[no-untyped-def]
        while True:
            msg = await queue.get(no_ack=True, fail=False)
            if msg is not None:
                return msg
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), timeout)


# ---- queues and messages -------------------------------------------------------------------
def publish_numbered(ch, queue: str, n: int) -> None:  # type: ignore[no-untyped-def]
    """Publish b"m0" .. b"m<n-1>" to ``queue`` through the default exchange."""
    for i in range(n):
        ch.basic_publish("", queue, f"m{i}".encode())


def fill(ch, queue: str, n: int) -> None:  # type: ignore[no-untyped-def]
    """Declare ``queue`` (plain) and publish b"m0" .. b"m<n-1>" to it."""
    ch.queue_declare(queue)
    publish_numbered(ch, queue, n)


def count(ch, queue: str) -> int:  # type: ignore[no-untyped-def]
    return ch.queue_declare(queue, passive=True).method.message_count


def collect(ch, queue: str, **kw):  # type: ignore[no-untyped-def]
    """basic.consume that appends (method, properties, body) to a list: (tag, list)."""
    got: list = []
    tag = ch.basic_consume(queue, lambda _c, m, p, b: got.append((m, p, b)), **kw)
    return tag, got


def drain(ch, queue: str) -> list[bytes]:  # type: ignore[no-untyped-def]
    """basic.get (auto-ack) until the queue is empty; the bodies in order."""
    bodies = []
    for _ in range(1000):
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)
    raise AssertionError("queue never drained")


# ---- dead-lettering ------------------------------------------------------------------------
# Properties of the dead-lettered messages whose x-death headers are checked.
PROPS = dict(headers={"h": "v"}, message_id="mid-1", content_type="text/plain",
             delivery_mode=2)


def fanout_pair(ch, exchange: str = "dlx", queue: str = "dlq",
                durable: bool = False) -> None:  # type: ignore[no-untyped-def]
    """A fanout exchange bound to a queue of its own: by default a DLX and its DLQ, as in
    section 10."""
    ch.exchange_declare(exchange, "fanout", durable=durable)
    ch.queue_declare(queue, durable=durable)
    ch.queue_bind(queue, exchange)


def check_time(value) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(value, datetime.datetime), f"time is {type(value).__name__}, not T"
    now = datetime.datetime.now(datetime.UTC)
    assert abs((value - now).total_seconds()) < 10


def death_headers(headers: dict) -> dict:
    """The headers minus x-last-death-* (a 3.13 addition not covered here)."""
    return {k: v for k, v in headers.items() if not k.startswith("x-last-death-")}


def assert_single_death(props, reason: str, queue: str, exchange: str, rks: list[str],
                        **extra) -> dict:  # type: ignore[no-untyped-def]
    """One x-death entry with these values, the x-first-death-* headers, and the rest of a
    message published with ``PROPS`` unchanged."""
    headers = death_headers(props.headers)
    deaths = headers.pop("x-death")
    assert len(deaths) == 1, deaths
    entry = deaths[0]
    check_time(entry["time"])
    assert {k: v for k, v in entry.items() if k != "time"} == {
        "count": 1, "reason": reason, "queue": queue, "exchange": exchange,
        "routing-keys": rks, **extra}
    assert headers == {"h": "v", "x-first-death-exchange": exchange,
                       "x-first-death-queue": queue, "x-first-death-reason": reason}
    assert (props.message_id, props.content_type, props.delivery_mode) == \
        ("mid-1", "text/plain", 2)
    return entry
