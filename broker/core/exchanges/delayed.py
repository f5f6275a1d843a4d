"""``x-delayed-message``: rabbitmq-delayed-message-exchange, built in.

The exchange routes as its ``x-delayed-type`` (direct, topic, fanout, headers, or any other
type) does, except that a message with an ``x-delay`` header of 1 .. 2^32-1 ms is held first:
``route`` sends it to the exchange's ``DelayHold``, a queue-like object that keeps it in a
``storage.delayed.DelayStore`` (on disk for a durable exchange, flat in RAM whatever the
count) and routes it when its time comes, in due order, through the exchange's bindings as
they are then. The routed copy has ``x-delay`` negated, as the plugin does, so that an
exchange further on does not delay it again. ``x-delay`` absent, not a number, <= 0 or too
large: routed at once.

Mandatory: the plugin's README says the flag is not supported (at the time of routing the
queues and the publisher's connection may be gone); its ``route`` answers no queues, so
RabbitMQ returns every held mandatory message at once (312 NO_ROUTE) and still delivers it
later. Every report of that on the plugin's tracker (issues 7, 136, 138) calls the return a
false failure: pika in confirm mode raises UnroutableError, Spring's ReturnsCallback fires,
retry logic publishes a duplicate. So a held message is never returned (nor sent to an
alternate exchange, which the plugin also does at once: its issue 36); without ``x-delay``
mandatory works as on the ``x-delayed-type``. Publisher confirms of a held persistent message
on a durable exchange wait until it is on disk. The management API shows the count held
(``messages_delayed``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from protocol import properties, tables
from protocol.errors import CommandInvalid, PreconditionFailed
from protocol.tables import Table
from storage.delayed import MemoryDelayStore
from storage.message import Message

from ..queue import Queue
from .base import EXCHANGE_TYPES, Binding, Destination, Exchange, register

if TYPE_CHECKING:
    from storage.delayed import DelayStore

log = logging.getLogger("broker.delayed")

MAX_DELAY = 4294967295  # ms: the plugin's (Erlang timer) limit
BATCH = 1000
TYPE_ARG = "x-delayed-type"


def delay_of(headers: Table | None) -> int | None:
    """The x-delay header in ms when it delays (integers, numeric strings and floats count,
    as in the plugin), else None."""
    if not headers:
        return None
    value = headers.get("x-delay")
    if isinstance(value, bool) or value is None:
        return None
    try:
        if isinstance(value, bytes | str):
            delay = int(value)
        elif isinstance(value, int | float):
            delay = int(value)
        else:
            delay = int(str(value))
    except (TypeError, ValueError):
        return None
    return delay if 0 < delay <= MAX_DELAY else None


def with_delay_header(props: bytes, delay: int) -> bytes:
    """The properties with x-delay set to ``-delay`` (a signedint, as the plugin writes)."""
    fields = properties.split(props)
    items = [(k, v) for k, v in tables.split_table(properties.headers_body(fields))
             if k != "x-delay"]
    items.append(("x-delay", b"I" + (-delay).to_bytes(4, "big", signed=True)))
    properties.set_headers_body(fields, tables.join_table(items))
    return properties.join(fields)


class DelayHold(Queue):
    """Where a delayed exchange's held messages wait. Never in the vhost's queue table: the
    exchange is its only way in, the timer its only way out."""

    def __init__(self, exchange: DelayedExchange, vhost: Any, store: Any) -> None:
        super().__init__(exchange.vhost, f"delayed messages of exchange '{exchange.name}'",
                         store, vhost.ctx, durable=exchange.durable)
        self.exchange = exchange
        self.vhost_ref = vhost
        self._timer: Any = None
        self._timer_due: float | None = None

    @property
    def delayed(self) -> DelayStore:
        return self.store  # type: ignore[return-value]

    def publish(self, message: Message) -> bool:
        delay = delay_of(properties.headers(message.properties))
        if delay is None:  # the exchange checked: only a race with a bad header gets here
            return True
        now = self._wall()
        self.delayed.add(now + delay / 1000.0, message.exchange_raw, message.routing_key_raw,
                         message.properties, message.body, message.persistent)
        self._arm()
        return True

    @property
    def message_count(self) -> int:
        return len(self.delayed)

    def _wall(self) -> float:
        return time.time()

    def _arm(self) -> None:
        """Make sure a timer fires for the earliest message held."""
        due = self.delayed.next_due()
        ctx = self.ctx
        if due is None or ctx is None or self.deleted:
            return
        if self._timer is not None:
            if self._timer_due is not None and self._timer_due <= due:
                return
            self._timer.cancel()
        self._timer_due = due
        self._timer = ctx.call_later(max(0.0, due - self._wall()), self._fire)

    def _fire(self) -> None:
        self._timer = self._timer_due = None
        if self.deleted:
            return
        store = self.delayed
        now = self._wall()
        routed = 0
        while routed < BATCH:
            held = store.pop_due(now)
            if held is None:
                break
            routed += 1
            self._route(held)
        if routed:
            store.routed()
        if routed >= BATCH and self.ctx is not None:
            self._timer_due = now
            self._timer = self.ctx.call_later(0, self._fire)  # the rest on the next turn
            return
        self._arm()

    def _route(self, held: Any) -> None:
        exchange = self.exchange
        vhost = self.vhost_ref
        if vhost.exchanges.get(exchange.name) is not exchange:
            return  # deleted meanwhile
        props = held.properties
        headers = properties.headers(props)
        original = delay_of(headers) or 0
        props = with_delay_header(props, original)
        message = Message(held.exchange, held.routing_key, props, held.body, held.persistent)
        for queue in vhost.route(exchange, held.routing_key, props):
            queue.publish(message)

    def cancel_timers(self) -> None:
        super().cancel_timers()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_due = None


@register("x-delayed-message")
class DelayedExchange(Exchange):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        kind = self.arguments.get(TYPE_ARG)
        inner_cls = EXCHANGE_TYPES[kind] if isinstance(kind, str) and \
            kind in EXCHANGE_TYPES else EXCHANGE_TYPES["direct"]
        self.inner = inner_cls(*args, **kwargs)
        self.needs_properties = self.inner.needs_properties
        self.hold: DelayHold | None = None

    @classmethod
    def check_arguments(cls, arguments: Table) -> None:
        kind = arguments.get(TYPE_ARG)
        if not isinstance(kind, str | bytes):
            raise PreconditionFailed("Invalid argument, 'x-delayed-type' must bean existing "
                                     "exchnage type")  # sic: the plugin's words
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind not in EXCHANGE_TYPES or kind == "x-delayed-message":
            word = "unknown" if kind.startswith("x-") else "invalid"
            raise CommandInvalid(f"{word} exchange type '{kind}'")
        EXCHANGE_TYPES[kind].check_arguments(arguments)

    def check_binding(self, destination: Any, routing_key: str, arguments: Table) -> None:
        self.inner.check_binding(destination, routing_key, arguments)

    # ---- state ---------------------------------------------------------------------------
    def attach(self, vhost: Any) -> None:
        factory = getattr(vhost.ctx, "exchange_store", None)
        store = factory(vhost.name, self.name, self.type_name, self.durable) \
            if factory is not None else None
        self.hold = DelayHold(self, vhost, store if store is not None else MemoryDelayStore())
        self.hold._arm()

    def detach(self) -> None:
        if self.hold is not None:
            self.hold.deleted = True
            self.hold.cancel_timers()
            self.hold.store.delete()

    def close(self) -> None:
        if self.hold is not None:
            self.hold.cancel_timers()
            self.hold.store.close()

    @property
    def messages_delayed(self) -> int:
        return len(self.hold.delayed) if self.hold is not None else 0

    # ---- bindings and routing -----------------------------------------------------------
    def _on_bind(self, binding: Binding) -> None:
        self.inner.bind(binding)

    def _on_unbind(self, binding: Binding) -> None:
        self.inner.unbind(binding)

    def needs_headers(self) -> bool:
        return True  # x-delay

    def route(self, routing_key: str, headers: Table | None) -> frozenset[Destination]:
        if self.hold is not None and delay_of(headers) is not None:
            return frozenset((self.hold,))
        return self.inner.route(routing_key, headers)

    def route_message(self, routing_key: str, headers: Table | None,
                      props: bytes) -> frozenset[Destination]:
        if self.hold is not None and delay_of(headers) is not None:
            return frozenset((self.hold,))
        return self.inner.route_message(routing_key, headers, props)
