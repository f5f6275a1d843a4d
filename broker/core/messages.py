"""What the broker reads from a message's AMQP properties to build and store it.

``storage.message.Message`` knows nothing of AMQP: the properties are walked once per publish
(``protocol.properties.peek_all``: delivery-mode, priority, expiration, user-id) and the result
kept in the message's ``meta``; persistence, the per-message TTL, the priority store's
``priority_of`` and the publish checks all read it from there. Properties are the raw wire
bytes (flags first); ``b"\\x00\\x00"`` means none, the common case, answered without a walk.
"""

from __future__ import annotations

from protocol import properties
from storage.message import Message

NO_PROPERTIES = b"\x00\x00"


def persistent_of(props: bytes) -> bool:
    """delivery-mode 2."""
    return props[:2] != NO_PROPERTIES and properties.peek_delivery_mode(props) == 2


def peeked(message: Message) -> properties.Peeked:
    """The message's properties as the broker reads them, walked at most once."""
    meta = message.meta
    if meta is None:
        meta = message.meta = properties.peek_all(message.properties)
    return meta  # type: ignore[return-value]  # meta is only ever set to a Peeked


def priority_of(message: Message) -> int:
    """The priority property, 0 when absent (the store caps it at the queue's maximum)."""
    return peeked(message).priority


def new_message(exchange: str, routing_key: str, props: bytes, body: bytes,
                exchange_raw: bytes | None = None,
                routing_key_raw: bytes | None = None) -> Message:
    meta = properties.peek_all(props)
    return Message(exchange, routing_key, props, body, meta.delivery_mode == 2, exchange_raw,
                   routing_key_raw, meta)
