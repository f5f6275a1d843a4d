"""Election, epochs and the fenced ISR against a real etcd."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from broker.cluster.election import Leader
from broker.cluster.etcd import EtcdClient
from broker.cluster.keyspace import ClusterKeys, Fenced, Member
from broker.cluster.lease import Lease


async def test_election_hands_over_when_the_leaders_lease_is_revoked(
        client: EtcdClient, keys: ClusterKeys) -> None:
    election = keys.election
    assert await election.leader() is None
    observed: list[Leader | None] = []
    changed = asyncio.Event()

    async def observer() -> None:
        async with contextlib.aclosing(election.observe()) as stream:
            async for leader in stream:
                observed.append(leader)
                changed.set()

    watching = asyncio.create_task(observer())
    lease_a = await Lease.grant(client, 5)
    lease_b = await Lease.grant(client, 5)
    a = await election.campaign(b"node-a", lease_a)
    assert a.value == b"node-a" and a.lease == lease_a.id and a.epoch > 0
    current = await election.leader()
    assert current == a
    b_wins = asyncio.create_task(election.campaign(b"node-b", lease_b))
    await asyncio.sleep(0.3)
    assert not b_wins.done()  # queued behind a
    await lease_a.revoke()
    b = await asyncio.wait_for(b_wins, 5)
    assert b.value == b"node-b" and b.epoch > a.epoch
    assert await election.leader() == b
    for _ in range(50):
        if observed and observed[-1] == b:
            break
        changed.clear()
        await asyncio.wait_for(changed.wait(), 5)
    assert observed[0] in (None, a) and a in observed and observed[-1] == b
    await election.resign(b)
    for _ in range(50):
        if observed[-1] is None:
            break
        changed.clear()
        await asyncio.wait_for(changed.wait(), 5)
    assert observed[-1] is None  # observe reports "no leader", too
    watching.cancel()
    await lease_b.revoke()


async def test_cancelled_campaign_withdraws(client: EtcdClient, keys: ClusterKeys) -> None:
    lease_a = await Lease.grant(client, 5)
    lease_b = await Lease.grant(client, 5)
    a = await keys.election.campaign(b"a", lease_a)
    waiting = asyncio.create_task(keys.election.campaign(b"b", lease_b))
    await asyncio.sleep(0.3)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await keys.election.resign(a)
    for _ in range(30):  # etcd resigns the dropped candidacy
        if (await client.range(keys.election.prefix, prefix=True)).count == 0:
            break
        await asyncio.sleep(0.1)
    assert (await client.range(keys.election.prefix, prefix=True)).count == 0
    await lease_a.revoke()
    await lease_b.revoke()


async def test_isr_write_is_fenced_by_the_leaders_epoch(client: EtcdClient,
                                                         keys: ClusterKeys) -> None:
    lease_a = await Lease.grant(client, 5)
    a = await keys.election.campaign(b"a", lease_a)
    isr = await keys.set_isr({"a", "b", "c"}, a, "a")
    assert isr.members == {"a", "b", "c"} and isr.epoch == a.epoch
    stored = await keys.isr()
    assert stored is not None and stored.members == {"a", "b", "c"} and stored.leader == "a"

    # a loses its lease (a SIGSTOPped leader); b takes over
    lease_b = await Lease.grant(client, 5)
    b_wins = asyncio.create_task(keys.election.campaign(b"b", lease_b))
    await lease_a.revoke()
    b = await asyncio.wait_for(b_wins, 5)
    with pytest.raises(Fenced):
        await keys.set_isr({"a"}, a, "a")  # the deposed leader's write fails
    with pytest.raises(Fenced):
        await keys.isr_writer(a, "a").set_isr(frozenset({"a", "c"}))
    stored = await keys.isr()
    assert stored is not None and stored.members == {"a", "b", "c"}
    await keys.isr_writer(b, "b").set_isr(frozenset({"b", "c"}))
    stored = await keys.isr()
    assert stored is not None and stored.members == {"b", "c"} and stored.epoch == b.epoch

    # a stale epoch held by the *same* lease holder after re-election fails too
    await keys.election.resign(b)
    b2 = await keys.election.campaign(b"b", lease_b)
    assert b2.epoch > b.epoch
    with pytest.raises(Fenced):
        await keys.set_isr({"b"}, b, "b")
    await lease_b.revoke()


async def test_watch_isr(client: EtcdClient, keys: ClusterKeys) -> None:
    lease = await Lease.grant(client, 5)
    leader = await keys.election.campaign(b"a", lease)
    seen: list[frozenset[str] | None] = []
    done = asyncio.Event()

    async def watcher() -> None:
        async with contextlib.aclosing(keys.watch_isr()) as stream:
            async for isr in stream:
                seen.append(isr.members if isr is not None else None)
                if len(seen) == 3:
                    done.set()
                    return

    task = asyncio.create_task(watcher())
    await asyncio.sleep(0.3)
    await keys.set_isr({"a"}, leader, "a")
    await keys.set_isr({"a", "b"}, leader, "a")
    await asyncio.wait_for(done.wait(), 5)
    await task
    assert seen == [None, {"a"}, {"a", "b"}]
    await lease.revoke()


async def test_members_and_secret(keys: ClusterKeys, client: EtcdClient,
                                  cluster_name: str) -> None:
    assert await keys.members() == {}
    one = Member("rabbit@n1", amqp="127.0.0.2:5672", http="127.0.0.2:15672",
                 replication="127.0.0.2:5679", extra={"version": "0.1"})
    await keys.join(one)
    await keys.join(Member("rabbit@n2", amqp="127.0.0.3:5672"))
    members = await keys.members()
    assert set(members) == {"rabbit@n1", "rabbit@n2"} and members["rabbit@n1"] == one
    assert await keys.forget("rabbit@n2") and not await keys.forget("rabbit@n2")
    assert set(await keys.members()) == {"rabbit@n1"}
    secret = await keys.secret()
    assert len(secret) == 64
    other = ClusterKeys(client, cluster_name)
    assert await other.secret() == secret  # created once, read by everyone
    assert await ClusterKeys(client, cluster_name + "x").secret() != secret
