"""Message deduplication (rabbitmq-message-deduplication, built in): the key of a message and
the queue-level filter.

A message's key is its ``x-deduplication-header`` header value, typed (the string ``"1"`` and
the integer ``1`` differ, as Erlang terms do); a message without it is never a duplicate.

Queue level (``x-message-deduplication: true``): a message whose key is already in the queue
(ready or delivered, not yet acked) is not enqueued; the key leaves the set when its message
leaves the queue for good (ack, reject, drop, expiry, purge: every path ends in the store's
``ack`` or ``purge``, which ``DedupStore`` watches). The publisher still gets a confirm (an
ack), as with the plugin.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterator
from typing import Any

from protocol import properties
from storage.message import Entry, Message
from storage.store import QueueStore

HEADER = "x-deduplication-header"
TTL_HEADER = "x-cache-ttl"


def key_of(value: Any) -> bytes | None:
    """A header value as a cache key (type-tagged bytes); None for no value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return b"o" + (b"1" if value else b"0")
    if isinstance(value, int):
        return b"i" + str(value).encode()
    if isinstance(value, float | decimal.Decimal):
        return b"f" + repr(value).encode()
    if isinstance(value, str):
        return b"s" + value.encode()
    if isinstance(value, bytes | bytearray):
        return b"b" + bytes(value)
    if isinstance(value, datetime.datetime):
        return b"t" + value.isoformat().encode()
    return b"r" + repr(value).encode()


def message_key(message: Message) -> bytes | None:
    props = message.properties
    if not properties.has_headers(props):
        return None
    return key_of(properties.headers(props).get(HEADER))


class QueueDedup:
    """The keys of the messages a deduplicating queue holds (multiset: a key may have been
    published again after its message was consumed, while another copy is still unacked)."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[bytes, int] = {}

    def duplicate(self, message: Message) -> bool:
        """True: drop it. False: it goes in (its key, if any, is now held)."""
        key = message_key(message)
        if key is None:
            return False
        if key in self._counts:
            return True
        self._counts[key] = 1
        return False

    def hold(self, message: Message) -> None:
        key = message_key(message)
        if key is not None:
            self._counts[key] = self._counts.get(key, 0) + 1

    def release(self, message: Message) -> None:
        key = message_key(message)
        if key is None:
            return
        left = self._counts.get(key, 0) - 1
        if left > 0:
            self._counts[key] = left
        else:
            self._counts.pop(key, None)

    def clear(self) -> None:
        self._counts.clear()

    def __len__(self) -> int:
        return len(self._counts)


class DedupStore:
    """A queue store wrapped so that messages leaving it for good release their key."""

    def __init__(self, inner: QueueStore, dedup: QueueDedup) -> None:
        self.inner = inner
        self.dedup = dedup
        self.last_seq = inner.last_seq
        for entry in inner:  # a recovered queue: its messages hold their keys again
            dedup.hold(entry.message)

    def push(self, entry: Entry) -> None:
        self.inner.push(entry)

    def shift(self) -> Entry | None:
        return self.inner.shift()

    def peek(self) -> Entry | None:
        return self.inner.peek()

    def requeue(self, entry: Entry) -> None:
        self.inner.requeue(entry)

    def ack(self, entry: Entry) -> None:
        self.dedup.release(entry.message)
        self.inner.ack(entry)

    def purge(self) -> int:
        self.dedup.clear()  # as the plugin flushes the queue's cache
        return self.inner.purge()

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.inner)

    @property
    def bytes(self) -> int:
        return self.inner.bytes

    def set_mode(self, mode: str) -> None:
        self.inner.set_mode(mode)

    def close(self) -> None:
        self.inner.close()

    def delete(self) -> None:
        self.inner.delete()
