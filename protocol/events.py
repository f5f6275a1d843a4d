"""Events the connection machine hands to the broker session."""

from __future__ import annotations

from dataclasses import dataclass, field

from pamqp import base

from .tables import Table


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    mechanism: str
    username: str
    password: str
    client_properties: Table = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OpenVhost:
    vhost: str


@dataclass(frozen=True, slots=True)
class Method:
    channel: int
    method: base.Frame


@dataclass(slots=True)
class Publish:
    """A complete basic.publish with its content.

    Not frozen: this is built once per message on the hot path, and frozen dataclasses pay for
    object.__setattr__ on every field.
    """

    channel: int
    exchange: str
    routing_key: str
    mandatory: bool
    immediate: bool
    properties: bytes
    body: bytes
    # The same two names as the shortstrs they arrived as (empty when not known): derived
    # data, so not part of equality.
    exchange_raw: bytes = field(default=b"", compare=False)
    routing_key_raw: bytes = field(default=b"", compare=False)


class Ack:
    """basic.ack from a consumer (hot path: parsed by hand, no pamqp object)."""

    __slots__ = ("channel", "delivery_tag", "multiple")

    def __init__(self, channel: int, delivery_tag: int, multiple: bool) -> None:
        self.channel = channel
        self.delivery_tag = delivery_tag
        self.multiple = multiple

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ack) and (self.channel, self.delivery_tag, self.multiple) == \
            (other.channel, other.delivery_tag, other.multiple)

    def __repr__(self) -> str:
        return f"Ack({self.channel}, {self.delivery_tag}, {self.multiple})"


@dataclass(frozen=True, slots=True)
class PeerClosed:
    """The client sent connection.close; close-ok is already queued."""

    reply_code: int | None  # pamqp's type; always set once the method decoded
    reply_text: str


@dataclass(frozen=True, slots=True)
class CloseTransport:
    """Drop the socket after ``delay`` seconds (after flushing what is queued)."""

    reason: str
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Fault:
    """The frame layer found an error; the session turns it into connection.close (or, for a
    channel-scope error, into channel.close on ``channel``)."""

    error: Exception
    channel: int = 0
