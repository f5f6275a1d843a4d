"""Shared pieces for the fuzz tests: client frame builders, a session stand-in that drives the
sans-IO ConnectionMachine and checks its contract, and a parser for what the server sends.

The machine's contract, as the session relies on it (protocol/connection.py, broker/session.py):
- ``events()`` raises nothing; a protocol violation is a ``Fault`` (an AMQP connection error with
  a 5xx/530/540 code, turned into connection.close by the session) or a ``CloseTransport``
  (RabbitMQ's silent close), and a Fault is the last event of its ``events()`` run;
- ``Method`` events on a channel other than 0 only come for channels that are open (or for the
  channel.open that opens one), never for a channel the server is closing;
- after CloseTransport the machine is CLOSED and takes nothing more; after connection.close from
  the server only close / close-ok from the client are answered;
- everything the machine queues is a well-formed stream of frames (after the protocol header
  answer for a bad header).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

from pamqp import commands as C
from pamqp import encode
from pamqp import frame as pframe
from pamqp import header as pheader

from protocol import codec, errors
from protocol.connection import ConnectionMachine, State
from protocol.events import (
    Ack,
    CloseTransport,
    Fault,
    LoginAttempt,
    Method,
    OpenVhost,
    PeerClosed,
    Publish,
)

# Connection-scope codes a malformed peer may get (rabbitmq-behaviour.md, sections 7 and 8);
# everything else is RabbitMQ's silent TCP close.
ALLOWED_CLOSE_CODES = frozenset({501, 502, 503, 504, 505, 530, 540})

HEADER = b"AMQP\x00\x00\x09\x01"
GOOD_HEADERS = (HEADER, b"AMQP\x01\x01\x00\x09", b"AMQP\x01\x01\x08\x00")
HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"

SERVER_PROPERTIES = {
    "capabilities": {"publisher_confirms": True, "basic.nack": True,
                     "authentication_failure_close": True},
    "product": "RabbitMQ",
    "version": "3.10.8",
}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


# ---- client frames -----------------------------------------------------------------------

def raw_frame(ftype: int, channel: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + end


def method_payload(method: Any) -> bytes:
    """Method arguments as the wire has them, without pamqp's client-side name checks."""
    return codec.marshal_method(method)


def method_frame(channel: int, method: Any) -> bytes:
    return raw_frame(1, channel, method_payload(method))


def sstr(value: bytes) -> bytes:
    return bytes((len(value),)) + value


