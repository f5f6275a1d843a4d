"""Write-behind: one storage thread that fills record CRCs, writes and fsyncs, in order.

The event loop only hands over whole buffers (``SegmentWriter.flush``); this thread computes
each record's ``crc32`` (the loop left it 0), ``pwrite``s the buffer at its offset and runs the
group commit's fsyncs. ``crc32``, ``pwrite`` and ``fsync`` release the GIL for big buffers, so
this work runs on the second core while the loop parses and delivers.

Invariants:
- One thread, FIFO: a file's buffers are written in the order they were handed over, and an
  fsync submitted after them covers them (``GroupCommit`` submits its fsyncs here).
- A write that fails is recorded until a retry of it succeeds (``SegmentWriter`` keeps the
  buffer and resubmits it); every fsync job run meanwhile reports it, so the batch's confirms
  get ``ok=False``.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_HEADER = struct.Struct("<II")
HEADER_SIZE = 16  # a segment file's header (segment.FILE_HEADER_SIZE), left alone


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


def read_unwritten(fd: int, inflight: list[tuple[int, bytearray, Future[None]]],
                   buf: bytearray, flushed: int, offset: int, size: int) -> bytes:
    """A segment's bytes that may not be written (a failing disk): from its handed-over
    buffers and its write buffer, their CRCs filled here (the values the thread writes)."""
    base = inflight[0][0] if inflight else flushed
    parts = [part for _, part, _ in inflight] + [buf]
    pos = 0
    for part in parts:
        fill_crcs(part, HEADER_SIZE if base + pos == 0 else 0)
        pos += len(part)
    memory = b"".join(parts)
    head = os.pread(fd, base - offset, offset) if offset < base else b""
    start = max(0, offset - base)
    return head + memory[start:start + size - len(head)]


class WriteBehind:
    """The storage thread (see the module head)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="burrowmq-storage")
        self._failed: dict[tuple[int, int], OSError] = {}  # (fd, offset) -> error

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
            self._failed[fd, offset] = exc
            raise
        self._failed.pop((fd, offset), None)

    def forget(self, fd: int, offset: int) -> None:
        """A failed buffer is dropped (its file is closed): it no longer fails batches."""
        self._failed.pop((fd, offset), None)

    def take_error(self) -> OSError | None:
        """Thread side (inside an fsync job, after every write handed over before it): a
        write that failed and has not succeeded since, else None."""
        for error in self._failed.values():
            return error
        return None

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
