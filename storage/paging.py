"""PagingStore: a non-durable queue's store that lives in RAM until its backlog grows.

Below the window every operation is a deque operation and no file exists. Past it, the overflow
goes to a scratch SegmentQueueStore created on demand (which keeps only its own small window in
RAM), and that store is deleted again once everything it held is gone. Order holds because once
spilling starts every new message goes to the spill until it is drained, and every message in
RAM is older than every spilled one. Once closed it makes no spill any more (``StoreClosed``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .message import Entry
from .message_store import SegmentQueueStore
from .store import MemoryQueueStore, StoreClosed

# A transient queue stays in RAM up to this many messages / bytes before it pages out: large
# enough that a consumer briefly falling behind never pays for disk, small enough that memory
# stays bounded per queue whatever the backlog.
WINDOWS = {"default": (32768, 32 * 1024 * 1024), "lazy": (0, 0)}


class PagingStore:
    __slots__ = ("_mem", "_spill", "_spill_from", "_out", "_make_spill", "_max_n", "_max_b",
                 "last_seq", "_closed")

    def __init__(self, make_spill: Callable[[], SegmentQueueStore], mode: str = "default") -> None:
        self._mem = MemoryQueueStore()
        self._spill: SegmentQueueStore | None = None
        self._spill_from = 0
        self._out = 0  # entries shifted from the spill and not yet acked or requeued
        self._make_spill = make_spill
        self.last_seq = 0  # nothing to recover: a paging store starts empty
        self._closed = False
        self.set_mode(mode)

    def set_mode(self, mode: str) -> None:
        self._max_n, self._max_b = WINDOWS.get(mode, WINDOWS["default"])

    def push(self, entry: Entry) -> None:
        mem = self._mem
        if self._spill is None and len(mem) < self._max_n and \
                mem.bytes + entry.message.size <= self._max_b:
            mem.push(entry)
            return
        if self._spill is None:
            if self._closed:
                raise StoreClosed("the queue store is closed: no spill file any more")
            self._spill = self._make_spill()
            self._spill_from = entry.seq
        self._spill.push(entry)

    def shift(self) -> Entry | None:
        entry = self._mem.shift()
        if entry is not None:
            return entry
        spill = self._spill
        if spill is None:
            return None
        entry = spill.shift()
        if entry is not None:
            self._out += 1
        return entry

    def peek(self) -> Entry | None:
        entry = self._mem.peek()
        if entry is None and self._spill is not None:
            return self._spill.peek()
        return entry

    def _from_spill(self, entry: Entry) -> bool:
        return self._spill is not None and entry.seq >= self._spill_from

    def requeue(self, entry: Entry) -> None:
        if self._from_spill(entry):
            self._settle(entry)
        self._mem.requeue(entry)

    def ack(self, entry: Entry) -> None:
        if self._from_spill(entry):
            self._settle(entry)

    def _settle(self, entry: Entry) -> None:
        spill = self._spill
        assert spill is not None
        spill.ack(entry)
        self._out -= 1
        if not self._out and not len(spill):
            spill.delete()
            self._spill = None

    def purge(self) -> int:
        count = self._mem.purge()
        if self._spill is not None:
            count += self._spill.purge()
            if not self._out:
                self._spill.delete()
                self._spill = None
        return count

    def __len__(self) -> int:
        return len(self._mem) + (len(self._spill) if self._spill is not None else 0)

    def __iter__(self) -> Iterator[Entry]:
        yield from self._mem
        if self._spill is not None:
            yield from self._spill

    @property
    def bytes(self) -> int:
        return self._mem.bytes + (self._spill.bytes if self._spill is not None else 0)

    @property
    def in_memory(self) -> int:
        """Ready entries held in RAM: the window plus the spill's own read window."""
        return self._mem.in_memory + (self._spill.in_memory if self._spill is not None else 0)

    def close(self) -> None:
        self.delete()
        self._closed = True

    def delete(self) -> None:
        if self._spill is not None:
            self._spill.delete()
            self._spill = None
        self._mem.purge()
