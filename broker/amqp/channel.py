"""Channel: handlers ``on_<class>_<method>`` looked up by pamqp class, consumers, unacked
deliveries, publisher confirms and transactions (exchange.* and queue.* in
``channel_topology``, ack / nack / reject / recover in ``settlement``).

Invariants:
- Delivery tags start at 1 and only grow; ``unacked`` is ordered by tag (dict insertion order).
- Confirms are counted per publish after confirm.select and coalesced: the session calls
  ``flush_confirms`` once per read, after every basic.return of that read was written.
- In tx mode publishes and settlements are buffered and applied at tx.commit; an unknown tag is
  refused when it is settled, not at commit. A commit whose publishes were not all taken and
  made durable fails with RabbitMQ's 406 ``partial tx completion``.
- Errors are raised, never answered here: the session turns them into close frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pamqp import commands as C

from broker.core import arguments as qargs
from broker.core import publishing, replyto
from broker.core.queue import Consumer, Queue
from broker.core.stats import Counters, retire_consumer
from protocol import codec, properties
from protocol.errors import (
    AccessRefused,
    CommandInvalid,
    NotAllowed,
    NotImplemented_,
    PreconditionFailed,
)
from protocol.events import Publish
from protocol.methods import AccessRequest, AccessRequestOk
from storage.message import Entry, Message

from .channel_topology import TopologyHandlers, random_name
from .confirms import Confirms
from .limits import CONSUMERS_PER_CONNECTION, OUTPUT_LIMIT
from .settlement import Settlement

if TYPE_CHECKING:
    from broker.core.exchanges import Exchange

    from .ports import ChannelOwner


# RabbitMQ's text when a queue did not confirm a publish of the commit (rabbit_channel).
PARTIAL_TX = "partial tx completion"


def _handler_name(pamqp_name: str) -> str:
    cls, _, meth = pamqp_name.partition(".")
    snake = "".join("_" + ch.lower() if ch.isupper() else ch for ch in meth).lstrip("_")
    return f"on_{cls.lower()}_{snake}"


HANDLER_NAMES: dict[type[C.base.Frame], str] = {cls: _handler_name(cls.name)
                                  for cls in (*C.INDEX_MAPPING.values(), AccessRequest)
                                  if issubclass(cls, C.base.Frame)}  # pamqp: dict[int, type]


def _delivered_properties(entry: Entry) -> bytes:
    if entry.delivery_count:
        return replyto.with_delivery_count(entry.message.properties, entry.delivery_count)
    return entry.message.properties


class Channel(TopologyHandlers, Settlement):
    def __init__(self, session: ChannelOwner, number: int) -> None:
        self.session = session
        self.number = number
        self.vhost = session.vhost
        self.machine = session.machine
        self.last_queue: str | None = None
        self.consumers: dict[str, Consumer] = {}
        self.unacked: dict[int, tuple[Entry, Queue, Consumer | None]] = {}
        self.next_tag = 0
        self.prefetch_count = 0
        self.global_prefetch = 0
        self.confirms: Confirms | None = None
        self.tx: list[Callable[[], None]] | None = None
        self.reply_address: str | None = None
        self._tx_wrote_to_disk = False
        self._tx_refused = False  # a queue refused a publish of the commit (reject-publish)
        self.closed = False
        self.stats = Counters()  # publishes, gets, returns; consumers count their own
        self.departed: list[Consumer] = []

    # ---- plumbing ----------------------------------------------------------------------
    @property
    def can_deliver(self) -> bool:
        return self.session.writable and not self.closed

    def byte_room(self, no_ack: bool) -> int:
        session = self.session
        room = OUTPUT_LIMIT - session.out_bytes
        if not no_ack:
            room = min(room, session.unacked_limit - session.unacked_bytes)
        return room

    @property
    def unacked_count(self) -> int:
        return len(self.unacked)

    def reply(self, method: C.base.Frame) -> None:
        self.machine.send_method(self.number, method)

    def handle(self, method: C.base.Frame) -> None:
        name = HANDLER_NAMES.get(type(method))
        handler = getattr(self, name, None) if name else None
        if handler is None:
            raise CommandInvalid("unimplemented method")
        handler(method)

    # ---- channel class -----------------------------------------------------------------
    def on_channel_open(self, m: C.Channel.Open) -> None:
        # channel_id is an empty longstr, as RabbitMQ sends it (pamqp insists on "0").
        self.machine.send_raw(codec.channel_open_ok_frame(self.number))

    def on_channel_close(self, m: C.Channel.Close) -> None:
        self.session.drop_channel(self.number)
        self.machine.channel_close_ok(self.number)

    def on_channel_flow(self, m: C.Channel.Flow) -> None:
        if not m.active:
            raise NotImplemented_("active=false")
        self.reply(C.Channel.FlowOk(True))

    def on_access_request(self, m: AccessRequest) -> None:
        self.reply(AccessRequestOk(1))

    def teardown(self) -> None:
        """The channel is going away: cancel consumers, requeue what was not acked."""
        if self.closed:
            return
        self.closed = True
        self.tx = None
        for consumer in list(self.consumers.values()):
            self._forget_consumer(consumer)
        self.consumers.clear()
        self._requeue_all()

    # ---- basic: consumers --------------------------------------------------------------
    def on_basic_qos(self, m: C.Basic.Qos) -> None:
        if m.prefetch_size:
            raise NotImplemented_(f"prefetch_size!=0 ({m.prefetch_size})")
        if m.global_:
            self.global_prefetch = m.prefetch_count
        else:
            self.prefetch_count = m.prefetch_count
        self.reply(C.Basic.QosOk())
        self._wake_consumed_queues()

    def _wake_consumed_queues(self) -> None:
        for queue in {c.queue for c in self.consumers.values()}:
            if queue is not None:  # the direct reply-to consumer has no queue
                queue.wake()

    def on_basic_consume(self, m: C.Basic.Consume) -> None:
        if m.consumer_tag not in self.consumers:
            self._check_consumer_limits()
        tag = m.consumer_tag or random_name("amq.ctag-")
        if m.queue == replyto.REPLY_QUEUE:
            self._consume_replies(m, tag)
            return
        queue = self.usable_queue(m.queue)
        if tag in self.consumers:
            raise NotAllowed(f"attempt to reuse consumer tag '{tag}'")
        if queue.is_quorum and self.global_prefetch:
            raise NotImplemented_(f"queue '{queue.name}' in vhost '{self.vhost.name}' does "
                                  "not support global qos")
        if queue.exclusive_consumer() is not None or (m.exclusive and queue.consumers):
            raise AccessRefused(f"queue '{queue.name}' in vhost '{self.vhost.name}' in "
                                "exclusive use")
        args = dict(m.arguments or {})
        queue.check_consumer(self.prefetch_count, self.global_prefetch, m.no_ack, args)
        qargs.validate_consumer_args(queue.name, self.vhost.name, args)
        consumer = Consumer(tag, self, queue, m.no_ack, self.prefetch_count, m.exclusive, args)
        self.consumers[tag] = consumer
        if not m.nowait:
            self.reply(C.Basic.ConsumeOk(tag))
        queue.add_consumer(consumer)

    def _check_consumer_limits(self) -> None:
        limit = self.session.host.config.consumer_max_per_channel
        if limit is not None and len(self.consumers) >= limit:
            raise NotAllowed(f"reached maximum ({limit}) of consumers per channel")
        if len(self.consumers) + sum(len(c.consumers) for c in self.session.channels.values()
                                     if c is not self) >= CONSUMERS_PER_CONNECTION:
            raise NotAllowed(f"reached maximum ({CONSUMERS_PER_CONNECTION}) of consumers per "
                             "connection")

    def _consume_replies(self, m: C.Basic.Consume, tag: str) -> None:
        if not m.no_ack:
            raise PreconditionFailed("reply consumer cannot acknowledge")
        if tag in self.consumers:
            raise NotAllowed(f"attempt to reuse consumer tag '{tag}'")
        self.consumers[tag] = Consumer(tag, self, None, True, 0, False, {})
        self.reply_address = self.session.server.replies.register(self)
        if not m.nowait:
            self.reply(C.Basic.ConsumeOk(tag))

    def _forget_consumer(self, consumer: Consumer) -> None:
        retire_consumer(self, consumer)
        if consumer.queue is not None:
            consumer.queue.remove_consumer(consumer)
        elif self.reply_address is not None:
            self.session.server.replies.unregister(self.reply_address)
            self.reply_address = None

    def on_basic_cancel(self, m: C.Basic.Cancel) -> None:
        consumer = self.consumers.pop(m.consumer_tag or "", None)  # pamqp: str | None
        if not m.nowait:
            self.reply(C.Basic.CancelOk(m.consumer_tag))
        if consumer is not None:
            self._forget_consumer(consumer)

    def consumer_cancelled_by_server(self, consumer: Consumer) -> None:
        if self.consumers.pop(consumer.tag, None) is not None:
            retire_consumer(self, consumer)
        if self.machine.client_capability("consumer_cancel_notify") and \
                self.machine.channel_usable(self.number):
            self.reply(C.Basic.Cancel(consumer.tag, True))
            self.session.wake()

    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        self.deliver_many(consumer, (entry,))

    def deliver_many(self, consumer: Consumer, entries: Sequence[Entry]) -> None:
        """basic.deliver for each entry, in order, with consecutive delivery tags."""
        number = self.number
        send = self.machine.send_deliver
        ctag = consumer.tag_raw
        tag = self.next_tag
        queued = 0
        for entry in entries:
            tag += 1
            msg = entry.message
            queued += send(number, ctag, tag, entry.redelivered, msg.exchange_raw,
                           msg.routing_key_raw, msg.properties if not entry.delivery_count
                           else _delivered_properties(entry), msg.body)
        consumer.delivered += len(entries)
        queue = consumer.queue
        session = self.session
        session.out_bytes += queued
        if session.out_bytes > OUTPUT_LIMIT:
            session.stall("output")  # until the transport has taken it
        if consumer.no_ack:
            if queue is not None:
                for entry in entries:
                    queue.ack(entry)
        else:
            # only the reply consumer has no queue, and it is no-ack
            unacked = self.unacked
            tag = self.next_tag
            held = 0
            for entry in entries:
                tag += 1
                unacked[tag] = (entry, queue, consumer)  # type: ignore[assignment]
                held += entry.message.size
            consumer.unacked += len(entries)
            session.unacked_bytes += held
            if session.unacked_bytes >= session.unacked_limit:
                session.stall("unacked")
        self.next_tag = tag
        session.wake()

    def deliver_reply(self, message: Message) -> None:
        for consumer in self.consumers.values():
            if consumer.queue is None:
                self.deliver(consumer, Entry(0, message))
                return

    def on_basic_get(self, m: C.Basic.Get) -> None:
        queue = self.usable_queue(m.queue)
        session = self.session
        if not m.no_ack and session.unacked_bytes >= session.unacked_limit:
            # Flow control: the connection holds its bound of unacknowledged bodies.
            self.reply(C.Basic.GetEmpty())
            return
        entry = queue.get()
        if entry is None:
            self.stats.get_empty += 1
            queue.stats.get_empty += 1
            self.reply(C.Basic.GetEmpty())
            return
        self.next_tag += 1
        if m.no_ack:
            self.stats.get_no_ack += 1
            queue.stats.get_no_ack += 1
        else:
            self.stats.get += 1
            queue.stats.get += 1
        tag = self.next_tag
        msg = entry.message
        self.machine.send_get_ok(self.number, tag, entry.redelivered, msg.exchange_raw,
                                 msg.routing_key_raw, queue.message_count,
                                 _delivered_properties(entry), msg.body)
        if m.no_ack:
            queue.ack(entry)
        else:
            self.unacked[tag] = (entry, queue, None)
            self.session.unacked_bytes += msg.size

    # ---- basic: publish ----------------------------------------------------------------
    def on_publish(self, ev: Publish) -> None:
        """The rules of broker.core.publishing (the message size was checked on its header,
        the write permission by the session), then routing."""
        self.stats.publish += 1
        if ev.immediate:
            raise NotImplemented_("immediate=true")
        exchange = publishing.target_exchange(self.vhost, ev.exchange)
        authz = self.session.authz
        if authz is not None and authz.topic_rules:
            authz.check_topic_write(exchange, ev.routing_key)
        props = ev.properties
        if props[0] & 0x02 and replyto.asks_direct_reply(props):
            if self.reply_address is None:
                raise PreconditionFailed("fast reply consumer does not exist")
            props = replyto.with_reply_to(props, self.reply_address)
        meta = properties.peek_all(props)  # the one walk over the properties
        message = Message(ev.exchange, ev.routing_key, props, ev.body, meta.delivery_mode == 2,
                          ev.exchange_raw, ev.routing_key_raw, meta)
        self.session.check_publish(self, message)
        if self.confirms is not None:
            self.confirms.next()
        if self.tx is not None:
            self.tx.append(lambda: self._route(exchange, message, ev.mandatory))
            return
        self._route(exchange, message, ev.mandatory)

    def _route(self, exchange: Exchange, message: Message, mandatory: bool) -> None:
        queues = publishing.route(self.vhost, exchange, message, self.session.server.replies)
        confirms = self.confirms
        if not queues:
            self.stats.drop_unroutable += not mandatory
            if mandatory:
                self.stats.return_unroutable += 1
                self.machine.send_return(self.number, 312, "NO_ROUTE", message.exchange_raw,
                                         message.routing_key_raw, message.properties,
                                         message.body)
        elif queues is publishing.REPLIED:
            pass
        elif confirms is not None:
            seq = confirms.seq
            for queue in queues:
                if not queue.publish(message):
                    confirms.nack(seq)
                elif (message.persistent or queue.logs_everything) and queue.persists:
                    confirms.wait_for_disk(seq)
                if queue.credit <= 0:
                    self.session.wait_for_credit(queue)
        else:
            for queue in queues:
                if not queue.publish(message) and self.tx is not None:
                    self._tx_refused = True
                elif self.tx is not None and queue.persists and \
                        (message.persistent or queue.logs_everything):
                    self._tx_wrote_to_disk = True
                if queue.credit <= 0:
                    self.session.wait_for_credit(queue)
        if confirms is not None:
            self.session.confirms_pending.add(self)

    def flush_confirms(self) -> None:
        """Ack (or nack) what can be confirmed now; ask for an fsync for what waits on it."""
        confirms = self.confirms
        if confirms is None or not self.machine.channel_usable(self.number):
            return
        confirms.flush(self.number, self.machine)
        confirms.request_sync(self.session.host.durability.when_durable, self._on_synced)

    def _on_synced(self) -> None:
        if self.confirms is not None and not self.closed and \
                self.machine.channel_usable(self.number):
            self.confirms.flush(self.number, self.machine)
            self.session.wake()

    # ---- confirm / tx ------------------------------------------------------------------
    def on_confirm_select(self, m: C.Confirm.Select) -> None:
        if self.tx is not None:
            raise PreconditionFailed("cannot switch from tx to confirm mode")
        if self.confirms is None:
            self.confirms = Confirms()
        if not m.nowait:
            self.reply(C.Confirm.SelectOk())

    def on_tx_select(self, m: C.Tx.Select) -> None:
        if self.confirms is not None:
            raise PreconditionFailed("cannot switch from confirm to tx mode")
        if self.tx is None:
            self.tx = []
        self.reply(C.Tx.SelectOk())

    def on_tx_commit(self, m: C.Tx.Commit) -> None:
        if self.tx is None:
            raise PreconditionFailed("channel is not transactional")
        actions, self.tx = self.tx, []
        self._tx_wrote_to_disk = self._tx_refused = False
        for action in actions:
            action()
        if not self._tx_wrote_to_disk:
            if self._tx_refused:
                raise PreconditionFailed(PARTIAL_TX)
            self.reply(C.Tx.CommitOk())
            return
        # As in RabbitMQ, commit-ok means the persistent messages are on disk (in cluster
        # mode: on the in-sync replicas too).
        self.session.host.durability.when_durable(self._commit_durable)

    def _commit_durable(self, ok: bool) -> None:
        """RabbitMQ fails a commit when a queue did not confirm one of its publishes (a
        reject-publish queue's nack, a queue gone): 406 ``partial tx completion`` on
        tx.commit, the channel closed. A failed fsync, or in cluster mode replicas that did
        not confirm in time (logged by the durability side with the cause), is that case."""
        if self.closed or not self.machine.channel_usable(self.number):
            return
        if not ok or self._tx_refused:
            self._tx_refused = False
            self.session.fail(PreconditionFailed(PARTIAL_TX).at(90, 20),
                              self.number)
        else:
            self.reply(C.Tx.CommitOk())
        self.session.wake()

    def on_tx_rollback(self, m: C.Tx.Rollback) -> None:
        if self.tx is None:
            raise PreconditionFailed("channel is not transactional")
        self.tx = []
        self.reply(C.Tx.RollbackOk())
