"""Authorization of AMQP operations: which configure / write / read permission each method needs.

One ``Authorizer`` per connection. ``check_method`` is called by the session before a channel
handles a method and raises ``AccessRefused`` with RabbitMQ 3.13's text
(``<perm> access to <kind> '<name>' in vhost '<v>' refused for user '<u>'``); the handler then
runs unchanged. The table follows RabbitMQ's access-control guide:

| method                              | configure | write            | read     |
|-------------------------------------|-----------|------------------|----------|
| exchange.declare (not passive)      | exchange  | alternate exch.  | exchange (with AE) |
| exchange.delete                     | exchange  |                  |          |
| queue.declare (not passive)         | queue     | dead-letter exch.| queue (with DLX) |
| queue.delete                        | queue     |                  |          |
| exchange.bind / unbind              |           | destination      | source   |
| queue.bind / unbind                 |           | queue            | exchange |
| basic.publish                       |           | exchange         |          |
| basic.get, basic.consume, purge     |           |                  | queue    |

Topic permissions (read on the binding key for bind / unbind with a topic source exchange,
write on the routing key for a publish to a topic exchange) are checked through
``broker.core.publishing``, as the management API's publish is.

Publish answers are cached per connection (the auth store invalidates the cache on every
change), so the publish path costs one set lookup; a user without topic permissions in the
vhost (``topic_rules`` false) pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pamqp import commands as C

from broker.core import publishing

if TYPE_CHECKING:
    from broker.core.users import AuthStore
    from broker.core.vhost import VirtualHost

TOPIC_CACHE = 1024  # (exchange, routing key) pairs remembered as allowed per connection


class Authorizer:
    def __init__(self, store: AuthStore, user: str, vhost: str,
                 vhost_state: VirtualHost | None = None) -> None:
        self.store = store
        self.user = user
        self.vhost = vhost
        self.vhost_state = vhost_state
        self.writable_exchanges: set[str] = set()
        self.topic_rules = store.has_topic_permissions(user, vhost)
        self._topics_allowed: set[tuple[str, str]] = set()
        store.watch(self)

    def invalidate(self) -> None:
        self.writable_exchanges.clear()
        self._topics_allowed.clear()
        self.topic_rules = self.store.has_topic_permissions(self.user, self.vhost)

    def require(self, what: str, kind: str, name: str) -> None:
        publishing.require(self.store, self.user, self.vhost, what, kind, name)

    def check_publish(self, exchange: str) -> None:
        """The hot path: called for every publish whose exchange is not cached yet."""
        if exchange in self.writable_exchanges:
            return
        self.require("write", "exchange", exchange)
        self.writable_exchanges.add(exchange)

    def check_topic_write(self, exchange: Any, routing_key: str) -> None:
        """Called for a publish only when ``topic_rules`` is set."""
        key = (exchange.name, routing_key)
        if key in self._topics_allowed:
            return
        publishing.require_topic(self.store, self.user, self.vhost, exchange, "write",
                                 routing_key)
        if len(self._topics_allowed) >= TOPIC_CACHE:
            self._topics_allowed.clear()
        self._topics_allowed.add(key)

    def check_topic_read(self, exchange_name: str, binding_key: str) -> None:
        if not self.topic_rules or self.vhost_state is None:
            return
        exchange = self.vhost_state.exchanges.get(exchange_name)
        if exchange is not None:
            publishing.require_topic(self.store, self.user, self.vhost, exchange, "read",
                                     binding_key)

    def check_method(self, method: C.base.Frame, last_queue: str | None) -> None:
        rule = RULES.get(type(method))
        if rule is not None:
            rule(self, method, last_queue or "")


def _exchange_declare(a: Authorizer, m: C.Exchange.Declare, _lq: str) -> None:
    if m.passive or m.exchange == "":
        return
    a.require("configure", "exchange", m.exchange)
    ae = (m.arguments or {}).get("alternate-exchange")
    if isinstance(ae, str):
        a.require("write", "exchange", ae)
        a.require("read", "exchange", m.exchange)


def _exchange_delete(a: Authorizer, m: C.Exchange.Delete, _lq: str) -> None:
    if m.exchange:
        a.require("configure", "exchange", m.exchange)


def _queue_declare(a: Authorizer, m: C.Queue.Declare, _lq: str) -> None:
    if m.passive or not m.queue:
        return  # a server-named queue is checked once it has its name (check_new_queue)
    check_new_queue(a, m.queue, m.arguments)


def check_new_queue(a: Authorizer, name: str, arguments: dict | None) -> None:
    """configure on the queue (by its final name, as RabbitMQ checks a server-named one);
    write on its dead-letter exchange and read on the queue when it has one."""
    a.require("configure", "queue", name)
    dlx = (arguments or {}).get("x-dead-letter-exchange")
    if isinstance(dlx, str):
        a.require("write", "exchange", dlx)
        a.require("read", "queue", name)


def _queue_delete(a: Authorizer, m: C.Queue.Delete, lq: str) -> None:
    a.require("configure", "queue", m.queue or lq)


def _exchange_bind(a: Authorizer, m: C.Exchange.Bind | C.Exchange.Unbind, _lq: str) -> None:
    if m.source == "" or m.destination == "":
        return  # refused by the handler with RabbitMQ's default-exchange text
    a.require("write", "exchange", m.destination)
    a.require("read", "exchange", m.source)
    a.check_topic_read(m.source, m.routing_key)


def _queue_bind(a: Authorizer, m: C.Queue.Bind | C.Queue.Unbind, lq: str) -> None:
    if m.exchange == "":
        return
    a.require("write", "queue", m.queue or lq)
    a.require("read", "exchange", m.exchange)
    # the binding key of ``queue.bind("", ..., "")`` is the last declared queue's name
    a.check_topic_read(m.exchange, m.routing_key or ("" if m.queue else lq))


def _read_queue(a: Authorizer, m: Any, lq: str) -> None:  # Queue.Purge/Delete, Basic.Get/Consume
    a.require("read", "queue", m.queue or lq)


# Each rule takes the method class it is filed under: Any, since a dict cannot pair key and value
# types.
RULES: dict[type, Callable[[Authorizer, Any, str], None]] = {
    C.Exchange.Declare: _exchange_declare,
    C.Exchange.Delete: _exchange_delete,
    C.Exchange.Bind: _exchange_bind,
    C.Exchange.Unbind: _exchange_bind,
    C.Queue.Declare: _queue_declare,
    C.Queue.Delete: _queue_delete,
    C.Queue.Bind: _queue_bind,
    C.Queue.Unbind: _queue_bind,
    C.Queue.Purge: _read_queue,
    C.Basic.Get: _read_queue,
    C.Basic.Consume: _read_queue,
}
