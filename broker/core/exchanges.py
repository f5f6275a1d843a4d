"""Exchange types behind one small contract, and the registry that maps type names to them.

Contract: ``bind`` / ``unbind`` a (destination, routing key, arguments) triple and ``route`` a
routing key plus headers to the set of destinations; destinations are queues or exchanges
(followed by the virtual host). A new type is a subclass registered with ``@register``.
Exchanges hold no messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from protocol.tables import Table

from .jsondoc import JSONObject

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


@register("direct")
class DirectExchange(Exchange):
    def __init__(self, *args: Any, **kwargs: Any) -> None:  # Exchange's, passed through
        super().__init__(*args, **kwargs)
        self._by_key: dict[str, set[Destination]] = {}

    def _on_bind(self, binding: Binding) -> None:
        self._by_key.setdefault(binding.routing_key, set()).add(binding.destination)

    def _on_unbind(self, binding: Binding) -> None:
        remaining = {b.destination for b in self.bindings.values()
                     if b.routing_key == binding.routing_key}
        if remaining:
            self._by_key[binding.routing_key] = remaining
        else:
            self._by_key.pop(binding.routing_key, None)

    def route(self, routing_key: str, headers: Table | None) -> frozenset[Destination]:
        found = self._cache.get(routing_key)
        if found is None:
            found = frozenset(self._by_key.get(routing_key, ()))
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[routing_key] = found
        return found


@register("fanout")
class FanoutExchange(Exchange):
    def route(self, routing_key: str, headers: Table | None) -> frozenset[Destination]:
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
    def __init__(self, *args: Any, **kwargs: Any) -> None:  # Exchange's, passed through
        super().__init__(*args, **kwargs)
        self._patterns: dict[str, tuple[str, ...]] = {}

    def _on_bind(self, binding: Binding) -> None:
        if binding.routing_key not in self._patterns:
            self._patterns[binding.routing_key] = _words(binding.routing_key)

    def route(self, routing_key: str, headers: Table | None) -> frozenset[Destination]:
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


def _headers_match(binding_args: Table, headers: Table) -> bool:
    mode = binding_args.get("x-match", "all")
    with_x = mode in ("all-with-x", "any-with-x")
    wanted = [(k, v) for k, v in binding_args.items()
              if k != "x-match" and (with_x or not k.startswith("x-"))]
    if mode in ("any", "any-with-x"):
        return any(_header_equal(headers, k, v) for k, v in wanted)
    return all(_header_equal(headers, k, v) for k, v in wanted)


def _header_equal(headers: Table, key: str, value: object) -> bool:
    if key not in headers:
        return False
    if value is None:  # a void binding value matches on presence alone
        return True
    return bool(headers[key] == value)


@register("headers")
class HeadersExchange(Exchange):
    def needs_headers(self) -> bool:
        return True

    def route(self, routing_key: str, headers: Table | None) -> frozenset[Destination]:
        headers = headers or {}
        return frozenset(b.destination for b in self.bindings.values()
                         if _headers_match(b.arguments, headers))
