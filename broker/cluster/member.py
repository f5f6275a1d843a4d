"""A cluster member's life: register, follow whoever leads, campaign, lead, step down.

Two tasks run while the member's app runs:

- **following** observes the election. For a leader other than this node it replicates from it
  (``ReplicationClient``, the leader's epoch expected) and tells the node (``Host.leader_changed``:
  proxied clients are closed and reconnect to the new leader). A leader key of this node's name
  held by another lease is a previous life of this node (this process holds the data
  directory's lock, so that one is gone): its lease is revoked, which starts the next election
  at once instead of a lease TTL later.
- **campaigning** holds a lease (its ``running/<node>`` key says the app runs) and campaigns.
  A winner outside the ISR, or whose copy is incomplete (``syncing``), resigns and tries again
  later. A winner in the ISR stops replicating, cuts the tail it never acked, saves the epoch,
  writes the ISR (fenced by its epoch) without the previous leader, starts the replication
  server and lets the node load the queues and serve (``Host.lead``). It leads until its lease
  is lost, a fenced write fails, or the election shows someone else; then it steps down
  (``Host.unlead`` closes every client first) and starts over with a new lease.

Invariants:
- Role changes are serialized (one lock): the node never serves and follows at once.
- A node leads only under a lease it believes alive; the confirm path checks the lease again
  (``durability``), so a leader paused past its lease (SIGSTOP) confirms nothing when it wakes.
- Whether this node is a member, and may found the cluster, is ``registration``'s (the member
  record is only rewritten when it exists; a node that was a member never founds a cluster
  again without ``burrowctl force_boot``): a forgotten node stops, ``forgotten`` set; an
  orphaned one (etcd lost the cluster) waits for force_boot.
- ``force_boot`` also lets a member lead outside the ISR or with an incomplete copy (the ISR
  shrank to a node gone for good): it starts the ISR afresh with itself alone; the marker is
  removed once it serves. Messages confirmed only by the lost nodes are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from . import files
from .election import Leader
from .etcd import EtcdClient, EtcdError
from .follower import ReplicationClient
from .isr import IsrTracker
from .keyspace import ClusterKeys, Fenced, Member
from .leader import ReplicationServer
from .lease import Lease
from .registration import FORGOTTEN, ORPHANED, REGISTERED, Registration, Settings

log = logging.getLogger("broker.cluster")
T = TypeVar("T")


@dataclass
class Leadership:
    leader: Leader  # the election's answer: epoch = leader.epoch
    lease: Lease
    server: ReplicationServer
    tracker: IsrTracker


class Host(Protocol):
    """What a member needs of its node (``broker.node.cluster``)."""

    async def lead(self, leadership: Leadership) -> None:
        """Load the state from the data directory and serve clients, with the replication
        server as storage's sink."""
        ...

    async def unlead(self, reason: str, graceful: bool) -> None:
        """Stop serving: close every client now, then the stores."""
        ...

    def leader_changed(self, leader: Member | None) -> None: ...

    def running_info(self) -> dict[str, Any]: ...


