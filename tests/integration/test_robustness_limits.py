"""Limits that keep the broker up under hostile or broken clients: connection_max, channel_max,
frame_max, max message size, the handshake deadline, missed heartbeats, and a consumer that
never reads its socket."""

from __future__ import annotations

import socket
import time

import pika
import pytest
from pamqp import body as pbody
from pamqp import commands as C
from pamqp import frame as pframe
from pamqp import header as pheader
from pamqp import heartbeat as pheartbeat
from pika_helpers import PROTOCOL_HEADER, RawClient, channel_closed, connect

# ---- helpers -----------------------------------------------------------------------------


def raw_handshake(raw: RawClient, frame_max: int | None = None, channel_max: int | None = None,
                  heartbeat: int = 0) -> C.Connection.Tune:
    """Handshake on a RawClient, answering tune with our own limits."""
    raw.send_raw(PROTOCOL_HEADER)
    raw.expect(C.Connection.Start)
    raw.send(0, C.Connection.StartOk(client_properties={"product": "robustness"},
                                     mechanism="PLAIN", response="\0guest\0guest",
                                     locale="en_US"))
    tune = raw.expect(C.Connection.Tune)
    raw.send(0, C.Connection.TuneOk(
        channel_max=tune.channel_max if channel_max is None else channel_max,
        frame_max=tune.frame_max if frame_max is None else frame_max, heartbeat=heartbeat))
    raw.send(0, C.Connection.Open(virtual_host="/"))
    raw.expect(C.Connection.OpenOk)
    return tune


def expect_connection_close(raw: RawClient) -> C.Connection.Close:
    """Skip heartbeats; the next frame must be connection.close."""
    while True:
        got = raw.recv_frame()
        assert got is not None, "socket closed without connection.close"
        if isinstance(got[1], pheartbeat.Heartbeat):
            continue
        assert isinstance(got[1], C.Connection.Close), got
        return got[1]


def closed_within(sock: socket.socket, seconds: float) -> float:
    """Read until the peer closes the socket; how long it took. Fails after ``seconds``."""
    started = time.monotonic()
    deadline = started + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"socket still open after {seconds} s")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return time.monotonic() - started
        except TimeoutError:
            raise AssertionError(f"socket still open after {seconds} s") from None
        if not chunk:
            return time.monotonic() - started


def pika_params(broker) -> pika.ConnectionParameters:  # type: ignore[no-untyped-def]
    return pika.ConnectionParameters(host="127.0.0.1", port=broker.port,
                                     credentials=pika.PlainCredentials("guest", "guest"),
                                     connection_attempts=1, socket_timeout=3,
                                     stack_timeout=5)


