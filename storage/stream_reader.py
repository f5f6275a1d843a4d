"""``StreamReader``: one consumer's sequential read of a stream log, by offset.

A reader holds one segment open (a descriptor of its file, or the writer for the segment
being written) and a read-ahead buffer (``READ_AHEAD`` bytes, one ``pread`` per many
records). ``next()`` gives one decoded ``StreamRecord``; ``read()`` gives a batch of raw
records (names kept as the stored shortstrs, no ``str`` per record): the delivery path.

Invariants:
- Records come in offset order, each once, from the offset asked for (clamped to the log's
  range); a segment deleted by retention is read to its end through the open descriptor, then
  the reader moves on to the oldest segment left.
- Every record handed out had its CRC checked in this process: by this read, or by an earlier
  read of the same bytes (``StreamSegment.checked``, a watermark that only grows from the
  segment's start, so readers of the same records do not check them again).
- An unreadable record is logged and its segment skipped (from the next segment on).
"""

from __future__ import annotations

import logging
import os
from typing import Protocol

from .record import F_PERSISTENT, RawRecord, RecordError
from .segment import SegmentReader, Source
from .stream_segment import READ_AHEAD, StreamRecord, StreamSegment

log = logging.getLogger("storage.stream")


class ReadableLog(Protocol):
    """What a reader needs of its ``StreamLog``."""

    @property
    def directory(self) -> os.PathLike[str]: ...
    @property
    def first_offset(self) -> int: ...
    @property
    def next_offset(self) -> int: ...
    def segment_of(self, offset: int) -> StreamSegment | None: ...
    def segment_after(self, seg: StreamSegment) -> StreamSegment | None: ...
    def source_of(self, seg: StreamSegment) -> tuple[Source, int, int]: ...
    def limit_of(self, seg: StreamSegment) -> int: ...


class StreamReader:
    """Reads records in offset order from ``offset`` on; ``next()`` is None (``read()``
    empty) at the end of the log: call again after more appends."""

    __slots__ = ("log", "offset", "seg", "_reader", "_limit", "_fd", "_live")

    def __init__(self, stream: ReadableLog, offset: int) -> None:
        self.log = stream
        self.offset = offset
        self.seg: StreamSegment | None = None
        self._reader: SegmentReader | None = None
        self._limit = 0
        self._fd = -1
        self._live = False   # reading the segment being written (through the writer)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.seg = None
        self._reader = None

    def seek(self, seg: StreamSegment, position: int, offset: int | None = None) -> None:
        """Read ``seg`` from the record boundary ``position``: records before ``self.offset``
        are skipped, unless ``offset`` (the record's offset there) is given."""
        self.close()
        source, self._limit, self._fd = self.log.source_of(seg)
        self._live = self._fd < 0
        self.seg = seg
        self._reader = SegmentReader(source, position, READ_AHEAD)
        if offset is not None:
            self.offset = offset

    def _open(self) -> bool:
        """Find the segment for ``self.offset``; False when it is not written yet."""
        stream = self.log
        if self.offset < stream.first_offset:
            self.offset = stream.first_offset
        if self.offset >= stream.next_offset:
            return False
        seg = stream.segment_of(self.offset)
        if seg is None:
            return False
        if self.offset < seg.first:
            self.offset = seg.first
        self.seek(seg, seg.position_of(self.offset))
        return True

    def _ready(self) -> tuple[SegmentReader, StreamSegment] | None:
        """The segment reader positioned for the next record, its limit refreshed; None
        when nothing is written past ``self.offset`` yet."""
        while True:
            reader, seg = self._reader, self.seg
            if reader is None or seg is None:
                if not self._open():
                    return None
                continue
            if self._live:
                if seg.sealed:  # rolled since: read its file from now on
                    self.seek(seg, reader.offset)
                    continue
                self._limit = self.log.limit_of(seg)
            return reader, seg

    def _unreadable(self, seg: StreamSegment, reader: SegmentReader, exc: Exception) -> None:
        log.error("%s: segment %d unreadable at %d: %s", self.log.directory, seg.id,
                  reader.offset, exc)
        self.offset = max(self.offset, seg.next)
        self.close()

    def _segment_done(self, seg: StreamSegment) -> bool:
        """At the end of ``seg``: move to the next segment; False when there is none yet."""
        if self._live:
            return False  # at the end of what is written so far
        after = self.log.segment_after(seg)
        if after is None:
            return False  # a sealed newest segment: the next append opens another
        self.offset = max(self.offset, after.first)
        self.close()
        return True

    def next(self) -> StreamRecord | None:
        while True:
            ready = self._ready()
            if ready is None:
                return None
            reader, seg = ready
            try:
                record = reader.next(self._limit)
            except (RecordError, OSError) as exc:
                self._unreadable(seg, reader, exc)
                continue
            if record is None:
                if not self._segment_done(seg):
                    return None
                continue
            offset = record[2]
            if offset < self.offset:
                continue  # scanning up to the wanted offset from an index entry
            self.offset = offset + 1
            return StreamRecord(offset, record[3], bool(record[1] & F_PERSISTENT), record[4],
                                record[5], record[6], record[7])

    def read(self, count: int, max_bytes: int) -> list[RawRecord]:
        """Up to ``count`` records (fewer at the end of the log or of the read-ahead buffer,
        or after the one whose bodies reach ``max_bytes``) as ``(offset, flags, exchange,
        routing key, props, body)``, names as stored shortstrs."""
        if count <= 0 or max_bytes <= 0:
            return []
        while True:
            ready = self._ready()
            if ready is None:
                return []
            reader, seg = ready
            start = reader.offset
            try:
                records = reader.next_many(self._limit, count, max_bytes, seg.checked)
            except (RecordError, OSError) as exc:
                self._unreadable(seg, reader, exc)
                continue
            if not records:
                if not self._segment_done(seg):
                    return []
                continue
            if start <= seg.checked < reader.offset:
                seg.checked = reader.offset
            wanted = self.offset
            if records[0][0] < wanted:  # scanning up to it from an index entry
                records = [r for r in records if r[0] >= wanted]
                if not records:
                    continue
            self.offset = records[-1][0] + 1
            return records
