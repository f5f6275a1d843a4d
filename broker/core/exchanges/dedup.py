"""``x-message-deduplication``: the exchange of rabbitmq-message-deduplication, built in.

Routes like fanout, except that a message whose ``x-deduplication-header`` value was seen
within ``x-cache-ttl`` ms (exchange argument, or the message's own ``x-cache-ttl`` header) is
routed nowhere. The cache holds at most ``x-cache-size`` values (required): when it is full
the oldest goes. ``x-cache-persistence: disk`` keeps it in the exchange's directory so that it
survives a restart (``memory``, the default, does not). A dropped duplicate is unroutable, so
the publisher still gets its confirm (an ack) and, with mandatory, a basic.return, as with the
plugin.
"""

from __future__ import annotations

from typing import Any

from protocol.errors import PreconditionFailed
from protocol.tables import Table
from storage.keycache import KeyCache

from ..dedup import HEADER, TTL_HEADER, key_of
from .base import Destination, Exchange, register


def _positive(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, bytes | str):
        try:
            number = int(value)
        except ValueError:
            return None
        return number if number > 0 else None
    return None


@register("x-message-deduplication")
class DedupExchange(Exchange):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cache = KeyCache()
        self._configure(self.cache)
        # The vhost may route one message through an exchange twice (its fast path, then the
        # walk that follows alternate and e2e exchanges) with the same decoded headers: the
        # second look must not see the first one's key as a duplicate.
        self._last_headers: Table | None = None
        self._last_dropped = False

    def _configure(self, cache: KeyCache) -> None:
        cache.limit = _positive(self.arguments.get("x-cache-size")) or 0
        ttl = _positive(self.arguments.get("x-cache-ttl"))
        cache.default_ttl = ttl / 1000.0 if ttl else None

    @property
    def persistent_cache(self) -> bool:
        return self.arguments.get("x-cache-persistence") in ("disk", b"disk")

    @classmethod
    def check_arguments(cls, arguments: Table) -> None:
        if _positive(arguments.get("x-cache-size")) is None:
            raise PreconditionFailed("Missing or invalid argument, 'x-cache-size' must be an "
                                     "integer greater than 0")
        if "x-cache-ttl" in arguments and _positive(arguments["x-cache-ttl"]) is None:
            raise PreconditionFailed("Invalid argument, 'x-cache-ttl' must be an integer "
                                     "greater than 0")
        persistence = arguments.get("x-cache-persistence")
        if persistence is not None and persistence not in ("disk", "memory"):
            raise PreconditionFailed("Invalid argument, 'x-cache-persistence' must be either "
                                     "'disk' or 'memory'")

    # ---- state ---------------------------------------------------------------------------
    def attach(self, vhost: Any) -> None:
        if not (self.durable and self.persistent_cache):
            return
        factory = getattr(vhost.ctx, "exchange_store", None)
        cache = factory(vhost.name, self.name, self.type_name, True) \
            if factory is not None else None
        if isinstance(cache, KeyCache):
            self._configure(cache)
            self.cache = cache

    def detach(self) -> None:
        self.cache.delete()

    def close(self) -> None:
        self.cache.close()

    # ---- routing -------------------------------------------------------------------------
    def needs_headers(self) -> bool:
        return True

    def route(self, routing_key: str, headers: Table | None) -> frozenset[Destination]:
        if headers:
            if headers is self._last_headers:
                dropped = self._last_dropped
            else:
                key = key_of(headers.get(HEADER))
                ttl = _positive(headers.get(TTL_HEADER))
                dropped = key is not None and \
                    not self.cache.add_if_new(key, ttl / 1000.0 if ttl else None)
                self._last_headers, self._last_dropped = headers, dropped
            if dropped:
                return frozenset()
        found = self._cache.get("")
        if found is None:
            found = self._cache[""] = frozenset(b.destination for b in self.bindings.values())
        return found
