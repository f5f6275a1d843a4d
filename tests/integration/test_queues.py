"""Queue behaviour: declare rules and x-arguments, exclusivity, auto-delete, delete/purge.

Expected replies are RabbitMQ 3.10's (see rabbitmq-behaviour.md section 4).
"""

import asyncio
import re

import aio_pika
import pytest
from pamqp import commands as C
from pika_helpers import LOCKED, channel_closed, connect, drain, pump
from raw_client import RawClient


def _inequivalent(arg: str, q: str, detail: str) -> str:
    return (f"PRECONDITION_FAILED - inequivalent arg '{arg}' for queue '{q}' in vhost '/': "
            f"{detail}")


def _invalid(arg: str, q: str, suffix: str) -> str:
    return f"PRECONDITION_FAILED - invalid arg '{arg}' for queue '{q}' in vhost '/': {suffix}"


# ---- declare -----------------------------------------------------------------------------

def test_server_named_queue(ch):
    for kwargs in ({"exclusive": True}, {}, {"durable": True}):
        name = ch.queue_declare("", **kwargs).method.queue
        assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", name), name


def test_declare_ok_counts(conn, ch):
    ok = ch.queue_declare("counted")
    assert (ok.method.queue, ok.method.message_count, ok.method.consumer_count) == \
        ("counted", 0, 0)
    for i in range(5):
        ch.basic_publish("", "counted", b"%d" % i)
    ok = ch.queue_declare("counted")
    assert (ok.method.message_count, ok.method.consumer_count) == (5, 0)
    consumer_ch = conn.channel()
    consumer_ch.basic_qos(prefetch_count=2)
    got = []
    consumer_ch.basic_consume("counted", lambda c, m, p, b: got.append(b))
    pump(conn, lambda: len(got) == 2)
    for passive in (False, True):
        ok = ch.queue_declare("counted", passive=passive)
        assert (ok.method.message_count, ok.method.consumer_count) == (3, 1)


@pytest.mark.parametrize("name", ["cat-missing-q", "amq.q"], ids=["missing", "reserved"])
def test_passive_declare_missing_is_404(ch, name):
    """A passive declare only looks the name up, a reserved one too."""
    with channel_closed(404, f"NOT_FOUND - no queue '{name}' in vhost '/'"):
        ch.queue_declare(name, passive=True)


def test_passive_declare_empty_name_has_no_shortcut(ch):
    ch.queue_declare("declared-first")
    with channel_closed(404, "NOT_FOUND - no queue '' in vhost '/'"):
        ch.queue_declare("", passive=True)


def test_reserved_prefix(ch):
    with channel_closed(403, "ACCESS_REFUSED - queue name 'amq.q' contains reserved prefix "
                             "'amq.*'"):
        ch.queue_declare("amq.q")


@pytest.mark.parametrize("first,second,arg,detail", [
    ({}, {"durable": True}, "durable", "received 'true' but current is 'false'"),
    ({"durable": True}, {}, "durable", "received 'false' but current is 'true'"),
    ({}, {"auto_delete": True}, "auto_delete", "received 'true' but current is 'false'"),
    ({"auto_delete": True}, {}, "auto_delete", "received 'false' but current is 'true'"),
    ({}, {"arguments": {"x-message-ttl": 1000}}, "x-message-ttl",
     "received the value '1000' of type 'signedint' but current is none"),
    ({"arguments": {"x-message-ttl": 1000}}, {}, "x-message-ttl",
     "received none but current is the value '1000' of type 'signedint'"),
    ({"arguments": {"x-message-ttl": 1000}}, {"arguments": {"x-message-ttl": 2000}},
     "x-message-ttl", "received '2000' but current is '1000'"),
    ({"arguments": {"x-max-length": 10}}, {"arguments": {"x-max-length": 20}},
     "x-max-length", "received '20' but current is '10'"),
    ({"durable": True}, {"durable": True, "arguments": {"x-queue-type": "quorum"}},
     "x-queue-type", "received the value 'quorum' of type 'longstr' but current is none"),
    ({"arguments": {"x-max-priority": 5}}, {"arguments": {"x-max-priority": 10}},
     "x-max-priority", "received '10' but current is '5'"),
    ({"arguments": {"x-expires": 100000}}, {"arguments": {"x-expires": 200000}},
     "x-expires", "received '200000' but current is '100000'"),
    ({"arguments": {"x-overflow": "drop-head"}}, {"arguments": {"x-overflow": "reject-publish"}},
     "x-overflow", "received 'reject-publish' but current is 'drop-head'"),
    ({}, {"arguments": {"x-dead-letter-exchange": "cat-dlx"}}, "x-dead-letter-exchange",
     "received the value 'cat-dlx' of type 'longstr' but current is none"),
    ({}, {"arguments": {"x-single-active-consumer": True}}, "x-single-active-consumer",
     "received the value 'true' of type 'bool' but current is none"),
])
def test_redeclare_inequivalent(ch, first, second, arg, detail):
    ch.queue_declare("q1", **first)
    with channel_closed(406, _inequivalent(arg, "q1", detail)):
        ch.queue_declare("q1", **second)