def lstr(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def start_ok(mechanism: str = "PLAIN", user: str = "guest", password: str = "guest",
             client_properties: dict | None = None) -> bytes:
    if mechanism == "AMQPLAIN":
        response = (sstr(b"LOGIN") + b"S" + lstr(user.encode())
                    + sstr(b"PASSWORD") + b"S" + lstr(password.encode()))
    else:
        response = b"\x00" + user.encode() + b"\x00" + password.encode()
    payload = (b"\x00\x0a\x00\x0b" + encode.field_table(client_properties or {})
               + sstr(mechanism.encode()) + lstr(response) + sstr(b"en_US"))
    return raw_frame(1, 0, payload)


def tune_ok(channel_max: int = 2047, frame_max: int = 131072, heartbeat: int = 0) -> bytes:
    return method_frame(0, C.Connection.TuneOk(channel_max, frame_max, heartbeat))


def connection_open(vhost: str = "/") -> bytes:
    return method_frame(0, C.Connection.Open(vhost))


def handshake_bytes(frame_max: int = 131072, channel_max: int = 2047,
                    heartbeat: int = 0) -> bytes:
    return (HEADER + start_ok() + tune_ok(channel_max, frame_max, heartbeat)
            + connection_open("/"))


def content_header(channel: int, size: int, properties: C.Basic.Properties | None = None,
                   class_id: int = 60) -> bytes:
    props = pheader.ContentHeader(0, size, properties or C.Basic.Properties()).marshal()
    payload = struct.pack(">HHQ", class_id, 0, size) + props[12:]
    return raw_frame(2, channel, payload)


def publish_frames(channel: int, body: bytes, frame_max: int, exchange: str = "",
                   routing_key: str = "q", properties: C.Basic.Properties | None = None,
                   ) -> list[bytes]:
    publish = C.Basic.Publish()
    publish.exchange, publish.routing_key = exchange, routing_key  # no pamqp name checks
    frames = [method_frame(channel, publish),
              content_header(channel, len(body), properties)]
    limit = frame_max - 8
    for start in range(0, len(body), limit):
        frames.append(raw_frame(3, channel, body[start:start + limit]))
    return frames


def props_bytes(properties: C.Basic.Properties | None) -> bytes:
    """The raw property bytes (flags + values) a Publish event carries."""
    return pheader.ContentHeader(0, 0, properties or C.Basic.Properties()).marshal()[12:]


# ---- parsing what the server sends -------------------------------------------------------

def parse_server_output(data: bytes) -> list[tuple[int, Any]]:
    """Split the server's bytes into (channel, frame); fail on anything malformed.

    A bad protocol header is answered with the 0-9-1 header, returned as (-1, bytes).
    """
    frames: list[tuple[int, Any]] = []
    pos = 0
    if data[:4] == b"AMQP":
        assert data == HEADER, f"header answer followed by junk: {data!r}"
        return [(-1, data)]
    while pos < len(data):
        assert len(data) - pos >= 8, f"truncated frame in server output at {pos}: {data!r}"
        ftype, channel, size = struct.unpack_from(">BHI", data, pos)
        end = pos + 7 + size
        assert end < len(data), f"truncated frame in server output at {pos}"
        assert data[end] == 0xCE, f"bad frame end in server output at {pos}"
        assert ftype in (1, 2, 3, 8), f"server sent frame type {ftype}"
        consumed, ch, value = pframe.unmarshal(bytes(data[pos:end + 1]))
        assert consumed == end + 1 - pos
        frames.append((ch, value))
        pos = end + 1
    return frames


def as_method(event: object) -> object:
    """The machine parses basic.ack by hand into an ``Ack``; the model sees the method."""
    if isinstance(event, Ack):
        return Method(event.channel, C.Basic.Ack(event.delivery_tag, event.multiple))
    return event


def canonical(event: object) -> object:
    """An event in a form that compares by value (pamqp frames and exceptions do not)."""
    event = as_method(event)
    if isinstance(event, Method):
        m = event.method
        return ("Method", event.channel, m.name,
                tuple((name, getattr(m, name, None)) for name in m.__slots__))
    if isinstance(event, Fault):
        err = event.error
        return ("Fault", type(err).__name__, getattr(err, "code", None),
                getattr(err, "reply_text", str(err)), getattr(err, "class_id", None),
                getattr(err, "method_id", None))
    return event


class EscapedException(AssertionError):
    """An exception other than the designed events came out of the machine."""


# ---- the session stand-in ----------------------------------------------------------------

@dataclass
class Driver:
    """Feeds a ConnectionMachine and answers its events as broker/session.py does, checking
    the contract above at every step. Broker semantics are reduced to a few fixed rules:
    vhost "/" exists; a passive queue.declare is a 404 channel close; channel.flow
    active=false is a 540 connection close."""

    machine: ConnectionMachine = field(
        default_factory=lambda: ConnectionMachine(dict(SERVER_PROPERTIES)))
    events: list = field(default_factory=list)
    out: bytearray = field(default_factory=bytearray)
    faults: list = field(default_factory=list)
    close_codes: list = field(default_factory=list)
    open_channels: set = field(default_factory=set)
    server_closing: set = field(default_factory=set)
    transport_closed: bool = False
    last_feed_events: list = field(default_factory=list)

    @property
    def state(self) -> State:
        return self.machine.state

    def feed(self, data: bytes, now: float = 0.0) -> list:
        m = self.machine
        before_closed = self.transport_closed
        m.receive_data(data, now)
        got: list = []
        try:
            for event in m.events():
                # nothing follows a connection error; a channel error closes only its channel
                assert not (got and isinstance(got[-1], Fault) and (
                    got[-1].channel == 0 or got[-1].error.connection_scope)), \
                    f"event {event!r} after a Fault in the same events() run"
                got.append(event)
                self.events.append(canonical(event))
                self._react(event)
        except (AssertionError, EscapedException):
            raise
        except Exception as exc:
            raise EscapedException(
                f"{type(exc).__name__} escaped events(): {exc!r} (state {m.state})") from exc
        sent = m.data_to_send()
        if before_closed:
            assert got == [], f"events after the transport was closed: {got}"
            assert sent == b"", f"output after the transport was closed: {sent!r}"
        self.out += sent
        self.last_feed_events = got
        return got

    def feed_whole_then_check(self, data: bytes) -> list:
        got = self.feed(data)
        self.check_output()
        return got

    # ---- reactions, as the session's ----------------------------------------------------
    def _react(self, event: object) -> None:
        event = as_method(event)
        m = self.machine
        assert not self.transport_closed, f"{event!r} after CloseTransport"
        # a client close-ok ends a server channel.close without an event
        self.server_closing &= m.closing_channels
        if isinstance(event, Fault):
            err = event.error
            assert isinstance(err, errors.AMQPError), f"Fault carries {err!r}"
            self.faults.append(err)
            if err.connection_scope or event.channel == 0:
                assert err.code in ALLOWED_CLOSE_CODES, f"Fault code {err.code}: {err.reply_text}"
                self._close_connection(err)
            elif m.state not in (State.CLOSING, State.CLOSED):
                # a channel error found by the machine (a content header over the maximum
                # message size, basic.get of the last queue on a fresh channel): the session
                # closes that channel only (Session.fail), as here
                assert event.channel not in self.server_closing, f"{err!r} after channel.close"
                assert err.code < 500, f"channel Fault code {err.code}: {err.reply_text}"
                self.open_channels.discard(event.channel)
                self.server_closing.add(event.channel)
                m.close_channel(event.channel, err)
        elif isinstance(event, CloseTransport):
            assert m.state is State.CLOSED, f"CloseTransport in state {m.state}"
            assert event.delay >= 0
            self.transport_closed = True
        elif isinstance(event, PeerClosed):
            assert m.state is State.CLOSED
            self.transport_closed = True
        elif isinstance(event, LoginAttempt):
            assert m.state is State.AWAIT_START_OK
            m.accept_login()
        elif isinstance(event, OpenVhost):
            assert m.state is State.AWAIT_OPEN
            if event.vhost == "/":
                m.open_ok()
            else:
                self._close_connection(errors.NotAllowed(f"vhost {event.vhost} not found",
                                                         10, 40))
        elif isinstance(event, Publish):
            assert m.state is State.OPEN
            assert event.channel in self.open_channels, f"publish on closed {event.channel}"
            assert event.channel not in self.server_closing
        elif isinstance(event, Method):
            self._on_method(event)
        else:
            raise AssertionError(f"unknown event {event!r}")

    def _on_method(self, event: Method) -> None:
        m, ch, method = self.machine, event.channel, event.method
        assert m.state is State.OPEN, f"Method {method.name} in state {m.state}"
        if ch == 0:
            assert isinstance(method, C.Connection.UpdateSecret), method.name
            m.send_method(0, C.Connection.UpdateSecretOk())
            return
        assert ch not in self.server_closing, f"{method.name} on server-closed channel {ch}"
        if isinstance(method, C.Channel.Open):
            assert ch not in self.open_channels, f"second channel.open on {ch} let through"
            self.open_channels.add(ch)
            m.send_raw(codec.channel_open_ok_frame(ch))
            return
        assert ch in self.open_channels, f"{method.name} on unopened channel {ch}"
        if isinstance(method, C.Channel.Close):
            self.open_channels.discard(ch)
            m.channel_close_ok(ch)
        elif isinstance(method, C.Queue.Declare) and method.passive:
            self.open_channels.discard(ch)
            self.server_closing.add(ch)
            m.close_channel(ch, errors.NotFound("no queue", 50, 10))
        elif isinstance(method, C.Channel.Flow) and not method.active:
            self._close_connection(errors.NotImplemented_("active=false", 20, 20))

    def _close_connection(self, err: errors.AMQPError) -> None:
        m = self.machine
        if m.state not in (State.CLOSING, State.CLOSED):
            self.close_codes.append(err.code)
        m.close_connection(err)

    # ---- whole-run checks -----------------------------------------------------------------
    def check_output(self) -> list[tuple[int, Any]]:
        frames = parse_server_output(bytes(self.out)) if self.out else []
        closes = [f for _, f in frames if isinstance(f, C.Connection.Close)]
        assert len(closes) <= 1, f"{len(closes)} connection.close frames sent"
        for close in closes:
            assert close.reply_code in ALLOWED_CLOSE_CODES | {403}, close.reply_code
        return frames
