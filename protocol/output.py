"""What a connection machine sends: methods, raw frames, and the hot frames (basic.deliver,
get-ok, return, publisher confirms), in ``out`` until ``data_to_send`` takes them, once per read.

The hot frames are built by the hand-written encoders (``codec``, ``fast``: tested byte for
byte against pamqp) and checked here as every inbound frame is checked on its way in: they go
only to a channel that is open and not closing, on an open connection. Names are pre-encoded
shortstrs, properties the publisher's raw bytes; content is split at the negotiated
``frame_max``.
"""

from __future__ import annotations

from pamqp import commands

from . import codec, errors, fast


class Output:
    """Mixed into ``ConnectionMachine``, which owns the channel table and the state."""

    out: list[bytes]
    open_channels: set[int]
    closing_channels: set[int]
    frame_max: int

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    def send_method(self, channel: int, method: commands.base.Frame) -> None:
        self.out.append(codec.method_frame(channel, method))

    def send_raw(self, data: bytes) -> None:
        self.out.append(data)

    def _check_channel(self, channel: int) -> None:
        if channel not in self.open_channels or channel in self.closing_channels \
                or not self.is_open:
            raise errors.InternalError(f"frame for channel {channel}, which is not open")

    def send_deliver(self, channel: int, consumer_tag: bytes, delivery_tag: int,
                     redelivered: bool, exchange: bytes, routing_key: bytes, props: bytes,
                     body: bytes) -> None:
        """basic.deliver with its content (the hot path: the check inlined)."""
        if channel in self.closing_channels or channel not in self.open_channels:
            self._check_channel(channel)  # raises
        self.out.append(fast.deliver_message(channel, consumer_tag, delivery_tag, redelivered,
                                             exchange, routing_key, props, body,
                                             self.frame_max))

    def send_get_ok(self, channel: int, delivery_tag: int, redelivered: bool, exchange: bytes,
                    routing_key: bytes, message_count: int, props: bytes, body: bytes) -> None:
        self._check_channel(channel)
        self.out.append(codec.get_ok_frame(channel, delivery_tag, redelivered, exchange,
                                           routing_key, message_count))
        self.out.append(codec.content_frames(channel, props, body, self.frame_max))

    def send_return(self, channel: int, reply_code: int, reply_text: str, exchange: bytes,
                    routing_key: bytes, props: bytes, body: bytes) -> None:
        self._check_channel(channel)
        self.out.append(codec.return_frame(channel, reply_code, reply_text, exchange,
                                           routing_key))
        self.out.append(codec.content_frames(channel, props, body, self.frame_max))

    def send_confirm(self, channel: int, delivery_tag: int, multiple: bool,
                     ack: bool = True) -> None:
        """basic.ack (or basic.nack; requeue set, as RabbitMQ's record default) to a publisher."""
        self._check_channel(channel)
        self.out.append(codec.ack_frame(channel, delivery_tag, multiple) if ack
                        else codec.nack_frame(channel, delivery_tag, multiple))

    def data_to_send(self) -> bytes:
        if not self.out:
            return b""
        data = b"".join(self.out)
        self.out.clear()
        return data
