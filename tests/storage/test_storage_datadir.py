"""Data directory: lock, clear errors, layout, scratch wipe, free space."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from storage.datadir import DataDir, DataDirError, DataDirLocked, disk_free, queue_dir_name


def test_open_creates_layout(tmp_path: Path) -> None:
    with DataDir(tmp_path / "data" / "nested") as data:
        assert (data.path / "LOCK").exists()
        assert data.queues_path.is_dir()
        assert data.definitions_path.parent == data.path
        assert data.disk_free() > 0
        assert disk_free(tmp_path) > 0


def test_second_open_fails_with_clear_error(tmp_path: Path) -> None:
    first = DataDir(tmp_path / "data")
    with pytest.raises(DataDirLocked) as info:
        DataDir(tmp_path / "data")
    text = str(info.value)
    assert str(tmp_path / "data") in text and "another broker" in text
    assert f"pid {os.getpid()}" in text
    first.close()
    DataDir(tmp_path / "data").close()  # free again


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            sys.path.insert(0, {str(root)!r})
            from storage.datadir import DataDir
            d = DataDir({str(tmp_path / "data")!r})
            print("locked", flush=True)
            time.sleep(30)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(DataDirLocked, match=f"pid {child.pid}"):
            DataDir(tmp_path / "data")
    finally:
        child.kill()
        child.wait()
    DataDir(tmp_path / "data").close()  # the kernel released the lock with the process


def test_uncreatable_dir(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(DataDirError, match="cannot create data directory .*file/data"):
        DataDir(tmp_path / "file" / "data")


def test_unwritable_dir_even_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def readonly_fs(path: object, flags: int, *args: object) -> int:
        if str(path).endswith("LOCK") and flags & os.O_CREAT:
            raise OSError(30, "Read-only file system")
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", readonly_fs)
    with pytest.raises(DataDirError, match=f"{tmp_path}.*not writable: Read-only file system"):
        DataDir(tmp_path)


def test_scratch_is_wiped_at_open(tmp_path: Path) -> None:
    with DataDir(tmp_path) as data:
        scratch = data.scratch_dir()
        scratch.mkdir()
        (scratch / "00000001.seg").write_bytes(b"old")
        assert data.scratch_dir() != scratch
    with DataDir(tmp_path) as data:
        assert list((tmp_path / "scratch").iterdir()) == []


def test_queue_dirs_for_any_name(tmp_path: Path) -> None:
    names = [("/", "q"), ("/", "../../etc"), ("/", "a/b"), ("vh", "a/b"), ("/", "."),
             ("/", "ü" * 127), ("/", "x" * 255), ("/", "Q"), ("/", "")]
    dirs = {queue_dir_name(v, n) for v, n in names}
    assert len(dirs) == len(names)
    for d in dirs:
        assert "/" not in d and d not in (".", "..") and len(d.encode()) < 100
    assert queue_dir_name("/", "orders.eu-1").startswith("orders_eu-1-")
    with DataDir(tmp_path) as data:
        for vhost, name in names:
            path = data.create_queue_dir(vhost, name)
            assert path.parent == data.queues_path
            assert data.create_queue_dir(vhost, name) == path
        assert sorted(v for v in data.queue_dirs().values() if v) == sorted(names)
        data.remove_queue_dir("/", "a/b")
        assert not data.queue_dir("/", "a/b").exists()
