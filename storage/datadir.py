"""The broker's data directory: creation, the exclusive lock, and where everything lives.

Layout::

    <data>/LOCK                     flock'ed while a broker runs (holds its pid)
    <data>/definitions.bin          durable definitions (``definitions``)
    <data>/queues/<dir>/            one ``SegmentQueueStore`` per durable queue
    <data>/queues/<dir>/QUEUE       msgpack [vhost, name] of the queue owning the directory
    <data>/exchanges/<dir>/         state of a durable exchange that keeps some (the delayed
                                    exchange's ``DelayStore``), named like queue directories
    <data>/exchanges/<dir>/EXCHANGE msgpack [vhost, name] of the exchange owning it
    <data>/scratch/<n>/             stores of non-durable queues (wiped at every open)

Invariants:
- At most one process has a data directory open: ``DataDir`` takes ``fcntl.flock(LOCK_EX |
  LOCK_NB)`` on ``LOCK`` and holds it until ``close``; a second open fails with
  ``DataDirLocked`` naming the directory.
- Queue directory names are ``<sanitised name prefix>-<sha256(vhost NUL name) prefix>``: any
  queue name (slashes, dots, unicode, 255 bytes) maps to one safe, unique, stable name.
- Opening fails early with ``DataDirError`` (naming the path and the reason) when the directory
  cannot be created or written.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import msgpack

from .sync import fsync_dir

if TYPE_CHECKING:
    from .replication import ReplicationSink

LOCK_NAME = "LOCK"
DEFINITIONS_NAME = "definitions.bin"
QUEUES_NAME = "queues"
SCRATCH_NAME = "scratch"
QUEUE_META = "QUEUE"
EXCHANGES_NAME = "exchanges"
EXCHANGE_META = "EXCHANGE"

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class DataDirError(Exception):
    """The data directory cannot be used."""


class DataDirLocked(DataDirError):
    """Another broker holds the data directory's lock."""


def disk_free(path: str | os.PathLike[str]) -> int:
    """Bytes available to an unprivileged writer on the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def queue_dir_name(vhost: str, name: str) -> str:
    digest = hashlib.sha256(f"{vhost}\0{name}".encode("utf-8", "surrogatepass")).hexdigest()
    prefix = _UNSAFE.sub("_", name)[:40].strip("_")
    return f"{prefix}-{digest[:24]}" if prefix else digest[:24]


class DataDir:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Create (if needed), lock and prepare ``path``; DataDirError / DataDirLocked."""
        self.path = Path(path).expanduser().absolute()
        #: told about queue directories made and removed (``storage.replication``)
        self.sink: ReplicationSink | None = None
        self._lock_fd = -1
        self._scratch = itertools.count(1)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataDirError(
                f"cannot create data directory {self.path}: {exc.strerror or exc}") from None
        try:
            fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise DataDirError(
                f"data directory {self.path} is not writable: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise DataDirLocked(
                f"data directory {self.path} is in use: another broker{who} holds its lock "
                f"{self.path / LOCK_NAME}; stop it or choose another --data-dir") from None
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._probe()
            (self.path / QUEUES_NAME).mkdir(exist_ok=True)
            (self.path / EXCHANGES_NAME).mkdir(exist_ok=True)
            scratch = self.path / SCRATCH_NAME
            if scratch.exists():
                shutil.rmtree(scratch)
            scratch.mkdir()
        except OSError as exc:
            self.close()
            raise DataDirError(
                f"data directory {self.path} is not writable: {exc.strerror or exc}") from None

    def _probe(self) -> None:
        probe = self.path / f".probe-{os.getpid()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)

    # ---- layout ------------------------------------------------------------------------
    @property
    def definitions_path(self) -> Path:
        return self.path / DEFINITIONS_NAME

    @property
    def queues_path(self) -> Path:
        return self.path / QUEUES_NAME

    def queue_dir(self, vhost: str, name: str) -> Path:
        """Where the durable queue (vhost, name) keeps its store (may not exist yet)."""
        return self.queues_path / queue_dir_name(vhost, name)

    def create_queue_dir(self, vhost: str, name: str) -> Path:
        """``queue_dir`` created, with its ``QUEUE`` owner file, durably."""
        path = self.queue_dir(vhost, name)
        if not path.exists():
            path.mkdir()
            meta = msgpack.packb([vhost, name], use_bin_type=True)
            (path / QUEUE_META).write_bytes(meta)
            fsync_dir(self.queues_path)
            if self.sink is not None:
                self.sink.rewrite(str(path / QUEUE_META), meta)
        return path

    def queue_dirs(self) -> dict[Path, tuple[str, str] | None]:
        """Every queue directory with its owner (None when its QUEUE file is unreadable):
        lets the broker drop the stores of queues that are no longer defined."""
        found: dict[Path, tuple[str, str] | None] = {}
        for path in sorted(self.queues_path.iterdir()):
            if not path.is_dir():
                continue
            try:
                vhost, name = msgpack.unpackb((path / QUEUE_META).read_bytes(), raw=False)
                found[path] = (vhost, name)
            except (OSError, ValueError, TypeError, msgpack.UnpackException):
                found[path] = None
        return found

    def remove_queue_dir(self, vhost: str, name: str) -> None:
        path = self.queue_dir(vhost, name)
        shutil.rmtree(path, ignore_errors=True)
        if self.sink is not None:
            self.sink.delete(str(path))

    # ---- exchanges that keep state ------------------------------------------------------
    def exchange_dir(self, vhost: str, name: str) -> Path:
        return self.path / EXCHANGES_NAME / queue_dir_name(vhost, name)

    def create_exchange_dir(self, vhost: str, name: str) -> Path:
        """``exchange_dir`` created, with its ``EXCHANGE`` owner file, durably."""
        path = self.exchange_dir(vhost, name)
        if not path.exists():
            path.mkdir(parents=True)
            meta = msgpack.packb([vhost, name], use_bin_type=True)
            (path / EXCHANGE_META).write_bytes(meta)
            fsync_dir(path.parent)
            if self.sink is not None:
                self.sink.rewrite(str(path / EXCHANGE_META), meta)
        return path

    def exchange_dirs(self) -> dict[Path, tuple[str, str] | None]:
        """Every exchange state directory with its owner (None: unreadable owner file)."""
        found: dict[Path, tuple[str, str] | None] = {}
        root = self.path / EXCHANGES_NAME
        if not root.is_dir():
            return found
        for path in sorted(root.iterdir()):
            if not path.is_dir():
                continue
            try:
                vhost, name = msgpack.unpackb((path / EXCHANGE_META).read_bytes(), raw=False)
                found[path] = (vhost, name)
            except (OSError, ValueError, TypeError, msgpack.UnpackException):
                found[path] = None
        return found

    def scratch_dir(self) -> Path:
        """A fresh path for a non-durable queue's store (created by the store)."""
        return self.path / SCRATCH_NAME / str(next(self._scratch))

    def disk_free(self) -> int:
        return disk_free(self.path)

    # ---- lifetime ----------------------------------------------------------------------
    def close(self) -> None:
        """Release the lock (the directory stays)."""
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> DataDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
