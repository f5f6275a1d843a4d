"""``x-consistent-hash``: RabbitMQ's bundled consistent-hash exchange.

Each binding's key is its weight (a positive integer, as text): the binding owns that many
consecutive buckets of the exchange's ring, in binding order. A message goes to the one
destination owning ``jump_hash(hash(value), number of buckets)``, where the value is the
routing key, or the ``hash-header`` header, or the ``hash-property`` property (message_id,
correlation_id or timestamp). Jump consistent hashing (Lamping & Veach) gives each bucket the
same share of keys, so a binding's share is its weight over the total (the spread RabbitMQ
shows), and adding a binding only moves keys to the new buckets.

Invariants:
- ``_ring`` lists one destination per bucket, bindings in the order they were made; removing a
  binding drops its buckets and the later ones move down (as RabbitMQ renumbers them). The
  durable topology saves bindings in that order, so the ring is the same after a restart.
- The hash is stable across processes (BLAKE2b of the value's bytes, not Python's salted
  ``hash``): a key keeps its queue over restarts. A message without the header or property
  hashes as one fixed value, so all of them go to the same destination (as in RabbitMQ).
"""

from __future__ import annotations

import hashlib
import re
import struct
from typing import Any

from protocol import properties
from protocol.errors import PreconditionFailed
from protocol.tables import Table

from .base import Binding, Destination, Exchange, register

HASH_PROPERTIES = {"message_id": 0x0080, "correlation_id": 0x0400, "timestamp": 0x0040}
_MISSING = b"\x00undefined"
_U64 = struct.Struct(">Q")
_MASK = (1 << 64) - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")  # what Erlang's list_to_integer accepts


def stable_hash(data: bytes) -> int:
    """A 64-bit hash that is the same in every process."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash: a bucket in ``[0, buckets)``; growing ``buckets`` by one moves
    only the keys that now land in the new bucket."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & _MASK
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def value_bytes(value: Any) -> bytes:
    """A header or property value as the bytes that are hashed."""
    if value is None:
        return _MISSING
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, str):
        return value.encode()
    return str(value).encode()


@register("x-consistent-hash")
class ConsistentHashExchange(Exchange):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ring: list[Any] = []
        self._weights: dict[tuple[int, str, str], int] = {}
        header = self.arguments.get("hash-header")
        prop = self.arguments.get("hash-property")
        self._header = header if isinstance(header, str) else None
        self._property = HASH_PROPERTIES.get(prop) if isinstance(prop, str) else None
        self.needs_properties = self._property is not None

    def needs_headers(self) -> bool:
        return self._header is not None

    @classmethod
    def check_arguments(cls, arguments: Table) -> None:
        header, prop = arguments.get("hash-header"), arguments.get("hash-property")
        if header is not None and prop is not None:
            raise PreconditionFailed("hash-header and hash-property are mutually exclusive")
        if header is not None and not isinstance(header, str):
            raise PreconditionFailed("Invalid argument, 'hash-header' must be a string")
        if prop is not None and (not isinstance(prop, str) or prop not in HASH_PROPERTIES):
            raise PreconditionFailed(f"Unsupported property: {prop}")

    def check_binding(self, destination: Any, routing_key: str, arguments: Table) -> None:
        if not _INTEGER.fullmatch(routing_key):
            raw = routing_key.replace("\\", "\\\\").replace('"', '\\"')
            term = f'<<"{raw}">>' if raw else "<<>>"  # Erlang's ~p of the binary
            raise PreconditionFailed(f"The binding key must be an integer: {term}")
        if int(routing_key) < 1:
            raise PreconditionFailed("The binding key must be greater than 0")

    # ---- the ring ------------------------------------------------------------------------
    def _on_bind(self, binding: Binding) -> None:
        weight = int(binding.routing_key)
        self._weights[(id(binding.destination), binding.routing_key, binding.key)] = weight
        self._ring.extend([binding.destination] * weight)

    def _on_unbind(self, binding: Binding) -> None:
        # Rebuild from the remaining bindings, in their original order.
        self._weights.pop((id(binding.destination), binding.routing_key, binding.key), None)
        ring: list[Any] = []
        for k, b in self.bindings.items():
            ring.extend([b.destination] * self._weights.get(k, 0))
        self._ring = ring

    @property
    def bucket_count(self) -> int:
        return len(self._ring)

    # ---- routing -------------------------------------------------------------------------
    def _pick(self, data: bytes) -> frozenset[Destination]:
        ring = self._ring
        if not ring:
            return frozenset()
        if len(ring) == 1:
            return frozenset(ring)
        return frozenset((ring[jump_hash(stable_hash(data), len(ring))],))

    def route(self, routing_key: str, headers: Table | None) -> frozenset[Destination]:
        if self._header is not None:
            return self._pick(value_bytes((headers or {}).get(self._header)))
        return self._pick(routing_key.encode())

    def route_message(self, routing_key: str, headers: Table | None,
                      props: bytes) -> frozenset[Destination]:
        flag = self._property
        if flag is None:
            return self.route(routing_key, headers)
        if flag == HASH_PROPERTIES["timestamp"]:
            raw = properties.split(props).get(flag) if props[:2] != b"\x00\x00" else None
            value: Any = _U64.unpack(raw)[0] if raw is not None and len(raw) == 8 else None
        else:
            value = properties.peek_shortstr(props, flag) if props[:2] != b"\x00\x00" else None
        return self._pick(value_bytes(value))
