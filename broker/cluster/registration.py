"""Membership of one node: whether it is a member of its cluster, founding the cluster, joining.

A node's member record in etcd (``keyspace.Member``: its addresses) is rewritten at each start
of a lease (``register``), so that moved addresses are seen, but only when the record is
there: a node removed with ``forget_cluster_node`` does not come back by restarting. Which
case a node is in comes from its local state file (``files``: ``member``) and etcd:

- ``REGISTERED``: a member (now, or just joined: the first boot of a node configured to join,
  ``auto_join``; one founds the cluster atomically, the others start from the leader's copy);
- ``FORGOTTEN``: not a member (removed, or holding data of its own while the cluster has
  members): the member stops following and leading;
- ``ORPHANED``: it was a member but etcd has no record of the cluster (wiped, replaced).

Invariants:
- A node that was a member never founds a cluster again on its own: only
  ``burrowctl force_boot`` (``files.FORCE_NAME``) makes its copy the one to keep; without it
  the node waits, logging why once.
- Founding is one etcd transaction on the ``founded`` key: of nodes booting together exactly
  one founds.
- ``join`` saves ``member`` (and ``syncing`` unless it founds: its copy must be filled before
  it may lead) in the local state before the record goes to etcd.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import files
from .etcd import Compare, Put
from .keyspace import ClusterKeys, Member

log = logging.getLogger("broker.cluster")
REGISTERED, FORGOTTEN, ORPHANED = "registered", "forgotten", "orphaned"


@dataclass(frozen=True)
class Settings:
    """A member's configuration (kept here, below ``member``, as registration reads it too)."""

    node: str
    endpoints: tuple[str, ...]
    cluster: str
    prefix: str = "/burrowmq"
    amqp: str = ""  # advertised host:port
    http: str = ""
    replication: str = ""
    replication_bind: tuple[str, int] = ("127.0.0.1", 25672)
    replication_socket: socket.socket | None = None  # bound, when the port was chosen at 0
    lease_ttl: int = 3
    min_insync: int = 2
    ack_timeout: float = 3.0
    extra: dict[str, Any] = field(default_factory=dict)  # stored with the member record
    replication_via: str = ""  # reach every leader's replication port here (a tunnel; tests)
    auto_join: bool = False  # first boot: join the cluster named in the configuration
    blank: bool = True  # the data directory holds no definitions yet


class Registration:
    """``ClusterMember``'s dealings with the member records (one per member)."""

    def __init__(self, settings: Settings, root: Path, keys: ClusterKeys) -> None:
        self.settings = settings
        self.node = settings.node
        self.root = root
        self.keys = keys
        self.client = keys.client
        self._orphan_logged = False

    def record(self) -> Member:
        """This node's member record, from its settings."""
        return Member(self.node, self.settings.amqp, self.settings.http,
                      self.settings.replication, dict(self.settings.extra))

    async def register(self) -> str:
        """Rewrite this node's member record (addresses may have changed) if it exists:
        ``REGISTERED``; else ``FORGOTTEN`` (not a member), or ``ORPHANED``: this node was a
        member but etcd knows nothing of the cluster (wiped or replaced) and force_boot was
        not given. A node that was a member never founds a cluster without force_boot: the
        first to campaign would lead with its own copy, whatever it lacks."""
        me = self.record()
        key = self.keys.members_prefix + self.node
        result = await self.client.txn([Compare.exists(key)], [Put(key, me.encode())])
        if result.succeeded:
            self._orphan_logged = False
            return REGISTERED
        founded = self.keys.prefix + "founded"
        state = files.load_state(self.root)
        if state.get("member"):
            if await self.client.get(founded) is not None or await self.keys.members():
                return FORGOTTEN
            if not files.force_boot_requested(self.root):
                if not self._orphan_logged:
                    self._orphan_logged = True
                    log.error(
                        "%s was a member of cluster %s (epoch %s) but etcd (%s) has no record "
                        "of the cluster: was etcd wiped or replaced? Not founding it again "
                        "with this node's copy. Run 'burrowctl force_boot' on the node whose "
                        "data should survive (then 'burrowctl stop_app', 'reset', "
                        "'join_cluster <it>', 'start_app' on the others)", self.node,
                        self.settings.cluster, state.get("epoch", "?"),
                        ", ".join(self.settings.endpoints))
                return ORPHANED
            if not (await self.client.txn([Compare.missing(founded)],
                                          [Put(founded, self.node.encode())])).succeeded:
                return FORGOTTEN  # another node founded it first
            log.warning("force_boot: %s founds cluster %s again with its own data (etcd "
                        "had no record of it)", self.node, self.settings.cluster)
            await self.join(me, first=True)
            return REGISTERED
        if not self.settings.auto_join:
            return FORGOTTEN
        # one node founds the cluster (atomically: nodes booting together race here); it may
        # bring its data along, every other one starts from a copy of the leader's
        first = (await self.client.txn([Compare.missing(founded)],
                                       [Put(founded, self.node.encode())])).succeeded
        if not first and not self.settings.blank:
            others = await self.keys.members()
            log.error("%s holds data of its own and cluster %s has members (%s): not "
                      "joining it; 'burrowctl reset' then 'join_cluster' makes it a member",
                      self.node, self.settings.cluster, ", ".join(sorted(others)))
            return FORGOTTEN
        await self.join(me, first=first)
        return REGISTERED

    async def join(self, me: Member | None = None, first: bool = False) -> None:
        """Become a member (``join_cluster``, or the first boot of a configured node). A node
        joining members that exist has a copy to fill: it may not lead until it has synced."""
        me = me or self.record()
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: files.save_state(self.root, member=True, syncing=not first,
                                           cluster=self.settings.cluster))
        await self.keys.join(me)
        log.info("%s joined cluster %s%s", self.node, self.settings.cluster,
                 " as its first member" if first else "")
