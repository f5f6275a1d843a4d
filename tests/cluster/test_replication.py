"""Replication of a data directory over real TCP: full sync, streaming, restarts, refusals.

The leader's directory is written through storage's real store API (segments, ack logs,
indexes, QUEUE files, definitions saved from an executor thread); followers must end with
byte-identical copies (sha256 of every replicated file).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from replication_helpers import SECRET, LeaderNode, caught_up, follower, identical

from broker.cluster import files
from broker.cluster.follower import AuthFailed, EpochRefused


def fill(leader: LeaderNode, queues: int, messages: int, size: int) -> None:
    for q in range(queues):
        for i in range(messages):
            leader.publish(f"q{q}", bytes([65 + i % 26]) * size)


async def test_full_sync_then_streaming_gives_identical_copies(tmp_path: Path) -> None:
    leader = LeaderNode(tmp_path / "leader")
    address = await leader.start()
    fill(leader, 3, 200, 700)
    leader.queue("q0", roll_size=64 * 1024)
    await leader.save_definitions({"queues": ["q0", "q1", "q2"]})
    leader.consume("q1", 50)
    await leader.sync()
    one = follower(tmp_path / "f1", address)
    two = follower(tmp_path / "f2", address, node="rabbit@f2")
    one.start()
    two.start()
    await asyncio.wait_for(one.synced.wait(), 10)
    # streamed: publishes, acks, a rolled and deleted segment, a rewrite, a queue deleted
    small = leader.queue("rolls", roll_size=8 * 1024, gc_min_size=0)
    for i in range(100):
        leader.publish("rolls", b"r" * 500)
        if i % 3 == 0:
            leader.consume("rolls", 1)
    leader.consume("rolls", 200)
    fill(leader, 2, 50, 3000)
    await leader.save_definitions({"queues": ["q0", "q1", "rolls"]})
    leader.publish("doomed", b"x")
    await leader.sync()
    leader.delete_queue("doomed")
    small.close()
    leader.stores.pop("rolls")
    await caught_up(leader, one, two)
    identical(leader.data.path, one.root)
    identical(leader.data.path, two.root)
    assert one.sessions == two.sessions == 1
    assert not (one.root / "LOCK").exists()
    assert one.epoch == files.load_epoch(one.root) == 7
    await one.stop()
    await two.stop()
    await leader.close()


async def test_follower_killed_and_restarted_mid_sync(tmp_path: Path) -> None:
    leader = LeaderNode(tmp_path / "leader")
    address = await leader.start()
    fill(leader, 2, 1500, 4000)  # ~12 MB to sync
    await leader.sync()
    writing = True

    async def keep_writing() -> None:
        i = 0
        while writing:
            leader.publish(f"q{i % 3}", b"w" * 2000)
            if i % 5 == 0:
                leader.consume("q0", 1)
            if i % 50 == 0:
                await leader.sync()
            i += 1
            await asyncio.sleep(0)

    writer = asyncio.create_task(keep_writing())
    root = tmp_path / "f1"
    for round in range(2):  # killed twice in the middle of its full sync
        client = follower(root, address)
        client.start()
        deadline = asyncio.get_running_loop().time() + 10
        while sum(f.stat().st_size for f in root.rglob("*.seg")) < (round + 1) * 3_000_000:
            assert asyncio.get_running_loop().time() < deadline, "sync made no progress"
            await asyncio.sleep(0.002)
        assert not client.synced.is_set()
        await client.stop()  # cancelled at an await: what it wrote stays, nothing acked
    client = follower(root, address)
    client.start()
    await asyncio.wait_for(client.synced.wait(), 20)
    await asyncio.sleep(0.2)  # streaming while the leader writes on
    writing = False
    await writer
    await caught_up(leader, client)
    identical(leader.data.path, root)
    assert client.sessions == 1  # no divergence: nothing missed or sent twice
    await client.stop()
    await leader.close()


async def test_restarted_follower_resyncs_only_what_differs(tmp_path: Path) -> None:
    leader = LeaderNode(tmp_path / "leader")
    address = await leader.start()
    fill(leader, 1, 300, 1000)
    client = follower(tmp_path / "f1", address)
    client.start()
    await caught_up(leader, client)
    await client.stop()
    fill(leader, 1, 10, 1000)  # missed while away
    (tmp_path / "f1" / "stray.bin").write_bytes(b"not on the leader")
    seg = sorted((tmp_path / "f1").rglob("*.seg"))[0]
    with open(seg, "r+b") as f:  # a damaged byte in the middle: resent whole
        f.seek(100)
        f.write(b"\xff")
    sent = []
    original = leader.server._full_sync

    async def spy(session, caps, theirs):  # type: ignore[no-untyped-def]
        sent.append(dict(theirs))
        await original(session, caps, theirs)

    leader.server._full_sync = spy  # type: ignore[method-assign]
    client = follower(tmp_path / "f1", address)
    client.start()
    await caught_up(leader, client)
    identical(leader.data.path, client.root)
    assert not (tmp_path / "f1" / "stray.bin").exists()
    assert sent and any(name.endswith(".seg") for name in sent[0])
    await client.stop()
    await leader.close()


async def test_follower_refuses_a_lower_epoch_and_the_wrong_secret(tmp_path: Path) -> None:
    (tmp_path / "f1").mkdir()
    files.save_epoch(tmp_path / "f1", 9)
    old = LeaderNode(tmp_path / "old", epoch=5)
    address = await old.start()
    old.publish("q", b"from an old leader")
    client = follower(tmp_path / "f1", address)
    with pytest.raises(EpochRefused):
        await client.run()
    assert not list((tmp_path / "f1").rglob("*.seg"))  # nothing of it was applied
    await old.close()

    new = LeaderNode(tmp_path / "new", epoch=12)
    address = await new.start()
    new.publish("q", b"from the new leader")
    with pytest.raises(AuthFailed):
        await follower(tmp_path / "f1", address, secret=b"wrong").run()
    client = follower(tmp_path / "f1", address)
    client.start()
    await caught_up(new, client)
    assert files.load_epoch(tmp_path / "f1") == 12  # saved before any data
    identical(new.data.path, tmp_path / "f1")
    await client.stop()
    await new.close()


async def test_a_diverged_copy_is_repaired_by_a_resync(tmp_path: Path) -> None:
    leader = LeaderNode(tmp_path / "leader")
    address = await leader.start()
    leader.publish("q", b"a" * 100)
    client = follower(tmp_path / "f1", address)
    client.start()
    await caught_up(leader, client)
    seg = sorted((tmp_path / "f1").rglob("*.seg"))[0]
    with open(seg, "ab") as f:
        f.write(b"garbage")  # the next append finds the wrong size...
    assert client._applier is not None
    client._applier._forget(str(seg.relative_to(tmp_path / "f1")))  # ...once it reopens it
    leader.publish("q", b"b" * 100)
    await leader.sync()
    deadline = asyncio.get_running_loop().time() + 10
    while client.sessions < 2 or not client.synced.is_set():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    await caught_up(leader, client)
    identical(leader.data.path, client.root)
    await client.stop()
    await leader.close()


async def test_a_slow_reader_is_cut_off_not_buffered_forever(tmp_path: Path) -> None:
    leader = LeaderNode(tmp_path / "leader", max_buffer=256 * 1024)
    address = await leader.start()
    client = follower(tmp_path / "f1", address)
    client.start()
    await caught_up(leader, client)
    # the follower's loop is ours: stop it reading by pausing its transport
    assert client._writer is not None
    transport = client._writer.transport
    assert isinstance(transport, asyncio.ReadTransport)
    transport.pause_reading()
    for _ in range(40):
        for _ in range(10):
            leader.publish("q", b"z" * 32000)
        await leader.sync()
    deadline = asyncio.get_running_loop().time() + 5
    while "rabbit@f1" in leader.server.sessions:
        assert asyncio.get_running_loop().time() < deadline, "never cut off"
        await asyncio.sleep(0.01)
    transport.resume_reading()
    await caught_up(leader, client)  # it comes back and resyncs
    identical(leader.data.path, client.root)
    await client.stop()
    await leader.close()


async def test_changes_between_the_snapshot_and_the_read_are_neither_lost_nor_doubled(
        tmp_path: Path) -> None:
    """Right after the snapshot (before any file is read) the leader appends to files, deletes
    a queue whose files are in the snapshot and re-creates it, rewrites definitions."""
    leader = LeaderNode(tmp_path / "leader")
    address = await leader.start()
    fill(leader, 2, 100, 1000)
    leader.publish("doomed", b"d" * 1000)
    await leader.save_definitions({"v": 1})
    await leader.sync()
    original = leader.server._full_sync

    async def meddle(session, caps, theirs):  # type: ignore[no-untyped-def]
        assert any(name.startswith("queues/doomed") for name in caps)
        fill(leader, 2, 20, 1000)  # appends past the caps
        leader.publish("doomed", b"more")
        await leader.sync()
        leader.delete_queue("doomed")  # gone before it is read
        leader.publish("doomed", b"reborn")  # same names again
        await leader.sync()
        await leader.save_definitions({"v": 2, "pad": "x" * 5000})  # grows past its cap
        await original(session, caps, theirs)

    leader.server._full_sync = meddle  # type: ignore[method-assign]
    client = follower(tmp_path / "f1", address)
    client.start()
    await caught_up(leader, client)
    identical(leader.data.path, client.root)
    assert client.sessions == 1
    await client.stop()
    await leader.close()


async def test_follower_process_sigkilled_mid_sync_then_restarted(tmp_path: Path) -> None:
    """A real ``kill -9`` of a follower process in the middle of its full sync."""
    leader = LeaderNode(tmp_path / "leader")
    address = await leader.start()
    fill(leader, 2, 1500, 4000)  # ~12 MB
    await leader.sync()
    root = tmp_path / "f1"
    root.mkdir()
    script = Path(__file__).with_name("follower_main.py")
    args = [sys.executable, str(script), str(root), "rabbit@f1", SECRET.hex(), *map(str, address)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}

    async def spawn() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *args, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    proc = await spawn()
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while sum(f.stat().st_size for f in root.rglob("*.seg")) < 2_000_000:
            assert asyncio.get_running_loop().time() < deadline, "sync made no progress"
            leader.publish("q0", b"during" * 100)  # the leader keeps writing
            await asyncio.sleep(0.002)
        assert "rabbit@f1" not in leader.server.tracker._followers or \
            leader.server.tracker.acked_position("rabbit@f1") == 0  # not synced yet
        proc.kill()
        await proc.wait()
        fill(leader, 1, 100, 3000)
        proc = await spawn()
        deadline = asyncio.get_running_loop().time() + 30
        while leader.server.tracker.acked_position("rabbit@f1") < leader.server.position:
            assert asyncio.get_running_loop().time() < deadline, "never caught up"
            await leader.sync()
            await asyncio.sleep(0.02)
        identical(leader.data.path, root)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    await leader.close()
