"""The leader's side of one follower's connection: its session (what it is sent, and what is
queued for it meanwhile) and the full sync of a snapshot to it (``leader.ReplicationServer``
accepts the connection, takes the snapshot and streams).

A session is ``syncing`` from the snapshot until its full sync ends, then ``streaming``, or
``closed``. While syncing, every change is queued (``pending``), deletes noted
(``deleted``), and ``finish_sync`` writes the queue in one step before streaming. The sync
sends each file up to its cap only; a file deleted after the snapshot but before it was opened
is not sent (``doomed``): the queued changes to its old self are skipped up to its queued
delete, and a new file of that name comes whole from the changes after it.

Invariants:
- ``deleted_since_snapshot`` is checked and the file opened in one step (no await between), so
  a queued delete always covers a file the sync could not open.
- A follower too far behind (``max_buffer`` bytes queued or unsent) is aborted; storage never
  waits for it.
- Files up to ``SMALL`` bytes are read and hashed on the loop (page cache), larger ones in a
  thread; the loop yields after every ``16 * SMALL`` bytes hashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from . import files, wire
from .wire import Kind

log = logging.getLogger("broker.cluster.leader")  # the name the leader's messages had

SMALL = 256 * 1024  # files up to this size are read on the loop (page cache), not in a thread


class FollowerSession:
    __slots__ = ("node", "writer", "state", "pending", "pending_bytes", "deleted", "doomed",
                 "acked", "last_ack", "max_buffer")

    def __init__(self, node: str, writer: asyncio.StreamWriter, max_buffer: int) -> None:
        self.node = node
        self.writer = writer
        self.state = "syncing"
        self.pending: list[tuple[Kind, str, bytes]] = []
        self.pending_bytes = 0
        self.deleted: list[str] = []  # names deleted since the snapshot (files or dirs)
        self.doomed: set[str] = set()
        self.acked = 0
        self.last_ack = 0.0
        self.max_buffer = max_buffer

    def send_many(self, items: list[tuple[Kind, str, bytes]]) -> None:
        if self.state == "streaming":
            self.writer.writelines([data for _, _, data in items])
            if self.writer.transport.get_write_buffer_size() > self.max_buffer:
                self.abort("too far behind")
        else:
            for kind, rel, data in items:
                self.send(kind, rel, data)

    def send(self, kind: Kind, rel: str, data: bytes) -> None:
        if self.state == "streaming":
            self.writer.write(data)
            if self.writer.transport.get_write_buffer_size() > self.max_buffer:
                self.abort("too far behind")
        elif self.state == "syncing":
            if kind == Kind.DELETE:
                self.deleted.append(rel)
            self.pending.append((kind, rel, data))
            self.pending_bytes += len(data)
            if self.pending_bytes > self.max_buffer:
                self.abort("too many changes queued during its full sync")

    def deleted_since_snapshot(self, rel: str) -> bool:
        return any(rel == d or rel.startswith(d + "/") for d in self.deleted)

    def finish_sync(self) -> None:
        """Write the changes queued since the snapshot and stream from now on (one step)."""
        doomed = self.doomed
        for kind, rel, data in self.pending:
            if doomed:
                if kind == Kind.DELETE:
                    inside = rel + "/"
                    doomed = {d for d in doomed if d != rel and not d.startswith(inside)}
                elif rel in doomed:
                    continue
            self.writer.write(data)
        self.pending = []
        self.pending_bytes = 0
        self.state = "streaming"

    def abort(self, why: str) -> None:
        if self.state != "closed":
            log.warning("replication to %s stopped: %s", self.node, why)
            self.state = "closed"
            self.pending = []
            self.writer.transport.abort()


async def full_sync(root: Path, session: FollowerSession, caps: dict[str, int],
                    theirs: dict[str, tuple[int, bytes]]) -> None:
    """Bring a follower's copy (``theirs``: size and digest per file) to the snapshot
    (``caps``: each file's size then): delete what the snapshot lacks, skip files whose copy
    matches, send the rest of files whose copy is a matching prefix, whole the others - each
    only up to its cap. A file of the snapshot deleted since is marked ``doomed`` and not
    sent."""
    writer = session.writer
    loop = asyncio.get_running_loop()
    hashed = 0  # bytes hashed on the loop since it last yielded
    for rel in sorted(theirs.keys() - caps.keys()):
        writer.write(wire.frame(Kind.S_DELETE, wire.s(rel)))
    for rel, cap in sorted(caps.items()):
        if session.state == "closed":
            return
        have = theirs.get(rel)
        fd = -1
        if not session.deleted_since_snapshot(rel):  # checked and opened in one step
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(root / rel, os.O_RDONLY | os.O_CLOEXEC)
        if fd < 0:  # the snapshot's file is gone: its delete is queued
            session.doomed.add(rel)
            if have is not None:
                writer.write(wire.frame(Kind.S_DELETE, wire.s(rel)))
            continue
        try:
            offset = 0
            if have is not None and have[0] <= cap:
                size, digest = have
                if size <= SMALL:
                    mine = files.digest_fd(fd, size)
                    hashed += size
                    if hashed > 16 * SMALL:  # many small files: let the loop breathe
                        hashed = 0
                        await asyncio.sleep(0)
                else:
                    mine = await loop.run_in_executor(None, files.digest_fd, fd, size)
                if mine == digest:
                    if size == cap:
                        continue
                    offset = size  # their copy is a prefix of ours: send the rest
            first = True
            while offset < cap or first:
                want = min(wire.CHUNK, cap - offset)
                chunk = os.pread(fd, want, offset) if want <= SMALL else \
                    await loop.run_in_executor(None, os.pread, fd, want, offset)
                if not chunk and not first:
                    break  # shrank (rewritten since the snapshot): its rewrite is queued
                writer.write(wire.sync_write(rel, offset, chunk))
                offset += len(chunk)
                first = False
                if not chunk:
                    break
                await writer.drain()
        finally:
            os.close(fd)
    await writer.drain()
