"""Minimal blocking raw-socket AMQP 0-9-1 client used by the benchmark.

Control-plane traffic (handshake, declares, qos, consume, confirm.select) is
encoded and decoded with pamqp; the data path is left to the callers, which
send pre-encoded publish frames in big ``sendall`` batches and scan received
bytes with a hand-written frame loop (see ``bench.workers``). Heartbeats are
disabled in tune-ok, so no background thread is needed.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from pamqp import body as pbody
from pamqp import commands, frame, header
from pamqp.base import Frame

FRAME_HEADER = struct.Struct(">BHI")
METHOD_ID = struct.Struct(">I")
ACK_FRAME = struct.Struct(">BHIHHQBB")
U64 = struct.Struct(">Q")
U32 = struct.Struct(">I")

FRAME_METHOD = 1
FRAME_HEADER_TYPE = 2
FRAME_BODY = 3
FRAME_END = 0xCE


def method_id(class_id: int, method: int) -> int:
    """Return the 32-bit (class << 16 | method) id found at the start of a method payload."""
    return (class_id << 16) | method


BASIC_DELIVER = method_id(60, 60)
BASIC_ACK = method_id(60, 80)
BASIC_NACK = method_id(60, 120)
BASIC_CANCEL = method_id(60, 30)
CHANNEL_CLOSE = method_id(20, 40)
CONNECTION_CLOSE = method_id(10, 50)
FATAL_METHODS = frozenset({CHANNEL_CLOSE, CONNECTION_CLOSE, BASIC_CANCEL})

RECV_SIZE = 1 << 20
MAX_FRAME = 131072

F = TypeVar("F", bound=Frame)


class AMQPError(Exception):
    """Raised when the server closes a channel/connection or speaks unexpectedly."""


@dataclass(frozen=True)
class AMQPUrl:
    """Parsed ``amqp://user:pass@host:port/vhost`` URL."""

    host: str = "127.0.0.1"
    port: int = 5672
    user: str = "guest"
    password: str = "guest"
    vhost: str = "/"

    @classmethod
    def parse(cls, url: str) -> AMQPUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", ""):
            raise ValueError(f"unsupported URL scheme {parts.scheme!r} (only amqp://)")
        path = parts.path
        vhost = unquote(path[1:]) if len(path) > 1 else "/"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5672,
            user=unquote(parts.username or "guest"),
            password=unquote(parts.password or "guest"),
            vhost=vhost,
        )

    def __str__(self) -> str:
        vhost = "" if self.vhost == "/" else self.vhost
        return f"amqp://{self.user}@{self.host}:{self.port}/{vhost}"


def describe_close(method_frame: object) -> str:
    """Human-readable text for a Channel.Close / Connection.Close frame."""
    code = getattr(method_frame, "reply_code", "?")
    text = getattr(method_frame, "reply_text", "")
    name = getattr(method_frame, "name", type(method_frame).__name__)
    return f"{name} {code} {text}"


def ack_frame(channel: int, delivery_tag: int) -> bytes:
    """Encode a Basic.Ack (multiple=False) method frame without pamqp."""
    return ACK_FRAME.pack(FRAME_METHOD, channel, 13, 60, 80, delivery_tag, 0, FRAME_END)


def encode_message(
    channel: int,
    exchange: str,
    routing_key: str,
    payload: bytes,
    frame_max: int,
    properties: commands.Basic.Properties | None = None,
) -> bytes:
    """Pre-encode publish method + content header + body frame(s) for one message."""
    parts = [
        frame.marshal(commands.Basic.Publish(exchange=exchange, routing_key=routing_key), channel),
        frame.marshal(
            header.ContentHeader(0, len(payload), properties or commands.Basic.Properties()),
            channel,
        ),
    ]
    chunk = max(1, frame_max - 8)
    for start in range(0, len(payload), chunk):
        parts.append(frame.marshal(pbody.ContentBody(payload[start : start + chunk]), channel))
    return b"".join(parts)


