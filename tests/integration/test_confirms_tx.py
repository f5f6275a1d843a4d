"""Publisher confirms and transactions against RabbitMQ 3.10 behaviour.

Reply codes and texts are from /work/shared/rabbitmq-behaviour.md section 6. Frame ordering
(basic.return before basic.ack / tx.commit-ok) is checked over raw pamqp frames.
"""

from __future__ import annotations

import asyncio

import aio_pika
import pika
import pytest
from pamqp import body as pamqp_body
from pamqp import commands as C
from pamqp import header as pamqp_header
from pika.exceptions import UnroutableError
from pika_helpers import channel_closed, connect, count, expect_channel_error, settle
from raw_client import RawClient, content_frames

pytestmark = pytest.mark.deadline(30)


# ---- confirms ---------------------------------------------------------------------------
def test_pika_confirmed_publishes(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    ch.confirm_delivery()
    for i in range(20):
        ch.basic_publish("", "q", f"m{i}".encode())  # raises NackError on a nack
    ch.basic_publish("amq.direct", "nowhere", b"unroutable")  # not mandatory: plain ack
    assert count(ch, "q") == 20
    conn.close()


def test_pika_mandatory_unroutable_in_confirm_mode(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.confirm_delivery()
    # pika raises UnroutableError only when basic.return arrives *before* the basic.ack
    with pytest.raises(UnroutableError) as info:
        ch.basic_publish("amq.direct", "nowhere", b"back", mandatory=True,
                         properties=pika.BasicProperties(message_id="m-1"))
    (returned,) = info.value.messages
    assert (returned.method.reply_code, returned.method.reply_text) == (312, "NO_ROUTE")
    assert (returned.method.exchange, returned.method.routing_key) == ("amq.direct", "nowhere")
    assert returned.body == b"back"
    assert returned.properties.message_id == "m-1"
    assert ch.is_open
    conn.close()


def test_confirm_tags_count_only_publishes_after_select(broker):
    raw = RawClient.open(broker.port)
    raw.declare("q")
    raw.publish("q", b"before")  # not counted
    raw.select()
    for i in range(3):
        raw.publish("q", f"m{i}".encode())
    raw.acked_upto(3)
    raw.publish("nowhere", b"lost", exchange="amq.direct", mandatory=True)
    ret = raw.expect(C.Basic.Return)
    assert (ret.reply_code, ret.reply_text, ret.exchange, ret.routing_key) == \
        (312, "NO_ROUTE", "amq.direct", "nowhere")
    assert raw.expect(pamqp_header.ContentHeader).body_size == 4
    assert raw.expect(pamqp_body.ContentBody).value == b"lost"
    ack = raw.expect(C.Basic.Ack)
    assert ack.delivery_tag == 4
    raw.close()


def test_many_publishes_in_one_go_are_all_confirmed(broker):
    raw = RawClient.open(broker.port)
    raw.declare("q")
    raw.select()
    frames = b"".join(content_frames(1, C.Basic.Publish(exchange="", routing_key="q"), b"x")
                      for _ in range(200))
    raw.send_raw(frames)
    raw.acked_upto(200)
    raw.close()


def test_confirm_select_twice_and_nowait(broker):
    raw = RawClient.open(broker.port)
    raw.select()
    raw.select()
    raw.open_channel(2)
    raw.send(2, C.Confirm.Select(nowait=True))
    raw.send(2, C.Basic.Qos())
    channel, reply = raw.recv()
    assert channel == 2 and isinstance(reply, C.Basic.QosOk), reply  # nothing in between
    raw.close()


async def test_aio_pika_publisher_confirms_1000(broker):
    conn = await aio_pika.connect(broker.url)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        q = await ch.declare_queue("confirmed")
        results = await asyncio.wait_for(asyncio.gather(*(
            ch.default_exchange.publish(aio_pika.Message(str(i).encode()),
                                        routing_key="confirmed")
            for i in range(1000))), 20)
        assert len(results) == 1000
        assert all(isinstance(r, C.Basic.Ack) for r in results), \
            {type(r).__name__ for r in results}
        declared = await ch.declare_queue("confirmed", passive=True)
        assert declared.declaration_result.message_count == 1000
        first = await q.get(no_ack=True)
        assert first.body == b"0"


@pytest.mark.parametrize("first, second, text", [
    ("confirm_delivery", "tx_select", "cannot switch from confirm to tx mode"),
    ("tx_select", "confirm_delivery", "cannot switch from tx to confirm mode"),
], ids=["confirm-then-tx", "tx-then-confirm"])
def test_switching_between_confirm_and_tx_mode(broker, first, second, text):
    conn = connect(broker)
    ch = conn.channel()
    getattr(ch, first)()
    with channel_closed(406, f"PRECONDITION_FAILED - {text}"):
        getattr(ch, second)()
    assert conn.is_open  # only the channel is closed (conn.close() would raise otherwise)
    conn.close()


def test_commit_and_rollback_without_select(broker):
    conn = connect(broker)
    ch = conn.channel()
    with channel_closed(406, "PRECONDITION_FAILED - channel is not transactional"):
        ch.tx_commit()
    ch = conn.channel()
    with channel_closed(406, "PRECONDITION_FAILED - channel is not transactional"):
        ch.tx_rollback()
    conn.close()


# ---- transactions -----------------------------------------------------------------------
def test_tx_select_twice(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.tx_select()
    ch.tx_select()
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"x")
    ch.tx_commit()
    assert count(ch, "q") == 1
    conn.close()


def test_publishes_invisible_until_commit(broker):
    conn = connect(broker)
    ch, watcher = conn.channel(), conn.channel()
    ch.queue_declare("q")
    ch.tx_select()
    ch.basic_publish("", "q", b"a")
    ch.basic_publish("", "q", b"b")
    assert count(watcher, "q") == 0
    assert watcher.basic_get("q") == (None, None, None)
    ch.tx_commit()
    assert count(watcher, "q") == 2
    assert [watcher.basic_get("q", auto_ack=True)[2] for _ in range(2)] == [b"a", b"b"]
    # the channel stays transactional after a commit
    ch.basic_publish("", "q", b"c")
    assert count(watcher, "q") == 0
    ch.tx_commit()
    assert count(watcher, "q") == 1
    conn.close()


def test_rollback_discards_publishes(broker):
    conn = connect(broker)
    ch, watcher = conn.channel(), conn.channel()
    ch.queue_declare("q")
    ch.tx_select()
    ch.basic_publish("", "q", b"gone")
    ch.tx_rollback()
    ch.tx_commit()
    assert count(watcher, "q") == 0
    ch.basic_publish("", "q", b"kept")
    ch.tx_commit()
    assert watcher.basic_get("q", auto_ack=True)[2] == b"kept"
    conn.close()


def ack_in_tx(ch):
    """Publish m0 to "q", then in a transaction get it and ack it (not committed yet)."""
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"m0")
    ch.tx_select()
    method, _, body = ch.basic_get("q")
    assert body == b"m0"
    ch.basic_ack(method.delivery_tag)
    return method


def test_ack_then_rollback_keeps_message_unacked(broker):
    conn = connect(broker)
    ch, watcher = conn.channel(), conn.channel()
    method = ack_in_tx(ch)
    ch.tx_rollback()
    assert count(watcher, "q") == 0  # still unacked, not requeued
    ch.basic_ack(method.delivery_tag)  # the tag is still known
    ch.tx_commit()
    ch.close()
    assert count(watcher, "q") == 0  # acked for good: nothing comes back
    conn.close()


def test_rolled_back_ack_is_requeued_on_close(broker):
    conn = connect(broker)
    ch, watcher = conn.channel(), conn.channel()
    ack_in_tx(ch)
    ch.tx_rollback()
    ch.close()
    method, _, body = watcher.basic_get("q", auto_ack=True)
    assert (body, method.redelivered) == (b"m0", True)
    conn.close()


def test_ack_is_applied_at_commit(broker):
    conn = connect(broker)
    ch = conn.channel()
    method = ack_in_tx(ch)
    ch.tx_commit()
    ch.basic_ack(method.delivery_tag)  # committed: the tag is gone now
    with channel_closed(406, f"PRECONDITION_FAILED - unknown delivery tag {method.delivery_tag}"):
        ch.tx_commit()
    conn.close()


def test_unknown_tag_in_tx_fails_at_the_ack(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.tx_select()
    ch.basic_ack(99)
    # the error comes from the ack itself: a qos (not a commit) already sees the close
    expect_channel_error(ch, 406, "PRECONDITION_FAILED - unknown delivery tag 99")
    conn.close()


def test_mandatory_unroutable_in_tx_returned_at_commit(broker):
    raw = RawClient.open(broker.port)
    raw.send(1, C.Tx.Select())
    raw.expect(C.Tx.SelectOk)
    raw.publish("nowhere", b"tx-lost", exchange="amq.direct", mandatory=True)
    raw.send(1, C.Basic.Qos())
    raw.expect(C.Basic.QosOk)  # no basic.return before the commit
    raw.send(1, C.Tx.Commit())
    ret = raw.expect(C.Basic.Return)
    assert (ret.reply_code, ret.reply_text, ret.exchange, ret.routing_key) == \
        (312, "NO_ROUTE", "amq.direct", "nowhere")
    raw.expect(pamqp_header.ContentHeader)
    assert raw.expect(pamqp_body.ContentBody).value == b"tx-lost"
    raw.expect(C.Tx.CommitOk)
    raw.close()


def test_pika_return_in_tx_only_after_commit(broker):
    conn = connect(broker)
    ch = conn.channel()
    returned: list = []
    ch.add_on_return_callback(lambda _c, m, _p, b: returned.append((m.reply_code, b)))
    ch.tx_select()
    ch.basic_publish("amq.direct", "nowhere", b"x", mandatory=True)
    settle(conn)
    assert returned == []
    ch.tx_commit()
    settle(conn)
    assert returned == [(312, b"x")]
    conn.close()


def test_commit_ok_waits_for_the_disk_when_persistent_messages_went_to_durable_queues(broker):
    """As in RabbitMQ, commit-ok means the persistent messages are on disk: it waits for the
    group commit; a commit of transient messages does not."""
    held: list = []
    stores = broker.node.stores
    real = stores.when_durable
    broker.call(setattr, stores, "when_durable", held.append)
    try:
        raw = RawClient.open(broker.port, timeout=2.0)
        raw.send(1, C.Queue.Declare(queue="tx-durable-q", durable=True))
        raw.expect(C.Queue.DeclareOk)
        raw.send(1, C.Tx.Select())
        raw.expect(C.Tx.SelectOk)
        raw.publish("tx-durable-q", b"transient")
        raw.send(1, C.Tx.Commit())
        raw.expect(C.Tx.CommitOk)  # nothing persistent: no wait
        assert held == []
        raw.publish("tx-durable-q", b"persistent", props=C.Basic.Properties(delivery_mode=2))
        raw.send(1, C.Tx.Commit())
        raw.send(1, C.Basic.Qos())
        # The qos-ok must not be preceded by commit-ok: the commit is still waiting.
        _number, frame = raw.recv("qos-ok")
        assert isinstance(frame, C.Basic.QosOk), frame
        assert len(held) == 1
        broker.call(held[0], True)
        raw.expect(C.Tx.CommitOk)
        raw.close()
    finally:
        broker.call(setattr, stores, "when_durable", real)


@pytest.mark.parametrize("durable", [False, True])
def test_commit_with_a_publish_the_queue_refused_fails(broker, durable):
    """RabbitMQ 3.10.8 (probed): a reject-publish queue that refuses a publish of the commit
    fails it with 406 ``partial tx completion`` on tx.commit; what it took stays."""
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("tx-full", durable=durable,
                     arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.tx_select()
    for i in range(3):
        ch.basic_publish("", "tx-full", b"m%d" % i, pika.BasicProperties(delivery_mode=2))
    with channel_closed(406, "PRECONDITION_FAILED - partial tx completion"):
        ch.tx_commit()
    ch = conn.channel()
    assert count(ch, "tx-full") == 1
    ch.tx_select()  # a commit with nothing refused is fine again
    ch.basic_publish("", "tx-full", b"late")
    ch.queue_purge("tx-full")
    ch.tx_commit()
    conn.close()


def test_commit_whose_messages_did_not_reach_the_disk_fails(broker):
    """A failed fsync: the commit is not confirmed, RabbitMQ's 406 ``partial tx completion``
    (what it answers when a queue does not confirm a publish of the commit)."""
    held: list = []
    stores = broker.node.stores
    real = stores.when_durable
    broker.call(setattr, stores, "when_durable", held.append)
    try:
        raw = RawClient.open(broker.port, timeout=2.0)
        raw.send(1, C.Queue.Declare(queue="tx-disk-q", durable=True))
        raw.expect(C.Queue.DeclareOk)
        raw.send(1, C.Tx.Select())
        raw.expect(C.Tx.SelectOk)
        raw.publish("tx-disk-q", b"persistent", props=C.Basic.Properties(delivery_mode=2))
        raw.send(1, C.Tx.Commit())
        raw.send(1, C.Basic.Qos())
        raw.expect(C.Basic.QosOk)
        broker.call(held[0], False)
        close = raw.expect(C.Channel.Close)
        assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == \
            (406, "PRECONDITION_FAILED - partial tx completion", 90, 20)
        raw.close()
    finally:
        broker.call(setattr, stores, "when_durable", real)
