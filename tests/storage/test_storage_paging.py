"""RAM bookkeeping of the disk store: the window budget, priority levels sharing it, requeued
messages paged out as positions (``requeue``), and everything coming back in order."""

from __future__ import annotations

import itertools
import logging
import random
from pathlib import Path

import pytest
from storage_helpers import Factory, crash, drain

from storage.message import Entry, Message
from storage.message_store import OFFSET_MASK, SegmentQueueStore
from storage.priority import PriorityQueueStore
from storage.requeue import PagedRequeues, pack_meta
from storage.window import MODES, Window


def window_totals(window: Window) -> tuple[int, int, int, int]:
    return window.n, window.b, window.rq_n, window.rq_b


# ---- the window ------------------------------------------------------------------------
@pytest.mark.parametrize("durable", [True, False])
def test_ram_entries_stay_within_the_window_whatever_the_backlog(
        tmp_path: Path, make: Factory, durable: bool) -> None:
    store = SegmentQueueStore(tmp_path / "q", durable=durable)
    limit = MODES["default"][0]
    for i in range(100_000):
        store.push(make(b"%06d" % i, persistent=i % 2 == 0))
        if i % 5000 == 0:
            assert store.in_memory <= limit
    assert len(store) == 100_000
    assert store.in_memory == store._w.n <= limit
    out = [store.shift() for _ in range(30_000)]
    assert store.in_memory <= limit
    assert [e.message.body for e in out] == [b"%06d" % i for i in range(30_000)]
    rest = drain(store)
    assert [e.message.body for e in rest] == [b"%06d" % i for i in range(30_000, 100_000)]
    assert window_totals(store._w) == (0, 0, 0, 0)
    store.close()


def test_the_window_is_bounded_in_bytes_too(tmp_path: Path, make: Factory) -> None:
    store = SegmentQueueStore(tmp_path / "q", durable=False, window_bytes=64 * 1024)
    for i in range(200):
        store.push(make(bytes([i]) * 10_000))
    assert store.in_memory == 6  # 6 x 10 kB fit in 64 KiB
    for _ in range(100):
        store.shift()
        assert store._w.b <= 64 * 1024 + 10_000  # a refill may overshoot by one message
    assert [e.message.body[0] for e in drain(store)] == list(range(100, 200))
    store.close()


def test_a_transient_store_makes_no_directory_until_it_pages_out(tmp_path: Path,
                                                                 make: Factory) -> None:
    path = tmp_path / "scratch" / "7"
    store = SegmentQueueStore(path, durable=False, window_messages=4)
    for _ in range(100):
        store.push(make(persistent=False))
        store.shift()
    assert not path.exists()
    for _ in range(10):
        store.push(make(persistent=True))
    assert path.exists() and not list(path.glob("*.idx")) and not list(path.glob("*.ack"))
    for entry in drain(store):
        store.ack(entry)
    store.close()
    assert not list(path.glob("*.ack"))  # a non-durable store logs no acks
    store.delete()
    assert not path.exists()


def test_priority_levels_share_one_window(tmp_path: Path, make: Factory) -> None:
    window = Window()
    counter = itertools.count()
    levels: list[SegmentQueueStore] = []

    def level(_priority: int) -> SegmentQueueStore:
        store = SegmentQueueStore(tmp_path / f"s{next(counter)}", durable=False, window=window)
        levels.append(store)
        return store

    store = PriorityQueueStore(9, level, lambda message: message.properties[2])
    rnd = random.Random(7)
    pushed: list[tuple[int, int]] = []
    for i in range(100_000):
        priority = rnd.randrange(10)
        props = b"\x08\x00" + bytes((priority,))  # property flags: priority present
        make.seq += 1
        store.push(Entry(make.seq, Message("", "q", props, b"%06d" % i, False)))
        pushed.append((-priority, make.seq))
    assert len(levels) == 10
    assert sum(s.in_memory for s in levels) == window.n <= window.max_n
    got = []
    while (entry := store.shift()) is not None:
        got.append((-store.priority_of(entry), entry.seq))
        assert sum(s.in_memory for s in levels) <= window.max_n + 1
    assert got == sorted(pushed)
    assert window_totals(window) == (0, 0, 0, 0)
    store.set_mode("lazy")
    assert window.max_n == 0
    store.delete()


