"""Message deduplication as rabbitmq-message-deduplication does it (not installed here: its
README and source are the reference): the x-message-deduplication exchange (cache size, TTL
from the exchange or the message, disk persistence over a restart, confirms of dropped
duplicates) and the x-message-deduplication queue argument."""

from __future__ import annotations

import time

import pika
import pytest
from durability_helpers import InProcessBroker, wait_saved
from pika_helpers import channel_closed, count, drain, pump

DD = "x-message-deduplication"


def _publish(ch, exchange: str, key, routing_key: str = "", persistent: bool = False,  # type: ignore[no-untyped-def]
             **headers) -> None:
    if key is not None:
        headers["x-deduplication-header"] = key
    ch.basic_publish(exchange, routing_key, str(key).encode(), pika.BasicProperties(
        headers=headers, delivery_mode=2 if persistent else 1))


def _setup(ch, name: str = "ddx", durable: bool = False, **args) -> None:  # type: ignore[no-untyped-def]
    ch.exchange_declare(name, DD, durable=durable, arguments={"x-cache-size": 100, **args})
    for q in ("d1", "d2"):
        ch.queue_declare(q, durable=durable)
        ch.queue_bind(q, name, "ignored")


def test_duplicates_are_dropped_fanout_style(ch):
    _setup(ch)
    ch.confirm_delivery()
    for key in ["a", "b", "a", 1, "1", 1, None, None]:
        _publish(ch, "ddx", key, routing_key="any-key")
    # "1" and 1 differ (typed, as Erlang terms); no header: never a duplicate
    assert count(ch, "d1") == count(ch, "d2") == 6


def test_ttl_from_the_exchange_and_from_the_message(ch):
    _setup(ch, **{"x-cache-ttl": 300})
    ch.confirm_delivery()
    _publish(ch, "ddx", "a")
    _publish(ch, "ddx", "a")
    _publish(ch, "ddx", "m", **{"x-cache-ttl": 100})
    assert count(ch, "d1") == 2
    time.sleep(0.15)
    _publish(ch, "ddx", "m")  # its own TTL (100 ms) is over
    _publish(ch, "ddx", "a")  # the exchange's (300 ms) is not
    assert count(ch, "d1") == 3
    time.sleep(0.2)
    _publish(ch, "ddx", "a")
    assert count(ch, "d1") == 4


def test_cache_size_bounds_the_cache(ch):
    ch.exchange_declare("small", DD, arguments={"x-cache-size": 2})
    ch.queue_declare("s1")
    ch.queue_bind("s1", "small")
    ch.confirm_delivery()
    for key in ["a", "b", "c", "a"]:  # "a" was pushed out by "c"
        _publish(ch, "small", key)
    assert drain(ch, "s1") == [b"a", b"b", b"c", b"a"]


@pytest.mark.parametrize("args, text", [
    ({}, "Missing or invalid argument, 'x-cache-size' must be an integer greater than 0"),
    ({"x-cache-size": 0},
     "Missing or invalid argument, 'x-cache-size' must be an integer greater than 0"),
    ({"x-cache-size": "abc"},
     "Missing or invalid argument, 'x-cache-size' must be an integer greater than 0"),
    ({"x-cache-size": 5, "x-cache-ttl": -1},
     "Invalid argument, 'x-cache-ttl' must be an integer greater than 0"),
    ({"x-cache-size": 5, "x-cache-persistence": "tape"},
     "Invalid argument, 'x-cache-persistence' must be either 'disk' or 'memory'"),
])
def test_declare_errors(ch, args, text):
    with channel_closed(406, "PRECONDITION_FAILED - " + text):
        ch.exchange_declare("bad", DD, arguments=args)


def test_a_dropped_duplicate_is_confirmed_and_returned_if_mandatory(conn, ch):
    _setup(ch)
    ch.confirm_delivery()
    _publish(ch, "ddx", "x")
    _publish(ch, "ddx", "x")  # dropped, still acked: no exception
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish("ddx", "", b"x", pika.BasicProperties(
            headers={"x-deduplication-header": "x"}), mandatory=True)
    assert count(ch, "d1") == 1


