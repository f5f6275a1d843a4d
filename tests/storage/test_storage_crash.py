"""The disk store against real failure: kill -9 of the writing process, a full disk."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from storage_helpers import Factory, drain

from storage import segment
from storage.message_store import SegmentQueueStore
from storage.sync import GroupCommit

ROOT = Path(__file__).resolve().parents[2]


def test_kill_9_after_group_commit(tmp_path: Path) -> None:
    """Confirmed (fsynced) messages and written acks survive SIGKILL; delivered-unacked ones
    come back flagged redelivered; the unflushed tail of the last segment is handled."""
    script = textwrap.dedent(f"""
        import asyncio, os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from storage_helpers import Factory
        from storage.message_store import SegmentQueueStore
        from storage.sync import GroupCommit

        async def main():
            gc = GroupCommit()
            store = SegmentQueueStore({str(tmp_path / "q")!r}, window_messages=16,
                                      roll_size=4096, group_commit=gc)
            make = Factory()
            for i in range(300):
                store.push(make(f"m{{i}}", persistent=i % 3 != 2))
            out = [store.shift() for _ in range(100)]
            for e in out[:50]:
                store.ack(e)
            ok = await gc.sync()
            print("synced", ok, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert "synced True" in child.stdout
    store = SegmentQueueStore(tmp_path / "q", window_messages=16, roll_size=4096)
    expected = [f"m{i}".encode() for i in range(50, 300) if i % 3 != 2]
    assert len(store) == len(expected) == store.last_seq
    got = drain(store)
    assert [e.message.body for e in got] == expected
    redelivered = [e.message.body for e in got if e.redelivered]
    assert redelivered == [f"m{i}".encode() for i in range(50, 100) if i % 3 != 2]
    store.close()


def test_disk_full_keeps_the_store_usable(tmp_path: Path, make: Factory,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    gc = GroupCommit()
    store = SegmentQueueStore(tmp_path / "q", mode="lazy", group_commit=gc, roll_size=2048,
                              write_buffer=512)
    real_write = os.write

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    results: list[bool] = []
    for i in range(50):  # crosses the buffer limit and the roll size: both refused
        store.push(make(f"{i:02d}" + "." * 60))
    gc.when_durable(results.append)
    assert gc.flush_now() is False
    assert results == [False]
    assert len(store) == 50
    first = [store.shift() for _ in range(10)]  # still readable from the write buffer
    assert [e.message.body[:2] for e in first] == [b"%02d" % i for i in range(10)]
    monkeypatch.setattr(os, "write", real_write)
    gc.when_durable(results.append)
    assert gc.flush_now() is True
    assert results == [False, True]
    for e in first[:5]:
        store.ack(e)
    store.close()
    gc.flush_now()
    store = SegmentQueueStore(tmp_path / "q", mode="lazy")
    assert [e.message.body[:2] for e in drain(store)] == [b"%02d" % i for i in range(5, 50)]
    store.close()


def test_first_seq_chains_sub_stores(tmp_path: Path, make: Factory) -> None:
    for name in ("p0", "p1"):
        store = SegmentQueueStore(tmp_path / name)
        for i in range(3):
            store.push(make(f"{name}-{i}"))
        store.close()
    a = SegmentQueueStore(tmp_path / "p0", first_seq=0)
    b = SegmentQueueStore(tmp_path / "p1", first_seq=a.last_seq)
    assert (a.last_seq, b.last_seq) == (3, 6)
    assert [e.seq for e in drain(b)] == [4, 5, 6]
    assert [e.seq for e in drain(a)] == [1, 2, 3]
    a.close()
    b.close()


def test_unknown_segment_version_refuses_to_open(tmp_path: Path) -> None:
    path = tmp_path / "q"
    path.mkdir()
    (path / "00000001.seg").write_bytes(segment.FILE_HEADER.pack(segment.MAGIC, 2, 0, 1))
    with pytest.raises(segment.SegmentFormatError, match="version 2"):
        SegmentQueueStore(path)
    assert (path / "00000001.seg").exists()  # never destroyed
