"""Segment files: header, appends and offsets, buffered reads, index sidecar, scans."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage import segment
from storage.record import F_PERSISTENT
from storage.segment import (
    FILE_HEADER_SIZE,
    SegmentFormatError,
    SegmentReader,
    SegmentWriter,
    read_index,
    scan,
)


def append(w: SegmentWriter, i: int, persistent: bool = True) -> int:
    return w.append(i, F_PERSISTENT if persistent else 0, 0.0, b"\x02ex", b"\x02rk",
                    b"\x00\x00", f"body-{i}".encode())


def test_names() -> None:
    assert segment.segment_name(1) == "00000001.seg"
    assert segment.file_id("00000042.ack") == 42
    assert segment.file_id("00000042.tmp") is None
    assert segment.file_id("LOCK") is None


def test_append_offsets_buffered_reads_and_reader(tmp_path: Path) -> None:
    w = SegmentWriter(tmp_path, 3, buffer_limit=1 << 20)
    offsets = [append(w, i, persistent=i % 2 == 0) for i in range(10)]
    assert offsets[0] == FILE_HEADER_SIZE
    assert (tmp_path / "00000003.seg").stat().st_size == 0  # all still buffered
    reader = SegmentReader(w.read, FILE_HEADER_SIZE, chunk=64)
    seen = []
    while (rec := reader.next(w.size)) is not None:
        seen.append((reader.record_offset, rec[2], rec[7]))
    assert seen == [(off, i, f"body-{i}".encode()) for i, off in enumerate(offsets)]
    w.flush()
    assert w.flushed == w.size == (tmp_path / "00000003.seg").stat().st_size
    offsets.append(append(w, 10))  # half written, half buffered
    assert w.read(offsets[5], w.size)[:4] == w.read(offsets[5], 4)
    reader = SegmentReader(w.read, offsets[9])
    assert reader.next(w.size)[7] == b"body-9"
    assert reader.next(w.size)[7] == b"body-10"
    assert reader.next(w.size) is None
    stats = w.seal()
    w.close()
    assert (stats.count, stats.persistent_count) == (11, 6)
    assert stats.body_bytes == sum(len(f"body-{i}") for i in range(11))
    assert read_index(tmp_path, 3) == stats
    assert scan(tmp_path / "00000003.seg").stats == stats


def test_buffer_limit_flushes(tmp_path: Path) -> None:
    w = SegmentWriter(tmp_path, 1, buffer_limit=100)
    for i in range(20):
        append(w, i)
    assert w.flushed > 0
    w.close()


def test_scan_stops_at_torn_tail(tmp_path: Path) -> None:
    w = SegmentWriter(tmp_path, 1)
    offsets = [append(w, i) for i in range(5)]
    w.flush()
    w.close()
    path = tmp_path / "00000001.seg"
    os.truncate(path, path.stat().st_size - 3)
    result = scan(path)
    assert result.torn and result.valid_end == offsets[4]
    assert result.stats.count == 4
    assert "cut short" in (result.error or "")


def test_index_damage_is_ignored(tmp_path: Path) -> None:
    w = SegmentWriter(tmp_path, 1)
    append(w, 1)
    w.seal()
    w.close()
    idx = tmp_path / "00000001.idx"
    data = bytearray(idx.read_bytes())
    data[10] ^= 1
    idx.write_bytes(bytes(data))
    assert read_index(tmp_path, 1) is None
    assert read_index(tmp_path, 2) is None


def test_foreign_or_newer_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "00000001.seg"
    path.write_bytes(b"NOTASEGMENTFILE!" + bytes(16))
    with pytest.raises(SegmentFormatError, match="not a burrowmq segment"):
        scan(path)
    path.write_bytes(segment.FILE_HEADER.pack(segment.MAGIC, 99, 0, 1))
    with pytest.raises(SegmentFormatError, match="version 99"):
        scan(path)
    path.write_bytes(bytes(40))  # zeroed header: a file created just before a crash
    assert scan(path).valid_end == 0