# ---- requeued messages -----------------------------------------------------------------
def fill_and_take(store: SegmentQueueStore, make: Factory, n: int, out: int) -> list[Entry]:
    for i in range(n):
        store.push(make(b"%05d" % i, persistent=i % 3 != 0))
    return [store.shift() for _ in range(out)]  # type: ignore[misc]


@pytest.mark.parametrize("durable", [True, False])
def test_requeued_past_the_budget_are_paged_and_come_back_in_order(
        tmp_path: Path, make: Factory, durable: bool) -> None:
    store = SegmentQueueStore(tmp_path / "q", durable=durable, window_messages=16,
                              roll_size=16 * 1024)
    out = fill_and_take(store, make, 2000, 1200)
    for i, entry in enumerate(out):
        entry.redelivered = True
        entry.delivery_count = i % 5
        store.requeue(entry)
    assert len(store) == 2000
    assert store.in_memory <= 32  # window + requeued entries, each within the budget
    assert store.paged_requeued >= 1200 - 16 - 16  # only window entries may lack a record
    assert store.bytes == sum(len(b"%05d" % i) for i in range(2000))
    assert [e.seq for e in store][:1200] == [e.seq for e in out]  # iterating reads them back
    got = drain(store)
    assert [(e.seq, e.message.body) for e in got[:1200]] == \
        [(e.seq, e.message.body) for e in out]
    assert [e.message.body for e in got[1200:]] == [b"%05d" % i for i in range(1200, 2000)]
    assert [(e.redelivered, e.delivery_count) for e in got[:1200]] == \
        [(True, i % 5) for i in range(1200)]
    assert [e.message.persistent for e in got] == [i % 3 != 0 for i in range(2000)]
    assert not any(e.redelivered for e in got[1200:])
    assert store.paged_requeued == 0 and store.bytes == 0
    assert window_totals(store._w) == (0, 0, 0, 0)
    store.close()


@pytest.mark.parametrize("order", ["interleaved", "descending", "random", "head"])
def test_requeue_order_does_not_matter(tmp_path: Path, make: Factory, order: str) -> None:
    store = SegmentQueueStore(tmp_path / "q", window_messages=8, roll_size=8 * 1024)
    out = fill_and_take(store, make, 3000, 2500)
    if order == "interleaved":  # two channels, each holding every other delivery
        back = out[0::2] + out[1::2]
    elif order == "descending":
        back = out[::-1]
    elif order == "random":
        back = out[:]
        random.Random(3).shuffle(back)
    else:  # then a consumer rejecting (requeue) what it was just given, again and again
        for entry in reversed(out):
            store.requeue(entry)
        for _ in range(500):
            head = store.shift()
            assert head is not None and head.seq == 1
            store.requeue(head)
        back = []
    for entry in back:
        store.requeue(entry)
    # window + requeued within the budget, plus the 3 transient messages that were delivered
    # from the window: without a record they cannot be paged
    assert store.in_memory <= 8 + 8 + 3
    assert store.peek().seq == out[0].seq  # type: ignore[union-attr]
    got = drain(store)
    assert [e.seq for e in got] == list(range(1, 3001))
    assert [e.message.body for e in got] == [b"%05d" % i for i in range(3000)]
    store.close()


def test_expiry_and_properties_survive_paging(tmp_path: Path, make: Factory) -> None:
    now = [1000.0]
    store = SegmentQueueStore(tmp_path / "q", window_messages=2, clock=lambda: now[0])
    props = b"\x90\x00\x0atext/plain\x02"  # content-type, delivery-mode 2
    for i in range(10):
        make.seq += 1
        entry = Entry(make.seq, Message("amq.direct", f"key.{i}", props, b"body%d" % i, True))
        entry.expires = 1000.0 + i
        store.push(entry)
    out = [store.shift() for _ in range(10)]
    for entry in out:
        store.requeue(entry)  # type: ignore[arg-type]
    assert store.paged_requeued >= 6
    got = drain(store)
    assert [(e.message.exchange, e.message.routing_key, e.message.properties)
            for e in got] == [("amq.direct", f"key.{i}", props) for i in range(10)]
    assert [e.expires for e in got] == pytest.approx([1000.0 + i for i in range(10)], abs=0.05)
    store.close()


