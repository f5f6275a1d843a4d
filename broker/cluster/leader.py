"""The leader's replication server: storage's ``ReplicationSink``, streaming to followers.

Every change storage reports gets the next position and one encoded frame, written as-is to
every streaming follower. A follower that connects is authenticated (``wire``), then full-synced
against a snapshot, then streams.

The snapshot (why nothing is missed or sent twice): when a follower's listing has arrived, the
server, in one step on the loop thread, records every replicated file's size (its *cap*) and
starts queueing later changes for that follower. Storage writes on the same thread, so a byte
below a cap was reported before the snapshot and one above it after. The sync sends each file up
to its cap only (or from the follower's matching prefix up to it: a copy that stopped midway
resumes), then ``S_END(position at the snapshot)``, then the queued changes. A file deleted
after the snapshot but before it was read (a queued delete covers it when it is opened, on the
same thread) is not sent at all: its copy is deleted, the queued changes to its old self are
skipped up to that delete (``doomed``), and a new file of the same name comes whole from the
queued changes after it. Files rewritten in place meanwhile are sent as found and fixed by their
queued rewrite.

Off the hot path: a sink call only copies the bytes and queues them (consecutive appends to one
file coalesce into one ``APPEND`` of up to ``wire.CHUNK``); the queue is written to the
followers' sockets once per loop turn, or at once when it holds ``FLUSH_BYTES``. Positions are
assigned at the sink call, so ``position`` read after a local fsync covers everything written
before it, whether or not it has reached a socket yet.

Invariants:
- The queue is flushed before a new follower's snapshot and before every PING (a PING carries
  the position and a follower acks it: it must not count changes still queued here).
- Sink calls from another thread (definitions saved in an executor) are moved onto the loop,
  keeping their order.
- A follower more than ``max_buffer`` bytes behind (queued or unsent) is disconnected; so is one
  that has not acked for ``dead_after`` seconds. Neither blocks storage.
- Acks go to the ``IsrTracker``; ``wait_replicated`` is its ``wait``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import socket
import threading
from pathlib import Path

from . import files, wire
from .isr import IsrTracker
from .leader_session import FollowerSession, full_sync
from .wire import Kind, ProtocolError

log = logging.getLogger(__name__)

FLUSH_BYTES = 1024 * 1024  # queued bytes that trigger a flush before the end of the loop turn


class _Append:
    """An APPEND being coalesced: consecutive writes at the end of one file."""

    __slots__ = ("rel", "offset", "end", "parts", "position")

    def __init__(self, rel: str, offset: int, data: bytes, position: int) -> None:
        self.rel = rel
        self.offset = offset
        self.end = offset + len(data)
        self.parts = [data]
        self.position = position

    def encode(self) -> bytes:
        data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        return wire.append(self.position, self.rel, self.offset, data)


class ReplicationServer:
    def __init__(self, root: str | os.PathLike[str], node: str, epoch: int, secret: bytes,
                 tracker: IsrTracker | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 heartbeat: float = 0.5, dead_after: float = 10.0,
                 max_buffer: int = 64 * 1024 * 1024, handshake_timeout: float = 5.0,
                 sock: socket.socket | None = None) -> None:
        self.root = Path(root).absolute()
        self._root = str(self.root)
        self.node = node
        self.epoch = epoch
        self.secret = secret
        self.tracker = tracker if tracker is not None else IsrTracker(node, min_insync=1)
        self.host = host
        self.port = port
        self.sock = sock  # a bound socket to listen on (a port reserved by the node)
        self.heartbeat = heartbeat
        self.dead_after = dead_after
        self.max_buffer = max_buffer
        self.handshake_timeout = handshake_timeout
        self.position = 0
        self.sessions: dict[str, FollowerSession] = {}
        self._live: list[FollowerSession] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._pinger: asyncio.Task[None] | None = None
        self._queued: list[tuple[Kind, str, bytes]] = []
        self._queued_bytes = 0
        self._open: _Append | None = None
        self._flush_scheduled = False

    # ---- lifetime ----------------------------------------------------------------------
    async def start(self) -> int:
        """Listen; return the port."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        if self.sock is not None:  # listen on a copy: the node keeps the port reserved
            self._server = await asyncio.start_server(self._accept, sock=self.sock.dup())
        else:
            self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._pinger = self._loop.create_task(self._ping(), name="replication heartbeat")
        self.tracker.start()
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions.values()):
            session.abort("leader stopping")
        for writer in list(self._writers):
            writer.transport.abort()  # every connection handler ends on its own
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        await self.tracker.stop()

    async def wait_replicated(self, position: int, timeout: float | None = None) -> None:
        """Until every in-sync follower has acked ``position`` (``isr.IsrTracker.wait``)."""
        await self.tracker.wait(position, timeout)

    # ---- ReplicationSink ---------------------------------------------------------------
    def _elsewhere(self) -> bool:
        return self._loop is not None and threading.get_ident() != self._thread

    def append(self, path: str, offset: int, data: bytes) -> None:
        rel = files.relative(self._root, path)
        if rel is None:
            return
        if self._elsewhere():
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._append, rel, offset, bytes(data))
        else:
            self._append(rel, offset, data)

    def truncate(self, path: str, size: int) -> None:
        rel = files.relative(self._root, path)
        if rel is None:
            return
        if self._elsewhere():
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self.truncate, path, size)
            return
        self.position += 1
        self._emit(Kind.TRUNCATE, rel, wire.truncate(self.position, rel, size))

    def rewrite(self, path: str, data: bytes) -> None:
        rel = files.relative(self._root, path)
        if rel is None:
            return
        if self._elsewhere():
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._rewrite, rel, bytes(data))
        else:
            self._rewrite(rel, data)

    def delete(self, path: str) -> None:
        rel = files.relative(self._root, path)
        if rel is None:
            return
        if self._elsewhere():
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self.delete, path)
            return
        self.position += 1
        self._emit(Kind.DELETE, rel, wire.delete(self.position, rel))

    def _append(self, rel: str, offset: int, data: bytes) -> None:
        size = len(data)
        if not size:
            return
        if self._loop is None:  # not started: no follower can be told
            self.position += size
            return
        current = self._open
        if current is not None and current.rel == rel and current.end == offset and \
                current.end - current.offset + size <= wire.CHUNK:
            current.parts.append(bytes(data))
            current.end += size
            self.position += size
            current.position = self.position
            self._queued_bytes += size
        else:
            view = memoryview(data)
            for start in range(0, size, wire.CHUNK):
                self._close_append()
                chunk = bytes(view[start:start + wire.CHUNK])
                self.position += len(chunk)
                self._open = _Append(rel, offset + start, chunk, self.position)
                self._queued_bytes += len(chunk)
        self._queued_more()
        self.tracker.produced(self.position)

    def _rewrite(self, rel: str, data: bytes) -> None:
        total = len(data)
        view = memoryview(data)
        start = 0
        while True:
            chunk = view[start:start + wire.CHUNK]
            self.position += max(1, len(chunk))
            self._emit(Kind.REWRITE, rel, wire.rewrite(self.position, rel, total, start,
                                                       bytes(chunk)))
            start += len(chunk)
            if start >= total:
                return

    def _emit(self, kind: Kind, rel: str, data: bytes) -> None:
        if self._loop is None:
            return
        self._close_append()
        self._queued.append((kind, rel, data))
        self._queued_bytes += len(data)
        self._queued_more()
        self.tracker.produced(self.position)

    def _close_append(self) -> None:
        current = self._open
        if current is not None:
            self._open = None
            self._queued.append((Kind.APPEND, current.rel, current.encode()))

    def _queued_more(self) -> None:
        if self._queued_bytes >= FLUSH_BYTES:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every queued change to the followers' sockets (loop thread)."""
        self._flush_scheduled = False
        self._close_append()
        items = self._queued
        if not items:
            return
        self._queued = []
        self._queued_bytes = 0
        for session in self._live:
            session.send_many(items)

    # ---- followers ---------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.info("replication peer %s gone: %s", writer.get_extra_info("peername"),
                     exc or type(exc).__name__)
        except ProtocolError as exc:
            log.warning("replication peer %s: %s", writer.get_extra_info("peername"), exc)
            with contextlib.suppress(Exception):
                writer.write(wire.error(str(exc)))
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.transport.abort()

    async def _handshake(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> str | None:
        timeout = self.handshake_timeout
        kind, r = await asyncio.wait_for(wire.read_frame(reader), timeout)
        if kind != Kind.HELLO or r.raw(4) != b"BMQR":
            raise ProtocolError("not a burrowmq replication client")
        version = r.u16()
        if version != wire.VERSION:
            writer.write(wire.error(f"protocol version {version} unsupported"))
            return None
        node, nonce_f = r.str(), r.raw(wire.NONCE)
        nonce_l = os.urandom(wire.NONCE)
        mac = wire.leader_mac(self.secret, nonce_f, nonce_l, self.epoch, self.node)
        writer.write(wire.challenge(self.node, self.epoch, nonce_l, mac))
        kind, r = await asyncio.wait_for(wire.read_frame(reader), timeout)
        if kind == Kind.ERROR:
            log.warning("follower %s refused this leader: %s", node, r.str())
            return None
        expected = wire.follower_mac(self.secret, nonce_l, nonce_f, node)
        if kind != Kind.AUTH or not hmac.compare_digest(r.raw(wire.DIGEST), expected):
            log.warning("replication peer %s (%s) failed authentication", node,
                        writer.get_extra_info("peername"))
            writer.write(wire.error("authentication failed"))
            return None
        if node == self.node:
            writer.write(wire.error(f"{node} is this leader's own name"))
            return None
        writer.write(wire.frame(Kind.WELCOME))
        return node

    async def _listing(self, reader: asyncio.StreamReader) -> dict[str, tuple[int, bytes]]:
        theirs: dict[str, tuple[int, bytes]] = {}
        while True:
            kind, r = await asyncio.wait_for(wire.read_frame(reader), 60.0)
            if kind == Kind.LIST_END:
                return theirs
            if kind != Kind.LIST:
                raise ProtocolError(f"expected a file list, got {kind.name}")
            while not r.done:
                rel, size, digest = r.str(), r.u64(), r.raw(wire.DIGEST)
                theirs[rel] = (size, digest)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        node = await self._handshake(reader, writer)
        if node is None:
            return
        old = self.sessions.get(node)
        if old is not None:
            old.abort("it connected again")
        theirs = await self._listing(reader)
        session = FollowerSession(node, writer, self.max_buffer)
        self.sessions[node] = session
        self.tracker.connected(node)
        # the snapshot: caps and the start of queueing in one step, no await in between; what
        # is queued here is below the caps, so it goes to the others only
        self.flush()
        caps = files.scan(self.root)
        self._live.append(session)
        start = self.position
        try:
            log.info("full sync of %s: %d files here, %d there", node, len(caps), len(theirs))
            await self._full_sync(session, caps, theirs)
            if session.state == "closed":
                return
            writer.write(wire.frame(Kind.S_END, wire.u64(start)))
            session.finish_sync()
            session.last_ack = asyncio.get_running_loop().time()
            self.tracker.synced(node)
            await writer.drain()
            while True:
                kind, r = await wire.read_frame(reader)
                if kind == Kind.ACK:
                    position = r.u64()
                    session.acked = position
                    session.last_ack = asyncio.get_running_loop().time()
                    self.tracker.acked(node, position)
                elif kind == Kind.ERROR:
                    log.warning("follower %s stopped: %s", node, r.str())
                    return
                else:
                    raise ProtocolError(f"unexpected {kind.name} from a follower")
        finally:
            session.abort("disconnected")
            with contextlib.suppress(ValueError):
                self._live.remove(session)
            if self.sessions.get(node) is session:
                del self.sessions[node]
                self.tracker.disconnected(node)

    async def _full_sync(self, session: FollowerSession, caps: dict[str, int],
                         theirs: dict[str, tuple[int, bytes]]) -> None:
        await full_sync(self.root, session, caps, theirs)  # a method: tests wrap it

    async def _ping(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.heartbeat)
            now = loop.time()
            self.flush()  # a PING's position must not count changes still queued here
            ping = wire.frame(Kind.PING, wire.u64(self.position))
            for session in list(self._live):
                if session.state == "syncing":  # a long sync is not silence
                    session.writer.write(ping)
                if session.state != "streaming":
                    continue
                if now - session.last_ack > self.dead_after:
                    session.abort(f"no ack for {self.dead_after:g} s")
                    continue
                session.send(Kind.PING, "", ping)
