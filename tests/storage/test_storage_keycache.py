"""KeyCache: new-or-seen answers, expiry, the size bound, and the log file replayed after a
restart (a torn tail is cut, the file is compacted)."""

from __future__ import annotations

from pathlib import Path

from storage.keycache import KeyCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_new_then_seen_then_expired() -> None:
    clock = Clock()
    cache = KeyCache(clock=clock)
    assert cache.add_if_new(b"a", 1.0)
    assert not cache.add_if_new(b"a")
    clock.now += 1.01
    assert cache.add_if_new(b"a")
    cache.default_ttl = 5
    assert cache.add_if_new(b"b")
    clock.now += 4
    assert b"b" in cache
    clock.now += 2
    assert b"b" not in cache


def test_the_oldest_key_makes_room() -> None:
    cache = KeyCache(limit=3)
    for key in (b"a", b"b", b"c", b"d"):
        assert cache.add_if_new(key)
    assert len(cache) == 3 and b"a" not in cache and b"d" in cache
    cache.discard(b"b")
    cache.clear()
    assert len(cache) == 0


def test_the_file_brings_the_keys_back(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "cache"
    cache = KeyCache(limit=10, path=path, clock=clock)
    cache.add_if_new(b"keep")
    cache.add_if_new(b"short", 1.0)
    cache.add_if_new(b"gone")
    cache.discard(b"gone")
    cache.close()
    with open(path, "ab") as f:
        f.write(b"\x01\x00\x00")  # a torn record from a crash
    clock.now += 2
    cache = KeyCache(limit=10, path=path, clock=clock)
    assert b"keep" in cache and b"short" not in cache and b"gone" not in cache
    assert not cache.add_if_new(b"keep")
    cache.close()


def test_the_file_is_compacted(tmp_path: Path) -> None:
    path = tmp_path / "cache"
    cache = KeyCache(limit=5, path=path)
    for i in range(5000):
        cache.add_if_new(b"%d" % i)
    cache.close()
    assert path.stat().st_size < 2000 * 20
    cache = KeyCache(limit=5, path=path)
    assert len(cache) == 5 and b"4999" in cache and b"0" not in cache
    cache.delete()
    assert not path.exists()
