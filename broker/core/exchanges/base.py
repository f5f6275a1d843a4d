"""The exchange contract and the registry that maps type names to exchange classes.

Contract: ``bind`` / ``unbind`` a (destination, routing key, arguments) triple and ``route`` a
routing key plus headers to the set of destinations; destinations are queues or exchanges
(followed by the virtual host). A type is a subclass registered with ``@register``. Optional
hooks a type may override: ``check_arguments`` (declare-time validation, RabbitMQ's texts),
``check_binding``, ``attach`` / ``detach`` / ``close`` (a type that keeps state, like the
delayed exchange's message store, gets its vhost on declare and lets go on delete or shutdown),
and ``route_message`` for types that need more than the routing key and headers
(``needs_properties``).

``publish_in`` / ``publish_out`` are the management API's exchange counters. As in RabbitMQ
they count what a client publishes to this exchange and the queue deliveries that publish
produced; exchanges reached through exchange-to-exchange bindings, alternate exchanges and
dead-lettering count nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from protocol.tables import Table

from ..jsondoc import JSONObject

EXCHANGE_TYPES: dict[str, type[Exchange]] = {}


class Destination(Protocol):
    """Where a binding leads: a Queue or an Exchange (the vhost tells them apart). A protocol,
    so that this module need not import the queue's."""

    @property
    def name(self) -> str: ...
    @property
    def vhost(self) -> str: ...
    @property
    def durable(self) -> bool: ...


def register(name: str) -> Callable[[type[Exchange]], type[Exchange]]:
    def wrap(cls: type[Exchange]) -> type[Exchange]:
        cls.type_name = name
        EXCHANGE_TYPES[name] = cls
        return cls
    return wrap


def args_key(arguments: Table | None) -> str:
    """A canonical, hashable form of binding arguments (bindings differ by their args)."""
    if not arguments:
        return ""
    return repr(sorted((k, repr(v)) for k, v in arguments.items()))


@dataclass(frozen=True, slots=True)
class Binding:
    source: str
    destination: Destination
    routing_key: str
    key: str = ""
    arguments: Table = field(default_factory=dict, compare=False, hash=False)


class Exchange:
    type_name: ClassVar[str] = ""

    def __init__(self, vhost: str, name: str, durable: bool = False, auto_delete: bool = False,
                 internal: bool = False, arguments: Table | None = None) -> None:
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments = dict(arguments or {})
        self.bindings: dict[tuple[int, str, str], Binding] = {}
        self.incoming: set[Binding] = set()  # e2e bindings where this is the destination
        self._cache: dict[str, frozenset[Destination]] = {}
        self.policy: JSONObject = {}
        self.policy_name: str | None = None
        # Management counters, bumped by broker.core.publishing.route (two integer additions
        # per publish, nothing per message): messages published to this exchange, and
        # deliveries it routed to queues (a message routed to three queues counts three).
        self.publish_in = 0
        self.publish_out = 0

    @property
    def alternate_exchange(self) -> str | None:
        ae = self.arguments.get("alternate-exchange") or self.policy.get("alternate-exchange")
        return ae if isinstance(ae, str) else None

    def bind(self, binding: Binding) -> bool:
        k = (id(binding.destination), binding.routing_key, binding.key)
        if k in self.bindings:
            return False
        self.bindings[k] = binding
        self._cache.clear()
        self._on_bind(binding)
        return True

    def unbind(self, binding: Binding) -> bool:
        k = (id(binding.destination), binding.routing_key, binding.key)
        if self.bindings.pop(k, None) is None:
            return False
        self._cache.clear()
        self._on_unbind(binding)
        return True

    def _on_bind(self, binding: Binding) -> None:
        """Index the binding for fast routing."""

    def _on_unbind(self, binding: Binding) -> None:
        """Drop the binding from the index."""

    def route(self, routing_key: str, headers: Table | None) -> frozenset[Destination]:
        raise NotImplementedError

    def needs_headers(self) -> bool:
        return False

    # ---- hooks of the plugin types (no-ops for the standard ones) --------------------
    #: True when routing needs the raw properties: the vhost calls ``route_message``.
    needs_properties = False

    def route_message(self, routing_key: str, headers: Table | None,
                      props: bytes) -> frozenset[Destination]:
        return self.route(routing_key, headers)

    @classmethod
    def check_arguments(cls, arguments: Table) -> None:
        """Refuse a declare whose arguments this type cannot work with (raise an AMQPError)."""

    def check_binding(self, destination: Destination, routing_key: str,
                      arguments: Table) -> None:
        """Refuse a binding this type cannot use (raise an AMQPError)."""

    def attach(self, vhost: Any) -> None:  # Any: a VirtualHost (core imports no vhost here)
        """Declared in ``vhost``: open whatever state the type keeps."""

    def detach(self) -> None:
        """Deleted: drop the type's state for good."""

    def close(self) -> None:
        """Shutdown: flush the type's state (it comes back with the exchange)."""
