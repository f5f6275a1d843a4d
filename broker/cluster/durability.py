"""The leader's confirm rule, as the ``Durability`` the AMQP side already calls for publisher
confirms and tx.commit (``when_durable``): a message is confirmed when it is fsynced here *and*
on every in-sync follower, with at least ``min_insync`` nodes in the ISR, while this node's
lease is alive.

``when_durable(callback)``:
1. the local group commit fsyncs everything written so far (the store's flush told the
   replication sink first: the sink's position read by that batch after its writes, its
   ``durable_mark``, covers it);
2. a definitions save in flight finishes (a queue declared just before its first message is
   then replicated with it: a new leader that had the message but not the queue would drop
   the queue's store at recovery);
3. the position to wait for is the batch's mark, or the position when the last definitions
   save was done if that is later (``saved_mark``), or, when step 2 waited for a save, the
   sink's position then. Not the position after the fsync: what was written meanwhile (ack
   logs, delivery marks, the next messages) would hold these confirms for a later follower
   fsync batch;
4. the ISR tracker calls back once every ISR follower acked that position, or with False
   after ``timeout`` (fewer than ``min_insync`` in-sync nodes, a follower lagging and not yet
   dropped), or at once when fenced or stopped;
5. the lease is checked last: a leader that was paused past its lease confirms nothing (a
   new leader may exist, and followers may have acked it already).
``callback(False)`` becomes basic.nack (or tx.commit's 406 ``partial tx completion``). No
false confirm. The cause is logged (at most every few seconds: a nack comes per flush).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from .isr import IsrTracker
from .lease import Lease

log = logging.getLogger("broker.cluster")

Callback = Callable[[bool], None]
LOG_EVERY = 5.0  # seconds between two logs of refused confirms


class LocalDurability(Protocol):
    """The node's stores (``broker.node.stores.Stores``)."""

    def when_durable(self, callback: Callback) -> None: ...
    def when_saved(self, callback: Callable[[], None]) -> None: ...
    def write_through(self) -> None: ...
    def set_mark(self, mark: Callable[[], int]) -> None: ...
    @property
    def durable_mark(self) -> int | None: ...
    @property
    def saved_mark(self) -> int: ...


class Positioned(Protocol):
    """The replication server: the position of the last change told to its sink."""

    @property
    def position(self) -> int: ...
    def flush(self) -> None: ...


class ReplicatedDurability:
    def __init__(self, local: LocalDurability, sink: Positioned, tracker: IsrTracker,
                 lease: Lease, timeout: float) -> None:
        self.local = local
        self.sink = sink
        self.tracker = tracker
        self.lease = lease
        self.timeout = timeout
        self._logged_at = -LOG_EVERY
        local.set_mark(self._mark)

    def when_durable(self, callback: Callback) -> None:
        local = self.local

        def fsynced(ok: bool) -> None:
            if not ok:
                callback(False)
                return
            batch = local.durable_mark
            waiting = False

            def saved() -> None:
                if waiting or batch is None:  # a save was waited for: all told so far
                    self._replicate(self.sink.position, callback)
                else:
                    self._replicate(max(batch, local.saved_mark), callback)

            local.when_saved(saved)
            waiting = True  # when_saved calls back at once when no save is pending

        local.when_durable(fsynced)

    def _mark(self) -> int:
        """Read by each fsync batch after its writes: the followers get those bytes now,
        while this node fsyncs them, not after the rest of this loop turn."""
        self.sink.flush()
        return self.sink.position

    def _replicate(self, position: int, callback: Callback) -> None:
        def replicated(ok: bool) -> None:
            if ok and self.lease.remaining <= 0:
                log.warning("the lease ran out before the confirm: refusing it")
                ok = False
            elif not ok:
                self._log_refused()
            callback(ok)

        self.tracker.when_replicated(position, replicated, self.timeout)

    def _log_refused(self) -> None:
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY:
            return
        self._logged_at = now
        tracker = self.tracker
        log.warning("publishes not confirmed by the in-sync replicas within %.1f s (in-sync "
                    "%s, min_insync %d): publisher confirms become basic.nack and tx.commit "
                    "fails", self.timeout, sorted(tracker.members), tracker.min_insync)

    def write_through(self) -> None:
        self.local.write_through()
