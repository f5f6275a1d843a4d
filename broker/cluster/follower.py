"""The follower's replication client: connect, authenticate, full sync, then apply the stream.

``run()`` is one session with the leader at ``address``; ``follow()`` repeats sessions until
``stop()``. Each session: HELLO, check the leader's proof and epoch, AUTH, send the listing
(name, size, sha256 of every replicated file), apply the sync, ack its position, then apply
streamed changes and ack cumulative positions after fsync batches.

Invariants:
- A leader whose epoch is lower than the highest this data directory accepted is refused
  (``EpochRefused``); a higher epoch is saved durably before any of its data is applied.
- ``ACK(p)`` is sent only after every change up to ``p`` is applied and fsynced
  (``applier.fsync_all``; appends to ack files are written only, as on the leader); fsync
  batches run in an executor while the next frames are applied,
  so they coalesce under load.
- While a full sync cuts or deletes existing data, ``cluster.state`` says ``syncing`` (saved
  durably before the first such change, cleared once the sync is fsynced): the copy may then
  lack confirmed messages, and a node in that state must not lead.
- ``unacked_tail()`` names, per file, the size it had before the first append not yet acked:
  what a follower promoted to leader cuts off (nothing there was confirmed).
- A session ends on any error (``Diverged``, a bad frame, silence for ``heartbeat_timeout``,
  EOF); the next session's full sync repairs whatever the copy holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
from collections import deque
from pathlib import Path

from . import files, wire
from .applier import Applier, Diverged, fsync_all
from .wire import Kind, ProtocolError

log = logging.getLogger(__name__)

_LIST_FRAME = 64 * 1024


class AuthFailed(Exception):
    """The leader or this follower failed the secret check."""


class EpochRefused(Exception):
    """The leader's epoch is lower than one this follower already accepted."""


