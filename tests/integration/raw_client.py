"""A raw-socket AMQP 0-9-1 client built on pamqp (not a test module).

For what no real client library sends or shows: exact frames in, decoded frames out, the order
of frames, protocol errors, confirms read frame by frame, publishes pipelined from a thread.

- ``RawClient(port)``: a bare socket; the test does the handshake (``handshake`` or its steps
  ``start_ok`` / ``tune_ok``) and sees every frame, heartbeats included.
- ``RawClient.open(port)``: handshake done and channel 1 open, heartbeat frames skipped.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

from pamqp import body as pbody
from pamqp import commands as C
from pamqp import frame as pframe
from pamqp import header as pheader
from pamqp import heartbeat as pheartbeat

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
CLIENT_PROPERTIES = {"product": "raw-test",
                     "capabilities": {"authentication_failure_close": True}}


def content_frames(channel: int, method: Any, body: bytes,
                   props: C.Basic.Properties | None = None) -> bytes:
    """A content-carrying method, its header and its body (no body frame for b"")."""
    data = (pframe.marshal(method, channel)
            + pframe.marshal(pheader.ContentHeader(0, len(body), props or C.Basic.Properties()),
                             channel))
    if body:
        data += pframe.marshal(pbody.ContentBody(body), channel)
    return data


class RawClient:
    """AMQP over a bare socket: exact frames in, decoded frames out."""

    skip_heartbeats = False  # recv_frame / recv / expect pass over heartbeat frames
    frame_max = 0  # what tune-ok answered

    def __init__(self, port: int, timeout: float = 5.0, *, skip_heartbeats: bool = False) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.skip_heartbeats = skip_heartbeats

    @classmethod
    def open(cls, port: int, *, channel: int | None = 1, frame_max: int = 0,
             client_properties: dict | None = None, timeout: float = 5.0,
             skip_heartbeats: bool = True) -> RawClient:
        """Connected as guest to vhost "/" with heartbeat 0, ``channel`` open (None: none)."""
        raw = cls(port, timeout, skip_heartbeats=skip_heartbeats)
        try:
            raw.handshake(frame_max=frame_max, client_properties=client_properties)
            if channel is not None:
                raw.open_channel(channel)
        except BaseException:
            raw.close()
            raise
        return raw

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- bytes and frames ----------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, channel: int, method: Any) -> None:
        self.sock.sendall(pframe.marshal(method, channel))

    def _recv_chunk(self, size: int) -> bytes:
        """Up to ``size`` bytes; b"" once the server closed (or reset) the connection."""
        try:
            return self.sock.recv(size)
        except ConnectionResetError:
            return b""

    def recv_raw(self, deadline: float) -> bytes:
        """Everything the server sends until it closes the socket (or deadline passes)."""
        out = b""
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self._recv_chunk(4096)
            if not chunk:
                return out
            out += chunk
        raise AssertionError(f"socket still open; received so far {out!r}")

    def recv_frame_bytes(self) -> bytes | None:
        """One whole frame as bytes, or None when the server closed the socket."""
        while True:
            if len(self.buf) >= 7:
                size = struct.unpack(">I", self.buf[3:7])[0]
                if len(self.buf) >= size + 8:
                    data, self.buf = self.buf[:size + 8], self.buf[size + 8:]
                    return data
            chunk = self._recv_chunk(65536)
            if not chunk:
                return None
            self.buf += chunk

    def recv_frame(self) -> tuple[int, Any] | None:
        """(channel, frame) decoded by pamqp, or None when the server closed the socket."""
        while True:
            data = self.recv_frame_bytes()
            if data is None:
                return None
            _consumed, channel, frame = pframe.unmarshal(data)
            if not (self.skip_heartbeats and isinstance(frame, pheartbeat.Heartbeat)):
                return channel, frame

    def recv(self, waiting_for: str = "a frame") -> tuple[int, Any]:
        """(channel, frame); ConnectionError when the server closed the socket."""
        got = self.recv_frame()
        if got is None:
            raise ConnectionError(f"socket closed by broker while waiting for {waiting_for}")
        return got

    def expect(self, kind: type, channel: int | None = None) -> Any:
        """The next frame, which must be a ``kind`` (on ``channel``, when given)."""
        number, frame = self.recv(kind.__name__)
        assert isinstance(frame, kind), f"expected {kind.__name__}, got {frame!r}"
        assert channel is None or number == channel, \
            f"expected {kind.__name__} on channel {channel}, got it on channel {number}"
        return frame

    def expect_close(self, code: int, text: str, ids: tuple[int, int],
                     kind: type = C.Connection.Close, channel: int | None = None) -> Any:
        """A connection.close (or ``kind``) with exactly this code, text and (class, method)."""
        close = self.expect(kind, channel)
        assert (close.reply_code, close.reply_text) == (code, text)
        assert (close.class_id, close.method_id) == ids
        return close

    # ---- handshake -----------------------------------------------------------------------
    def start_ok(self, response: str = "\0guest\0guest",
                 client_properties: dict | None = None) -> C.Connection.Start:
        """Protocol header, connection.start, then start-ok with PLAIN ``response``."""
        self.send_raw(PROTOCOL_HEADER)
        start = self.expect(C.Connection.Start)
        props = CLIENT_PROPERTIES if client_properties is None else client_properties
        self.send(0, C.Connection.StartOk(client_properties=props, mechanism="PLAIN",
                                          response=response, locale="en_US"))
        return start

    def tune_ok(self, heartbeat: int = 0, frame_max: int = 0,
                channel_max: int | None = None) -> C.Connection.Tune:
        """connection.tune, answered with the server's limits (or these) and ``heartbeat``."""
        tune = self.expect(C.Connection.Tune)
        self.frame_max = frame_max or tune.frame_max
        self.send(0, C.Connection.TuneOk(
            channel_max=tune.channel_max if channel_max is None else channel_max,
            frame_max=self.frame_max, heartbeat=heartbeat))
        return tune

    def handshake(self, heartbeat: int = 0, vhost: str = "/", frame_max: int = 0,
                  channel_max: int | None = None,
                  client_properties: dict | None = None) -> C.Connection.Tune:
        self.start_ok(client_properties=client_properties)
        tune = self.tune_ok(heartbeat, frame_max, channel_max)
        self.send(0, C.Connection.Open(virtual_host=vhost))
        self.expect(C.Connection.OpenOk)
        return tune

    # ---- channel methods -----------------------------------------------------------------
    def open_channel(self, number: int) -> None:
        self.send(number, C.Channel.Open())
        self.expect(C.Channel.OpenOk, number)

    def declare(self, queue: str, arguments: dict | None = None, channel: int = 1) -> None:
        self.send(channel, C.Queue.Declare(queue=queue, arguments=arguments))
        self.expect(C.Queue.DeclareOk)

    def select(self, channel: int = 1) -> None:
        """confirm.select"""
        self.send(channel, C.Confirm.Select())
        self.expect(C.Confirm.SelectOk)

    def publish(self, routing_key: str, body: bytes, exchange: str = "", *,
                mandatory: bool = False, immediate: bool = False,
                props: C.Basic.Properties | None = None, channel: int = 1) -> None:
        method = C.Basic.Publish(exchange=exchange, routing_key=routing_key,
                                 mandatory=mandatory, immediate=immediate)
        self.send_raw(content_frames(channel, method, body, props))

    # ---- publisher confirms --------------------------------------------------------------
    def acked_upto(self, last: int) -> None:
        """Read basic.ack frames until one covers ``last``; only acks may arrive."""
        seen = 0
        while seen < last:
            ack = self.expect(C.Basic.Ack)
            assert ack.delivery_tag > seen
            assert ack.multiple or ack.delivery_tag == seen + 1
            seen = ack.delivery_tag
        assert seen == last

    def confirms(self, last: int) -> tuple[set[int], set[int], list]:
        """Read frames until tag ``last`` is settled: (acked, nacked, every frame read)."""
        acked: set[int] = set()
        nacked: set[int] = set()
        frames = []
        while len(acked | nacked) < last:
            frame = self.recv("confirms")[1]
            frames.append(frame)
            if isinstance(frame, C.Basic.Ack | C.Basic.Nack):
                settled = acked | nacked
                tags = ({t for t in range(1, frame.delivery_tag + 1) if t not in settled}
                        if frame.multiple else {frame.delivery_tag})
                (acked if isinstance(frame, C.Basic.Ack) else nacked).update(tags)
        return acked, nacked, frames
