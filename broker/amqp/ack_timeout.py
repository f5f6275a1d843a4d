"""The delivery acknowledgement timeout (RabbitMQ's ``consumer_timeout``).

A channel holding a delivery unacknowledged for longer than the timeout is closed with
RabbitMQ's 406 text; closing it requeues everything it held (``Channel.teardown``). The
timeout of a delivery is, most specific first: the consumer's ``x-consumer-timeout`` argument,
the queue's ``x-consumer-timeout`` argument and ``consumer-timeout`` policy (the smaller of
the two), then ``consumer_timeout`` from rabbitmq.conf (30 min by default; 0 or ``false``
turns it off). As in RabbitMQ only the channel's oldest unacked delivery is checked, with
that delivery's timeout.

How it costs nothing per delivery: every ``interval`` seconds a sweep records, per channel,
``(last delivery tag so far, now)``. A tag at or below a checkpoint's tag was delivered at or
before that checkpoint's time, so the oldest unacked tag is at least ``now - time`` old, where
``time`` is that of the first checkpoint covering it. A channel is therefore never closed
early, and at most two intervals late (RabbitMQ checks once a minute, so it closes up to a
minute late; we check every ``interval``, 1 s by default).

Invariants:
- The checkpoints of a channel are kept in a weak map and pruned as acks move the oldest tag
  up: at most one checkpoint per sweep while deliveries stay unacked.
- Loop-thread only; the node starts and stops the sweep.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from protocol.errors import PreconditionFailed

if TYPE_CHECKING:
    from broker.core.queue import Consumer, Queue

    from .channel import Channel
    from .session import Session

log = logging.getLogger("broker.channel")

DEFAULT_TIMEOUT_MS = 1_800_000
DEFAULT_INTERVAL = 1.0


def _ms(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def timeout_of(queue: Queue | None, consumer: Consumer | None, default: int | None) -> int | None:
    """The timeout (ms) that applies to a delivery from ``queue`` to ``consumer``; None: off."""
    if consumer is not None:
        own = _ms(consumer.arguments.get("x-consumer-timeout"))
        if own is not None:
            return own or None
    if queue is not None:
        per_queue = _ms(queue.setting("consumer-timeout"))
        if per_queue is not None:
            return per_queue or None
    return default or None


class AckTimeouts:
    def __init__(self, sessions: Callable[[], Iterable[Session]], default_ms: int | None,
                 interval: float = DEFAULT_INTERVAL,
                 clock: Callable[[], float] | None = None) -> None:
        self._sessions = sessions
        self.default_ms = default_ms
        self.interval = interval
        self._clock = clock
        self._marks: weakref.WeakKeyDictionary[Channel, deque[tuple[int, float]]] = \
            weakref.WeakKeyDictionary()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self._clock is None:
            self._clock = loop.time
        self._timer = loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        try:
            self.sweep()
        except Exception:  # a bug here must not stop the sweeps
            log.exception("consumer timeout sweep failed")
        if self._loop is not None and self._timer is not None:
            self._timer = self._loop.call_later(self.interval, self._tick)

    def sweep(self) -> None:
        assert self._clock is not None
        now = self._clock()
        for session in list(self._sessions()):
            if session.closed:
                continue
            for channel in list(session.channels.values()):
                if channel.unacked and not channel.closed:
                    self._check(session, channel, now)
                else:
                    self._marks.pop(channel, None)

    def _check(self, session: Session, channel: Channel, now: float) -> None:
        marks = self._marks.get(channel)
        if marks is None:
            marks = self._marks[channel] = deque()
        if not marks or marks[-1][0] != channel.next_tag:
            marks.append((channel.next_tag, now))
        oldest = next(iter(channel.unacked))
        while len(marks) > 1 and marks[0][0] < oldest:
            marks.popleft()
        last_tag, seen_at = marks[0]
        if last_tag < oldest:
            return  # delivered after every checkpoint: younger than one interval
        _entry, queue, consumer = channel.unacked[oldest]
        timeout = timeout_of(queue, consumer, self.default_ms)
        if timeout is None or (now - seen_at) * 1000.0 < timeout:
            return
        self._marks.pop(channel, None)
        tag = consumer.tag if consumer is not None else "none"
        log.warning("Consumer %s on channel %d and queue '%s' in vhost '%s' has timed out "
                    "waiting for a consumer acknowledgement of a delivery with delivery tag = "
                    "%d. Timeout used: %d ms. This timeout value can be configured, see "
                    "consumers doc guide to learn more", tag, channel.number,
                    queue.name if queue is not None else "", channel.vhost.name, oldest,
                    timeout)
        session.fail(PreconditionFailed(
            f"delivery acknowledgement on channel {channel.number} timed out. Timeout value "
            f"used: {timeout} ms. This timeout value can be configured, see consumers doc "
            "guide to learn more"), channel.number)
        session.wake()
