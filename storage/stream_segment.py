"""One segment of a stream: its in-RAM counters and sparse index, the index file appended as
it grows, and its recovery (see ``stream`` for the log as a whole).

``NNNNNNNN.six`` holds fixed entries ``[offset u64][position u32][timestamp f64]``: one for a
segment's first record, then one every ``INDEX_EVERY`` records. Recovery trusts an entry only
when it points inside the valid part of the segment, then scans (CRC-checked) from the last
trusted one, backing off one entry at a time when the record an entry names is torn; a torn
tail is truncated away and the index file rewritten to match.
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
from array import array
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .record import RecordError
from .segment import FILE_HEADER_SIZE, SegmentFormatError, SegmentReader, check_header
from .sync import FdFile

if TYPE_CHECKING:
    from .replication import ReplicationSink

log = logging.getLogger("storage.stream")


def _pread(fd: int, offset: int, size: int) -> bytes:
    return os.pread(fd, size, offset)


INDEX_EVERY = 256
_ENTRY = struct.Struct("<QId")
READ_AHEAD = 128 * 1024


def index_name(seg_id: int) -> str:
    return f"{seg_id:08d}.six"


def stream_file_id(name: str) -> int | None:
    """The segment id in ``00000042.seg`` / ``.six``, else None."""
    stem, dot, ext = name.partition(".")
    if not dot or ext not in ("seg", "six") or not stem.isdigit():
        return None
    return int(stem)


class StreamRecord(NamedTuple):
    offset: int
    timestamp: float
    persistent: bool
    exchange: str
    routing_key: str
    properties: bytes
    body: bytes


class StreamSegment:
    """One segment's counters and sparse index (the only per-segment state in RAM)."""

    __slots__ = ("id", "first", "next", "end", "first_ts", "last_ts", "sealed", "idx_offsets",
                 "idx_positions", "idx_times", "since_index", "checked")

    def __init__(self, seg_id: int) -> None:
        self.id = seg_id
        self.first = -1          # offset of its first record (-1: none yet)
        self.next = -1           # offset after its last record
        self.end = FILE_HEADER_SIZE  # file position after its last record
        self.first_ts = 0.0
        self.last_ts = 0.0
        self.sealed = False
        self.idx_offsets = array("Q")
        self.idx_positions = array("I")
        self.idx_times = array("d")
        self.since_index = 0
        # records before this file position had their CRC checked by a read (stream_reader)
        self.checked = FILE_HEADER_SIZE

    @property
    def count(self) -> int:
        return self.next - self.first if self.first >= 0 else 0

    def add(self, offset: int, position: int, end: int, timestamp: float) -> bool:
        """Account one record; True when it gets a sparse index entry."""
        if self.first < 0:
            self.first, self.first_ts = offset, timestamp
        self.next = offset + 1
        self.end = end
        self.last_ts = timestamp
        if self.since_index == 0:
            self.idx_offsets.append(offset)
            self.idx_positions.append(position)
            self.idx_times.append(timestamp)
            indexed = True
        else:
            indexed = False
        self.since_index = (self.since_index + 1) % INDEX_EVERY
        return indexed

    def position_of(self, offset: int) -> int:
        """A file position at or before the record with ``offset`` (sparse index lookup)."""
        i = bisect.bisect_right(self.idx_offsets, offset) - 1
        return self.idx_positions[i] if i >= 0 else FILE_HEADER_SIZE

    def position_at_time(self, timestamp: float) -> tuple[int, int]:
        """(position, offset) of an indexed record at or before the first one stamped
        ``timestamp`` or later."""
        i = bisect.bisect_left(self.idx_times, timestamp) - 1
        if i < 0:
            return FILE_HEADER_SIZE, self.first
        return self.idx_positions[i], self.idx_offsets[i]

    def __repr__(self) -> str:
        return (f"StreamSegment({self.id}, offsets {self.first}..{self.next}, end={self.end}, "
                f"sealed={self.sealed})")


class IndexFile(FdFile):
    """The sparse index file being appended to, as a ``Flushable`` for the group commit."""

    __slots__ = ("_buf",)

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._buf = bytearray()

    def add(self, offset: int, position: int, timestamp: float) -> None:
        self._buf += _ENTRY.pack(offset, position, timestamp)

    def flush(self) -> None:
        if self._buf and self._fd >= 0:
            written = os.write(self._fd, self._buf)
            del self._buf[:written]


def recover_segment(directory: Path, seg_id: int, path: Path,
                sink: ReplicationSink | None) -> StreamSegment | None:
    """Counters and sparse index of one segment; None when it holds no record."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        try:
            if not check_header(os.pread(fd, FILE_HEADER_SIZE, 0), path):
                return None
        except SegmentFormatError:
            log.error("%s: not a stream segment, left alone", path)
            return None
        entries = [e for e in read_index(directory, seg_id) if e[1] < size]
        while True:
            # rebuild from the trusted index entries, then scan from the last of them
            seg = StreamSegment(seg_id)
            start = entries[-1][1] if entries else FILE_HEADER_SIZE
            for offset, position, ts in entries[:-1]:
                if seg.first < 0:
                    seg.first, seg.first_ts = offset, ts
                seg.idx_offsets.append(offset)
                seg.idx_positions.append(position)
                seg.idx_times.append(ts)
            valid = scan_into(seg, fd, path, start, size)
            if seg.next >= 0 or not entries:
                break
            entries.pop()  # the last indexed record is torn: back off one entry
        if valid < size:
            os.ftruncate(fd, valid)
            if sink is not None:
                sink.truncate(str(path), valid)
        seg.end = valid
    finally:
        os.close(fd)
    rewrite_index(directory, seg, sink)
    return seg if seg.first >= 0 else None

def scan_into(seg: StreamSegment, fd: int, path: Path, start: int, size: int) -> int:
    """Add the valid records from ``start`` to ``seg``; the end of the valid part."""
    reader = SegmentReader(partial(_pread, fd), start, READ_AHEAD)
    seg.since_index = 0
    valid = start
    while True:
        try:
            record = reader.next(size)
        except RecordError as exc:
            log.warning("%s: truncating %d bytes after offset %d (%s)", path,
                        size - valid, valid, exc)
            return valid
        if record is None:
            return valid
        position = reader.record_offset
        valid = reader.offset
        seg.add(record[2], position, valid, record[3])

def read_index(directory: Path, seg_id: int) -> list[tuple[int, int, float]]:
    try:
        data = (directory / index_name(seg_id)).read_bytes()
    except FileNotFoundError:
        return []
    usable = len(data) - len(data) % _ENTRY.size
    return [_ENTRY.unpack_from(data, pos) for pos in range(0, usable, _ENTRY.size)]

def rewrite_index(directory: Path, seg: StreamSegment,
              sink: ReplicationSink | None) -> None:
    data = b"".join(_ENTRY.pack(o, p, t) for o, p, t in
                    zip(seg.idx_offsets, seg.idx_positions, seg.idx_times, strict=True))
    path = directory / index_name(seg.id)
    path.write_bytes(data)
    if sink is not None:
        sink.rewrite(str(path), data)