def test_with_an_alternate_exchange_and_an_exchange_binding(ch):
    ch.exchange_declare("ae", "fanout")
    ch.queue_declare("ae.q")
    ch.queue_bind("ae.q", "ae")
    ch.exchange_declare("ddx", DD, arguments={"x-cache-size": 10, "alternate-exchange": "ae"})
    ch.exchange_declare("next", "fanout")
    ch.exchange_bind("next", "ddx")
    ch.queue_declare("n.q")
    ch.queue_bind("n.q", "next")
    ch.confirm_delivery()
    for key in ["a", "a", "b"]:
        _publish(ch, "ddx", key)
    assert drain(ch, "n.q") == [b"a", b"b"]  # each new key routed once, through the e2e hop
    ch.exchange_unbind("next", "ddx")
    _publish(ch, "ddx", "c")  # unroutable now: the alternate exchange takes it, once
    _publish(ch, "ddx", "c")
    # as with the plugin, whose route() answers [] for a duplicate: the alternate exchange
    # gets the dropped duplicates too (the second "a", and the second "c")
    assert drain(ch, "ae.q") == [b"a", b"c", b"c"]


@pytest.mark.parametrize("persistence, kept", [("disk", True), ("memory", False)])
def test_disk_cache_survives_a_restart(tmp_path, persistence, kept):
    data = tmp_path / "data"
    broker = InProcessBroker(data)
    conn = broker.connect()
    ch = conn.channel()
    _setup(ch, durable=True, **{"x-cache-persistence": persistence})
    ch.confirm_delivery()
    for key in ("a", "b"):
        _publish(ch, "ddx", key, persistent=True)
    wait_saved(data, exchanges=("ddx",), queues=("d1", "d2"), bindings=2)
    conn.close()
    broker.stop()
    broker = InProcessBroker(data)
    try:
        conn = broker.connect()
        ch = conn.channel()
        ch.confirm_delivery()
        _publish(ch, "ddx", "a")
        _publish(ch, "ddx", "c")
        assert count(ch, "d1") == (3 if kept else 4)
        conn.close()
    finally:
        broker.stop()


# ---- queue level -----------------------------------------------------------------------------
def test_queue_drops_what_it_already_holds(conn, ch):
    ch.queue_declare("qd", arguments={"x-message-deduplication": True})
    ch.confirm_delivery()
    for key in ["a", "b", "a", None, None]:
        _publish(ch, "", key, routing_key="qd")
    assert count(ch, "qd") == 4
    # delivered but unacked: still held
    ch.basic_qos(prefetch_count=1)
    got: list = []
    ch.basic_consume("qd", lambda c, m, p, b: got.append(m))
    pump(conn, lambda: got)
    assert got[0].delivery_tag and count(ch, "qd") == 3
    _publish(ch, "", "a", routing_key="qd")
    assert count(ch, "qd") == 3
    ch.basic_ack(got[0].delivery_tag)  # acked: "a" may come again
    pump(conn, lambda: len(got) == 2)
    _publish(ch, "", "a", routing_key="qd")
    pump(conn, lambda: len(got) >= 3 or count(ch, "qd") >= 3)


def test_queue_key_released_by_get_reject_purge_and_overflow(ch):
    ch.queue_declare("qd2", arguments={"x-message-deduplication": True, "x-max-length": 1})
    ch.confirm_delivery()
    _publish(ch, "", "a", routing_key="qd2")
    _publish(ch, "", "b", routing_key="qd2")  # drop-head pushes "a" out
    _publish(ch, "", "a", routing_key="qd2")  # so "a" is new again (and pushes "b" out)
    assert drain(ch, "qd2") == [b"a"]
    _publish(ch, "", "a", routing_key="qd2")
    method, _p, _b = ch.basic_get("qd2")
    ch.basic_reject(method.delivery_tag, requeue=False)
    _publish(ch, "", "a", routing_key="qd2")
    assert count(ch, "qd2") == 1
    ch.queue_purge("qd2")
    _publish(ch, "", "a", routing_key="qd2")
    assert count(ch, "qd2") == 1


def test_durable_queue_remembers_its_keys_after_a_restart(tmp_path):
    data = tmp_path / "data"
    broker = InProcessBroker(data)
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare("qdd", durable=True, arguments={"x-message-deduplication": True})
    ch.confirm_delivery()
    _publish(ch, "", "a", routing_key="qdd", persistent=True)
    wait_saved(data, queues=("qdd",))
    conn.close()
    broker.stop()
    broker = InProcessBroker(data)
    try:
        conn = broker.connect()
        ch = conn.channel()
        ch.confirm_delivery()
        _publish(ch, "", "a", routing_key="qdd")
        assert count(ch, "qdd") == 1
        conn.close()
    finally:
        broker.stop()


def test_queue_argument_must_be_a_boolean(ch):
    with channel_closed(406, "PRECONDITION_FAILED - invalid arg 'x-message-deduplication' for "
                             "queue 'q' in vhost '/': {unacceptable_type,longstr}"):
        ch.queue_declare("q", arguments={"x-message-deduplication": "yes"})
