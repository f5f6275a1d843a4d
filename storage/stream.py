"""``StreamLog``: a stream queue's append-only log of messages, read by offset.

On the segment store's files: ``NNNNNNNN.seg`` segments written by ``SegmentWriter`` (records
as in ``record``, with ``seq`` = the message's offset and the ``f64`` field = its append time,
``time.time()`` seconds), plus per segment a sparse index ``NNNNNNNN.six`` of fixed entries
``[offset u64][position u32][timestamp f64]``, one for the first record and then one every
``INDEX_EVERY`` records, appended as the segment grows (``stream_segment``). ``STREAM``
(msgpack) keeps the next offset whenever retention deletes segments, so offsets never go back
even if every record left was lost.

Invariants:
- Offsets are consecutive and never reused: a record's offset names it for the life of the
  stream. Consuming does not remove anything; only retention does, by whole segments, oldest
  first, never the one being written: ``max_bytes`` (x-max-length-bytes: the segments' total
  size), ``max_age`` (x-max-age: a segment whose newest record is older goes). Retention runs
  when a segment is rolled (as RabbitMQ's osiris does) and when the log is opened.
- A segment is rolled when it reaches ``segment_size`` bytes (x-stream-max-segment-size-bytes);
  the next one is created by the next append, so every segment on disk holds at least one record
  unless a crash came in between (recovery removes such an empty file).
- Recovery trusts a sparse index entry only when it points inside the valid part of its
  segment, then scans (CRC-checked) from the last trusted entry: the work is bounded by
  ``INDEX_EVERY`` records per segment plus the torn tail, which is truncated away.
- Nothing per message stays in RAM: per segment a few counters and the sparse index arrays
  (20 bytes per ``INDEX_EVERY`` records). Readers hold one read-ahead buffer each.
- Loop-thread only. Appends are buffered and handed to the kernel by the group commit (the
  writer is touched for fsync: confirms of stream publishes wait for it).
"""

from __future__ import annotations

import bisect
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import msgpack

from .record import F_PERSISTENT
from .replication import unlink
from .segment import (
    DEFAULT_WRITE_BUFFER,
    FILE_HEADER_SIZE,
    SegmentWriter,
    Source,
    close_on_shutdown,
    segment_name,
)
from .stream_reader import StreamReader
from .stream_segment import (
    INDEX_EVERY,
    IndexFile,
    StreamRecord,
    StreamSegment,
    index_name,
    recover_segment,
    stream_file_id,
)
from .sync import DirectoryHandle, GroupCommit

if TYPE_CHECKING:
    from .replication import ReplicationSink

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_SIZE = 500_000_000  # RabbitMQ's x-stream-max-segment-size-bytes default
META_NAME = "STREAM"

__all__ = ["DEFAULT_SEGMENT_SIZE", "INDEX_EVERY", "META_NAME", "StreamLog", "StreamReader",
           "StreamRecord", "StreamSegment", "index_name"]


