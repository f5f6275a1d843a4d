"""Group commit: one fsync per touched file per batch, off the event loop, then the callbacks.

Writers ``touch`` the files they append to; whoever needs durability (a publisher confirm)
registers ``when_durable(callback)``. A batch flushes every touched file's buffer with a plain
``os.write`` on the loop thread, fsyncs duplicates of their descriptors in a thread executor,
then runs on the loop every callback registered before the batch started, with ``ok``.

Invariants:
- A callback runs only after an fsync of every file touched before it was registered (or with
  ``ok=False`` when a write or an fsync failed: disk full, EIO). Failures never raise into
  writers; the files stay registered and usable, and a failed write is retried after
  ``retry_delay``.
- At most one batch is in flight; the next starts as soon as it finishes (or on the next loop
  turn when idle), so callbacks arriving during an fsync share the next one.
- fsync runs on ``os.dup`` copies: a writer may close or unlink its file mid-batch. Before
  closing a file that may be dirty, call ``handoff`` so its data is still covered.
- Without a running event loop nothing happens by itself; ``flush_now()`` runs a batch
  synchronously (unit tests, shutdown).
- ``mark`` (optional, cluster mode: the replication sink's position) is read once per batch,
  after the batch wrote out every buffer; while a batch's callbacks run, ``durable_mark`` is
  that reading: what this batch made durable was told to the sink up to it, and no further
  (later writes need not be waited for).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

Callback = Callable[[bool], None]


class Flushable(Protocol):
    def flush(self) -> None: ...
    def fileno(self) -> int: ...


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a directory's entries durable (a created, renamed or removed name)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FdFile:
    """A file behind one open descriptor, as a ``Flushable`` for the group commit: subclasses
    open ``_fd`` and override ``flush`` when they buffer; ``close`` flushes first and closes
    the descriptor even when that flush fails (the caller sees the error)."""

    __slots__ = ("path", "_fd")

    path: Path
    _fd: int

    def flush(self) -> None:
        """Nothing is buffered."""

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            try:
                self.flush()
            finally:
                os.close(self._fd)
                self._fd = -1


class DirectoryHandle:
    """A directory as a ``Flushable``: touch it after creating a file in it, so the new name is
    fsynced with the data. The descriptor is opened on first use."""

    __slots__ = ("path", "_fd")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self._fd = -1

    def flush(self) -> None:
        """Nothing is buffered."""

    def fileno(self) -> int:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _fsync_all(fds: list[int]) -> OSError | None:
    """Executor side: fsync and close each descriptor; report the last error."""
    error = None
    for fd in fds:
        try:
            os.fsync(fd)
        except OSError as exc:
            error = exc
        finally:
            os.close(fd)
    return error


class GroupCommit:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None,
                 executor: Executor | None = None, retry_delay: float = 0.1) -> None:
        self._loop = loop
        self._executor = executor
        self._retry_delay = retry_delay
        self._sync: dict[Flushable, None] = {}
        self._flush_only: dict[Flushable, None] = {}
        self._orphans: list[int] = []
        self._waiters: list[Callback] = []
        self._running = False
        self._scheduled = False
        self._write_failed = False  # retry the failed flushes after retry_delay
        self._lost_write = False  # a handed-off file could not be written: fail the next batch
        self.batches = 0
        self.fsyncs = 0
        self.errors = 0
        self.mark: Callable[[], int] | None = None
        self.durable_mark: int | None = None

    # ---- writers ----------------------------------------------------------------------
    def touch(self, f: Flushable, sync: bool = True) -> None:
        """``f`` was written to: flush it in the next batch, and fsync it when ``sync``."""
        if sync:
            if f not in self._sync:
                self._sync[f] = None
                self._kick()
        elif f not in self._flush_only:
            self._flush_only[f] = None
            self._kick()

    def handoff(self, f: Flushable) -> None:
        """``f`` is about to be closed: keep what it wrote covered by the next fsync."""
        self._flush_only.pop(f, None)
        if f not in self._sync:
            return
        del self._sync[f]
        try:
            f.flush()
        except OSError as exc:
            log.error("write failed before close: %s", exc)
            self._lost_write = True
        fd = f.fileno()
        if fd >= 0:
            self._orphans.append(os.dup(fd))

    def discard(self, f: Flushable) -> None:
        """``f`` was deleted: nothing of it needs flushing or syncing any more."""
        self._sync.pop(f, None)
        self._flush_only.pop(f, None)

    def when_durable(self, callback: Callback) -> None:
        """Run ``callback(ok)`` on the loop once everything written so far is fsynced."""
        self._waiters.append(callback)
        self._kick()

    @property
    def pending(self) -> bool:
        return bool(self._sync or self._flush_only or self._orphans or self._waiters)

    @property
    def idle(self) -> bool:
        return not self._running and not self.pending

    # ---- batches ----------------------------------------------------------------------
    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                return None
        return self._loop

    def _kick(self, delay: float = 0.0) -> None:
        if self._scheduled or self._running:
            return
        loop = self._running_loop()
        if loop is None or loop.is_closed():
            return
        self._scheduled = True
        if delay:
            loop.call_later(delay, self._start)
        else:
            loop.call_soon(self._start)

    def _collect(self) -> tuple[list[int], list[Callback], bool, int | None]:
        """Loop side: write out buffers, duplicate descriptors to fsync, take the waiters and
        read the mark."""
        ok = not self._lost_write
        self._lost_write = self._write_failed = False
        files, self._sync = self._sync, {}
        fds, self._orphans = self._orphans, []
        for f in list(self._flush_only):
            try:
                f.flush()
            except OSError as exc:
                log.warning("write failed (will retry): %s", exc)
                self._write_failed = True
                continue
            del self._flush_only[f]
        for f in files:
            try:
                f.flush()
            except OSError as exc:
                log.error("write failed: %s", exc)
                ok = False
                self._write_failed = True
                self._sync[f] = None  # still dirty: retried after retry_delay
                continue
            try:
                fd = f.fileno()
                if fd >= 0:
                    fds.append(os.dup(fd))
            except OSError as exc:  # e.g. the directory was deleted: nothing left to sync
                log.debug("nothing to sync: %s", exc)
        waiters, self._waiters = self._waiters, []
        self.batches += 1
        self.fsyncs += len(fds)
        return fds, waiters, ok, self.mark() if self.mark is not None else None

    def _start(self) -> None:
        self._scheduled = False
        loop = self._loop
        if self._running or loop is None:
            return
        fds, waiters, ok, mark = self._collect()
        if not fds:
            self._finish(waiters, ok, mark)
            return
        self._running = True
        future = loop.run_in_executor(self._executor, _fsync_all, fds)
        future.add_done_callback(lambda fut: self._done(fut, waiters, ok, mark))

    def _done(self, future: asyncio.Future[OSError | None], waiters: list[Callback],
              ok: bool, mark: int | None) -> None:
        self._running = False
        try:
            error = future.result()
        except Exception as exc:
            error = OSError(str(exc))
        if error is not None:
            log.error("fsync failed: %s", error)
            ok = False
        self._finish(waiters, ok, mark)

    def _finish(self, waiters: list[Callback], ok: bool, mark: int | None) -> None:
        if not ok:
            self.errors += 1
        self.durable_mark = mark
        for callback in waiters:
            try:
                callback(ok)
            except Exception:
                log.exception("durability callback failed")
        if self.pending:
            self._kick(self._retry_delay if self._write_failed else 0.0)

    def write_through(self) -> None:
        """Hand every flush-only buffer (ack logs, delivery marks) to the kernel now.

        Called before frames go to a socket, so that a delivery the client may already hold
        is marked on disk first: a plain write survives kill -9, no fsync is needed."""
        for f in list(self._flush_only):
            try:
                f.flush()
            except OSError as exc:
                log.warning("write failed (will retry): %s", exc)
                continue
            del self._flush_only[f]

    def flush_now(self) -> bool:
        """Run one batch synchronously in this thread (no loop needed); False on I/O error.

        Must not be called while a loop-driven batch is in flight."""
        if self._running:
            raise RuntimeError("a batch is in flight")
        fds, waiters, ok, mark = self._collect()
        error = _fsync_all(fds)
        if error is not None:
            log.error("fsync failed: %s", error)
            ok = False
        self._finish(waiters, ok, mark)
        return ok

    async def sync(self) -> bool:
        """Wait until everything written so far is durable."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        future: asyncio.Future[bool] = loop.create_future()

        def resolve(ok: bool) -> None:
            if not future.done():
                future.set_result(ok)

        self.when_durable(resolve)
        return await future
