"""One numbered, append-only segment file of a queue's message log, plus its index sidecar.

A segment is ``NNNNNNNN.seg``: a 16-byte header (magic ``BMQSEG\\r\\n``, version u16, reserved
u16, segment id u32) followed by records (see ``record``). ``NNNNNNNN.idx`` is written when the
segment is sealed: its end offset and record/byte counters, CRC-protected, so recovery does not
have to read the segment again.

Invariants:
- Bytes are only ever appended; an offset, once returned by ``append``, names the same record
  for the life of the file. Offsets fit in u32 (segments roll at a few MiB).
- Appends are buffered in memory and written with plain ``os.write`` (on the caller's thread,
  which survives ``kill -9``); fsync is someone else's job (``sync.GroupCommit``). ``read`` sees
  buffered bytes too, so readers never need a flush.
- A sealed segment is never appended to again; its ``.idx`` describes exactly ``[0, end)``.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .record import (
    F_PERSISTENT,
    CorruptRecord,
    Decoded,
    RawRecord,
    RecordError,
    ShortRecord,
    check,
    decode,
    decode_many,
    encode_into,
)
from .record import HEADER_SIZE as RECORD_HEADER_SIZE

if TYPE_CHECKING:
    from .replication import ReplicationSink
    from .sync import GroupCommit

log = logging.getLogger(__name__)

MAGIC = b"BMQSEG\r\n"
VERSION = 1
FILE_HEADER = struct.Struct("<8sHHI")
FILE_HEADER_SIZE = FILE_HEADER.size
DEFAULT_ROLL_SIZE = 8 * 1024 * 1024
DEFAULT_WRITE_BUFFER = 256 * 1024
DEFAULT_READ_AHEAD = 256 * 1024

_INDEX_MAGIC = b"BMQI"
_INDEX = struct.Struct("<4sHHQIIQQ")
_CRC = struct.Struct("<I")

Source = Callable[[int, int], bytes]


class SegmentFormatError(Exception):
    """A file named like a segment is not one we can read (foreign file or newer version)."""


def segment_name(seg_id: int) -> str:
    return f"{seg_id:08d}.seg"


def index_name(seg_id: int) -> str:
    return f"{seg_id:08d}.idx"


def file_id(name: str) -> int | None:
    """The segment id in ``00000042.seg`` / ``.idx`` / ``.ack``, else None."""
    stem, dot, ext = name.partition(".")
    if not dot or ext not in ("seg", "idx", "ack") or not stem.isdigit():
        return None
    return int(stem)


class SegmentStats:
    """Counters of one segment's records; ``end`` is the offset just past the last record."""

    __slots__ = ("count", "persistent_count", "body_bytes", "persistent_bytes", "end")

    def __init__(self, end: int = FILE_HEADER_SIZE) -> None:
        self.count = 0
        self.persistent_count = 0
        self.body_bytes = 0
        self.persistent_bytes = 0
        self.end = end

    def add(self, flags: int, body_size: int, end: int) -> None:
        self.count += 1
        self.body_bytes += body_size
        if flags & F_PERSISTENT:
            self.persistent_count += 1
            self.persistent_bytes += body_size
        self.end = end

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SegmentStats) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)}" for name in self.__slots__)
        return f"SegmentStats({fields})"


