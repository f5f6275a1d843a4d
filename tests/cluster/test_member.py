"""The confirm rule's pieces (ISR callbacks, ``ReplicatedDurability``), cluster settings, and
members' roles on a real etcd in one process (fake nodes): who leads, who follows, who steps
down."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from etcd_server import EtcdCluster

from broker.cluster import files
from broker.cluster.durability import ReplicatedDurability
from broker.cluster.isr import IsrTracker
from broker.cluster.keyspace import Fenced, Member
from broker.cluster.member import ClusterMember, Leadership
from broker.cluster.registration import Settings
from broker.node import conffile
from broker.node.config import ConfigError, parse_args


class Results:
    def __init__(self) -> None:
        self.got: list[bool] = []

    def __call__(self, ok: bool) -> None:
        self.got.append(ok)


async def test_callbacks_wait_for_every_in_sync_follower() -> None:
    tracker = IsrTracker("L", None, min_insync=2, ack_deadline=5.0, initial=["f1", "f2"])
    tracker.produced(10)
    done = Results()
    tracker.when_replicated(10, done, 5.0)
    tracker.acked("f1", 10)
    assert done.got == []  # f2 has not acked
    tracker.acked("f2", 12)
    assert done.got == [True]
    tracker.when_replicated(10, done, 5.0)  # already replicated: at once
    assert done.got == [True, True]
    await tracker.stop()


async def test_callbacks_time_out_below_min_insync_and_fail_when_fenced() -> None:
    tracker = IsrTracker("L", None, min_insync=2, ack_deadline=5.0)  # the leader alone
    tracker.produced(5)
    late = Results()
    tracker.when_replicated(5, late, 0.1)
    await asyncio.sleep(0.2)
    assert late.got == [False]

    class Deposed:
        async def set_isr(self, members: frozenset[str]) -> None:
            raise Fenced("deposed")

    fenced: list[Fenced] = []
    tracker = IsrTracker("L", Deposed(), min_insync=2, ack_deadline=5.0, initial=["f"],
                         on_fenced=fenced.append)
    tracker.connected("f")
    tracker.produced(5)
    held = Results()
    tracker.when_replicated(5, held, 5.0)
    tracker.disconnected("f")  # behind: dropped, but the fenced write fails
    await asyncio.sleep(0.05)
    assert held.got == [False] and len(fenced) == 1
    after = Results()
    tracker.when_replicated(1, after, 5.0)
    assert after.got == [False]


class LocalDisk:
    def __init__(self) -> None:
        self.saving: list[Any] = []
        self.durable_mark: int | None = None  # no batch mark: the sink's position
        self.saved_mark = 0
        self.mark: Any = None
        self.idle = False

    def set_mark(self, mark: Any) -> None:
        self.mark = mark

    def when_durable(self, callback: Any) -> None:
        callback(True)

    def when_saved(self, callback: Any) -> None:
        if self.idle:
            callback()  # no save pending: at once
        else:
            self.saving.append(callback)  # a definitions save in flight

    def write_through(self) -> None:
        pass


class Position:
    position = 7
    flushed = 0

    def flush(self) -> None:
        self.flushed += 1


class FakeLease:
    remaining = 1.0


async def test_a_confirm_needs_the_save_the_replicas_and_the_lease() -> None:
    tracker = IsrTracker("L", None, min_insync=1)
    tracker.produced(Position.position)
    disk, lease = LocalDisk(), FakeLease()
    durability = ReplicatedDurability(disk, Position(), tracker, lease, 1.0)  # type: ignore
    done = Results()
    durability.when_durable(done)
    assert done.got == []  # waits for the definitions save
    disk.saving.pop()()
    assert done.got == [True]
    lease.remaining = -0.1  # paused past the lease: nothing is confirmed any more
    durability.when_durable(done)
    disk.saving.pop()()
    assert done.got == [True, False]


async def test_a_confirm_waits_for_its_batch_mark_not_for_later_changes() -> None:
    """The position a confirm waits for is the one its fsync batch read after its writes
    (later ack-log or message bytes are not waited for), or later when a definitions save
    was done after it or is waited for."""
    tracker = IsrTracker("L", None, min_insync=2, ack_deadline=5.0, initial=["f"])
    tracker.connected("f")
    sink = Position()
    sink.position = 20
    tracker.produced(20)
    disk = LocalDisk()
    durability = ReplicatedDurability(disk, sink, tracker, FakeLease(), 5.0)  # type: ignore
    assert disk.mark() == 20  # the durability hands the sink's position to the group commit
    assert sink.flushed == 1  # and sends what the batch wrote to the followers at once
    disk.durable_mark = 12  # the batch wrote up to 12; 13..20 came during its fsync
    disk.idle = True  # no definitions save pending
    early = Results()
    durability.when_durable(early)
    tracker.acked("f", 11)
    assert early.got == []
    tracker.acked("f", 12)
    assert early.got == [True]  # the follower need not have 13..20 yet
    disk.saved_mark = 15  # a definitions save done after the batch read its mark
    saved_later = Results()
    durability.when_durable(saved_later)
    tracker.acked("f", 14)
    assert saved_later.got == []
    tracker.acked("f", 15)
    assert saved_later.got == [True]
    disk.idle = False
    waited = Results()  # a save in flight is waited for: then everything told so far
    durability.when_durable(waited)
    sink.position = 30  # the save's rewrite (and more) told to the sink meanwhile
    tracker.produced(30)
    disk.saving.pop()()
    tracker.acked("f", 29)
    assert waited.got == []
    tracker.acked("f", 30)
    assert waited.got == [True]
    await tracker.stop()


def test_cluster_settings_from_rabbitmq_conf_env_and_flags(tmp_path: Path,
                                                           monkeypatch: Any) -> None:
    changes = conffile.parse_text(
        "cluster_formation.peer_discovery_backend = etcd\n"
        "cluster_formation.etcd.endpoints.1 = etcd1:2379\n"
        "cluster_formation.etcd.endpoints.2 = etcd2:2379\n"
        "cluster_formation.etcd.key_prefix = /mq\n"
        "cluster_formation.etcd.cluster_name = prod\n"
        "cluster_formation.etcd.lease_ttl = 5\n"
        "cluster_formation.advertise_host = node1.example\n"
        "cluster_formation.replication.port = 25673\n"
        "cluster_formation.min_insync = 3\n"
        "cluster_formation.replica_ack_timeout = 2500\n"
        "cluster_formation.confirm_timeout = 20000\n"
        "cluster_formation.etcd.node_ttl = 30\n")  # RabbitMQ's, without effect here
    assert changes == {"etcd_endpoints": ("etcd1:2379", "etcd2:2379"), "etcd_prefix": "/mq",
                       "etcd_cluster": "prod", "lease_ttl": 5,
                       "advertise_host": "node1.example", "replication_port": 25673,
                       "min_insync": 3, "replica_ack_timeout": 2.5, "confirm_timeout": 20.0}
    monkeypatch.setenv("BURROWMQ_ETCD_ENDPOINTS", "a:2379, b:2379")
    monkeypatch.setenv("RABBITMQ_NODENAME", "rabbit@mq1")
    monkeypatch.setenv("RABBITMQ_DIST_PORT", "25680")
    cfg = parse_args(["--data-dir", str(tmp_path), "--min-insync", "1"])
    assert (cfg.etcd_endpoints, cfg.node_name, cfg.replication_port, cfg.min_insync) == \
        (("a:2379", "b:2379"), "rabbit@mq1", 25680, 1)
    monkeypatch.setenv("RABBITMQ_NODENAME", "hare")
    assert parse_args(["--data-dir", str(tmp_path)]).node_name.startswith("hare@")
    with pytest.raises(ConfigError, match="lease_ttl must be at least 2"):
        parse_args(["--data-dir", str(tmp_path), "--lease-ttl", "1"])
    monkeypatch.delenv("BURROWMQ_ETCD_ENDPOINTS")
    assert parse_args(["--data-dir", str(tmp_path), "--lease-ttl", "1"]).etcd_endpoints == ()


def test_local_files_are_not_replicated() -> None:
    for name in ("LOCK", "cluster.state", "ctl.sock", "ctl.cookie", "scratch/1/x",
                 "definitions.bin.tmp"):
        assert not files.replicated(name)
    assert files.replicated("definitions.bin") and files.replicated("queues/q-1/QUEUE")


# ---- roles on a real etcd ---------------------------------------------------------------------
class FakeNode:
    """What a member asks of its node, recorded."""

    def __init__(self) -> None:
        self.leading = asyncio.Event()
        self.unleads: list[str] = []
        self.leaders: list[str | None] = []

    async def lead(self, leadership: Leadership) -> None:
        self.leading.set()

    async def unlead(self, reason: str, graceful: bool) -> None:
        self.leading.clear()
        self.unleads.append(reason)

    def leader_changed(self, leader: Member | None) -> None:
        self.leaders.append(leader.node if leader else None)

    def running_info(self) -> dict[str, Any]:
        return {}


def member(etcd: EtcdCluster, cluster: str, root: Path, name: str) -> tuple[ClusterMember,
                                                                          FakeNode]:
    root.mkdir(parents=True, exist_ok=True)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    node = FakeNode()
    settings = Settings(node=name, endpoints=tuple(etcd.endpoints), cluster=cluster,
                        replication=f"127.0.0.1:{port}", replication_bind=("127.0.0.1", port),
                        replication_socket=sock, lease_ttl=2, min_insync=1, ack_timeout=1.0,
                        auto_join=True)
    return ClusterMember(settings, root, node), node


async def until(condition: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.02)


async def test_one_leads_others_follow_and_take_over(etcd: EtcdCluster, cluster_name: str,
                                                     tmp_path: Path) -> None:
    a, node_a = member(etcd, cluster_name, tmp_path / "a", "rabbit@a")
    b, node_b = member(etcd, cluster_name, tmp_path / "b", "rabbit@b")
    try:
        a.start()
        await asyncio.wait_for(node_a.leading.wait(), 10)
        b.start()
        await until(lambda: b.follower is not None and b.follower.synced.is_set())
        assert node_b.leaders[-1] == "rabbit@a" and b.role == "follower"
        assert files.load_state(tmp_path / "b") == {
            "cluster": cluster_name, "epoch": a.leadership.leader.epoch,  # type: ignore
            "member": True, "syncing": False}
        await a.stop()  # hands over at once: b need not wait for a lease to expire
        await asyncio.wait_for(node_b.leading.wait(), 5)
        assert node_a.unleads == ["stopping"]
        assert sorted((await b.keys.isr()).members) == ["rabbit@b"]  # type: ignore[union-attr]
    finally:
        await a.close()
        await b.close()


async def test_a_node_with_an_incomplete_copy_never_leads(etcd: EtcdCluster,
                                                          cluster_name: str,
                                                          tmp_path: Path) -> None:
    c, node_c = member(etcd, cluster_name, tmp_path / "c", "rabbit@c")
    files.save_state(tmp_path / "c", member=True, syncing=True)
    await c.keys.join(Member("rabbit@c"))
    try:
        c.start()
        await asyncio.sleep(3)
        assert not node_c.leading.is_set()
        assert c.leadership is None
    finally:
        await c.close()


async def test_a_confirm_waits_for_the_save_covering_it_not_later_ones(
        tmp_path: Path, monkeypatch: Any) -> None:
    """Queues declared without pause must not hold confirms: each waits for the save that
    covers what existed when it asked, no more."""
    import threading

    from broker.node import stores as stores_module

    gates: list[threading.Event] = []

    def slow_save(path: Any, doc: Any, sink: Any = None) -> None:
        gate = threading.Event()
        gates.append(gate)
        assert gate.wait(10)

    monkeypatch.setattr(stores_module.definitions_file, "save", slow_save)
    stores = stores_module.Stores(str(tmp_path), lambda: 0.0)
    stores.start(asyncio.get_running_loop(), lambda: {"queues": []})
    done: list[str] = []
    stores.when_saved(lambda: done.append("idle"))
    assert done == ["idle"]  # nothing pending: at once
    stores.definitions_changed()
    stores.when_saved(lambda: done.append("first"))
    await until(lambda: len(gates) == 1)  # the first save runs...
    stores.definitions_changed()  # ...and a change comes in meanwhile
    stores.when_saved(lambda: done.append("second"))
    gates[0].set()
    await until(lambda: len(gates) == 2)  # the second save (the change) runs
    assert done == ["idle", "first"]  # the first save covered the first caller
    stores.definitions_changed()  # churn goes on: the second caller does not wait for it
    gates[1].set()
    await until(lambda: "second" in done)
    assert len(gates) == 3
    gates[2].set()
    await until(lambda: not stores._saving)
    stores.data.close()
