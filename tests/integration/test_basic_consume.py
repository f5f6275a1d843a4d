"""basic.consume / basic.cancel against RabbitMQ 3.10 behaviour.

Reply codes and texts are from /work/shared/rabbitmq-behaviour.md section 5. Things the
clients refuse to send (an empty consumer tag, a reused tag) go over raw pamqp frames.
"""

from __future__ import annotations

import re
import signal
import socket
import time

import pika
import pytest
from pamqp import commands as C
from pamqp import exceptions as pamqp_exc
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header
from pamqp import heartbeat as pamqp_heartbeat
from pika.exceptions import ChannelClosedByBroker


@pytest.fixture(autouse=True)
def _deadline():
    """A hang fails the test instead of stalling the run."""
    def boom(signum, frame):  # noqa: ARG001
        raise TimeoutError("test exceeded its 20 s deadline")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def connect(broker) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(broker.url))


def pump(conn, cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for the broker"
        conn.process_data_events(time_limit=0.02)


def settle(conn, seconds: float = 0.2) -> None:
    """Give the broker time to send anything else that it (wrongly) might."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        conn.process_data_events(time_limit=0.02)


def fill(ch, queue: str, n: int) -> None:
    ch.queue_declare(queue)
    for i in range(n):
        ch.basic_publish("", queue, f"m{i}".encode())


def collect(ch, queue: str, **kw):
    got: list = []
    tag = ch.basic_consume(queue, lambda _c, m, p, b: got.append((m, p, b)), **kw)
    return tag, got


def count(ch, queue: str) -> int:
    return ch.queue_declare(queue, passive=True).method.message_count


class Raw:
    """Minimal AMQP client over pamqp frames, for what pika/aio-pika will not send."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.sock.sendall(pamqp_header.ProtocolHeader().marshal())
        self.expect(C.Connection.Start)
        self.send(0, C.Connection.StartOk(client_properties={}, mechanism="PLAIN",
                                          response="\0guest\0guest"))
        tune = self.expect(C.Connection.Tune)
        self.send(0, C.Connection.TuneOk(tune.channel_max, tune.frame_max, 0))
        self.send(0, C.Connection.Open("/"))
        self.expect(C.Connection.OpenOk)

    def send(self, channel: int, value) -> None:
        self.sock.sendall(pamqp_frame.marshal(value, channel))

    def recv(self):
        while True:
            try:
                used, channel, value = pamqp_frame.unmarshal(self.buf)
            except pamqp_exc.UnmarshalingException:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("socket closed by broker") from None
                self.buf += data
                continue
            self.buf = self.buf[used:]
            if not isinstance(value, pamqp_heartbeat.Heartbeat):
                return channel, value

    def expect(self, cls):
        _, value = self.recv()
        assert isinstance(value, cls), f"expected {cls.__name__}, got {value!r}"
        return value

    def open_channel(self, number: int) -> None:
        self.send(number, C.Channel.Open())
        self.expect(C.Channel.OpenOk)

    def close(self) -> None:
        self.sock.close()


# ---- basic.consume / basic.cancel ------------------------------------------------------
def test_server_generates_consumer_tag(broker):
    raw = Raw(broker.port)
    raw.open_channel(1)
    raw.send(1, C.Queue.Declare(queue="q"))
    raw.expect(C.Queue.DeclareOk)
    tags = []
    for _ in range(2):
        raw.send(1, C.Basic.Consume(queue="q", consumer_tag=""))
        tags.append(raw.expect(C.Basic.ConsumeOk).consumer_tag)
    for tag in tags:
        assert re.fullmatch(r"amq\.ctag-[A-Za-z0-9_-]{22}", tag), tag
    assert tags[0] != tags[1]
    raw.close()


def test_client_tag_with_amq_ctag_prefix_accepted(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 1)
    tag, got = collect(ch, "q", consumer_tag="amq.ctag-mine")
    assert tag == "amq.ctag-mine"
    pump(conn, lambda: got)
    assert got[0][0].consumer_tag == "amq.ctag-mine"
    conn.close()


def test_reused_consumer_tag_closes_the_connection(broker):
    raw = Raw(broker.port)
    raw.open_channel(1)
    raw.send(1, C.Queue.Declare(queue="q"))
    raw.expect(C.Queue.DeclareOk)
    raw.send(1, C.Basic.Consume(queue="q", consumer_tag="dup"))
    assert raw.expect(C.Basic.ConsumeOk).consumer_tag == "dup"
    raw.send(1, C.Basic.Consume(queue="q", consumer_tag="dup"))
    channel, close = raw.recv()
    assert channel == 0
    assert isinstance(close, C.Connection.Close), close
    assert close.reply_code == 530
    assert close.reply_text == "NOT_ALLOWED - attempt to reuse consumer tag 'dup'"
    assert (close.class_id, close.method_id) == (60, 20)
    raw.send(0, C.Connection.CloseOk())
    raw.close()


def test_same_consumer_tag_on_two_channels(broker):
    conn = connect(broker)
    ch1, ch2 = conn.channel(), conn.channel()
    ch1.queue_declare("q")
    t1, got1 = collect(ch1, "q", consumer_tag="dup")
    t2, got2 = collect(ch2, "q", consumer_tag="dup")
    assert t1 == t2 == "dup"
    for i in range(2):
        ch1.basic_publish("", "q", f"m{i}".encode())
    pump(conn, lambda: len(got1) + len(got2) >= 2)
    assert (len(got1), len(got2)) == (1, 1)
    conn.close()


def test_exclusive_consume_refused_when_another_consumer_exists(broker):
    conn = connect(broker)
    ch1, ch2 = conn.channel(), conn.channel()
    ch1.queue_declare("q")
    collect(ch1, "q")
    with pytest.raises(ChannelClosedByBroker) as info:
        ch2.basic_consume("q", lambda *a: None, exclusive=True)
    assert info.value.reply_code == 403
    assert info.value.reply_text == "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use"
    # same channel too
    with pytest.raises(ChannelClosedByBroker) as info:
        ch1.basic_consume("q", lambda *a: None, exclusive=True)
    assert info.value.reply_code == 403
    assert info.value.reply_text == "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use"
    conn.close()


def test_consume_refused_while_exclusive_consumer_exists(broker):
    conn = connect(broker)
    other = connect(broker)
    ch1 = conn.channel()
    ch1.queue_declare("q")
    collect(ch1, "q", exclusive=True)
    ch2 = other.channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        ch2.basic_consume("q", lambda *a: None)
    assert info.value.reply_code == 403
    assert info.value.reply_text == "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use"
    # basic.get is still allowed
    ch3 = other.channel()
    assert ch3.basic_get("q") == (None, None, None)
    other.close()
    conn.close()


def test_cancel_stops_deliveries(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 1)
    tag, got = collect(ch, "q", auto_ack=True)
    pump(conn, lambda: got)
    ch.basic_cancel(tag)
    ch.basic_publish("", "q", b"after1")
    ch.basic_publish("", "q", b"after2")
    settle(conn)
    assert [b for _, _, b in got] == [b"m0"]
    assert count(ch, "q") == 2
    conn.close()


def test_cancel_of_unknown_tag_is_ok(broker):
    raw = Raw(broker.port)
    raw.open_channel(1)
    raw.send(1, C.Basic.Cancel(consumer_tag="nope"))
    assert raw.expect(C.Basic.CancelOk).consumer_tag == "nope"
    raw.send(1, C.Queue.Declare(queue="q"))  # channel still open
    raw.expect(C.Queue.DeclareOk)
    raw.close()


def test_no_ack_consumer(broker):
    conn = connect(broker)
    ch = conn.channel()
    fill(ch, "q", 3)
    ch.basic_qos(prefetch_count=1)  # prefetch does not limit no-ack consumers
    _, got = collect(ch, "q", auto_ack=True)
    pump(conn, lambda: len(got) >= 3)
    assert [b for _, _, b in got] == [b"m0", b"m1", b"m2"]
    ch.close()
    ch = conn.channel()
    assert count(ch, "q") == 0  # nothing was held unacked
    conn.close()


def test_round_robin_between_consumers(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    _, a = collect(ch, "q", auto_ack=True)
    _, b = collect(ch, "q", auto_ack=True)
    for i in range(6):
        ch.basic_publish("", "q", f"m{i}".encode())
    pump(conn, lambda: len(a) + len(b) >= 6)
    bodies_a = {body for _, _, body in a}
    bodies_b = {body for _, _, body in b}
    evens, odds = {b"m0", b"m2", b"m4"}, {b"m1", b"m3", b"m5"}
    assert {frozenset(bodies_a), frozenset(bodies_b)} == {frozenset(evens), frozenset(odds)}
    conn.close()


def test_consume_on_missing_queue(broker):
    conn = connect(broker)
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.basic_consume("cat-missing-q", lambda *a: None)
    assert info.value.reply_code == 404
    assert info.value.reply_text == "NOT_FOUND - no queue 'cat-missing-q' in vhost '/'"
    assert conn.is_open
    conn.close()


def test_consume_with_invalid_x_priority(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.basic_consume("q", lambda *a: None, arguments={"x-priority": "abc"})
    assert info.value.reply_code == 406
    assert info.value.reply_text == ("PRECONDITION_FAILED - invalid arg 'x-priority' for queue "
                                     "'q' in vhost '/': \"expected integer, got longstr\"")
    conn.close()


def test_higher_priority_consumer_gets_everything(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    ch.basic_qos(prefetch_count=100)
    _, low = collect(ch, "q", arguments={"x-priority": 1})
    _, high = collect(ch, "q", arguments={"x-priority": 10})
    for i in range(6):
        ch.basic_publish("", "q", f"m{i}".encode())
    pump(conn, lambda: len(low) + len(high) >= 6)
    assert (len(low), len(high)) == (0, 6)
    conn.close()
