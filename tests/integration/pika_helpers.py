"""Helpers shared by the connection / channel / exchange / queue behaviour tests.

Not a test module: blocking pika helpers that assert exact close codes and texts, an event
pump with a deadline (so a hang fails instead of hanging), and a tiny raw-socket AMQP client
built on pamqp for the cases no real client library can produce.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable, Iterator

import pika
import pytest
from pamqp import commands as C
from pamqp import frame as pframe

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
LOCKED = ("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{}' in vhost '/'. "
          "It could be originally declared on another connection or the exclusive property "
          "value does not match that of the original declaration.")


def connect(broker, **overrides) -> pika.BlockingConnection:  # type: ignore[no-untyped-def]
    params = pika.URLParameters(broker.url)
    for key, value in overrides.items():
        setattr(params, key, value)
    return pika.BlockingConnection(params)


@contextlib.contextmanager
def channel_closed(code: int, text: str) -> Iterator[None]:
    """The block must end in a channel.close from the broker with exactly code and text."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        yield
    assert (info.value.reply_code, info.value.reply_text) == (code, text)


@contextlib.contextmanager
def connection_closed(code: int, text: str) -> Iterator[None]:
    """The block must end in a connection.close from the broker with exactly code and text."""
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        yield
    assert (info.value.reply_code, info.value.reply_text) == (code, text)


def pump(conn: pika.BlockingConnection, until: Callable[[], bool],
         timeout: float = 3.0) -> None:
    """Process I/O until ``until()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        conn.process_data_events(time_limit=0.02)


def drain(ch, queue: str) -> list[bytes]:  # type: ignore[no-untyped-def]
    """basic.get (auto-ack) until the queue is empty; the bodies in order."""
    bodies = []
    for _ in range(1000):
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)
    raise AssertionError("queue never drained")


class RawClient:
    """AMQP over a bare socket: exact frames in, decoded frames out."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, channel: int, method) -> None:  # type: ignore[no-untyped-def]
        self.sock.sendall(pframe.marshal(method, channel))

    def recv_raw(self, deadline: float) -> bytes:
        """Everything the server sends until it closes the socket (or deadline passes)."""
        out = b""
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(4096)
            except ConnectionResetError:
                return out
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
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buf += chunk

    def recv_frame(self):  # type: ignore[no-untyped-def]
        """(channel, frame) decoded by pamqp, or None when the server closed the socket."""
        data = self.recv_frame_bytes()
        if data is None:
            return None
        _consumed, channel, frame = pframe.unmarshal(data)
        return channel, frame

    def expect(self, kind: type):  # type: ignore[no-untyped-def]
        got = self.recv_frame()
        assert got is not None, f"socket closed while waiting for {kind.__name__}"
        assert isinstance(got[1], kind), f"expected {kind.__name__}, got {got[1]!r}"
        return got[1]

    def handshake(self, heartbeat: int = 0, vhost: str = "/") -> C.Connection.Tune:
        self.send_raw(PROTOCOL_HEADER)
        self.expect(C.Connection.Start)
        props = {"product": "raw-test",
                 "capabilities": {"authentication_failure_close": True}}
        self.send(0, C.Connection.StartOk(client_properties=props, mechanism="PLAIN",
                                          response="\0guest\0guest", locale="en_US"))
        tune = self.expect(C.Connection.Tune)
        self.send(0, C.Connection.TuneOk(channel_max=tune.channel_max,
                                         frame_max=tune.frame_max, heartbeat=heartbeat))
        self.send(0, C.Connection.Open(virtual_host=vhost))
        self.expect(C.Connection.OpenOk)
        return tune
