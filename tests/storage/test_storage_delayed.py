"""DelayStore: messages come out in (due, arrival) order whether they sit in the memtable or in
sorted runs; restart and crash recovery; the watermark (nothing routed twice after a clean
restart, at least once after a crash); files deleted once routed; RAM bounded by the memtable."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from storage.delayed import WATERMARK, DelayStore, MemoryDelayStore, run_name


def _raw(text: str) -> bytes:
    return bytes((len(text),)) + text.encode()


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _add(store, due: float, n: int, persistent: bool = True) -> None:  # type: ignore[no-untyped-def]
    store.add(due, _raw("dx"), _raw("rk"), b"\x00\x00", b"%d" % n, persistent)


def _drain(store, now: float) -> list[int]:  # type: ignore[no-untyped-def]
    out = []
    while (message := store.pop_due(now)) is not None:
        out.append(int(message.body))
    store.routed()
    return out


def _crash(store: DelayStore) -> None:
    """kill -9: written bytes stay, nothing else runs."""
    if store._writer is not None:
        store._writer.flush()
        os.close(store._writer.fileno())
        store._writer._fd = -1
    store._closed = True


@pytest.mark.parametrize("memtable", [4, 1000])
def test_due_order_then_arrival_order(tmp_path: Path, memtable: int) -> None:
    store = DelayStore(tmp_path / "d", memtable=memtable, clock=Clock())
    rng = random.Random(5)
    dues = [1000 + rng.choice([1, 2, 3, 5, 8]) for _ in range(60)]
    for n, due in enumerate(dues):
        _add(store, due, n)
    assert len(store) == 60
    assert store.next_due() == min(dues)
    assert _drain(store, 1002) == [n for n, d in sorted(enumerate(dues), key=lambda x: (x[1], x[0]))
                                   if d <= 1002]
    rest = _drain(store, 2000)
    assert rest == [n for n, d in sorted(enumerate(dues), key=lambda x: (x[1], x[0]))
                    if d > 1002]
    assert len(store) == 0 and store.next_due() is None
    if memtable == 4:
        assert store.run_count == 0  # routed runs are deleted once the watermark covers them
    store.close()


def test_nothing_before_its_time(tmp_path: Path) -> None:
    store = DelayStore(tmp_path / "d", clock=Clock())
    _add(store, 1005, 1)
    assert store.pop_due(1004.999) is None
    assert _drain(store, 1005) == [1]
    store.close()


def test_a_due_before_the_watermark_goes_out_next(tmp_path: Path) -> None:
    store = DelayStore(tmp_path / "d", clock=Clock())
    _add(store, 1010, 1)
    assert _drain(store, 1010) == [1]
    _add(store, 990, 2)  # the clock went back: still after what was routed
    assert _drain(store, 1010) == [2]
    store.close()


def test_clean_restart_keeps_the_rest_and_never_reroutes(tmp_path: Path) -> None:
    store = DelayStore(tmp_path / "d", memtable=8, clock=Clock())
    for n in range(50):
        _add(store, 1000 + n, n)
    assert _drain(store, 1019) == list(range(20))
    store.close()
    store = DelayStore(tmp_path / "d", memtable=8, clock=Clock())
    assert len(store) == 30
    assert _drain(store, 5000) == list(range(20, 50))
    store.close()
    store = DelayStore(tmp_path / "d", memtable=8, clock=Clock())
    assert len(store) == 0 and _drain(store, 9999) == []
    store.close()


def test_transient_messages_do_not_survive_a_restart(tmp_path: Path) -> None:
    store = DelayStore(tmp_path / "d", memtable=4, clock=Clock())
    for n in range(10):
        _add(store, 1000 + n, n, persistent=n % 2 == 0)
    store.close()
    store = DelayStore(tmp_path / "d", memtable=4, clock=Clock())
    assert _drain(store, 5000) == [0, 2, 4, 6, 8]
    store.close()


def test_a_transient_newest_id_due_early_is_still_dropped(tmp_path: Path) -> None:
    store = DelayStore(tmp_path / "d", clock=Clock())
    _add(store, 1010, 0)
    _add(store, 1001, 1, persistent=False)  # the largest id, but not the largest key
    store.close()
    store = DelayStore(tmp_path / "d", clock=Clock())
    assert store.next_id == 3
    assert _drain(store, 5000) == [0]
    store.close()


@pytest.mark.parametrize("memtable", [5, 10_000])
def test_crash_keeps_every_message_written(tmp_path: Path, memtable: int) -> None:
    store = DelayStore(tmp_path / "d", memtable=memtable, clock=Clock())
    for n in range(40):
        _add(store, 1000 + (n * 7) % 13, n)
    _crash(store)
    store = DelayStore(tmp_path / "d", memtable=memtable, clock=Clock())
    got = _drain(store, 5000)
    assert sorted(got) == list(range(40))
    assert got == [n for n in sorted(range(40), key=lambda n: (1000 + (n * 7) % 13, n))]
    store.close()


def test_crash_before_the_watermark_is_durable_routes_again(tmp_path: Path) -> None:
    store = DelayStore(tmp_path / "d", memtable=4, clock=Clock())
    for n in range(10):
        _add(store, 1000 + n, n)
    assert _drain(store, 1004) == [0, 1, 2, 3, 4]  # routed() records the watermark
    assert [int(m.body) for m in iter(lambda: store.pop_due(1009), None)] == [5, 6, 7, 8, 9]
    _crash(store)  # the second batch's watermark never reached the disk
    store = DelayStore(tmp_path / "d", memtable=4, clock=Clock())
    assert _drain(store, 5000) == [5, 6, 7, 8, 9]  # again: at least once, never lost
    store.close()


def test_a_damaged_run_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    store = DelayStore(tmp_path / "d", memtable=4, clock=Clock())
    for n in range(20):
        _add(store, 1000 + n, n)
    _crash(store)
    run = tmp_path / "d" / run_name(2)
    data = run.read_bytes()
    run.write_bytes(data[:-5])  # torn by a crash
    store = DelayStore(tmp_path / "d", memtable=4, clock=Clock())
    assert _drain(store, 5000) == list(range(20))
    store.close()


def test_torn_segment_tail_is_cut(tmp_path: Path) -> None:
    store = DelayStore(tmp_path / "d", clock=Clock())
    for n in range(5):
        _add(store, 1000 + n, n)
    _crash(store)
    seg = next((tmp_path / "d").glob("*.seg"))
    with open(seg, "ab") as f:
        f.write(b"\x01\x02\x03")
    store = DelayStore(tmp_path / "d", clock=Clock())
    assert _drain(store, 5000) == list(range(5))
    store.close()


def test_files_go_once_everything_in_them_is_routed(tmp_path: Path) -> None:
    store = DelayStore(tmp_path / "d", memtable=16, roll_size=2000, clock=Clock())
    for n in range(200):
        _add(store, 1000 + n, n)
    assert store.segment_count > 3 and store.run_count > 3
    _drain(store, 1100)
    segments = store.segment_count
    assert segments < 200 // 10
    assert _drain(store, 5000) == list(range(101, 200))
    assert store.run_count == 0
    store.close()
    names = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert all(not n.startswith("run-") for n in names), names
    assert WATERMARK in names


def test_ram_is_bounded_by_the_memtable(tmp_path: Path) -> None:
    store = DelayStore(tmp_path / "d", memtable=100, roll_size=1 << 20, clock=Clock())
    for n in range(5000):
        _add(store, 2000 - n % 997, n)
    assert len(store._heap) <= 100 and len(store._appended) <= 100
    assert store.run_count == 50
    got = _drain(store, 5000)
    assert got == sorted(range(5000), key=lambda n: (2000 - n % 997, n))
    store.close()


def test_delete_removes_everything(tmp_path: Path) -> None:
    store = DelayStore(tmp_path / "d", memtable=4, clock=Clock())
    for n in range(10):
        _add(store, 1000 + n, n)
    store.delete()
    assert not (tmp_path / "d").exists()


def test_memory_store_has_the_same_order() -> None:
    store = MemoryDelayStore(clock=Clock())
    for n, due in enumerate([1003, 1001, 1003, 1002]):
        _add(store, due, n)
    assert [int(m.body) for m in iter(lambda: store.pop_due(1003), None)] == [1, 3, 0, 2]
