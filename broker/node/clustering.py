"""Cluster mode on a node: what the node does for each role its ``ClusterMember`` plays.

Cluster mode is on when etcd endpoints are configured. The node then holds its data directory
for its whole life (followers write it through replication), and:

- as **leader** it loads the queues from the data directory with the replication server as
  storage's sink, confirms through ``ReplicatedDurability`` (the confirm rule) and accepts PROXY
  headers from cluster peers, so that clients proxied by followers show their own address;
- as **follower** it serves no state: AMQP (and AMQPS) connections are spliced to the leader
  (``broker.cluster.proxy``), the HTTP side forwards to the leader (``broker.ops.mgmt.cluster``);
- a node removed with ``reset`` serves alone (as a reset RabbitMQ node does) until
  ``join_cluster``.

The cluster commands land here: ``join_cluster`` (the other node must be a member in etcd),
``forget_cluster_node`` (refused for a running node or the leader), ``reset`` (wipes the data
and the membership), and ``status`` for ``cluster_status`` and the management API.

Invariants:
- The node serves state only while leading or alone; on losing the lead every client is
  closed before the stores (``Node.close_state``), and the state is rebuilt from scratch.
- Peers trusted for PROXY headers are the addresses the members advertise (resolved), and
  this node's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import socket
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from broker.cluster import files, proxy
from broker.cluster.durability import ReplicatedDurability
from broker.cluster.etcd import EtcdClient, EtcdError
from broker.cluster.keyspace import ClusterKeys, Member
from broker.cluster.member import ClusterMember, Leadership
from broker.cluster.registration import Settings
from broker.core.naming import BURROWMQ_VERSION, RABBITMQ_VERSION, node_name
from storage.datadir import DEFINITIONS_NAME, LOCK_NAME, QUEUES_NAME, SCRATCH_NAME, DataDir

if TYPE_CHECKING:
    from broker.amqp.ports import Durability
    from storage.replication import ReplicationSink

    from .config import Config
    from .stores import Stores


class Alarmed(Protocol):
    @property
    def active(self) -> Collection[str]: ...


class ClusterHost(Protocol):
    """What cluster mode needs of its node (``node.Node``, which it does not import)."""

    config: Config
    port: int
    management_port: int | None
    stores: Stores | None
    running: bool

    @property
    def alarms(self) -> Alarmed: ...
    async def open_state(self, data: DataDir | None = None,
                         sink: ReplicationSink | None = None) -> None: ...
    async def close_state(self, reason: str) -> None: ...
    def set_durability(self, durability: Durability | None) -> None: ...
    def amqp_session(self) -> asyncio.Protocol: ...

log = logging.getLogger("broker.cluster")

KEEP_ON_RESET = {LOCK_NAME, SCRATCH_NAME, files.STATE_NAME, "ctl.sock", "ctl.cookie"}


class ClusterError(Exception):
    """A cluster command cannot be done: ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def hostport(host: str, port: int | None) -> str:
    if port is None:
        return ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class ClusterMode:
    def __init__(self, node: ClusterHost) -> None:
        self.node = node
        cfg = node.config
        self.cluster = cfg.etcd_cluster or cfg.cluster_name or "default"
        self.data: DataDir | None = None
        self.keys = ClusterKeys(EtcdClient(list(cfg.etcd_endpoints),
                                           timeout=max(1.0, float(cfg.lease_ttl))),
                                self.cluster, cfg.etcd_prefix)
        self.member: ClusterMember | None = None
        self.standalone = False
        self.splices: set[proxy.Splice] = set()
        self.peers: set[str] = set()
        self._peers_task: asyncio.Task[None] | None = None
        self.replication_port = cfg.replication_port
        self._replication_socket: socket.socket | None = None

    @property
    def name(self) -> str:
        return node_name()

    @property
    def root(self) -> Path:
        assert self.data is not None
        return self.data.path

    @property
    def leading(self) -> bool:
        return self.member is not None and self.member.leadership is not None

    @property
    def serving(self) -> bool:
        """This node holds the state and serves clients itself."""
        return self.node.stores is not None and (self.standalone or self.leading)

    @property
    def left(self) -> bool:
        """Reset (or never joined): this node is on its own, whatever etcd holds."""
        return self.data is not None and files.load_state(self.root).get("member") is False

    @property
    def role(self) -> str:
        if self.standalone:
            return "standalone"
        if self.member is None:
            return "stopped"
        return self.member.role

    # ---- the node's life ---------------------------------------------------------------
    def prepare(self) -> None:
        """At node start: lock the data directory for the node's whole life; a replication
        port of 0 is chosen now and kept (bound, listening only while leading)."""
        self.data = DataDir(self.node.config.data_dir)
        cfg = self.node.config
        if cfg.replication_port == 0:
            host = cfg.replication_host or cfg.host
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, 0))
            self._replication_socket = sock
            self.replication_port = sock.getsockname()[1]
        log.info("replication listener (while leading) on %s", hostport(
            cfg.replication_host or cfg.host, self.replication_port))

    async def start_app(self) -> None:
        state = files.load_state(self.root)
        if state.get("member") is False:
            log.info("%s is not a cluster member (it was reset): serving alone until "
                     "'burrowctl join_cluster <node>'", self.name)
            self.standalone = True
            await self.node.open_state(self.data)
            return
        if self.member is not None:
            return
        self.member = ClusterMember(self._settings(auto_join="member" not in state),
                                    self.root, self, self.keys)
        self.member.start()
        if self._peers_task is None or self._peers_task.done():
            self._peers_task = asyncio.get_running_loop().create_task(self._peers_loop())

    async def stop_app(self, graceful: bool = True) -> None:
        if self._peers_task is not None:
            self._peers_task.cancel()
            self._peers_task = None
        member, self.member = self.member, None
        if member is not None:
            await member.close()
        if self.standalone:
            self.standalone = False
            await self.node.close_state("shutdown")
        proxy.close_all(self.splices)

    async def close(self) -> None:
        await self.stop_app()
        await self.keys.client.close()
        if self.data is not None:
            self.data.close()
            self.data = None
        if self._replication_socket is not None:
            self._replication_socket.close()
            self._replication_socket = None

    def _settings(self, auto_join: bool) -> Settings:
        node, cfg = self.node, self.node.config
        host = self.advertise_host()
        return Settings(
            node=self.name, endpoints=tuple(cfg.etcd_endpoints), cluster=self.cluster,
            prefix=cfg.etcd_prefix, amqp=hostport(host, node.port),
            http=hostport(host, node.management_port),
            replication=hostport(host, self.replication_port),
            replication_bind=(cfg.replication_host or cfg.host, self.replication_port),
            replication_socket=self._replication_socket,
            lease_ttl=cfg.lease_ttl, min_insync=cfg.min_insync,
            ack_timeout=cfg.replica_ack_timeout,
            extra={"version": BURROWMQ_VERSION, "rabbitmq_version": RABBITMQ_VERSION,
                   "python_version": platform.python_version(),
                   "cpu_cores": os.cpu_count() or 1},
            # a tunnel to whichever node leads (tests put a fault proxy there)
            replication_via=os.environ.get("BURROWMQ_REPLICATION_VIA", ""),
            auto_join=auto_join, blank=not (self.root / DEFINITIONS_NAME).exists())

    def advertise_host(self) -> str:
        cfg = self.node.config
        if cfg.advertise_host:
            return cfg.advertise_host
        if cfg.host not in ("", "0.0.0.0", "::"):
            return cfg.host
        return socket.gethostname()

    # ---- Host: what the member asks of the node ----------------------------------------
    async def lead(self, leadership: Leadership) -> None:
        await self._refresh_peers()
        node = self.node
        await node.open_state(self.data, sink=leadership.server)
        assert node.stores is not None
        node.set_durability(ReplicatedDurability(node.stores, leadership.server,
                                                 leadership.tracker, leadership.lease,
                                                 node.config.confirm_timeout))
        proxy.close_all(self.splices)

    async def unlead(self, reason: str, graceful: bool) -> None:
        self.node.set_durability(None)
        await self.node.close_state("shutdown" if graceful else reason)

    def leader_changed(self, leader: Member | None) -> None:
        closed = proxy.close_all(self.splices)
        if closed:
            log.info("leader changed to %s: closed %d proxied connections",
                     leader.node if leader else "none", closed)

    def running_info(self) -> dict[str, Any]:
        return {"version": BURROWMQ_VERSION, "rabbitmq_version": RABBITMQ_VERSION,
                "alarms": sorted(self.node.alarms.active)}

    # ---- clients -----------------------------------------------------------------------
    def amqp_protocol(self) -> asyncio.Protocol:
        node = self.node
        if self.standalone:
            return node.amqp_session()
        if self.serving:
            return proxy.Acceptor(node.amqp_session, self.is_peer)
        return proxy.Splice(self.leader_amqp, self.splices)

    def is_peer(self, host: str) -> bool:
        return host in self.peers

    async def leader_address(self, field: str, timeout: float | None = None) -> \
            tuple[str, int] | None:
        """The leader's advertised address (``amqp`` or ``http``), waiting for an election
        (at most about two lease TTLs); this node's own when it leads."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout if timeout is not None
                                  else 2.0 * self.node.config.lease_ttl + 3.0)
        while True:
            if self.serving:
                own = self.node.port if field == "amqp" else self.node.management_port
                return (self.advertise_host(), own) if own else None
            member = self.member
            leader = member.leader_member if member is not None else None
            if leader is not None and getattr(leader, field):
                return split_hostport(getattr(leader, field))
            if loop.time() >= deadline or member is None:
                return None
            await asyncio.sleep(0.05)

    async def leader_amqp(self) -> tuple[str, int] | None:
        return await self.leader_address("amqp")

    async def _refresh_peers(self) -> None:
        try:
            members = await self.keys.members()
        except EtcdError as exc:
            log.warning("could not read the members to trust their PROXY headers: %s", exc)
            return
        hosts = {self.advertise_host(), self.node.config.host, "127.0.0.1", "::1"}
        for member in members.values():
            for address in (member.amqp, member.http, member.replication):
                if address:
                    hosts.add(split_hostport(address)[0])
        loop = asyncio.get_running_loop()
        found: set[str] = set()
        for host in hosts:
            with contextlib.suppress(OSError):
                for info in await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM):
                    found.add(str(info[4][0]))
        self.peers = found

    async def _peers_loop(self) -> None:
        """Trust new members' addresses within seconds (every node: requests relayed with
        ``-n`` reach followers too)."""
        while self.member is not None:
            await self._refresh_peers()
            await asyncio.sleep(5 if len(self.peers) > 2 else 0.5)

    # ---- cluster commands --------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        keys = self.keys
        try:
            members = await keys.members()
            running = await keys.running()
            isr = await keys.isr()
            leader = await keys.election.leader()
        except EtcdError as exc:
            raise ClusterError(f"etcd cannot be reached: {exc}", 503) from None
        lag: dict[str, int] = {}
        member = self.member
        if member is not None and member.leadership is not None:
            tracker = member.leadership.tracker
            for name in members:
                if name != self.name:
                    lag[name] = max(0, tracker.position - tracker.acked_position(name))
        return {
            "cluster_name": self.cluster, "node": self.name, "role": self.role,
            "members": {name: json.loads(m.encode()) for name, m in members.items()},
            "running": running,
            "leader": leader.value.decode() if leader is not None else None,
            "epoch": leader.epoch if leader is not None else None,
            "isr": sorted(isr.members) if isr is not None else [],
            "lag": lag,
        }

    async def join(self, other: str) -> None:
        if self.node.running:
            raise ClusterError("this command requires the 'rabbit' app to be stopped on the "
                               "target node. Stop it with 'burrowctl stop_app'.")
        if other == self.name:
            raise ClusterError(f"cannot cluster node {self.name} with itself")
        try:
            members = await self.keys.members()
        except EtcdError as exc:
            raise ClusterError(f"etcd cannot be reached: {exc}", 503) from None
        if other not in members:
            raise ClusterError(f"{other} is not a member of cluster {self.cluster} (etcd "
                               f"{', '.join(self.node.config.etcd_endpoints)}): is it running "
                               "with the same etcd and cluster name?", 404)
        settings = self._settings(auto_join=False)
        await ClusterMember(settings, self.root, self, self.keys).join()

    async def forget(self, other: str) -> None:
        try:
            members = await self.keys.members()
            running = await self.keys.running()
            leader = await self.keys.election.leader()
        except EtcdError as exc:
            raise ClusterError(f"etcd cannot be reached: {exc}", 503) from None
        if other not in members:
            raise ClusterError("The node selected is not in the cluster.", 404)
        if leader is not None and leader.value.decode() == other:
            raise ClusterError(f"{other} is the cluster's leader: stop it first (another node "
                               "takes over), then forget it")
        if other == self.name:
            raise ClusterError(f"cannot remove {other}: it is this node (use 'burrowctl "
                               "reset' on it instead)")
        if other in running:
            raise ClusterError(f"{{failed_to_remove_node,'{other}',{{active,\"Mnesia is "
                               f"running\",'{other}'}}}}: {other} is running; stop it first")
        if self.member is not None:
            await self.member.forget(other)
        else:
            await self.keys.forget(other)
        log.info("%s was removed from cluster %s", other, self.cluster)

    async def reset(self) -> None:
        """Wipe the data and leave the cluster (the app is stopped)."""
        if self.node.running:
            raise ClusterError(f"Mnesia is still running on node {self.name}. Please stop "
                               "the node with rabbitmqctl stop_app first.")
        try:
            await self.keys.forget(self.name)
            await self.keys.clear_running(self.name)
        except EtcdError as exc:
            raise ClusterError(f"etcd cannot be reached, so {self.name} cannot leave the "
                               f"cluster: {exc}", 503) from None
        await asyncio.get_running_loop().run_in_executor(None, wipe, self.root)
        # no epoch: a reset node has nothing to protect, and a cluster founded again (etcd
        # wiped, force_boot) counts its epochs from a new etcd's revisions
        files.save_state(self.root, member=False, syncing=True, epoch=0)
        log.info("%s was reset: its data is gone and it left cluster %s", self.name,
                 self.cluster)


def wipe(root: Path) -> None:
    """Delete everything replicated or derived from it (the lock, cookie and state stay)."""
    for entry in list(root.iterdir()):
        if entry.name in KEEP_ON_RESET:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)
    (root / QUEUES_NAME).mkdir(exist_ok=True)
