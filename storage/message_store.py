"""``SegmentQueueStore``: one queue's ready messages, a small window in RAM and the rest on disk.

Queue order = ``requeued`` (a heap on seq) + ``window`` (a deque of entries in RAM) + the
*backlog*: records in the segment log from the cursor to the end, held by no Python object.

Invariants:
- Every record at or after the cursor is ready (the backlog is a suffix of the log): a push
  goes to the backlog while the backlog is not empty or the window is full; otherwise it goes
  to the window (and, when persistent in a durable queue, to the log too, before the cursor).
- Entries in RAM that have a record (window, requeued, out with a consumer) map ``seq ->
  (segment id << 32 | offset)`` in ``_pos``; that is the only per-message state kept, and only
  for messages that are in RAM anyway. Disk-only messages cost nothing but per-segment counters.
- Transient messages below the window never touch the disk (deque operations only).
- A record leaves a segment's ``live`` count when it is acked (an entry in the segment's ack
  log); a segment with ``live == 0`` is deleted (the one being written only once it is at least
  ``gc_min_size`` bytes, so a hot queue does not create a file per message).
- After ``open``, recovered messages get seqs ``first_seq+1 .. last_seq`` in log order as they
  are read; the owning queue must continue numbering after ``last_seq``.
- Once closed, the store writes nothing: no delivered mark, no ack, and a message that would
  need a record is refused (``StoreClosed``), never half-saved (a new segment file made after the
  final fsync, an ack file reopened).
- Loop-thread only. Iterating while mutating the store is undefined.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .acks import AckLog
from .cursor import LogCursor
from .message import Entry
from .record import F_EXPIRES, F_PERSISTENT, RecordError
from .recovery import Seg, recover, unlink_segment_files
from .segment import (
    DEFAULT_READ_AHEAD,
    DEFAULT_ROLL_SIZE,
    DEFAULT_WRITE_BUFFER,
    FILE_HEADER_SIZE,
    SegmentWriter,
    write_index,
)
from .store import StoreClosed
from .sync import DirectoryHandle, GroupCommit

if TYPE_CHECKING:
    from .replication import ReplicationSink

log = logging.getLogger(__name__)

OFFSET_MASK = 0xFFFF_FFFF
#: mode -> (window messages, window bytes)
MODES = {"default": (1024, 4 * 1024 * 1024), "lazy": (0, 0)}


class SegmentQueueStore:
    def __init__(self, directory: str | os.PathLike[str], *, durable: bool = True,
                 mode: str = "default", group_commit: GroupCommit | None = None,
                 roll_size: int = DEFAULT_ROLL_SIZE, window_messages: int | None = None,
                 window_bytes: int | None = None, gc_min_size: int | None = None,
                 read_ahead: int = DEFAULT_READ_AHEAD, write_buffer: int = DEFAULT_WRITE_BUFFER,
                 clock: Callable[[], float] = time.monotonic, first_seq: int = 0,
                 sink: ReplicationSink | None = None) -> None:
        """Open (recovering when ``durable``) or create the store in ``directory``.

        A non-durable store starts empty: whatever ``directory`` held is wiped.
        ``window_*`` override the mode's window; ``clock`` is the queue's ``now()`` (entry
        ``expires`` are stored as wall-clock deadlines and converted back with it). Recovered
        messages get seqs ``first_seq + 1 .. last_seq`` (chain ``first_seq`` through the
        sub-stores of one queue so their seqs do not overlap). Every change to the files of
        a durable store is told to ``sink`` (``storage.replication``).
        """
        self.directory = Path(directory)
        self.durable = durable
        self._gc = group_commit
        self._roll = roll_size
        self._gc_min = roll_size // 8 if gc_min_size is None else gc_min_size
        self._read_ahead = read_ahead
        self._write_buffer = write_buffer
        self._clock = clock
        self._sink = sink if durable else None
        self.set_mode(mode, window_messages, window_bytes)
        if not durable and self.directory.exists():
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._requeued: list[Entry] = []
        self._window: deque[Entry] = deque()
        self._win_bytes = 0
        self._bytes = 0
        self._backlog = 0
        self._pos: dict[int, int] = {}
        self._segs: dict[int, Seg] = {}
        self._seg_ids: list[int] = []
        self._writer: SegmentWriter | None = None
        self._wseg: Seg | None = None
        self._acks = AckLog(self.directory, sink=self._sink)
        self._dirh = DirectoryHandle(self.directory)
        self._closed = False
        self._cursor = LogCursor(self.directory, self._segs, self._seg_ids,
                                 lambda seg: self._writer if seg is self._wseg else None,
                                 read_ahead, clock)
        segs, self._next_id = recover(self.directory, self._sink) if durable else ([], 1)
        for seg in segs:
            self._segs[seg.id] = seg
            self._seg_ids.append(seg.id)
            self._backlog += seg.ready
            self._bytes += seg.ready_bytes
        self._cursor.rseq = first_seq
        self.last_seq = first_seq + self._backlog
        if segs:
            self._cursor.open(segs[0], FILE_HEADER_SIZE)

    def set_mode(self, mode: str, window_messages: int | None = None,
                 window_bytes: int | None = None) -> None:
        """``default`` or ``lazy`` (``x-queue-mode``); entries already in RAM stay there."""
        if mode not in MODES:
            raise ValueError(f"unknown queue mode {mode!r}")
        self.mode = mode
        messages, size = MODES[mode]
        self._win_n = messages if window_messages is None else window_messages
        self._win_b = size if window_bytes is None else window_bytes
        self._refill_below = self._win_n // 2

    # ---- QueueStore --------------------------------------------------------------------
    def push(self, entry: Entry) -> None:
        message = entry.message
        size = message.size
        window = self._window
        if self._backlog or len(window) >= self._win_n or \
                (window and self._win_bytes + size > self._win_b):
            pos = self._append(entry, True)
            if not self._backlog:
                self._cursor.at(self._segs[pos >> 32], pos & OFFSET_MASK)
            self._backlog += 1
        else:
            if message.persistent and self.durable:
                self._pos[entry.seq] = self._append(entry, False)
            window.append(entry)
            self._win_bytes += size
        self._bytes += size

    def shift(self) -> Entry | None:
        entry: Entry | None
        if self._requeued:
            entry = heapq.heappop(self._requeued)
        elif self._window:
            entry = self._window.popleft()
            self._win_bytes -= entry.message.size
            if self._backlog and len(self._window) < self._refill_below:
                self._refill()
        elif self._backlog:
            entry = self._read_one()
            if entry is None:
                return None
            if self._backlog and self._win_n:
                self._refill()
        else:
            return None
        message = entry.message
        self._bytes -= message.size
        if self._pos and message.persistent and self.durable and not self._closed:
            pos = self._pos.get(entry.seq)
            if pos is not None:
                self._acks.delivered(pos >> 32, pos & OFFSET_MASK)
                if self._gc is not None:
                    self._gc.touch(self._acks, False)
        return entry

    def peek(self) -> Entry | None:
        if self._requeued:
            return self._requeued[0]
        if not self._window and self._backlog:
            entry = self._read_one()
            if entry is not None:
                self._window.append(entry)
                self._win_bytes += entry.message.size
        return self._window[0] if self._window else None

    def requeue(self, entry: Entry) -> None:
        heapq.heappush(self._requeued, entry)
        self._bytes += entry.message.size

    def ack(self, entry: Entry) -> None:
        """Settle ``entry`` for good: an ack-log entry when it has a record; no-op otherwise."""
        if not self._pos:
            return
        pos = self._pos.pop(entry.seq, None)
        if pos is None or self._closed:
            return
        seg = self._segs.get(pos >> 32)
        if seg is None:
            return
        message = entry.message
        self._acks.ack(seg.id, pos & OFFSET_MASK, message.size, message.persistent)
        if self._gc is not None:
            self._gc.touch(self._acks, False)
        seg.live -= 1
        if seg.live <= 0:
            self._collect(seg)

    def purge(self) -> int:
        """Drop every ready message (acking the logged ones); delivered ones are untouched."""
        count = len(self)
        dropped = self._requeued + list(self._window)
        self._requeued.clear()
        self._window.clear()
        self._win_bytes = 0
        for entry in dropped:
            self.ack(entry)
        while self._backlog:
            seg = self._cursor.current()
            if seg is None:
                break
            if seg.live == seg.ready:  # nothing of it is in RAM: delete it whole
                self._backlog -= seg.ready
                seg.live = seg.ready = seg.ready_bytes = 0
                self._remove(seg)
                continue
            left = self._read_one()
            if left is not None:
                self.ack(left)
        self._backlog = 0
        self._bytes = 0
        return count

    def __len__(self) -> int:
        return len(self._requeued) + len(self._window) + self._backlog

    def __iter__(self) -> Iterator[Entry]:
        yield from sorted(self._requeued)
        yield from list(self._window)
        if self._backlog:
            yield from self._cursor.scan()

    @property
    def bytes(self) -> int:
        return self._bytes

    # ---- extras ------------------------------------------------------------------------
    @property
    def in_memory(self) -> int:
        """Ready entries held in RAM (window + requeued)."""
        return len(self._window) + len(self._requeued)

    @property
    def segment_count(self) -> int:
        return len(self._segs)

    def flush(self) -> None:
        """Hand every buffered byte to the kernel (no fsync). Raises OSError."""
        if self._writer is not None:
            self._writer.flush()
        self._acks.flush()

    def close(self) -> None:
        """Flush, seal the segment being written and close every file. With a group commit,
        the data is fsynced by its next batch (``flush_now()`` / ``await sync()`` after
        closing every store at shutdown)."""
        if not self._closed:
            self._shut(seal=True)

    def delete(self) -> None:
        """The queue is gone: close without flushing and remove the directory."""
        self._shut(seal=False)
        self._requeued.clear()
        self._window.clear()
        self._pos.clear()
        self._segs.clear()
        self._backlog = self._bytes = self._win_bytes = 0
        shutil.rmtree(self.directory, ignore_errors=True)
        if self._sink is not None:
            self._sink.delete(str(self.directory))

    def _shut(self, seal: bool) -> None:
        self._closed = True
        self._cursor.close()
        gc, writer = self._gc, self._writer
        if writer is not None:
            if seal:
                try:
                    writer.seal()
                except OSError as exc:
                    log.error("%s: could not seal on close: %s", writer.path, exc)
            if gc is not None:
                (gc.handoff if seal else gc.discard)(writer)
            writer.close()
        if gc is not None:
            gc.discard(self._acks)
            (gc.handoff if seal else gc.discard)(self._dirh)
        self._acks.close(flush=seal)
        self._dirh.close()

    # ---- writing -----------------------------------------------------------------------
    def _append(self, entry: Entry, ready: bool) -> int:
        if self._closed:
            raise StoreClosed(f"{self.directory}: the queue store is closed")
        writer = self._writer
        if writer is None or writer.size >= self._roll:
            writer = self._roll_writer()
        message = entry.message
        flags = F_PERSISTENT if message.persistent else 0
        expires = entry.expires
        if expires is not None:
            flags |= F_EXPIRES
            expires = expires - self._clock() + time.time()
        offset = writer.append(entry.seq, flags, expires or 0.0, message.exchange_raw,
                               message.routing_key_raw, message.properties, message.body,
                               entry.delivery_count)
        seg = self._wseg
        assert seg is not None
        seg.live += 1
        if ready:
            seg.ready += 1
            seg.ready_bytes += message.size
        if self._gc is not None:
            self._gc.touch(writer)
        return (seg.id << 32) | offset

    def _roll_writer(self) -> SegmentWriter:
        """Seal the segment being written (if any) and start the next one. When the disk
        refuses, keep appending to the current segment (it grows past the roll size)."""
        old = self._writer
        if old is not None:
            try:
                old.flush()
            except OSError:
                return old
        try:
            writer = SegmentWriter(self.directory, self._next_id, self._write_buffer, self._sink)
        except OSError:
            if old is None:
                raise
            log.exception("%s: cannot start a new segment", self.directory)
            return old
        self._next_id += 1
        if old is not None:
            self._seal(old)
        seg = Seg(writer.seg_id)
        self._segs[seg.id] = seg
        self._seg_ids.append(seg.id)
        self._writer, self._wseg = writer, seg
        if self._gc is not None:
            self._gc.touch(self._dirh)
        return writer

    def _seal(self, writer: SegmentWriter) -> None:
        seg = self._wseg
        assert seg is not None
        try:
            write_index(self.directory, writer.seg_id, writer.stats, self._sink)
        except OSError as exc:  # recovery scans a segment without an index
            log.warning("%s: no index written: %s", writer.path, exc)
        if self._gc is not None:
            self._gc.handoff(writer)
        writer.close()
        seg.end = writer.stats.end
        self._writer = self._wseg = None
        self._cursor.sealed(seg)
        if seg.live <= 0:
            self._remove(seg)

    def _collect(self, seg: Seg) -> None:
        """``seg`` has no live record left: delete it (the live one only once big enough)."""
        writer = self._writer  # set whenever _wseg is
        if seg is not self._wseg or (writer is not None and writer.size >= self._gc_min):
            self._remove(seg)

    def _remove(self, seg: Seg) -> None:
        if seg is self._wseg:
            assert self._writer is not None
            if self._gc is not None:
                self._gc.discard(self._writer)
            self._writer.close()
            self._writer = self._wseg = None
        if seg is self._cursor.seg:
            self._cursor.close()
        del self._segs[seg.id]
        index = bisect.bisect_left(self._seg_ids, seg.id)
        del self._seg_ids[index]
        self._acks.remove(seg.id)
        unlink_segment_files(self.directory, seg.id, self._sink)

    # ---- reading the backlog -----------------------------------------------------------
    def _read_one(self) -> Entry | None:
        """Take the next backlog record off the disk as an entry (None: backlog exhausted)."""
        cursor = self._cursor
        while self._backlog:
            seg = cursor.current()
            if seg is None:
                log.error("%s: %d messages missing from the log", self.directory, self._backlog)
                self._backlog = 0
                self._bytes = self._win_bytes + sum(e.message.size for e in self._requeued)
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
        window = self._window
        while self._backlog and len(window) < self._win_n and self._win_bytes < self._win_b:
            entry = self._read_one()
            if entry is None:
                return
            window.append(entry)
            self._win_bytes += entry.message.size
