"""The etcd client against a real etcd: kv, txn compares, leases, watch, errors."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from etcd_server import free_port

from broker.cluster.etcd import (
    Compare,
    Delete,
    EtcdClient,
    EtcdUnavailable,
    Get,
    LeaseNotFound,
    Put,
    prefix_end,
)
from broker.cluster.lease import Lease


async def test_put_get_range_delete(client: EtcdClient, cluster_name: str) -> None:
    p = f"/t/{cluster_name}/"
    rev = await client.put(p + "a", b"1")
    await client.put(p + "b", "two")
    await client.put(p + "c\xff", b"\x00\xff binary")
    kv = await client.get(p + "a")
    assert kv is not None and kv.value == b"1" and kv.create_revision == rev == kv.mod_revision
    assert await client.get(p + "missing") is None
    result = await client.range(p, prefix=True)
    assert [k.key for k in result.kvs] == [(p + n).encode() for n in ("a", "b", "c\xff")]
    assert result.kvs[2].value == b"\x00\xff binary" and result.count == 3
    assert await client.delete(p + "a") == 1
    assert await client.delete(p + "a") == 0
    assert await client.delete(p, prefix=True) == 2
    assert (await client.range(p, prefix=True)).count == 0


def test_prefix_end() -> None:
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


async def test_txn_compares(client: EtcdClient, cluster_name: str) -> None:
    key = f"/t/{cluster_name}/k"
    created = await client.txn([Compare.missing(key)], [Put(key, b"v1")], [Get(key)])
    assert created.succeeded
    again = await client.txn([Compare.missing(key)], [Put(key, b"v2")], [Get(key)])
    assert not again.succeeded and again.kvs(0)[0].value == b"v1"
    kv = await client.get(key)
    assert kv is not None
    # mod_revision fencing: a stale revision loses, the current one wins
    stale = await client.txn([Compare(key, "mod_revision", "==", kv.mod_revision - 1)],
                             [Put(key, b"stale")])
    assert not stale.succeeded
    fresh = await client.txn([Compare(key, "mod_revision", "==", kv.mod_revision)],
                             [Put(key, b"fresh")])
    assert fresh.succeeded and fresh.revision > kv.mod_revision
    assert (await client.txn([Compare(key, "value", "==", b"fresh")], [Delete(key)])).succeeded
    assert await client.get(key) is None
    assert (await client.txn([Compare(key, "create_revision", "==", 0)], [])).succeeded


async def test_lease_expires_and_takes_its_keys(client: EtcdClient, cluster_name: str) -> None:
    key = f"/t/{cluster_name}/leased"
    lease_id, ttl = await client.lease_grant(1)
    assert ttl >= 1
    await client.put(key, b"x", lease=lease_id)
    assert await client.get(key) is not None
    for _ in range(60):  # the TTL is 1 s; etcd checks expiry every 500 ms
        if await client.get(key) is None:
            break
        await asyncio.sleep(0.1)
    assert await client.get(key) is None
    with pytest.raises(LeaseNotFound):
        await client.lease_keepalive(lease_id)
    with pytest.raises(LeaseNotFound):
        await client.put(key, b"y", lease=lease_id)
    assert await client.lease_ttl(lease_id) == -1


async def test_kept_alive_lease_outlives_its_ttl_and_revoke_ends_it(
        client: EtcdClient, cluster_name: str) -> None:
    key = f"/t/{cluster_name}/alive"
    lease = await Lease.grant(client, 1, margin=0.2)
    await client.put(key, b"x", lease=lease.id)
    await asyncio.sleep(2.2)
    assert not lease.lost.is_set()
    assert await client.get(key) is not None
    await lease.revoke()
    assert lease.lost.is_set() and lease.lost_reason == "revoked"
    assert await client.get(key) is None


async def test_lease_counts_as_lost_when_etcd_cannot_be_reached(
        client: EtcdClient, cluster_name: str) -> None:
    lease = await Lease.grant(client, 1, margin=0.2)
    lease.client = EtcdClient(f"127.0.0.1:{free_port()}", timeout=0.2)  # nobody listens there
    try:
        await asyncio.wait_for(lease.lost.wait(), 3)
        assert "deadline" in lease.lost_reason
    finally:
        await lease.client.close()
        lease.client = client
        await lease.revoke()


async def test_watch_sees_puts_and_deletes(client: EtcdClient, cluster_name: str) -> None:
    p = f"/t/{cluster_name}/w/"
    seen: list[tuple[str, bytes, bytes]] = []
    got_three = asyncio.Event()

    async def watcher() -> None:
        async with contextlib.aclosing(client.watch(p, prefix=True, prev_kv=True)) as stream:
            async for _, events in stream:
                for e in events:
                    seen.append((e.type, e.kv.key, e.kv.value))
                if len(seen) >= 3:
                    got_three.set()
                    return

    task = asyncio.create_task(watcher())
    await asyncio.sleep(0.3)  # the watch is created
    await client.put(p + "x", b"1")
    await client.put(p + "x", b"2")
    await client.put(f"/t/{cluster_name}/other", b"not watched")
    await client.delete(p + "x")
    await asyncio.wait_for(got_three.wait(), 5)
    await task
    key = (p + "x").encode()
    assert seen == [("PUT", key, b"1"), ("PUT", key, b"2"), ("DELETE", key, b"")]


async def test_watch_from_a_revision_replays_history(client: EtcdClient,
                                                     cluster_name: str) -> None:
    key = f"/t/{cluster_name}/h"
    first = await client.put(key, b"a")
    await client.put(key, b"b")
    async with contextlib.aclosing(client.watch(key, start_revision=first)) as stream:
        values: list[bytes] = []
        async for _, events in stream:
            values += [e.kv.value for e in events]
            if len(values) >= 2:
                break
    assert values == [b"a", b"b"]


async def test_unreachable_endpoint_raises_and_a_second_endpoint_is_used(
        etcd: object, cluster_name: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with EtcdClient(dead, timeout=0.5) as lonely:
        with pytest.raises(EtcdUnavailable):
            await lonely.get("/x")
        assert not await lonely.health()
    async with EtcdClient([dead, etcd.url], timeout=0.5) as both:  # type: ignore[attr-defined]
        await both.put(f"/t/{cluster_name}/ep", b"ok")
        kv = await both.get(f"/t/{cluster_name}/ep")
        assert kv is not None and kv.value == b"ok"
        assert await both.health()


async def test_three_member_etcd_survives_losing_its_raft_leader(etcd3: object) -> None:
    """The client moves to another endpoint; a kept-alive lease outlives the failover."""
    cluster = etcd3
    async with EtcdClient(cluster.endpoints, timeout=1.0) as c:  # type: ignore[attr-defined]
        lease = await Lease.grant(c, 3, margin=0.3)
        await c.put("/t/etcd3/k", b"before", lease=lease.id)
        leader = None
        for member in cluster.members:  # type: ignore[attr-defined]
            async with EtcdClient(member.url) as one:
                status = await one.call("/v3/maintenance/status", {})
            if status.get("leader") == status.get("header", {}).get("member_id"):
                leader = member
        assert leader is not None
        leader.kill()
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # requests fail while the survivors elect a new raft leader
            try:
                await c.put("/t/etcd3/k", b"after", lease=lease.id)
                break
            except EtcdUnavailable:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.1)
        kv = await c.get("/t/etcd3/k")
        assert kv is not None and kv.value == b"after"
        await asyncio.sleep(1.5)
        assert not lease.lost.is_set()
        await lease.revoke()
