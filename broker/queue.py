"""Queue engine: ready messages (in a QueueStore), consumers, and the delivery loop.

Invariants:
- ``store`` holds only ready messages; delivered-but-unacked entries are held by channels and
  come back through ``requeue`` to their original position.
- ``dispatch`` hands messages to consumers with credit, round-robin, at most ``BUDGET`` per call;
  when more could go it asks the virtual host to call it again on the next loop turn, so one huge
  backlog cannot fill a socket buffer in a single step.
- A consumer's credit is decided by its channel (prefetch, global prefetch, flow, socket space).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from protocol import codec

from .message import Entry, Message

if TYPE_CHECKING:
    from storage.store import QueueStore

BUDGET = 256


class Consumer:
    __slots__ = ("tag", "tag_raw", "channel", "queue", "no_ack", "prefetch", "unacked",
                 "exclusive", "priority", "arguments")

    def __init__(self, tag: str, channel: Any, queue: Queue, no_ack: bool, prefetch: int,
                 exclusive: bool, arguments: dict) -> None:
        self.tag = tag
        self.tag_raw = codec.shortstr(tag)
        self.channel = channel
        self.queue = queue
        self.no_ack = no_ack
        self.prefetch = prefetch
        self.unacked = 0
        self.exclusive = exclusive
        self.arguments = arguments
        priority = arguments.get("x-priority", 0)
        self.priority = priority if isinstance(priority, int) else 0

    def has_credit(self) -> bool:
        channel = self.channel
        if not channel.can_deliver:
            return False
        if self.no_ack:
            return True
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        limit = channel.global_prefetch
        return not limit or channel.unacked_count < limit


class Queue:
    def __init__(self, vhost: str, name: str, store: QueueStore, *, durable: bool = False,
                 exclusive_owner: Any = None, auto_delete: bool = False,
                 arguments: dict | None = None,
                 schedule: Callable[[Queue], None] | None = None) -> None:
        self.vhost = vhost
        self.name = name
        self.store = store
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments = dict(arguments or {})
        self.consumers: list[Consumer] = []
        self.had_consumer = False
        self.deleted = False
        self.bindings: set = set()
        self._schedule = schedule
        self._scheduled = False
        self._rr = 0
        self._seq = 0
        self.on_empty_consumers: Callable[[Queue], None] | None = None

    # ---- counts ------------------------------------------------------------------------
    @property
    def message_count(self) -> int:
        return len(self.store)

    @property
    def consumer_count(self) -> int:
        return len(self.consumers)

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    def exclusive_consumer(self) -> Consumer | None:
        for consumer in self.consumers:
            if consumer.exclusive:
                return consumer
        return None

    # ---- messages ----------------------------------------------------------------------
    def publish(self, message: Message) -> None:
        self._seq += 1
        self.store.push(Entry(self._seq, message))
        if self.consumers:
            self.dispatch()

    def get(self) -> Entry | None:
        return self.store.shift()

    def requeue(self, entry: Entry) -> None:
        entry.redelivered = True
        if self.deleted:
            return
        self.store.requeue(entry)

    def ack(self, entry: Entry) -> None:
        self.store.ack(entry)

    def purge(self) -> int:
        return self.store.purge()

    # ---- consumers ---------------------------------------------------------------------
    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self.had_consumer = True
        self.wake()

    def remove_consumer(self, consumer: Consumer) -> None:
        try:
            self.consumers.remove(consumer)
        except ValueError:
            return
        if not self.consumers and self.auto_delete and self.on_empty_consumers:
            self.on_empty_consumers(self)

    def wake(self) -> None:
        """Ask for a dispatch on the next loop turn (credit came back, a consumer arrived)."""
        if self._scheduled or self.deleted or not self.consumers or not len(self.store):
            return
        if self._schedule is None:
            self.dispatch()
            return
        self._scheduled = True
        self._schedule(self)

    def run_scheduled(self) -> None:
        self._scheduled = False
        self.dispatch()

    def dispatch(self) -> None:
        consumers = self.consumers
        store = self.store
        count = len(consumers)
        if not count or self.deleted:
            return
        budget = BUDGET
        idle = 0
        while idle < count and budget:
            if self._rr >= count:
                self._rr = 0
            consumer = consumers[self._rr]
            self._rr += 1
            if not consumer.has_credit():
                idle += 1
                continue
            entry = store.shift()
            if entry is None:
                return
            consumer.channel.deliver(consumer, entry)
            budget -= 1
            idle = 0
            count = len(consumers)
            if not count:
                return
        if not budget and len(store):
            self.wake()
