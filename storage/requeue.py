"""A store's requeued messages, in seq order: some as entries in RAM, the rest as positions.

A consumer that goes away with many unacked messages sends them all back to the queue. They
are served first, by seq. ``Requeued`` keeps them as entries (a heap) while the window's
requeue budget allows; past it, those whose record is in the segment log (read from the
backlog, or persistent in a durable queue) go to ``PagedRequeues``: 28 bytes per message in
parallel ``array``s, and the store reads the record back (one ``pread``) when its turn comes.
A requeued message without a record stays an entry (it was in RAM with its consumer anyway).

Invariants:
- Entries in ``heap`` are counted in the window's ``rq_n``/``rq_b``, and only they.
- ``PagedRequeues.seqs[head:]`` is sorted and unique; ``pos``, ``sizes`` and ``meta`` are
  parallel to it. Additions that are not at either end of that run are staged in ``_p*``
  arrays (appends only) and merged in before anything is read, so the usual cases stay O(1)
  per message: a channel requeues in delivery order (ascending), and a nack-requeue puts back
  what was just taken from the head.
- No Python object per message: only a few arrays, however many messages are held.
- ``bytes`` is the sum of the sizes held.
"""

from __future__ import annotations

import heapq
import logging
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator

from .cursor import LogCursor
from .message import Entry
from .record import RecordError
from .recovery import Seg
from .window import Window

OFFSET_MASK = 0xFFFF_FFFF
log = logging.getLogger(__name__)

REDELIVERED = 0x1
PERSISTENT = 0x2
COUNT_SHIFT = 2
MAX_COUNT = (1 << 30) - 1

#: (seq, position, size, meta) of one paged requeued message
Item = tuple[int, int, int, int]


def pack_meta(redelivered: bool, persistent: bool, delivery_count: int) -> int:
    return (REDELIVERED if redelivered else 0) | (PERSISTENT if persistent else 0) | \
        (min(delivery_count, MAX_COUNT) << COUNT_SHIFT)


Columns = tuple["array[int]", "array[int]", "array[int]", "array[int]"]


def _arrays() -> Columns:
    return array("q"), array("Q"), array("Q"), array("I")


class PagedRequeues:
    __slots__ = ("seqs", "pos", "sizes", "meta", "head", "bytes", "_pseqs", "_ppos", "_psizes",
                 "_pmeta")

    def __init__(self) -> None:
        self.seqs, self.pos, self.sizes, self.meta = _arrays()
        self._pseqs, self._ppos, self._psizes, self._pmeta = _arrays()
        self.head = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.seqs) - self.head + len(self._pseqs)

    def add(self, seq: int, pos: int, size: int, meta: int) -> None:
        self.bytes += size
        seqs = self.seqs
        head = self.head
        if head == len(seqs):
            if head:
                self._reset()
            self._append(seq, pos, size, meta)
        elif seq > seqs[-1]:
            self._append(seq, pos, size, meta)
        elif head and seq < seqs[head]:
            head -= 1
            self.head = head
            seqs[head], self.pos[head], self.sizes[head], self.meta[head] = seq, pos, size, meta
        else:
            self._pseqs.append(seq)
            self._ppos.append(pos)
            self._psizes.append(size)
            self._pmeta.append(meta)

    def _append(self, seq: int, pos: int, size: int, meta: int) -> None:
        self.seqs.append(seq)
        self.pos.append(pos)
        self.sizes.append(size)
        self.meta.append(meta)

    def _reset(self) -> None:
        self.seqs, self.pos, self.sizes, self.meta = _arrays()
        self.head = 0

    def first_seq(self) -> int:
        """The smallest seq held (the set must not be empty)."""
        if self._pseqs:
            self._merge()
        return self.seqs[self.head]

    def pop(self) -> Item:
        """Remove and return the item with the smallest seq (the set must not be empty)."""
        if self._pseqs:
            self._merge()
        i = self.head
        item = (self.seqs[i], self.pos[i], self.sizes[i], self.meta[i])
        i += 1
        if i == len(self.seqs):
            self._reset()
        elif i >= 4096 and i * 2 >= len(self.seqs):  # give the consumed prefix back
            for column in (self.seqs, self.pos, self.sizes, self.meta):
                del column[:i]
            self.head = 0
        else:
            self.head = i
        self.bytes -= item[2]
        return item

    def __iter__(self) -> Iterator[Item]:
        """Every item in seq order (the set must not change while iterating)."""
        if self._pseqs:
            self._merge()
        for i in range(self.head, len(self.seqs)):
            yield self.seqs[i], self.pos[i], self.sizes[i], self.meta[i]

    def clear(self) -> list[Item]:
        """Empty the set; return what it held, in seq order (for the store to ack)."""
        items = list(self)
        self._reset()
        self._pseqs, self._ppos, self._psizes, self._pmeta = _arrays()
        self.bytes = 0
        return items

    # ---- merging the staged additions ----------------------------------------------------
    def _merge(self) -> None:
        staged = [self._pseqs, self._ppos, self._psizes, self._pmeta]
        self._pseqs, self._ppos, self._psizes, self._pmeta = _arrays()
        pseqs = staged[0]
        if any(pseqs[i] > pseqs[i + 1] for i in range(len(pseqs) - 1)):
            order = sorted(range(len(pseqs)), key=pseqs.__getitem__)
            staged = [array(column.typecode, [column[i] for i in order]) for column in staged]
            pseqs = staged[0]
        columns = [self.seqs, self.pos, self.sizes, self.meta]
        seqs = columns[0]
        head = self.head
        if len(pseqs) <= 32:  # a few: insert in place (a memmove each)
            for j in range(len(pseqs)):
                at = bisect_left(seqs, pseqs[j], head)
                for column, source in zip(columns, staged, strict=True):
                    column.insert(at, source[j])
            return
        # many: one linear merge, copying runs as slices
        merged = list(_arrays())
        i, j, n, m = head, 0, len(seqs), len(pseqs)
        while i < n and j < m:
            k = bisect_left(seqs, pseqs[j], i)
            if k > i:
                for out, column in zip(merged, columns, strict=True):
                    out.extend(column[i:k])
                i = k
                if i == n:
                    break
            k = bisect_right(pseqs, seqs[i], j)  # > j: always moves on
            for out, source in zip(merged, staged, strict=True):
                out.extend(source[j:k])
            j = k
        for out, column in zip(merged, columns, strict=True):
            out.extend(column[i:])
        for out, source in zip(merged, staged, strict=True):
            out.extend(source[j:])
        self.seqs, self.pos, self.sizes, self.meta = merged
        self.head = 0


