"""Direct reply-to (``amq.rabbitmq.reply-to``): RPC replies delivered straight to a channel.

A channel that consumes the pseudo-queue (no-ack only) gets a private address; a request it
publishes with ``reply_to: amq.rabbitmq.reply-to`` carries that address instead, and a reply
published through the default exchange to the address goes to the consumer with no queue in
between. Addresses die with their channel.
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Protocol

from protocol import properties, tables

if TYPE_CHECKING:
    from storage.message import Message

REPLY_QUEUE = "amq.rabbitmq.reply-to"
PREFIX = REPLY_QUEUE + "."


class ReplyTarget(Protocol):
    """A channel consuming ``amq.rabbitmq.reply-to``."""

    def deliver_reply(self, message: Message) -> None: ...


class ReplyRegistry:
    def __init__(self) -> None:
        self._channels: dict[str, ReplyTarget] = {}

    def register(self, channel: ReplyTarget) -> str:
        address = PREFIX + base64.b64encode(os.urandom(48)).decode()
        self._channels[address] = channel
        return address

    def unregister(self, address: str) -> None:
        self._channels.pop(address, None)

    def lookup(self, address: str) -> ReplyTarget | None:
        return self._channels.get(address)


def asks_direct_reply(props: bytes) -> bool:
    """Cheap test on the raw flags before decoding anything."""
    return len(props) >= 2 and bool(props[0] & 0x02) and \
        properties.peek_reply_to(props) == REPLY_QUEUE


def with_reply_to(props: bytes, address: str) -> bytes:
    fields = properties.split(props)
    fields[properties.REPLY_TO] = properties.shortstr_field(address)
    return properties.join(fields)


def with_delivery_count(props: bytes, count: int) -> bytes:
    """Quorum queues tell consumers how often a message was returned (x-delivery-count)."""
    fields = properties.split(props)
    items = [(k, v) for k, v in tables.split_table(properties.headers_body(fields))
             if k != "x-delivery-count"]
    items.append(("x-delivery-count", tables.long_value(count)))
    properties.set_headers_body(fields, tables.join_table(items))
    return properties.join(fields)
