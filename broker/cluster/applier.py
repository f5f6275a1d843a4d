"""The follower's side of the files: applies replicated changes to its data directory and
hands what must be fsynced to a batch.

Invariants:
- Writes are plain ``os.pwrite`` on the caller's thread (the event loop); durability comes from
  ``take_dirty`` + ``fsync_all`` (an executor), and a follower acks a position only after the
  batch that covers it: an acked change survives a crash of the follower.
- Except streamed appends to ack files (``storage.acks``), which the leader never fsyncs
  either (a lost ack costs a redelivery, never a message): they are written, not fsynced, and
  an ack file they create does not make its directory dirty. Every such write reaches the
  kernel before the ack, so a killed follower process loses none; after a power loss the next
  session's full sync repairs a short ack file. Messages, definitions, indexes, deletes and
  everything a full sync writes are fsynced as before.
- ``append`` is strict: the file must be exactly ``offset`` bytes long, else ``Diverged`` (the
  copy no longer matches the leader's; the follower resyncs).
- At most ``max_open`` files stay open; a dirty file that is closed early keeps its descriptor
  until the next batch has fsynced it. New, renamed and deleted names mark their directory
  dirty, so the names are durable with the data.
- A ``REWRITE`` fills ``<name>.tmp``, which is fsynced and renamed over the name when its last
  chunk arrives: the name holds the old or the new content, never a mix.
"""

from __future__ import annotations

import os
import shutil
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from storage.acks import is_ack_name

from .files import safe_path


class Diverged(Exception):
    """The follower's copy does not match what the leader assumes: resync."""


def fsync_all(fds: list[int], dirs: list[Path]) -> None:
    """Executor side: fsync every descriptor (closing it) and every directory."""
    error: OSError | None = None
    for fd in fds:
        try:
            os.fsync(fd)
        except OSError as exc:
            error = exc
        finally:
            os.close(fd)
    for directory in dirs:
        try:
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # deleted meanwhile: nothing to make durable
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    if error is not None:
        raise error


class _Open:
    __slots__ = ("fd", "size")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size


class Applier:
    def __init__(self, root: Path, max_open: int = 64,
                 before_destroy: Callable[[], None] | None = None) -> None:
        self.root = root
        #: called once before a full sync first cuts or deletes existing data
        self.before_destroy = before_destroy
        self.max_open = max_open
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._dirty: set[str] = set()
        self._orphans: list[int] = []  # descriptors of dirty files closed early
        self._dirty_dirs: set[Path] = set()
        self._rewrites: dict[str, int] = {}  # name -> fd of its .tmp being filled

    # ---- files -----------------------------------------------------------------------
    def _file(self, rel: str, durable_name: bool = True) -> _Open:
        f = self._open.get(rel)
        if f is not None:
            self._open.move_to_end(rel)
            return f
        path = safe_path(self.root, rel)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._mkdirs(path.parent)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            if durable_name:
                self._dirty_dirs.add(path.parent)
        f = self._open[rel] = _Open(fd, os.fstat(fd).st_size)
        while len(self._open) > self.max_open:
            old, closing = self._open.popitem(last=False)
            self._close(old, closing)
        return f

    def _close(self, rel: str, f: _Open) -> None:
        if rel in self._dirty:
            self._dirty.discard(rel)
            self._orphans.append(f.fd)
        else:
            os.close(f.fd)

    def _mkdirs(self, directory: Path) -> None:
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for made in reversed(missing):
            made.mkdir(exist_ok=True)
            self._dirty_dirs.add(made.parent)

    def _write(self, f: _Open, rel: str, offset: int, data: bytes, sync: bool = True) -> None:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.pwrite(f.fd, view[done:], offset + done)
        f.size = max(f.size, offset + len(data))
        if sync:
            self._dirty.add(rel)

    # ---- changes ---------------------------------------------------------------------
    def sync_write(self, rel: str, offset: int, data: bytes) -> None:
        """Full sync: the file becomes its first ``offset`` bytes, then ``data``."""
        f = self._file(rel)
        if f.size != offset:
            if f.size > offset:
                self._destroying()
            os.ftruncate(f.fd, offset)
            f.size = offset
        self._write(f, rel, offset, data)
        self._dirty.add(rel)  # an empty file must be made durable too

    def sync_delete(self, rel: str) -> None:
        """Full sync: the leader has no such file."""
        if safe_path(self.root, rel).exists():
            self._destroying()
        self.delete(rel)

    def _destroying(self) -> None:
        hook, self.before_destroy = self.before_destroy, None
        if hook is not None:
            hook()

    def append(self, rel: str, offset: int, data: bytes) -> None:
        sync = not is_ack_name(rel.rpartition("/")[2])  # ack files: written, not fsynced
        f = self._file(rel, sync)
        if f.size != offset:
            raise Diverged(f"{rel}: append at {offset}, but the copy has {f.size} bytes")
        self._write(f, rel, offset, data, sync)

    def truncate(self, rel: str, size: int) -> None:
        f = self._file(rel)
        if f.size < size:
            raise Diverged(f"{rel}: truncate to {size}, but the copy has {f.size} bytes")
        os.ftruncate(f.fd, size)
        f.size = size
        self._dirty.add(rel)

    def rewrite(self, rel: str, total: int, offset: int, data: bytes) -> None:
        """One chunk of a whole-file replacement; the last one installs it."""
        path = safe_path(self.root, rel)
        fd = self._rewrites.get(rel)
        if fd is None:
            if offset != 0:
                raise Diverged(f"{rel}: rewrite chunk at {offset} without its start")
            self._mkdirs(path.parent)
            fd = os.open(path.with_name(path.name + ".tmp"),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            self._rewrites[rel] = fd
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], offset + done)
        if offset + len(data) < total:
            return
        del self._rewrites[rel]
        try:
            os.fsync(fd)  # rare (definitions, indexes): the name never points at lost data
        finally:
            os.close(fd)
        self._forget(rel)
        os.replace(path.with_name(path.name + ".tmp"), path)
        self._dirty_dirs.add(path.parent)

    def delete(self, rel: str) -> None:
        """Remove the file, or the directory and everything under it."""
        path = safe_path(self.root, rel)
        self._forget(rel)
        inside = rel + "/"
        for name in [n for n in self._open if n.startswith(inside)]:
            self._forget(name)
        for name in [n for n in self._rewrites if n == rel or n.startswith(inside)]:
            os.close(self._rewrites.pop(name))
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            return
        self._dirty_dirs.add(path.parent)

    def _forget(self, rel: str) -> None:
        f = self._open.pop(rel, None)
        if f is not None:
            self._close(rel, f)

    # ---- durability ------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        return bool(self._dirty or self._orphans or self._dirty_dirs)

    @property
    def orphans(self) -> int:
        return len(self._orphans)

    def take_dirty(self) -> tuple[list[int], list[Path]]:
        """Descriptors (duplicated or handed over) and directories for one fsync batch; the
        caller passes them to ``fsync_all``, which closes the descriptors."""
        fds = self._orphans
        self._orphans = []
        for rel in self._dirty:
            f = self._open.get(rel)
            if f is not None:
                fds.append(os.dup(f.fd))
        self._dirty.clear()
        dirs = sorted(self._dirty_dirs)
        self._dirty_dirs.clear()
        return fds, dirs

    def close(self) -> None:
        for rel, f in list(self._open.items()):
            self._close(rel, f)
        self._open.clear()
        for fd in self._rewrites.values():
            os.close(fd)
        self._rewrites.clear()
        for fd in self._orphans:
            os.close(fd)
        self._orphans.clear()
