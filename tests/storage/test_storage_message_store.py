"""SegmentQueueStore: window and backlog, order, requeue, acks, purge, GC, recovery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from storage_helpers import Factory, crash, dir_size, drain, segment_files

from storage import message_store as ms
from storage import recovery, segment
from storage.message_store import SegmentQueueStore
from storage.sync import GroupCommit


def open_store(path: Path, **kw: object) -> SegmentQueueStore:
    return SegmentQueueStore(path, **kw)  # type: ignore[arg-type]


def bodies(entries: list) -> list[bytes]:
    return [e.message.body for e in entries]


# ---- hot path and window --------------------------------------------------------------
def test_transient_below_window_never_touches_disk(tmp_path: Path, make: Factory) -> None:
    store = open_store(tmp_path / "q", window_messages=8)
    for _ in range(1000):
        for i in range(5):
            store.push(make(str(i), persistent=False))
        assert [e.message.body for e in drain(store)] == [b"0", b"1", b"2", b"3", b"4"]
    assert os.listdir(tmp_path / "q") == []
    assert store.segment_count == 0
    store.close()


def test_window_overflow_pages_out_in_order(tmp_path: Path, make: Factory) -> None:
    store = open_store(tmp_path / "q", window_messages=10, roll_size=2048)
    pushed = [make(f"m{i}", persistent=i % 3 == 0) for i in range(200)]
    for e in pushed:
        store.push(e)
    assert len(store) == 200
    assert store.in_memory == 10
    assert store.bytes == sum(e.message.size for e in pushed)
    assert len(segment_files(tmp_path / "q")) > 1
    assert [e.seq for e in store] == list(range(1, 201))  # iterating does not consume
    assert len(store) == 200
    out = drain(store)
    assert [(e.seq, e.message.body) for e in out] == [(e.seq, e.message.body) for e in pushed]
    assert out[150].message.routing_key == "rk" and out[150].message.exchange == "ex"
    assert out[150].message.persistent == pushed[150].message.persistent
    assert store.bytes == 0 and len(store) == 0
    store.close()


def test_backlog_migrates_back_into_window(tmp_path: Path, make: Factory) -> None:
    """After a burst, once the consumer is within the window, transient pushes stay in RAM."""
    store = open_store(tmp_path / "q", window_messages=16)
    for i in range(100):
        store.push(make(f"{i}", persistent=False))
    got = [store.shift() for _ in range(95)]
    assert store._backlog == 0 and store.in_memory == 5
    before = store._writer.size if store._writer else 0
    for i in range(100, 105):
        store.push(make(f"{i}", persistent=False))
    assert (store._writer.size if store._writer else 0) == before
    got += drain(store, ack=False)
    assert bodies(got) == [str(i).encode() for i in range(105)]
    store.close()


def test_lazy_mode_keeps_the_window_tiny(tmp_path: Path, make: Factory) -> None:
    store = open_store(tmp_path / "q", mode="lazy")
    for i in range(2000):
        store.push(make(f"{i}", persistent=False))
    assert store.in_memory == 0 and len(store) == 2000
    assert store.peek().message.body == b"0"
    assert store.in_memory == 1
    out = []
    for _ in range(1000):
        out.append(store.shift())
        assert store.in_memory == 0
    out += drain(store, ack=False)
    assert bodies(out) == [str(i).encode() for i in range(2000)]
    store.set_mode("default")
    store.push(make("x", persistent=False))
    assert store.in_memory == 1
    with pytest.raises(ValueError):
        store.set_mode("eager")
    store.close()


def test_window_bytes_limit(tmp_path: Path, make: Factory) -> None:
    store = open_store(tmp_path / "q", window_messages=1000, window_bytes=1000)
    for _ in range(10):
        store.push(make(b"x" * 300, persistent=False))
    assert store.in_memory == 3 and len(store) == 10
    store.push(make(b"y" * 5000, persistent=False))  # bigger than the window: still queued
    assert bodies(drain(store))[-1] == b"y" * 5000
    store.close()


# ---- requeue, ack, purge --------------------------------------------------------------
def test_requeue_goes_back_to_original_position(tmp_path: Path, make: Factory) -> None:
    store = open_store(tmp_path / "q", window_messages=3)
    for i in range(10):
        store.push(make(f"{i}", persistent=i % 2 == 0))
    out = [store.shift() for _ in range(6)]
    store.requeue(out[4])
    store.requeue(out[0])
    store.requeue(out[2])
    assert store.peek() is out[0]
    assert len(store) == 7
    assert [e.seq for e in store] == [1, 3, 5, 7, 8, 9, 10]
    again = drain(store)
    assert bodies(again) == [b"0", b"2", b"4", b"6", b"7", b"8", b"9"]
    for e in out:
        store.ack(e)  # double acks (requeued then acked) are harmless
    store.close()


def test_a_message_written_again_keeps_its_deliveries(tmp_path: Path, make: Factory) -> None:
    """A quorum queue's return to the back: pushed again under a new seq with its delivery
    count; read back from the backlog, and after a restart, it is still redelivered."""
    path = tmp_path / "q"
    store = open_store(path, mode="lazy")
    for i in range(3):
        store.push(make(f"m{i}"))
    first = store.shift()
    back = make("m0")
    back.message = first.message
    back.redelivered, back.delivery_count = True, 2
    store.push(back)
    store.ack(first)
    assert store.in_memory == 0  # lazy: the returned message is in the backlog, on disk only
    got = [store.shift() for _ in range(3)]
    assert [(e.message.body, e.redelivered, e.delivery_count) for e in got] == [
        (b"m1", False, 0), (b"m2", False, 0), (b"m0", True, 2)]
    for e in got:
        store.requeue(e)
    store.close()
    store = open_store(path)
    assert [(e.message.body, e.redelivered, e.delivery_count) for e in drain(store)] == [
        (b"m1", True, 0), (b"m2", True, 0), (b"m0", True, 2)]
    store.close()


def test_ack_of_unknown_or_memory_entries_is_a_no_op(tmp_path: Path, make: Factory) -> None:
    store = open_store(tmp_path / "q")
    entry = make("x", persistent=False)
    store.push(entry)
    store.ack(store.shift())
    store.ack(make("never pushed"))
    assert len(store) == 0
    store.close()


def test_purge(tmp_path: Path, make: Factory) -> None:
    path = tmp_path / "q"
    store = open_store(path, window_messages=4, roll_size=1024)
    for i in range(100):
        store.push(make(f"{i:03d}", persistent=True))
    out = [store.shift() for _ in range(6)]
    store.requeue(out[0])
    assert store.purge() == 95
    assert len(store) == 0 and store.bytes == 0 and store.shift() is None
    assert list(store) == []
    store.push(make("after"))
    assert bodies(drain(store)) == [b"after"]
    store.close()
    store = open_store(path, window_messages=4, roll_size=1024)  # out[1:6] were never acked
    assert bodies(drain(store)) == [b"001", b"002", b"003", b"004", b"005"]
    store.close()
    store = open_store(path)
    assert len(store) == 0
    store.close()
    assert dir_size(path) == 0


# ---- segments and GC ------------------------------------------------------------------
def test_segments_roll_and_are_deleted_when_acked(tmp_path: Path, make: Factory) -> None:
    path = tmp_path / "q"
    store = open_store(path, mode="lazy", roll_size=4096, gc_min_size=1024)
    for i in range(1000):
        store.push(make(b"%04d" % i + b"." * 96))
    files = segment_files(path)
    assert len(files) >= 25
    assert dir_size(path) > 100_000
    out = [store.shift() for _ in range(500)]
    assert len(segment_files(path)) == len(files)  # delivered but unacked: kept
    for e in out:
        store.ack(e)
    store.flush()
    assert len(segment_files(path)) <= len(files) // 2 + 1
    drain(store)
    store.flush()
    assert dir_size(path) < 4096 + 1024
    assert store.segment_count <= 1
    store.close()


def test_acked_out_of_order_segment_survives_until_last_ack(tmp_path: Path,
                                                            make: Factory) -> None:
    path = tmp_path / "q"
    store = open_store(path, mode="lazy", roll_size=1024)
    for i in range(40):
        store.push(make(b"%02d" % i + b"." * 100))
    out = [store.shift() for _ in range(40)]
    first = segment_files(path)[0]
    for e in out[1:]:
        store.ack(e)
    assert first in segment_files(path)
    store.ack(out[0])
    assert first not in segment_files(path)
    store.close()


# ---- recovery -------------------------------------------------------------------------
def test_recovery_replays_acks_and_marks_redelivered(tmp_path: Path, make: Factory) -> None:
    path = tmp_path / "q"
    store = open_store(path, window_messages=8, roll_size=2048)
    for i in range(100):
        store.push(make(f"{i}", persistent=True))
    out = [store.shift() for _ in range(60)]
    for e in out[:40]:
        store.ack(e)
    store.close()
    store = open_store(path, window_messages=8, roll_size=2048)
    assert len(store) == 60 and store.last_seq == 60
    assert store.bytes == sum(len(str(i)) for i in range(40, 100))
    listed = [(e.seq, e.message.body, e.redelivered) for e in store]
    first = [store.shift() for _ in range(15)]
    assert [(e.seq, e.message.body, e.redelivered) for e in first] == listed[:15]
    assert [(e.seq, e.message.body, e.redelivered) for e in store] == listed[15:]
    for e in reversed(first):
        store.requeue(e)
    got = drain(store)
    assert [(e.seq, e.message.body, e.redelivered) for e in got] == listed
    assert bodies(got) == [str(i).encode() for i in range(40, 100)]
    assert [e.seq for e in got] == list(range(1, 61))
    assert [e.redelivered for e in got] == [True] * 20 + [False] * 40
    store.close()
    store = open_store(path)
    assert len(store) == 0
    store.close()


def test_transient_messages_are_not_recovered(tmp_path: Path, make: Factory) -> None:
    path = tmp_path / "q"
    store = open_store(path, window_messages=5)
    for i in range(30):
        store.push(make(f"{i}", persistent=i % 2 == 0))
    store.close()
    store = open_store(path)
    assert bodies(drain(store)) == [str(i).encode() for i in range(0, 30, 2)]
    store.close()


def test_new_messages_queue_after_recovered_ones(tmp_path: Path, make: Factory) -> None:
    path = tmp_path / "q"
    store = open_store(path, window_messages=2)
    for i in range(5):
        store.push(make(f"old{i}"))
    store.close()
    store = open_store(path, window_messages=2)
    fresh = Factory()
    fresh.seq = store.last_seq
    for i in range(5):
        store.push(fresh(f"new{i}", persistent=i % 2 == 0))
    got = drain(store)
    assert [e.seq for e in got] == list(range(1, 11))
    assert bodies(got) == [f"old{i}".encode() for i in range(5)] + \
        [f"new{i}".encode() for i in range(5)]
    store.close()


def test_torn_tail_is_truncated(tmp_path: Path, make: Factory) -> None:
    path = tmp_path / "q"
    store = open_store(path, mode="lazy")
    offsets = []
    for i in range(50):
        store.push(make(f"message {i}"))
        offsets.append(store._writer.size)
    crash(store)
    seg = path / segment_files(path)[0]
    assert not (path / "00000001.idx").exists()
    os.truncate(seg, seg.stat().st_size - 5)
    store = open_store(path, mode="lazy")
    assert seg.stat().st_size == offsets[48]  # the torn 50th record is gone
    assert bodies(drain(store)) == [f"message {i}".encode() for i in range(49)]
    store.close()


def test_corrupt_record_in_the_middle_of_the_last_segment(tmp_path: Path,
                                                          make: Factory) -> None:
    path = tmp_path / "q"
    store = open_store(path, mode="lazy")
    starts = []
    for i in range(50):
        store.push(make(f"message {i:02d}"))
        starts.append(store._writer.size)
    starts = [segment.FILE_HEADER_SIZE] + starts[:-1]
    crash(store)
    seg = path / segment_files(path)[0]
    data = bytearray(seg.read_bytes())
    data[starts[25] + 30] ^= 0xFF
    seg.write_bytes(bytes(data))
    store = open_store(path, mode="lazy")
    assert seg.stat().st_size == starts[25]
    assert bodies(drain(store)) == [f"message {i:02d}".encode() for i in range(25)]
    store.close()


def test_sealed_segments_are_not_read_at_recovery(tmp_path: Path, make: Factory,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "q"
    store = open_store(path, mode="lazy", roll_size=2048)
    for i in range(300):
        store.push(make(f"{i}"))
    crash(store)  # the last segment has no index
    scanned: list[str] = []
    real_scan = segment.scan
    monkeypatch.setattr(recovery, "scan", lambda p: scanned.append(p.name) or real_scan(p))
    store = open_store(path, mode="lazy", roll_size=2048)
    assert scanned == [segment_files(path)[-1]]  # only the crashed one
    assert len(store) == 300
    store.close()
    scanned.clear()
    store = open_store(path, mode="lazy", roll_size=2048)
    assert scanned == []
    assert bodies(drain(store)) == [str(i).encode() for i in range(300)]
    store.close()


def test_ack_file_with_torn_entry(tmp_path: Path, make: Factory) -> None:
    path = tmp_path / "q"
    store = open_store(path, mode="lazy")
    for i in range(10):
        store.push(make(f"{i}"))
    for e in [store.shift() for _ in range(3)]:
        store.ack(e)
    store.close()
    ack = path / "00000001.ack"
    with open(ack, "ab") as f:
        f.write(b"\x01\x02\x03")  # a torn entry
    store = open_store(path, mode="lazy")
    assert ack.stat().st_size % 8 == 0
    got = [store.shift() for _ in range(2)]
    for e in got:
        store.ack(e)
    store.close()
    store = open_store(path, mode="lazy")
    assert bodies(drain(store)) == [str(i).encode() for i in range(5, 10)]
    store.close()


def test_expiry_survives_paging_and_restart(tmp_path: Path, make: Factory) -> None:
    """Deadlines are stored as wall-clock time and mapped back onto the queue's clock."""
    path = tmp_path / "q"
    store = open_store(path, mode="lazy", clock=lambda: 1000.0)
    for i in range(2):
        entry = make(f"ttl{i}")
        entry.expires = 1005.0
        store.push(entry)
    store.push(make("no ttl"))
    back = store.shift()
    assert back.expires == pytest.approx(1005.0, abs=0.05)
    store.close()
    store = open_store(path, mode="lazy", clock=lambda: 50.0)  # a new process, a new clock
    got = drain(store)
    assert [e.message.body for e in got] == [b"ttl0", b"ttl1", b"no ttl"]
    assert got[1].expires == pytest.approx(55.0, abs=0.05)
    assert got[2].expires is None
    store.close()


