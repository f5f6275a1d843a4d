"""Content assembly for the connection machine: a basic.publish, its header and its body
frames become one ``Publish`` event.

Invariants: the content limits are enforced where the bytes arrive, before any body is kept.
- A content header announcing more than ``max_message_size`` closes the channel with RabbitMQ's
  406 ``message size N is larger than configured max size M``; the body frames that follow are
  dropped as they arrive (the channel is closing), never held.
- A body frame running past the size its header announced is a connection error: RabbitMQ's
  501 ``content body frame exceeds remaining content size``.
- The bodies held for unfinished messages of one connection never exceed ``partial_limit``
  bytes (default: ``max_message_size``): a header whose announced size would take the sum of
  the announced sizes of the connection's unfinished messages past it closes its channel with
  406 before a byte of its body is kept. Memory for partial content is therefore bounded by
  ``partial_limit + frame_max`` per connection, whatever the number of channels.
"""

from __future__ import annotations

import struct

from . import codec, errors
from .events import Fault, Publish

_header_fields = struct.Struct(">HHQ")


class Content:
    """A publish waiting for its header and body frames."""

    __slots__ = ("exchange", "routing_key", "mandatory", "immediate", "exchange_raw",
                 "routing_key_raw", "props", "size", "parts", "received", "have_header")

    def __init__(self, exchange: str, routing_key: str, mandatory: bool, immediate: bool,
                 exchange_raw: bytes, routing_key_raw: bytes) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.mandatory = mandatory
        self.immediate = immediate
        self.exchange_raw = exchange_raw
        self.routing_key_raw = routing_key_raw
        self.props = b""
        self.size = 0
        self.parts: list[bytes] = []
        self.received = 0
        self.have_header = False


class ContentAssembly:
    """The content half of ``ConnectionMachine`` (a mixin: the machine owns the attributes
    below and calls these methods only for an open, not closing, channel)."""

    _content: dict[int, Content]
    max_message_size: int
    partial_limit: int
    partial_announced: int

    def _drop_content(self, channel: int) -> None:
        content = self._content.pop(channel, None)
        if content is not None and content.have_header:
            self.partial_announced -= content.size

    def _content_room(self) -> int:
        """The largest body a complete message may announce now without a 406: what the
        compiled fast path (``fast.scan``) accepts; anything larger goes frame by frame
        through ``_on_header``, which answers it."""
        return min(self.max_message_size, self.partial_limit - self.partial_announced)

    @property
    def has_partial_content(self) -> bool:
        """A publish is under way (its header or body not complete yet)."""
        return bool(self._content)

    def _expected_content(self, channel: int) -> errors.AMQPError:
        if self._content[channel].have_header:
            return errors.UnexpectedFrame(
                "expected content body, got non content body frame instead")
        return errors.UnexpectedFrame(
            "expected content header for class 60, got non content header frame instead")

    def _on_header(self, channel: int, payload: bytes) -> object | None:
        """A content header on an open channel (the machine checked state and channel)."""
        content = self._content.get(channel)
        if content is None or content.have_header:
            if content is not None:
                raise errors.UnexpectedFrame(
                    "expected content body, got non content body frame instead", 60, 40)
            raise errors.UnexpectedFrame("expected method frame, got non method frame instead")
        if len(payload) < 14:
            raise errors.FrameError(f"type 2, all octets = {codec.erlang_binary(payload)}: "
                                    "unknown_frame")
        class_id, _weight, size = _header_fields.unpack_from(payload, 0)
        if class_id != 60:
            raise errors.UnexpectedFrame(f"expected content header for class 60, got one for "
                                         f"class {class_id} instead", 60, 40)
        if size > self.max_message_size:
            return Fault(errors.PreconditionFailed(
                f"message size {size} is larger than configured max size "
                f"{self.max_message_size}", 60, 40), channel)
        if size and self.partial_announced + size > self.partial_limit:
            return Fault(errors.PreconditionFailed(
                f"message size {size} would take the unfinished messages of this connection "
                f"to {self.partial_announced + size} bytes, above the limit of "
                f"{self.partial_limit}", 60, 40), channel)
        content.props = payload[12:]
        content.size = size
        content.have_header = True
        if size == 0:
            return self._complete(channel, content, b"")
        self.partial_announced += size
        return None

    def _on_body(self, channel: int, payload: bytes) -> object | None:
        """A content body frame on an open channel."""
        content = self._content.get(channel)
        if content is None or not content.have_header:
            if content is not None:
                raise errors.UnexpectedFrame("expected content header for class 60, got non "
                                             "content header frame instead", 60, 40)
            raise errors.UnexpectedFrame("expected method frame, got non method frame instead")
        received = content.received = content.received + len(payload)
        if received == content.size:
            self.partial_announced -= received
            if not content.parts:
                return self._complete(channel, content, payload)
            content.parts.append(payload)
            return self._complete(channel, content, b"".join(content.parts))
        if received > content.size:
            raise errors.FrameError("content body frame exceeds remaining content size", 60, 40)
        content.parts.append(payload)
        return None

    def _complete(self, channel: int, content: Content, body: bytes) -> Publish:
        del self._content[channel]
        return Publish(channel, content.exchange, content.routing_key, content.mandatory,
                       content.immediate, content.props, body, content.exchange_raw,
                       content.routing_key_raw)
