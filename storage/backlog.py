"""Reading a queue store's backlog back: the read half of ``message_store.SegmentQueueStore``.

The backlog is every ready record from the log cursor to the end of the log, held by no Python
object. ``BacklogReader`` turns those records back into entries in order (``_read_one``),
refills the store's read window from them within its ``Window`` budget (``_refill``), and
settles what cannot be read: a record that does not decode loses the rest of its segment
(``_lose_rest``), a paged requeued message that does not read back is lost alone (``_lost``);
both are logged and counted out, never delivered half-read.

It is a mixin: ``SegmentQueueStore`` is its only subclass and owns the state declared below
(the store's module docstring states the invariants). Kept apart so that each module stays
readable in one sitting; nothing here writes except through the store's own methods.
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path

from .cursor import LogCursor
from .message import Entry
from .record import RecordError
from .recovery import Seg
from .requeue import PERSISTENT, Item, Requeued
from .window import Window

log = logging.getLogger("storage.message_store")


class BacklogReader:
    directory: Path
    _cursor: LogCursor
    _backlog: int
    _bytes: int
    _pos: dict[int, int]
    _window: deque[Entry]
    _w: Window
    _rq: Requeued
    _wseg: Seg | None

    # provided by the store
    def _roll_writer(self) -> object: ...
    def _collect(self, seg: Seg) -> None: ...
    def _ack_pos(self, pos: int, size: int, persistent: bool) -> None: ...

    def _read_one(self) -> Entry | None:
        """Take the next backlog record off the disk as an entry (None: backlog exhausted)."""
        cursor = self._cursor
        while self._backlog:
            seg = cursor.current()
            if seg is None:
                log.error("%s: %d messages missing from the log", self.directory, self._backlog)
                self._backlog = 0
                self._bytes = self._rq.bytes + sum(e.message.size for e in self._window)
                return None
            try:
                entry = cursor.take(seg)
            except (RecordError, OSError) as exc:
                entry = None
                log.error("%s: segment %d unreadable: %s", self.directory, seg.id, exc)
            if entry is None:
                self._lose_rest(seg)
                continue
            seg.ready -= 1
            seg.ready_bytes -= entry.message.size
            self._backlog -= 1
            self._pos[entry.seq] = (seg.id << 32) | cursor.record_offset
            return entry
        return None

    def _lose_rest(self, seg: Seg) -> None:
        """The rest of ``seg`` cannot be read: its remaining ready messages are lost."""
        log.error("%s: dropping %d unreadable messages of segment %d", self.directory,
                  seg.ready, seg.id)
        self._backlog -= seg.ready
        self._bytes -= seg.ready_bytes
        seg.live -= seg.ready
        seg.ready = seg.ready_bytes = 0
        if seg is self._wseg:
            self._roll_writer()  # the cursor has left it: new records must go to a new one
        elif seg.live <= 0:
            self._collect(seg)

    def _refill(self) -> None:
        window, w = self._window, self._w
        while self._backlog and w.n < w.max_n and w.b < w.max_b:
            entry = self._read_one()
            if entry is None:
                return
            window.append(entry)
            w.add(1, entry.message.size)

    def _lost(self, item: Item) -> None:
        """A paged requeued message could not be read back (``Requeued`` logged it)."""
        self._bytes -= item[2]
        self._ack_pos(item[1], item[2], bool(item[3] & PERSISTENT))