class StreamLog:
    def __init__(self, directory: str | os.PathLike[str], *, durable: bool = True,
                 group_commit: GroupCommit | None = None,
                 segment_size: int = DEFAULT_SEGMENT_SIZE, max_bytes: int | None = None,
                 max_age: float | None = None, clock: Callable[[], float] = time.time,
                 write_buffer: int = DEFAULT_WRITE_BUFFER,
                 sink: ReplicationSink | None = None) -> None:
        """Open (recovering) or create the stream in ``directory``; a non-durable log starts
        empty. ``max_age`` is in seconds; ``clock`` gives wall-clock seconds."""
        self.directory = Path(directory)
        self.durable = durable
        self._gc = group_commit
        self._clock = clock
        self._write_buffer = write_buffer
        self._sink = sink if durable else None
        self.segment_size = max(segment_size, FILE_HEADER_SIZE + 1)
        self.max_bytes = max_bytes
        self.max_age = max_age
        if not durable and self.directory.exists():
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._dirh = DirectoryHandle(self.directory)
        self.segments: list[StreamSegment] = []
        self._writer: SegmentWriter | None = None
        self._index: IndexFile | None = None
        self._closed = False
        self.next_offset = 0
        self.last_chunk = -1   # first offset of the newest chunk (a batch appended together)
        self._chunk_open = False
        self._next_id = 1
        self.last_seq = 0      # QueueStore compatibility (a stream numbers by offset)
        if durable:
            self._recover()
        self.apply_retention()

    # ---- state -------------------------------------------------------------------------
    @property
    def first_offset(self) -> int:
        for seg in self.segments:
            if seg.first >= 0:
                return seg.first
        return self.next_offset

    @property
    def last_offset(self) -> int:
        """The newest record's offset, -1 when the stream is empty."""
        return self.next_offset - 1 if self.next_offset > self.first_offset else -1

    def __len__(self) -> int:
        return self.next_offset - self.first_offset

    @property
    def segment_count(self) -> int:
        return len(self.segments)

    def _size_of(self, seg: StreamSegment) -> int:
        if not seg.sealed and self._writer is not None and self._writer.seg_id == seg.id:
            return self._writer.size
        return seg.end

    def set_retention(self, max_bytes: int | None, max_age: float | None,
                      segment_size: int | None = None) -> None:
        """New limits (declared, or a policy changed): applied now and at every roll."""
        self.max_bytes, self.max_age = max_bytes, max_age
        if segment_size is not None:
            self.segment_size = max(segment_size, FILE_HEADER_SIZE + 1)
        self.apply_retention()

    # ---- appending ---------------------------------------------------------------------
    def append(self, exchange_raw: bytes, routing_key_raw: bytes, props: bytes, body: bytes,
               persistent: bool, timestamp: float | None = None) -> int:
        """Append one message; return its offset."""
        writer = self._writer
        if writer is None or writer.size >= self.segment_size:
            writer = self._roll()
        offset = self.next_offset
        ts = self._clock() if timestamp is None else timestamp
        position = writer.append(offset, F_PERSISTENT if persistent else 0, ts, exchange_raw,
                                 routing_key_raw, props, body)
        seg = self.segments[-1]
        gc = self._gc
        if seg.add(offset, position, writer.size, ts) and self._index is not None:
            self._index.add(offset, position, ts)
            if gc is not None:
                gc.touch(self._index, False)
        self.next_offset = offset + 1
        if not self._chunk_open:
            self._chunk_open = True
            self.last_chunk = offset
        if gc is not None:
            gc.touch(writer)
        return offset

    def end_chunk(self) -> None:
        """The batch being appended is complete: the next append starts a new chunk."""
        self._chunk_open = False

    def flush(self) -> None:
        """Hand buffered bytes to the kernel (no fsync). Raises OSError."""
        if self._writer is not None:
            self._writer.flush()
        if self._index is not None:
            self._index.flush()

    def _roll(self) -> SegmentWriter:
        if self._writer is not None:
            self._seal()
            self.apply_retention()
        writer = SegmentWriter(self.directory, self._next_id, self._write_buffer, self._sink)
        self._next_id += 1
        self._writer = writer
        seg = StreamSegment(writer.seg_id)
        self.segments.append(seg)
        self._index = IndexFile(self.directory / index_name(writer.seg_id))
        if self._gc is not None:
            self._gc.touch(self._dirh)
        return writer

    def _seal(self) -> None:
        writer, index = self._writer, self._index
        assert writer is not None
        self.segments[-1].sealed = True
        if self._gc is not None:
            self._gc.handoff(writer)
        writer.flush()
        writer.close()
        if index is not None:
            if self._gc is not None:
                self._gc.discard(index)
            index.close()
        self._writer = self._index = None

    # ---- retention ---------------------------------------------------------------------
    def apply_retention(self, now: float | None = None) -> int:
        """Delete the oldest whole segments over the limits; the count deleted."""
        if self.max_bytes is None and self.max_age is None:
            return 0
        now = self._clock() if now is None else now
        doomed = 0
        sizes = [self._size_of(seg) for seg in self.segments]
        total = sum(sizes)
        for i, seg in enumerate(self.segments[:-1]):  # never the newest one
            too_big = self.max_bytes is not None and total > self.max_bytes
            too_old = self.max_age is not None and seg.last_ts < now - self.max_age
            if not (too_big or too_old):
                break
            total -= sizes[i]
            doomed += 1
        if doomed:
            self._save_meta()
            for seg in self.segments[:doomed]:
                self._unlink(seg)
            del self.segments[:doomed]
        return doomed

    def _unlink(self, seg: StreamSegment) -> None:
        for name in (segment_name(seg.id), index_name(seg.id)):
            unlink(self.directory / name, self._sink)

    def _save_meta(self) -> None:
        data = msgpack.packb({"next": self.next_offset})
        tmp = self.directory / (META_NAME + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)  # before any segment goes: offsets must never restart lower
        finally:
            os.close(fd)
        os.replace(tmp, self.directory / META_NAME)
        if self._sink is not None:
            self._sink.rewrite(str(self.directory / META_NAME), data)

    # ---- reading -----------------------------------------------------------------------
    def reader(self, offset: int) -> StreamReader:
        """A reader whose first record is ``offset`` (clamped to the stream's range)."""
        return StreamReader(self, min(max(offset, self.first_offset), self.next_offset))

    def offset_at(self, timestamp: float) -> int:
        """The first offset appended at ``timestamp`` or later (next_offset if none)."""
        for seg in self.segments:
            if seg.first < 0 or seg.last_ts < timestamp:
                continue
            reader = StreamReader(self, seg.first)
            position, offset = seg.position_at_time(timestamp)
            reader.seek(seg, position, offset)
            try:
                while True:
                    record = reader.next()
                    if record is None:
                        return self.next_offset
                    if record.timestamp >= timestamp:
                        return record.offset
            finally:
                reader.close()
        return self.next_offset

    def segment_after(self, seg: StreamSegment) -> StreamSegment | None:
        ids = [s.id for s in self.segments]
        i = bisect.bisect_right(ids, seg.id)
        return self.segments[i] if i < len(self.segments) else None

    def segment_of(self, offset: int) -> StreamSegment | None:
        """The segment holding ``offset`` (or the first one after it)."""
        for seg in self.segments:
            if seg.first >= 0 and offset < seg.next:
                return seg
        return None

    def source_of(self, seg: StreamSegment) -> tuple[Source, int, int]:
        """(reader source, limit, fd to close or -1): the writer for the segment being
        written, else a descriptor of the file."""
        writer = self._writer
        if writer is not None and writer.seg_id == seg.id and not seg.sealed:
            return writer.read, writer.size, -1
        fd = os.open(self.directory / segment_name(seg.id), os.O_RDONLY | os.O_CLOEXEC)
        return (lambda offset, size: os.pread(fd, size, offset)), seg.end, fd

    def limit_of(self, seg: StreamSegment) -> int:
        return self._size_of(seg)

    # ---- lifetime ----------------------------------------------------------------------
    def close(self) -> None:
        """Shutdown: flush and close (the segment being written stays open for appends after
        the next recovery)."""
        if self._closed:
            return
        self._closed = True
        writer, index = self._writer, self._index
        if writer is not None:
            close_on_shutdown(writer, self._gc)
        if index is not None:
            if self._gc is not None:
                self._gc.discard(index)
            index.close()
        if self._gc is not None:
            self._gc.handoff(self._dirh)
        self._dirh.close()
        self._writer = self._index = None

    def delete(self) -> None:
        self._closed = True
        for f in (self._writer, self._index):
            if f is not None:
                if self._gc is not None:
                    self._gc.discard(f)
                f.close()
        if self._gc is not None:
            self._gc.discard(self._dirh)
        self._dirh.close()
        self._writer = self._index = None
        self.segments.clear()
        shutil.rmtree(self.directory, ignore_errors=True)
        if self._sink is not None:
            self._sink.delete(str(self.directory))

    # ---- QueueStore compatibility (the queue engine reads these) -----------------------
    in_memory = 0  # no message is held in RAM

    def set_mode(self, mode: str) -> None:
        """x-queue-mode does not apply to a stream."""

    def __iter__(self) -> Iterator[StreamRecord]:
        return iter(())

    # after every method annotated with the builtin ``bytes``, which this property shadows
    @property
    def bytes(self) -> int:
        """Bytes the segments take on disk (what x-max-length-bytes limits)."""
        return sum(self._size_of(seg) for seg in self.segments)

    # ---- recovery ----------------------------------------------------------------------
    def _recover(self) -> None:
        meta_next = 0
        try:
            meta = msgpack.unpackb((self.directory / META_NAME).read_bytes())
            meta_next = int(meta.get("next", 0))
        except (OSError, ValueError, TypeError, AttributeError, msgpack.UnpackException):
            pass
        ids = sorted({i for name in os.listdir(self.directory)
                      if (i := stream_file_id(name)) is not None})
        for seg_id in ids:
            self._next_id = max(self._next_id, seg_id + 1)
            path = self.directory / segment_name(seg_id)
            if not path.exists():
                self._unlink(StreamSegment(seg_id))
                continue
            seg = recover_segment(self.directory, seg_id, path, self._sink)
            if seg is None:
                self._unlink(StreamSegment(seg_id))
                continue
            seg.sealed = True
            self.segments.append(seg)
        last = self.segments[-1].next if self.segments else 0
        self.next_offset = max(last, meta_next)
        if self.segments:
            self.last_chunk = self.segments[-1].next - 1
