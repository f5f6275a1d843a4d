"""VirtualHost: exchanges, queues and bindings of one vhost, and routing across them.

All topology rules live here (reserved names, equivalence, if-unused / if-empty, auto-delete of
exchanges and queues) and raise AMQP errors worded as RabbitMQ words them; the channel only
translates methods into calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from protocol.errors import AccessRefused, CommandInvalid, NotFound, PreconditionFailed
from protocol.tables import Table

from . import arguments as qargs
from . import policies
from .exchanges import EXCHANGE_TYPES, Binding, Exchange, args_key
from .jsondoc import JSONObject
from .queue import Queue, QueueContext
from .stats import Counters
from .stream_queue import StreamQueue
from .stream_queue import check_declare as check_stream_declare

if TYPE_CHECKING:
    from storage.store import QueueStore

    from .exchanges import Destination

SYSTEM_EXCHANGES = (
    ("amq.direct", "direct"), ("amq.fanout", "fanout"), ("amq.topic", "topic"),
    ("amq.headers", "headers"), ("amq.match", "headers"), ("amq.rabbitmq.trace", "topic"),
)
# Predeclared but not publishable by clients (RabbitMQ's firehose tracer publishes to it).
INTERNAL_SYSTEM_EXCHANGES = frozenset({"amq.rabbitmq.trace"})
DEFAULT_EXCHANGE_DENIED = "operation not permitted on the default exchange"


class DefaultExchange(Exchange):
    type_name = "direct"

    def __init__(self, vhost: VirtualHost) -> None:
        super().__init__(vhost.name, "", durable=True)
        self._queues = vhost.queues

    def route(self, routing_key: str, headers: Table | None) -> frozenset[Destination]:
        queue = self._queues.get(routing_key)
        return frozenset((queue,)) if queue is not None else frozenset()


class VirtualHost:
    def __init__(self, name: str, store_factory: Callable[[str, str, Table, bool], QueueStore],
                 ctx: QueueContext | None = None) -> None:
        self.name = name
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, Queue] = {}
        self._store_factory = store_factory
        self.ctx = ctx
        self.policies: dict[str, JSONObject] = {}
        self.operator_policies: dict[str, JSONObject] = {}
        self.limits: dict[str, int] = {}  # max-connections, max-queues (negative: no limit)
        self.on_durable_change: Callable[[], None] | None = None
        self.retired = Counters()  # closed sessions' counters (broker.stats)
        self.default_exchange = DefaultExchange(self)
        self.exchanges[""] = self.default_exchange
        for ex_name, ex_type in SYSTEM_EXCHANGES:
            self.exchanges[ex_name] = EXCHANGE_TYPES[ex_type](
                name, ex_name, durable=True, internal=ex_name in INTERNAL_SYSTEM_EXCHANGES)

    # ---- lookups -----------------------------------------------------------------------
    def exchange(self, name: str) -> Exchange:
        ex = self.exchanges.get(name)
        if ex is None:
            raise NotFound(f"no exchange '{name}' in vhost '{self.name}'")
        return ex

    def queue(self, name: str) -> Queue:
        q = self.queues.get(name)
        if q is None:
            raise NotFound(f"no queue '{name}' in vhost '{self.name}'")
        return q

    # ---- exchanges ---------------------------------------------------------------------
    def declare_exchange(self, name: str, type_name: str, *, passive: bool = False,
                         durable: bool = False, auto_delete: bool = False,
                         internal: bool = False, arguments: Table | None = None) -> Exchange:
        if name == "":
            raise AccessRefused(DEFAULT_EXCHANGE_DENIED)
        if passive:
            return self.exchange(name)
        if type_name not in EXCHANGE_TYPES:
            word = "unknown" if type_name.startswith("x-") else "invalid"
            raise CommandInvalid(f"{word} exchange type '{type_name}'")
        existing = self.exchanges.get(name)
        if existing is None and name.startswith("amq."):
            raise AccessRefused(f"exchange name '{name}' contains reserved prefix 'amq.*'")
        arguments = dict(arguments or {})
        if existing is not None:
            self._check_exchange_equivalent(existing, type_name, durable, auto_delete,
                                            internal, arguments)
            return existing
        cls = EXCHANGE_TYPES[type_name]
        cls.check_arguments(arguments)
        ex = cls(self.name, name, durable=durable, auto_delete=auto_delete, internal=internal,
                 arguments=arguments)
        ex.attach(self)
        self.exchanges[name] = ex
        if self.policies:
            ex.policy_name, ex.policy = policies.choose(self.policies, name, "exchange")
        if durable:
            self._changed()
        return ex

    def _check_exchange_equivalent(self, ex: Exchange, type_name: str, durable: bool,
                                   auto_delete: bool, internal: bool, arguments: Table) -> None:
        if ex.type_name != type_name:
            raise PreconditionFailed(
                f"inequivalent arg 'type' for exchange '{ex.name}' in vhost '{self.name}': "
                f"received '{type_name}' but current is '{ex.type_name}'")
        for flag, old, new in (("durable", ex.durable, durable),
                               ("auto_delete", ex.auto_delete, auto_delete),
                               ("internal", ex.internal, internal)):
            qargs.check_flag("exchange", ex.name, self.name, flag, old, new)
        qargs.check_equivalent("exchange", ex.name, self.name, ex.arguments, arguments,
                               qargs.EXCHANGE_EQUIVALENCE_KEYS)

    def delete_exchange(self, name: str, if_unused: bool = False) -> None:
        if name == "":
            raise AccessRefused(DEFAULT_EXCHANGE_DENIED)
        ex = self.exchanges.get(name)
        if ex is None:
            return
        if name.startswith("amq."):
            raise AccessRefused(f"deletion of system exchange '{name}' in vhost '{self.name}' "
                                "not allowed")
        if if_unused and ex.bindings:
            raise PreconditionFailed(f"exchange '{name}' in vhost '{self.name}' in use")
        self._remove_exchange(ex)

    def _remove_exchange(self, ex: Exchange) -> None:
        self.exchanges.pop(ex.name, None)
        ex.detach()
        if ex.durable:
            self._changed()
        for binding in list(ex.bindings.values()):
            self._drop_binding(binding, auto_delete=False)
        for binding in list(ex.incoming):
            source = self.exchanges.get(binding.source)
            if source is not None:
                self._drop_binding(binding)

    # ---- queues ------------------------------------------------------------------------
    def declare_queue(self, name: str, *, durable: bool = False, exclusive_owner: object = None,
                      auto_delete: bool = False, arguments: Table | None = None,
                      server_named: bool = False) -> Queue:
        arguments = dict(arguments or {})
        existing = self.queues.get(name)
        if existing is not None:
            self.check_queue_equivalent(existing, durable, auto_delete, arguments)
            return existing
        if name.startswith("amq.") and not server_named:
            raise AccessRefused(f"queue name '{name}' contains reserved prefix 'amq.*'")
        qargs.validate_queue_args(name, self.name, arguments)
        self._validate_queue_type(name, durable, exclusive_owner, auto_delete, arguments)
        limit = self.limits.get("max-queues", -1)
        if 0 <= limit <= len(self.queues):
            raise PreconditionFailed(f"cannot declare queue '{name}': queue limit in vhost "
                                     f"'{self.name}' ({limit}) is reached")
        persists = durable and exclusive_owner is None
        store = self._store_factory(self.name, name, arguments, persists)
        cls = StreamQueue if arguments.get("x-queue-type") == "stream" else Queue
        queue = cls(self.name, name, store, self.ctx,
                    durable=durable, exclusive_owner=exclusive_owner,
                    auto_delete=auto_delete, arguments=arguments)
        queue.on_empty_consumers = self._auto_delete_queue
        self.queues[name] = queue
        if self.policies or self.operator_policies:
            self._apply_policy(queue)
        if durable and exclusive_owner is None:
            self._changed()
        return queue

    def _validate_queue_type(self, name: str, durable: bool, owner: object, auto_delete: bool,
                             arguments: Table) -> None:
        kind = arguments.get("x-queue-type", "classic")
        if kind not in ("quorum", "stream"):
            return
        where = f"for queue '{name}' in vhost '{self.name}'"
        for bad, prop in ((auto_delete, "auto-delete"), (owner is not None, "exclusive-owner"),
                          (not durable, "non-durable")):
            if bad:
                raise PreconditionFailed(f"invalid property '{prop}' {where}")
        if kind == "stream":
            check_stream_declare(name, self.name, arguments)
        if "x-max-priority" in arguments:
            raise PreconditionFailed(f"invalid arg 'x-max-priority' {where} of queue type "
                                     "rabbit_quorum_queue")

    def check_queue_equivalent(self, queue: Queue, durable: bool, auto_delete: bool,
                               arguments: Table) -> None:
        qargs.check_flag("queue", queue.name, self.name, "durable", queue.durable, durable)
        qargs.check_flag("queue", queue.name, self.name, "auto_delete", queue.auto_delete,
                         auto_delete)
        qargs.check_equivalent("queue", queue.name, self.name, queue.arguments, arguments,
                               qargs.QUEUE_EQUIVALENCE_KEYS)

    def check_delete(self, queue: Queue, if_unused: bool = False,
                     if_empty: bool = False) -> int:
        """Raise if the delete is refused; else the ready count delete-ok reports."""
        if isinstance(queue, StreamQueue):
            return 0  # RabbitMQ ignores if-unused / if-empty for a stream and reports 0
        if if_unused and queue.consumers:
            raise PreconditionFailed(f"queue '{queue.name}' in vhost '{self.name}' in use")
        if if_empty and queue.message_count:
            raise PreconditionFailed(f"queue '{queue.name}' in vhost '{self.name}' not empty")
        return queue.message_count

    def remove_queue(self, queue: Queue) -> None:
        if self.queues.get(queue.name) is not queue:
            return
        del self.queues[queue.name]
        queue.deleted = True
        if queue.durable and queue.exclusive_owner is None:
            self._changed()
        queue.cancel_timers()
        for binding in list(queue.bindings):
            self._drop_binding(binding)
        for consumer in list(queue.consumers):
            consumer.channel.consumer_cancelled_by_server(consumer)
        queue.consumers.clear()
        queue.store.delete()

    def _auto_delete_queue(self, queue: Queue) -> None:
        self.remove_queue(queue)

    # ---- bindings ----------------------------------------------------------------------
    def bind(self, source: Exchange, destination: Queue | Exchange, routing_key: str,
             arguments: Table | None) -> None:
        source.check_binding(destination, routing_key, arguments or {})
        binding = Binding(source.name, destination, routing_key, args_key(arguments),
                          dict(arguments or {}))
        if source.bind(binding):
            destination.bindings.add(binding) if isinstance(destination, Queue) \
                else destination.incoming.add(binding)
            if source.durable and destination.durable:
                self._changed()

    def unbind(self, source: Exchange, destination: Queue | Exchange, routing_key: str,
               arguments: Table | None) -> None:
        binding = Binding(source.name, destination, routing_key, args_key(arguments))
        self._drop_binding(binding)

    def _drop_binding(self, binding: Binding, auto_delete: bool = True) -> None:
        source = self.exchanges.get(binding.source)
        if source is not None and source.unbind(binding) and source.durable \
                and binding.destination.durable:
            self._changed()
        dest = binding.destination
        if isinstance(dest, Queue):
            dest.bindings.discard(binding)
        elif isinstance(dest, Exchange):
            dest.incoming.discard(binding)
        if auto_delete and source is not None and source.auto_delete and not source.bindings \
                and source.name in self.exchanges:
            self._remove_exchange(source)

    def bindings_of(self) -> list[Binding]:
        out: list[Binding] = []
        for ex in self.exchanges.values():
            out.extend(ex.bindings.values())
        return out

    # ---- policies ----------------------------------------------------------------------
    def set_policy(self, name: str, pattern: str, definition: JSONObject, priority: int = 0,
                   apply_to: str = "all") -> None:
        self.policies[name] = {"pattern": pattern, "definition": dict(definition),
                               "priority": priority, "apply-to": apply_to}
        policies.warn_ignored(name, definition)
        self.on_policies_changed()

    def clear_policy(self, name: str) -> None:
        if self.policies.pop(name, None) is not None:
            self.on_policies_changed()

    def set_operator_policy(self, name: str, pattern: str, definition: JSONObject,
                            priority: int = 0, apply_to: str = "queues") -> None:
        self.operator_policies[name] = {"pattern": pattern, "definition": dict(definition),
                                        "priority": priority, "apply-to": apply_to}
        self.on_policies_changed()

    def clear_operator_policy(self, name: str) -> None:
        if self.operator_policies.pop(name, None) is not None:
            self.on_policies_changed()

    def _changed(self) -> None:
        if self.on_durable_change is not None:
            self.on_durable_change()

    def on_policies_changed(self) -> None:
        self._changed()
        for queue in self.queues.values():
            self._apply_policy(queue)
        for ex in self.exchanges.values():
            if ex.name:
                ex.policy_name, ex.policy = policies.choose(self.policies, ex.name, "exchange")

    def _apply_policy(self, queue: Queue) -> None:
        kind = queue.queue_type
        queue.policy_name, definition = policies.choose(self.policies, queue.name, "queue",
                                                        kind)
        queue.operator_policy_name, operator = policies.choose(self.operator_policies,
                                                               queue.name, "queue", kind)
        queue.policy = policies.merge_operator(definition, operator) if operator \
            else definition
        queue.refresh_settings()

    # ---- routing -----------------------------------------------------------------------
    def route(self, exchange: Exchange, routing_key: str, props: bytes,
              headers: Table | None = None) -> set[Queue] | frozenset[Queue]:
        if exchange is self.default_exchange:
            queue = self.queues.get(routing_key)
            return frozenset((queue,)) if queue is not None else frozenset()
        if headers is None and exchange.needs_headers():
            from protocol.properties import headers as decode_headers
            headers = decode_headers(props)
        if exchange.needs_properties:
            found = exchange.route_message(routing_key, headers, props)
        else:
            found = exchange.route(routing_key, headers)
        if found and not exchange.alternate_exchange and all(
                type(d) is Queue for d in found):
            # all() checked every member is a Queue; a cast() would cost a call per publish
            return found  # type: ignore[return-value]
        return self._route_walk(exchange, routing_key, props, headers)

    def _route_walk(self, exchange: Exchange, routing_key: str, props: bytes,
                    headers: Table | None) -> set[Queue]:
        from protocol.properties import headers as decode_headers
        result: set[Queue] = set()
        visited = {id(exchange)}
        stack = [exchange]
        while stack:
            ex = stack.pop()
            if headers is None and ex.needs_headers():
                headers = decode_headers(props)
            dests = ex.route_message(routing_key, headers, props) if ex.needs_properties \
                else ex.route(routing_key, headers)
            if not dests:
                ae = self.exchanges.get(ex.alternate_exchange or "\x00")
                if ae is not None and id(ae) not in visited:
                    visited.add(id(ae))
                    stack.append(ae)
                continue
            for dest in dests:
                if isinstance(dest, Queue):
                    result.add(dest)
                elif isinstance(dest, Exchange) and id(dest) not in visited:
                    visited.add(id(dest))
                    stack.append(dest)
        return result
