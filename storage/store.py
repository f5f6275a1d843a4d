"""The per-queue message store contract and its in-memory implementation.

A queue owns one store holding its *ready* messages in queue order. Delivered-but-unacked
entries live with the channel that holds them; on requeue they come back with ``requeue`` and are
served before everything still ready, in their original order (a FIFO queue delivered them
before any message that is still ready, so their sequence numbers are all smaller).

The disk store implements the same methods; ``ack`` exists so that it can record removals in
its ack log. ``QueueStore`` lists everything a caller may use, and every store (memory, paging,
segment log, priority) implements all of it, so callers never probe a store for a method.
Nothing here knows about exchanges, channels or the wire.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from typing import Protocol

from .message import Entry


class StoreClosed(OSError):
    """A write to a store after ``close`` (or a store, or a part of one, made after the node's
    stores closed): refused before anything reaches the disk."""


class QueueStore(Protocol):
    # The sequence number of the last recovered message (0 for a fresh store): the owning
    # queue numbers new messages after it.
    last_seq: int

    def push(self, entry: Entry) -> None: ...
    def shift(self) -> Entry | None: ...
    def peek(self) -> Entry | None: ...
    def requeue(self, entry: Entry) -> None: ...
    def ack(self, entry: Entry) -> None: ...
    def purge(self) -> int: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Entry]: ...
    @property
    def bytes(self) -> int: ...
    def set_mode(self, mode: str) -> None:
        """``default`` or ``lazy`` (x-queue-mode): how much of the queue stays in RAM."""
    def close(self) -> None:
        """Shutdown: flush what the store holds (durable stores keep it)."""
    def delete(self) -> None:
        """The queue is gone: drop everything, remove any files."""


class MemoryQueueStore:
    __slots__ = ("_ready", "_requeued", "_bytes", "last_seq")

    def __init__(self) -> None:
        self.last_seq = 0
        self._ready: deque[Entry] = deque()
        self._requeued: list[Entry] = []
        self._bytes = 0

    def push(self, entry: Entry) -> None:
        self._ready.append(entry)
        self._bytes += entry.message.size

    def shift(self) -> Entry | None:
        if self._requeued:
            entry = heapq.heappop(self._requeued)
        elif self._ready:
            entry = self._ready.popleft()
        else:
            return None
        self._bytes -= entry.message.size
        return entry

    def peek(self) -> Entry | None:
        if self._requeued:
            return self._requeued[0]
        return self._ready[0] if self._ready else None

    def requeue(self, entry: Entry) -> None:
        heapq.heappush(self._requeued, entry)
        self._bytes += entry.message.size

    def ack(self, entry: Entry) -> None:
        """In memory an acked entry simply becomes garbage."""

    def purge(self) -> int:
        count = len(self)
        self._ready.clear()
        self._requeued.clear()
        self._bytes = 0
        return count

    def __len__(self) -> int:
        return len(self._ready) + len(self._requeued)

    def __iter__(self) -> Iterator[Entry]:
        yield from sorted(self._requeued)
        yield from self._ready

    @property
    def in_memory(self) -> int:
        """Ready entries held in RAM: all of them."""
        return len(self._ready)

    @property
    def bytes(self) -> int:
        return self._bytes

    def set_mode(self, mode: str) -> None:
        """Everything is in RAM whatever the mode."""

    def close(self) -> None:
        """Nothing to flush in memory."""

    def delete(self) -> None:
        self.purge()
