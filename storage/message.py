"""Messages as routed and queued: the value types every layer above storage shares.

``Message`` is the publisher's content, shared by every queue it is routed to; treat it as
immutable. It is a plain slotted class rather than a frozen dataclass because one is built per
publish on the hot path. ``Entry`` is one queue's hold on a message: its sequence number (the
queue position requeues go back to) and whether it has been delivered before.

Storage knows nothing of AMQP: the caller says whether the message is ``persistent`` (the
broker reads delivery-mode once per publish) and, when it already has them, passes the
exchange and routing key in their wire form (shortstr: length byte + UTF-8) so that a delivery
or a disk record does not encode them again. ``meta`` is the broker's, opaque here: what it read
from the properties (once per publish), None until it first looks.
"""

from __future__ import annotations


def _shortstr(value: str) -> bytes:
    raw = value.encode()
    return bytes((len(raw),)) + raw


class Message:
    __slots__ = ("exchange", "routing_key", "properties", "body", "persistent", "_ex_raw",
                 "_rk_raw", "size", "meta")

    def __init__(self, exchange: str, routing_key: str, props: bytes, body: bytes,
                 persistent: bool, exchange_raw: bytes | None = None,
                 routing_key_raw: bytes | None = None, meta: object = None) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = props
        self.body = body
        self.size = len(body)
        self.persistent = persistent
        self._ex_raw = exchange_raw or None
        self._rk_raw = routing_key_raw or None
        self.meta = meta

    @property
    def exchange_raw(self) -> bytes:
        raw = self._ex_raw
        if raw is None:
            raw = self._ex_raw = _shortstr(self.exchange)
        return raw

    @property
    def routing_key_raw(self) -> bytes:
        raw = self._rk_raw
        if raw is None:
            raw = self._rk_raw = _shortstr(self.routing_key)
        return raw


class Entry:
    """A message's place in one queue."""

    __slots__ = ("seq", "message", "redelivered", "expires", "delivery_count")

    def __init__(self, seq: int, message: Message, redelivered: bool = False) -> None:
        self.seq = seq
        self.message = message
        self.redelivered = redelivered
        self.expires: float | None = None
        self.delivery_count = 0

    def __lt__(self, other: Entry) -> bool:
        return self.seq < other.seq