def test_group_commit_covers_pushes(tmp_path: Path, make: Factory,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    gc = GroupCommit()
    store = open_store(tmp_path / "q", group_commit=gc)
    results: list[bool] = []
    for i in range(10):
        store.push(make(f"{i}"))
    gc.when_durable(results.append)
    assert gc.flush_now() is True
    assert results == [True]
    assert len(synced) == 2  # the segment and the directory (a new file was created)
    assert (tmp_path / "q" / "00000001.seg").stat().st_size > 10 * 20
    store.close()
    gc.flush_now()


def test_a_closed_store_writes_nothing(tmp_path: Path, make: Factory) -> None:
    """What a clean stop's last moments must not do: an expiry after the stores closed took
    the message out of ``src`` (its delivered mark reached the disk, its ack did not) and
    dead-lettered it into ``dst``, whose empty store made a new segment; after the restart both
    held it. Now nothing of a change after the close reaches the files."""
    gc = GroupCommit()
    src = open_store(tmp_path / "src", group_commit=gc)
    dst = open_store(tmp_path / "dst", group_commit=gc)
    src.push(make("m"))
    gc.flush_now()
    src.close()
    dst.close()
    gc.flush_now()
    files = {p: p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()}

    entry = src.shift()
    assert entry is not None
    src.ack(entry)
    with pytest.raises(ms.StoreClosed):
        dst.push(make("m"))
    gc.flush_now()
    assert {p: p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()} == files

    src, dst = open_store(tmp_path / "src"), open_store(tmp_path / "dst")
    assert [(e.message.body, e.redelivered) for e in drain(src)] == [(b"m", False)]
    assert len(dst) == 0
    src.close()
    dst.close()


def test_non_durable_store_is_scratch(tmp_path: Path, make: Factory) -> None:
    path = tmp_path / "scratch" / "1"
    path.mkdir(parents=True)
    (path / "00000001.seg").write_bytes(b"left over")
    store = open_store(path, durable=False, mode="lazy")
    assert len(store) == 0
    for i in range(10):
        store.push(make(f"{i}"))
    assert segment_files(path) == ["00000001.seg"]  # the left-over was wiped first
    assert [e.message.body for e in drain(store, ack=False)] == [b"%d" % i for i in range(10)]
    store.delete()
    assert not path.exists()
    store.ack(make("late ack after delete"))


def test_big_messages_across_small_buffers(tmp_path: Path, make: Factory) -> None:
    path = tmp_path / "q"
    sizes = [0, 1, 100_000, 300, 2_000_000, 5]
    store = open_store(path, mode="lazy", roll_size=1_000_000, read_ahead=1024,
                       write_buffer=512)
    for i, size in enumerate(sizes):
        store.push(make(bytes([65 + i]) * size))
    assert store.bytes == sum(sizes)
    out = [store.shift() for _ in range(3)]
    assert [len(e.message.body) for e in out] == sizes[:3]
    store.close()
    store = open_store(path, mode="lazy", read_ahead=1024)
    got = drain(store)
    assert [e.message.body for e in got] == [bytes([65 + i]) * n for i, n in enumerate(sizes)]
    store.close()


def test_module_sizes() -> None:
    """Each module stays small enough to read in one sitting."""
    root = Path(ms.__file__).parent
    for name in ("record", "segment", "acks", "sync", "cursor", "recovery", "message_store",
                 "definitions_file", "datadir", "perf", "message", "backlog", "requeue",
                 "window"):
        lines = (root / f"{name}.py").read_text().count("\n")
        assert lines < 450, name


def test_no_descriptor_leaks(tmp_path: Path, make: Factory) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    gc = GroupCommit()
    for round_ in range(3):
        store = open_store(tmp_path / "q", mode="lazy", roll_size=2048, group_commit=gc)
        for i in range(200):
            store.push(make(f"{round_}-{i}"))
        for e in [store.shift() for _ in range(150)]:
            store.ack(e)
        assert open_fds() - before <= 6  # writer, directory, cursor, two ack files (+1 slack)
        gc.flush_now()
        store.close()
        gc.flush_now()
    store = open_store(tmp_path / "q", mode="lazy", group_commit=gc)
    store.shift()
    store.delete()
    gc.flush_now()
    assert open_fds() == before
