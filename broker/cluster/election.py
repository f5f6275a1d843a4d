"""Leader election on etcd: one key per candidate under ``<name>/``, bound to its lease.

Candidates campaign with etcd's election service: each puts ``<name>/<lease id hex>`` and waits
until no key under ``<name>/`` has a smaller create revision. The leader is the oldest key; its
create revision is the **epoch**, the fencing token: it grows with every new leader, and a
txn comparing ``create_revision(leader.key) == epoch`` fails as soon as that leader's lease is
gone (a missing key has revision 0), so a deposed leader can never write fenced keys again.

Invariants:
- ``observe`` yields the current leader (or None) first, then every change, and never the same
  leader twice in a row; it is built on range + watch, so it also reports "no leader".
- Cancelling ``campaign`` withdraws the candidacy (etcd resigns when the request is dropped, and
  the key is bound to the lease anyway).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from .etcd import EtcdClient, Key, KeyValue
from .lease import Lease


@dataclass(frozen=True, slots=True)
class Leader:
    name: bytes  # the election
    key: bytes  # <name>/<lease hex>
    epoch: int  # the key's create revision
    lease: int
    value: bytes

    @classmethod
    def from_kv(cls, name: bytes, kv: KeyValue) -> Leader:
        return cls(name, kv.key, kv.create_revision, kv.lease, kv.value)


class Election:
    def __init__(self, client: EtcdClient, name: Key) -> None:
        self.client = client
        self.name = name.encode() if isinstance(name, str) else name
        self.prefix = self.name + b"/"

    async def campaign(self, value: Key, lease: Lease | int) -> Leader:
        """Wait until this candidate leads; return its leadership (epoch included)."""
        lease_id = lease.id if isinstance(lease, Lease) else lease
        raw = value.encode() if isinstance(value, str) else value
        won = await self.client.campaign(self.name, raw, lease_id)
        return Leader(self.name, won["key"], won["rev"], won["lease"], raw)

    async def resign(self, leader: Leader) -> None:
        """Step down (the key is deleted; the lease stays). A lost leadership is fine."""
        await self.client.resign(self.name, leader.key, leader.epoch, leader.lease)

    async def leader(self) -> Leader | None:
        result = await self.client.range(self.prefix, prefix=True, limit=1, sort_by_create=True)
        return Leader.from_kv(self.name, result.kvs[0]) if result.kvs else None

    async def observe(self) -> AsyncGenerator[Leader | None, None]:
        """The leader now, then at every change (None while there is none)."""
        result = await self.client.range(self.prefix, prefix=True, limit=1, sort_by_create=True)
        current = Leader.from_kv(self.name, result.kvs[0]) if result.kvs else None
        yield current
        watch = self.client.watch(self.prefix, prefix=True, start_revision=result.revision + 1)
        async with contextlib.aclosing(watch) as events:
            async for _ in events:
                # the latest state, not the event's revision: observers want the leader now
                result = await self.client.range(self.prefix, prefix=True, limit=1,
                                                  sort_by_create=True)
                leader = Leader.from_kv(self.name, result.kvs[0]) if result.kvs else None
                if leader != current:
                    current = leader
                    yield leader
