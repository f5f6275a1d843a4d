"""Which store a queue gets, and the lifetime of the data directory and group commit.

- durable, non-exclusive queue: a SegmentQueueStore in its own directory under the data dir,
  recovered on open, fsynced by the broker-wide GroupCommit;
- any other queue: a non-durable SegmentQueueStore in a scratch directory (made only when the
  queue first pages out);
- x-max-priority: a PriorityQueueStore of one of those per priority (sub-directories for durable
  queues, reopened eagerly so recovered messages come back), all levels sharing one RAM window;
- x-queue-type stream: a StreamLog in the queue's directory (streams are always durable).

Once ``close`` has begun nothing makes a store any more, nor a part of one (a priority's
sub-store) nor an exchange's store: ``StoreClosed`` reaches the caller (a management or CLI
request during the shutdown) before anything is written, and every queue store that exists is
one ``close`` closes.

In cluster mode the leader's stores get a replication ``sink`` (``storage.replication``): every
durable store, the data directory and the definitions document tell it their changes. The data
directory is then the cluster's (``owns_data=False``): it stays locked after ``close``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from broker.core.messages import priority_of
from storage import definitions_file
from storage.datadir import DataDir
from storage.delayed import DelayStore
from storage.keycache import KeyCache
from storage.message_store import SegmentQueueStore
from storage.priority import PriorityQueueStore
from storage.store import QueueStore, StoreClosed
from storage.stream import DEFAULT_SEGMENT_SIZE, StreamLog
from storage.sync import GroupCommit
from storage.window import Window

if TYPE_CHECKING:
    from storage.replication import ReplicationSink

log = logging.getLogger("broker.storage")


class Stores:
    def __init__(self, data_dir: str | DataDir, clock: Callable[[], float],
                 sink: ReplicationSink | None = None) -> None:
        self.owns_data = not isinstance(data_dir, DataDir)
        self.data = DataDir(data_dir) if not isinstance(data_dir, DataDir) else data_dir
        self.data.sink = sink
        self.sink = sink
        self.clock = clock
        self.group: GroupCommit | None = None
        self._saving = False
        self._dirty = False
        self._snapshots = 0  # definitions snapshots taken (each one saved in turn)
        self._pending = False  # a save is scheduled but its snapshot not taken yet
        self._after_save: list[tuple[int, Callable[[], None]]] = []  # (snapshot, callback)
        self._snapshot: Callable[[], dict] | None = None
        self._mark: Callable[[], int] | None = None
        #: ``mark()`` read when the last definitions save was done (see ``set_mark``)
        self.saved_mark = 0
        self.closed = False

    def _check_open(self) -> None:
        if self.closed:
            raise StoreClosed("the node is stopping: its queue stores are closed")

    def start(self, loop: asyncio.AbstractEventLoop, snapshot: Callable[[], dict]) -> None:
        self.group = GroupCommit(loop)
        self._snapshot = snapshot

    def load_definitions(self) -> dict:
        return definitions_file.load(self.data.definitions_path)

    # ---- queue stores ------------------------------------------------------------------
    def make(self, vhost: str, name: str, arguments: dict, durable: bool) -> QueueStore:
        self._check_open()
        mode = arguments.get("x-queue-mode")
        window = Window(mode if mode in ("default", "lazy") else "default")
        max_priority = arguments.get("x-max-priority")
        if arguments.get("x-queue-type") == "stream":
            return self._stream(vhost, name, arguments)  # type: ignore[return-value]
        if durable:
            root = self.data.create_queue_dir(vhost, name)
            if isinstance(max_priority, int) and max_priority > 0:
                return self._durable_priority(root, max_priority, window)
            return self._segment(root, window)
        if isinstance(max_priority, int) and max_priority > 0:
            return PriorityQueueStore(max_priority, lambda _p: self._scratch(window), priority_of)
        return self._scratch(window)

    # ---- exchange stores ---------------------------------------------------------------
    def make_exchange(self, vhost: str, name: str, kind: str,
                      durable: bool) -> DelayStore | KeyCache:
        """The delayed exchange's store (in its exchange directory when durable, else in a
        scratch directory: its messages go with it at a restart) or the deduplication
        exchange's disk cache."""
        self._check_open()
        if kind == "x-message-deduplication":
            return KeyCache(path=self.data.create_exchange_dir(vhost, name) / "cache",
                            sink=self.data.sink)
        if durable:
            return DelayStore(self.data.create_exchange_dir(vhost, name), group_commit=self.group,
                              sink=self.data.sink)
        return DelayStore(self.data.scratch_dir(), durable=False)

    def _stream(self, vhost: str, name: str, arguments: dict) -> StreamLog:
        """A stream's log; the queue applies retention from its arguments and policy."""
        self._check_open()
        size = arguments.get("x-stream-max-segment-size-bytes")
        return StreamLog(self.data.create_queue_dir(vhost, name), group_commit=self.group,
                         segment_size=size if isinstance(size, int) and size > 0
                         else DEFAULT_SEGMENT_SIZE, sink=self.data.sink)

    def _segment(self, directory: Path, window: Window, first_seq: int = 0) -> SegmentQueueStore:
        self._check_open()
        return SegmentQueueStore(directory, durable=True, window=window, group_commit=self.group,
                                 clock=self.clock, first_seq=first_seq, sink=self.sink)

    def _scratch(self, window: Window) -> SegmentQueueStore:
        self._check_open()
        return SegmentQueueStore(self.data.scratch_dir(), durable=False, window=window,
                                 clock=self.clock)

    def _durable_priority(self, root: Path, max_priority: int,
                          window: Window) -> PriorityQueueStore:
        existing: dict[int, QueueStore] = {}
        last = 0
        for priority in range(max_priority + 1):
            sub = root / f"p{priority}"
            if sub.is_dir():
                store = self._segment(sub, window, first_seq=last)
                last = store.last_seq
                existing[priority] = store
        return PriorityQueueStore(max_priority, lambda p: self._segment(root / f"p{p}", window),
                                  priority_of, existing)

    # ---- durability --------------------------------------------------------------------
    def set_mark(self, mark: Callable[[], int]) -> None:
        """Cluster mode: ``mark()`` is the replication sink's position. It is read once per
        fsync batch after its writes (``durable_mark`` in its callbacks) and after every
        definitions save (``saved_mark``), so a confirm waits for no later change."""
        assert self.group is not None
        self._mark = self.group.mark = mark
        self.saved_mark = mark()

    @property
    def durable_mark(self) -> int | None:
        """In a ``when_durable`` callback: ``mark()`` as the batch behind it read it."""
        return self.group.durable_mark if self.group is not None else None

    def when_durable(self, callback: Callable[[bool], None]) -> None:
        assert self.group is not None
        self.group.when_durable(callback)

    def when_saved(self, callback: Callable[[], None]) -> None:
        """Call back once every definitions change made so far is saved (at once when
        nothing is pending); later changes are not waited for."""
        if not self._saving:
            callback()
            return
        covering = self._snapshots + (1 if self._pending or self._dirty else 0)
        self._after_save.append((covering, callback))

    def definitions_changed(self) -> None:
        """Save the durable topology soon: once per loop turn, never two writes at once."""
        if self._saving:
            self._dirty = True
            return
        self._saving = self._pending = True
        loop = asyncio.get_running_loop()
        loop.call_soon(self._save, loop)

    def _save(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._snapshot is not None
        doc = self._snapshot()
        self._snapshots += 1
        self._dirty = self._pending = False
        future = loop.run_in_executor(None, definitions_file.save, self.data.definitions_path, doc,
                                      self.sink)
        future.add_done_callback(self._saved)

    def _saved(self, future: asyncio.Future[None]) -> None:
        if future.exception() is not None:
            log.error("could not save definitions: %s", future.exception())
        self._saving = False
        if self._mark is not None:  # the save's rewrite reached the sink before this
            self.saved_mark = self._mark()
        saved = self._snapshots
        waiting = self._after_save
        while waiting and waiting[0][0] <= saved:
            waiting.pop(0)[1]()
        if self._dirty:
            self.definitions_changed()

    def save_now(self) -> None:
        if self._snapshot is not None:
            definitions_file.save(self.data.definitions_path, self._snapshot(), self.sink)

    def write_through(self) -> None:
        group = self.group
        if group is not None and group._flush_only:
            group.write_through()

    async def close(self, stores: list[QueueStore]) -> None:
        """Shutdown: let the running save and fsync batch finish, then close every store,
        fsync what is left and write the topology once more. From the first line on no store
        is made any more, so ``stores`` (taken before the call) are all there are."""
        self.closed = True
        while self._saving:
            await asyncio.sleep(0.01)
        if self.group is not None:
            while self.group._running:
                await asyncio.sleep(0.005)
        for store in stores:
            try:
                store.close()
            except OSError as exc:
                log.error("closing a queue store: %s", exc)
        if self.group is not None:
            self.group.flush_now()
        try:
            self.save_now()
        except OSError as exc:
            log.error("could not save definitions at shutdown: %s", exc)
        waiting, self._after_save = self._after_save, []
        for _, callback in waiting:
            callback()
        if self.owns_data:
            self.data.close()
