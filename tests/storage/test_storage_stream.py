"""StreamLog: offsets, readers, chunks, retention by whole segments, recovery after a clean
close and after a crash (torn tails, lost index entries), the offset floor kept when every
segment is gone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage.segment import FILE_HEADER_SIZE
from storage.stream import INDEX_EVERY, META_NAME, StreamLog, index_name


def _raw(text: str) -> bytes:
    data = text.encode()
    return bytes((len(data),)) + data


def _append(log: StreamLog, n: int, size: int = 100, start: int = 0,
            ts: float | None = None) -> list[int]:
    return [log.append(_raw("ex"), _raw("rk"), b"\x00\x00", b"%08d" % (start + i) +
                       b"x" * (size - 8), i % 2 == 0, ts) for i in range(n)]


def _read_all(log: StreamLog, offset: int) -> list[int]:
    reader = log.reader(offset)
    out = []
    while (record := reader.next()) is not None:
        assert int(record.body[:8]) == record.offset
        out.append(record.offset)
    reader.close()
    return out


def _crash(log: StreamLog) -> None:
    """kill -9: what was handed to the kernel stays; nothing else happens."""
    log.flush()
    for f in (log._writer, log._index):
        if f is not None:
            os.close(f.fileno())
            f._fd = -1  # type: ignore[union-attr]
    log._closed = True


def test_offsets_are_consecutive_and_readers_are_independent(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s")
    assert _append(log, 10) == list(range(10))
    assert (log.first_offset, log.next_offset, log.last_offset, len(log)) == (0, 10, 9, 10)
    assert _read_all(log, 0) == list(range(10))
    assert _read_all(log, 7) == [7, 8, 9]
    assert _read_all(log, 99) == []  # past the end: nothing yet
    a, b = log.reader(0), log.reader(5)
    assert a.next().offset == 0 and b.next().offset == 5  # type: ignore[union-attr]
    assert a.next().offset == 1  # type: ignore[union-attr]
    assert len(log) == 10  # reading removes nothing
    record = log.reader(3).next()
    assert record is not None and record.exchange == "ex" and record.routing_key == "rk"
    assert record.persistent is False and log.reader(2).next().persistent  # type: ignore
    log.close()


def test_reader_waits_at_the_end_then_sees_new_records(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s", segment_size=4000)
    reader = log.reader(log.next_offset)
    assert reader.next() is None
    _append(log, 3)
    assert [reader.next().offset for _ in range(3)] == [0, 1, 2]  # type: ignore[union-attr]
    assert reader.next() is None
    _append(log, 200, start=3)  # rolls several segments under the reader's feet
    assert log.segment_count > 3
    got = []
    while (record := reader.next()) is not None:
        got.append(record.offset)
    assert got == list(range(3, 203))
    log.close()


@pytest.mark.parametrize("segment_size", [1_000_000, 30_000])
def test_rolls_and_seeks_through_the_sparse_index(tmp_path: Path, segment_size: int) -> None:
    log = StreamLog(tmp_path / "s", segment_size=segment_size)
    _append(log, 3 * INDEX_EVERY + 17)
    assert log.segment_count >= (1 if segment_size > 100_000 else 3)
    assert len(log.segments[0].idx_offsets) >= (3 if segment_size > 100_000 else 1)
    for offset in (0, 1, INDEX_EVERY - 1, INDEX_EVERY, 2 * INDEX_EVERY + 5, log.last_offset):
        reader = log.reader(offset)
        assert reader.next().offset == offset  # type: ignore[union-attr]
        reader.close()
    log.close()


def test_chunks(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s")
    _append(log, 3)
    log.end_chunk()
    _append(log, 4, start=3)
    assert log.last_chunk == 3
    log.end_chunk()
    _append(log, 1, start=7)
    assert log.last_chunk == 7
    log.close()


def test_offset_at_a_time(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s", segment_size=20_000)
    for second in range(10):
        _append(log, 50, start=second * 50, ts=1000.0 + second)
    assert log.offset_at(0) == 0
    assert log.offset_at(1000.5) == 50
    assert log.offset_at(1004) == 200
    assert log.offset_at(1009) == 450
    assert log.offset_at(2000) == log.next_offset
    log.close()


def test_retention_by_bytes_drops_whole_oldest_segments(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s", segment_size=10_000, max_bytes=35_000)
    _append(log, 1000)
    assert log.bytes <= 35_000 + 10_000  # the segment being written may overshoot by one
    first = log.first_offset
    assert first > 0 and log.next_offset == 1000
    seg = log.segments[0]
    assert seg.first == first  # whole segments: the range starts at a segment boundary
    assert _read_all(log, 0)[0] == first  # an old offset attaches at the first one left
    files = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert len([f for f in files if f.endswith(".seg")]) == log.segment_count
    log.close()


def test_retention_by_age(tmp_path: Path) -> None:
    now = [1000.0]
    log = StreamLog(tmp_path / "s", segment_size=5_000, max_age=60, clock=lambda: now[0])
    _append(log, 200)
    old_segments = log.segment_count
    assert old_segments > 2
    now[0] += 61
    _append(log, 100, start=200)  # rolls: the old segments are all older than 60 s
    assert log.first_offset >= 200 - 50
    assert log.segment_count < old_segments
    log.close()


def test_a_reader_in_a_deleted_segment_moves_on(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s", segment_size=10_000)
    _append(log, 300)
    reader = log.reader(0)
    assert reader.next().offset == 0  # type: ignore[union-attr]
    log.set_retention(20_000, None)
    assert log.first_offset > 100
    got = [0]
    while (record := reader.next()) is not None:
        got.append(record.offset)
    # it finishes the segment it had open, then jumps to the oldest one left
    assert got == sorted(got) and got[-1] == 299 and log.first_offset in got
    log.close()


def test_clean_restart_keeps_offsets_and_range(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s", segment_size=10_000, max_bytes=30_000)
    _append(log, 700)
    first, nxt = log.first_offset, log.next_offset
    log.close()
    log = StreamLog(tmp_path / "s", segment_size=10_000, max_bytes=30_000)
    assert (log.first_offset, log.next_offset) == (first, nxt)
    assert _read_all(log, 0) == list(range(first, nxt))
    assert _append(log, 5, start=nxt) == list(range(nxt, nxt + 5))
    log.close()


def test_crash_keeps_what_reached_the_kernel_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s", segment_size=1_000_000)
    _append(log, 3 * INDEX_EVERY + 10)
    _crash(log)
    seg = sorted((tmp_path / "s").glob("*.seg"))[-1]
    size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(b"\x55" * 37)  # a torn record
    log = StreamLog(tmp_path / "s")
    assert log.next_offset == 3 * INDEX_EVERY + 10
    assert seg.stat().st_size == size
    assert _read_all(log, 0) == list(range(log.next_offset))
    log.close()


def test_a_lost_tail_and_a_stale_index_entry(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s", segment_size=1_000_000)
    _append(log, 2 * INDEX_EVERY + 3)
    _crash(log)
    seg = sorted((tmp_path / "s").glob("*.seg"))[-1]
    # cut inside the last indexed record: its index entry points at a torn record
    index = (tmp_path / "s" / index_name(int(seg.stem))).read_bytes()
    last_position = int.from_bytes(index[-12:-8], "little")
    os.truncate(seg, last_position + 10)
    log = StreamLog(tmp_path / "s")
    assert log.next_offset == 2 * INDEX_EVERY  # everything before the torn one
    assert _read_all(log, 0) == list(range(2 * INDEX_EVERY))
    assert _append(log, 1, start=2 * INDEX_EVERY) == [2 * INDEX_EVERY]
    log.close()


def test_an_empty_segment_from_a_crash_is_removed(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s")
    _append(log, 5)
    log.close()
    (tmp_path / "s" / "00000009.seg").write_bytes(b"")
    log = StreamLog(tmp_path / "s")
    assert not (tmp_path / "s" / "00000009.seg").exists()
    assert log.next_offset == 5
    assert _append(log, 1, start=5) == [5]
    log.close()


def test_offsets_never_restart_when_retention_emptied_the_disk(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s", segment_size=2_000, max_bytes=1)
    _append(log, 100)
    log.close()
    assert (tmp_path / "s" / META_NAME).exists()
    for path in (tmp_path / "s").glob("*.s*"):  # lose even the newest segment
        path.unlink()
    log = StreamLog(tmp_path / "s")
    assert log.next_offset >= 90
    assert log.append(_raw("e"), _raw("k"), b"\x00\x00", b"%08d" % log.next_offset,
                      True) >= 90
    log.close()


def test_delete_removes_the_directory(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s")
    _append(log, 3)
    log.delete()
    assert not (tmp_path / "s").exists()


def test_non_durable_log_starts_empty(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s")
    _append(log, 3)
    log.close()
    log = StreamLog(tmp_path / "s", durable=False)
    assert (log.first_offset, log.next_offset) == (0, 0)
    log.close()


@pytest.mark.parametrize("cut", [FILE_HEADER_SIZE - 3, 0])
def test_a_short_header_means_an_empty_segment(tmp_path: Path, cut: int) -> None:
    log = StreamLog(tmp_path / "s")
    _append(log, 2)
    log.close()
    seg = next((tmp_path / "s").glob("*.seg"))
    os.truncate(seg, cut)
    log = StreamLog(tmp_path / "s")
    assert log.segment_count == 0 and not seg.exists()
    log.close()