def test_redeclare_equivalent(ch):
    ch.queue_declare("same-q", arguments={"x-message-ttl": 1000, "x-foo": "a"})
    ch.queue_declare("same-q", arguments={"x-message-ttl": 1000, "x-foo": "b"})
    ch.queue_declare("same-q", arguments={"x-message-ttl": 1000, "x-queue-type": "classic"})
    ch.queue_declare("classic-q", arguments={"x-queue-type": "classic"})
    ok = ch.queue_declare("classic-q")
    assert ok.method.queue == "classic-q"


async def test_integer_width_ignored(broker):
    conn = connect(broker)
    conn.channel().queue_declare("width-q", arguments={"x-message-ttl": 1000})  # 'I'
    aconn = await aio_pika.connect(broker.url)
    async with aconn:
        ch = await aconn.channel()
        # pamqp encodes 1000 as a short ('s'); RabbitMQ compares integer values only
        q = await ch.declare_queue("width-q", arguments={"x-message-ttl": 1000})
        assert q.name == "width-q"
        assert not ch.is_closed
    conn.close()


async def test_texts_name_the_integer_type_sent(broker):
    """RabbitMQ names the wire type of the argument it quotes: pamqp (aio-pika) sends 1000 as a
    short, 5 as a byte, a float as 'f'; pika sends ints as signedint (above)."""
    aconn = await aio_pika.connect(broker.url)
    async with aconn:
        ch = await aconn.channel()
        await ch.declare_queue("typed-q")
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed) as info:
            await ch.declare_queue("typed-q", arguments={"x-message-ttl": 1000})
        assert _inequivalent("x-message-ttl", "typed-q", "received the value '1000' of type "
                             "'short' but current is none") in repr(info.value)
        ch = await aconn.channel()
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed) as info:
            await ch.declare_queue("typed-q2", arguments={"x-queue-type": 5})
        assert "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue 'typed-q2' in " \
            "vhost '/': {unacceptable_type,byte}" in repr(info.value)


@pytest.mark.parametrize("args,arg,suffix", [
    ({"x-max-priority": 300}, "x-max-priority", "{max_value_exceeded,300}"),
    ({"x-max-priority": -1}, "x-max-priority", "{value_negative,-1}"),
    ({"x-max-priority": "5"}, "x-max-priority", '"expected integer, got longstr"'),
    ({"x-message-ttl": -1}, "x-message-ttl", "{value_negative,-1}"),
    ({"x-message-ttl": "abc"}, "x-message-ttl", '"expected integer, got longstr"'),
    ({"x-expires": 0}, "x-expires", "{value_zero,0}"),
    ({"x-expires": -1}, "x-expires", "{value_negative,-1}"),
    ({"x-queue-type": "foo"}, "x-queue-type", "\"unsupported queue type 'foo'\""),
    ({"x-overflow": "bar"}, "x-overflow", "invalid_overflow"),
    ({"x-max-length": -1}, "x-max-length", "{value_negative,-1}"),
    ({"x-queue-mode": "foo"}, "x-queue-mode", "\"unsupported queue mode 'foo'\""),
    ({"x-dead-letter-routing-key": "rk"}, "x-dead-letter-routing-key",
     "routing_key_but_no_dlx_defined"),
    ({"x-single-active-consumer": "yes"}, "x-single-active-consumer",
     "{unacceptable_type,longstr}"),
])
def test_invalid_arguments(ch, args, arg, suffix):
    with channel_closed(406, _invalid(arg, "bad-q", suffix)):
        ch.queue_declare("bad-q", arguments=args)


@pytest.mark.parametrize("args", [{"x-max-priority": 255}, {"x-max-priority": 0},
                                  {"x-message-ttl": 0}, {"x-message-ttl": 5000000000},
                                  {"x-overflow": "reject-publish-dlx"}])
def test_valid_edge_arguments(ch, args):
    assert ch.queue_declare("edge-q", arguments=args).method.queue == "edge-q"


