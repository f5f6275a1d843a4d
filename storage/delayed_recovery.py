"""Recovery of a ``delayed.DelayStore`` from its directory (a mixin of the store: it fills the
store's memtable, runs and segment table; formats in ``delayed``'s head).

Every record before the newest run's ``covers`` position is in a run; the rest of the log is
scanned into the memtable (persistent messages past the durable watermark only). A merged run
replaces its sources: those a crash left behind are deleted, and so is a merged run whose
writing did not finish (its sources are all there). When any other run is damaged, all runs
are dropped and the whole log is scanned: slower, never lossy. Segments
whose every key is at or below the watermark are deleted; a torn segment tail is cut off.
"""

from __future__ import annotations

import heapq
import logging
import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from .delayed_runs import (
    NONE,
    PARTIAL,
    WATERMARK,
    Item,
    Key,
    Run,
    RunInfo,
    dmx_name,
    pread,
    read_run_info,
    run_name,
    unpack_mark,
)
from .record import F_PERSISTENT, RecordError
from .segment import FILE_HEADER_SIZE, SegmentReader, check_header, segment_name

if TYPE_CHECKING:
    from .replication import ReplicationSink

log = logging.getLogger("storage.delayed")


class Recovery:
    directory: Path
    watermark: Key
    durable_watermark: Key
    next_id: int
    _sink: ReplicationSink | None
    _heap: list[Item]
    _appended: list[Item]
    _seg_max: dict[int, Key]
    _count: int
    _scanned_id: int
    _memtable_cap: int
    _next_seg: int
    _next_run: int

    def _unlink(self, *names: str) -> None: ...
    def _add_run(self, run: Run) -> None: ...
    def _flush_memtable(self, covers: tuple[int, int] | None = None) -> None: ...
    def _write_dmx(self, seg_id: int, key: Key) -> None: ...

    def _recover(self) -> None:
        directory = self.directory
        try:
            mark = unpack_mark((directory / WATERMARK).read_bytes())
        except OSError:
            mark = None
        self.watermark = self.durable_watermark = mark or NONE
        names = os.listdir(directory)
        seg_ids = sorted(int(n[:-4]) for n in names if n.endswith(".seg") and n[:-4].isdigit())
        run_ids = sorted(int(n[4:]) for n in names if n.startswith("run-") and n[4:].isdigit())
        for name in names:
            stale = name.endswith(".tmp") or (name.endswith(".dmx") and (
                not name[:-4].isdigit() or int(name[:-4]) not in seg_ids))
            if stale:
                os.unlink(directory / name)
        self._next_seg = (seg_ids[-1] + 1) if seg_ids else 1
        self._next_run = (run_ids[-1] + 1) if run_ids else 1
        max_id = max(self.watermark[1], 0)
        runs: list[Run] = []
        infos = {run_id: read_run_info(directory / run_name(run_id)) for run_id in run_ids}
        # a merged run replaces its sources; a crash may have left them (or half a merge)
        replaced = {source for info in infos.values() if isinstance(info, RunInfo)
                    for source in info.sources}
        intact = True
        for run_id in run_ids:
            info = infos[run_id]
            if run_id in replaced or info == PARTIAL:
                self._unlink(run_name(run_id))
                continue
            if not isinstance(info, RunInfo):
                intact = False
                break
            runs.append(Run(directory / run_name(run_id), run_id, info.entries, info.covers,
                            info.last, info.base, info.max_id))
            max_id = max(max_id, info.max_id)
        if not intact:  # a run was cut by a crash: start over from the log itself
            log.warning("%s: a sorted run is damaged, rebuilding the index from the log",
                        directory)
            for run_id in run_ids:
                self._unlink(run_name(run_id))
            runs = []
        # Every record before ``covers`` is in a run; the rest is scanned into the memtable.
        covers = max((run.covers for run in runs), default=(0, 0))
        for seg_id in seg_ids:
            key = None
            if seg_id < covers[0]:  # in the runs: only its largest key is wanted
                try:
                    key = unpack_mark((directory / dmx_name(seg_id)).read_bytes())
                except OSError:
                    pass
                if key is None:
                    key = self._scan(seg_id, -1)
            else:
                key = self._scan(seg_id, covers[1] if seg_id == covers[0] else 0)
            if key is None or key <= self.durable_watermark:
                self._unlink(segment_name(seg_id), dmx_name(seg_id))
                continue
            self._seg_max[seg_id] = key
        max_id = max(max_id, self._scanned_id)  # ids grow in append order: scans saw the last
        for run in runs:
            if run.last <= self.durable_watermark:
                self._unlink(run.path.name)
                continue
            run.skip_to(self.watermark)
            self._count += run.remaining
            self._add_run(run)
        self.next_id = max_id + 1
        if self._appended:  # what the scan found, as a run: the next recovery need not scan
            self._flush_memtable((self._next_seg, 0))

    def _scan(self, seg_id: int, start: int) -> Key | None:
        """Scan a segment: its largest key; records at or after ``start`` (a position, -1:
        none) that are not routed go to the memtable. A torn tail is cut off."""
        path = self.directory / segment_name(seg_id)
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        largest: Key | None = None
        try:
            size = os.fstat(fd).st_size
            if not check_header(os.pread(fd, FILE_HEADER_SIZE, 0), path):
                return None
            reader = SegmentReader(partial(pread, fd), FILE_HEADER_SIZE, 256 * 1024)
            valid = FILE_HEADER_SIZE
            while True:
                try:
                    record = reader.next(size)
                except RecordError as exc:
                    log.warning("%s: truncating %d bytes after offset %d (%s)", path,
                                size - valid, valid, exc)
                    break
                if record is None:
                    break
                position = reader.record_offset
                valid = reader.offset
                _, flags, ident, due, *_rest = record
                key = (due, ident)
                self._scanned_id = max(self._scanned_id, ident)
                if largest is None or key > largest:
                    largest = key
                if start >= 0 and position >= start and key > self.durable_watermark and \
                        flags & F_PERSISTENT:
                    item = (due, ident, (seg_id << 32) | position)
                    heapq.heappush(self._heap, item)
                    self._appended.append(item)
                    self._count += 1
                    if len(self._appended) >= self._memtable_cap:
                        self._flush_memtable((seg_id, valid))
            if valid < size:
                os.ftruncate(fd, valid)
                if self._sink is not None:
                    self._sink.truncate(str(path), valid)
        finally:
            os.close(fd)
        if largest is not None:
            self._write_dmx(seg_id, largest)
        return largest


