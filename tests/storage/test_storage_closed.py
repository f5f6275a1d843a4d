"""Composite stores after ``close``: a priority store makes no new sub-store and a paging store
makes no spill file (``StoreClosed`` before the factory runs); what already exists is kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from storage_helpers import Factory

from storage.message_store import SegmentQueueStore
from storage.paging import PagingStore
from storage.priority import PriorityQueueStore
from storage.store import MemoryQueueStore, QueueStore, StoreClosed


def test_a_closed_priority_store_makes_no_sub_store(make: Factory) -> None:
    made: list[int] = []

    def factory(priority: int) -> QueueStore:
        made.append(priority)
        return MemoryQueueStore()

    store = PriorityQueueStore(5, factory, lambda m: int(m.routing_key))
    low = make("low", key="1")
    store.push(low)
    store.close()
    with pytest.raises(StoreClosed):
        store.push(make("high", key="3"))
    assert made == [1] and len(store) == 1
    store.push(make("low again", key="1"))  # its sub-store exists: its own rules apply
    assert len(store) == 2


def test_a_closed_paging_store_makes_no_spill(tmp_path: Path, make: Factory) -> None:
    spills: list[SegmentQueueStore] = []

    def spill() -> SegmentQueueStore:
        spills.append(SegmentQueueStore(tmp_path / f"spill{len(spills)}", durable=False))
        return spills[-1]

    store = PagingStore(spill, mode="lazy")  # lazy: every message goes to the spill
    store.push(make("a"))
    assert len(spills) == 1
    store.close()
    assert not (tmp_path / "spill0").exists()
    with pytest.raises(StoreClosed):
        store.push(make("b"))
    assert len(spills) == 1 and len(store) == 0
    assert not any(tmp_path.iterdir())


def test_store_closed_is_an_os_error() -> None:
    """Callers that already handle a failing disk (OSError) handle a closed store too."""
    assert issubclass(StoreClosed, OSError)