class Requeued:
    """Requeued entries of one store within ``window``'s requeue budget, and the paged rest.

    Paged messages are read back through the store's ``cursor`` from its ``segs``; one taken
    out gets its position back in ``positions`` (for its ack); an unreadable one is logged and
    handed to ``lost(item)`` for the store to settle.
    """

    __slots__ = ("heap", "paged", "ram_bytes", "_w", "_cursor", "_segs", "_positions", "_lost")

    def __init__(self, window: Window, cursor: LogCursor, segs: dict[int, Seg],
                 positions: dict[int, int], lost: Callable[[Item], None]) -> None:
        self.heap: list[Entry] = []
        self.paged: PagedRequeues | None = None
        self.ram_bytes = 0
        self._w = window
        self._cursor = cursor
        self._segs = segs
        self._positions = positions
        self._lost = lost

    def __len__(self) -> int:
        return len(self.heap) + (len(self.paged) if self.paged is not None else 0)

    @property
    def bytes(self) -> int:
        return self.ram_bytes + (self.paged.bytes if self.paged is not None else 0)

    def add(self, entry: Entry) -> None:
        message = entry.message
        size = message.size
        positions = self._positions
        if self._w.requeue_room(size) or not positions or \
                (pos := positions.pop(entry.seq, None)) is None:
            self._push(entry, size)
            return
        paged = self.paged
        if paged is None:
            paged = self.paged = PagedRequeues()
        paged.add(entry.seq, pos, size,
                  pack_meta(entry.redelivered, message.persistent, entry.delivery_count))

    def _push(self, entry: Entry, size: int) -> None:
        heapq.heappush(self.heap, entry)
        self.ram_bytes += size
        self._w.rq_n += 1
        self._w.rq_b += size

    def take(self) -> Entry | None:
        """Remove and return the first requeued message (None when there is none)."""
        entry = self._paged_first()
        if entry is not None:
            return entry
        heap = self.heap
        if not heap:
            return None
        entry = heapq.heappop(heap)
        size = entry.message.size
        self.ram_bytes -= size
        self._w.rq_n -= 1
        self._w.rq_b -= size
        return entry

    def first(self) -> Entry | None:
        """The first requeued message, without removing it (read back if it was paged)."""
        entry = self._paged_first()
        if entry is not None:
            self._push(entry, entry.message.size)
        return self.heap[0] if self.heap else None

    def _paged_first(self) -> Entry | None:
        """The first paged message, read back and removed, when it comes before the heap's."""
        heap = self.heap
        while (paged := self.paged) is not None and \
                (not heap or paged.first_seq() < heap[0].seq):
            item = paged.pop()
            if not len(paged):
                self.paged = None
            entry = self._fetch(item)
            if entry is not None:
                self._positions[entry.seq] = item[1]
                return entry
            self._lost(item)
        return None

    def drop(self) -> tuple[list[Entry], list[Item]]:
        """Empty the set and give its budget back; return what it held."""
        entries = self.heap
        self.heap = []
        self._w.rq_n -= len(entries)
        self._w.rq_b -= self.ram_bytes
        self.ram_bytes = 0
        items = self.paged.clear() if self.paged is not None else []
        self.paged = None
        return entries, items

    def __iter__(self) -> Iterator[Entry]:
        """Every requeued message in seq order (paged ones read back, not removed)."""
        ram = sorted(self.heap)
        if self.paged is None:
            yield from ram
            return
        fetch = self._fetch
        paged = (e for item in list(self.paged) if (e := fetch(item)) is not None)
        yield from heapq.merge(ram, paged)

    def _fetch(self, item: Item) -> Entry | None:
        seq, pos, _, meta = item
        seg = self._segs.get(pos >> 32)
        try:
            if seg is None:
                raise OSError(f"segment {pos >> 32} is gone")
            record = self._cursor.fetch(seg, pos & OFFSET_MASK)
        except (RecordError, OSError) as exc:
            log.error("%s: requeued message %d unreadable: %s", self._cursor.directory, seq,
                      exc)
            return None
        entry = self._cursor.entry(record, seq, bool(meta & REDELIVERED))
        entry.delivery_count = meta >> COUNT_SHIFT
        return entry
