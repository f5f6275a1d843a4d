"""The write-behind thread: CRCs, writes and fsyncs off the loop give the same files."""

from __future__ import annotations

from pathlib import Path

from storage import record, segment
from storage.segment import SegmentReader, SegmentWriter
from storage.sync import GroupCommit
from storage.writebehind import WriteBehind, fill_crcs


def _fill(writer: SegmentWriter, n: int) -> None:
    for i in range(n):
        writer.append(i, record.F_PERSISTENT, 0.0, b"\x02ex", b"\x02rk", b"\x00\x00",
                      bytes([i % 256]) * (i * 37 % 3000))


def test_fill_crcs_matches_the_encoder() -> None:
    with_crc, without = bytearray(), bytearray()
    for i in range(20):
        args = (i, 1, 0.0, b"\x00", b"\x01k", b"p", b"body" * i)
        record.encode_into(with_crc, *args)
        record.encode_into(without, *args, crc=False)
    assert with_crc != without
    fill_crcs(without, 0)
    assert with_crc == without


def test_same_bytes_as_loop_writes_and_reads_before_the_thread_wrote(tmp_path: Path) -> None:
    behind = WriteBehind()
    gc = GroupCommit(behind=behind)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = SegmentWriter(tmp_path / "a", 1, buffer_limit=4096)
    offloaded = SegmentWriter(tmp_path / "b", 1, buffer_limit=4096, behind=behind)
    _fill(plain, 300)
    _fill(offloaded, 300)
    # the live segment reads back whole, whatever the thread has written so far
    reader = SegmentReader(offloaded.read)
    seqs = []
    while (rec := reader.next(offloaded.size)) is not None:
        seqs.append(rec[2])
    assert seqs == list(range(300))
    gc.touch(offloaded)
    assert gc.flush_now() is True
    plain.seal()
    offloaded.seal()
    plain.close()
    offloaded.close()
    a = (tmp_path / "a" / segment.segment_name(1)).read_bytes()
    b = (tmp_path / "b" / segment.segment_name(1)).read_bytes()
    assert a == b
    result = segment.scan(tmp_path / "b" / segment.segment_name(1))
    assert result.error is None and result.stats.count == 300
    behind.shutdown()
