"""The delivery loop of a queue: handing ready messages to its consumers, mixed into
``queue.Queue`` (which keeps the consumer list, the store and the message rules).

Invariants:
- ``dispatch`` hands messages to consumers with credit, highest consumer priority first and
  round-robin within a priority (the list is kept sorted by ``Queue.add_consumer``), at most
  ``BUDGET`` per call; when more could go it asks the context to call it again on the next
  loop turn (``wake``), so one backlog cannot fill a socket buffer in one step.
- A single consumer (or single-active-consumer) gets its share as one batch, which stops at
  its connection's byte bounds (past them by one message at most).
- An expired message met at the head is dead-lettered, never delivered, except the message
  being published (``_arriving``): a consumer that can take it at once gets it whatever its
  TTL.
- Every delivery earns the queue credit back (``credit.CreditFlow``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from storage.message import Entry, Message

from .credit import CREDIT, CreditFlow, FlowContext

if TYPE_CHECKING:
    from storage.store import QueueStore

BUDGET = 256  # deliveries per dispatch call; the rest waits for the next loop turn


class DispatchContext(FlowContext, Protocol):
    """What the delivery loop needs of a queue's context (``queue.QueueContext`` has it)."""

    def now(self) -> float: ...
    def schedule(self, queue: Any) -> None: ...  # Any: the Queue (queue.py imports this)


class Delivery(CreditFlow):
    """Mixed into ``Queue``: ``wake`` / ``dispatch`` and the ways of choosing consumers."""

    # what Queue provides
    consumers: list[Any]  # Any: queue.Consumer (queue.py imports this module)
    store: QueueStore
    ctx: DispatchContext | None
    single_active: bool
    _scheduled: bool
    _rr: int
    _arriving: Entry | None

    def _dead_letter(self, message: Message, reason: str) -> None:
        raise NotImplementedError

    def _expire_head(self) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        """Ask for a dispatch on the next loop turn (credit came back, a consumer arrived)."""
        if self._scheduled or self.deleted or not self.consumers or not len(self.store):
            return
        if self.ctx is None:
            self.dispatch()
            return
        self._scheduled = True
        self.ctx.schedule(self)

    def run_scheduled(self) -> None:
        self._scheduled = False
        self.dispatch()

    def dispatch(self) -> bool:
        """Deliver what consumers have credit for; False when that emptied the queue (so the
        publish path can skip counting it)."""
        consumers = self.consumers
        count = len(consumers)
        if not count or self.deleted:
            return True
        if count == 1 or self.single_active:
            self._rr = 0
            return self._dispatch_to(consumers[0])
        if consumers[0].priority != consumers[-1].priority:
            return self._dispatch_by_priority()
        store = self.store
        budget = BUDGET
        idle = 0
        more = True
        while idle < count and budget:
            if self._rr >= count:
                self._rr = 0
            consumer = consumers[self._rr]
            if not consumer.has_credit():
                self._rr += 1
                idle += 1
                continue
            entry = self._next_entry(store)
            if entry is None:
                more = False
                break
            self._rr += 1
            consumer.channel.deliver(consumer, entry)
            budget -= 1
            idle = 0
            if not consumers:
                break
            count = len(consumers)
        self._delivered(BUDGET - budget)
        if not budget:
            self.wake()
        return more

    def _dispatch_to(self, consumer: Any) -> bool:
        """One consumer: as many as its credit allows, in one batch (one call, one wake)."""
        room = consumer.room()
        if room <= 0:
            return True
        if room > BUDGET:
            room = BUDGET
        entries: list[Entry] = []
        shift = self.store.shift
        more = True
        # A batch stops at the connection's byte bounds too, past them by one message at most,
        # as one delivery at a time would (the channel stalls once they are reached).
        byte_room = consumer.channel.byte_room(consumer.no_ack)
        while len(entries) < room:
            entry = shift()
            if entry is None:
                more = False
                break
            if entry.expires is not None and self._expired(entry):
                continue
            entries.append(entry)
            byte_room -= entry.message.size
            if byte_room <= 0:
                break
        if entries:
            consumer.channel.deliver_many(consumer, entries)
            self._delivered(len(entries))
            if len(entries) == BUDGET and more:
                self.wake()
        return more

    def _delivered(self, count: int) -> None:
        if count and (self.credit < CREDIT or self._credit_waiters):
            self._earn(count)

    def _next_entry(self, store: QueueStore) -> Entry | None:
        entry = store.shift()
        if entry is not None and entry.expires is not None and self._expired(entry):
            return store.shift()
        return entry

    def _expired(self, entry: Entry) -> bool:
        """A shifted entry past its expiry is dead-lettered (and the head behind it checked)."""
        if self.ctx is None or entry.expires is None or entry is self._arriving or \
                entry.expires > self.ctx.now():
            return False
        self.store.ack(entry)
        self._dead_letter(entry.message, "expired")
        self._expire_head()
        return True

    def _dispatch_by_priority(self) -> bool:
        """Consumers are sorted by priority: the first one with credit gets the message."""
        store = self.store
        sent = 0
        more = True
        while sent < BUDGET:
            consumer = next((c for c in self.consumers if c.has_credit()), None)
            if consumer is None:
                break
            entry = self._next_entry(store)
            if entry is None:
                more = False
                break
            consumer.channel.deliver(consumer, entry)
            sent += 1
        self._delivered(sent)
        if sent == BUDGET:
            self.wake()
        return more
