"""ConnectionMachine: one AMQP 0-9-1 connection as a sans-IO state machine.

Bytes go in with ``receive_data``; ``events()`` yields what the peer asked for, parsing lazily so
that whatever the session does with one event (closing a channel, closing the connection) is
seen before the next frame is parsed. The caller may stop early (close the generator): what was
not parsed stays buffered for the next ``events()``, which is how the broker bounds the work one
connection gets per loop turn and applies flow control. Frames to send accumulate in ``out``
(``output.Output``: methods, and deliver / get-ok / return / confirms checked against the
channel table) and are taken with ``data_to_send()``, once per read.

Invariants:
- The machine owns the handshake, frame bounds, channel numbers and content assembly; it never
  decides broker semantics (users, vhosts, queues). Logins and vhost opens are events answered
  by ``accept_login`` / ``open_ok``.
- After a server channel.close, frames on that channel are dropped until channel.close-ok.
- After a server connection.close, everything but connection.close(-ok) is dropped.
- Time is an argument (``now``); the machine keeps no clock.
- Content assembly and its limits are ``content.ContentAssembly``'s.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Generator, Iterator

from pamqp import commands

from . import codec, errors, fast
from .content import Content, ContentAssembly
from .errors import reply_text
from .events import (
    Ack,
    CloseTransport,
    Fault,
    LoginAttempt,
    Method,
    OpenVhost,
    PeerClosed,
)
from .methods import (
    AccessRequest,
    UnknownFieldType,
    args_length,
    decode_credentials,
    ids,
    parse_publish,
)
from .output import Output
from .tables import Table, tag_numbers

C = commands
_head = struct.Struct(">BHI")
_u16 = struct.Struct(">H")
_u32 = struct.Struct(">I")
_ack_args = struct.Struct(">QB")
PUBLISH_INDEX = 0x003C0028
PUBLISH_BYTES = b"\x00\x3c\x00\x28"
ACK_INDEX = 0x003C0050
SCAN_BATCH = 64  # events parsed ahead in one call on the hot path
MIN_FRAME_MAX = 4096
MAX_CHANNELS = 65535  # what "no limit" (channel_max 0) amounts to: a short
HANDSHAKE_SLOW_CLOSE = 3.0


def _cannot_decode(index: int, payload: bytes) -> errors.AMQPError:
    return errors.FrameError(f"cannot decode {codec.erlang_binary(payload[4:])}",
                             index >> 16, index & 0xFFFF)


class State(enum.Enum):
    AWAIT_HEADER = "await_header"
    AWAIT_START_OK = "await_start_ok"
    AWAIT_TUNE_OK = "await_tune_ok"
    AWAIT_OPEN = "await_open"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


_TRANSITIONS: dict[State, frozenset[State]] = {
    State.AWAIT_HEADER: frozenset({State.AWAIT_START_OK, State.CLOSED}),
    State.AWAIT_START_OK: frozenset({State.AWAIT_TUNE_OK, State.CLOSING, State.CLOSED}),
    State.AWAIT_TUNE_OK: frozenset({State.AWAIT_OPEN, State.CLOSING, State.CLOSED}),
    State.AWAIT_OPEN: frozenset({State.OPEN, State.CLOSING, State.CLOSED}),
    State.OPEN: frozenset({State.CLOSING, State.CLOSED}),
    State.CLOSING: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}

_HEADERS = {
    b"AMQP\x00\x00\x09\x01": (0, 9, True),
    b"AMQP\x01\x01\x00\x09": (0, 9, True),
    b"AMQP\x01\x01\x08\x00": (8, 0, False),
}


class ConnectionMachine(ContentAssembly, Output):
    def __init__(self, server_properties: Table, *, frame_max: int = 131072,
                 channel_max: int = 2047, heartbeat: int = 60,
                 max_message_size: int = 134217728, partial_limit: int | None = None) -> None:
        self.server_properties = server_properties
        self.frame_max = frame_max
        self.channel_max = channel_max
        self.heartbeat = heartbeat
        self.max_message_size = max_message_size
        self.partial_limit = max_message_size if partial_limit is None else partial_limit
        # Sum of the sizes announced by the content headers of unfinished messages.
        self.partial_announced = 0
        self.state = State.AWAIT_HEADER
        self.out: list[bytes] = []
        self.client_properties: Table = {}
        self.mechanism = ""
        self.open_channels: set[int] = set()
        self.closing_channels: set[int] = set()
        # After an UnreadableFrame (frame too large, bad frame end) the stream cannot be
        # followed: nothing more is read, close-ok included (RabbitMQ closes after 3 s).
        self.deaf = False
        self._content: dict[int, Content] = {}
        # Unparsed input: chunks as received, joined only once they hold the next whole frame
        # (``_need`` bytes), so a large message arriving over many reads is copied once.
        self._chunks: list[bytes] = []
        self._have = 0
        self._need = 0
        self.last_received = 0.0
        self.version = (0, 9)
        # Set by the session while a resource alarm is on: parsing stops before the first
        # frame of a publish (method, header or body), which waits here (``content_held``).
        self.hold_content = False
        self.content_held = False

    # ---- state -------------------------------------------------------------------------
    def _to(self, state: State) -> None:
        if state is not self.state and state not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"illegal transition {self.state} -> {state}")
        self.state = state

    @property
    def is_open(self) -> bool:
        return self.state is State.OPEN

    def channel_usable(self, channel: int) -> bool:
        return (self.state is State.OPEN and channel in self.open_channels
                and channel not in self.closing_channels)

    # ---- answers to events ---------------------------------------------------------------
    def accept_login(self) -> None:
        self._to(State.AWAIT_TUNE_OK)
        self.send_method(0, C.Connection.Tune(self.channel_max, self.frame_max, self.heartbeat))

    def open_ok(self) -> None:
        self._to(State.OPEN)
        self.send_method(0, C.Connection.OpenOk())

    def close_channel(self, channel: int, error: errors.AMQPError) -> None:
        """Server-initiated channel.close; the channel stays reserved until close-ok."""
        self._drop_content(channel)
        self.closing_channels.add(channel)
        self.send_method(channel, C.Channel.Close(error.code, reply_text(error),
                                                  error.class_id, error.method_id))

    def close_connection(self, error: errors.AMQPError) -> None:
        if self.state in (State.CLOSING, State.CLOSED):
            return
        self._to(State.CLOSING)
        self.send_method(0, C.Connection.Close(error.code, reply_text(error),
                                               error.class_id, error.method_id))

    def channel_close_ok(self, channel: int) -> None:
        """Answer a client channel.close once the session has torn the channel down."""
        self._forget_channel(channel)
        self.send_method(channel, C.Channel.CloseOk())

    def _forget_channel(self, channel: int) -> None:
        self.open_channels.discard(channel)
        self.closing_channels.discard(channel)
        self._drop_content(channel)

    # ---- input -------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> None:
        self.last_received = now
        if self.deaf:  # after an UnreadableFrame: nothing more is read, close-ok included
            return
        self._chunks.append(data)
        self._have += len(data)

    def peer_timed_out(self, now: float) -> bool:
        return bool(self.heartbeat) and now - self.last_received > self.heartbeat * 3

    def events(self) -> Generator[object, None, None]:
        """Parse what was received, one event at a time. The caller may stop early (close
        the generator): what was not parsed yet is kept for the next call."""
        if not self._chunks or self._have < self._need:
            return
        chunks = self._chunks
        buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._have = self._need = 0
        pos, end = 0, len(buf)
        need = 0
        hold = self.hold_content
        try:
            if self.state is State.AWAIT_HEADER:
                if end < 8:
                    need = 8
                    return
                pos = 8
                yield from self._on_protocol_header(buf[:8])
            while self.state is not State.CLOSED:
                if end - pos < 7:
                    need = 7
                    break
                if self.state is State.OPEN and not hold:
                    # The hot path: runs of publishes (with their content) and acks, parsed
                    # in one call. Each event is checked again before it goes out, since
                    # handling the previous one may have closed its channel. The content
                    # limits hold here as in ``content``: ``scan`` stops before a header
                    # announcing more than the size still allowed (max_message_size, and
                    # what the unfinished messages leave of partial_limit) or a body frame
                    # that is not exactly the announced size, and the frame-by-frame path
                    # below answers it. A held connection (alarm) never takes this path: it
                    # must stop before a publish's first frame.
                    found, ends = fast.scan(buf, pos, SCAN_BATCH, self.frame_max,
                                            self._content_room(), self.open_channels,
                                            self.closing_channels, self._content)
                    if found:
                        for event, stop in zip(found, ends, strict=True):
                            if self.state is not State.OPEN or \
                                    event.channel in self.closing_channels or \
                                    event.channel not in self.open_channels:
                                break
                            pos = stop
                            yield event
                        continue
                ftype, channel, size = _head.unpack_from(buf, pos)
                if size > self.frame_max and self.state is not State.AWAIT_HEADER:
                    raise errors.UnreadableFrame(
                        f"type {ftype}, all octets = <<>>: "
                        f"{{frame_too_large,{size},{self.frame_max - 8}}}")
                stop = pos + 7 + size
                if stop >= end:
                    need = size + 8
                    break
                if hold and channel and (ftype == 2 or ftype == 3 or (
                        ftype == 1 and buf[pos + 7:pos + 11] == PUBLISH_BYTES)):
                    self.content_held = True
                    break
                payload = buf[pos + 7:stop]
                if buf[stop] != 0xCE:
                    raise errors.UnreadableFrame(codec.erlang_tuple(
                        f"type {ftype}, all octets = {codec.erlang_binary(payload)}: ",
                        "invalid_frame_end_marker", str(buf[stop])))
                pos = stop + 1
                try:
                    event = self._on_frame(ftype, channel, payload)
                except errors.AMQPError as exc:
                    if exc.connection_scope:
                        raise
                    event = Fault(exc, channel)  # that channel only: the next frames count
                if event is not None:
                    yield event
        except errors.AMQPError as exc:
            pos = end
            if isinstance(exc, errors.UnreadableFrame):
                self.deaf = True
            yield Fault(exc)
        except errors.SilentClose as exc:
            pos = end
            self._to(State.CLOSED)
            yield CloseTransport(exc.reason, exc.delay)
        finally:
            # Also reached when the caller stops early (GeneratorExit at a yield).
            if pos < end and self.state is not State.CLOSED:
                self._keep(buf, pos, need)

    def _keep(self, buf: bytes, pos: int, need: int) -> None:
        """Keep the unparsed tail ahead of anything fed while events were being handled."""
        rest = buf[pos:] if pos else buf
        self._chunks.insert(0, rest)
        self._have += len(rest)
        self._need = need

    def _on_protocol_header(self, header: bytes) -> Iterator[object]:
        known = _HEADERS.get(header)
        if known is None:
            self.send_raw(codec.PROTOCOL_HEADER)
            self._to(State.CLOSED)
            yield CloseTransport("bad protocol header")
            return
        major, minor, with_caps = known
        self.version = (major, minor)
        props = dict(self.server_properties)
        if not with_caps:
            props["capabilities"] = {}
        self._to(State.AWAIT_START_OK)
        self.send_method(0, C.Connection.Start(major, minor, props, "AMQPLAIN PLAIN", "en_US"))

    # ---- frames ------------------------------------------------------------------------
    def _on_frame(self, ftype: int, channel: int, payload: bytes) -> object | None:
        if ftype == 1:
            return self._on_method_frame(channel, payload)
        if ftype == 3 or ftype == 2:
            if self.state is State.CLOSING:
                return None
            if channel == 0 or self.state is not State.OPEN:
                raise errors.UnexpectedFrame(
                    f"type {ftype}, all octets = {codec.erlang_binary(payload)}")
            if channel in self.closing_channels:
                return None
            return self._on_body(channel, payload) if ftype == 3 \
                else self._on_header(channel, payload)
        if ftype == 8:
            if payload:
                raise errors.FrameError(
                    f"type 8, all octets = {codec.erlang_binary(payload)}: unknown_frame")
            if channel:
                raise errors.UnexpectedFrame("type 8, all octets = <<>>")
            return None
        raise errors.FrameError(
            f"type {ftype}, all octets = {codec.erlang_binary(payload)}: unknown_frame")

    def _on_method_frame(self, channel: int, payload: bytes) -> object | None:
        if len(payload) < 4:
            raise errors.FrameError(
                f"type 1, all octets = {codec.erlang_binary(payload)}: unknown_frame")
        index = _u32.unpack_from(payload, 0)[0]
        if self.state is not State.OPEN:
            return self._on_handshake_method(channel, index, payload)
        if channel:
            if channel in self.closing_channels:
                return self._while_channel_closing(channel, index, payload)
            if channel in self._content:
                raise self._expected_content(channel).at(60, 40)
            if index == PUBLISH_INDEX:
                if channel not in self.open_channels:
                    raise errors.ChannelErrorConn("expected 'channel.open'", 60, 40)
                args = parse_publish(payload)
                if args is None:
                    raise errors.FrameError(
                        f"cannot decode {codec.erlang_binary(payload[4:])}", 60, 40)
                self._content[channel] = Content(*args)
                return None
            if index == ACK_INDEX and len(payload) == 13 and channel in self.open_channels:
                tag, bits = _ack_args.unpack_from(payload, 4)
                return Ack(channel, tag, bool(bits & 1))
        method = self._decode(index, payload)
        if channel == 0:
            return self._on_connection_method(method)
        if method.frame_id and method.index >> 16 == 10:
            raise errors.CommandInvalid("unimplemented method").at(*ids(method))
        if isinstance(method, C.Channel.Open):
            if channel in self.open_channels:
                raise errors.ChannelErrorConn("second 'channel.open' seen", 20, 10)
            if len(self.open_channels) >= self.channel_max:
                n = len(self.open_channels)
                raise errors.NotAllowed(f"number of channels opened ({n}) has reached the "
                                        f"negotiated channel_max ({self.channel_max})")
            self.open_channels.add(channel)
            return Method(channel, method)
        if channel not in self.open_channels:
            if isinstance(method, C.Basic.Get) and not method.queue:
                # RabbitMQ expands basic.get's "" (the channel's last declared queue) before it
                # checks the channel's state: a channel error, closed as any other.
                raise errors.NotFound("no previously declared queue").at(60, 70)
            raise errors.ChannelErrorConn("expected 'channel.open'").at(*ids(method))
        return Method(channel, method)

    def _while_channel_closing(self, channel: int, index: int, payload: bytes) -> object | None:
        if index == 0x00140029:  # channel.close-ok
            self._forget_channel(channel)
        elif index == 0x00140028:  # channel.close crossing ours
            self.send_method(channel, C.Channel.CloseOk())
        return None

    def _decode(self, index: int, payload: bytes) -> commands.base.Frame:
        if index == AccessRequest.index:
            return AccessRequest()
        cls = C.INDEX_MAPPING.get(index)
        if cls is None:
            raise errors.SilentClose(f"unknown method {index >> 16}/{index & 0xFFFF}")
        method: commands.base.Frame = cls()
        tables: list[int] = []
        try:
            end = args_length(method, payload, 4, tables)
        except UnknownFieldType:
            raise errors.SilentClose("unknown field type in a table") from None
        except (ValueError, IndexError, struct.error):
            raise _cannot_decode(index, payload) from None
        if end != len(payload):
            raise _cannot_decode(index, payload)
        try:
            method.unmarshal(payload[4:])
        except Exception:
            raise _cannot_decode(index, payload) from None
        arguments = getattr(method, "arguments", None)
        if arguments and tables:  # x-arguments keep their wire types (see tables.TypedInt)
            start = tables[-1] + 4
            tag_numbers(arguments, payload[start:start + _u32.unpack_from(payload, tables[-1])[0]])
        return method

    def _on_connection_method(self, method: commands.base.Frame) -> object | None:
        if self.state is State.CLOSING:
            if isinstance(method, C.Connection.CloseOk):
                self._to(State.CLOSED)
                return CloseTransport("close-ok received")
            if isinstance(method, C.Connection.Close):
                self.send_method(0, C.Connection.CloseOk())
                self._to(State.CLOSED)
                return CloseTransport("close crossed")
            return None
        if isinstance(method, C.Connection.Close):
            self.send_method(0, C.Connection.CloseOk())
            self._to(State.CLOSED)
            return PeerClosed(method.reply_code, method.reply_text)
        if isinstance(method, C.Connection.UpdateSecret):
            return Method(0, method)
        raise errors.ChannelErrorConn(
            "unexpected method in connection state running").at(*ids(method))

    def _on_handshake_method(self, channel: int, index: int, payload: bytes) -> object | None:
        if self.state is State.CLOSING:
            if channel == 0 and index in (0x000A0033, 0x000A0032):
                return self._on_connection_method(self._decode(index, payload))
            return None
        if channel:
            if self.state is State.AWAIT_OPEN:
                raise errors.UnexpectedFrame(
                    f"type 1, all octets = {codec.erlang_binary(payload)}")
            raise errors.SilentClose("frame on a channel during the handshake",
                                     HANDSHAKE_SLOW_CLOSE)
        method = self._decode(index, payload)
        if self.state is State.AWAIT_START_OK and isinstance(method, C.Connection.StartOk):
            return self._on_start_ok(method)
        if self.state is State.AWAIT_TUNE_OK and isinstance(method, C.Connection.TuneOk):
            return self._on_tune_ok(method)
        if self.state is State.AWAIT_OPEN and isinstance(method, C.Connection.Open):
            return OpenVhost(method.virtual_host)
        if isinstance(method, C.Connection.Close):
            self.send_method(0, C.Connection.CloseOk())
            self._to(State.CLOSED)
            return CloseTransport("client closed during handshake")
        raise errors.SilentClose(f"unexpected {method.name} in {self.state.value}",
                                 HANDSHAKE_SLOW_CLOSE)

    def _on_start_ok(self, method: commands.Connection.StartOk) -> object:
        self.client_properties = method.client_properties or {}
        self.mechanism = method.mechanism
        response = method.response
        raw = response.encode("utf-8", "surrogateescape") if isinstance(response, str) \
            else bytes(response)
        creds = decode_credentials(method.mechanism, raw)
        if creds is None:
            raise errors.SilentClose(f"bad {method.mechanism} response", HANDSHAKE_SLOW_CLOSE)
        return LoginAttempt(method.mechanism, creds[0], creds[1], self.client_properties)

    def _on_tune_ok(self, method: commands.Connection.TuneOk) -> object | None:
        if not MIN_FRAME_MAX <= method.frame_max <= self.frame_max:
            raise errors.SilentClose(f"negotiated frame_max = {method.frame_max} is out of "
                                     "range", HANDSHAKE_SLOW_CLOSE)
        # a server channel_max of 0 is "no limit" (RabbitMQ's setting): any answer, 0 too
        if self.channel_max and not 0 < method.channel_max <= self.channel_max:
            raise errors.SilentClose(f"negotiated channel_max = {method.channel_max} is out "
                                     "of range", HANDSHAKE_SLOW_CLOSE)
        self.frame_max = method.frame_max
        self.channel_max = method.channel_max or MAX_CHANNELS
        self.heartbeat = method.heartbeat
        self._to(State.AWAIT_OPEN)
        return None

    def client_capability(self, name: str) -> bool:
        caps = self.client_properties.get("capabilities") or {}
        return bool(isinstance(caps, dict) and caps.get(name))