class ClusterMember:
    def __init__(self, settings: Settings, root: Path, host: Host,
                 keys: ClusterKeys | None = None) -> None:
        self.settings = settings
        self.node = settings.node
        self.root = root
        self.host = host
        self._own_client = keys is None
        if keys is None:
            keys = ClusterKeys(EtcdClient(list(settings.endpoints),
                                          timeout=max(1.0, settings.lease_ttl)),
                               settings.cluster, settings.prefix)
        self.keys = keys
        self.client = keys.client
        self.registration = Registration(settings, root, keys)
        self.leader: Leader | None = None  # the election's current leader (maybe this node)
        self.leader_member: Member | None = None  # its record, when it is another node
        self.leader_known = asyncio.Event()  # set while leader_member is known
        self.follower: ReplicationClient | None = None
        self.leadership: Leadership | None = None
        self.forgotten = False
        self.secret: bytes | None = None
        self._lock = asyncio.Lock()
        self._deposed = asyncio.Event()
        self._follow_task: asyncio.Task[None] | None = None
        self._campaign_task: asyncio.Task[None] | None = None
        self._lease: Lease | None = None
        self._registered = asyncio.Event()  # following waits for it: a node not admitted
        # to the cluster must not have its data replaced by a leader's

    @property
    def role(self) -> str:
        if self.leadership is not None:
            return "leader"
        return "follower" if self.running else "stopped"

    @property
    def running(self) -> bool:
        return self._campaign_task is not None

    # ---- lifetime ----------------------------------------------------------------------
    def start(self) -> None:
        if self._campaign_task is not None:
            return
        loop = asyncio.get_running_loop()
        self._follow_task = loop.create_task(self._follow(), name="cluster follow")
        self._campaign_task = loop.create_task(self._campaign(), name="cluster campaign")

    def _restart_following(self) -> None:
        """Observe afresh: the election's current leader is reported again (after stepping
        down, the leader seen while leading was not followed)."""
        if self._follow_task is not None:
            self._follow_task.cancel()
            self._follow_task = asyncio.get_running_loop().create_task(self._follow(),
                                                                       name="cluster follow")

    async def stop(self, graceful: bool = True) -> None:
        """Stop following and campaigning; a leader steps down first (gracefully: followers
        get the last changes and a new leader is elected at once)."""
        if self.leadership is not None:
            await self.step_down("stopping", graceful)
        tasks = [t for t in (self._follow_task, self._campaign_task) if t is not None]
        self._follow_task = self._campaign_task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._stop_following()
        lease, self._lease = self._lease, None
        if lease is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(lease.revoke(), 2.0)
        self._set_leader(None, None)

    async def close(self) -> None:
        await self.stop()
        if self._own_client:
            await self.client.close()

    async def _retrying(self, what: str, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` again and again; etcd or network failures are logged and waited
        out (the member keeps working towards its role until stopped)."""
        delay = 0.2
        while True:
            try:
                await action()
                delay = 0.2
            except (EtcdError, OSError, Fenced) as exc:
                log.warning("%s: %s", what, exc)
            except Exception:
                log.exception("%s failed", what)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    # ---- following ---------------------------------------------------------------------
    async def _follow(self) -> None:
        await self._registered.wait()
        await self._retrying("following the election", self._observe)

    async def _observe(self) -> None:
        if self.secret is None:
            self.secret = await self.keys.secret()
        async with contextlib.aclosing(self.keys.election.observe()) as leaders:
            async for leader in leaders:
                await self._on_leader(leader)

    async def _on_leader(self, leader: Leader | None) -> None:
        ours = self.leadership
        if ours is not None:
            if leader is None or leader.key != ours.leader.key:
                log.error("the election shows %s as leader, not this node: stepping down",
                          leader.value.decode() if leader else "nobody")
                self._deposed.set()
            return
        if leader is not None and leader.value.decode() == self.node:
            lease = self._lease
            if lease is None or leader.lease != lease.id:
                log.info("the leader key of a previous life of this node is still there "
                         "(lease %x): revoking it", leader.lease)
                with contextlib.suppress(EtcdError):
                    await self.client.lease_revoke(leader.lease)
            return
        async with self._lock:
            if self.leadership is not None:
                return
            if leader is not None and self.leader is not None and leader.key == self.leader.key \
                    and self.follower is not None:
                return
            await self._stop_following()
            member = None
            if leader is not None:
                member = await self.keys.member(leader.value.decode())
                if member is None:
                    log.warning("leader %s has no member record", leader.value.decode())
            self._set_leader(leader, member)
            if leader is not None and member is not None and member.replication:
                self._start_following(leader, member)

    def _set_leader(self, leader: Leader | None, member: Member | None) -> None:
        changed = (self.leader_member.node if self.leader_member else None) != \
            (member.node if member else None) or self.leader != leader
        self.leader = leader
        self.leader_member = member
        if member is not None:
            self.leader_known.set()
        else:
            self.leader_known.clear()
        if changed:
            self.host.leader_changed(member)

    def _start_following(self, leader: Leader, member: Member) -> None:
        assert self.secret is not None
        address = self.settings.replication_via or member.replication
        host, _, port = address.rpartition(":")
        log.info("following %s (epoch %d) at %s", member.node, leader.epoch, address)
        self.follower = ReplicationClient(self.root, self.node, self.secret,
                                          (host.strip("[]"), int(port)),
                                          expected_epoch=leader.epoch,
                                          heartbeat_timeout=max(2.0, self.settings.lease_ttl))
        self.follower.start()

    async def _stop_following(self) -> dict[str, int]:
        follower, self.follower = self.follower, None
        if follower is None:
            return {}
        await follower.stop()
        return follower.unacked_tail()

    # ---- campaigning -------------------------------------------------------------------
    async def _campaign(self) -> None:
        await self._retrying("campaigning", self._one_lease)

    async def _one_lease(self) -> None:
        """Register, take a lease, campaign until leading or the lease is lost; lead."""
        # read each time: a wiped etcd makes a new one, which a founding node then uses
        self.secret = await self.keys.secret()
        registered = await self.registration.register()
        if registered != REGISTERED and self._registered.is_set():
            self._registered.clear()  # etcd lost the cluster while this node ran: stop
            self._restart_following()  # following until it is admitted again
            await self._stop_following()
            self._set_leader(None, None)
        if registered == ORPHANED:  # etcd lost the cluster: wait for force_boot
            await asyncio.sleep(max(1.0, float(self.settings.lease_ttl)))
            return
        if registered == FORGOTTEN:
            self.forgotten = True
            log.error("%s is no longer a member of cluster %s (forget_cluster_node, or etcd "
                      "lost the cluster and another node founded it again with force_boot): "
                      "not following or leading; run 'burrowctl reset' and 'join_cluster'",
                      self.node, self.settings.cluster)
            await asyncio.Event().wait()
        self._registered.set()
        lease = await Lease.grant(self.client, self.settings.lease_ttl)
        self._lease = lease
        try:
            await self.keys.set_running(self.node, lease.id, self.host.running_info())
            while not lease.lost.is_set():
                won = await self._unless_lost(lease, self.keys.election.campaign(self.node,
                                                                                  lease))
                if won is None:
                    break
                why = await self._ineligible()
                if why:
                    log.warning("elected, but %s: stepping down", why)
                    with contextlib.suppress(EtcdError):
                        await self.keys.election.resign(won)
                    await self._unless_lost(lease, asyncio.sleep(self.settings.lease_ttl))
                    continue
                await self._lead(won, lease)
                break
        finally:
            if self.leadership is not None:
                await self.step_down(lease.lost_reason or "stopping", graceful=False)
            self._lease = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(lease.revoke()), 2.0)

    async def join(self, me: Member | None = None, first: bool = False) -> None:
        """Become a member (``join_cluster``; ``registration.Registration.join``)."""
        await self.registration.join(me, first)

    async def _unless_lost(self, lease: Lease, work: Coroutine[Any, Any, T]) -> T | None:
        task = asyncio.ensure_future(work)
        lost = asyncio.ensure_future(lease.lost.wait())
        try:
            await asyncio.wait([task, lost], return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return task.result() if task.done() and not task.cancelled() else None

    async def _ineligible(self) -> str:
        """Why this node must not lead now ('' when it may, or force_boot was given)."""
        if files.force_boot_requested(self.root):
            isr = await self.keys.isr()
            log.warning("force_boot: %s leads with its own copy of the data, whatever the "
                        "in-sync replicas (%s) held; messages confirmed only by them are lost",
                        self.node, sorted(isr.members) if isr is not None else "none")
            return ""
        if files.load_state(self.root).get("syncing"):
            return "its copy of the data is incomplete (a full sync did not finish)"
        isr = await self.keys.isr()
        if isr is not None and self.node not in isr.members:
            return f"it is not in the in-sync replicas {sorted(isr.members)}"
        return ""

    async def _lead(self, won: Leader, lease: Lease) -> None:
        async with self._lock:
            try:
                await self._prepare_lead(won, lease)
            except BaseException:
                self._restart_following()  # not leading after all: follow whoever does
                raise
            if self.leadership is None:
                return
            try:
                await self.host.lead(self.leadership)
            except BaseException:
                await self._release("could not start serving", graceful=False)
                raise
            if files.force_boot_requested(self.root):  # done: used once, as RabbitMQ's
                await asyncio.get_running_loop().run_in_executor(
                    None, files.clear_force_boot, self.root)
        deposed = asyncio.ensure_future(self._deposed.wait())
        lost = asyncio.ensure_future(lease.lost.wait())
        try:
            await asyncio.wait([deposed, lost], return_when=asyncio.FIRST_COMPLETED)
        finally:
            deposed.cancel()
            lost.cancel()
        await self.step_down(lease.lost_reason or "deposed", graceful=False)

    async def _prepare_lead(self, won: Leader, lease: Lease) -> None:
        """Stop following, cut the unacked tail, save the epoch, write the ISR (fenced),
        start the replication server: ``leadership`` is set when all of it worked."""
        loop = asyncio.get_running_loop()
        tail = await self._stop_following()
        self._set_leader(won, None)
        if tail:
            await loop.run_in_executor(None, cut_tail, self.root, tail)
        forced = files.force_boot_requested(self.root)
        # forced: this copy is now the reference, complete or not
        changes = {"epoch": won.epoch, **({"syncing": False} if forced else {})}
        await loop.run_in_executor(None, lambda: files.save_state(self.root, **changes))
        previous = await self.keys.isr()
        members = await self.keys.members()
        initial = set(previous.members) if previous is not None else set()
        if previous is not None:
            initial.discard(previous.leader)  # it may be dead: it rejoins once synced
        initial = {n for n in initial if n in members and n != self.node}
        if forced:
            initial = set()  # the others hold other copies: they sync from this one first
        writer = self.keys.isr_writer(won, self.node)
        await writer.set_isr(frozenset(initial | {self.node}))  # Fenced if too late
        tracker = IsrTracker(self.node, writer, min_insync=self.settings.min_insync,
                             ack_deadline=self.settings.ack_timeout, initial=initial,
                             on_fenced=lambda _exc: self._deposed.set())
        assert self.secret is not None
        host, port = self.settings.replication_bind
        server = ReplicationServer(self.root, self.node, won.epoch, self.secret, tracker,
                                   host=host, port=port,
                                   sock=self.settings.replication_socket)
        await server.start()
        self._deposed.clear()
        self.leadership = Leadership(won, lease, server, tracker)
        log.info("%s leads cluster %s, epoch %d, in-sync replicas %s", self.node,
                 self.settings.cluster, won.epoch, sorted(initial | {self.node}))

    async def step_down(self, reason: str, graceful: bool) -> None:
        async with self._lock:
            await self._release(reason, graceful)

    async def _release(self, reason: str, graceful: bool) -> None:
        ours = self.leadership
        if ours is None:
            return
        log.warning("%s stops leading: %s", self.node, reason)
        try:
            await self.host.unlead(reason, graceful)
            if graceful:
                await self._drain(ours)
        finally:
            self.leadership = None
            self._set_leader(None, None)
            await ours.server.stop()
            if not ours.lease.lost.is_set():
                with contextlib.suppress(EtcdError, OSError):
                    await asyncio.wait_for(self.keys.election.resign(ours.leader), 2.0)
            if self._follow_task is not None:
                self._restart_following()

    async def _drain(self, ours: Leadership, timeout: float = 2.0) -> None:
        """Give in-sync followers the last changes (the stores were just closed)."""
        ours.server.flush()
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def replicated(ok: bool) -> None:
            if not done.done():
                done.set_result(ok)

        ours.tracker.when_replicated(ours.server.position, replicated, timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(done, timeout + 0.5)

    # ---- what the node shows -----------------------------------------------------------
    async def forget(self, node: str) -> None:
        """``forget_cluster_node`` on the leader: the member record goes, then the ISR entry."""
        await self.keys.forget(node)
        if self.leadership is not None:
            await self.leadership.tracker.remove(node)


def cut_tail(root: Path, tail: dict[str, int]) -> None:
    """Cut each file back to its size before appends this node never acked (nothing there
    was confirmed: a confirm needs this node's ack)."""
    for rel, size in tail.items():
        path = files.safe_path(root, rel)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            if os.fstat(fd).st_size > size:
                log.info("cutting %s back to %d bytes (not acked to the old leader)", rel,
                         size)
                os.ftruncate(fd, size)
                os.fsync(fd)
        finally:
            os.close(fd)
