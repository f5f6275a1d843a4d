"""The on-disk pieces of a ``delayed.DelayStore``: sorted runs of keys, segment sidecars and
the watermark file (formats in ``delayed``'s head).

A ``Run`` is immutable once written (to a temporary name, then renamed) and read a block of
``BLOCK`` entries at a time, so holding many runs costs one small block each. Every file here
carries a CRC: a damaged one is detected, never trusted.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

BLOCK = 256
RUN_MAGIC = b"BMQRUN01"
RUN_HEADER = struct.Struct("<8sIIIQI")  # magic, count, covers seg, covers position, max id, crc
ENTRY = struct.Struct("<dQII")          # due, id, seg, position
MARK = struct.Struct("<dQI")            # due, id, crc
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
    """A sorted run on disk, read a block of entries at a time from ``index``."""

    __slots__ = ("path", "run_id", "count", "covers", "last", "index", "_block", "_at")

    def __init__(self, path: Path, run_id: int, count: int, covers: tuple[int, int],
                 last: Key) -> None:
        self.path = path
        self.run_id = run_id
        self.count = count
        self.covers = covers
        self.last = last
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
            f.seek(RUN_HEADER.size + self.index * ENTRY.size)
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
                f.seek(RUN_HEADER.size + mid * ENTRY.size)
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


def read_run_header(path: Path) -> tuple[int, tuple[int, int], Key, int] | None:
    """(count, covers, largest key, largest id) of an intact run, else None."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if len(data) < RUN_HEADER.size:
        return None
    magic, count, seg, pos, max_id, crc = RUN_HEADER.unpack_from(data)
    body = data[RUN_HEADER.size:]
    if magic != RUN_MAGIC or len(body) != count * ENTRY.size or zlib.crc32(body) != crc:
        return None
    last = ENTRY.unpack_from(body, len(body) - ENTRY.size)[:2] if count else NONE
    return count, (seg, pos), (last[0], last[1]), max_id


class MarkFile:
    """The WATERMARK file as a ``Flushable``: rewritten in place, fsynced by the group
    commit."""

    __slots__ = ("path", "_fd", "_pending")

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

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            try:
                self.flush()
            finally:
                os.close(self._fd)
                self._fd = -1
