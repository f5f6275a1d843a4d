"""Settlement of deliveries for Channel (a mixin): basic.ack / nack / reject / recover, and
the requeue of everything unacked when a channel goes.

Invariants:
- ``unacked`` maps delivery tags, in ascending order, to (entry, queue, consumer); a basic.get
  message has no consumer.
- Every entry leaving ``unacked`` gives its body's bytes back to the connection
  (``ChannelOwner.unacked_released``), which stops deliveries at its bound of unacked bodies.
- A single ack outside a transaction and without a global prefetch is the hot path (``on_ack``:
  no list, no set); everything else goes through ``_settle``, which in tx mode checks the tags
  now and applies at tx.commit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pamqp import commands as C

from broker.core.queue import Consumer, Queue
from broker.core.stats import Counters
from broker.core.stream_queue import check_nack
from protocol.errors import NotImplemented_, PreconditionFailed
from storage.message import Entry

if TYPE_CHECKING:
    from .ports import ChannelOwner


class Settlement:
    session: ChannelOwner
    unacked: dict[int, tuple[Entry, Queue, Consumer | None]]
    tx: list[Callable[[], None]] | None
    global_prefetch: int
    stats: Counters

    def reply(self, method: C.base.Frame) -> None:
        raise NotImplementedError

    def _wake_consumed_queues(self) -> None:
        raise NotImplementedError

    def _requeue_all(self, nacked: bool = False) -> None:
        """``nacked``: basic.recover (the client's own requeue, as basic.nack) rather than
        the channel going away (see ``Queue.requeue``)."""
        touched: set[Queue] = set()
        freed = 0
        for entry, queue, consumer in self.unacked.values():
            queue.requeue(entry, nacked)
            freed += entry.message.size
            if consumer is not None:
                consumer.unacked -= 1
            touched.add(queue)
        self.stats.redeliver += len(self.unacked)
        self.unacked.clear()
        if freed:
            self.session.unacked_released(freed)
        for queue in touched:
            queue.wake()

    def _take(self, tag: int, multiple: bool) -> list[tuple[Entry, Queue, Consumer | None]]:
        unacked = self.unacked
        if multiple:
            if tag == 0:
                taken = list(unacked.values())
                unacked.clear()
                return taken
            if tag not in unacked:
                raise PreconditionFailed(f"unknown delivery tag {tag}")
            tags = []
            for t in unacked:
                if t > tag:
                    break
                tags.append(t)
            return [unacked.pop(t) for t in tags]
        item = unacked.pop(tag, None)
        if item is None:
            raise PreconditionFailed(f"unknown delivery tag {tag}")
        return [item]

    def _check_tags(self, tag: int, multiple: bool) -> None:
        if (multiple and tag == 0) or tag in self.unacked:
            return
        raise PreconditionFailed(f"unknown delivery tag {tag}")

    def _settle(self, tag: int, multiple: bool, requeue: bool | None) -> None:
        """requeue None = ack; True = back to the queue; False = dropped (dead-lettered)."""
        if self.tx is not None:
            self._check_tags(tag, multiple)
            self.tx.append(lambda: self._settle_now(tag, multiple, requeue, lenient=True))
            return
        self._settle_now(tag, multiple, requeue)

    def _settle_now(self, tag: int, multiple: bool, requeue: bool | None,
                    lenient: bool = False) -> None:
        try:
            taken = self._take(tag, multiple)
        except PreconditionFailed:
            if lenient:
                return
            raise
        touched: set[Queue] = set()
        freed = 0
        acking = requeue is None
        for entry, queue, consumer in taken:
            freed += entry.message.size
            if consumer is not None:
                consumer.unacked -= 1
                consumer.acked += acking
            elif acking:  # a basic.get message: no consumer counts it
                self.stats.ack += 1
                queue.stats.ack += 1
            if requeue:
                queue.requeue(entry, nacked=True)
            elif acking:
                queue.ack(entry)
            else:
                queue.reject(entry)
            touched.add(queue)
        if requeue:
            self.stats.redeliver += len(taken)
        self.session.unacked_released(freed)
        for queue in touched:
            queue.wake()
        if self.global_prefetch:
            self._wake_consumed_queues()

    def on_basic_ack(self, m: C.Basic.Ack) -> None:
        self.on_ack(m.delivery_tag, m.multiple)

    def on_ack(self, tag: int, multiple: bool) -> None:
        if multiple or self.tx is not None or self.global_prefetch:
            self._settle(tag, multiple, None)
            return
        # The hot path: one delivery acked on its own.
        item = self.unacked.pop(tag, None)
        if item is None:
            raise PreconditionFailed(f"unknown delivery tag {tag}")
        entry, queue, consumer = item
        if consumer is not None:
            consumer.unacked -= 1
            consumer.acked += 1
        else:  # a basic.get message: no consumer counts it
            self.stats.ack += 1
            queue.stats.ack += 1
        queue.ack(entry)
        self.session.unacked_released(entry.message.size)
        queue.wake()

    def on_basic_nack(self, m: C.Basic.Nack) -> None:
        check_nack(self.unacked, m.delivery_tag, m.multiple)
        self._settle(m.delivery_tag, m.multiple, m.requeue)

    def on_basic_reject(self, m: C.Basic.Reject) -> None:
        check_nack(self.unacked, m.delivery_tag or 0, False)
        self._settle(m.delivery_tag or 0, False, m.requeue)  # pamqp: int | None

    def on_basic_recover(self, m: C.Basic.Recover) -> None:
        if not m.requeue:
            raise NotImplemented_("requeue=false")
        self.reply(C.Basic.RecoverOk())
        self._requeue_all(nacked=True)

    def on_basic_recover_async(self, m: C.Basic.RecoverAsync) -> None:
        if not m.requeue:
            raise NotImplemented_("requeue=false")
        self._requeue_all(nacked=True)
