"""DelayStore's background merge of its sorted runs: the count of runs stays small whatever
the number of messages held, order and content are unchanged, only durably routed keys are
dropped, a crash at any point of a merge loses and duplicates nothing, the merged run reaches
followers through the replication sink, and on an event loop it runs by itself in steps."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from test_storage_delayed import Clock, _add, _crash, _drain
from test_storage_replication_hook import Replayer, tree

from storage.delayed import DelayStore
from storage.delayed_merge import STEP
from storage.delayed_runs import BLOCK, ENTRY, MERGED_MAGIC
from storage.sync import GroupCommit


def _runs(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name.startswith("run-"))


def _fill(store: DelayStore, n: int, seed: int = 7) -> list[int]:
    """``n`` messages with random dues 1000 .. 1499; their bodies in the order they must
    come out."""
    rng = random.Random(seed)
    dues = [1000 + rng.randrange(500) for _ in range(n)]
    for i, due in enumerate(dues):
        _add(store, due, i)
    return [i for i, _ in sorted(enumerate(dues), key=lambda x: (x[1], x[0]))]


def test_runs_are_merged_by_tiers_and_order_is_kept(tmp_path: Path) -> None:
    store = DelayStore(tmp_path / "d", memtable=10, fanin=4, clock=Clock())
    expected = _fill(store, 1000)
    assert store.run_count == 100  # no event loop: nothing merged by itself
    store.merge_now()
    # 100 runs of 10 keys: 25 of 40, then 6 of 160 (and 1 of 40), then 1 of 640 ...
    assert store.run_count < 4 * 3, store.run_count
    assert len(_runs(tmp_path / "d")) == store.run_count
    assert (tmp_path / "d" / _runs(tmp_path / "d")[-1]).read_bytes()[:8] == MERGED_MAGIC
    assert len(store) == 1000
    first = _drain(store, 1200)
    assert first == expected[:len(first)] and 300 < len(first) < 500
    store.close()
    store = DelayStore(tmp_path / "d", memtable=10, fanin=4, clock=Clock())
    assert len(store) == 1000 - len(first)
    assert _drain(store, 5000) == expected[len(first):]
    store.close()


def test_a_merge_holds_a_block_per_source_and_one_step(tmp_path: Path) -> None:
    store = DelayStore(tmp_path / "d", memtable=2000, fanin=4, clock=Clock())
    expected = _fill(store, 8000)
    assert store._maybe_merge(schedule=False)
    merge = store._merge
    assert merge is not None and len(merge.readers) == 4
    steps = 0
    while True:
        size = merge.writer.size
        done = merge.step()
        steps += 1
        assert all(len(r._block) <= BLOCK for r in merge.readers)
        if done:
            break
        assert merge.writer.size - size == STEP * ENTRY.size
    assert steps == 8000 // STEP + 1
    store._merged(merge)
    assert store.run_count == 1
    assert _drain(store, 5000) == expected
    store.close()


def test_only_durably_routed_keys_are_dropped(tmp_path: Path) -> None:
    store = DelayStore(tmp_path / "d", memtable=5, fanin=4, clock=Clock())
    for n in range(40):
        _add(store, 1000 + n, n)
    assert _drain(store, 1009) == list(range(10))  # routed, and durably (no group commit)
    got = [int(m.body) for m in iter(lambda: store.pop_due(1014), None)]
    assert got == list(range(10, 15))  # routed, not yet durable
    store.merge_now()
    assert store.run_count < 4
    _crash(store)
    store = DelayStore(tmp_path / "d", memtable=5, fanin=4, clock=Clock())
    assert _drain(store, 5000) == list(range(10, 40))  # 10..14 again: at least once
    store.close()


def test_crash_in_the_middle_of_a_merge(tmp_path: Path) -> None:
    store = DelayStore(tmp_path / "d", memtable=50, fanin=4, clock=Clock())
    expected = _fill(store, 200)
    before = _runs(tmp_path / "d")
    assert store._maybe_merge(schedule=False)
    assert store._merge is not None and not store._merge.step(budget=30)
    _crash(store)  # half a merged run on disk, without its footer
    assert len(_runs(tmp_path / "d")) == len(before) + 1
    store = DelayStore(tmp_path / "d", memtable=50, fanin=4, clock=Clock())
    assert _runs(tmp_path / "d") == before  # the half-written run is gone
    assert len(store) == 200 and _drain(store, 5000) == expected
    store.close()


def test_crash_after_a_merge_before_its_sources_went(tmp_path: Path) -> None:
    gc = GroupCommit()  # no loop: nothing becomes durable until flush_now
    store = DelayStore(tmp_path / "d", memtable=50, fanin=4, group_commit=gc, clock=Clock())
    expected = _fill(store, 200)
    gc.flush_now()
    before = _runs(tmp_path / "d")
    assert store._maybe_merge(schedule=False)
    merge = store._merge
    assert merge is not None
    while not merge.step():
        pass
    store._merged(merge)  # complete, waiting for the fsync: sources still in use
    assert store.run_count == len(before)
    _crash(store)
    assert len(_runs(tmp_path / "d")) == len(before) + 1
    store = DelayStore(tmp_path / "d", memtable=50, fanin=4, clock=Clock())
    assert _runs(tmp_path / "d") == [_runs(tmp_path / "d")[-1]]  # the sources are gone
    assert len(store) == 200 and _drain(store, 5000) == expected  # each exactly once
    store.close()


def test_the_merged_run_replicates_byte_for_byte(tmp_path: Path) -> None:
    sink = Replayer(tmp_path / "d", tmp_path / "mirror")
    store = DelayStore(tmp_path / "d", memtable=10, fanin=4, clock=Clock(), sink=sink)
    _fill(store, 300)
    assert _drain(store, 1100)
    store.merge_now()
    store.flush()
    assert ("append", str(tmp_path / "d" / _runs(tmp_path / "d")[-1])) in sink.calls
    assert tree(tmp_path / "mirror") == tree(tmp_path / "d")
    store.close()


async def test_on_the_event_loop_merges_run_by_themselves(tmp_path: Path) -> None:
    gc = GroupCommit()
    store = DelayStore(tmp_path / "d", memtable=10, fanin=4, group_commit=gc, clock=Clock())
    expected = _fill(store, 1000)
    for _ in range(200):  # steps on loop turns, then the fsync of the merged runs
        await asyncio.sleep(0.001)
        if store.run_count < 12 and not store.merging:
            break
    assert store.run_count < 12 and not store.merging
    assert _drain(store, 5000) == expected
    store.close()
    gc.flush_now()


async def test_runs_found_at_recovery_are_merged_once_the_store_is_used(tmp_path: Path) -> None:
    def fill() -> list[int]:  # written without a loop: nothing merged
        store = DelayStore(tmp_path / "d", memtable=10, fanin=4, clock=Clock())
        expected = _fill(store, 300)
        store.close()
        return expected

    expected = await asyncio.get_running_loop().run_in_executor(None, fill)
    store = DelayStore(tmp_path / "d", memtable=10, fanin=4, clock=Clock())
    assert store.run_count == 30 and not store.merging  # recovery itself merges nothing
    assert store.next_due() is not None  # the first use starts the merges
    for _ in range(200):
        await asyncio.sleep(0.001)
        if not store.merging:
            break
    assert store.run_count < 12 and len(_runs(tmp_path / "d")) == store.run_count
    assert _drain(store, 5000) == expected
    store.close()
