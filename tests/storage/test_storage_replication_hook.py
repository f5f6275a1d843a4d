"""The replication hook: replaying what storage told its sink onto an empty directory rebuilds
the data directory byte for byte (segments, ack logs, indexes, QUEUE files, definitions)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from storage_helpers import Factory, crash

from storage import definitions_file as definitions
from storage.datadir import DataDir
from storage.keycache import KeyCache
from storage.message_store import SegmentQueueStore

SKIP = {"LOCK"}


class Replayer:
    """A sink that applies every change to a mirror directory, as a follower does."""

    def __init__(self, source: Path, mirror: Path) -> None:
        self.source = str(source)
        self.mirror = mirror
        self.calls: list[tuple[str, str]] = []

    def _path(self, path: str) -> Path:
        assert path.startswith(self.source + os.sep), path
        return self.mirror / path[len(self.source) + 1:]

    def append(self, path: str, offset: int, data: bytes) -> None:
        self.calls.append(("append", path))
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "ab") as f:
            assert f.tell() == offset, (path, f.tell(), offset)
            f.write(data)

    def truncate(self, path: str, size: int) -> None:
        self.calls.append(("truncate", path))
        os.truncate(self._path(path), size)

    def rewrite(self, path: str, data: bytes) -> None:
        self.calls.append(("rewrite", path))
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def delete(self, path: str) -> None:
        self.calls.append(("delete", path))
        target = self._path(path)
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in SKIP
            and "scratch" not in p.parts}


def test_replaying_the_hook_rebuilds_the_directory(tmp_path: Path, make: Factory) -> None:
    data = DataDir(tmp_path / "leader")
    sink = Replayer(data.path, tmp_path / "mirror")
    data.sink = sink
    definitions.save(data.definitions_path, {"queues": ["a"]}, sink)
    qdir = data.create_queue_dir("/", "q1")
    store = SegmentQueueStore(qdir, roll_size=4096, window_messages=4, gc_min_size=0, sink=sink)
    entries = [make(b"m" * 300) for _ in range(60)]
    for entry in entries:
        store.push(entry)
    store.flush()
    out = []
    for _ in range(35):  # acks whole segments away (deletes) and marks deliveries
        entry = store.shift()
        assert entry is not None
        out.append(entry)
    for entry in out[:30]:
        store.ack(entry)
    store.flush()
    definitions.save(data.definitions_path, {"queues": ["a", "b"]}, sink)
    gone = SegmentQueueStore(data.create_queue_dir("/", "gone"), sink=sink)
    gone.push(make(b"bye"))
    gone.flush()
    gone.delete()
    data.remove_queue_dir("/", "gone")
    store.close()  # seals: an index is written
    assert tree(data.path) == tree(sink.mirror)
    kinds = {kind for kind, _ in sink.calls}
    assert kinds == {"append", "rewrite", "delete"}

    # a crash leaves a torn tail; recovery truncates it and the mirror follows
    store = SegmentQueueStore(qdir, roll_size=4096, sink=sink)
    store.push(make(b"tail"))
    crash(store)
    seg = sorted(qdir.glob("*.seg"))[-1]
    with open(seg, "ab") as f:
        f.write(b"\x01\x02torn")
    sink.append(str(seg), seg.stat().st_size - 6, b"\x01\x02torn")
    (qdir / (seg.stem + ".idx")).unlink(missing_ok=True)
    sink.delete(str(qdir / (seg.stem + ".idx")))
    store = SegmentQueueStore(qdir, roll_size=4096, sink=sink)
    assert ("truncate", str(seg)) in sink.calls
    store.close()
    data.close()
    assert tree(data.path) == tree(sink.mirror)


def test_dedup_cache_file_is_replicated(tmp_path: Path) -> None:
    """The deduplication exchange's disk cache: appends, a compaction (rewrite), a torn tail
    cut at reopen (truncate) and the exchange's deletion all reach the mirror."""
    data = DataDir(tmp_path / "leader")
    sink = Replayer(data.path, tmp_path / "mirror")
    data.sink = sink
    path = data.create_exchange_dir("/", "once") / "cache"
    cache = KeyCache(limit=10, path=path, sink=sink)
    for i in range(40):  # evictions (removes) past the limit
        assert cache.add_if_new(b"k%d" % i)
    assert not cache.add_if_new(b"k39")
    cache.discard(b"k38")
    assert tree(data.path) == tree(sink.mirror)
    for i in range(1200):  # enough records to compact
        cache.add_if_new(b"x%d" % i)
    assert ("rewrite", str(path)) in sink.calls
    assert tree(data.path) == tree(sink.mirror)
    cache.close()
    with open(path, "ab") as f:  # a torn record, as a crash mid-write leaves it
        f.write(b"\x01\x00")
    sink.append(str(path), path.stat().st_size - 2, b"\x01\x00")
    cache = KeyCache(limit=10, path=path, sink=sink)
    assert ("truncate", str(path)) in sink.calls
    assert b"x1199" in cache and tree(data.path) == tree(sink.mirror)
    cache.delete()
    assert not (sink.mirror / path.relative_to(data.path)).exists()
    data.close()


def test_no_sink_no_calls(tmp_path: Path, make: Factory) -> None:
    """Without a sink nothing changes: the default costs one ``is not None`` per flush."""
    store = SegmentQueueStore(tmp_path / "q", roll_size=4096)
    for _ in range(20):
        store.push(make(b"x" * 500))
    store.close()
    assert store._acks._sink is None and store._sink is None
