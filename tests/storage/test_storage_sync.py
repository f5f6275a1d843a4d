"""GroupCommit: batching (few fsyncs for many callbacks), off-loop fsync, failures."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from pathlib import Path

import pytest

from storage.sync import DirectoryHandle, GroupCommit


class File:
    """A Flushable over a real file, with buffered appends like the segment writer."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.buf = bytearray()
        self.fail_writes = False

    def write(self, data: bytes) -> None:
        self.buf += data

    def flush(self) -> None:
        if self.fail_writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        if self.buf:
            os.write(self.fd, self.buf)
            self.buf.clear()

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Patched os.fsync: records (fd, thread name), sleeps a little like a real disk."""
    calls: list[tuple[int, str]] = []
    real = os.fsync

    def fake(fd: int) -> None:
        calls.append((fd, threading.current_thread().name))
        time.sleep(0.002)
        real(fd)

    monkeypatch.setattr(os, "fsync", fake)
    return calls


async def test_many_callbacks_few_fsyncs(tmp_path: Path, fsyncs: list) -> None:
    files = [File(tmp_path / f"f{i}") for i in range(3)]
    gc = GroupCommit()
    results: list[bool] = []
    for i in range(1000):
        f = files[i % 3]
        f.write(b"x" * 100)
        gc.touch(f)
        gc.when_durable(results.append)
    assert fsyncs == []  # nothing happens inside the writer's call
    assert await gc.sync() is True
    assert results == [True] * 1000
    assert len(fsyncs) == 3  # one per touched file, in one batch
    assert all(name != threading.main_thread().name for _, name in fsyncs)
    assert sum((tmp_path / f"f{i}").stat().st_size for i in range(3)) == 100_000
    for f in files:
        f.close()


async def test_group_commit_under_continuous_load(tmp_path: Path, fsyncs: list) -> None:
    f = File(tmp_path / "f")
    gc = GroupCommit()
    results: list[tuple[int, bool]] = []
    for i in range(400):  # one write + one confirm waiter per loop turn
        f.write(b"y" * 10)
        gc.touch(f)
        gc.when_durable(lambda ok, i=i: results.append((i, ok)))
        await asyncio.sleep(0)
    await gc.sync()
    assert [i for i, _ in results] == list(range(400))  # in registration order
    assert all(ok for _, ok in results)
    assert len(fsyncs) < 100  # each fsync (2 ms) covers many loop turns
    assert gc.batches < 400
    f.close()


async def test_callback_waits_for_fsync_of_data_written_before(tmp_path: Path,
                                                               fsyncs: list) -> None:
    f = File(tmp_path / "f")
    gc = GroupCommit()
    seen: list[int] = []
    f.write(b"a")
    gc.touch(f)
    gc.when_durable(lambda ok: seen.append(len(fsyncs)))
    await asyncio.sleep(0)  # batch 1 starts
    f.write(b"b")
    gc.touch(f)
    gc.when_durable(lambda ok: seen.append(len(fsyncs)))
    await gc.sync()
    assert seen == [1, 2]
    f.close()


async def test_each_batch_reads_the_mark_after_its_writes(tmp_path: Path,
                                                         fsyncs: list) -> None:
    """``durable_mark`` in a callback is the mark as its batch read it after writing out the
    buffers (the replication sink's position in cluster mode), not what came later."""
    f = File(tmp_path / "f")
    gc = GroupCommit()
    written = [0]

    def mark() -> int:
        return written[0] + os.fstat(f.fd).st_size  # what reached the file so far

    gc.mark = mark
    seen: list[int | None] = []
    f.write(b"abc")
    gc.touch(f)
    gc.when_durable(lambda ok: seen.append(gc.durable_mark))
    await asyncio.sleep(0)  # batch 1 wrote "abc" and read the mark: 3
    written[0] = 100  # written meanwhile: not covered by batch 1
    f.write(b"de")
    gc.touch(f)
    gc.when_durable(lambda ok: seen.append(gc.durable_mark))
    await gc.sync()
    assert seen == [3, 105]
    f.close()


async def test_nothing_dirty_still_answers(tmp_path: Path, fsyncs: list) -> None:
    gc = GroupCommit()
    assert await gc.sync() is True
    assert fsyncs == []


async def test_fsync_failure_reports_false_then_recovers(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    f = File(tmp_path / "f")
    gc = GroupCommit()
    real = os.fsync

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    results: list[bool] = []
    f.write(b"data")
    gc.touch(f)
    for _ in range(5):
        gc.when_durable(results.append)
    await gc.sync()
    assert results == [False] * 5
    assert gc.errors >= 1
    monkeypatch.setattr(os, "fsync", real)
    f.write(b"more")
    gc.touch(f)
    assert await gc.sync() is True
    f.close()


async def test_write_failure_reports_false_and_retries(tmp_path: Path) -> None:
    f = File(tmp_path / "f")
    gc = GroupCommit(retry_delay=0.01)
    f.write(b"kept")
    f.fail_writes = True
    gc.touch(f)
    assert await gc.sync() is False
    assert f.buf == b"kept"  # still buffered, nothing lost
    f.fail_writes = False
    assert await gc.sync() is True
    assert (tmp_path / "f").read_bytes() == b"kept"
    f.close()


def test_flush_now_without_a_loop(tmp_path: Path, fsyncs: list) -> None:
    f = File(tmp_path / "f")
    d = DirectoryHandle(tmp_path)
    gc = GroupCommit()
    results: list[bool] = []
    f.write(b"z")
    gc.touch(f)
    gc.touch(d)
    gc.touch(f)
    gc.when_durable(results.append)
    assert results == []
    assert gc.flush_now() is True
    assert results == [True] and len(fsyncs) == 2
    assert gc.idle
    f.close()
    d.close()


def test_handoff_keeps_a_closed_file_covered(tmp_path: Path, fsyncs: list) -> None:
    f = File(tmp_path / "f")
    gc = GroupCommit()
    f.write(b"last words")
    gc.touch(f)
    gc.handoff(f)
    f.close()
    assert gc.flush_now() is True
    assert len(fsyncs) == 1
    assert (tmp_path / "f").read_bytes() == b"last words"


def test_flush_only_files_are_not_fsynced(tmp_path: Path, fsyncs: list) -> None:
    f = File(tmp_path / "f")
    gc = GroupCommit()
    f.write(b"ack entries")
    gc.touch(f, sync=False)
    assert gc.flush_now() is True
    assert fsyncs == []
    assert (tmp_path / "f").read_bytes() == b"ack entries"
    f.close()
