"""The read cursor of a queue's log: turns backlog records back into entries, in order.

The cursor sits in one segment at a time and reads it sequentially with read-ahead (through
the writer for the segment still being written, so unflushed bytes are readable). In a
segment recovered at open it skips transient records (not recovered by design) and acked
offsets (a sorted array walked with one index), gives the remaining records fresh consecutive
seqs, and marks those with a delivered mark as redelivered.

Invariants:
- The cursor only moves forward; it never holds more than one segment's read buffer, one
  file descriptor and, for a recovered segment, that segment's ack array.
- It does no accounting: the store decides where the backlog starts and how many ready
  records each segment still has (``Seg.ready``), and moves the counters.
- ``fetch`` reads one record anywhere (a paged requeued message) through a second descriptor,
  kept open on the last segment fetched from until ``forget`` / ``shutdown``.
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .acks import read_acks
from .message import Entry, Message
from .record import F_EXPIRES, F_PERSISTENT, Decoded, RecordError, ShortRecord, decode
from .recovery import Seg
from .segment import FILE_HEADER_SIZE, SegmentReader, SegmentWriter, Source, segment_name

#: bytes read for a fetched record before its length is known (1 KiB messages: one read)
FETCH_SIZE = 4096


def _pread_source(fd: int) -> Source:
    return lambda offset, size: os.pread(fd, size, offset)


class LogCursor:
    __slots__ = ("directory", "seg", "seg_id", "reader", "rseq", "_segs", "_seg_ids",
                 "_writer_of", "_read_ahead", "_clock", "_fd", "_skip", "_skip_i", "_marks",
                 "_rfd", "_rfd_seg")

    def __init__(self, directory: Path, segs: dict[int, Seg], seg_ids: list[int],
                 writer_of: Callable[[Seg], SegmentWriter | None], read_ahead: int,
                 clock: Callable[[], float]) -> None:
        self.directory = directory
        self.seg: Seg | None = None
        self.seg_id = 0
        self.reader: SegmentReader | None = None
        self.rseq = 0  # seqs handed to recovered messages so far
        self._segs = segs
        self._seg_ids = seg_ids
        self._writer_of = writer_of
        self._read_ahead = read_ahead
        self._clock = clock
        self._fd = -1
        self._skip: Sequence[int] = ()
        self._skip_i = 0
        self._marks: set[int] = set()
        self._rfd = -1
        self._rfd_seg = 0

    # ---- position ----------------------------------------------------------------------
    def _source(self, seg: Seg) -> tuple[Source, int]:
        writer = self._writer_of(seg)
        if writer is not None:
            return writer.read, -1
        fd = os.open(self.directory / segment_name(seg.id), os.O_RDONLY | os.O_CLOEXEC)
        return _pread_source(fd), fd

    def limit(self, seg: Seg) -> int:
        if seg.end is not None:
            return seg.end
        writer = self._writer_of(seg)
        return writer.size if writer is not None else FILE_HEADER_SIZE

    def open(self, seg: Seg, offset: int) -> None:
        self.close()
        source, self._fd = self._source(seg)
        self.seg, self.seg_id = seg, seg.id
        self.reader = SegmentReader(source, offset, self._read_ahead)
        if seg.recovered:
            state = read_acks(self.directory, seg.id, self.limit(seg), repair=False)
            self._skip, self._marks = state.acked, state.delivered

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.seg = None
        self.reader = None
        self._skip, self._skip_i, self._marks = (), 0, set()

    def at(self, seg: Seg, offset: int) -> None:
        """The backlog starts anew at ``offset`` of ``seg`` (it was empty)."""
        if seg is not self.seg or self.reader is None:
            self.open(seg, offset)
        else:
            self.reader.seek(offset)

    def sealed(self, seg: Seg) -> None:
        """``seg`` stopped being written: read it from its file from now on."""
        if seg is self.seg and self.reader is not None and self._fd < 0:
            self._fd = os.open(self.directory / segment_name(seg.id), os.O_RDONLY | os.O_CLOEXEC)
            self.reader.source = _pread_source(self._fd)

    def current(self) -> Seg | None:
        """The segment holding the next ready record, moving forward past exhausted ones."""
        seg = self.seg
        while seg is None or seg.ready <= 0:
            index = bisect.bisect_right(self._seg_ids, self.seg_id)
            if index >= len(self._seg_ids):
                return None
            seg = self._segs[self._seg_ids[index]]
            self.open(seg, FILE_HEADER_SIZE)
        return seg

    def forget(self, seg_id: int) -> None:
        """Segment ``seg_id`` is being removed: let go of the descriptor ``fetch`` kept on it."""
        if self._rfd >= 0 and self._rfd_seg == seg_id:
            os.close(self._rfd)
            self._rfd = -1

    def shutdown(self) -> None:
        self.close()
        if self._rfd >= 0:
            os.close(self._rfd)
            self._rfd = -1

    # ---- reading -----------------------------------------------------------------------
    def fetch(self, seg: Seg, offset: int) -> Decoded:
        """The record at ``offset`` of ``seg``, read on its own; the cursor does not move.
        Raises ``RecordError`` / ``OSError``."""
        writer = self._writer_of(seg)
        source: Source
        if writer is not None:
            source = writer.read
        else:
            if self._rfd < 0 or self._rfd_seg != seg.id:
                self.forget(self._rfd_seg)
                self._rfd = os.open(self.directory / segment_name(seg.id),
                                    os.O_RDONLY | os.O_CLOEXEC)
                self._rfd_seg = seg.id
            source = _pread_source(self._rfd)
        limit = self.limit(seg) - offset
        data = source(offset, min(FETCH_SIZE, limit))
        try:
            try:
                return decode(data, 0, len(data))
            except ShortRecord as exc:
                if exc.needed <= len(data) or exc.needed > limit:
                    raise
                data = source(offset, exc.needed)
                return decode(data, 0, len(data))
        except RecordError as exc:
            exc.offset = offset
            raise

    def take(self, seg: Seg) -> Entry | None:
        """The next ready record of ``seg`` (the current segment) as an entry, or None at its
        end. Raises ``RecordError`` / ``OSError`` when the bytes cannot be read."""
        reader = self.reader
        assert reader is not None
        limit = self.limit(seg)
        while True:
            record = reader.next(limit)
            if record is None:
                return None
            offset = reader.record_offset
            if not seg.recovered:
                return self.entry(record, record[2], False)
            if not record[1] & F_PERSISTENT or self._skipped(offset):
                continue
            self.rseq += 1
            return self.entry(record, self.rseq, offset in self._marks)

    @property
    def record_offset(self) -> int:
        assert self.reader is not None
        return self.reader.record_offset

    def entry(self, record: Decoded, seq: int, redelivered: bool) -> Entry:
        _, flags, _, expires, exchange, routing_key, props, body, deliveries = record
        entry = Entry(seq, Message(exchange, routing_key, props, body,
                                   bool(flags & F_PERSISTENT)), redelivered or deliveries > 0)
        entry.delivery_count = deliveries
        if flags & F_EXPIRES:
            entry.expires = expires - time.time() + self._clock()
        return entry

    def _skipped(self, offset: int) -> bool:
        skip, i = self._skip, self._skip_i
        count = len(skip)
        while i < count and skip[i] < offset:
            i += 1
        self._skip_i = i
        return i < count and skip[i] == offset

    def scan(self) -> Iterator[Entry]:
        """Every ready entry from the cursor on, read by a second reader; the cursor and the
        counters do not move (for ``__iter__``)."""
        first = self.current()
        if first is None or self.reader is None:
            return
        rseq = self.rseq
        start = bisect.bisect_left(self._seg_ids, first.id)
        for seg_id in list(self._seg_ids[start:]):
            seg = self._segs.get(seg_id)
            if seg is None or seg.ready <= 0:
                continue
            skip: Sequence[int] = ()
            marks: set[int] = set()
            if seg is first:
                offset, skip, marks = self.reader.offset, self._skip, self._marks
            else:
                offset = FILE_HEADER_SIZE
                if seg.recovered:
                    state = read_acks(self.directory, seg.id, self.limit(seg), repair=False)
                    skip, marks = state.acked, state.delivered
            skip_set = set(skip)
            source, fd = self._source(seg)
            try:
                reader = SegmentReader(source, offset, self._read_ahead)
                limit = self.limit(seg)
                remaining = seg.ready
                while remaining > 0:
                    record = reader.next(limit)
                    if record is None:
                        break
                    seq, redelivered = record[2], False
                    if seg.recovered:
                        offset = reader.record_offset
                        if not record[1] & F_PERSISTENT or offset in skip_set:
                            continue
                        rseq += 1
                        seq, redelivered = rseq, offset in marks
                    remaining -= 1
                    yield self.entry(record, seq, redelivered)
            finally:
                if fd >= 0:
                    os.close(fd)
