"""Messages as routed and queued.

``Message`` is the publisher's content, shared by every queue it is routed to; treat it as
immutable. It is a plain slotted class rather than a frozen dataclass because one is built per
publish on the hot path. ``Entry`` is one queue's hold on a message: its sequence number (the
queue position requeues go back to) and whether it has been delivered before.
"""

from __future__ import annotations

from protocol import codec, properties


class Message:
    __slots__ = ("exchange", "routing_key", "properties", "body", "persistent", "_ex_raw",
                 "_rk_raw", "size")

    def __init__(self, exchange: str, routing_key: str, props: bytes, body: bytes,
                 exchange_raw: bytes | None = None, routing_key_raw: bytes | None = None) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = props
        self.body = body
        self.size = len(body)
        self.persistent = properties.peek_delivery_mode(props) == 2 if props[:2] != b"\x00\x00" \
            else False
        self._ex_raw = exchange_raw or None
        self._rk_raw = routing_key_raw or None

    @property
    def exchange_raw(self) -> bytes:
        raw = self._ex_raw
        if raw is None:
            raw = self._ex_raw = codec.shortstr(self.exchange)
        return raw

    @property
    def routing_key_raw(self) -> bytes:
        raw = self._rk_raw
        if raw is None:
            raw = self._rk_raw = codec.shortstr(self.routing_key)
        return raw

    def headers(self) -> dict:
        return properties.headers(self.properties)

    def with_properties(self, props: bytes, exchange: str | None = None,
                        routing_key: str | None = None) -> Message:
        return Message(self.exchange if exchange is None else exchange,
                       self.routing_key if routing_key is None else routing_key, props, self.body)


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
