"""The on-disk pieces of a ``delayed.DelayStore``: sorted runs of keys, segment sidecars and
the watermark file (formats in ``delayed``'s head).

A ``Run`` is immutable once written and read a block of ``BLOCK`` entries at a time, so
holding many runs costs one small block each. A run made by the memtable is written whole (to
a temporary name, then renamed); a merged run (``delayed_merge``) is appended to under its
own name, entries first, and is valid only once its footer is there::

    [BMQRUN02][entries][source run ids u32 ...][FOOTER: sources n, count, covers seg,
    covers position, max id, crc of entries + sources, BMQRUNOK]

Every file here carries a CRC: a damaged one is detected, never trusted. Checking a run reads
it a chunk at a time (a merged run may hold millions of entries).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Literal, NamedTuple

from .sync import FdFile

BLOCK = 256
RUN_MAGIC = b"BMQRUN01"
RUN_HEADER = struct.Struct("<8sIIIQI")  # magic, count, covers seg, covers position, max id, crc
ENTRY = struct.Struct("<dQII")          # due, id, seg, position
MARK = struct.Struct("<dQI")            # due, id, crc
MERGED_MAGIC = b"BMQRUN02"
FOOTER = struct.Struct("<IIIIQI8s")     # sources, count, covers seg, covers pos, max id, crc,
FOOTER_MAGIC = b"BMQRUNOK"              # magic: a merged run is complete
SOURCE = struct.Struct("<I")
_CHUNK = 1 << 20
WATERMARK = "WATERMARK"
OFFSET_MASK = 0xFFFF_FFFF

Key = tuple[float, int]
#: (due, id, segment << 32 | position)
Item = tuple[float, int, int]
NONE: Key = (float("-inf"), -1)


def pread(fd: int, offset: int, size: int) -> bytes:
    return os.pread(fd, size, offset)


def run_name(run_id: int) -> str:
    return f"run-{run_id:08d}"


def dmx_name(seg_id: int) -> str:
    return f"{seg_id:08d}.dmx"


def pack_mark(key: Key) -> bytes:
    payload = struct.pack("<dQ", *key)
    return payload + struct.pack("<I", zlib.crc32(payload))


def unpack_mark(data: bytes) -> Key | None:
    if len(data) != MARK.size:
        return None
    due, ident, crc = MARK.unpack(data)
    return (due, ident) if zlib.crc32(data[:16]) == crc else None


class Run:
    """A sorted run on disk, read a block of entries at a time from ``index``; its entries
    start at ``base``."""

    __slots__ = ("path", "run_id", "count", "covers", "last", "base", "max_id", "index",
                 "_block", "_at")

    def __init__(self, path: Path, run_id: int, count: int, covers: tuple[int, int],
                 last: Key, base: int = RUN_HEADER.size, max_id: int = 0) -> None:
        self.path = path
        self.run_id = run_id
        self.count = count
        self.covers = covers
        self.last = last
        self.base = base
        self.max_id = max_id  # the largest id in it (not always the last key's)
        self.index = 0
        self._block: list[Item] = []
        self._at = 0

    def head(self) -> Item | None:
        if self._at >= len(self._block):
            if self.index >= self.count:
                return None
            self._fill()
        return self._block[self._at]

    def advance(self) -> None:
        self._at += 1
        self.index += 1

    def _fill(self) -> None:
        n = min(BLOCK, self.count - self.index)
        with open(self.path, "rb") as f:
            f.seek(self.base + self.index * ENTRY.size)
            data = f.read(n * ENTRY.size)
        self._block = [(due, ident, (seg << 32) | pos)
                       for due, ident, seg, pos in ENTRY.iter_unpack(data)]
        self._at = 0

    def skip_to(self, watermark: Key) -> None:
        """Move past every entry ``<= watermark`` (binary search on the file)."""
        lo, hi = self.index, self.count
        with open(self.path, "rb") as f:
            while lo < hi:
                mid = (lo + hi) // 2
                f.seek(self.base + mid * ENTRY.size)
                due, ident, _seg, _pos = ENTRY.unpack(f.read(ENTRY.size))
                if (due, ident) <= watermark:
                    lo = mid + 1
                else:
                    hi = mid
        self.index = lo
        self._block, self._at = [], 0

    @property
    def remaining(self) -> int:
        return self.count - self.index


def write_run(path: Path, items: list[Item], covers: tuple[int, int]) -> bytes:
    body = b"".join(ENTRY.pack(due, ident, pos >> 32, pos & OFFSET_MASK)
                    for due, ident, pos in items)
    max_id = max((ident for _, ident, _ in items), default=0)
    header = RUN_HEADER.pack(RUN_MAGIC, len(items), covers[0], covers[1], max_id,
                              zlib.crc32(body))
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, header + body)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return header + body


class RunInfo(NamedTuple):
    entries: int
    covers: tuple[int, int]
    last: Key
    max_id: int
    base: int  # where the entries start
    sources: tuple[int, ...]  # a merged run: the runs it replaces


PARTIAL: Literal["partial"] = "partial"  # a merged run whose writing did not finish


def read_run_info(path: Path) -> RunInfo | None | Literal["partial"]:
    """What an intact run holds; None when damaged; ``PARTIAL`` for a merged run whose
    footer is missing or wrong (its sources are all still there)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        start = os.pread(fd, 8, 0)
        if start == MERGED_MAGIC:
            return _merged_info(fd, size) or PARTIAL
        if size < RUN_HEADER.size:
            return None
        magic, count, seg, pos, max_id, crc = RUN_HEADER.unpack(os.pread(fd, RUN_HEADER.size, 0))
        if magic != RUN_MAGIC or size - RUN_HEADER.size != count * ENTRY.size or \
                _crc(fd, RUN_HEADER.size, size) != crc:
            return None
        return RunInfo(count, (seg, pos), _last(fd, RUN_HEADER.size, count), max_id,
                       RUN_HEADER.size, ())
    finally:
        os.close(fd)


