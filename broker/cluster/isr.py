"""The leader's in-sync replica set: who must ack a position before it counts as replicated.

The leader produces positions (``produced``), followers ack them (``acked``), and
``wait(position)`` returns once every follower in the ISR has acked ``position`` while the ISR
(leader included) has at least ``min_insync`` members.

Invariants (what makes "confirmed" safe when the leader dies):
- Every member the ISR store lists has every position some ``wait`` returned for:
  * a follower is **dropped** (lag: a position it has not acked was produced more than
    ``ack_deadline`` ago; or it disconnected while behind) by writing the smaller set to the
    store *first* and forgetting it locally after: no waiter proceeds without its ack while the
    store still lists it;
  * a follower **joins** (synced and caught up) locally *first*, so later waiters need its ack;
    the store lists it only once it has acked everything produced before it joined.
- Changes of the set are serialized; a ``Fenced`` store (this leader was deposed) fails every
  waiter now and later with ``Fenced``.
- ``wait`` never returns early: with the ISR below ``min_insync`` it holds until a follower
  joins or ``timeout`` passes (``NotReplicated``).
- ``when_replicated(position, callback, timeout)`` is ``wait`` without a future per call (the
  confirm path): callbacks run in registration order, ``True`` when ``wait`` would return,
  ``False`` on timeout, when fenced or stopped. Registrations come with nondecreasing
  positions (the position only grows), so a FIFO holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

from .keyspace import Fenced

log = logging.getLogger(__name__)


class IsrStore(Protocol):
    async def set_isr(self, members: frozenset[str]) -> None: ...


class NotReplicated(Exception):
    """The position was not acked by enough in-sync replicas in time."""


class _Follower:
    __slots__ = ("acked", "connected", "synced")

    def __init__(self) -> None:
        self.acked = 0
        self.connected: bool | None = None  # None: not seen yet (a member from before)
        self.synced = False


class IsrTracker:
    def __init__(self, leader: str, store: IsrStore | None = None, *, min_insync: int = 2,
                 ack_deadline: float = 3.0, initial: Iterable[str] = (),
                 on_change: Callable[[frozenset[str]], None] | None = None,
                 on_fenced: Callable[[Fenced], None] | None = None) -> None:
        self.leader = leader
        self.on_fenced = on_fenced
        self.store = store
        self.min_insync = min_insync
        self.ack_deadline = ack_deadline
        self.on_change = on_change
        self.position = 0
        self.fenced: Fenced | None = None
        self._in_sync: set[str] = {n for n in initial if n != leader}
        self._followers: dict[str, _Follower] = {n: _Follower() for n in self._in_sync}
        self._marks: deque[tuple[int, float]] = deque()  # (position, when produced)
        self._pruned = 0  # positions up to here were produced more than 2 deadlines ago
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._lock = asyncio.Lock()
        self._joining: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._callbacks: deque[tuple[int, float, Callable[[bool], None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    @property
    def members(self) -> frozenset[str]:
        return frozenset(self._in_sync | {self.leader})

    def acked_position(self, node: str) -> int:
        f = self._followers.get(node)
        return f.acked if f is not None else 0

    # ---- lifetime ----------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watchdog(),
                                                                name="isr watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._stopped = True
        self._fail(NotReplicated("replication stopped"))

    # ---- events from the replication server --------------------------------------------
    def produced(self, position: int) -> None:
        self.position = position
        now = asyncio.get_running_loop().time()
        marks = self._marks
        if not marks or now - marks[-1][1] >= 0.005:
            marks.append((position, now))
        else:
            marks[-1] = (position, marks[-1][1])

    def connected(self, node: str) -> None:
        self._followers.setdefault(node, _Follower()).connected = True

    def disconnected(self, node: str) -> None:
        f = self._followers.get(node)
        if f is not None:
            f.connected = False
            f.synced = False
            if node in self._in_sync and f.acked < self.position:
                self._spawn(self._drop(node, "disconnected while behind"))

    def synced(self, node: str) -> None:
        """The follower was sent its full sync: its next acks can make it join."""
        self._followers.setdefault(node, _Follower()).synced = True

    def acked(self, node: str, position: int) -> None:
        f = self._followers.get(node)
        if f is None or position < f.acked:
            return
        grew = position > f.acked  # an equal ack still says "caught up" (an idle leader)
        f.acked = position
        if node in self._in_sync:
            if grew:
                self._check()
        elif f.synced and f.connected and node not in self._joining and \
                self._lag(f.acked) < self.ack_deadline / 2:
            self._joining.add(node)
            self._spawn(self._join(node))

    # ---- waiting -----------------------------------------------------------------------
    async def wait(self, position: int, timeout: float | None = None) -> None:
        """Until every ISR follower acked ``position`` and the ISR is big enough."""
        if self.fenced is not None:
            raise self.fenced
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (position, next(self._seq), future))
        self._check()
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            future.cancel()
            short = len(self.members) < self.min_insync
            why = (f"in-sync replicas {sorted(self.members)} fewer than {self.min_insync}"
                   if short else "not acked by every in-sync replica")
            raise NotReplicated(f"position {position}: {why}") from None

    def when_replicated(self, position: int, callback: Callable[[bool], None],
                        timeout: float) -> None:
        """``callback(True)`` once every ISR follower acked ``position`` with the ISR big
        enough; ``callback(False)`` after ``timeout`` seconds, or when fenced or stopped."""
        if self.fenced is not None or self._stopped:
            _call(callback, False)
            return
        if not self._callbacks and position <= self._committed():
            _call(callback, True)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._callbacks.append((position, deadline, callback))
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        callbacks = self._callbacks
        now = asyncio.get_running_loop().time()
        while callbacks and callbacks[0][1] <= now:
            position, _, callback = callbacks.popleft()
            log.warning("position %d not replicated in time: in-sync replicas %s, "
                        "min_insync %d", position, sorted(self.members), self.min_insync)
            _call(callback, False)
        if callbacks:
            self._timer = asyncio.get_running_loop().call_at(callbacks[0][1], self._expire)

    def _committed(self) -> int:
        if len(self._in_sync) + 1 < self.min_insync:
            return -1
        followers = self._followers
        return min((followers[n].acked for n in self._in_sync), default=self.position)

    def _check(self) -> None:
        callbacks = self._callbacks
        if callbacks:
            committed = self._committed()
            while callbacks and callbacks[0][0] <= committed:
                _call(callbacks.popleft()[2], True)
        waiters = self._waiters
        if not waiters:
            return
        committed = self._committed()
        while waiters and (waiters[0][0] <= committed or waiters[0][2].done()):
            _, _, future = heapq.heappop(waiters)
            if not future.done():
                future.set_result(None)

    def _fail(self, exc: Exception) -> None:
        callbacks, self._callbacks = self._callbacks, deque()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _, _, callback in callbacks:
            _call(callback, False)
        waiters, self._waiters = self._waiters, []
        for _, _, future in waiters:
            if not future.done():
                future.set_exception(exc)

    # ---- lag ---------------------------------------------------------------------------
    def _lag(self, acked: int) -> float:
        """How long ago the oldest position not covered by ``acked`` was produced."""
        if acked >= self.position:
            return 0.0
        if acked < self._pruned:
            return float("inf")
        now = asyncio.get_running_loop().time()
        for position, when in self._marks:
            if position > acked:
                return now - when
        return 0.0

    def lagging(self) -> list[str]:
        """ISR followers past the ack deadline: the next ones to be dropped."""
        out = []
        for node in sorted(self._in_sync):
            f = self._followers[node]
            if (f.connected is False and f.acked < self.position) or \
                    self._lag(f.acked) > self.ack_deadline:
                out.append(node)
        return out

    async def _watchdog(self) -> None:
        interval = max(0.01, self.ack_deadline / 4)
        while True:
            await asyncio.sleep(interval)
            now = asyncio.get_running_loop().time()
            marks = self._marks
            while len(marks) > 1 and marks[0][1] < now - 2 * self.ack_deadline:
                self._pruned = marks.popleft()[0]
            for node in self.lagging():
                await self._drop(node, f"no ack for {self.ack_deadline:g} s")

    # ---- changing the set --------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(_log_failure)

    async def _write(self, members: frozenset[str]) -> bool:
        if self.store is None:
            return True
        try:
            await self.store.set_isr(members)
        except Fenced as exc:
            log.error("deposed: %s", exc)
            self.fenced = exc
            self._fail(exc)
            if self.on_fenced is not None:
                self.on_fenced(exc)
            return False
        except Exception as exc:  # etcd away: the set stays as it was, retried later
            log.warning("could not write the in-sync replicas %s: %s", sorted(members), exc)
            return False
        return True

    async def remove(self, node: str) -> None:
        """The node left the cluster (``forget_cluster_node``): out of the ISR now."""
        await self._drop(node, "removed from the cluster")

    async def _drop(self, node: str, why: str) -> None:
        async with self._lock:
            if node not in self._in_sync or self.fenced is not None:
                return
            log.warning("dropping %s from the in-sync replicas: %s", node, why)
            if not await self._write(self.members - {node}):
                return
            self._in_sync.discard(node)
        self._changed()
        self._check()

    async def _join(self, node: str) -> None:
        try:
            async with self._lock:
                f = self._followers.get(node)
                if node in self._in_sync or f is None or not f.connected or \
                        self.fenced is not None:
                    return
                self._in_sync.add(node)  # from now on waiters need its ack
                target = self.position
                deadline = asyncio.get_running_loop().time() + self.ack_deadline
                while f.acked < target:
                    if not f.connected or asyncio.get_running_loop().time() > deadline:
                        self._in_sync.discard(node)
                        return
                    await asyncio.sleep(0.005)
                ok = await self._write(self.members)
                if not ok:
                    self._in_sync.discard(node)
                    return
                log.info("%s joined the in-sync replicas", node)
            self._changed()
            self._check()  # a waiter held for want of replicas may go now
        finally:
            self._joining.discard(node)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.members)


def _call(callback: Callable[[bool], None], ok: bool) -> None:
    try:
        callback(ok)
    except Exception:
        log.exception("replication callback failed")


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("ISR change failed: %s", task.exception())
