"""``DelayStore``: the messages a delayed-message exchange holds until their time, on disk.

A message is identified by ``key = (due, id)``: ``due`` its wall-clock time (seconds), ``id``
a number that only grows. Messages are routed in key order, so everything already routed is
``<= W``, the watermark (the last key routed). Files::

    NNNNNNNN.seg   the messages, appended by SegmentWriter (record seq = id, the f64 = due)
    NNNNNNNN.dmx   of a sealed segment: its largest key (a segment goes once that is routed)
    run-NNNNNNNN   a sorted run: [magic][count u32][covers: segment u32, position u32]
                   [largest id u64][crc u32] then ``count`` entries [due f64][id u64]
                   [seg u32][position u32]; a merged run has its header as a footer
                   (``delayed_runs``)
    WATERMARK      [due f64][id u64][crc u32]: W, written once what it covers is durable

Per-message bookkeeping lives on disk, not in RAM: new keys collect in a small memtable (at
most ``memtable`` of them) that is written out sorted as a run; routing takes the smallest key
of the memtable and of every run's head (each run read a block at a time). Runs are merged
in the background by size tiers (``delayed_merge``), so there are a few dozen of them for 10M
messages held, not hundreds. RAM stays flat (about ``memtable`` tuples plus one block per run
and per merge source) whatever the number of messages held.

Invariants:
- A run holds every message appended between the previous run's ``covers`` position and its
  own (some may be routed already: readers skip keys ``<= W``), so the runs plus a scan of the
  log after the newest ``covers`` name every message not yet routed. Recovery uses the runs
  only when they are all intact; otherwise it rescans the whole log (never loses a message).
- ``W`` reaches the disk only after the routed copies are durable (``when_durable``); a crash
  in between routes those messages again (at least once, never lost). A segment or run is
  deleted only when its largest key is at or below the durable ``W``.
- Transient messages are appended too (RAM stays flat) but are not routed after a restart.
- Loop-thread only, except that ``when_durable`` callbacks also run on the loop.
"""

from __future__ import annotations

import heapq
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .delayed_merge import FANIN, Merge, Merging
from .delayed_recovery import Recovery
from .delayed_runs import (
    NONE,
    OFFSET_MASK,
    WATERMARK,
    Item,
    Key,
    MarkFile,
    Run,
    dmx_name,
    pack_mark,
    pread,
    run_name,
    write_run,
)
from .record import F_EXPIRES, F_PERSISTENT, RecordError
from .replication import unlink
from .segment import (
    DEFAULT_WRITE_BUFFER,
    SegmentReader,
    SegmentWriter,
    Source,
    close_on_shutdown,
    segment_name,
)
from .sync import DirectoryHandle, GroupCommit

if TYPE_CHECKING:
    from .replication import ReplicationSink

log = logging.getLogger(__name__)

ROLL_SIZE = 8 * 1024 * 1024
MEMTABLE = 16384

__all__ = ["WATERMARK", "DelayStore", "DelayedMessage", "MemoryDelayStore", "run_name"]


class DelayedMessage(NamedTuple):
    due: float
    id: int
    persistent: bool
    exchange: str
    routing_key: str
    properties: bytes
    body: bytes


