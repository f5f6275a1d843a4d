"""A leader data directory written through storage's real API, with a replication server as
its sink, and followers of it in the same event loop."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from broker.cluster.files import tree_digests
from broker.cluster.follower import ReplicationClient
from broker.cluster.isr import IsrTracker
from broker.cluster.leader import ReplicationServer
from storage import definitions_file as definitions
from storage.datadir import DataDir
from storage.message import Entry, Message
from storage.message_store import SegmentQueueStore
from storage.sync import GroupCommit

PERSISTENT = b"\x10\x00\x02"
SECRET = b"s3cret-of-the-cluster"


class LeaderNode:
    """A data directory and its replication server; ``queue(name)`` opens a durable store."""

    def __init__(self, root: Path, epoch: int = 7, tracker: IsrTracker | None = None,
                 **server_options: object) -> None:
        self.data = DataDir(root)
        self.server = ReplicationServer(self.data.path, "rabbit@leader", epoch, SECRET, tracker,
                                        **server_options)  # type: ignore[arg-type]
        self.data.sink = self.server
        self.group = GroupCommit()
        self.stores: dict[str, SegmentQueueStore] = {}
        self._seq = itertools.count(1)
        self.published = 0

    async def start(self) -> tuple[str, int]:
        port = await self.server.start()
        return "127.0.0.1", port

    def queue(self, name: str, **options: object) -> SegmentQueueStore:
        store = self.stores.get(name)
        if store is None:
            store = self.stores[name] = SegmentQueueStore(
                self.data.create_queue_dir("/", name), group_commit=self.group,
                sink=self.server, **options)  # type: ignore[arg-type]
        return store

    def publish(self, name: str, body: bytes, persistent: bool = True) -> None:
        props = PERSISTENT if persistent else b"\x00\x00"
        self.queue(name).push(Entry(next(self._seq), Message("ex", name, props, body, persistent)))
        self.published += 1

    def consume(self, name: str, count: int) -> int:
        store = self.queue(name)
        done = 0
        for _ in range(count):
            entry = store.shift()
            if entry is None:
                break
            store.ack(entry)
            done += 1
        return done

    async def save_definitions(self, doc: dict) -> None:
        """As the broker does: in an executor thread (the sink call crosses threads)."""
        await asyncio.get_running_loop().run_in_executor(
            None, definitions.save, self.data.definitions_path, doc, self.server)

    def delete_queue(self, name: str) -> None:
        self.stores.pop(name).delete()
        self.data.remove_queue_dir("/", name)

    async def sync(self) -> None:
        """Flush buffers (the sink hears the writes) and fsync, as a confirm would wait."""
        await self.group.sync()

    async def close(self) -> None:
        for store in self.stores.values():
            store.close()
        await self.group.sync()
        await self.server.stop()
        self.data.close()


def follower(root: Path, address: tuple[str, int], node: str = "rabbit@f1",
             secret: bytes = SECRET, **options: object) -> ReplicationClient:
    root.mkdir(parents=True, exist_ok=True)
    return ReplicationClient(root, node, secret, address, **options)  # type: ignore[arg-type]


async def caught_up(leader: LeaderNode, *clients: ReplicationClient,
                    timeout: float = 10.0) -> None:
    """Until every client has acked the leader's current position."""
    await leader.sync()
    deadline = asyncio.get_running_loop().time() + timeout
    while not all(c.acked >= leader.server.position and c.synced.is_set() for c in clients):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"not caught up: leader at {leader.server.position}, followers at "
                f"{[c.acked for c in clients]}")
        await asyncio.sleep(0.01)


def identical(a: Path, b: Path) -> None:
    left, right = tree_digests(a), tree_digests(b)
    assert left.keys() == right.keys(), (sorted(left.keys() ^ right.keys()))
    different = [name for name in left if left[name] != right[name]]
    assert not different, different
