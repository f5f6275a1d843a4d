"""Pieces of replication on their own: names, frames, the follower's file applier."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from broker.cluster import files, wire
from broker.cluster.applier import Applier, Diverged, fsync_all


@pytest.mark.parametrize("name", ["../etc/passwd", "/abs", "a//b", "a/./b", "a/..", "", "a\0b",
                                  "queues/../../x"])
def test_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        files.safe_path(tmp_path, name)


def test_what_is_replicated(tmp_path: Path) -> None:
    root = str(tmp_path)
    assert files.relative(root, root + "/queues/q-1/00000001.seg") == "queues/q-1/00000001.seg"
    assert files.relative(root, root + "/definitions.bin") == "definitions.bin"
    for local in ("/LOCK", "/cluster.state", "/scratch/1/00000001.seg", "/definitions.bin.tmp",
                  "/.probe-12"):
        assert files.relative(root, root + local) is None, local
    assert files.relative(root, root + "x/elsewhere") is None
    assert files.relative(root, "/somewhere/else") is None
    (tmp_path / "queues" / "q").mkdir(parents=True)
    (tmp_path / "queues" / "q" / "a.seg").write_bytes(b"12345")
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "b.seg").write_bytes(b"x")
    (tmp_path / "LOCK").write_bytes(b"1")
    assert files.scan(tmp_path) == {"queues/q/a.seg": 5}


def test_epoch_state(tmp_path: Path) -> None:
    assert files.load_epoch(tmp_path) == 0
    files.save_epoch(tmp_path, 42)
    assert files.load_epoch(tmp_path) == 42
    assert not list(tmp_path.glob("*.tmp"))


async def test_frames_round_trip() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(wire.append(7, "queues/q/1.seg", 16, b"data"))
    reader.feed_data(wire.rewrite(9, "definitions.bin", 10, 4, b"tail"))
    reader.feed_data(b"\x00\x00\x00\x02\x63x")  # unknown kind 99
    kind, r = await wire.read_frame(reader)
    assert kind == wire.Kind.APPEND
    assert (r.u64(), r.str(), r.u64(), r.rest()) == (7, "queues/q/1.seg", 16, b"data")
    kind, r = await wire.read_frame(reader)
    assert (kind, r.u64(), r.str(), r.u64(), r.u64(), r.rest()) == \
        (wire.Kind.REWRITE, 9, "definitions.bin", 10, 4, b"tail")
    with pytest.raises(wire.ProtocolError):
        await wire.read_frame(reader)
    huge = asyncio.StreamReader()
    huge.feed_data((wire.MAX_FRAME + 1).to_bytes(4, "big") + b"\x0b")
    with pytest.raises(wire.ProtocolError):
        await wire.read_frame(huge)
    with pytest.raises(wire.ProtocolError):
        wire.Reader(b"\x00").u64()


def test_macs_bind_the_secret_the_epoch_and_the_names() -> None:
    nf, nl = b"f" * 32, b"l" * 32
    mac = wire.leader_mac(b"secret", nf, nl, 5, "rabbit@a")
    assert mac == wire.leader_mac(b"secret", nf, nl, 5, "rabbit@a")
    assert mac != wire.leader_mac(b"other", nf, nl, 5, "rabbit@a")
    assert mac != wire.leader_mac(b"secret", nf, nl, 6, "rabbit@a")
    assert mac != wire.leader_mac(b"secret", nf, nl, 5, "rabbit@b")
    assert wire.follower_mac(b"secret", nl, nf, "rabbit@a") != mac


def test_applier(tmp_path: Path) -> None:
    applier = Applier(tmp_path, max_open=2)
    applier.append("q/1.seg", 0, b"head")
    applier.append("q/1.seg", 4, b"+more")
    with pytest.raises(Diverged):
        applier.append("q/1.seg", 4, b"again")  # not at the end: the copy diverged
    for i in range(3):  # more files than max_open: dirty ones wait for the batch
        applier.append(f"q/{i + 2}.seg", 0, b"x")
    assert applier.orphans >= 1
    applier.sync_write("q/1.seg", 2, b"AD")  # full sync: cut to 2 bytes, then write
    applier.rewrite("definitions.bin", 6, 0, b"abc")
    assert not (tmp_path / "definitions.bin").exists()  # not installed before its last chunk
    applier.rewrite("definitions.bin", 6, 3, b"def")
    applier.truncate("q/2.seg", 0)
    with pytest.raises(Diverged):
        applier.truncate("q/2.seg", 10)
    fds, dirs = applier.take_dirty()
    assert fds and tmp_path / "q" in dirs
    fsync_all(fds, dirs)
    assert not applier.dirty
    assert (tmp_path / "q" / "1.seg").read_bytes() == b"heAD"
    assert (tmp_path / "definitions.bin").read_bytes() == b"abcdef"
    assert (tmp_path / "q" / "2.seg").read_bytes() == b""
    applier.delete("q")  # a whole directory, with files still open
    applier.delete("q")  # twice is fine
    applier.delete("nothing/here")
    assert not (tmp_path / "q").exists()
    applier.append("q/1.seg", 0, b"reborn")  # the same names again, from scratch
    applier.close()
    assert (tmp_path / "q" / "1.seg").read_bytes() == b"reborn"


def test_applier_writes_ack_files_without_fsyncing_them(tmp_path: Path) -> None:
    """Streamed appends to ack files are applied but not fsynced (the leader never fsyncs
    them either); segments next to them are, and so is everything a full sync writes."""
    applier = Applier(tmp_path)
    (tmp_path / "q").mkdir()
    applier.append("q/00000001.ack", 0, b"12345678")
    assert not applier.dirty  # neither the file nor the new name in q
    applier.append("q/00000001.ack", 8, b"abcdefgh")
    assert (tmp_path / "q" / "00000001.ack").read_bytes() == b"12345678abcdefgh"
    applier.append("q/00000001.seg", 0, b"message")
    fds, dirs = applier.take_dirty()
    assert len(fds) == 1 and dirs == [tmp_path / "q"]  # the segment and its new name
    fsync_all(fds, dirs)
    applier.sync_write("q/00000002.ack", 0, b"synced!!")  # a full sync: fsynced
    fds, dirs = applier.take_dirty()
    assert len(fds) == 1
    fsync_all(fds, dirs)
    applier.append("q/00000001.acks", 0, b"x")  # not an ack file's name
    assert applier.dirty
    applier.close()