def test_purge_settles_paged_requeues(tmp_path: Path, make: Factory) -> None:
    path = tmp_path / "q"
    store = SegmentQueueStore(path, window_messages=4, roll_size=4096)
    out = fill_and_take(store, make, 300, 200)
    for entry in out[:150]:
        store.requeue(entry)
    assert store.paged_requeued > 100
    assert store.purge() == 250
    assert len(store) == 0 and store.bytes == 0 and store.shift() is None
    assert window_totals(store._w) == (0, 0, 0, 0)
    store.close()
    store = SegmentQueueStore(path)  # out[150:] were never acked: they are all that is left
    got = drain(store)
    assert [e.message.body for e in got] == \
        [b"%05d" % i for i in range(150, 200) if i % 3 != 0]
    store.close()


def test_paged_requeues_survive_a_crash(tmp_path: Path, make: Factory) -> None:
    path = tmp_path / "q"
    store = SegmentQueueStore(path, window_messages=4, roll_size=4096)
    out = fill_and_take(store, make, 300, 200)
    for entry in out:
        store.requeue(entry)
    assert store.paged_requeued > 150
    crash(store)
    store = SegmentQueueStore(path)
    got = drain(store)
    assert [e.message.body for e in got] == [b"%05d" % i for i in range(300) if i % 3 != 0]
    assert [e.redelivered for e in got] == [int(e.message.body) < 200 for e in got]
    store.close()


def test_an_unreadable_paged_requeue_is_dropped_and_logged(
        tmp_path: Path, make: Factory, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "q"
    store = SegmentQueueStore(path, window_messages=1, roll_size=2048)
    out = fill_and_take(store, make, 100, 60)
    store.requeue(out[0])
    victim = out[30]
    pos = store._pos[victim.seq]
    for entry in out[1:]:
        store.requeue(entry)
    store.flush()
    with open(path / f"{pos >> 32:08d}.seg", "r+b") as f:  # flip a byte of its body
        f.seek((pos & OFFSET_MASK) + 40)
        byte = f.read(1)
        f.seek((pos & OFFSET_MASK) + 40)
        f.write(bytes([byte[0] ^ 0xFF]))
    caplog.set_level(logging.ERROR)
    got = drain(store)
    assert victim.seq not in [e.seq for e in got]
    assert len(got) == 99 and len(store) == 0 and store.bytes == 0
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    store.close()


# ---- PagedRequeues ---------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_paged_requeues_pop_in_seq_order(seed: int) -> None:
    rnd = random.Random(seed)
    paged = PagedRequeues()
    held: dict[int, tuple[int, int, int]] = {}
    seqs = rnd.sample(range(1, 10**6), 5000)
    if seed % 2:
        seqs.sort()  # ascending runs with the odd few out of order
        for _ in range(20):
            i, j = rnd.randrange(5000), rnd.randrange(5000)
            seqs[i], seqs[j] = seqs[j], seqs[i]
    popped: list[int] = []
    for seq in seqs:
        item = (seq * 3, seq % 977, pack_meta(seq % 2 == 0, seq % 3 == 0, seq % 7))
        paged.add(seq, *item)
        held[seq] = item
        if rnd.random() < 0.2:  # pops in between, as a consumer takes from the head
            first = paged.pop()
            popped.append(first[0])
            assert first[1:] == held.pop(first[0])
            assert first[0] == min(held.keys() | {first[0]})
    assert len(paged) == len(held)
    assert paged.bytes == sum(size for _, size, _ in held.values())
    assert [item[0] for item in paged] == sorted(held)
    rest = [paged.pop()[0] for _ in range(len(held))]
    assert rest == sorted(held) and len(paged) == 0 and paged.bytes == 0


def test_peek_skips_an_unreadable_paged_head(tmp_path: Path, make: Factory,
                                             caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "q"
    store = SegmentQueueStore(path, window_messages=2)
    out = fill_and_take(store, make, 10, 5)
    for entry in out[2:]:
        store.requeue(entry)  # out[2], out[3] as entries (the budget), out[4] as a position
    assert store.paged_requeued == 1
    pos = store._rq.paged.pos[store._rq.paged.head]  # type: ignore[union-attr]
    assert [store.shift().seq for _ in range(2)] == [3, 4]  # type: ignore[union-attr]
    store.flush()
    with open(path / f"{pos >> 32:08d}.seg", "r+b") as f:
        f.seek((pos & OFFSET_MASK) + 8)
        f.write(b"\xff\xff")  # flags and seq of out[4]: its CRC no longer matches
    caplog.set_level(logging.ERROR)
    assert store.peek().seq == 6  # type: ignore[union-attr]
    assert len(store) == 5 and [e.seq for e in drain(store)] == [6, 7, 8, 9, 10]
    store.close()
