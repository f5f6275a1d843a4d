"""Credit flow for one queue: RabbitMQ's credit_flow, reshaped for one event loop.

In RabbitMQ every hop (reader -> channel -> queue) runs on credit, so a queue process that falls
behind stops granting it and the publishing connection stops being read. Here a publish is
handled synchronously, so "falling behind" is read off the queue itself: a queue is *behind*
when it has consumers and more than ``BEHIND_AT`` ready messages. While it is behind, every
message routed into it spends one credit of the queue's pool, and every message it delivers
earns one back (up to ``CREDIT``): publishers can go on only as fast as the consumers take.
A publishing connection that spends the last credit waits (``add_credit_waiter``): it is no
longer read until the queue calls it back.

Invariants:
- Credit only matters while the queue is behind; whenever it is not (backlog drained to
  ``BEHIND_AT``, last consumer gone, queue deleted), the pool is full and nobody waits.
- Waiters are called back once the pool holds ``RESUME_AT`` credits again (RabbitMQ's bump of
  200), so a publisher resumes for a batch, not for every single delivery.
- A waiter is always called back: by the deliveries that bring credit back, or by the stall
  timer, which every ``STALL`` s tops the pool up to ``FLOOR``. So slow consumers (a worker that
  takes a second per message) slow a flooding publisher down to ``FLOOR`` messages per
  ``STALL`` at worst, never to a stop, and a connection that publishes and consumes on the
  same socket cannot deadlock on its own acks.
- The queue never refuses or drops a message because of credit: throttling happens at the
  socket (TCP back-pressure), as in RabbitMQ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

BEHIND_AT = 1024  # ready messages of a queue with consumers above which publishers pay credit
CREDIT = 400  # the pool (RabbitMQ's credit_flow_default_credit is {400, 200})
RESUME_AT = 200  # credits in the pool that call the waiters back
FLOOR = 200  # what the stall timer tops the pool up to
STALL = 0.02  # seconds between two looks of the stall timer while someone waits


class CreditFlow:
    """Mixed into ``Queue``: the credit pool, its waiters and the stall timer."""

    credit: int
    delivered: int
    _credit_waiters: list[Callable[[], None]]
    _stall_timer: Any

    def _init_credit(self) -> None:
        self.credit = CREDIT
        self.delivered = 0  # messages delivered so far (consumers or basic.get)
        self._credit_waiters = []
        self._stall_timer = None

    # what Queue provides
    consumers: list[Any]
    deleted: bool
    ctx: Any

    def _ready_count(self) -> int:
        raise NotImplementedError

    @property
    def behind(self) -> bool:
        return bool(self.consumers) and not self.deleted and self._ready_count() > BEHIND_AT

    def add_credit_waiter(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the queue has credit again (or stops being behind)."""
        self._credit_waiters.append(callback)
        if self._stall_timer is None and self.ctx is not None:
            self._stall_timer = self.ctx.call_later(STALL, self._on_stall)

    def _earn(self, count: int) -> None:
        """``count`` messages left the queue to consumers."""
        self.delivered += count
        credit = self.credit + count
        if credit > CREDIT or self._ready_count() <= BEHIND_AT:
            credit = CREDIT
        self.credit = credit
        if self._credit_waiters and credit >= RESUME_AT:
            self._release_waiters()

    def _refill(self) -> None:
        """No longer behind (drained, no consumers, deleted): full pool, nobody waits."""
        self.credit = CREDIT
        if self._credit_waiters:
            self._release_waiters()

    def _release_waiters(self) -> None:
        waiters, self._credit_waiters = self._credit_waiters, []
        for callback in waiters:
            callback()

    def _on_stall(self) -> None:
        """Runs every STALL s while someone waits (and once more after): the floor."""
        self._stall_timer = None
        if not self._credit_waiters:
            return
        if not self.behind:
            self._refill()
            return
        if self.credit < FLOOR:
            self.credit = FLOOR
        self._release_waiters()
        self._stall_timer = self.ctx.call_later(STALL, self._on_stall)