def connect_when_free(broker, seconds: float = 3.0) -> pika.BlockingConnection:  # type: ignore[no-untyped-def]
    """Connect, retrying while the broker refuses (a slot is freed a moment after a close)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return pika.BlockingConnection(pika_params(broker))
        except pika.exceptions.AMQPConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def round_trip(conn: pika.BlockingConnection, body: bytes) -> None:
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q, body)
    method, _props, got = ch.basic_get(q, auto_ack=True)
    assert method is not None and got == body
    ch.close()


def queue_count(ch, queue: str) -> int:  # type: ignore[no-untyped-def]
    return ch.queue_declare(queue, passive=True).method.message_count


# ---- connection_max ----------------------------------------------------------------------

def test_connection_max_refuses_the_third_connection(broker_factory):
    broker = broker_factory(connection_max=2)
    first, second = connect(broker), connect(broker)
    try:
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika.BlockingConnection(pika_params(broker))
        # a raw socket over the limit is closed without a byte
        raw = socket.create_connection(("127.0.0.1", broker.port), timeout=3)
        raw.sendall(PROTOCOL_HEADER)
        closed_within(raw, 2.0)
        raw.close()
        # the two admitted connections are unaffected
        round_trip(first, b"one")
        round_trip(second, b"two")
        first.close()
        # a slot is free again (the broker notices the close a moment later)
        third = connect_when_free(broker)
        round_trip(third, b"three")
        # refused attempts did not use up or free a slot: the limit still holds
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika.BlockingConnection(pika_params(broker))
        round_trip(second, b"still two")
        third.close()
    finally:
        for conn in (first, second):
            if conn.is_open:
                conn.close()


def test_many_refused_connections_do_not_leak_slots(broker_factory):
    broker = broker_factory(connection_max=1)
    socks = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", broker.port), timeout=3)
        socks.append(s)
    # exactly one of them got the slot: it is the one that is answered
    answered = 0
    for s in socks:
        s.sendall(PROTOCOL_HEADER)
    for s in socks:
        s.settimeout(2)
        try:
            data = s.recv(4096)
        except (ConnectionResetError, TimeoutError):
            data = b""
        answered += bool(data)
        s.close()
    assert answered == 1
    conn = connect_when_free(broker)
    round_trip(conn, b"after the storm")
    conn.close()


# ---- channel_max -------------------------------------------------------------------------

def test_channel_max_is_negotiated_and_enforced_pika(broker_factory):
    broker = broker_factory(channel_max=3)
    conn = connect(broker)
    assert conn._impl.params.channel_max == 3
    channels = [conn.channel() for _ in range(3)]
    assert [c.channel_number for c in channels] == [1, 2, 3]
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        conn.channel(channel_number=4)
    assert (info.value.reply_code, info.value.reply_text) == (
        530, "NOT_ALLOWED - number of channels opened (3) has reached the negotiated "
             "channel_max (3)")


def test_channel_max_raw_and_a_closed_channel_frees_a_slot(broker_factory):
    broker = broker_factory(channel_max=3)
    raw = RawClient(broker.port)
    try:
        tune = raw_handshake(raw)
        assert tune.channel_max == 3
        for n in (1, 2, 3):
            raw.send(n, C.Channel.Open())
            raw.expect(C.Channel.OpenOk)
        raw.send(2, C.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
        raw.expect(C.Channel.CloseOk)
        raw.send(7, C.Channel.Open())  # three open again
        raw.expect(C.Channel.OpenOk)
        raw.send(9, C.Channel.Open())
        close = expect_connection_close(raw)
        assert (close.reply_code, close.reply_text) == (
            530, "NOT_ALLOWED - number of channels opened (3) has reached the negotiated "
                 "channel_max (3)")
    finally:
        raw.close()


# ---- frame_max ---------------------------------------------------------------------------

def publish_frames(channel: int, body: bytes, body_frame_size: int | None = None) -> bytes:
    size = len(body) if body_frame_size is None else body_frame_size
    out = pframe.marshal(C.Basic.Publish(exchange="", routing_key="frame-q"), channel)
    out += pframe.marshal(pheader.ContentHeader(0, len(body)), channel)
    for i in range(0, len(body), size):
        out += pframe.marshal(pbody.ContentBody(body[i:i + size]), channel)
    return out


def test_body_frame_over_negotiated_frame_max_is_frame_error(broker_factory):
    broker = broker_factory()
    raw = RawClient(broker.port)
    try:
        raw_handshake(raw, frame_max=4096)
        raw.send(1, C.Channel.Open())
        raw.expect(C.Channel.OpenOk)
        raw.send(1, C.Queue.Declare(queue="frame-q"))
        raw.expect(C.Queue.DeclareOk)
        # within the limit: 4088 octets of payload is fine
        raw.send_raw(publish_frames(1, b"a" * 4088))
        raw.send(1, C.Queue.Declare(queue="frame-q", passive=True))
        ok = raw.expect(C.Queue.DeclareOk)
        assert ok.message_count == 1
        raw.send_raw(publish_frames(1, b"b" * 5000))
        close = expect_connection_close(raw)
        assert (close.reply_code, close.reply_text) == (
            501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,5000,4088}")
    finally:
        raw.close()


def test_content_is_split_at_the_negotiated_frame_max(broker_factory):
    broker = broker_factory()
    raw = RawClient(broker.port)
    try:
        raw_handshake(raw, frame_max=4096)
        raw.send(1, C.Channel.Open())
        raw.expect(C.Channel.OpenOk)
        raw.send(1, C.Queue.Declare(queue="frame-q"))
        raw.expect(C.Queue.DeclareOk)
        body = bytes(range(256)) * 40  # 10240 octets, sent in 4000-octet frames
        raw.send_raw(publish_frames(1, body, 4000))
        raw.send(1, C.Basic.Get(queue="frame-q", no_ack=True))
        raw.expect(C.Basic.GetOk)
        raw.expect(pheader.ContentHeader)
        got = b""
        while len(got) < len(body):
            data = raw.recv_frame_bytes()
            assert data is not None
            assert len(data) <= 4096, f"a {len(data)}-octet frame exceeds frame_max 4096"
            got += pframe.unmarshal(data)[2].value
        assert got == body
    finally:
        raw.close()


# ---- max message size --------------------------------------------------------------------

def test_max_message_size(broker_factory):
    broker = broker_factory(max_message_size=1000)
    conn = connect(broker)
    try:
        ch = conn.channel()
        ch.queue_declare("sized")
        ch.confirm_delivery()
        ch.basic_publish("", "sized", b"x" * 1000)  # exactly the limit is fine
        assert queue_count(ch, "sized") == 1
        with channel_closed(406, "PRECONDITION_FAILED - message size 1001 is larger than "
                                 "configured max size 1000"):
            ch.basic_publish("", "sized", b"x" * 1001)
        # the connection survives; the oversized message went nowhere
        ch2 = conn.channel()
        assert queue_count(ch2, "sized") == 1
    finally:
        conn.close()


def test_max_message_size_counts_a_body_split_over_frames(broker_factory):
    broker = broker_factory(max_message_size=1000, frame_max=4096)
    conn = connect(broker)
    try:
        ch = conn.channel()
        ch.queue_declare("sized")
        ch.confirm_delivery()
        with channel_closed(406, "PRECONDITION_FAILED - message size 9000 is larger than "
                                 "configured max size 1000"):
            ch.basic_publish("", "sized", b"y" * 9000)  # three body frames
    finally:
        if conn.is_open:
            conn.close()


# ---- handshake timeout -------------------------------------------------------------------

def test_handshake_timeout_partial_header(broker_factory):
    broker = broker_factory(handshake_timeout=0.5)
    sock = socket.create_connection(("127.0.0.1", broker.port), timeout=3)
    try:
        sock.sendall(b"AMQP")
        assert closed_within(sock, 1.5) >= 0.3
    finally:
        sock.close()


def test_handshake_timeout_silent_socket(broker_factory):
    broker = broker_factory(handshake_timeout=0.5)
    sock = socket.create_connection(("127.0.0.1", broker.port), timeout=3)
    try:
        assert closed_within(sock, 1.5) >= 0.3
    finally:
        sock.close()


def test_handshake_timeout_after_connection_start(broker_factory):
    broker = broker_factory(handshake_timeout=0.5)
    raw = RawClient(broker.port)
    try:
        raw.send_raw(PROTOCOL_HEADER)
        raw.expect(C.Connection.Start)  # then never answer
        closed_within(raw.sock, 1.5)
    finally:
        raw.close()


def test_handshake_timeout_spares_completed_handshakes(broker_factory):
    broker = broker_factory(handshake_timeout=0.5)
    raw = RawClient(broker.port)
    try:
        raw_handshake(raw)
        time.sleep(1.2)
        raw.send(1, C.Channel.Open())
        raw.expect(C.Channel.OpenOk)
    finally:
        raw.close()


# ---- heartbeat ---------------------------------------------------------------------------

def test_silent_peer_is_dropped_after_missed_heartbeats(broker_factory):
    broker = broker_factory(heartbeat=1)
    raw = RawClient(broker.port, timeout=6)
    other = connect(broker)
    try:
        tune = raw_handshake(raw, heartbeat=1)
        assert tune.heartbeat == 1
        started = time.monotonic()
        raw.sock.settimeout(0.05)
        while True:
            assert time.monotonic() - started < 4, "silent peer not dropped within 4 s"
            try:
                got = raw.recv_frame()  # the broker's heartbeats, until it gives up
            except TimeoutError:
                other.process_data_events(time_limit=0.05)  # pika heartbeats as it should
                continue
            if got is None:
                break
            assert isinstance(got[1], pheartbeat.Heartbeat), got
        assert time.monotonic() - started < 4
        # a peer that does talk stays connected through the same period
        round_trip(other, b"alive")
    finally:
        raw.close()
        other.close()


# ---- a consumer that never reads ---------------------------------------------------------

BODY = 10 * 1024
BACKLOG = 10_000


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def fill(port: int, queue: str, count: int, size: int) -> None:
    """Publish ``count`` transient messages of ``size`` octets in one burst of raw frames."""
    raw = RawClient(port, timeout=30)
    try:
        raw_handshake(raw)
        raw.send(1, C.Channel.Open())
        raw.expect(C.Channel.OpenOk)
        body = b"m" * size
        one = (pframe.marshal(C.Basic.Publish(exchange="", routing_key=queue), 1)
               + pframe.marshal(pheader.ContentHeader(0, size), 1)
               + pframe.marshal(pbody.ContentBody(body), 1))
        for _ in range(0, count, 1000):
            raw.send_raw(one * 1000)
        raw.send(1, C.Channel.Close(reply_code=200, reply_text="done", class_id=0,
                                 method_id=0))
        raw.expect(C.Channel.CloseOk)
    finally:
        raw.close()


def test_slow_reader_does_not_drain_the_queue_into_memory(broker_factory):
    broker = broker_factory()
    admin = connect(broker)
    ach = admin.channel()
    ach.queue_declare("backlog")
    fill(broker.port, "backlog", BACKLOG, BODY)
    deadline = time.monotonic() + 20
    while queue_count(ach, "backlog") < BACKLOG:
        assert time.monotonic() < deadline, "the backlog never landed"
        time.sleep(0.05)

    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    slow.settimeout(5)
    slow.connect(("127.0.0.1", broker.port))
    reader = RawClient.__new__(RawClient)
    reader.sock, reader.buf = slow, b""
    try:
        raw_handshake(reader)
        reader.send(1, C.Channel.Open())
        reader.expect(C.Channel.OpenOk)
        rss_start = rss()
        reader.send(1, C.Basic.Consume(queue="backlog", consumer_tag="slow", no_ack=True))
        reader.expect(C.Basic.ConsumeOk)
        # from here on the reader never reads
        time.sleep(0.5)
        count_start = queue_count(ach, "backlog")

        # meanwhile, another connection is served normally
        other = connect(broker)
        och = other.channel()
        och.queue_declare("side")
        och.confirm_delivery()
        for n in range(20):
            och.basic_publish("", "side", f"side-{n}".encode())
        got = [och.basic_get("side", auto_ack=True)[2] for _ in range(20)]
        assert got == [f"side-{n}".encode() for n in range(20)]
        other.close()

        time.sleep(2.0)
        count_end = queue_count(ach, "backlog")
        rss_end = rss()
        delivered = BACKLOG - count_end
        # the broker stopped pulling messages off the queue at the socket's high-water mark
        assert count_end >= BACKLOG // 2, (
            f"{delivered} of {BACKLOG} messages ({delivered * BODY >> 20} MiB) were taken off "
            "the queue for a consumer that reads nothing")
        assert count_end == count_start, (
            f"deliveries continued while the reader was stalled: {count_start} -> {count_end}")
        assert rss_end - rss_start < 50 * 1024 * 1024, (
            f"memory grew by {(rss_end - rss_start) >> 20} MiB while the reader was stalled")

        # once the reader reads, deliveries resume
        reader.sock.settimeout(0.2)
        deadline = time.monotonic() + 10
        while queue_count(ach, "backlog") > count_end - 500:
            assert time.monotonic() < deadline, "deliveries did not resume after reading"
            try:
                while reader.sock.recv(1 << 20):
                    pass
            except TimeoutError:
                pass
    finally:
        slow.close()
        admin.close()
