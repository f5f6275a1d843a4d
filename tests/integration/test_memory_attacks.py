"""One client must not be able to exhaust the broker's memory (issue 12). Each test tries one
attack from a raw socket, checks the broker's answer (code and text) and that RSS stays under a
stated ceiling, while a well-behaved client on another connection keeps publishing with
confirms and consuming with acks, and loses nothing. The bounds are listed in
broker/amqp/limits.py."""

from __future__ import annotations

import socket
import time

import pytest
from attack_helpers import (
    Bystander,
    MiB,
    body_frame,
    header_frame,
    publish_frame,
    rss,
    send_for,
)
from pamqp import commands as C
from pamqp import frame as pframe
from pamqp import heartbeat as pheartbeat
from raw_client import RawClient

pytestmark = pytest.mark.deadline(60)

FRAME = 131072 - 8  # the largest body frame payload at the default frame_max


def passive_count(port: int, queue: str) -> int:
    raw = RawClient.open(port)
    try:
        raw.send(1, C.Queue.Declare(queue=queue, passive=True))
        return raw.expect(C.Queue.DeclareOk).message_count
    finally:
        raw.close()


def wait_count(port: int, queue: str, n: int, timeout: float) -> None:
    """Wait until ``queue`` holds at least ``n`` messages; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while passive_count(port, queue) < n:
        assert time.monotonic() < deadline, f"{queue} never held {n} messages"
        time.sleep(0.05)


def fill_raw(port: int, queue: str, body: bytes, n: int) -> None:
    """Declare ``queue`` and put ``n`` copies of ``body`` in it over a raw client."""
    filler = RawClient.open(port, timeout=30)
    filler.declare(queue)
    filler.send_raw((publish_frame(1, queue) + header_frame(1, len(body))
                     + body_frame(1, body)) * n)
    wait_count(port, queue, n, 20)
    filler.close()


def next_non_heartbeat(raw: RawClient) -> tuple[int, object]:
    while True:
        got = raw.recv()
        if not isinstance(got[1], pheartbeat.Heartbeat):
            return got


# ---- content limits where the bytes arrive -------------------------------------------------

def test_header_announcing_10_gb_is_refused_and_its_body_never_kept(broker):
    with Bystander(broker.port) as good:
        raw = RawClient.open(broker.port, timeout=30)
        raw.declare("victim")
        before, start = rss(), good.progress()
        raw.send_raw(publish_frame(1, "victim") + header_frame(1, 10 * 1024**3))
        raw.expect_close(406, "PRECONDITION_FAILED - message size 10737418240 is larger than "
                              "configured max size 134217728", (60, 40), C.Channel.Close, 1)
        # 300 MB of the announced body follow; the broker drops them as they arrive
        sent = send_for(raw.sock, body_frame(1, b"z" * FRAME) * 8, 20, limit=300 * MiB)
        assert sent >= 300 * MiB
        raw.send(1, C.Channel.CloseOk())
        raw.open_channel(1)  # the connection survived
        raw.publish("victim", b"small")
        assert passive_count(broker.port, "victim") == 1
        grown = rss() - before
        good.assert_progressed(start)
        raw.close()
    good.check()
    assert grown < 30 * MiB, f"RSS grew by {grown / MiB:.0f} MiB"


def test_body_running_past_its_header_is_a_frame_error(broker):
    with Bystander(broker.port) as good:
        raw = RawClient.open(broker.port, timeout=30)
        before, start = rss(), good.progress()
        raw.send_raw(publish_frame(1, "victim") + header_frame(1, 10))
        sent = send_for(raw.sock, body_frame(1, b"y" * FRAME) * 8, 5, limit=250 * MiB)
        raw.expect_close(501, "FRAME_ERROR - content body frame exceeds remaining content size",
                         (60, 40))
        grown = rss() - before
        time.sleep(0.5)
        good.assert_progressed(start, at_least=5)
        raw.close()
    good.check()
    assert sent < 250 * MiB or grown < 30 * MiB
    assert grown < 30 * MiB, f"RSS grew by {grown / MiB:.0f} MiB"


def test_partial_messages_on_many_channels_are_capped(broker_factory):
    broker = broker_factory(max_message_size=8 * MiB)
    with Bystander(broker.port) as good:
        raw = RawClient.open(broker.port, channel=None, timeout=30)
        raw.send_raw(b"".join(pframe.marshal(C.Channel.Open(), n) for n in range(1, 1001)))
        for _ in range(1000):
            raw.expect(C.Channel.OpenOk)
        before, start = rss(), good.progress()
        # each channel announces 1 MiB and sends all of it but the last byte, then stalls
        chunk = b"p" * (64 * 1024)
        refused = 0
        for n in range(1, 1001):
            raw.send_raw(publish_frame(n, "nowhere") + header_frame(n, MiB)
                         + b"".join(body_frame(n, chunk) for _ in range(15))
                         + body_frame(n, chunk[:-1]))
        raw.sock.settimeout(5)
        while refused < 1000 - 8:
            number, frame = next_non_heartbeat(raw)
            assert isinstance(frame, C.Channel.Close), frame
            assert frame.reply_code == 406 and frame.reply_text.startswith(
                "PRECONDITION_FAILED - message size 1048576 would take the unfinished "
                "messages of this connection to "), frame.reply_text
            assert frame.reply_text.endswith("above the limit of 8388608")
            refused += 1
        grown = rss() - before
        good.assert_progressed(start)
        raw.close()
    good.check()
    assert refused == 992  # 8 unfinished 1 MiB messages fit in 8 MiB
    assert grown < 40 * MiB, f"RSS grew by {grown / MiB:.0f} MiB"


def test_memory_alarm_blocks_a_publisher_mid_message(broker_factory):
    from test_robustness_alarms import HUGE, set_watermark

    broker = broker_factory(vm_memory_high_watermark_absolute=HUGE,
                            vm_memory_high_watermark_relative=None)
    raw = RawClient.open(broker.port, timeout=30, client_properties={
        "product": "attacker", "capabilities": {"connection.blocked": True}})
    raw.declare("big")
    try:
        # a 100 MB message begins: its first 1 MB arrives before the alarm
        raw.send_raw(publish_frame(1, "big") + header_frame(1, 100 * MiB))
        send_for(raw.sock, body_frame(1, b"m" * FRAME), 2, limit=MiB)
        set_watermark(broker, 1)
        blocked = next_non_heartbeat(raw)[1]
        assert isinstance(blocked, C.Connection.Blocked), blocked
        assert blocked.reason == "low on memory"
        before = rss()
        # the rest is written but not read: the kernel buffers fill and the writer stalls
        sent = send_for(raw.sock, body_frame(1, b"m" * FRAME), 4, limit=99 * MiB)
        assert sent < 50 * MiB, f"{sent / MiB:.0f} MiB were read from a blocked connection"
        grown = rss() - before
        assert grown < 20 * MiB, f"RSS grew by {grown / MiB:.0f} MiB while blocked"
        set_watermark(broker, HUGE)
        assert isinstance(next_non_heartbeat(raw)[1], C.Connection.Unblocked)
    finally:
        set_watermark(broker, HUGE)
        raw.close()


# ---- answers to a client that never reads --------------------------------------------------

def test_returns_to_a_publisher_that_never_reads(broker):
    body = b"r" * (100 * 1024)
    one = publish_frame(1, "no-such-queue", mandatory=True) + header_frame(1, len(body)) \
        + body_frame(1, body)
    with Bystander(broker.port) as good:
        raw = RawClient.open(broker.port, timeout=30)
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        before, start = rss(), good.progress()
        sent = send_for(raw.sock, one * 10, 4, limit=300 * MiB)
        time.sleep(0.5)
        grown = rss() - before
        good.assert_progressed(start)
        # once it reads, it gets a return for every message the broker took, in order
        raw.sock.settimeout(10)
        returns = 0
        taken = sent // len(one)
        while returns < taken - 1:
            frame = next_non_heartbeat(raw)[1]
            if isinstance(frame, C.Basic.Return):
                assert (frame.reply_code, frame.reply_text) == (312, "NO_ROUTE")
                returns += 1
        raw.close()
    good.check()
    assert sent < 100 * MiB, f"the broker read {sent / MiB:.0f} MiB from a client that never reads"
    assert grown < 40 * MiB, f"RSS grew by {grown / MiB:.0f} MiB"


def test_basic_get_storm_without_reading(broker):
    body = b"g" * (100 * 1024)
    fill_raw(broker.port, "stock", body, 600)
    with Bystander(broker.port) as good:
        raw = RawClient.open(broker.port, timeout=30)
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        before, start = rss(), good.progress()
        get = pframe.marshal(C.Basic.Get(queue="stock", no_ack=True), 1)
        raw.send_raw(get * 600)  # 60 MB of answers asked for in one 13 KB write
        time.sleep(1.5)
        grown = rss() - before
        left = passive_count(broker.port, "stock")
        good.assert_progressed(start)
        # reading, it gets all 600, in order and whole
        got = 0
        while got < 600:
            frame = next_non_heartbeat(raw)[1]
            if isinstance(frame, C.Basic.GetOk):
                got += 1
        raw.close()
    good.check()
    assert left > 400, f"{600 - left} messages were taken off the queue for a client not reading"
    assert grown < 30 * MiB, f"RSS grew by {grown / MiB:.0f} MiB"


def test_deliveries_of_large_messages_to_a_consumer_that_never_reads(broker):
    body = b"d" * MiB
    filler = RawClient.open(broker.port, timeout=30)
    for n in range(20):
        filler.declare(f"big-{n}")
    for n in range(20):
        filler.send_raw((publish_frame(1, f"big-{n}") + header_frame(1, len(body))
                         + b"".join(body_frame(1, body[i:i + FRAME])
                                    for i in range(0, len(body), FRAME))) * 10)
    wait_count(broker.port, "big-19", 10, 30)
    filler.close()
    with Bystander(broker.port) as good:
        raw = RawClient.open(broker.port, timeout=30)
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        before, start = rss(), good.progress()
        raw.send_raw(b"".join(pframe.marshal(C.Basic.Consume(queue=f"big-{n}", no_ack=True,
                                                             nowait=True), 1)
                              for n in range(20)))
        time.sleep(1.5)
        taken = 200 - sum(passive_count(broker.port, f"big-{n}") for n in range(20))
        grown = rss() - before
        good.assert_progressed(start)
        raw.close()
    good.check()
    # 200 MiB waited in 20 queues; a stalled reader may hold about 2 x 4 MiB of them
    assert taken <= 16, f"{taken} MiB were taken off the queues for a consumer not reading"
    assert grown < 40 * MiB, f"RSS grew by {grown / MiB:.0f} MiB"


# ---- a consumer that never acks ------------------------------------------------------------

def test_unacknowledged_bodies_per_connection_are_bounded(broker_factory):
    broker = broker_factory(max_message_size=4 * MiB)
    body = b"u" * (64 * 1024)
    fill_raw(broker.port, "backlog", body, 1000)
    with Bystander(broker.port) as good:
        raw = RawClient.open(broker.port, timeout=30)
        start = good.progress()
        raw.send(1, C.Basic.Consume(queue="backlog", consumer_tag="greedy"))  # prefetch 0
        raw.expect(C.Basic.ConsumeOk)
        tags = []
        raw.sock.settimeout(1.0)
        try:
            while True:
                frame = next_non_heartbeat(raw)[1]
                if isinstance(frame, C.Basic.Deliver):
                    tags.append(frame.delivery_tag)
        except TimeoutError:
            pass
        # it reads everything, acks nothing: deliveries stop at 4 MiB of bodies
        assert len(tags) == 64, len(tags)
        raw.send(1, C.Basic.Get(queue="backlog"))
        raw.expect(C.Basic.GetEmpty)  # flow control for basic.get too
        # acking lets the rest flow
        raw.send(1, C.Basic.Ack(delivery_tag=tags[-1], multiple=True))
        more = 0
        while more < 64:
            if isinstance(next_non_heartbeat(raw)[1], C.Basic.Deliver):
                more += 1
        good.assert_progressed(start)
        raw.close()
    good.check()
    assert passive_count(broker.port, "backlog") == 1000 - 64  # the unacked came back


# ---- many consumers ------------------------------------------------------------------------

def test_consumer_max_per_channel(broker_factory):
    broker = broker_factory(consumer_max_per_channel=10)
    raw = RawClient.open(broker.port)
    raw.declare("many")
    for n in range(10):
        raw.send(1, C.Basic.Consume(queue="many", consumer_tag=f"c{n}"))
        raw.expect(C.Basic.ConsumeOk)
    raw.send(1, C.Basic.Consume(queue="many", consumer_tag="c0"))  # a reused tag: its own error
    raw.expect_close(530, "NOT_ALLOWED - attempt to reuse consumer tag 'c0'", (60, 20))
    raw.close()
    raw = RawClient.open(broker.port)
    for n in range(10):
        raw.send(1, C.Basic.Consume(queue="many", consumer_tag=f"c{n}"))
        raw.expect(C.Basic.ConsumeOk)
    raw.open_channel(2)  # the limit is per channel
    raw.send(2, C.Basic.Consume(queue="many", consumer_tag="other"))
    raw.expect(C.Basic.ConsumeOk)
    raw.send(1, C.Basic.Consume(queue="many", consumer_tag="c10"))
    raw.expect_close(530, "NOT_ALLOWED - reached maximum (10) of consumers per channel",
                     (60, 20))
    raw.close()


def test_consumers_per_connection_are_bounded(broker, monkeypatch):
    from broker.amqp import channel

    monkeypatch.setattr(channel, "CONSUMERS_PER_CONNECTION", 500)
    with Bystander(broker.port) as good:
        raw = RawClient.open(broker.port, channel=None, timeout=30)
        before, start = rss(), good.progress()
        frames = [pframe.marshal(C.Channel.Open(), n) for n in (1, 2)]
        frames.append(pframe.marshal(C.Queue.Declare(queue="many"), 1))
        frames += [pframe.marshal(C.Basic.Consume(queue="many", consumer_tag=f"t{n}",
                                                  nowait=True), 1 + n % 2)
                   for n in range(600)]
        raw.send_raw(b"".join(frames))
        close = None
        raw.sock.settimeout(5)
        while close is None:
            frame = next_non_heartbeat(raw)[1]
            if isinstance(frame, C.Connection.Close):
                close = frame
        assert (close.reply_code, close.reply_text) == (
            530, "NOT_ALLOWED - reached maximum (500) of consumers per connection")
        grown = rss() - before
        time.sleep(0.5)
        good.assert_progressed(start, at_least=5)
        raw.close()
    good.check()
    assert grown < 20 * MiB


def test_many_channels_each_with_a_consumer_and_a_partial_message(broker_factory):
    """channel_max channels, each with a consumer and an unfinished message: the channel
    objects, consumers and partial bodies together stay small."""
    broker = broker_factory(max_message_size=4 * MiB)
    with Bystander(broker.port) as good:
        raw = RawClient.open(broker.port, channel=None, timeout=30)
        before, start = rss(), good.progress()
        data = [pframe.marshal(C.Channel.Open(), n) for n in range(1, 2048)]
        data.append(pframe.marshal(C.Queue.Declare(queue="wide"), 1))
        for n in range(1, 2048):
            data.append(pframe.marshal(C.Basic.Consume(queue="wide", consumer_tag=f"w{n}",
                                                       nowait=True), n))
            data.append(publish_frame(n, "wide") + header_frame(n, 2048)
                        + body_frame(n, b"w" * 2047))
        raw.send_raw(b"".join(data))
        # 2047 x 2048 announced bytes fit under the 4 MiB cap: nothing is refused
        raw.sock.settimeout(5)
        got = None
        while got is None:
            frame = next_non_heartbeat(raw)[1]
            assert not isinstance(frame, C.Channel.Close | C.Connection.Close), frame
            if isinstance(frame, C.Queue.DeclareOk):
                got = frame
        deadline = time.monotonic() + 10
        while broker.call(lambda: len(broker.server.vhosts["/"].queues["wide"].consumers)) \
                < 2047:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        grown = rss() - before
        good.assert_progressed(start)
        raw.close()
    good.check()
    assert grown < 40 * MiB, f"RSS grew by {grown / MiB:.0f} MiB"
