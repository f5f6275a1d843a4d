"""Per-segment append-only ack logs: which records of ``NNNNNNNN.seg`` are settled or delivered.

``NNNNNNNN.ack`` is a flat array of 8-byte little-endian entries ``[offset u32][info u32]``:

- an *ack*: ``info = body_size | TRANSIENT?`` (body size clamped to 30 bits). The record at
  ``offset`` is gone for good. Recovery subtracts acked persistent records and bytes from the
  segment's counters without reading the segment.
- a *delivered mark*: ``info = DELIVERED``. The record was handed to a consumer; if it is still
  unacked after a restart it comes back with ``redelivered=True``.

Invariants:
- Entries are only appended, buffered per segment and written with ``os.write``; no fsync is
  needed (a lost ack means a redelivery, never a lost message). A torn final entry (file size
  not a multiple of 8) is truncated away when the file is read.
- The file lives exactly as long as its segment: the owner removes both when every record of
  the segment is acked.
- At most ``max_open`` files are kept open (least recently used closed first).
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from .replication import unlink

if TYPE_CHECKING:
    from .replication import ReplicationSink

ENTRY = struct.Struct("<II")
ENTRY_SIZE = ENTRY.size
DELIVERED = 0x8000_0000
TRANSIENT = 0x4000_0000
SIZE_MASK = 0x3FFF_FFFF

_pack = ENTRY.pack


def ack_name(seg_id: int) -> str:
    return f"{seg_id:08d}.ack"


def is_ack_name(name: str) -> bool:
    """``name`` (a path's last part) is an ack file's: a copy need not fsync it either."""
    return len(name) == 12 and name.endswith(".ack") and name[:8].isdigit()


class AckState:
    """One segment's ack file, read back: what recovery and the recovery cursor need.

    ``acked`` is sorted and unique; ``delivered`` holds delivered-but-unacked offsets only.
    """

    __slots__ = ("acked", "delivered", "persistent_count", "persistent_bytes")

    def __init__(self) -> None:
        self.acked = array("I")
        self.delivered: set[int] = set()
        self.persistent_count = 0
        self.persistent_bytes = 0


def read_acks(directory: str | os.PathLike[str], seg_id: int, end: int,
              repair: bool = True, sink: ReplicationSink | None = None) -> AckState:
    """Parse ``NNNNNNNN.ack`` (missing = nothing acked), ignoring entries at or past ``end``
    (records lost with a truncated tail). A torn final entry is ignored, and with ``repair``
    (at recovery, before anything appends again) truncated off the file."""
    path = Path(directory) / ack_name(seg_id)
    state = AckState()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return state
    torn = len(data) % ENTRY_SIZE
    if torn:
        data = data[:len(data) - torn]
        if repair:
            os.truncate(path, len(data))
            if sink is not None:
                sink.truncate(str(path), len(data))
    words = array("I")
    words.frombytes(data)
    if sys.byteorder == "big":
        words.byteswap()
    offsets = words[0::2]
    infos = words[1::2]
    acked: dict[int, int] = {}
    marks: set[int] = set()
    for offset, info in zip(offsets, infos, strict=True):
        if offset >= end:
            continue
        if info & DELIVERED:
            marks.add(offset)
        else:
            acked[offset] = info
    for info in acked.values():
        if not info & TRANSIENT:
            state.persistent_count += 1
            state.persistent_bytes += info & SIZE_MASK
    state.acked = array("I", sorted(acked))
    state.delivered = marks.difference(acked)
    return state


class AckLog:
    """The ack files of one queue directory, with buffered appends. Loop-thread only."""

    __slots__ = ("directory", "_pending", "_fds", "_max_open", "_limit", "_buffered", "_sink")

    def __init__(self, directory: str | os.PathLike[str], max_open: int = 2,
                 buffer_limit: int = 64 * 1024, sink: ReplicationSink | None = None) -> None:
        self.directory = Path(directory)
        self._pending: dict[int, bytearray] = {}
        self._fds: OrderedDict[int, int] = OrderedDict()
        self._max_open = max_open
        self._limit = buffer_limit
        self._buffered = 0
        self._sink = sink

    @property
    def pending(self) -> bool:
        return bool(self._buffered)

    def ack(self, seg_id: int, offset: int, body_size: int, persistent: bool) -> None:
        info = min(body_size, SIZE_MASK) | (0 if persistent else TRANSIENT)
        self._add(seg_id, _pack(offset, info))

    def delivered(self, seg_id: int, offset: int) -> None:
        self._add(seg_id, _pack(offset, DELIVERED))

    def _add(self, seg_id: int, entry: bytes) -> None:
        buf = self._pending.get(seg_id)
        if buf is None:
            buf = self._pending[seg_id] = bytearray()
        buf += entry
        self._buffered += ENTRY_SIZE
        if self._buffered >= self._limit:
            try:
                self.flush()
            except OSError:
                pass  # stays buffered; the next flush retries and reports

    def flush(self) -> None:
        """Write every buffered entry with ``os.write``; OSError leaves the rest buffered."""
        pending = self._pending
        sink = self._sink
        error: OSError | None = None
        for seg_id in list(pending):
            buf = pending[seg_id]
            written = end = 0
            try:
                fd = self._fd(seg_id)
                end = os.lseek(fd, 0, os.SEEK_END) if sink is not None else 0
                while written < len(buf):
                    written += os.write(fd, buf[written:] if written else buf)
            except OSError as exc:
                error = exc
            if written and sink is not None:
                sink.append(str(self.directory / ack_name(seg_id)), end, bytes(buf[:written]))
            # a partial entry write is completed by the next flush (O_APPEND keeps the order)
            del buf[:written]
            self._buffered -= written
            if not buf:
                del pending[seg_id]
        if error is not None:
            raise error

    def fileno(self) -> int:
        """-1, which the group commit reads as "nothing to fsync": there is one descriptor per
        segment, and acks are only ever flushed (``touch(acks, sync=False)``). A lost ack costs
        a redelivery after a crash, never a message."""
        return -1

    def _fd(self, seg_id: int) -> int:
        fds = self._fds
        fd = fds.get(seg_id)
        if fd is not None:
            fds.move_to_end(seg_id)
            return fd
        fd = os.open(self.directory / ack_name(seg_id),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fds[seg_id] = fd
        while len(fds) > self._max_open:
            os.close(fds.popitem(last=False)[1])
        return fd

    def remove(self, seg_id: int) -> None:
        """Forget the segment: drop buffered entries, close and unlink its ack file."""
        buf = self._pending.pop(seg_id, None)
        if buf is not None:
            self._buffered -= len(buf)
        fd = self._fds.pop(seg_id, None)
        if fd is not None:
            os.close(fd)
        unlink(self.directory / ack_name(seg_id), self._sink)

    def close(self, flush: bool = True) -> None:
        """Flush what can be flushed (unless ``flush`` is False: the entries are dropped) and
        close every file."""
        try:
            if flush:
                self.flush()
        finally:
            self._pending.clear()
            self._buffered = 0
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
