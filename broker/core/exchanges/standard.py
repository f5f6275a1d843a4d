"""The AMQP exchange types: direct, fanout, topic, headers."""

from __future__ import annotations

from typing import Any

from protocol.tables import Table

from .base import Binding, Destination, Exchange, register


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
