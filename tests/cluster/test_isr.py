"""The "acked by every in-sync replica" awaitable and ISR changes, over real replication.

Followers connect through a fault-injecting proxy; the ISR store is either a recorder (to check
the order of writes against confirms) or etcd itself, fenced by the leader's epoch.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from replication_helpers import LeaderNode, caught_up, follower

from broker.cluster.etcd import EtcdClient
from broker.cluster.isr import IsrTracker, NotReplicated
from broker.cluster.keyspace import ClusterKeys, Fenced
from broker.cluster.lease import Lease

LEADER = "rabbit@leader"


class Recorder:
    """An ISR store that logs every write, in order with the test's own events."""

    def __init__(self, log: list[tuple[str, object]]) -> None:
        self.log = log
        self.fenced = False

    async def set_isr(self, members: frozenset[str]) -> None:
        await asyncio.sleep(0.01)  # a round trip to etcd
        if self.fenced:
            raise Fenced("deposed")
        self.log.append(("isr", members))


async def until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def setup(tmp_path: Path, tracker: IsrTracker,
                followers: int = 1) -> tuple[LeaderNode, list, list[FaultProxy]]:  # type: ignore[type-arg]
    leader = LeaderNode(tmp_path / "leader", tracker=tracker, heartbeat=0.1)
    address = await leader.start()
    leader.publish("q", b"before anyone follows")
    clients, proxies = [], []
    for i in range(followers):
        proxy = FaultProxy(address)
        await proxy.start()
        client = follower(tmp_path / f"f{i}", proxy.address, node=f"rabbit@f{i}",
                          heartbeat_timeout=2.0)
        client.start()
        clients.append(client)
        proxies.append(proxy)
    await caught_up(leader, *clients)
    return leader, clients, proxies


async def teardown(leader: LeaderNode, clients: list, proxies: list[FaultProxy]) -> None:  # type: ignore[type-arg]
    for client in clients:
        await client.stop()
    for proxy in proxies:
        await proxy.stop()
    await leader.close()


async def test_followers_join_and_confirms_wait_for_their_acks(tmp_path: Path) -> None:
    log: list[tuple[str, object]] = []
    tracker = IsrTracker(LEADER, Recorder(log), min_insync=3, ack_deadline=1.0)
    leader, clients, proxies = await setup(tmp_path, tracker, followers=2)
    everyone = frozenset({LEADER, "rabbit@f0", "rabbit@f1"})
    await until(lambda: bool(log) and log[-1] == ("isr", everyone))
    assert tracker.members == everyone
    proxies[1].delay = 0.3  # one slow link: the confirm waits for it
    leader.publish("q", b"m" * 1000)
    await leader.sync()
    position = leader.server.position
    started = asyncio.get_running_loop().time()
    await leader.server.wait_replicated(position, timeout=5)
    assert asyncio.get_running_loop().time() - started >= 0.3
    assert all(tracker.acked_position(c.node) >= position for c in clients)
    await teardown(leader, clients, proxies)


async def test_a_blackholed_follower_is_dropped_before_anything_is_confirmed_without_it(
        tmp_path: Path) -> None:
    log: list[tuple[str, object]] = []
    tracker = IsrTracker(LEADER, Recorder(log), min_insync=1, ack_deadline=0.5)
    leader, clients, proxies = await setup(tmp_path, tracker)
    await until(lambda: "rabbit@f0" in tracker.members)
    proxies[0].mode = "blackhole"  # a partition: no error, just silence
    leader.publish("q", b"m" * 1000)
    await leader.sync()
    position = leader.server.position
    await leader.server.wait_replicated(position, timeout=5)
    log.append(("confirmed", position))
    assert log[-2:] == [("isr", frozenset({LEADER})), ("confirmed", position)]
    assert tracker.acked_position("rabbit@f0") < position
    # the link heals: the follower resyncs and joins again
    proxies[0].mode = "drop"
    await asyncio.sleep(0.05)
    proxies[0].mode = "pass"
    await until(lambda: log[-1] == ("isr", frozenset({LEADER, "rabbit@f0"})), timeout=10)
    await teardown(leader, clients, proxies)


async def test_below_min_insync_confirms_are_held_then_refused(tmp_path: Path) -> None:
    tracker = IsrTracker(LEADER, Recorder([]), min_insync=2, ack_deadline=0.3)
    leader, clients, proxies = await setup(tmp_path, tracker)
    await until(lambda: "rabbit@f0" in tracker.members)
    proxies[0].mode = "drop"
    leader.publish("q", b"lonely")
    await leader.sync()
    with pytest.raises(NotReplicated, match="fewer than 2"):
        await leader.server.wait_replicated(leader.server.position, timeout=1.0)
    assert tracker.members == {LEADER}
    # held, not refused, while a follower can still come back in time
    waiting = asyncio.create_task(leader.server.wait_replicated(leader.server.position, 10))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    proxies[0].mode = "pass"
    await asyncio.wait_for(waiting, 10)
    assert tracker.members == {LEADER, "rabbit@f0"}
    await teardown(leader, clients, proxies)


async def test_a_deposed_leader_never_confirms_again(tmp_path: Path, client: EtcdClient,
                                                     keys: ClusterKeys) -> None:
    """The ISR lives in etcd, fenced by the leader's epoch; the lease goes, the writes fail."""
    lease = await Lease.grant(client, 5)
    won = await keys.election.campaign(LEADER, lease)
    tracker = IsrTracker(LEADER, keys.isr_writer(won, LEADER), min_insync=1, ack_deadline=0.4)
    leader, clients, proxies = await setup(tmp_path, tracker)
    await until(lambda: "rabbit@f0" in tracker.members)
    stored = await keys.isr()
    assert stored is not None and stored.members == {LEADER, "rabbit@f0"}
    assert stored.epoch == won.epoch
    await lease.revoke()  # a SIGSTOPped leader's lease runs out
    proxies[0].mode = "blackhole"  # and the follower must now be dropped...
    leader.publish("q", b"after the fall")
    await leader.sync()
    with pytest.raises(Fenced):  # ...which the deposed leader cannot do: no confirm
        await leader.server.wait_replicated(leader.server.position, timeout=5)
    with pytest.raises(Fenced):
        await leader.server.wait_replicated(0)
    stored = await keys.isr()
    assert stored is not None and stored.members == {LEADER, "rabbit@f0"}  # untouched
    await teardown(leader, clients, proxies)
