"""Recovery of one queue directory: which segments still hold ready persistent messages.

For each ``NNNNNNNN.seg`` in id order: trust its ``.idx`` sidecar when it matches the file (no
record is read), else scan the whole segment with CRC checks and truncate it at the first torn
or corrupt record (the torn tail of the segment that was being written at a crash); then replay
its ``.ack`` file to subtract acked persistent records and bytes.

Invariants of the result:
- Only counters are built: per segment ``ready`` (persistent, not acked) and ``ready_bytes``.
  Bodies stay on disk; the store's cursor reads them back in order, skipping acked offsets and
  transient records (transient messages are not recovered).
- Segments with nothing ready are deleted with their sidecars, and sidecars without a segment
  (a crash between unlinks) are deleted, so a new segment id never meets a stale ``.ack``.
- ``next_id`` is greater than every id seen in the directory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .acks import ack_name, read_acks
from .replication import unlink
from .segment import (
    FILE_HEADER_SIZE,
    SegmentStats,
    check_header,
    file_id,
    index_name,
    read_index,
    scan,
    segment_name,
    write_index,
)

if TYPE_CHECKING:
    from .replication import ReplicationSink

log = logging.getLogger(__name__)


class Seg:
    """Per-segment counters, the only per-segment state a store keeps in RAM.

    ``live``: records not yet acked (ready, in RAM, or out with a consumer); the segment is
    deleted when it reaches 0. ``ready``/``ready_bytes``: records still only on disk, after the
    cursor. ``end``: offset past the last record, None while the segment is being written.
    ``recovered``: from before the last open (skip transient and acked records when reading).
    """

    __slots__ = ("id", "live", "ready", "ready_bytes", "end", "recovered")

    def __init__(self, seg_id: int, end: int | None = None, recovered: bool = False) -> None:
        self.id = seg_id
        self.live = 0
        self.ready = 0
        self.ready_bytes = 0
        self.end = end
        self.recovered = recovered

    def __repr__(self) -> str:
        return (f"Seg({self.id}, live={self.live}, ready={self.ready}, "
                f"ready_bytes={self.ready_bytes}, end={self.end}, recovered={self.recovered})")


def unlink_segment_files(directory: Path, seg_id: int,
                         sink: ReplicationSink | None = None) -> None:
    """Remove a segment then its sidecars (in that order: a crash in between leaves orphan
    sidecars, which recovery deletes, never a segment without its acks)."""
    for name in (segment_name(seg_id), index_name(seg_id), ack_name(seg_id)):
        unlink(directory / name, sink)


def _segment_stats(directory: Path, seg_id: int, sink: ReplicationSink | None) -> SegmentStats:
    path = directory / segment_name(seg_id)
    stats = read_index(directory, seg_id)
    if stats is not None:
        with open(path, "rb") as f:
            header = f.read(FILE_HEADER_SIZE)
            size = os.fstat(f.fileno()).st_size
        if check_header(header, path) and stats.end == size:
            return stats
    result = scan(path)
    stats = result.stats
    if result.torn:
        log.warning("%s: truncating %d bytes after offset %d (%s)", path,
                    result.file_size - stats.end, stats.end, result.error)
        os.truncate(path, stats.end)
        if sink is not None:
            sink.truncate(str(path), stats.end)
    if stats.end:
        write_index(directory, seg_id, stats, sink)
    return stats


def recover(directory: str | os.PathLike[str],
            sink: ReplicationSink | None = None) -> tuple[list[Seg], int]:
    """Scan ``directory``; return the segments with ready messages (ascending) and the next
    free segment id. Changes to files are told to ``sink``."""
    directory = Path(directory)
    seg_ids: list[int] = []
    others: dict[int, list[str]] = {}
    max_id = 0
    for name in os.listdir(directory):
        seg_id = file_id(name)
        if seg_id is None:
            continue
        max_id = max(max_id, seg_id)
        if name.endswith(".seg"):
            seg_ids.append(seg_id)
        else:
            others.setdefault(seg_id, []).append(name)
    for seg_id, names in others.items():
        if seg_id not in seg_ids:
            for name in names:
                os.unlink(directory / name)
                if sink is not None:
                    sink.delete(str(directory / name))
    segs: list[Seg] = []
    for seg_id in sorted(seg_ids):
        stats = _segment_stats(directory, seg_id, sink)
        ready = ready_bytes = 0
        if stats.persistent_count:
            acks = read_acks(directory, seg_id, stats.end, sink=sink)
            ready = stats.persistent_count - acks.persistent_count
            ready_bytes = max(0, stats.persistent_bytes - acks.persistent_bytes)
        if ready <= 0:
            unlink_segment_files(directory, seg_id, sink)
            continue
        seg = Seg(seg_id, end=stats.end, recovered=True)
        seg.live = seg.ready = ready
        seg.ready_bytes = ready_bytes
        segs.append(seg)
    return segs, max_id + 1