def test_quorum_requires_durable(ch):
    with channel_closed(406, "PRECONDITION_FAILED - invalid property 'non-durable' for queue "
                             "'qq' in vhost '/'"):
        ch.queue_declare("qq", arguments={"x-queue-type": "quorum"})


# ---- exclusive -------------------------------------------------------------------------

@pytest.mark.parametrize("op", [
    lambda ch, q: ch.queue_declare(q, exclusive=True),
    lambda ch, q: ch.queue_declare(q),
    lambda ch, q: ch.queue_declare(q, passive=True),
    lambda ch, q: ch.basic_consume(q, lambda *a: None),
    lambda ch, q: ch.basic_get(q),
    lambda ch, q: ch.queue_purge(q),
    lambda ch, q: ch.queue_delete(q),
    lambda ch, q: ch.queue_bind(q, "amq.direct", "k"),
], ids=["declare-excl", "declare", "passive", "consume", "get", "purge", "delete", "bind"])
def test_exclusive_queue_locked_for_others(broker, ch, op):
    ch.queue_declare("mine", exclusive=True)
    other = connect(broker)
    with channel_closed(405, LOCKED.format("mine")):
        op(other.channel(), "mine")
    other.close()


def test_exclusive_queue_unbind_and_publish_from_other_connection(broker, ch):
    ch.queue_declare("mine", exclusive=True)
    ch.queue_bind("mine", "amq.direct", "k")
    other = connect(broker)
    och = other.channel()
    och.queue_unbind("mine", "amq.direct", "k")
    och.basic_publish("", "mine", b"via default")
    och.basic_publish("amq.direct", "k", b"unbound")
    och.queue_declare("", exclusive=True)  # round trip: publishes are processed
    other.close()
    assert drain(ch, "mine") == [b"via default"]


def test_exclusive_flag_mismatch_same_connection(ch):
    ch.queue_declare("plain")
    with channel_closed(405, LOCKED.format("plain")):
        ch.queue_declare("plain", exclusive=True)


def test_exclusive_queue_removed_with_connection(broker):
    owner = connect(broker)
    owner.channel().queue_declare("owned", exclusive=True)
    owner.close()
    other = connect(broker)
    with channel_closed(404, "NOT_FOUND - no queue 'owned' in vhost '/'"):
        other.channel().queue_declare("owned", passive=True)
    other.close()


# ---- auto-delete -------------------------------------------------------------------------

def test_auto_delete_survives_unconsumed_connection_close(broker):
    first = connect(broker)
    first.channel().queue_declare("ad-idle", auto_delete=True)
    first.close()
    second = connect(broker)
    assert second.channel().queue_declare("ad-idle", passive=True).method.queue == "ad-idle"
    second.close()


def test_auto_delete_after_last_consumer(conn, ch):
    ch.queue_declare("ad-q", auto_delete=True)
    tag1 = ch.basic_consume("ad-q", lambda *a: None)
    tag2 = ch.basic_consume("ad-q", lambda *a: None)
    ch.basic_cancel(tag1)
    assert ch.queue_declare("ad-q", passive=True, auto_delete=True).method.consumer_count == 1
    ch.basic_cancel(tag2)
    with channel_closed(404, "NOT_FOUND - no queue 'ad-q' in vhost '/'"):
        ch.queue_declare("ad-q", passive=True)


def test_auto_delete_when_consumer_channel_closes(conn, ch):
    ch.queue_declare("ad-ch", auto_delete=True)
    consumer_ch = conn.channel()
    consumer_ch.basic_consume("ad-ch", lambda *a: None)
    consumer_ch.close()
    with channel_closed(404, "NOT_FOUND - no queue 'ad-ch' in vhost '/'"):
        ch.queue_declare("ad-ch", passive=True)


# ---- delete / purge ------------------------------------------------------------------------

def test_purge_count(ch):
    ch.queue_declare("pq")
    for i in range(4):
        ch.basic_publish("", "pq", b"%d" % i)
    assert ch.queue_purge("pq").method.message_count == 4
    assert ch.queue_purge("pq").method.message_count == 0
    assert drain(ch, "pq") == []


def test_purge_missing(ch):
    with channel_closed(404, "NOT_FOUND - no queue 'cat-missing-q' in vhost '/'"):
        ch.queue_purge("cat-missing-q")


def test_delete_count_and_missing(ch):
    ch.queue_declare("dq")
    ch.basic_publish("", "dq", b"a")
    ch.basic_publish("", "dq", b"b")
    assert ch.queue_delete("dq").method.message_count == 2
    assert ch.queue_delete("dq").method.message_count == 0
    assert ch.queue_delete("cat-missing-q").method.message_count == 0


