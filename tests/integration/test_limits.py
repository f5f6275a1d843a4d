"""Queue length limits (x-max-length, x-max-length-bytes, x-overflow) against RabbitMQ 3.13.

Expected values are from /work/shared/rabbitmq-behaviour.md sections 4 (argument validation),
6 (broker-sent nacks: reject-publish queues nack under confirms, with requeue set; a fanout that
hits one full reject-publish queue is nacked although another queue stored it) and 10 (maxlen
dead-lettering: drop-head dead-letters the oldest, reject-publish-dlx the new message).
"""

from __future__ import annotations

import asyncio

import aio_pika
import pika
import pytest
from pamqp import commands as C
from pika.exceptions import NackError
from pika_helpers import (
    PROPS,
    assert_single_death,
    channel_closed,
    count,
    drain,
    fanout_pair,
    get_within,
    publish_numbered,
)
from raw_client import RawClient


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
    publish_numbered(ch, "q", 5)
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
    raw = RawClient.open(broker.port)
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
    raw = RawClient.open(broker.port)
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
    raw = RawClient.open(broker.port)
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
    fanout_pair(ch)
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

@pytest.mark.parametrize("overflow, dead, kept", [
    ("drop-head", b"first", b"second"),
    ("reject-publish-dlx", b"second", b"first"),
])
def test_maxlen_dead_letters(ch, overflow, dead, kept):
    fanout_pair(ch)
    ch.queue_declare("src", arguments={"x-dead-letter-exchange": "dlx", "x-max-length": 1,
                                       "x-overflow": overflow})
    ch.basic_publish("", "src", b"first", pika.BasicProperties(**PROPS))
    ch.basic_publish("", "src", b"second", pika.BasicProperties(**PROPS))
    method, props, body = get_within(ch, "dlq")
    assert (method.exchange, method.routing_key, body) == ("dlx", "src", dead)
    assert_single_death(props, "maxlen", "src", "", ["src"])
    assert drain(ch, "src") == [kept]
    assert count(ch, "dlq") == 0


def test_drop_head_dead_letters_each_dropped_message_in_order(ch):
    fanout_pair(ch)
    ch.queue_declare("src", arguments={"x-dead-letter-exchange": "dlx", "x-max-length": 2})
    publish_numbered(ch, "src", 5)
    assert drain(ch, "src") == [b"m3", b"m4"]
    assert drain(ch, "dlq") == [b"m0", b"m1", b"m2"]