class Connection:
    """One blocking AMQP connection; ``buf[pos:]`` holds received-but-unparsed bytes."""

    def __init__(self, url: AMQPUrl | str, timeout: float = 30.0, product: str = "bench") -> None:
        self.url = AMQPUrl.parse(url) if isinstance(url, str) else url
        self.sock = socket.create_connection((self.url.host, self.url.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.pos = 0
        self.frame_max = MAX_FRAME
        self.server_properties: dict[str, Any] = {}
        try:
            self._handshake(product)
        except BaseException:
            self.sock.close()
            raise

    # -- low level -----------------------------------------------------------------

    def send_method(self, channel: int, method_frame: Frame) -> None:
        self.sock.sendall(frame.marshal(method_frame, channel))

    def fill(self) -> None:
        """Block until more bytes arrive; drop the parsed prefix and append them to ``buf``."""
        chunk = self.sock.recv(RECV_SIZE)
        if not chunk:
            raise AMQPError("connection closed by server")
        rest = self.buf[self.pos :] if self.pos else self.buf
        self.buf = rest + chunk if rest else chunk
        self.pos = 0

    def read_frame(self) -> tuple[int, Any]:
        """Return the next complete (channel, pamqp frame object) from the socket."""
        while True:
            buf, pos = self.buf, self.pos
            if len(buf) - pos >= 7:
                if buf[pos : pos + 4] == b"AMQP":
                    raise AMQPError(f"server rejected protocol header: {buf[pos:pos + 8]!r}")
                _, _, size = FRAME_HEADER.unpack_from(buf, pos)
                end = pos + size + 8
                if len(buf) >= end:
                    _, channel, value = frame.unmarshal(buf[pos:end])
                    self.pos = end
                    return channel, value
            self.fill()

    def wait_for(self, channel: int, *expected: type[F]) -> F:
        """Read frames until one of ``expected`` arrives on ``channel``; raise on close."""
        while True:
            ch, value = self.read_frame()
            if isinstance(value, commands.Connection.Close):
                self._safe_send(0, commands.Connection.CloseOk())
                raise AMQPError(describe_close(value))
            if isinstance(value, commands.Channel.Close):
                self._safe_send(ch, commands.Channel.CloseOk())
                raise AMQPError(describe_close(value))
            if ch == channel and isinstance(value, expected):
                return value
            # Anything else (Connection.Blocked, stray deliveries...) is ignored here.

    def rpc(self, channel: int, method_frame: Frame, *expected: type[F]) -> F:
        self.send_method(channel, method_frame)
        return self.wait_for(channel, *expected)

    def _safe_send(self, channel: int, method_frame: Frame) -> None:
        try:
            self.send_method(channel, method_frame)
        except OSError:
            pass

    # -- handshake -----------------------------------------------------------------

    def _handshake(self, product: str) -> None:
        self.sock.sendall(header.ProtocolHeader().marshal())
        start = self.wait_for(0, commands.Connection.Start)
        self.server_properties = dict(start.server_properties or {})
        mechanisms = (start.mechanisms or "PLAIN").split()
        if "PLAIN" not in mechanisms:
            raise AMQPError(f"server does not offer PLAIN auth: {mechanisms}")
        client_properties: dict[str, Any] = {
            "product": product,
            "platform": "Python raw socket",
            "capabilities": {
                "publisher_confirms": True,
                "basic.nack": True,
                "consumer_cancel_notify": True,
                "connection.blocked": True,
                "authentication_failure_close": True,
            },
        }
        response = f"\0{self.url.user}\0{self.url.password}"
        self.send_method(
            0,
            commands.Connection.StartOk(
                client_properties=client_properties,
                mechanism="PLAIN",
                response=response,
                locale="en_US",
            ),
        )
        tune = self.wait_for(0, commands.Connection.Tune)
        server_frame_max = tune.frame_max or MAX_FRAME
        self.frame_max = min(server_frame_max, MAX_FRAME)
        self.send_method(
            0,
            commands.Connection.TuneOk(
                channel_max=tune.channel_max or 2047, frame_max=self.frame_max, heartbeat=0
            ),
        )
        open_method = commands.Connection.Open(virtual_host=self.url.vhost)
        self.rpc(0, open_method, commands.Connection.OpenOk)

    # -- convenience RPCs ----------------------------------------------------------

    def channel_open(self, channel: int = 1) -> None:
        self.rpc(channel, commands.Channel.Open(), commands.Channel.OpenOk)

    def queue_declare(
        self,
        channel: int,
        queue: str,
        *,
        passive: bool = False,
        durable: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> commands.Queue.DeclareOk:
        method_frame = commands.Queue.Declare(
            queue=queue, passive=passive, durable=durable, arguments=arguments or {}
        )
        return self.rpc(channel, method_frame, commands.Queue.DeclareOk)

    def queue_delete(self, channel: int, queue: str) -> int:
        ok = self.rpc(channel, commands.Queue.Delete(queue=queue), commands.Queue.DeleteOk)
        return int(ok.message_count or 0)

    def basic_qos(self, channel: int, prefetch_count: int) -> None:
        self.rpc(channel, commands.Basic.Qos(prefetch_count=prefetch_count), commands.Basic.QosOk)

    def basic_consume(self, channel: int, queue: str, tag: str, no_ack: bool,
                      arguments: dict[str, Any] | None = None) -> None:
        method_frame = commands.Basic.Consume(queue=queue, consumer_tag=tag, no_ack=no_ack,
                                              arguments=arguments or {})
        self.rpc(channel, method_frame, commands.Basic.ConsumeOk)

    def confirm_select(self, channel: int) -> None:
        self.rpc(channel, commands.Confirm.Select(), commands.Confirm.SelectOk)

    def close(self, timeout: float = 5.0) -> None:
        """Send Connection.Close and wait (briefly) for Close-Ok, then close the socket."""
        try:
            self.sock.settimeout(timeout)
            self.send_method(0, commands.Connection.Close(200, "bye", 0, 0))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                _, value = self.read_frame()
                if isinstance(value, commands.Connection.CloseOk | commands.Connection.Close):
                    break
        except (OSError, AMQPError):
            pass
        finally:
            self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
