"""Clients for the durability tests (not a test module): they load a broker and record
exactly what it did, so a test can say what a restart or a crash may not lose.

- Message bodies encode their number: ``body_for(n)`` / ``number_of(body)`` (which also checks
  the body is intact).
- ``PipelinedPublisher`` / ``AckingConsumer``: raw clients (raw_client.py, in threads) that
  publish numbered persistent messages with a window of unconfirmed publishes, and consume with
  manual acks, recording exactly what the broker confirmed, delivered and what was acked;
  ``start_publisher`` / ``start_consumer`` start one and wait until it runs.
- ``abandon`` / ``drain_all`` / ``count``: pika helpers around a restart; ``PERSISTENT`` and
  ``TRANSIENT`` properties.

Every wait has a deadline; nothing here can hang a test run.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pika
from pamqp import body as pbody
from pamqp import commands as C
from pamqp import header as pheader
from raw_client import RawClient, content_frames


def body_for(number: int) -> bytes:
    """Message ``number``'s body: its number, then a deterministic filler of varying length."""
    head = f"{number:010d}:".encode()
    return head + bytes((number + i) & 0xFF for i in range((number * 7919) % 1500))


def number_of(body: bytes) -> int:
    number = int(body[:10])
    assert body == body_for(number), f"body of message {number} is corrupt"
    return number



# ---- raw AMQP clients ----------------------------------------------------------------------
def publish_frames(routing_key: str, number: int, exchange: str = "") -> bytes:
    props = C.Basic.Properties(delivery_mode=2, message_id=str(number))
    return content_frames(1, C.Basic.Publish(exchange=exchange, routing_key=routing_key),
                          body_for(number), props)


class RawWorker(threading.Thread):
    """A raw client on its own connection (channel 1 open) in a thread: ``work`` runs until
    it returns or the connection dies (recorded in ``result.error``); ``done`` runs last."""

    result: PublishLog | ConsumeLog

    def __init__(self, name: str, port: int) -> None:
        super().__init__(name=name, daemon=True)
        self.port = port

    def run(self) -> None:
        conn = None
        try:
            conn = RawClient.open(self.port, client_properties={"product": "durability-test"})
            self.work(conn)
        except (OSError, ConnectionError) as exc:
            self.result.error = repr(exc)
        finally:
            self.done()
            if conn is not None:
                conn.close()

    def work(self, conn: RawClient) -> None:
        raise NotImplementedError

    def done(self) -> None:
        pass


@dataclass
class PublishLog:
    sent: int = 0  # messages 1..sent were written to the socket
    confirmed: set[int] = field(default_factory=set)
    nacked: set[int] = field(default_factory=set)
    error: str = ""
    started: threading.Event = field(default_factory=threading.Event)


class PipelinedPublisher(RawWorker):
    """Publishes messages 1, 2, ... (persistent, confirm mode) to ``queue`` through the default
    exchange, with at most ``window`` unconfirmed, until the connection dies or ``limit``."""

    def __init__(self, port: int, queue: str, window: int = 100, limit: int = 200_000) -> None:
        super().__init__("publisher", port)
        self.queue = queue
        self.window = window
        self.limit = limit
        self.result = PublishLog()

    def work(self, conn: RawClient) -> None:
        res = self.result
        conn.select()
        pending: dict[int, None] = {}
        while True:
            if res.sent < self.limit and len(pending) < self.window:
                batch = []
                while res.sent < self.limit and len(pending) < self.window:
                    number = res.sent + 1
                    batch.append(publish_frames(self.queue, number))
                    pending[number] = None
                    res.sent = number
                conn.send_raw(b"".join(batch))
                res.started.set()
            if not pending:
                return
            _, frame = conn.recv()
            if isinstance(frame, C.Basic.Ack | C.Basic.Nack):
                into = res.confirmed if isinstance(frame, C.Basic.Ack) else res.nacked
                tag = frame.delivery_tag
                if frame.multiple:
                    while pending and next(iter(pending)) <= tag:
                        into.add(_pop_first(pending))
                elif tag in pending:
                    del pending[tag]
                    into.add(tag)

    def done(self) -> None:
        self.result.started.set()