class SegmentWriter:
    """The segment being appended to. Not thread-safe: one owner, the event-loop thread."""

    __slots__ = ("directory", "seg_id", "stats", "_fd", "_buf", "_flushed", "_size", "_limit",
                 "_sink")

    def __init__(self, directory: str | os.PathLike[str], seg_id: int,
                 buffer_limit: int = DEFAULT_WRITE_BUFFER,
                 sink: ReplicationSink | None = None) -> None:
        self.directory = Path(directory)
        self.seg_id = seg_id
        self._fd: int = os.open(self.directory / segment_name(seg_id),
                                os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._buf = bytearray(FILE_HEADER.pack(MAGIC, VERSION, 0, seg_id))
        self._flushed = 0
        self._size = len(self._buf)
        self._limit = buffer_limit
        self._sink = sink
        self.stats = SegmentStats(self._size)

    @property
    def path(self) -> Path:
        return self.directory / segment_name(self.seg_id)

    @property
    def size(self) -> int:
        """Logical size: written plus buffered bytes. The next record starts here."""
        return self._size

    @property
    def flushed(self) -> int:
        """Bytes handed to the kernel (readable by another process, survive kill -9)."""
        return self._flushed

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        return self._fd

    def append(self, seq: int, flags: int, expires: float, exchange_raw: bytes,
               routing_key_raw: bytes, props: bytes, body: bytes, deliveries: int = 0) -> int:
        """Buffer one record; return its offset. A failing flush leaves the bytes buffered."""
        offset = self._size
        self._size += encode_into(self._buf, seq, flags, expires, exchange_raw, routing_key_raw,
                                  props, body, deliveries)
        self.stats.add(flags, len(body), self._size)
        if len(self._buf) >= self._limit:
            try:
                self.flush()
            except OSError:
                pass  # kept buffered; the next flush (group commit, seal) retries and reports
        return offset

    def flush(self) -> None:
        """Write the buffered bytes with ``os.write``; raises OSError (bytes stay buffered)."""
        buf = self._buf
        if not buf or self._fd < 0:
            return
        written = 0
        try:
            while written < len(buf):  # no memoryview: a failed write must not pin the buffer
                written += os.write(self._fd, buf[written:] if written else buf)
        finally:
            if written and self._sink is not None:
                self._sink.append(str(self.path), self._flushed, bytes(buf[:written]))
            del buf[:written]
            self._flushed += written

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset``, whether written or still buffered."""
        flushed = self._flushed
        if offset >= flushed:
            start = offset - flushed
            return bytes(self._buf[start:start + size])
        data = os.pread(self._fd, min(size, flushed - offset), offset)
        if len(data) < size and offset + len(data) == flushed:
            data += bytes(self._buf[:size - len(data)])
        return data

    def seal(self) -> SegmentStats:
        """Flush and write the ``.idx`` sidecar; the file descriptor stays open (``close``)."""
        self.flush()
        write_index(self.directory, self.seg_id, self.stats, self._sink)
        return self.stats

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def write_index(directory: str | os.PathLike[str], seg_id: int, stats: SegmentStats,
                sink: ReplicationSink | None = None) -> None:
    payload = _INDEX.pack(_INDEX_MAGIC, VERSION, 0, stats.end, stats.count,
                          stats.persistent_count, stats.body_bytes, stats.persistent_bytes)
    data = payload + _CRC.pack(zlib.crc32(payload))
    path = Path(directory) / index_name(seg_id)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    if sink is not None:
        sink.rewrite(str(path), data)


def read_index(directory: str | os.PathLike[str], seg_id: int) -> SegmentStats | None:
    """The sealed segment's counters, or None when the sidecar is missing or damaged."""
    try:
        data = (Path(directory) / index_name(seg_id)).read_bytes()
    except FileNotFoundError:
        return None
    if len(data) != _INDEX.size + _CRC.size:
        return None
    payload = data[:_INDEX.size]
    if _CRC.unpack_from(data, _INDEX.size)[0] != zlib.crc32(payload):
        return None
    magic, version, _, end, count, pcount, body_bytes, pbytes = _INDEX.unpack(payload)
    if magic != _INDEX_MAGIC or version != VERSION:
        return None
    stats = SegmentStats(end)
    stats.count, stats.persistent_count = count, pcount
    stats.body_bytes, stats.persistent_bytes = body_bytes, pbytes
    return stats


def check_header(data: bytes, path: str | os.PathLike[str]) -> bool:
    """True when ``data`` starts with a valid header; False when it is empty, short or zeroed
    (a file created just before a crash); SegmentFormatError for a foreign or newer file."""
    if len(data) < FILE_HEADER_SIZE or not any(data[:FILE_HEADER_SIZE]):
        return False
    magic, version, _, _ = FILE_HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SegmentFormatError(f"{path} is not a burrowmq segment file (bad magic)")
    if version != VERSION:
        raise SegmentFormatError(
            f"{path} has segment format version {version}; this broker reads {VERSION}")
    return True


class ScanResult:
    """What a full, CRC-checked scan found: counters of the valid prefix and why it stopped."""

    __slots__ = ("stats", "file_size", "error")

    def __init__(self, stats: SegmentStats, file_size: int, error: str | None) -> None:
        self.stats = stats
        self.file_size = file_size
        self.error = error

    @property
    def valid_end(self) -> int:
        return self.stats.end

    @property
    def torn(self) -> bool:
        return self.stats.end < self.file_size


def scan(path: str | os.PathLike[str], chunk: int = 4 * 1024 * 1024) -> ScanResult:
    """Read a whole segment, checking every record; stop at the first short or corrupt one.

    ``stats.end`` is 0 when the header itself is missing (the file holds nothing usable).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if not check_header(os.pread(fd, FILE_HEADER_SIZE, 0), path):
            return ScanResult(SegmentStats(0), size, "missing header")
        stats = SegmentStats(FILE_HEADER_SIZE)
        pos = base = FILE_HEADER_SIZE
        buf = b""
        error = None
        while pos < size:
            try:
                end, flags, body_size = check(buf, pos - base)
            except ShortRecord as exc:
                if base + len(buf) >= size:
                    exc.offset = pos
                    error = str(exc)
                    break
                buf = os.pread(fd, max(exc.needed, chunk), pos)
                base = pos
                continue
            except CorruptRecord as exc:
                exc.offset = pos
                error = str(exc)
                break
            pos = base + end
            stats.add(flags, body_size, pos)
        return ScanResult(stats, size, error)
    finally:
        os.close(fd)


class SegmentReader:
    """Sequential reader over one segment with read-ahead; ``source(offset, n)`` supplies bytes
    (``os.pread`` on a sealed file, ``SegmentWriter.read`` on the live one).

    ``next(limit)`` decodes the record at ``offset`` and moves past it; ``record_offset`` is
    where that record started.
    """

    __slots__ = ("source", "offset", "record_offset", "_buf", "_base", "_chunk")

    def __init__(self, source: Source, offset: int = FILE_HEADER_SIZE,
                 chunk: int = DEFAULT_READ_AHEAD) -> None:
        self.source = source
        self.offset = offset
        self.record_offset = offset
        self._buf = b""
        self._base = offset
        self._chunk = chunk

    def seek(self, offset: int) -> None:
        self.offset = offset

    def next(self, limit: int) -> Decoded | None:
        """The next record before ``limit`` or None at ``limit``; ShortRecord / CorruptRecord
        when the bytes there are not a whole, valid record."""
        pos = self.offset
        if pos >= limit:
            return None
        base = self._base
        buf = self._buf
        rel = pos - base
        if rel < 0 or rel >= len(buf):
            buf, base, rel = self._fill(pos, RECORD_HEADER_SIZE, limit), pos, 0
        try:
            try:
                rec = decode(buf, rel, min(len(buf), limit - base))
            except ShortRecord as exc:
                buf, base = self._fill(pos, exc.needed, limit), pos
                rec = decode(buf, 0, len(buf))
        except RecordError as exc:
            exc.offset = pos
            raise
        self.record_offset = pos
        self.offset = base + rec[0]
        return rec

    def next_many(self, limit: int, count: int, max_bytes: int, trusted: int = 0
                  ) -> list[RawRecord]:
        """Up to ``count`` records before ``limit`` (fewer at ``limit``, at the end of the
        read-ahead buffer, or after the one whose bodies reach ``max_bytes``: see
        ``record.decode_many``); ``trusted`` is the file position below which the records'
        CRCs were checked already. Raises as ``next`` for the first record."""
        pos = self.offset
        if pos >= limit:
            return []
        base = self._base
        buf = self._buf
        rel = pos - base
        if rel < 0 or rel >= len(buf):
            buf, base, rel = self._fill(pos, RECORD_HEADER_SIZE, limit), pos, 0
        try:
            try:
                records, end = decode_many(buf, rel, min(len(buf), limit - base), count,
                                           max_bytes, trusted - base)
            except ShortRecord as exc:
                buf, base = self._fill(pos, exc.needed, limit), pos
                records, end = decode_many(buf, 0, len(buf), count, max_bytes, trusted - base)
        except RecordError as exc:
            exc.offset = pos
            raise
        self.record_offset = pos
        self.offset = base + end
        return records

    def _fill(self, pos: int, needed: int, limit: int) -> bytes:
        want = min(max(needed, self._chunk), limit - pos)
        self._buf = buf = self.source(pos, want)
        self._base = pos
        return buf


def close_on_shutdown(writer: SegmentWriter, gc: GroupCommit | None) -> None:
    """Shutdown of a store's open segment: what it wrote stays covered by the group commit's
    next fsync, its buffer is flushed (a failure is logged: recovery truncates a torn tail)
    and the file closed."""
    if gc is not None:
        gc.handoff(writer)
    try:
        writer.flush()
    except OSError as exc:
        log.error("%s: could not flush on close: %s", writer.path, exc)
    writer.close()
