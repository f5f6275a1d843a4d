"""``SegmentQueueStore``: one queue's ready messages, a small window in RAM and the rest on disk.

Queue order = requeued messages by seq (``requeue.Requeued``: entries, or log positions only
past the budget) + ``window`` (a deque of entries) + the *backlog*: records in the segment log
from the cursor to the end, held by no Python object.

Invariants:
- Window and requeued entries stay within the ``Window`` budget (shared by the levels of a
  priority queue); past it nothing costs a Python object per message.
- Every record at or after the cursor is ready (the backlog is a suffix of the log): a push
  goes to the backlog while the backlog is not empty or the window is full; otherwise it goes
  to the window (and, when persistent in a durable queue, to the log too, before the cursor).
- Entries in RAM or out with a consumer that have a record map ``seq -> (segment id << 32 |
  offset)`` in ``_pos``: per-message state only for messages that are in RAM anyway.
- Transient messages below the window never touch the disk. A non-durable store creates its
  directory when it first pages out and writes no ack log or index (it is wiped when opened
  again); a durable one logs acks of persistent records only (recovery skips the others).
- A record leaves a segment's ``live`` count when it is acked (an entry in the segment's ack
  log); a segment with ``live == 0`` is deleted (the one being written only once it is at least
  ``gc_min_size`` bytes, so a hot queue does not create a file per message).
- After ``open``, recovered messages get seqs ``first_seq+1 .. last_seq`` in log order as they
  are read; the owning queue must continue numbering after ``last_seq``.
- Once closed, the store writes nothing: no delivered mark, no ack, and a message that would
  need a record is refused (``StoreClosed``), never half-saved (a new segment file made after the
  final fsync, an ack file reopened).
- Loop-thread only. Iterating while mutating the store is undefined.

Reading the backlog back (and settling what cannot be read) is in ``backlog.BacklogReader``.
"""

from __future__ import annotations

import bisect
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .acks import AckLog
from .backlog import BacklogReader
from .cursor import LogCursor
from .message import Entry
from .record import F_EXPIRES, F_PERSISTENT
from .recovery import Seg, recover, unlink_segment_files
from .requeue import PERSISTENT, Item, Requeued
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
from .window import Window

if TYPE_CHECKING:
    from .replication import ReplicationSink

log = logging.getLogger(__name__)

OFFSET_MASK = 0xFFFF_FFFF


