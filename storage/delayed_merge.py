"""Merging a ``delayed.DelayStore``'s sorted runs in the background (a mixin of the store).

Every full memtable becomes a run, so a store holding many messages would collect many runs
(1M held messages: ~60; 10M: ~600), each costing a file, a block of entries in RAM and a head
in the routing heap. Runs are merged by size tiers: a run of at most ``memtable`` keys is tier
0, of at most ``memtable * fanin`` tier 1, and so on; when a tier holds ``fanin`` runs, the
oldest ``fanin`` of them are merged into one run of the next tier. So the count of runs stays
below ``fanin`` per tier (a few dozen for 10M messages) and each key is rewritten once per
tier.

A merge runs on the event loop in steps of ``STEP`` keys (one per loop turn: routing and
publishing go on in between), reading its sources a block at a time and appending its output
(``delayed_runs``' merged format, also told to the replication sink): RAM stays at one block
per source plus one step's output, whatever the sizes. Keys at or below the durable watermark
are dropped (routed for good).

Invariants:
- The sources stay in use for routing, and on disk, until the merged run is durable (fsynced
  with its directory entry by the group commit); then it takes their place and they are
  deleted. A crash before that leaves a merged run without its footer, which recovery deletes;
  after, recovery deletes any source left over (the footer lists them). Never a key lost.
- At most one merge per store at a time; a source is not deleted by ``_collect`` meanwhile.
- Without a running event loop (unit tests) nothing merges by itself: ``merge_now()``.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import zlib
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from .delayed_runs import ENTRY, MERGED_MAGIC, NONE, Item, Key, Run, merged_footer, run_name
from .sync import DirectoryHandle, FdFile, GroupCommit

if TYPE_CHECKING:
    from .replication import ReplicationSink

log = logging.getLogger("storage.delayed")

FANIN = 16
STEP = 4096  # keys per loop turn


def tier(count: int, memtable: int, fanin: int) -> int:
    level, limit = 0, max(1, memtable)
    while count > limit:
        limit *= fanin
        level += 1
    return level


def _entries(run: Run) -> Iterator[Item]:
    while (item := run.head()) is not None:
        yield item
        run.advance()


class MergedRunWriter(FdFile):
    """The output of a merge: appended to, a ``Flushable`` for the group commit."""

    def __init__(self, path: Path, sink: ReplicationSink | None) -> None:
        self.path = path
        self.sink = sink
        self.size = 0
        self.crc = 0
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self.append(MERGED_MAGIC, checked=False)

    def append(self, data: bytes, checked: bool = True) -> None:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], self.size + done)
        if self.sink is not None:
            self.sink.append(str(self.path), self.size, data)
        self.size += len(data)
        if checked:
            self.crc = zlib.crc32(data, self.crc)


class Merge:
    """One merge of ``sources`` into run ``run_id``, a ``step`` at a time."""

    def __init__(self, directory: Path, run_id: int, sources: list[Run],
                 floor: Callable[[], Key], sink: ReplicationSink | None) -> None:
        self.run_id = run_id
        self.sources = sources
        self.path = directory / run_name(run_id)
        self._floor = floor
        self.readers = readers = [Run(s.path, s.run_id, s.count, s.covers, s.last, s.base)
                                  for s in sources]
        # the next id must stay above every id written, routed ones included
        self.max_id = max(s.max_id for s in sources)
        for reader in readers:
            reader.skip_to(floor())
        self._keys = heapq.merge(*(_entries(r) for r in readers))
        self.covers = max(s.covers for s in sources)
        self.count = 0
        self.last: Key = NONE
        self.done = False  # the footer is written; durable, it replaces its sources
        self.writer = MergedRunWriter(self.path, sink)

    def step(self, budget: int = STEP) -> bool:
        """Merge up to ``budget`` keys; True once the run is complete (footer written)."""
        if self.done:
            return True
        floor = self._floor()
        out: list[bytes] = []
        taken = 0
        for due, ident, position in islice(self._keys, budget):
            taken += 1
            if (due, ident) <= floor:
                continue  # routed for good
            out.append(ENTRY.pack(due, ident, position >> 32, position & 0xFFFF_FFFF))
            self.last = (due, ident)
        if out:
            self.writer.append(b"".join(out))
            self.count += len(out)
        if taken == budget:
            return False
        self.writer.append(merged_footer([s.run_id for s in self.sources], self.count,
                                         self.covers, self.max_id, self.writer.crc),
                           checked=False)
        self.done = True
        return True

    def result(self) -> Run:
        return Run(self.path, self.run_id, self.count, self.covers, self.last,
                   len(MERGED_MAGIC), self.max_id)

    def abandon(self) -> None:
        self.writer.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return
        if self.writer.sink is not None:
            self.writer.sink.delete(str(self.path))


class Merging:
    """The store's side (``DelayStore`` mixes it in)."""

    directory: Path
    durable_watermark: Key
    watermark: Key
    _runs: list[Run]
    _run_heap: list[tuple[float, int, int]]
    _memtable_cap: int
    _next_run: int
    _closed: bool
    _gc: GroupCommit | None
    _dirh: DirectoryHandle
    _sink: ReplicationSink | None
    _merge: Merge | None
    _merge_scheduled: bool
    _fanin: int

    def _unlink(self, *names: str) -> None: ...
    def _rebuild_run_heap(self) -> None: ...

    @property
    def merging(self) -> bool:
        return self._merge is not None

    def _maybe_merge(self, schedule: bool = True) -> bool:
        """Start a merge when a tier has ``fanin`` runs, stepped on the running loop (with
        ``schedule``; without a loop nothing starts); True when one is under way."""
        loop = None
        if schedule:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return False  # no loop: merge_now()
        if self._merge is None and not self._closed and self._fanin > 1:
            tiers: dict[int, list[Run]] = {}
            for run in self._runs:
                if run.remaining:
                    tiers.setdefault(tier(run.count, self._memtable_cap, self._fanin),
                                     []).append(run)
            full = [runs for _, runs in sorted(tiers.items()) if len(runs) >= self._fanin]
            if full:
                sources = sorted(full[0], key=lambda r: r.run_id)[:self._fanin]
                run_id = self._next_run
                self._next_run += 1
                self._merge = Merge(self.directory, run_id, sources,
                                    lambda: self.durable_watermark, self._sink)
        merge = self._merge
        if merge is not None and loop is not None and not merge.done and \
                not self._merge_scheduled:
            self._merge_scheduled = True
            loop.call_soon(self._merge_turn)
        return self._merge is not None

    def _merge_turn(self) -> None:
        self._merge_scheduled = False
        merge = self._merge
        if merge is None or self._closed or merge.done:
            return
        if merge.step():
            self._merged(merge)
        else:
            self._maybe_merge()  # the next step, next turn

    def merge_now(self) -> None:
        """Run every merge due to completion, here (tests; no event loop)."""
        while self._maybe_merge(schedule=False):
            merge = self._merge
            assert merge is not None
            if not merge.done:
                while not merge.step():
                    pass
                self._merged(merge)
            if self._gc is not None:
                self._gc.flush_now()
            if self._merge is merge:
                break  # not durable: try again later

    def _merged(self, merge: Merge) -> None:
        """The merged run is complete: make it durable, then put it in its sources' place."""
        gc = self._gc
        if gc is None:
            merge.writer.close()
            self._install(merge, True)
            return
        gc.touch(merge.writer)
        gc.handoff(merge.writer)
        merge.writer.close()
        gc.touch(self._dirh)
        gc.when_durable(lambda ok: self._install(merge, ok))

    def _install(self, merge: Merge, ok: bool) -> None:
        if self._merge is not merge or self._closed:
            return
        self._merge = None
        if not ok:
            log.error("%s: merged run %s could not be made durable: kept the %d runs",
                      self.directory, merge.path.name, len(merge.sources))
            merge.abandon()
            return
        replaced = {id(run) for run in merge.sources}
        self._runs = [run for run in self._runs if id(run) not in replaced]
        run = merge.result()
        run.skip_to(self.watermark)
        if run.last <= self.durable_watermark:
            self._unlink(run.path.name)
        else:
            self._runs.append(run)
        self._rebuild_run_heap()
        for source in merge.sources:
            self._unlink(source.path.name)
        log.debug("%s: merged %d runs into %s (%d keys)", self.directory, len(merge.sources),
                  merge.path.name, merge.count)
        self._maybe_merge()

    def _abandon_merge(self) -> None:
        merge, self._merge = self._merge, None
        if merge is not None:
            merge.abandon()