def _merged_info(fd: int, size: int) -> RunInfo | None:
    base = len(MERGED_MAGIC)
    if size < base + FOOTER.size:
        return None
    n, count, seg, pos, max_id, crc, magic = FOOTER.unpack(
        os.pread(fd, FOOTER.size, size - FOOTER.size))
    end = size - FOOTER.size
    if magic != FOOTER_MAGIC or end - base != count * ENTRY.size + n * SOURCE.size or \
            _crc(fd, base, end) != crc:
        return None
    tail = os.pread(fd, n * SOURCE.size, end - n * SOURCE.size)
    sources = tuple(s for (s,) in SOURCE.iter_unpack(tail))
    return RunInfo(count, (seg, pos), _last(fd, base, count), max_id, base, sources)


def _crc(fd: int, start: int, end: int) -> int:
    crc = 0
    while start < end:
        chunk = os.pread(fd, min(_CHUNK, end - start), start)
        if not chunk:
            break
        crc = zlib.crc32(chunk, crc)
        start += len(chunk)
    return crc


def _last(fd: int, base: int, count: int) -> Key:
    if not count:
        return NONE
    due, ident, _seg, _pos = ENTRY.unpack(os.pread(fd, ENTRY.size,
                                                   base + (count - 1) * ENTRY.size))
    return due, ident


def merged_footer(sources: list[int], count: int, covers: tuple[int, int], max_id: int,
                  crc: int) -> bytes:
    """What ends a merged run: its sources, then the footer (``crc`` covers the entries;
    the sources are added to it here)."""
    tail = b"".join(SOURCE.pack(s) for s in sources)
    crc = zlib.crc32(tail, crc)
    return tail + FOOTER.pack(len(sources), count, covers[0], covers[1], max_id, crc,
                              FOOTER_MAGIC)


class MarkFile(FdFile):
    """The WATERMARK file as a ``Flushable``: rewritten in place, fsynced by the group
    commit."""

    __slots__ = ("_pending",)

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._pending: bytes | None = None

    def set(self, key: Key) -> None:
        self._pending = pack_mark(key)

    def flush(self) -> None:
        if self._pending is not None and self._fd >= 0:
            os.pwrite(self._fd, self._pending, 0)
            self._pending = None
