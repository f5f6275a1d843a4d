"""The cluster's keys in etcd: members, leader election, in-sync replicas (ISR), secret.

Layout under ``<root>/<cluster>/`` (root ``/burrowmq`` by default)::

    members/<node>   JSON {"node", "amqp", "http", "replication", ...}: who is in the cluster
    running/<node>   JSON {"version", "alarms", ...}, bound to the node's lease: its app runs
    leader/<lease>   the election (``election.Election``); the winner's create revision is
                     the epoch
    isr              JSON {"members": [...], "epoch": E, "leader": node}: nodes holding every
                     confirmed message
    secret           random hex, authenticates replication connections

Invariants:
- ``isr`` is written only by ``set_isr`` in a txn that compares the leader key's create
  revision with the writer's epoch: a deposed leader (lease gone, key deleted or replaced by a
  newer candidate's) gets ``Fenced`` and the key is untouched.
- ``secret`` is created once (put-if-absent) and never changed; every node reads the same one.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from typing import Any

from .election import Election, Leader
from .etcd import Compare, EtcdClient, Get, KeyValue, Put


class Fenced(Exception):
    """This node is no longer the leader it was: its fenced write was refused."""


@dataclass(frozen=True, slots=True)
class Member:
    node: str
    amqp: str = ""
    http: str = ""
    replication: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps({"node": self.node, "amqp": self.amqp, "http": self.http,
                           "replication": self.replication, **self.extra},
                          sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Member:
        doc = json.loads(raw)
        known = {k: doc.pop(k, "") for k in ("node", "amqp", "http", "replication")}
        return cls(extra=doc, **known)


@dataclass(frozen=True, slots=True)
class Isr:
    members: frozenset[str]
    epoch: int  # the epoch of the leader that wrote it
    leader: str
    mod_revision: int

    @classmethod
    def from_kv(cls, kv: KeyValue) -> Isr:
        doc = json.loads(kv.value)
        return cls(frozenset(doc["members"]), int(doc["epoch"]), str(doc.get("leader", "")),
                   kv.mod_revision)


class ClusterKeys:
    def __init__(self, client: EtcdClient, cluster: str, root: str = "/burrowmq") -> None:
        if not cluster or "/" in cluster:
            raise ValueError(f"bad cluster name {cluster!r}")
        self.client = client
        self.prefix = f"{root.rstrip('/')}/{cluster}/"
        self.members_prefix = self.prefix + "members/"
        self.running_prefix = self.prefix + "running/"
        self.leader_name = self.prefix + "leader"
        self.isr_key = self.prefix + "isr"
        self.secret_key = self.prefix + "secret"
        self.election = Election(client, self.leader_name)

    # ---- members ---------------------------------------------------------------------
    async def join(self, member: Member) -> None:
        await self.client.put(self.members_prefix + member.node, member.encode())

    async def forget(self, node: str) -> bool:
        """Delete the member; True when it was there."""
        return await self.client.delete(self.members_prefix + node) > 0

    async def members(self) -> dict[str, Member]:
        result = await self.client.range(self.members_prefix, prefix=True)
        found = {}
        for kv in result.kvs:
            member = Member.decode(kv.value)
            found[member.node] = member
        return found

    async def member(self, node: str) -> Member | None:
        kv = await self.client.get(self.members_prefix + node)
        return Member.decode(kv.value) if kv is not None else None

    # ---- running nodes -----------------------------------------------------------------
    async def set_running(self, node: str, lease: int, info: dict[str, Any]) -> None:
        await self.client.put(self.running_prefix + node, json.dumps(info).encode(), lease)

    async def clear_running(self, node: str) -> None:
        await self.client.delete(self.running_prefix + node)

    async def running(self) -> dict[str, dict[str, Any]]:
        result = await self.client.range(self.running_prefix, prefix=True)
        return {kv.key.decode()[len(self.running_prefix):]: json.loads(kv.value)
                for kv in result.kvs}

    # ---- secret ----------------------------------------------------------------------
    async def secret(self) -> bytes:
        """The cluster secret, created by whoever asks first."""
        mine = secrets.token_hex(32).encode()
        result = await self.client.txn([Compare.missing(self.secret_key)],
                                       [Put(self.secret_key, mine)], [Get(self.secret_key)])
        return mine if result.succeeded else result.kvs(0)[0].value

    # ---- ISR -------------------------------------------------------------------------
    async def isr(self) -> Isr | None:
        kv = await self.client.get(self.isr_key)
        return Isr.from_kv(kv) if kv is not None else None

    async def set_isr(self, members: Iterable[str], leader: Leader, node: str) -> Isr:
        """Replace the ISR, only while ``leader`` still leads; ``Fenced`` otherwise."""
        ordered = sorted(set(members))
        value = json.dumps({"members": ordered, "epoch": leader.epoch, "leader": node}).encode()
        result = await self.client.txn(
            [Compare(leader.key, "create_revision", "==", leader.epoch)],
            [Put(self.isr_key, value)])
        if not result.succeeded:
            raise Fenced(f"{node} no longer leads epoch {leader.epoch}: ISR not written")
        return Isr(frozenset(ordered), leader.epoch, node, result.revision)

    async def watch_isr(self) -> AsyncGenerator[Isr | None, None]:
        """The ISR now, then every change (None when the key is deleted)."""
        result = await self.client.range(self.isr_key)
        yield Isr.from_kv(result.kvs[0]) if result.kvs else None
        watch = self.client.watch(self.isr_key, start_revision=result.revision + 1)
        async with contextlib.aclosing(watch) as stream:
            async for _, events in stream:
                last = events[-1]
                yield Isr.from_kv(last.kv) if last.type == "PUT" else None

    def isr_writer(self, leader: Leader, node: str) -> FencedIsrWriter:
        return FencedIsrWriter(self, leader, node)


class FencedIsrWriter:
    """What the leader's ISR tracker writes through (``isr.IsrStore``): fenced by its epoch."""

    def __init__(self, keys: ClusterKeys, leader: Leader, node: str) -> None:
        self.keys = keys
        self.leader = leader
        self.node = node

    async def set_isr(self, members: frozenset[str]) -> None:
        await self.keys.set_isr(members, self.leader, self.node)
