"""Queue length limits (x-max-length, x-max-length-bytes, x-overflow) against RabbitMQ 3.13.

Expected values are from /work/shared/rabbitmq-behaviour.md sections 4 (argument validation),
6 (broker-sent nacks: reject-publish queues nack under confirms, with requeue set; a fanout that
hits one full reject-publish queue is nacked although another queue stored it) and 10 (maxlen
dead-lettering: drop-head dead-letters the oldest, reject-publish-dlx the new message).
"""

from __future__ import annotations

import asyncio
import datetime
import signal
import time

import aio_pika
import pika
import pytest
from pamqp import body as pamqp_body
from pamqp import commands as C
from pamqp import header as pamqp_header
from pika.exceptions import NackError
from pika_helpers import RawClient, channel_closed, connect, drain


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


@pytest.fixture
def conn(broker):  # type: ignore[no-untyped-def]
    c = connect(broker)
    yield c
    if c.is_open:
        c.close()


@pytest.fixture
def ch(conn):  # type: ignore[no-untyped-def]
    return conn.channel()


def count(ch, queue: str) -> int:  # type: ignore[no-untyped-def]
    return ch.queue_declare(queue, passive=True).method.message_count


def get_within(ch, queue: str, timeout: float = 3.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is not None:
            return method, props, body
        assert time.monotonic() < deadline, f"nothing arrived in '{queue}' within {timeout} s"
        time.sleep(0.02)


class ConfirmingRaw(RawClient):
    """Raw client on channel 1 in confirm mode that records every ack / nack frame."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.handshake()
        self.send(1, C.Channel.Open())
        self.expect(C.Channel.OpenOk)

    def declare(self, queue: str, arguments: dict | None = None) -> None:
        self.send(1, C.Queue.Declare(queue=queue, arguments=arguments))
        self.expect(C.Queue.DeclareOk)

    def select(self) -> None:
        self.send(1, C.Confirm.Select())
        self.expect(C.Confirm.SelectOk)

    def publish(self, rk: str, body: bytes, exchange: str = "", mandatory: bool = False) -> None:
        self.send(1, C.Basic.Publish(exchange=exchange, routing_key=rk, mandatory=mandatory))
        self.send(1, pamqp_header.ContentHeader(0, len(body), C.Basic.Properties()))
        self.send(1, pamqp_body.ContentBody(body))

    def confirms(self, last: int) -> tuple[set[int], set[int], list]:
        """Read frames until tag ``last`` is settled: (acked, nacked, every frame read)."""
        acked: set[int] = set()
        nacked: set[int] = set()
        frames = []
        while len(acked | nacked) < last:
            got = self.recv_frame()
            assert got is not None, "socket closed while waiting for confirms"
            frame = got[1]
            frames.append(frame)
            if isinstance(frame, C.Basic.Ack | C.Basic.Nack):
                settled = acked | nacked
                tags = ({t for t in range(1, frame.delivery_tag + 1) if t not in settled}
                        if frame.multiple else {frame.delivery_tag})
                (acked if isinstance(frame, C.Basic.Ack) else nacked).update(tags)
        return acked, nacked, frames


def _invalid(arg: str, suffix: str) -> str:
    return f"PRECONDITION_FAILED - invalid arg '{arg}' for queue 'q' in vhost '/': {suffix}"


# ---- validation -------------------------------------------------------------------------

@pytest.mark.parametrize("args, arg, suffix", [
    ({"x-max-length": -1}, "x-max-length", "{value_negative,-1}"),
    ({"x-max-length": "abc"}, "x-max-length", '"expected integer, got longstr"'),
    ({"x-max-length-bytes": -1}, "x-max-length-bytes", "{value_negative,-1}"),
    ({"x-overflow": "bar"}, "x-overflow", "invalid_overflow"),
])
def test_invalid_limit_arguments(conn, args, arg, suffix):
    with channel_closed(406, _invalid(arg, suffix)):
        conn.channel().queue_declare("q", arguments=args)


@pytest.mark.parametrize("overflow", ["drop-head", "reject-publish", "reject-publish-dlx"])
def test_overflow_values_accepted(ch, overflow):
    ch.queue_declare("q", arguments={"x-overflow": overflow, "x-max-length": 1})


# ---- drop-head (default) ----------------------------------------------------------------

def test_max_length_drops_the_head(ch):
    ch.queue_declare("q", arguments={"x-max-length": 2})
    for i in range(5):
        ch.basic_publish("", "q", f"m{i}".encode())
    assert count(ch, "q") == 2
    assert drain(ch, "q") == [b"m3", b"m4"]


def test_max_length_bytes_drops_the_head(ch):
    ch.queue_declare("q", arguments={"x-max-length-bytes": 10})
    for i in range(5):
        ch.basic_publish("", "q", f"abc{i}".encode())  # 4 bytes each: two fit
    assert drain(ch, "q") == [b"abc3", b"abc4"]


def test_max_length_counts_only_ready_messages(ch):
    ch.queue_declare("q", arguments={"x-max-length": 1})
    ch.basic_publish("", "q", b"a")
    method, _, _ = ch.basic_get("q")  # a is unacked, not ready
    ch.basic_publish("", "q", b"b")
    assert count(ch, "q") == 1
    ch.basic_ack(method.delivery_tag)
    assert drain(ch, "q") == [b"b"]


def test_drop_head_publishes_are_acked_under_confirms(ch):
    ch.queue_declare("q", arguments={"x-max-length": 1})
    ch.confirm_delivery()
    ch.basic_publish("", "q", b"1")
    ch.basic_publish("", "q", b"2")  # would raise NackError on a nack
    assert drain(ch, "q") == [b"2"]


def test_drop_head_raw_confirms_are_acks_only(broker):
    raw = ConfirmingRaw(broker.port)
    raw.declare("q", {"x-max-length": 1})
    raw.select()
    raw.publish("q", b"1")
    raw.publish("q", b"2")
    acked, nacked, _ = raw.confirms(2)
    assert (acked, nacked) == ({1, 2}, set())
    raw.close()


# ---- reject-publish ---------------------------------------------------------------------

def test_reject_publish_nacks_with_pika(ch):
    ch.queue_declare("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    ch.basic_publish("", "q", b"kept")
    with pytest.raises(NackError) as info:
        ch.basic_publish("", "q", b"refused")
    assert info.value.messages == []  # a nack with no basic.return before it
    assert ch.is_open
    assert drain(ch, "q") == [b"kept"]
    ch.basic_publish("", "q", b"room again")  # space freed: accepted
    assert drain(ch, "q") == [b"room again"]


def test_reject_publish_without_confirms_drops_silently(ch):
    ch.queue_declare("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.basic_publish("", "q", b"kept")
    ch.basic_publish("", "q", b"dropped")
    assert drain(ch, "q") == [b"kept"]


def test_reject_publish_max_length_bytes(ch):
    ch.queue_declare("q", arguments={"x-max-length-bytes": 5, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    ch.basic_publish("", "q", b"abcd")
    with pytest.raises(NackError):
        ch.basic_publish("", "q", b"ef")
    assert drain(ch, "q") == [b"abcd"]


def test_reject_publish_raw_confirm_frames(broker):
    raw = ConfirmingRaw(broker.port)
    raw.declare("q", {"x-max-length": 1, "x-overflow": "reject-publish"})
    raw.select()
    for i in range(3):
        raw.publish("q", f"m{i}".encode())
    acked, nacked, frames = raw.confirms(3)
    assert (acked, nacked) == ({1}, {2, 3})
    nacks = [f for f in frames if isinstance(f, C.Basic.Nack)]
    assert nacks and all(n.requeue for n in nacks), nacks
    raw.close()


def test_reject_publish_mandatory_is_nacked_not_returned(broker):
    raw = ConfirmingRaw(broker.port)
    raw.declare("q", {"x-max-length": 1, "x-overflow": "reject-publish"})
    raw.select()
    raw.publish("q", b"kept")
    raw.publish("q", b"full", mandatory=True)
    acked, nacked, frames = raw.confirms(2)
    assert (acked, nacked) == ({1}, {2})
    assert not [f for f in frames if isinstance(f, C.Basic.Return)], frames
    raw.close()


async def test_reject_publish_aio_pika_delivery_error(broker):
    conn = await aio_pika.connect(broker.url)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        q = await ch.declare_queue("q", arguments={"x-max-length": 1,
                                                   "x-overflow": "reject-publish"})
        await asyncio.wait_for(ch.default_exchange.publish(aio_pika.Message(b"kept"), "q"), 5)
        with pytest.raises(aio_pika.exceptions.DeliveryError) as info:
            await asyncio.wait_for(
                ch.default_exchange.publish(aio_pika.Message(b"refused"), "q"), 5)
        assert isinstance(info.value.frame, C.Basic.Nack)
        msg = await q.get(no_ack=True)
        assert msg.body == b"kept"
        assert await q.get(no_ack=True, fail=False) is None


def test_fanout_with_one_full_reject_publish_queue_is_nacked(ch):
    ch.exchange_declare("fan", "fanout")
    ch.queue_declare("full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.queue_declare("normal")
    ch.queue_bind("full", "fan")
    ch.queue_bind("normal", "fan")
    ch.confirm_delivery()
    ch.basic_publish("fan", "", b"first")
    with pytest.raises(NackError):
        ch.basic_publish("fan", "", b"second")
    assert drain(ch, "full") == [b"first"]
    assert drain(ch, "normal") == [b"first", b"second"]  # stored, though nacked


def test_reject_publish_dlx_nacks_and_dead_letters(ch):
    ch.exchange_declare("dlx", "fanout")
    ch.queue_declare("dlq")
    ch.queue_bind("dlq", "dlx")
    ch.queue_declare("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish-dlx",
                                     "x-dead-letter-exchange": "dlx"})
    ch.confirm_delivery()
    ch.basic_publish("", "q", b"first")
    with pytest.raises(NackError):
        ch.basic_publish("", "q", b"second")
    _, props, body = get_within(ch, "dlq")
    assert body == b"second"
    assert props.headers["x-death"][0]["reason"] == "maxlen"
    assert drain(ch, "q") == [b"first"]


# ---- maxlen dead-lettering (section 10) -------------------------------------------------

PROPS = dict(headers={"h": "v"}, message_id="mid-1", content_type="text/plain",
             delivery_mode=2)


def assert_maxlen_death(props) -> None:  # type: ignore[no-untyped-def]
    headers = {k: v for k, v in props.headers.items() if not k.startswith("x-last-death-")}
    (entry,) = headers.pop("x-death")
    stamp = entry.pop("time")
    assert isinstance(stamp, datetime.datetime)
    assert abs((stamp - datetime.datetime.now(datetime.UTC)).total_seconds()) < 10
    assert entry == {"count": 1, "reason": "maxlen", "queue": "src", "exchange": "",
                     "routing-keys": ["src"]}
    assert headers == {"h": "v", "x-first-death-exchange": "", "x-first-death-queue": "src",
                       "x-first-death-reason": "maxlen"}
    assert (props.message_id, props.content_type, props.delivery_mode) == \
        ("mid-1", "text/plain", 2)


@pytest.mark.parametrize("overflow, dead, kept", [
    ("drop-head", b"first", b"second"),
    ("reject-publish-dlx", b"second", b"first"),
])
def test_maxlen_dead_letters(ch, overflow, dead, kept):
    ch.exchange_declare("dlx", "fanout")
    ch.queue_declare("dlq")
    ch.queue_bind("dlq", "dlx")
    ch.queue_declare("src", arguments={"x-dead-letter-exchange": "dlx", "x-max-length": 1,
                                       "x-overflow": overflow})
    ch.basic_publish("", "src", b"first", pika.BasicProperties(**PROPS))
    ch.basic_publish("", "src", b"second", pika.BasicProperties(**PROPS))
    method, props, body = get_within(ch, "dlq")
    assert (method.exchange, method.routing_key, body) == ("dlx", "src", dead)
    assert_maxlen_death(props)
    assert drain(ch, "src") == [kept]
    assert count(ch, "dlq") == 0


def test_drop_head_dead_letters_each_dropped_message_in_order(ch):
    ch.exchange_declare("dlx", "fanout")
    ch.queue_declare("dlq")
    ch.queue_bind("dlq", "dlx")
    ch.queue_declare("src", arguments={"x-dead-letter-exchange": "dlx", "x-max-length": 2})
    for i in range(5):
        ch.basic_publish("", "src", f"m{i}".encode())
    assert drain(ch, "src") == [b"m3", b"m4"]
    assert drain(ch, "dlq") == [b"m0", b"m1", b"m2"]
