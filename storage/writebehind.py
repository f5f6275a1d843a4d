"""Write-behind: one storage thread that fills record CRCs, writes and fsyncs, in order.

The event loop only hands over whole buffers (``SegmentWriter.flush``); this thread computes
each record's ``crc32`` (the loop left it 0), ``pwrite``s the buffer at its offset and runs the
group commit's fsyncs. ``crc32``, ``pwrite`` and ``fsync`` release the GIL for big buffers, so
this work runs on the second core while the loop parses and delivers.

Invariants:
- One thread, FIFO: a file's buffers are written in the order they were handed over, and an
  fsync submitted after them covers them (``GroupCommit`` submits its fsyncs here).
- A write that fails is recorded; the next fsync job reports it (the batch's confirms get
  ``ok=False``) and the writer resubmits the buffer (``SegmentWriter`` keeps it until done).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_HEADER = struct.Struct("<II")


def fill_crcs(buf: bytearray, pos: int) -> None:
    """Compute the CRC of every record in ``buf`` from ``pos`` (record boundaries follow from
    the length fields), in place."""
    unpack, pack_into, crc32 = _HEADER.unpack_from, _HEADER.pack_into, zlib.crc32
    end = len(buf)
    with memoryview(buf) as view:
        while pos < end:
            length, _ = unpack(buf, pos)
            start = pos + 8
            pack_into(buf, pos, length, crc32(view[start:start + length]))
            pos = start + length


class WriteBehind:
    """The storage thread (see the module head)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="burrowmq-storage")
        self._errors: list[OSError] = []

    @property
    def executor(self) -> ThreadPoolExecutor:
        return self._pool

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._pool.submit(fn, *args)

    def write(self, fd: int, buf: bytearray, offset: int, crc_from: int) -> None:
        """Thread side: CRCs, then the bytes at ``offset``; a failure is recorded and raised."""
        try:
            if crc_from >= 0:
                fill_crcs(buf, crc_from)
            written = 0
            with memoryview(buf) as view:
                while written < len(buf):
                    written += os.pwrite(fd, view[written:], offset + written)
        except OSError as exc:
            self._errors.append(exc)
            raise

    def take_error(self) -> OSError | None:
        """Thread side (inside an fsync job): the last write failure since the previous one."""
        if not self._errors:
            return None
        error = self._errors[-1]
        self._errors.clear()
        return error

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