def test_delete_if_empty(ch):
    ch.queue_declare("full")
    ch.basic_publish("", "full", b"a")
    ch.basic_publish("", "full", b"b")
    with channel_closed(406, "PRECONDITION_FAILED - queue 'full' in vhost '/' not empty"):
        ch.queue_delete("full", if_empty=True)


@pytest.mark.parametrize("if_empty", [False, True])
def test_delete_if_unused(conn, ch, if_empty):
    ch.queue_declare("busy")
    ch.basic_publish("", "busy", b"a")
    conn.channel().basic_consume("busy", lambda *a: None)
    with channel_closed(406, "PRECONDITION_FAILED - queue 'busy' in vhost '/' in use"):
        ch.queue_delete("busy", if_unused=True, if_empty=if_empty)


def test_delete_if_unused_and_empty_on_idle_queue(ch):
    ch.queue_declare("idle")
    assert ch.queue_delete("idle", if_unused=True, if_empty=True).method.message_count == 0


# ---- bind / the "" shortcut ----------------------------------------------------------------

def test_bind_unbind(ch):
    ch.queue_declare("bq")
    ch.queue_bind("bq", "amq.direct", "k")
    ch.basic_publish("amq.direct", "k", b"bound")
    assert drain(ch, "bq") == [b"bound"]
    ch.queue_unbind("bq", "amq.direct", "k")
    ch.basic_publish("amq.direct", "k", b"unbound")
    assert drain(ch, "bq") == []


def test_last_declared_queue_shortcut(ch):
    name = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind("", "amq.direct", "short")
    ch.basic_publish("amq.direct", "short", b"x")
    ch.basic_publish("amq.direct", "short", b"y")
    method, _props, body = ch.basic_get("", auto_ack=True)
    assert (body, method.message_count) == (b"x", 1)
    assert ch.queue_purge("").method.message_count == 1
    assert ch.queue_delete("").method.message_count == 0
    with channel_closed(404, f"NOT_FOUND - no queue '{name}' in vhost '/'"):
        ch.queue_declare(name, passive=True)


@pytest.mark.parametrize("op", [
    lambda ch: ch.queue_bind("", "amq.direct", "k"),
    lambda ch: ch.basic_consume("", lambda *a: None),
    lambda ch: ch.queue_delete(""),
    lambda ch: ch.queue_purge(""),
    lambda ch: ch.basic_get(""),
], ids=["bind", "consume", "delete", "purge", "get"])
def test_no_previously_declared_queue(ch, op):
    with channel_closed(404, "NOT_FOUND - no previously declared queue"):
        op(ch)


def test_get_shortcut_on_a_never_opened_channel_closes_only_that_channel(broker):
    """RabbitMQ expands basic.get's "" before it checks the channel: 404 on channel 7 (which
    was never opened), not the 504 connection error any other method gets."""
    raw = RawClient.open(broker.port)
    try:
        raw.send(7, C.Basic.Get(queue=""))
        raw.expect_close(404, "NOT_FOUND - no previously declared queue", (60, 70),
                         C.Channel.Close, 7)
        raw.send(7, C.Channel.CloseOk())
        raw.open_channel(7)
        raw.declare("q", channel=7)
    finally:
        raw.close()


def test_shortcut_forgotten_with_channel(conn, ch):
    ch.queue_declare("remembered")
    ch.close()
    fresh = conn.channel()
    with channel_closed(404, "NOT_FOUND - no previously declared queue"):
        fresh.queue_purge("")


# ---- consumer of a deleted queue ---------------------------------------------------------

def test_consumer_cancelled_when_queue_deleted(conn, ch):
    ch.queue_declare("doomed")
    cancelled = []
    consumer_ch = conn.channel()
    consumer_ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method))
    tag = consumer_ch.basic_consume("doomed", lambda *a: None)
    ch.queue_delete("doomed")
    pump(conn, lambda: cancelled)
    assert cancelled[0].consumer_tag == tag
    assert consumer_ch.is_open


async def test_consumer_cancelled_when_queue_deleted_aio_pika(broker):
    conn = await aio_pika.connect(broker.url)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue("doomed-aio")

        async def ignore(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
            return None

        tag = await q.consume(ignore)
        amqp_channel = await ch.get_underlay_channel()  # drops the tag on basic.cancel
        assert tag in amqp_channel.consumers
        other = await conn.channel()
        await other.queue_delete("doomed-aio")
        for _ in range(150):
            if tag not in amqp_channel.consumers:
                break
            await asyncio.sleep(0.02)
        assert tag not in amqp_channel.consumers, "basic.cancel not received"
        assert not ch.is_closed
