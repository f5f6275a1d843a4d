"""Priority queue store: ready messages bucketed by priority, one sub-store per priority.

Highest priority first, FIFO within a priority (also after requeue, which each sub-store keeps
by sequence number). A priority above the queue's x-max-priority counts as the max; no priority
property counts as 0. Sub-stores are made on demand by a factory, so the same composition works
over the in-memory store and the disk store. The message's priority comes from ``priority_of``,
given by the broker (storage does not read AMQP properties). Disk sub-stores share one
``window.Window``, so the levels together keep in RAM what one classic queue keeps, and each
level pages out the same way a classic queue does.

Invariants: every level above ``_top`` is empty (levels only fill through ``push`` and
``requeue``, which raise it), so finding the head does not ask every level for its length.
Once closed, no sub-store is made any more (``StoreClosed``): a priority not seen before would
open new files after the last fsync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .message import Entry, Message
from .store import QueueStore, StoreClosed


class PriorityQueueStore:
    __slots__ = ("max_priority", "_factory", "_priority", "_buckets", "_top", "last_seq",
                 "_closed")

    def __init__(self, max_priority: int, factory: Callable[[int], QueueStore],
                 priority_of: Callable[[Message], int],
                 existing: dict[int, QueueStore] | None = None) -> None:
        """``priority_of``: a message's priority (0 when it has none); ``existing``: sub-stores
        already opened (recovered), by priority."""
        self.max_priority = max_priority
        self._factory = factory
        self._priority = priority_of
        self._buckets: list[QueueStore | None] = [None] * (max_priority + 1)
        self._top = max_priority  # recovered levels may hold anything: start from the top
        self.last_seq = 0
        self._closed = False
        for priority, bucket in (existing or {}).items():
            if 0 <= priority <= max_priority:
                self._buckets[priority] = bucket
                self.last_seq = max(self.last_seq, bucket.last_seq)

    def priority_of(self, entry: Entry) -> int:
        return min(self._priority(entry.message), self.max_priority)

    def _bucket(self, priority: int) -> QueueStore:
        bucket = self._buckets[priority]
        if bucket is None:
            if self._closed:
                raise StoreClosed(f"priority {priority}: the queue store is closed")
            bucket = self._buckets[priority] = self._factory(priority)
        return bucket

    def push(self, entry: Entry) -> None:
        priority = self.priority_of(entry)
        if priority > self._top:
            self._top = priority
        self._bucket(priority).push(entry)

    def _first(self) -> QueueStore | None:
        buckets = self._buckets
        top = self._top
        while top >= 0:
            bucket = buckets[top]
            if bucket is not None and len(bucket):
                self._top = top
                return bucket
            top -= 1
        self._top = 0
        return None

    def shift(self) -> Entry | None:
        bucket = self._first()
        return bucket.shift() if bucket is not None else None

    def peek(self) -> Entry | None:
        bucket = self._first()
        return bucket.peek() if bucket is not None else None

    def requeue(self, entry: Entry) -> None:
        priority = self.priority_of(entry)
        if priority > self._top:
            self._top = priority
        self._bucket(priority).requeue(entry)

    def ack(self, entry: Entry) -> None:
        self._bucket(self.priority_of(entry)).ack(entry)

    def purge(self) -> int:
        return sum(b.purge() for b in self._buckets if b is not None)

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets if b is not None)

    def __iter__(self) -> Iterator[Entry]:
        for bucket in reversed(self._buckets):
            if bucket is not None:
                yield from bucket

    @property
    def bytes(self) -> int:
        return sum(b.bytes for b in self._buckets if b is not None)

    @property
    def in_memory(self) -> int:
        return sum(getattr(b, "in_memory", len(b)) for b in self._buckets if b is not None)

    def set_mode(self, mode: str) -> None:
        for bucket in self._buckets:
            if bucket is not None:
                bucket.set_mode(mode)

    def close(self) -> None:
        self._closed = True
        for bucket in self._buckets:
            if bucket is not None:
                bucket.close()

    def delete(self) -> None:
        self._closed = True
        for bucket in self._buckets:
            if bucket is not None:
                bucket.delete()
