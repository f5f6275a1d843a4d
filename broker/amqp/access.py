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

Publish answers are cached per connection (the auth store invalidates the cache on every
change), so the publish path costs one set lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pamqp import commands as C

from protocol.errors import AccessRefused

if TYPE_CHECKING:
    from broker.core.users import AuthStore



class Authorizer:
    def __init__(self, store: AuthStore, user: str, vhost: str) -> None:
        self.store = store
        self.user = user
        self.vhost = vhost
        self.writable_exchanges: set[str] = set()
        store.watch(self)

    def invalidate(self) -> None:
        self.writable_exchanges.clear()

    def require(self, what: str, kind: str, name: str) -> None:
        if not self.store.allows(self.user, self.vhost, what, kind, name):
            shown = "amq.default" if kind == "exchange" and name == "" else name
            raise AccessRefused(f"{what} access to {kind} '{shown}' in vhost '{self.vhost}' "
                                f"refused for user '{self.user}'")

    def check_publish(self, exchange: str) -> None:
        """The hot path: called for every publish whose exchange is not cached yet."""
        if exchange in self.writable_exchanges:
            return
        self.require("write", "exchange", exchange)
        self.writable_exchanges.add(exchange)

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


def _queue_bind(a: Authorizer, m: C.Queue.Bind | C.Queue.Unbind, lq: str) -> None:
    if m.exchange == "":
        return
    a.require("write", "queue", m.queue or lq)
    a.require("read", "exchange", m.exchange)


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