class ReplicationClient:
    def __init__(self, root: str | os.PathLike[str], node: str, secret: bytes,
                 address: tuple[str, int], *, heartbeat_timeout: float = 5.0,
                 connect_timeout: float = 3.0, expected_epoch: int | None = None) -> None:
        self.root = Path(root).absolute()
        self.node = node
        self.secret = secret
        self.address = address
        self.heartbeat_timeout = heartbeat_timeout
        self.connect_timeout = connect_timeout
        self.expected_epoch = expected_epoch
        self.epoch = files.load_epoch(self.root)
        self.leader: str | None = None
        self.position = 0  # applied
        self.acked = 0
        self.streaming = False
        self.synced = asyncio.Event()  # set once a full sync is applied and acked
        self.sessions = 0
        self._applier: Applier | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._kick = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._stopping = False
        self._pinged = False
        self._task: asyncio.Task[None] | None = None
        self._tail: deque[tuple[int, str, int]] = deque()  # (position, file, offset) appended
        self.syncing = bool(files.load_state(self.root).get("syncing"))

    def unacked_tail(self) -> dict[str, int]:
        """For each file appended to since the last ack: its size before those appends."""
        cut: dict[str, int] = {}
        for _, rel, offset in self._tail:
            cut.setdefault(rel, offset)
        return cut

    def _mark_syncing(self) -> None:
        if not self.syncing:
            files.save_state(self.root, syncing=True)
            self.syncing = True

    # ---- lifetime ----------------------------------------------------------------------
    async def follow(self, retry: float = 0.3) -> None:
        """Sessions one after another until ``stop()``."""
        while not self._stopping:
            try:
                await self.run()
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ProtocolError,
                    Diverged, AuthFailed, EpochRefused) as exc:
                log.info("replication from %s:%d ended: %s", *self.address,
                         exc or type(exc).__name__)
            if not self._stopping:
                await asyncio.sleep(retry)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.follow(), name="replication")

    async def stop(self) -> None:
        self._stopping = True
        if self._writer is not None:
            self._writer.transport.abort()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """One session, until the connection ends (raises why)."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*self.address),
                                                self.connect_timeout)
        self._writer = writer
        self._applier = Applier(self.root, before_destroy=self._mark_syncing)
        self._tail.clear()
        self.streaming = False
        self.synced.clear()
        self.position = self.acked = 0
        self.sessions += 1
        syncer = asyncio.get_running_loop().create_task(self._syncer(), name="replica fsync")
        try:
            await self._session(reader, writer)
        except Diverged as exc:
            with contextlib.suppress(Exception):
                writer.write(wire.error(f"diverged: {exc}"))
            raise
        finally:
            syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await syncer
            writer.transport.abort()
            self._applier.close()
            self._applier = None
            self._writer = None
            self.streaming = False

    # ---- the session -------------------------------------------------------------------
    async def _read(self, reader: asyncio.StreamReader) -> tuple[Kind, wire.Reader]:
        return await asyncio.wait_for(wire.read_frame(reader), self.heartbeat_timeout)

    async def _handshake(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        nonce_f = os.urandom(wire.NONCE)
        writer.write(wire.hello(self.node, nonce_f))
        kind, r = await self._read(reader)
        if kind == Kind.ERROR:
            raise AuthFailed(r.str())
        if kind != Kind.CHALLENGE:
            raise ProtocolError(f"expected CHALLENGE, got {kind.name}")
        leader, epoch, nonce_l, mac = r.str(), r.u64(), r.raw(wire.NONCE), r.raw(wire.DIGEST)
        if not hmac.compare_digest(mac, wire.leader_mac(self.secret, nonce_f, nonce_l, epoch,
                                                        leader)):
            writer.write(wire.error("authentication failed"))
            raise AuthFailed(f"{leader} does not know the cluster secret")
        if epoch < self.epoch or (self.expected_epoch is not None
                                  and epoch != self.expected_epoch):
            writer.write(wire.error(f"epoch {epoch} refused: this node has seen {self.epoch}"))
            raise EpochRefused(f"{leader} leads epoch {epoch}, this node has seen {self.epoch}")
        if epoch > self.epoch:
            await asyncio.get_running_loop().run_in_executor(None, files.save_epoch, self.root,
                                                             epoch)
            self.epoch = epoch
        writer.write(wire.frame(Kind.AUTH, wire.follower_mac(self.secret, nonce_l, nonce_f,
                                                             self.node)))
        kind, r = await self._read(reader)
        if kind == Kind.ERROR:
            raise AuthFailed(r.str())
        if kind != Kind.WELCOME:
            raise ProtocolError(f"expected WELCOME, got {kind.name}")
        self.leader = leader

    async def _session(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        await self._handshake(reader, writer)
        listing = await asyncio.get_running_loop().run_in_executor(None, files.listing,
                                                                   self.root)
        batch = bytearray()
        for rel, size, digest in listing:
            batch += wire.list_entry(rel, size, digest)
            if len(batch) >= _LIST_FRAME:
                writer.write(wire.frame(Kind.LIST, bytes(batch)))
                batch.clear()
                await writer.drain()
        if batch:
            writer.write(wire.frame(Kind.LIST, bytes(batch)))
        writer.write(wire.frame(Kind.LIST_END))
        await writer.drain()
        applier = self._applier
        assert applier is not None
        while True:
            kind, r = await self._read(reader)
            if kind == Kind.APPEND:
                position, rel, offset = r.u64(), r.str(), r.u64()
                applier.append(rel, offset, r.rest())
                self._tail.append((position, rel, offset))
            elif kind == Kind.S_WRITE:
                rel, offset = r.str(), r.u64()
                applier.sync_write(rel, offset, r.rest())
                if applier.orphans > 64:
                    await self._flush()
                continue
            elif kind == Kind.S_DELETE:
                applier.sync_delete(r.str())
                continue
            elif kind == Kind.S_END:
                self.position = r.u64()
                self.streaming = True
                self._pinged = True  # ack the end of the sync even at position 0
                await self._flush()
                if self.syncing or files.load_state(self.root).get("syncing"):
                    await asyncio.get_running_loop().run_in_executor(
                        None, lambda: files.save_state(self.root, syncing=False))
                    self.syncing = False
                self.synced.set()
                log.info("in sync with %s at position %d", self.leader, self.position)
                continue
            elif kind == Kind.REWRITE:
                position, rel, total, offset = r.u64(), r.str(), r.u64(), r.u64()
                applier.rewrite(rel, total, offset, r.rest())
            elif kind == Kind.DELETE:
                position, rel = r.u64(), r.str()
                applier.delete(rel)
            elif kind == Kind.TRUNCATE:
                position, rel, size = r.u64(), r.str(), r.u64()
                applier.truncate(rel, size)
            elif kind == Kind.PING:  # answered with an ACK even when idle: "still here"
                if not self.streaming:
                    continue  # a keepalive during the full sync
                position = max(r.u64(), self.position)
                self._pinged = True
            elif kind == Kind.ERROR:
                raise ProtocolError(f"leader: {r.str()}")
            else:
                raise ProtocolError(f"unexpected {kind.name} from the leader")
            if not self.streaming:
                raise ProtocolError(f"{kind.name} before the end of the full sync")
            self.position = position
            self._kick.set()

    # ---- fsync batches and acks ---------------------------------------------------------
    async def _syncer(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            try:
                await self._flush()
            except OSError as exc:  # nothing more can be acked: end the session
                log.error("replica fsync failed: %s", exc)
                if self._writer is not None:
                    self._writer.transport.abort()
                raise

    async def _flush(self) -> None:
        """fsync everything applied so far, then ack its position (once streaming)."""
        async with self._flush_lock:
            applier, writer = self._applier, self._writer
            if applier is None or writer is None:
                return
            position = self.position
            if applier.dirty:
                fds, dirs = applier.take_dirty()
                await asyncio.get_running_loop().run_in_executor(None, fsync_all, fds, dirs)
            if self.streaming and (position > self.acked or self._pinged):
                self._pinged = False
                self.acked = position
                tail = self._tail
                while tail and tail[0][0] <= position:
                    tail.popleft()
                writer.write(wire.frame(Kind.ACK, wire.u64(position)))