class DelayStore(Recovery, Merging):
    def __init__(self, directory: str | os.PathLike[str], *, durable: bool = True,
                 group_commit: GroupCommit | None = None, clock: Callable[[], float] = time.time,
                 memtable: int = MEMTABLE, roll_size: int = ROLL_SIZE,
                 write_buffer: int = DEFAULT_WRITE_BUFFER,
                 sink: ReplicationSink | None = None, fanin: int = FANIN) -> None:
        self.directory = Path(directory)
        self.durable = durable
        self._gc = group_commit
        self._clock = clock
        self._memtable_cap = memtable
        self._roll = roll_size
        self._write_buffer = write_buffer
        self._sink = sink if durable else None
        self.last_seq = 0  # QueueStore compatibility
        if not durable and self.directory.exists():
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._dirh = DirectoryHandle(self.directory)
        self._writer: SegmentWriter | None = None
        self._seg_max: dict[int, Key] = {}    # sealed segment id -> its largest key
        self._open_max: Key = NONE            # the largest key of the segment being written
        self._heap: list[Item] = []           # memtable, for routing
        self._appended: list[Item] = []       # memtable, for the next run
        self._runs: list[Run] = []
        self._run_heap: list[tuple[float, int, int]] = []  # (due, id, run index) of run heads
        self._next_run = 1
        self._next_seg = 1
        self.next_id = 1
        self.first_id = 1        # ids below were appended before this open
        self.watermark: Key = NONE
        self.durable_watermark: Key = NONE
        self._count = 0
        self._scanned_id = 0     # recovery: the largest id a segment scan saw
        self._fds: dict[int, int] = {}
        self._closed = False
        self._merge: Merge | None = None  # delayed_merge: runs merged in the background
        self._merge_scheduled = False
        self._merge_check = True  # look for runs to merge once a loop runs
        self._fanin = 0  # no merge while recovery is still collecting the runs
        self._mark = MarkFile(self.directory / WATERMARK)
        if durable:
            self._recover()
        self._fanin = fanin
        self.first_id = self.next_id

    # ---- state -------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    @property
    def segment_count(self) -> int:
        return len(self._seg_max) + (self._writer is not None)

    @property
    def run_count(self) -> int:
        return len(self._runs)

    # ---- adding ------------------------------------------------------------------------
    def add(self, due: float, exchange_raw: bytes, routing_key_raw: bytes, props: bytes,
            body: bytes, persistent: bool) -> Key:
        """Hold a message until ``due``; its key (a due in the past becomes just after the
        last key routed, so it still goes out in order)."""
        if due <= self.watermark[0]:
            due = self.watermark[0]
        ident = self.next_id
        self.next_id += 1
        writer = self._writer
        if writer is None or writer.size >= self._roll:
            writer = self._roll_writer()
        flags = F_EXPIRES | (F_PERSISTENT if persistent else 0)
        position = writer.append(ident, flags, due, exchange_raw, routing_key_raw, props, body)
        item = (due, ident, (writer.seg_id << 32) | position)
        heapq.heappush(self._heap, item)
        self._appended.append(item)
        if (due, ident) > self._open_max:
            self._open_max = (due, ident)
        self._count += 1
        if self._gc is not None:
            self._gc.touch(writer)
        if len(self._appended) >= self._memtable_cap:
            self._flush_memtable()
        return due, ident

    def _roll_writer(self) -> SegmentWriter:
        old = self._writer
        if old is not None:
            self._seal(old)
        writer = SegmentWriter(self.directory, self._next_seg, self._write_buffer, self._sink)
        self._next_seg += 1
        self._writer = writer
        if self._gc is not None:
            self._gc.touch(self._dirh)
        return writer

    def _seal(self, writer: SegmentWriter) -> None:
        if self._gc is not None:
            self._gc.handoff(writer)
        writer.flush()
        writer.close()
        key, self._open_max = self._open_max, NONE
        self._seg_max[writer.seg_id] = key
        self._write_dmx(writer.seg_id, key)
        self._writer = None

    def _write_dmx(self, seg_id: int, key: Key) -> None:
        data = pack_mark(key)
        path = self.directory / dmx_name(seg_id)
        path.write_bytes(data)
        if self._sink is not None:
            self._sink.rewrite(str(path), data)

    def _flush_memtable(self, covers: tuple[int, int] | None = None) -> None:
        """Write the keys appended since the last run as a new sorted run; ``covers``: the
        log position every record before which is now in a run (default: the writer's)."""
        items = sorted(self._appended)
        if covers is None:
            writer = self._writer
            covers = (writer.seg_id, writer.size) if writer is not None else (self._next_seg, 0)
        run_id = self._next_run
        self._next_run += 1
        path = self.directory / run_name(run_id)
        data = write_run(path, items, covers)
        if self._sink is not None:
            self._sink.rewrite(str(path), data)
        run = Run(path, run_id, len(items), covers, items[-1][:2] if items else NONE,
                  max_id=max((ident for _, ident, _ in items), default=0))
        run.skip_to(self.watermark)
        self._appended = []
        self._heap = []  # every key in it is in the run now
        self._add_run(run)
        self._maybe_merge()

    def _add_run(self, run: Run) -> None:
        self._runs.append(run)
        head = run.head()
        if head is not None:
            heapq.heappush(self._run_heap, (head[0], head[1], len(self._runs) - 1))

    # ---- routing -----------------------------------------------------------------------
    def next_due(self) -> float | None:
        """When the next message is due (None: nothing held)."""
        key = self._peek()
        return None if key is None else key[0]

    def _peek(self) -> Key | None:
        if self._merge_check:
            self._merge_check = False
            self._maybe_merge()  # what recovery found may be merged now
        self._drop_routed()
        best: Key | None = None
        if self._heap:
            best = self._heap[0][:2]
        if self._run_heap:
            head = self._run_heap[0][:2]
            if best is None or head < best:
                best = head
        return best

    def _drop_routed(self) -> None:
        """Pop heads at or below the watermark (copies already routed)."""
        w = self.watermark
        heap, run_heap = self._heap, self._run_heap
        while heap and heap[0][:2] <= w:
            heapq.heappop(heap)
        while run_heap and run_heap[0][:2] <= w:
            self._advance_run(run_heap[0][2])

    def _advance_run(self, index: int) -> Item:
        heapq.heappop(self._run_heap)
        run = self._runs[index]
        item = run.head()
        assert item is not None
        run.advance()
        head = run.head()
        if head is not None:
            heapq.heappush(self._run_heap, (head[0], head[1], index))
        return item

    def pop_due(self, now: float | None = None) -> DelayedMessage | None:
        """The next message whose time has come, in key order; None when none is due.

        A transient message held before the last restart is dropped, not returned."""
        now = self._clock() if now is None else now
        while True:
            key = self._peek()
            if key is None or key[0] > now:
                return None
            if self._heap and self._heap[0][:2] == key:
                item = heapq.heappop(self._heap)
            else:
                item = self._advance_run(self._run_heap[0][2])
            self.watermark = key
            self._count -= 1
            message = self._read(item)
            if message is None:
                continue
            if not message.persistent and message.id < self.first_id:
                continue  # transient: not kept over a restart
            return message

    def _read(self, item: Item) -> DelayedMessage | None:
        seg_id, position = item[2] >> 32, item[2] & OFFSET_MASK
        writer = self._writer
        try:
            source: Source
            if writer is not None and writer.seg_id == seg_id:
                source, limit = writer.read, writer.size
            else:
                fd = self._fd(seg_id)
                source, limit = partial(pread, fd), os.fstat(fd).st_size
            record = SegmentReader(source, position, 4096).next(limit)
        except (OSError, RecordError) as exc:
            log.error("%s: delayed message %d unreadable: %s", self.directory, item[1], exc)
            return None
        if record is None:
            return None
        _, flags, ident, due, exchange, routing_key, props, body, _ = record
        return DelayedMessage(due, ident, bool(flags & F_PERSISTENT), exchange, routing_key,
                              props, body)

    def _fd(self, seg_id: int) -> int:
        fd = self._fds.get(seg_id)
        if fd is None:
            if len(self._fds) >= 4:
                old_id, old_fd = next(iter(self._fds.items()))
                del self._fds[old_id]
                os.close(old_fd)
            fd = self._fds[seg_id] = os.open(self.directory / segment_name(seg_id),
                                             os.O_RDONLY | os.O_CLOEXEC)
        return fd

    def routed(self) -> None:
        """What was routed so far is handed to its queues: once that is durable, record the
        watermark and delete what it covers. Call after a batch of ``pop_due``."""
        key = self.watermark
        if key == self.durable_watermark:
            return
        if self._gc is None:
            self._set_durable(key, True)
            return
        self._gc.when_durable(lambda ok: self._set_durable(key, ok))

    def _set_durable(self, key: Key, ok: bool) -> None:
        if not ok or self._closed or key <= self.durable_watermark:
            return
        self.durable_watermark = key
        self._mark.set(key)
        if self._sink is not None:  # followers: what is routed for good is not routed again
            self._sink.rewrite(str(self._mark.path), pack_mark(key))
        if self._gc is not None:
            self._gc.touch(self._mark)
        else:
            self._mark.flush()
        self._collect(key)

    def _collect(self, key: Key) -> None:
        """Delete the sealed segments and the runs whose every key is routed."""
        for seg_id, largest in list(self._seg_max.items()):
            if largest <= key:
                del self._seg_max[seg_id]
                fd = self._fds.pop(seg_id, None)
                if fd is not None:
                    os.close(fd)
                self._unlink(segment_name(seg_id), dmx_name(seg_id))
        merging = {id(run) for run in self._merge.sources} if self._merge is not None else set()
        done = [run for run in self._runs if run.last <= key and id(run) not in merging]
        if done:
            for run in done:
                self._unlink(run.path.name)
            gone = {id(run) for run in done}
            self._runs = [run for run in self._runs if id(run) not in gone]
            self._rebuild_run_heap()

    def _rebuild_run_heap(self) -> None:
        self._run_heap = []
        for i, run in enumerate(self._runs):
            head = run.head()
            if head is not None:
                heapq.heappush(self._run_heap, (head[0], head[1], i))

    def _unlink(self, *names: str) -> None:
        for name in names:
            unlink(self.directory / name, self._sink)

    # ---- lifetime ----------------------------------------------------------------------
    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()
        self._mark.flush()

    def close(self) -> None:
        """Shutdown: flush (the group commit fsyncs what was handed off)."""
        if self._closed:
            return
        self._abandon_merge()  # a half-written merged run: its sources are all there
        self._fanin = 0
        # what is not durably routed yet, as a run: the next open then has nothing to scan
        self._appended = [i for i in self._appended if i[:2] > self.durable_watermark]
        if self._appended:
            try:
                self._flush_memtable()
            except OSError as exc:
                log.error("%s: could not write the last run: %s", self.directory, exc)
        self._closed = True
        writer = self._writer
        if writer is not None:
            close_on_shutdown(writer, self._gc)
        if self._gc is not None:
            self._gc.handoff(self._mark)
            self._gc.handoff(self._dirh)
        self._mark.close()
        self._dirh.close()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._writer = None

    def delete(self) -> None:
        self._abandon_merge()
        self._closed = True
        for f in (self._writer, self._mark, self._dirh):
            if f is not None:
                if self._gc is not None:
                    self._gc.discard(f)
                f.close()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._writer = None
        self._heap, self._appended, self._runs, self._run_heap = [], [], [], []
        self._count = 0
        shutil.rmtree(self.directory, ignore_errors=True)
        if self._sink is not None:
            self._sink.delete(str(self.directory))

    def __iter__(self) -> Iterator[DelayedMessage]:
        return iter(())

class MemoryDelayStore:
    """The same contract in RAM, for a delayed exchange without a data directory (tests)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, DelayedMessage]] = []
        self.next_id = 1
        self.watermark: Key = NONE
        self.last_seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, due: float, exchange_raw: bytes, routing_key_raw: bytes, props: bytes,
            body: bytes, persistent: bool) -> Key:
        due = max(due, self.watermark[0])
        ident = self.next_id
        self.next_id += 1
        message = DelayedMessage(due, ident, persistent,
                                 exchange_raw[1:].decode(), routing_key_raw[1:].decode(),
                                 props, body)
        heapq.heappush(self._heap, (due, ident, message))
        return due, ident

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float | None = None) -> DelayedMessage | None:
        now = self._clock() if now is None else now
        if not self._heap or self._heap[0][0] > now:
            return None
        due, ident, message = heapq.heappop(self._heap)
        self.watermark = (due, ident)
        return message

    def routed(self) -> None:
        """Nothing to record."""

    def close(self) -> None:
        """Nothing to flush."""

    def delete(self) -> None:
        self._heap.clear()