class SegmentQueueStore(BacklogReader):
    def __init__(self, directory: str | os.PathLike[str], *, durable: bool = True,
                 mode: str = "default", group_commit: GroupCommit | None = None,
                 roll_size: int = DEFAULT_ROLL_SIZE, window_messages: int | None = None,
                 window_bytes: int | None = None, window: Window | None = None,
                 gc_min_size: int | None = None,
                 read_ahead: int = DEFAULT_READ_AHEAD, write_buffer: int = DEFAULT_WRITE_BUFFER,
                 clock: Callable[[], float] = time.monotonic, first_seq: int = 0,
                 sink: ReplicationSink | None = None) -> None:
        """Open (recovering when ``durable``) or create the store in ``directory``.

        A non-durable store makes no file until it first pages out; then (or when deleted)
        whatever ``directory`` held is wiped. ``window``: a RAM budget shared with other stores
        (else one of its own: ``mode``, ``window_*``). ``clock`` is the queue's ``now()``
        (``expires`` are stored as wall-clock deadlines and converted back with it). Recovered
        messages get seqs ``first_seq + 1 .. last_seq`` (chain ``first_seq`` through the
        sub-stores of one queue). Changes to a durable store's files are told to ``sink``.
        """
        self.directory = directory if isinstance(directory, Path) else Path(directory)
        self.durable = durable
        self._gc = group_commit
        self._roll = roll_size
        self._gc_min = roll_size // 8 if gc_min_size is None else gc_min_size
        self._write_buffer = write_buffer
        self._clock = clock
        self._sink = sink if durable else None
        self._w = window or Window(mode, window_messages, window_bytes)
        self._made = durable  # a scratch directory is wiped and made on the first page-out
        if durable:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._window: deque[Entry] = deque()
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
        self._cursor = LogCursor(self.directory, self._segs, self._seg_ids, lambda seg:
                                 self._writer if seg is self._wseg else None, read_ahead, clock)
        self._rq = Requeued(self._w, self._cursor, self._segs, self._pos, self._lost)
        segs, self._next_id = recover(self.directory, self._sink) if durable else ([], 1)
        self._segs.update((seg.id, seg) for seg in segs)
        self._seg_ids.extend(seg.id for seg in segs)
        self._backlog, self._bytes = sum(s.ready for s in segs), sum(s.ready_bytes for s in segs)
        self._cursor.rseq = first_seq
        self.last_seq = first_seq + self._backlog
        if segs:
            self._cursor.open(segs[0], FILE_HEADER_SIZE)

    def set_mode(self, mode: str, window_messages: int | None = None,
                 window_bytes: int | None = None) -> None:
        """``default``/``lazy`` (x-queue-mode) for all who share the budget; RAM stays as is."""
        self._w.set_mode(mode, window_messages, window_bytes)

    # ---- QueueStore --------------------------------------------------------------------
    def push(self, entry: Entry) -> None:
        message = entry.message
        size = message.size
        w = self._w
        n = w.n
        if self._backlog or n >= w.max_n or (n and w.b + size > w.max_b):
            pos = self._append(entry, True)
            if not self._backlog:
                self._cursor.at(self._segs[pos >> 32], pos & OFFSET_MASK)
            self._backlog += 1
        else:
            if message.persistent and self.durable:
                self._pos[entry.seq] = self._append(entry, False)
            self._window.append(entry)
            w.n = n + 1
            w.b += size
        self._bytes += size

    def shift(self) -> Entry | None:
        rq = self._rq
        entry = rq.take() if rq.heap or rq.paged is not None else None
        if entry is not None:
            pass
        elif self._window:
            entry = self._window.popleft()
            w = self._w
            w.n -= 1
            w.b -= entry.message.size
            if self._backlog and len(self._window) < w.refill_below:
                self._refill()
        elif self._backlog:
            entry = self._read_one()
            if entry is None:
                return None
            if self._backlog and self._w.max_n:
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
        rq = self._rq
        if (rq.heap or rq.paged is not None) and (entry := rq.first()) is not None:
            return entry
        if not self._window and self._backlog:
            entry = self._read_one()
            if entry is not None:
                self._window.append(entry)
                self._w.add(1, entry.message.size)
        return self._window[0] if self._window else None

    def requeue(self, entry: Entry) -> None:
        self._bytes += entry.message.size
        self._rq.add(entry)

    def ack(self, entry: Entry) -> None:
        """Settle ``entry`` for good: an ack-log entry when it has a record; no-op otherwise."""
        pos = self._pos.pop(entry.seq, None) if self._pos else None
        if pos is not None and not self._closed:
            self._ack_pos(pos, entry.message.size, entry.message.persistent)

    def _ack_pos(self, pos: int, size: int, persistent: bool) -> None:
        seg = self._segs.get(pos >> 32)
        if seg is None:
            return
        if persistent and self.durable:
            self._acks.ack(seg.id, pos & OFFSET_MASK, size, True)
            if self._gc is not None:
                self._gc.touch(self._acks, False)
        seg.live -= 1
        if seg.live <= 0:
            self._collect(seg)

    def purge(self) -> int:
        """Drop every ready message (acking the logged ones); delivered ones are untouched."""
        count = len(self)
        entries, paged = self._release_ram()
        for entry in entries:
            self.ack(entry)
        for _, pos, size, meta in paged:
            self._ack_pos(pos, size, bool(meta & PERSISTENT))
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
        self._backlog = self._bytes = 0
        return count

    def __len__(self) -> int:
        rq = self._rq
        count = len(rq.heap) + len(self._window) + self._backlog
        return count if rq.paged is None else count + len(rq.paged)

    def __iter__(self) -> Iterator[Entry]:
        yield from self._rq
        yield from list(self._window)
        if self._backlog:
            yield from self._cursor.scan()

    @property
    def bytes(self) -> int:
        return self._bytes

    # ---- extras ------------------------------------------------------------------------
    @property
    def in_memory(self) -> int:  # ready entries held as objects (window + requeued)
        return len(self._window) + len(self._rq.heap)

    @property
    def paged_requeued(self) -> int:  # requeued messages held as log positions only
        return len(self._rq) - len(self._rq.heap)

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
        self._release_ram()
        self._pos.clear()
        self._segs.clear()
        self._backlog = self._bytes = 0
        shutil.rmtree(self.directory, ignore_errors=True)
        if self._sink is not None:
            self._sink.delete(str(self.directory))

    def _release_ram(self) -> tuple[list[Entry], list[Item]]:
        """Drop the window and the requeued (giving the budget back); return what they held."""
        window, self._window = list(self._window), deque()
        self._w.add(-len(window), -sum(entry.message.size for entry in window))
        requeued, paged = self._rq.drop()
        return requeued + window, paged

    def _shut(self, seal: bool) -> None:
        self._closed = True
        self._cursor.shutdown()
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
            if not self._made:
                shutil.rmtree(self.directory, ignore_errors=True)
                self.directory.mkdir(parents=True, exist_ok=True)
                self._made = True
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
        if self.durable:
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
        self._cursor.forget(seg.id)
        del self._segs[seg.id]
        index = bisect.bisect_left(self._seg_ids, seg.id)
        del self._seg_ids[index]
        self._acks.remove(seg.id)
        unlink_segment_files(self.directory, seg.id, self._sink)
