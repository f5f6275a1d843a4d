"""Test doubles for the broker core: a clock advanced by hand, in-memory stores, a channel.

The core (``broker.core``) is plain synchronous code that reads time and schedules callbacks
only through ``Server``'s ``Scheduler``. ``FakeScheduler`` is one whose time moves only when a
test calls ``advance``: timers fire in due order, deferred dispatches run when the test asks.
No sockets, no event loop, no sleeps.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pamqp import commands

from broker.core.messages import new_message, priority_of
from broker.core.queue import Consumer, Queue
from broker.core.server import Server
from protocol import properties
from protocol.tables import Table
from storage.message import Entry, Message
from storage.priority import PriorityQueueStore
from storage.store import MemoryQueueStore, QueueStore


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeScheduler:
    """The Scheduler the node gives the Server, with time moved by the test."""

    def __init__(self, start: float = 1000.0) -> None:
        self.time = start
        # Seconds each now() adds: a real clock has moved on between any two reads, so a
        # check that only works when "now" is the same instant twice fails with drift set.
        self.drift = 0.0
        self._timers: list[tuple[float, int, FakeTimer]] = []
        self._order = itertools.count()
        self.soon: list[Callable[[], None]] = []

    def now(self) -> float:
        self.time += self.drift
        return self.time

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.soon.append(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.time + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    @property
    def pending_timers(self) -> list[FakeTimer]:
        return sorted((t for _, _, t in self._timers if not t.cancelled), key=lambda t: t.when)

    def run_soon(self) -> None:
        """One loop turn's worth of deferred callbacks, and those they defer in turn."""
        for _ in range(10000):
            if not self.soon:
                return
            batch, self.soon = self.soon, []
            for callback in batch:
                callback()
        raise AssertionError("deferred callbacks never settle")

    def advance(self, seconds: float) -> None:
        """Move time forward, firing each due timer at its own time."""
        end = self.time + seconds
        self.run_soon()
        while self._timers and self._timers[0][0] <= end:
            when, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self.time = max(self.time, when)
            timer.callback()
            self.run_soon()
        self.time = end


@dataclass(frozen=True)
class Settings:
    default_user: str = "guest"
    default_vhost: str = "/"
    loopback_users: tuple[str, ...] = ("guest",)
    cluster_name: str = "rabbit@test"


def memory_store(vhost: str, queue: str, arguments: Table, persistent: bool) -> QueueStore:
    """What the node's store factory makes, in RAM: a priority store for x-max-priority."""
    maximum = arguments.get("x-max-priority")
    if isinstance(maximum, int):
        return PriorityQueueStore(maximum, lambda _p: MemoryQueueStore(), priority_of)
    return MemoryQueueStore()


def make_server() -> tuple[Server, FakeScheduler]:
    scheduler = FakeScheduler()
    return Server(Settings(), scheduler, memory_store), scheduler


def props(**kw: object) -> bytes:
    """AMQP basic properties as wire bytes (flags first), e.g. props(expiration="100")."""
    return properties.encode(commands.Basic.Properties(**kw))  # type: ignore[arg-type]


def message(body: bytes = b"m", routing_key: str = "q", exchange: str = "", **kw: object
            ) -> Message:
    return new_message(exchange, routing_key, props(**kw) if kw else b"\x00\x00", body)


def headers_of(msg: Message) -> Table:
    return properties.headers(msg.properties)


def bodies(queue: Queue) -> list[bytes]:
    """The ready messages, in delivery order (read without taking them)."""
    return [e.message.body for e in queue.store]


@dataclass(eq=False)
class FakeChannel:
    """The ConsumerChannel end of deliveries: records what it is given, with credit rules
    (channel flow, global prefetch) the test can set."""

    can_deliver: bool = True
    global_prefetch: int = 0
    delivered: list[tuple[str, Entry]] = field(default_factory=list)
    unacked: list[tuple[Consumer, Entry]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    @property
    def unacked_count(self) -> int:
        return len(self.unacked)

    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        self.delivered.append((consumer.tag, entry))
        if consumer.no_ack:
            if consumer.queue is not None:
                consumer.queue.ack(entry)
        else:
            consumer.unacked += 1
            self.unacked.append((consumer, entry))

    def deliver_many(self, consumer: Consumer, entries: Sequence[Entry]) -> None:
        for entry in entries:
            self.deliver(consumer, entry)

    def consumer_cancelled_by_server(self, consumer: Consumer) -> None:
        self.cancelled.append(consumer.tag)

    def consume(self, queue: Queue, tag: str, *, no_ack: bool = False, prefetch: int = 0,
                exclusive: bool = False, arguments: Table | None = None) -> Consumer:
        consumer = Consumer(tag, self, queue, no_ack, prefetch, exclusive, arguments or {})
        queue.add_consumer(consumer)
        return consumer

    def settle(self, tag: str | None = None, *, requeue: bool | None = None,
               nacked: bool = True) -> None:
        """Ack (requeue None), requeue (True) or reject (False) the unacked deliveries of one
        consumer (or all), oldest first. A requeue is a basic.nack's (``nacked``) or a
        channel close's (``nacked=False``)."""
        keep = []
        for consumer, entry in self.unacked:
            if tag is not None and consumer.tag != tag:
                keep.append((consumer, entry))
                continue
            consumer.unacked -= 1
            queue = consumer.queue
            assert queue is not None
            if requeue is None:
                queue.ack(entry)
            elif requeue:
                queue.requeue(entry, nacked)
            else:
                queue.reject(entry)
            queue.wake()
        self.unacked = keep

    def bodies(self, tag: str | None = None) -> list[bytes]:
        return [e.message.body for t, e in self.delivered if tag is None or t == tag]
