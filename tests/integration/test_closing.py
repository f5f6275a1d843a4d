"""Closing without losing the peer's bytes: after connection.close / close-ok the broker keeps
the socket open, reading and discarding, until the client closes its side, at most 30 s (or
the negotiated heartbeat when shorter), as RabbitMQ 3.10.8 does (measured: EOF 30.0 s after
close-ok with heartbeat 0, 5.0 s with heartbeat 5)."""

from __future__ import annotations

import socket
import time

import pytest
from pamqp import commands as C
from pamqp import frame as pframe
from raw_client import RawClient, content_frames

CLOSE = pframe.marshal(C.Connection.Close(reply_code=200, reply_text="bye", class_id=0,
                                          method_id=0), 0)
HEARTBEAT = b"\\x08\\x00\\x00\\x00\\x00\\x00\\x00\\xce"


def closed_after(raw: RawClient, limit: float) -> float:
    """Seconds until the broker closes the socket (EOF, not a reset)."""
    started = time.monotonic()
    raw.sock.settimeout(limit)
    data = raw.sock.recv(4096)
    assert data == b"", data
    return time.monotonic() - started


def test_a_burst_then_close_gets_close_ok_and_no_reset(broker):
    raw = RawClient.open(broker.port)
    raw.declare("burst")
    publish = content_frames(1, C.Basic.Publish(exchange="", routing_key="burst"), b"m" * 200)
    raw.send_raw(publish * 2000 + CLOSE)
    time.sleep(0.3)
    # a client still writing after its close (a heartbeat timer, a pipelined frame) must not
    # meet a reset that would throw away the close-ok waiting in its receive buffer
    for _ in range(3):
        raw.send_raw(HEARTBEAT)
        time.sleep(0.05)
    raw.expect(C.Connection.CloseOk)
    raw.sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        raw.sock.recv(4096)  # still open: the broker waits for the client to close
    raw.close()
    # every message of the burst landed
    check = RawClient.open(broker.port)
    check.send(1, C.Queue.Declare(queue="burst", passive=True))
    assert check.expect(C.Queue.DeclareOk).message_count == 2000
    check.close()


@pytest.mark.deadline(10)
def test_socket_closes_when_the_client_closes_its_side(broker):
    raw = RawClient.open(broker.port)
    raw.send_raw(CLOSE)
    raw.expect(C.Connection.CloseOk)
    raw.sock.shutdown(socket.SHUT_WR)
    assert closed_after(raw, 3) < 1.0
    raw.close()


@pytest.mark.deadline(10)
def test_linger_is_bounded_by_the_heartbeat(broker):
    raw = RawClient(broker.port, skip_heartbeats=True)
    raw.handshake(heartbeat=2)
    raw.send_raw(CLOSE)
    raw.expect(C.Connection.CloseOk)
    assert 1.5 < closed_after(raw, 5) < 3.5
    raw.close()


def test_a_lingering_connection_is_gone_from_the_registry(broker):
    raw = RawClient.open(broker.port)
    raw.send_raw(CLOSE)
    raw.expect(C.Connection.CloseOk)
    assert broker.call(lambda: len(broker.server.sessions)) == 0
    raw.close()
