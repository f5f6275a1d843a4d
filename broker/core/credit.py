"""Credit flow for one queue: RabbitMQ's credit_flow, reshaped for one event loop.

In RabbitMQ every hop (reader -> channel -> queue) runs on credit, so a queue process that falls
behind stops granting it and the publishing connection stops being read. Here a publish is
handled synchronously, so "falling behind" is read off the queue itself: a queue is *behind*
when it has consumers and more than ``BEHIND_AT`` ready messages. While it is behind, every
message routed into it spends one credit of the queue's pool, and every message it delivers
earns one back (up to ``CREDIT``): publishers go on only as fast as the consumers take. A
publishing connection that spends the last credit waits (``add_credit_waiter``): it is no longer
read until the queue calls it back, once the pool holds ``RESUME_AT`` credits again (RabbitMQ's
bump of 200), so it resumes for a batch, not for every single delivery.

Slow consumers must not throttle a publisher: a worker that needs a second per message should
see a backlog grow, as with RabbitMQ, not a publisher stuck at its pace. While a publisher
waits, a stall timer looks at the queue every ``STALL`` s. When the consumers took at least
``SLOW`` messages meanwhile (5k msg/s), they keep up and their deliveries bring credit back.
When they took fewer in ``SLOW_LOOKS`` looks in a row, they are slow (or stuck), and what
decides is whether the event loop is saturated (``LoopLoad``): if it had idle time, the broker
is not what holds them back, and the pool is topped up to ``IDLE_GRANT`` (up to
``IDLE_GRANT / STALL`` messages per second get in, and a backlog grows as it would in
RabbitMQ); on a saturated loop the pool is only topped up to ``FLOOR`` when nothing was
delivered at all, so a connection that publishes and consumes on one socket cannot deadlock
on its own unread acks.

Invariants:
- Credit only matters while the queue is behind; whenever it is not (backlog drained to
  ``BEHIND_AT``, last consumer gone, queue deleted or purged), the pool is full and nobody
  waits.
- A waiter is always called back, by deliveries or by the stall timer.
- The queue never refuses or drops a message because of credit: throttling happens at the
  socket (TCP back-pressure), as in RabbitMQ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

BEHIND_AT = 1024  # ready messages of a queue with consumers above which publishers pay credit
CREDIT = 400  # the pool (RabbitMQ's credit_flow_default_credit is {400, 200})
RESUME_AT = 200  # credits in the pool that call the waiters back
IDLE_GRANT = 1000  # what a stall tops the pool up to when the consumers are slow, loop idle
FLOOR = 50  # what a stall tops the pool up to on a saturated loop when nothing was delivered
STALL = 0.01  # seconds between two looks of the stall timer while someone waits
SLOW = 50  # deliveries per STALL below which a queue's consumers count as slow (5k msg/s)
SLOW_LOOKS = 3  # ... in that many looks in a row (a consumer process off the CPU for a few
#                 ms on a busy machine is not a slow consumer)
SATURATED = 0.9  # share of busy time over the last window above which the loop is saturated
LOAD_WINDOW = 0.01  # seconds the busy share is measured over


class LoopLoad:
    """How busy the event loop has been lately: the transport adds the time it spends handling
    input and writing output to ``busy``; the share of wall time that makes is the load.
    Also keeps the flow time of closed connections, for the node-wide flow-time counter."""

    __slots__ = ("busy", "_since", "_busy_then", "_share", "flow_seconds_retired")

    def __init__(self) -> None:
        self.flow_seconds_retired = 0.0
        self.busy = 0.0
        self._since = -1.0
        self._busy_then = 0.0
        self._share = 0.0

    def saturated(self, now: float) -> bool:
        span = now - self._since
        if span >= LOAD_WINDOW:
            if self._since >= 0:
                self._share = (self.busy - self._busy_then) / span
            self._since, self._busy_then = now, self.busy
        return self._share >= SATURATED


class _Timer(Protocol):
    def cancel(self) -> None: ...


class FlowContext(Protocol):
    """What the credit logic needs of a queue's context (``queue.QueueContext`` has it)."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer: ...
    def saturated(self) -> bool: ...


class CreditFlow:
    """Mixed into ``Queue``: the credit pool, its waiters and the stall timer."""

    credit: int
    _credit_waiters: list[Callable[[], None]]
    _stall_timer: _Timer | None
    _stall_mark: int
    _delivered_count: int
    _slow_looks: int

    # what Queue provides
    consumers: list[Any]  # Any: queue.Consumer (queue.py imports this module)
    deleted: bool
    ctx: FlowContext | None

    def _init_credit(self) -> None:
        self.credit = CREDIT
        self._credit_waiters = []
        self._stall_timer = None
        self._stall_mark = 0
        self._delivered_count = 0  # while someone waits: deliveries so far
        self._slow_looks = 0  # consecutive stall looks that found the consumers slow

    def _ready_count(self) -> int:
        raise NotImplementedError

    @property
    def behind(self) -> bool:
        return bool(self.consumers) and not self.deleted and self._ready_count() > BEHIND_AT

    def add_credit_waiter(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the queue has credit again (or stops being behind)."""
        self._credit_waiters.append(callback)
        ctx = self.ctx
        if self._stall_timer is None and ctx is not None:
            self._stall_mark = self._delivered_count
            self._stall_timer = ctx.call_later(STALL, self._on_stall)

    def _earn(self, count: int) -> None:
        """``count`` messages left the queue to consumers."""
        self._delivered_count += count
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
        self._stall_timer = None
        ctx = self.ctx
        if not self._credit_waiters or ctx is None:
            return
        if not self.behind:
            self._refill()
            return
        delivered = self._delivered_count - self._stall_mark
        self._slow_looks = self._slow_looks + 1 if delivered < SLOW else 0
        if self._slow_looks >= SLOW_LOOKS:
            # The consumers are slow (or stuck): throttling the publisher would not help
            # them unless it is the publisher's work that keeps the loop from them.
            if not ctx.saturated():
                self.credit = max(self.credit, IDLE_GRANT)
            elif not delivered:
                self.credit = max(self.credit, FLOOR)
        if self.credit > 0:
            self._release_waiters()
        if self._credit_waiters:
            self._stall_mark = self._delivered_count
            self._stall_timer = ctx.call_later(STALL, self._on_stall)

