"""The batch read path of streams: ``record.decode_many`` (a run of records in one call, names
as stored shortstrs, the CRC skipped only below the trusted position, a bad record stopping
the batch before it and raising only when it comes first) and ``StreamReader.read`` (the same
records as ``next()``, across segments, from an offset between index entries, while the log
grows, and CRC-checked once per range of a segment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.record import (
    F_PERSISTENT,
    HEADER_SIZE,
    CorruptRecord,
    ShortRecord,
    decode,
    decode_many,
    encode,
)
from storage.segment import FILE_HEADER_SIZE
from storage.stream import INDEX_EVERY, StreamLog


def _raw(text: str) -> bytes:
    data = text.encode()
    return bytes((len(data),)) + data


def _records(n: int, size: int = 50) -> bytes:
    return b"".join(encode(i, F_PERSISTENT if i % 2 else 0, 0.0, "ex", f"rk{i}",
                           b"\x00\x00", b"%08d" % i + b"x" * (size - 8)) for i in range(n))


def test_decode_many_gives_what_decode_gives_with_raw_names() -> None:
    buf = _records(5)
    records, end = decode_many(buf, 0, len(buf), 10, 1 << 30)
    assert end == len(buf) and len(records) == 5
    pos = 0
    for seq, flags, ex, rk, props, body in records:
        one = decode(buf, pos)
        assert (seq, flags, props, body) == (one[2], one[1], one[6], one[7])
        assert (ex, rk) == (_raw(one[4]), _raw(one[5]))
        pos = one[0]


def test_decode_many_stops_at_count_bytes_and_limit() -> None:
    buf = _records(6, size=100)
    one = len(buf) // 6
    assert [r[0] for r in decode_many(buf, 0, len(buf), 2, 1 << 30)[0]] == [0, 1]
    # the batch stops after the record whose bodies reach max_bytes (past it by one at most)
    assert [r[0] for r in decode_many(buf, 0, len(buf), 10, 150)[0]] == [0, 1]
    assert [r[0] for r in decode_many(buf, 0, len(buf), 10, 100)[0]] == [0]
    # a record cut by the limit ends the batch; alone, it is reported short
    records, end = decode_many(buf, 0, 3 * one + 10, 10, 1 << 30)
    assert [r[0] for r in records] == [0, 1, 2] and end == 3 * one
    with pytest.raises(ShortRecord) as info:
        decode_many(buf, end, 3 * one + 10, 10, 1 << 30)
    assert info.value.needed == one
    with pytest.raises(ShortRecord):
        decode_many(buf, end, end + HEADER_SIZE - 1, 10, 1 << 30)


def test_decode_many_checks_the_crc_only_above_the_trusted_position() -> None:
    buf = bytearray(_records(4))
    one = len(buf) // 4
    buf[2 * one + one - 1] ^= 0xFF  # the third record's last body byte
    data = bytes(buf)
    records, end = decode_many(data, 0, len(data), 10, 1 << 30)
    assert [r[0] for r in records] == [0, 1] and end == 2 * one  # stops before the bad one
    with pytest.raises(CorruptRecord):
        decode_many(data, end, len(data), 10, 1 << 30)
    # below the trusted position nothing is checked again
    records, _ = decode_many(data, 0, len(data), 10, 1 << 30, trusted=3 * one)
    assert [r[0] for r in records] == [0, 1, 2, 3]


def _fill(log: StreamLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.append(_raw("ex"), _raw(f"rk{i % 3}"), b"\x00\x00", b"%08d" % i + b"y" * 92,
                   i % 2 == 0)


def _read_batches(log: StreamLog, offset: int, count: int = 7) -> list[int]:
    reader = log.reader(offset)
    out: list[int] = []
    while records := reader.read(count, 1 << 30):
        for seq, flags, _ex, rk, _props, body in records:
            assert int(body[:8]) == seq and rk == _raw(f"rk{seq % 3}")
            assert bool(flags & F_PERSISTENT) == (seq % 2 == 0)
            out.append(seq)
    reader.close()
    return out


def test_read_matches_next_across_segments_and_from_any_offset(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s", segment_size=20_000)  # ~150 records per segment
    n = 3 * INDEX_EVERY + 40
    _fill(log, n)
    assert log.segment_count > 3
    assert _read_batches(log, 0) == list(range(n))
    for offset in (1, INDEX_EVERY - 1, INDEX_EVERY + 5, n - 1):
        assert _read_batches(log, offset, count=50) == list(range(offset, n))
    assert _read_batches(log, n) == []
    log.close()
    again = StreamLog(tmp_path / "s", segment_size=20_000)  # recovered: read from the files
    assert _read_batches(again, 0, count=1000) == list(range(n))
    again.close()


def test_read_follows_appends_and_rolls(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s", segment_size=5_000)
    reader = log.reader(0)
    seen: list[int] = []
    for round_ in range(6):
        _fill(log, 30, start=round_ * 30)
        while records := reader.read(8, 1 << 30):
            seen += [r[0] for r in records]
        assert seen == list(range((round_ + 1) * 30))
    assert reader.read(8, 1 << 30) == []
    reader.close()
    log.close()


def test_read_checks_each_range_once_and_skips_a_bad_segment(tmp_path: Path) -> None:
    log = StreamLog(tmp_path / "s", segment_size=100_000)
    _fill(log, 900)
    first = log.segments[0]
    assert first.sealed and first.checked == FILE_HEADER_SIZE
    assert first.count > 2 * INDEX_EVERY
    assert _read_batches(log, 0, count=1000) == list(range(900))
    assert first.checked == first.end  # the first reader checked the whole segment
    log.close()
    # damage record 10 on disk (recovery trusts the index entries after it and does not
    # read it): a new process checks what it reads again, and skips the bad segment's rest
    path = tmp_path / "s" / "00000001.seg"
    data = bytearray(path.read_bytes())
    size = (first.end - FILE_HEADER_SIZE) // first.count
    data[FILE_HEADER_SIZE + 10 * size + 60] ^= 0xFF
    path.write_bytes(bytes(data))
    again = StreamLog(tmp_path / "s", segment_size=100_000)
    seg = again.segments[0]
    assert seg.next == first.next
    assert _read_batches(again, 0) == list(range(10)) + list(range(seg.next, 900))
    again.close()
