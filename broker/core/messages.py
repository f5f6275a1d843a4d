"""What the broker reads from a message's AMQP properties to build and store it.

``storage.message.Message`` knows nothing of AMQP: ``new_message`` reads delivery-mode once per
publish and hands the answer over, and the priority store is given ``priority_of`` instead of
parsing properties itself. Properties are the raw wire bytes (flags first); ``b"\\x00\\x00"``
means none, the common case, answered without a walk.
"""

from __future__ import annotations

from protocol import properties
from storage.message import Message

NO_PROPERTIES = b"\x00\x00"


def persistent_of(props: bytes) -> bool:
    """delivery-mode 2."""
    return props[:2] != NO_PROPERTIES and properties.peek_delivery_mode(props) == 2


def priority_of(message: Message) -> int:
    """The priority property, 0 when absent (the store caps it at the queue's maximum)."""
    props = message.properties
    if props[:2] == NO_PROPERTIES:
        return 0
    return properties.peek_priority(props)


def new_message(exchange: str, routing_key: str, props: bytes, body: bytes,
                exchange_raw: bytes | None = None,
                routing_key_raw: bytes | None = None) -> Message:
    return Message(exchange, routing_key, props, body, persistent_of(props), exchange_raw,
                   routing_key_raw)
