"""Exchange types behind one small contract, and the registry that maps type names to them.

Contract: ``bind`` / ``unbind`` a (destination, routing key, arguments) triple and ``route`` a
routing key plus headers to the set of destinations; destinations are queues or exchanges
(followed by the virtual host). A new type is a subclass registered with ``@register``.

The standard types live here; the types RabbitMQ users add as plugins are modules of this
package, imported at the bottom so that they register: ``consistent_hash``
(x-consistent-hash), ``dedup`` (x-message-deduplication), ``delayed`` (x-delayed-message).
Optional hooks a type may override: ``check_arguments`` (declare-time validation, RabbitMQ's
texts), ``check_binding``, ``attach`` / ``detach`` / ``close`` (a type that keeps state, like
the delayed exchange's message store, gets its vhost on declare and lets go on delete or
shutdown), and ``route_message`` for types that need more than the routing key and headers
(``needs_properties``). Only the delayed exchange holds messages (in its own store).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

EXCHANGE_TYPES: dict[str, type[Exchange]] = {}


def register(name: str):  # type: ignore[no-untyped-def]
    def wrap(cls: type[Exchange]) -> type[Exchange]:
        cls.type_name = name
        EXCHANGE_TYPES[name] = cls
        return cls
    return wrap


def args_key(arguments: dict | None) -> str:
    """A canonical, hashable form of binding arguments (bindings differ by their args)."""
    if not arguments:
        return ""
    return repr(sorted((k, repr(v)) for k, v in arguments.items()))


@dataclass(frozen=True, slots=True)
class Binding:
    source: str
    destination: Any  # Queue or Exchange
    routing_key: str
    key: str = ""
    arguments: dict = field(default_factory=dict, compare=False, hash=False)


class Exchange:
    type_name: ClassVar[str] = ""

    def __init__(self, vhost: str, name: str, durable: bool = False, auto_delete: bool = False,
                 internal: bool = False, arguments: dict | None = None) -> None:
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments = dict(arguments or {})
        self.bindings: dict[tuple[int, str, str], Binding] = {}
        self.incoming: set[Binding] = set()  # e2e bindings where this is the destination
        self._cache: dict[str, frozenset] = {}
        self.policy: dict = {}

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

    def route(self, routing_key: str, headers: dict | None) -> frozenset:
        raise NotImplementedError

    def needs_headers(self) -> bool:
        return False

    # ---- hooks of the plugin types (no-ops for the standard ones) --------------------
    #: True when routing needs the raw properties: the vhost calls ``route_message``.
    needs_properties = False

    def route_message(self, routing_key: str, headers: dict | None, props: bytes) -> frozenset:
        return self.route(routing_key, headers)

    @classmethod
    def check_arguments(cls, arguments: dict) -> None:
        """Refuse a declare whose arguments this type cannot work with (raise an AMQPError)."""

    def check_binding(self, destination: Any, routing_key: str, arguments: dict) -> None:
        """Refuse a binding this type cannot use (raise an AMQPError)."""

    def attach(self, vhost: Any) -> None:
        """Declared in ``vhost`` (a ``VirtualHost``): open whatever state the type keeps."""

    def detach(self) -> None:
        """Deleted: drop the type's state for good."""

    def close(self) -> None:
        """Shutdown: flush the type's state (it comes back with the exchange)."""


@register("direct")
class DirectExchange(Exchange):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._by_key: dict[str, set] = {}

    def _on_bind(self, binding: Binding) -> None:
        self._by_key.setdefault(binding.routing_key, set()).add(binding.destination)

    def _on_unbind(self, binding: Binding) -> None:
        remaining = {b.destination for b in self.bindings.values()
                     if b.routing_key == binding.routing_key}
        if remaining:
            self._by_key[binding.routing_key] = remaining
        else:
            self._by_key.pop(binding.routing_key, None)

    def route(self, routing_key: str, headers: dict | None) -> frozenset:
        found = self._cache.get(routing_key)
        if found is None:
            found = frozenset(self._by_key.get(routing_key, ()))
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[routing_key] = found
        return found


@register("fanout")
class FanoutExchange(Exchange):
    def route(self, routing_key: str, headers: dict | None) -> frozenset:
        found = self._cache.get("")
        if found is None:
            found = self._cache[""] = frozenset(b.destination for b in self.bindings.values())
        return found


def _words(key: str) -> tuple[str, ...]:
    """An empty key has no words (RabbitMQ), not one empty word."""
    return tuple(key.split(".")) if key else ()


def topic_match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    """AMQP topic matching: ``*`` is exactly one word, ``#`` zero or more."""
    p_len, w_len = len(pattern), len(words)
    # states: set of pattern positions reachable after consuming words[:i]
    states = {0}
    for word in words:
        nxt: set[int] = set()
        for p in _closure(pattern, states):
            if p < p_len:
                token = pattern[p]
                if token == "#":
                    nxt.add(p)
                elif token == "*" or token == word:
                    nxt.add(p + 1)
        if not nxt:
            return False
        states = nxt
    return p_len in _closure(pattern, states) or (w_len == 0 and p_len == 0)


def _closure(pattern: tuple[str, ...], states: set[int]) -> set[int]:
    """Positions reachable by letting a ``#`` match nothing."""
    out = set(states)
    stack = list(states)
    while stack:
        p = stack.pop()
        if p < len(pattern) and pattern[p] == "#" and p + 1 not in out:
            out.add(p + 1)
            stack.append(p + 1)
    return out


@register("topic")
class TopicExchange(Exchange):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._patterns: dict[str, tuple[str, ...]] = {}

    def _on_bind(self, binding: Binding) -> None:
        if binding.routing_key not in self._patterns:
            self._patterns[binding.routing_key] = _words(binding.routing_key)

    def route(self, routing_key: str, headers: dict | None) -> frozenset:
        found = self._cache.get(routing_key)
        if found is None:
            words = _words(routing_key)
            found = frozenset(
                b.destination for b in self.bindings.values()
                if topic_match(self._patterns[b.routing_key], words))
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[routing_key] = found
        return found


def _headers_match(binding_args: dict, headers: dict) -> bool:
    mode = binding_args.get("x-match", "all")
    with_x = mode in ("all-with-x", "any-with-x")
    wanted = [(k, v) for k, v in binding_args.items()
              if k != "x-match" and (with_x or not k.startswith("x-"))]
    if mode in ("any", "any-with-x"):
        return any(_header_equal(headers, k, v) for k, v in wanted)
    return all(_header_equal(headers, k, v) for k, v in wanted)


def _header_equal(headers: dict, key: str, value: Any) -> bool:
    if key not in headers:
        return False
    if value is None:  # a void binding value matches on presence alone
        return True
    return headers[key] == value


@register("headers")
class HeadersExchange(Exchange):
    def needs_headers(self) -> bool:
        return True

    def route(self, routing_key: str, headers: dict | None) -> frozenset:
        headers = headers or {}
        return frozenset(b.destination for b in self.bindings.values()
                         if _headers_match(b.arguments, headers))


# The plugin types register themselves on import (they need the names above).
from . import consistent_hash, dedup, delayed  # noqa: E402,F401