def _pop_first(d: dict[int, None]) -> int:
    key = next(iter(d))
    del d[key]
    return key


@dataclass
class ConsumeLog:
    delivered: list[int] = field(default_factory=list)  # in delivery order
    redelivered_during_run: list[int] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)  # an ack was written to the socket
    held: set[int] = field(default_factory=set)  # delivered, deliberately never acked
    error: str = ""


class AckingConsumer(RawWorker):
    """Consumes ``queue`` with manual acks; holds back (never acks) messages whose number
    ``hold(number)`` says, acks the rest one by one as they arrive."""

    def __init__(self, port: int, queue: str, hold, prefetch: int = 1000) -> None:  # type: ignore[no-untyped-def]
        super().__init__("consumer", port)
        self.queue = queue
        self.hold = hold
        self.prefetch = prefetch
        self.result = ConsumeLog()
        self.ready = threading.Event()

    def work(self, conn: RawClient) -> None:
        res = self.result
        conn.send(1, C.Basic.Qos(prefetch_count=self.prefetch))
        conn.expect(C.Basic.QosOk)
        conn.send(1, C.Basic.Consume(queue=self.queue, consumer_tag="durability"))
        conn.expect(C.Basic.ConsumeOk)
        self.ready.set()
        while True:
            _, deliver = conn.recv()
            if not isinstance(deliver, C.Basic.Deliver):
                continue
            head = conn.expect(pheader.ContentHeader)
            body = b""
            while len(body) < head.body_size:
                body += conn.expect(pbody.ContentBody).value
            number = number_of(body)
            res.delivered.append(number)
            if deliver.redelivered:
                res.redelivered_during_run.append(number)
            if self.hold(number):
                res.held.add(number)
                continue
            conn.send(1, C.Basic.Ack(delivery_tag=deliver.delivery_tag))
            res.acked.add(number)

    def done(self) -> None:
        self.ready.set()


def start_publisher(port: int, queue: str, window: int = 100) -> PipelinedPublisher:
    publisher = PipelinedPublisher(port, queue, window=window)
    publisher.start()
    assert publisher.result.started.wait(10), "publisher never started"
    return publisher


def start_consumer(port: int, queue: str, hold, prefetch: int = 1000) -> AckingConsumer:  # type: ignore[no-untyped-def]
    consumer = AckingConsumer(port, queue, hold=hold, prefetch=prefetch)
    consumer.start()
    assert consumer.ready.wait(10)
    return consumer


# ---- pika ----------------------------------------------------------------------------------
PERSISTENT = pika.BasicProperties(delivery_mode=2)
TRANSIENT = pika.BasicProperties(delivery_mode=1)


def count(conn: pika.BlockingConnection, queue: str) -> int:
    """Messages ready in ``queue`` (a passive declare on a channel of its own)."""
    ch = conn.channel()
    n = ch.queue_declare(queue, passive=True).method.message_count
    ch.close()
    return n


def abandon(conn: pika.BlockingConnection) -> None:
    """Drop a connection to a broker that was killed or stopped (closing it raises)."""
    try:
        conn.close()
    except (pika.exceptions.AMQPError, OSError):
        pass


def drain_all(conn: pika.BlockingConnection, queue: str,
              timeout: float = 20.0) -> list[tuple[int, bool, pika.BasicProperties]]:
    """Consume (auto-ack) every message of ``queue``: (number, redelivered, properties) in
    delivery order. Ends when the queue reports the count it had at the start."""
    ch = conn.channel()
    expected = ch.queue_declare(queue, passive=True).method.message_count
    got: list[tuple[int, bool, pika.BasicProperties]] = []
    deadline = time.monotonic() + timeout
    if expected:
        for method, props, body in ch.consume(queue, auto_ack=True, inactivity_timeout=3):
            if method is None:
                break
            got.append((number_of(body), method.redelivered, props))
            if len(got) >= expected or time.monotonic() > deadline:
                break
        ch.cancel()
    assert len(got) == expected, f"queue {queue} said {expected} messages, got {len(got)}"
    left = ch.queue_declare(queue, passive=True).method.message_count
    assert left == 0, f"{left} messages left in {queue} after draining"
    ch.close()
    return got
