"""``KeyCache``: a bounded set of byte keys with optional expiry, optionally kept in a file.

Used for message deduplication: ``add_if_new(key, ttl)`` answers whether the key was already
there (not expired) and records it when it was not. At most ``limit`` keys are kept: past it
the oldest one goes (insertion order). With a ``path``, every change is appended to a log file
(``[op u8][expires f64][key length u16][key]``; op 1 = add, 2 = remove, 3 = clear) with plain
``os.write`` (a lost tail loses a few keys, never corrupts the rest: a torn record ends the
replay), and the file is rewritten with just the live keys once it holds four times as many
records as keys. Every change to the file is told to the replication sink, when there is one
(cluster mode: followers keep the same file, so a new leader still drops a duplicate).

Invariants:
- ``expires`` are wall-clock seconds (``time.time()``), so they keep their meaning across a
  restart; 0 means never.
- Loop-thread only.
"""

from __future__ import annotations

import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .replication import ReplicationSink

_REC = struct.Struct("<BdH")
ADD, REMOVE, CLEAR = 1, 2, 3


class KeyCache:
    def __init__(self, limit: int = 0, path: str | os.PathLike[str] | None = None,
                 clock: Callable[[], float] = time.time,
                 sink: ReplicationSink | None = None) -> None:
        """``limit`` 0: unbounded."""
        self.limit = limit
        self.default_ttl: float | None = None  # seconds
        self._clock = clock
        self._keys: OrderedDict[bytes, float] = OrderedDict()
        self._path = Path(path) if path is not None else None
        self._fd = -1
        self._records = 0
        self._size = 0  # the file's length: where the next record goes
        self._sink = sink
        if self._path is not None:
            self._replay()
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT |
                               os.O_CLOEXEC, 0o644)
            self._size = os.fstat(self._fd).st_size

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: bytes) -> bool:
        expires = self._keys.get(key)
        if expires is None:
            return False
        if expires and expires <= self._clock():
            self.discard(key)
            return False
        return True

    def add_if_new(self, key: bytes, ttl: float | None = None) -> bool:
        """True when ``key`` is new (now recorded, for ``ttl`` seconds or the default);
        False when it is already there."""
        if key in self:
            return False
        ttl = self.default_ttl if ttl is None else ttl
        expires = self._clock() + ttl if ttl else 0.0
        if self.limit and len(self._keys) >= self.limit:
            self._evict()
        self._keys[key] = expires
        self._log(ADD, expires, key)
        return True

    def discard(self, key: bytes) -> None:
        if self._keys.pop(key, None) is not None:
            self._log(REMOVE, 0.0, key)

    def clear(self) -> None:
        self._keys.clear()
        self._log(CLEAR, 0.0, b"")

    def _evict(self) -> None:
        """Make room: the oldest key goes (expired keys are dropped when looked up)."""
        while self.limit and len(self._keys) >= self.limit:
            key, _ = self._keys.popitem(last=False)
            self._log(REMOVE, 0.0, key)

    # ---- the file ------------------------------------------------------------------------
    def _log(self, op: int, expires: float, key: bytes) -> None:
        if self._fd < 0:
            return
        record = _REC.pack(op, expires, len(key)) + key
        os.write(self._fd, record)
        if self._sink is not None:
            assert self._path is not None
            self._sink.append(str(self._path), self._size, record)
        self._size += len(record)
        self._records += 1
        if self._records > 4 * len(self._keys) + 1024:
            self._compact()

    def _compact(self) -> None:
        assert self._path is not None
        tmp = self._path.with_suffix(".tmp")
        data = b"".join(_REC.pack(ADD, e, len(k)) + k for k, e in self._keys.items())
        tmp.write_bytes(data)
        os.replace(tmp, self._path)
        if self._sink is not None:
            self._sink.rewrite(str(self._path), data)
        os.close(self._fd)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._size = len(data)
        self._records = len(self._keys)

    def _replay(self) -> None:
        assert self._path is not None
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return
        pos = 0
        now = self._clock()
        while pos + _REC.size <= len(data):
            op, expires, size = _REC.unpack_from(data, pos)
            end = pos + _REC.size + size
            if end > len(data) or op not in (ADD, REMOVE, CLEAR):
                break  # torn or foreign tail: what came before stands
            key = data[pos + _REC.size:end]
            if op == ADD:
                self._keys[key] = expires
            elif op == REMOVE:
                self._keys.pop(key, None)
            else:
                self._keys.clear()
            pos = end
            self._records += 1
        if pos < len(data):
            os.truncate(self._path, pos)
            if self._sink is not None:
                self._sink.truncate(str(self._path), pos)
        for key in [k for k, e in self._keys.items() if e and e <= now]:
            del self._keys[key]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def delete(self) -> None:
        self.close()
        self._keys.clear()
        if self._path is not None and self._path.exists():
            self._path.unlink()
            if self._sink is not None:
                self._sink.delete(str(self._path))
