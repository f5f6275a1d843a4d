"""Queue engine: ready messages (in a QueueStore), consumers, the delivery loop, TTL and limits.

Invariants:
- ``store`` holds only ready messages; delivered-but-unacked entries are held by channels and
  come back through ``requeue`` to their original position. The one exception, as in
  RabbitMQ: a quorum queue without a delivery limit puts a message the client handed back
  itself (basic.nack / basic.reject / basic.recover with requeue) at the back, under a new
  sequence number (its log can then be truncated); a channel or connection going away still
  returns its messages to their original position.
- Consumers are kept sorted by priority (arrival order within one); the delivery loop that
  serves them (``dispatch``, at most ``BUDGET`` per call) is ``dispatch.Delivery``, mixed in.
- Expiry happens at the head, as in RabbitMQ's classic queues: an expired message is never
  delivered; it is dead-lettered with reason ``expired`` when the queue has a DLX. The one
  exception is the message being published: a consumer that can take it at once gets it
  whatever its TTL, as RabbitMQ hands it over before it is ever queued (so a TTL of 0 means
  "now or never", not "never").
- The drop-head limit applies to what stays in the queue: after a publish (once a waiting
  consumer had its chance) and after a requeue, the oldest messages over x-max-length /
  x-max-length-bytes go (reason ``maxlen``). reject-publish[-dlx] only refuses new publishes:
  a requeue may leave the queue over its limit.
- Flow control (``credit.CreditFlow``): while the queue is behind, each message routed in spends
  a credit and each one delivered earns one back; the channel makes a publisher that spent the
  last one wait for ``add_credit_waiter``.
- The queue talks to the rest of the broker only through its ``QueueContext`` (clock, timers,
  deferred dispatch, dead-lettering, x-expires) and to a consumer's channel only through
  ``ConsumerChannel`` (the AMQP channel implements both ends of a delivery).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from protocol import codec
from protocol.tables import Table
from storage.message import Entry, Message

from .credit import BEHIND_AT
from .dedup import DedupStore, QueueDedup
from .dispatch import BUDGET, Delivery
from .jsondoc import JSONObject
from .messages import peeked
from .policies import combine
from .stats import Counters, retire_consumer

if TYPE_CHECKING:
    from storage.store import QueueStore

    from .exchanges.base import Binding

class Cancellable(Protocol):
    """A timer (asyncio.TimerHandle, or a test's fake one)."""

    def cancel(self) -> None: ...


class QueueContext(Protocol):
    def now(self) -> float: ...
    def schedule(self, queue: Queue) -> None: ...
    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable: ...
    def dead_letter(self, queue: Queue, message: Message, reason: str) -> None: ...
    def expire_queue(self, queue: Queue) -> None: ...
    def saturated(self) -> bool:
        """The event loop has had no idle time lately (flow control, see ``credit``)."""
        ...


class ConsumerChannel(Protocol):
    """What a queue (and its vhost) call on the channel a consumer belongs to."""

    @property
    def can_deliver(self) -> bool: ...
    @property
    def global_prefetch(self) -> int: ...
    @property
    def unacked_count(self) -> int: ...
    def deliver(self, consumer: Consumer, entry: Entry) -> None: ...
    def deliver_many(self, consumer: Consumer, entries: list[Entry]) -> None: ...
    def byte_room(self, no_ack: bool) -> int:
        """Bytes of message bodies the channel's connection takes before it stops taking
        deliveries (its bounds on output waiting to be written and on unacked bodies)."""
        ...
    def consumer_cancelled_by_server(self, consumer: Consumer) -> None: ...


class Consumer:
    __slots__ = ("tag", "tag_raw", "channel", "queue", "no_ack", "prefetch", "unacked",
                 "exclusive", "priority", "arguments", "delivered", "acked")

    def __init__(self, tag: str, channel: ConsumerChannel, queue: Queue | None, no_ack: bool,
                 prefetch: int, exclusive: bool, arguments: Table) -> None:
        self.tag = tag
        self.tag_raw = codec.shortstr(tag)
        self.channel = channel
        self.queue = queue
        self.no_ack = no_ack
        self.prefetch = prefetch
        self.unacked = 0
        self.delivered = 0  # deliveries and acks, read by broker.stats (never reset)
        self.acked = 0
        self.exclusive = exclusive
        self.arguments = arguments
        priority = arguments.get("x-priority", 0)
        self.priority = priority if isinstance(priority, int) else 0

    def room(self) -> int:
        """How many more deliveries this consumer takes now (BUDGET-sized for no limit)."""
        channel = self.channel
        if not channel.can_deliver:
            return 0
        if self.no_ack:
            return BUDGET
        room = self.prefetch - self.unacked if self.prefetch else BUDGET
        limit = channel.global_prefetch
        if limit:
            room = min(room, limit - channel.unacked_count)
        return room

    def has_credit(self) -> bool:
        channel = self.channel
        if not channel.can_deliver:
            return False
        if self.no_ack:
            return True
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        limit = channel.global_prefetch
        return not limit or channel.unacked_count < limit


class Queue(Delivery):
    ctx: QueueContext | None
    #: Every message is written to the store, transient ones too (streams): a publisher
    #: confirm then waits for the disk whatever the delivery mode.
    logs_everything = False

    def __init__(self, vhost: str, name: str, store: QueueStore, ctx: QueueContext | None, *,
                 durable: bool = False, exclusive_owner: object = None, auto_delete: bool = False,
                 arguments: Table | None = None) -> None:
        self.vhost = vhost
        self.name = name
        self.store = store
        self.ctx = ctx
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments = dict(arguments or {})
        self.policy: JSONObject = {}  # the effective definition (policy + operator policy)
        self.policy_name: str | None = None
        self.operator_policy_name: str | None = None
        self.consumers: list[Consumer] = []
        self._exclusive_consumer: Consumer | None = None
        self.had_consumer = False
        self.deleted = False
        self.bindings: set[Binding] = set()
        self._scheduled = False
        self._rr = 0
        self._arriving: Entry | None = None  # being published: exempt from the expiry check
        self._seq = store.last_seq
        self._seq_base = self._seq  # published = _seq - _seq_base - _renumbered
        self._renumbered = 0  # returned to the back: a new seq, not a new publish
        self.stats = Counters()  # gets and requeues; consumers count their own (core.stats)
        self.departed: list[Consumer] = []
        self.persists = durable and exclusive_owner is None
        self._expiry_timer: Cancellable | None = None
        self._idle_timer: Cancellable | None = None
        self.on_empty_consumers: Callable[[Queue], None] | None = None
        self._init_credit()
        # x-message-deduplication: keys of the messages held; their store releases them
        self.dedup: QueueDedup | None = None
        if self.arguments.get("x-message-deduplication") is True:
            self.dedup = QueueDedup()
            self.store = DedupStore(store, self.dedup)
        self.refresh_settings()

    # ---- settings ----------------------------------------------------------------------
    def setting(self, key: str) -> Any:
        """The x-argument combined with the applied policy's value (policies.combine).

        Any: what a client or a policy sent; arguments.py validated x-arguments, policies are
        not validated, so every reader checks the type it needs (see refresh_settings)."""
        return combine(key, self.arguments.get("x-" + key), self.policy.get(key))

    @property
    def queue_type(self) -> str:
        kind = self.arguments.get("x-queue-type")
        return kind if isinstance(kind, str) else "classic"

    def refresh_settings(self) -> None:
        ttl = self.setting("message-ttl")
        self.message_ttl: int | None = ttl if isinstance(ttl, int) else None
        max_len = self.setting("max-length")
        self.max_length: int | None = max_len if isinstance(max_len, int) else None
        max_bytes = self.setting("max-length-bytes")
        self.max_bytes: int | None = max_bytes if isinstance(max_bytes, int) else None
        self.overflow = self.setting("overflow") or "drop-head"
        expires = self.setting("expires")
        self.expires: int | None = expires if isinstance(expires, int) else None
        self._limited = self.max_length is not None or self.max_bytes is not None
        limit = self.setting("delivery-limit")
        self.delivery_limit: int | None = limit if isinstance(limit, int) else None
        self.single_active = self.setting("single-active-consumer") is True
        self.is_quorum = self.queue_type == "quorum"
        mode = self.setting("queue-mode")
        if mode in ("default", "lazy"):
            self.store.set_mode(mode)
        self.touch()

    # ---- counts ------------------------------------------------------------------------
    @property
    def message_count(self) -> int:
        return len(self.store)

    def _ready_count(self) -> int:
        return len(self.store)

    @property
    def published(self) -> int:
        """Messages accepted into this queue since it was created or recovered."""
        return self._seq - self._seq_base - self._renumbered

    @property
    def consumer_count(self) -> int:
        return len(self.consumers)

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    def exclusive_consumer(self) -> Consumer | None:
        """Kept, not searched: a scan per basic.consume made thousands of consumers on one
        queue quadratic (found by the memory-attack soak)."""
        return self._exclusive_consumer

    # ---- messages ----------------------------------------------------------------------
    def publish(self, message: Message) -> bool:
        """Enqueue; False when the queue refused it (x-overflow reject-publish[-dlx]).

        A duplicate in a deduplicating queue is dropped but counts as taken (confirmed)."""
        dedup = self.dedup
        if dedup is not None and dedup.duplicate(message):
            return True
        if self._limited and self._full_for(message):
            if self.overflow in ("reject-publish", "reject-publish-dlx") and dedup is not None:
                dedup.release(message)
            if self.overflow == "reject-publish":
                return False
            if self.overflow == "reject-publish-dlx":
                self._dead_letter(message, "maxlen")
                return False
        self._seq += 1
        entry = Entry(self._seq, message)
        expires = self._expiry_of(message)
        if expires is not None:
            entry.expires = expires
        self.store.push(entry)
        more = True
        if self.consumers:
            outer, self._arriving = self._arriving, entry  # a dead letter may publish here
            more = self.dispatch()
            self._arriving = outer
        if self._limited:
            self._drop_head_over_limit()
        if more and self.consumers and len(self.store) > BEHIND_AT:
            self.credit -= 1
        if expires is not None:
            self._expire_head()
        return True

    def _expiry_of(self, message: Message) -> float | None:
        ttl = self.message_ttl
        per_message = peeked(message).expiration_ms
        if per_message is not None:
            ttl = per_message if ttl is None else min(ttl, per_message)
        if ttl is None or self.ctx is None:
            return None
        return self.ctx.now() + ttl / 1000.0

    def _full_for(self, message: Message) -> bool:
        if self.max_length is not None and len(self.store) >= self.max_length:
            return True
        return self.max_bytes is not None and self.store.bytes + message.size > self.max_bytes

    def _drop_head_over_limit(self) -> None:
        store = self.store
        while (self.max_length is not None and len(store) > self.max_length) or \
                (self.max_bytes is not None and store.bytes > self.max_bytes and len(store)):
            entry = store.shift()
            if entry is None:
                return
            store.ack(entry)
            self._dead_letter(entry.message, "maxlen")

    def _dead_letter(self, message: Message, reason: str) -> None:
        if self.ctx is not None:
            self.ctx.dead_letter(self, message, reason)

    def _expire_head(self) -> None:
        """Drop expired messages at the head; arm a timer for the next one."""
        ctx = self.ctx
        if ctx is None:
            return
        now = ctx.now()
        store = self.store
        while True:
            head = store.peek()
            if head is None or head.expires is None:
                return
            if head.expires > now:
                break
            store.shift()
            store.ack(head)
            self._dead_letter(head.message, "expired")
        if self._expiry_timer is None:
            delay = max(0.0, head.expires - now)
            self._expiry_timer = ctx.call_later(delay, self._on_expiry_timer)

    def check_expiry(self) -> None:
        """Expire what is due at the head now and arm the timer (e.g. after recovery)."""
        self._expire_head()

    def _on_expiry_timer(self) -> None:
        self._expiry_timer = None
        if not self.deleted:
            self._expire_head()

    def get(self) -> Entry | None:
        self.touch()
        self._expire_head()
        return self.store.shift()

    def requeue(self, entry: Entry, nacked: bool = False) -> None:
        """Back to the queue. ``nacked``: the client handed it back (basic.nack, basic.reject,
        basic.recover with requeue) rather than its channel going away; a quorum queue without
        a delivery limit then puts it at the back (RabbitMQ 3.10 to 3.13)."""
        entry.redelivered = True
        if self.deleted:
            return
        if self.is_quorum:
            entry.delivery_count += 1
            if self.delivery_limit is not None and entry.delivery_count > self.delivery_limit:
                self.store.ack(entry)
                self._dead_letter(entry.message, "delivery_limit")
                return
            if nacked and self.delivery_limit is None:
                self._return_to_back(entry)
                return
        self.stats.redeliver += 1
        self.store.requeue(entry)
        self._after_requeue(entry)

    def _return_to_back(self, entry: Entry) -> None:
        """Behind everything ready, under a new seq: the store writes it again (with its
        delivery count, so it comes back redelivered even from disk) and drops the old one."""
        self._seq += 1
        self._renumbered += 1
        back = Entry(self._seq, entry.message, True)
        back.delivery_count = entry.delivery_count
        back.expires = entry.expires
        self.stats.redeliver += 1
        self.store.push(back)  # before the ack: a crash in between duplicates, never loses
        if self.dedup is not None:
            self.dedup.hold(back.message)  # the ack below releases the old copy's key
        self.store.ack(entry)
        self._after_requeue(back)

    def _after_requeue(self, entry: Entry) -> None:
        if self._limited and self.overflow == "drop-head":
            self._drop_head_over_limit()
        if entry.expires is not None:
            self._expire_head()

    def ack(self, entry: Entry) -> None:
        self.store.ack(entry)

    def reject(self, entry: Entry) -> None:
        """Settled without requeue: gone from the queue, dead-lettered when it has a DLX."""
        self.store.ack(entry)
        self._dead_letter(entry.message, "rejected")

    def purge(self) -> int:
        count = self.store.purge()
        self._refill()
        return count

    # ---- x-expires ---------------------------------------------------------------------
    def touch(self) -> None:
        """The queue was used: restart its x-expires countdown."""
        if self.expires is None or self.ctx is None or self.deleted:
            return
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = self.ctx.call_later(self.expires / 1000.0, self._on_idle_timer)

    def _on_idle_timer(self) -> None:
        self._idle_timer = None
        if self.deleted:
            return
        if self.consumers:
            self.touch()
            return
        if self.ctx is not None:
            self.ctx.expire_queue(self)

    def cancel_timers(self) -> None:
        for timer in (self._expiry_timer, self._idle_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._expiry_timer = self._idle_timer = self._stall_timer = None
        self._refill()

    # ---- consumers ---------------------------------------------------------------------
    def check_consumer(self, prefetch: int, global_prefetch: int, no_ack: bool,
                       arguments: Table) -> None:
        """Refuse a basic.consume this queue type cannot serve (raise); any is fine here."""

    def add_consumer(self, consumer: Consumer) -> None:
        if consumer.priority or (self.consumers and self.consumers[-1].priority):
            # highest priority first, arrival order within a priority (no re-sort per add)
            at = bisect.bisect_right(self.consumers, -consumer.priority,
                                     key=lambda c: -c.priority)
            self.consumers.insert(at, consumer)
        else:
            self.consumers.append(consumer)
        if consumer.exclusive:
            self._exclusive_consumer = consumer
        self.had_consumer = True
        self.touch()
        self.wake()

    def remove_consumer(self, consumer: Consumer) -> None:
        try:
            self.consumers.remove(consumer)
        except ValueError:
            return
        if consumer is self._exclusive_consumer:
            self._exclusive_consumer = None
        retire_consumer(self, consumer)
        self.touch()
        if not self.consumers:
            self._refill()
            if self.auto_delete and self.on_empty_consumers:
                self.on_empty_consumers(self)
