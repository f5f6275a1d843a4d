"""Publisher confirms of one channel: which publishes can be acked, nacked, or must wait.

Invariants:
- Sequence numbers start at 1 with the first publish after confirm.select.
- A persistent message that reached a queue on disk is confirmed only after the group commit
  that covers it has fsynced (``wait_for_disk`` then ``synced``); nothing after it is confirmed
  before it, so a ``multiple`` ack never covers a message that is not yet on disk.
- ``flush`` writes as few frames as runs of the same outcome allow: one ack with multiple=true
  for a run of acks, a nack for each refused publish.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol


class ConfirmSender(Protocol):
    """Where confirms go (``protocol.connection.ConnectionMachine``)."""

    def send_confirm(self, channel: int, delivery_tag: int, multiple: bool,
                     ack: bool = True) -> None: ...


class Confirms:
    __slots__ = ("seq", "_confirmed", "_nacked", "_unsynced", "_sync_requested")

    def __init__(self) -> None:
        self.seq = 0
        self._confirmed = 0
        self._nacked: set[int] = set()
        self._unsynced: deque[int] = deque()
        self._sync_requested = 0

    def next(self) -> int:
        self.seq += 1
        return self.seq

    def nack(self, seq: int) -> None:
        self._nacked.add(seq)

    def wait_for_disk(self, seq: int) -> None:
        if not self._unsynced or self._unsynced[-1] != seq:
            self._unsynced.append(seq)

    def request_sync(self, when_durable: Callable[[Callable[[bool], None]], None],
                     on_synced: Callable[[], None]) -> None:
        """Ask for one fsync callback covering every publish waiting so far."""
        if not self._unsynced or self._unsynced[-1] <= self._sync_requested:
            return
        upto = self._sync_requested = self._unsynced[-1]

        def done(ok: bool) -> None:
            self.synced(upto, ok)
            on_synced()

        when_durable(done)

    def synced(self, upto: int, ok: bool) -> None:
        while self._unsynced and self._unsynced[0] <= upto:
            seq = self._unsynced.popleft()
            if not ok:
                self._nacked.add(seq)

    def flush(self, channel: int, out: ConfirmSender) -> None:
        upto = self._unsynced[0] - 1 if self._unsynced else self.seq
        start = self._confirmed + 1
        if upto < start:
            return
        send = out.send_confirm
        if not self._nacked:
            send(channel, upto, upto > start)
            self._confirmed = upto
            return
        for seq in range(start, upto + 1):
            if seq in self._nacked:
                if seq > start:
                    send(channel, seq - 1, seq - 1 > start)
                send(channel, seq, False, False)
                self._nacked.discard(seq)
                start = seq + 1
        if start <= upto:
            send(channel, upto, upto > start)
        self._confirmed = upto
