"""Stores after ``close``: a priority store makes no new sub-store (``StoreClosed`` before the
factory runs; what already exists is kept) and a transient queue's store makes no file."""

from __future__ import annotations

from pathlib import Path

import pytest
from storage_helpers import Factory

from storage.message_store import SegmentQueueStore
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


def test_a_closed_scratch_store_makes_no_file(tmp_path: Path, make: Factory) -> None:
    """A transient queue's store pages out to a scratch directory made on the first page-out:
    closed, it refuses what would go there and makes nothing."""
    store = SegmentQueueStore(tmp_path / "scratch", durable=False, mode="lazy")
    store.close()
    with pytest.raises(StoreClosed):
        store.push(make("b", persistent=False))
    assert not any(tmp_path.iterdir()) and len(store) == 0


def test_store_closed_is_an_os_error() -> None:
    """Callers that already handle a failing disk (OSError) handle a closed store too."""
    assert issubclass(StoreClosed, OSError)
