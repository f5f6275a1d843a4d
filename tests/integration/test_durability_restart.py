"""Restart the broker (SIGTERM, or SIGKILL where noted, then start it again on the same data
directory) and check that every durable entity comes back with all its properties, checked by
passive declare, by equivalence checks on redeclare and by behaviour; and that nothing
non-durable comes back.

Vhosts and policies have no AMQP (or HTTP / CLI) way to be set, so those tests run the broker in
this process, set them through the Server object, stop it and start a new one on the same data
directory.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time

import pika
import pytest
from durability_helpers import (
    InProcessBroker,
    abandon,
    drain_all,
    saved_definitions,
    start_consumer,
    start_publisher,
    wait_saved,
)
from pika.exceptions import ChannelClosedByBroker, UnroutableError
from pika_helpers import channel_closed, drain, fanout_pair

pytestmark = pytest.mark.deadline(None)  # every wait here has its own bound
PERSISTENT = pika.BasicProperties(delivery_mode=2)
TRANSIENT = pika.BasicProperties(delivery_mode=1)


def count(conn: pika.BlockingConnection, queue: str) -> int:
    ch = conn.channel()
    n = ch.queue_declare(queue, passive=True).method.message_count
    ch.close()
    return n


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def not_found(kind: str, name: str, vhost: str = "/") -> str:
    return f"NOT_FOUND - no {kind} '{name}' in vhost '{vhost}'"


def inequivalent(kind: str, name: str, arg: str) -> str:
    return f"PRECONDITION_FAILED - inequivalent arg '{arg}' for {kind} '{name}' in vhost '/': "


# ---- exchanges -------------------------------------------------------------------------------
def test_durable_exchanges_come_back_with_their_properties(brokers) -> None:
    broker = brokers()
    with broker.connect() as conn:
        ch = conn.channel()
        ch.exchange_declare("ae", "fanout", durable=True)
        ch.exchange_declare("x.direct", "direct", durable=True,
                            arguments={"alternate-exchange": "ae"})
        ch.exchange_declare("x.topic", "topic", durable=True, auto_delete=True)
        ch.exchange_declare("x.internal", "headers", durable=True, internal=True)
        ch.exchange_declare("x.transient", "fanout", durable=False)
        ch.queue_declare("ae.q", durable=True)
        ch.queue_bind("ae.q", "ae")
        ch.queue_declare("t.q", durable=True)
        ch.queue_bind("t.q", "x.topic", "a.#")  # keeps the auto-delete exchange alive
    wait_saved(broker.data_dir, exchanges=("ae", "x.direct", "x.topic", "x.internal"),
               queues=("ae.q", "t.q"), bindings=2)
    broker.restart()

    with broker.connect() as conn:
        ch = conn.channel()
        for name in ("ae", "x.direct", "x.topic", "x.internal"):
            ch.exchange_declare(name, passive=True)
        # the same declarations are equivalent to what came back
        ch.exchange_declare("ae", "fanout", durable=True)
        ch.exchange_declare("x.direct", "direct", durable=True,
                            arguments={"alternate-exchange": "ae"})
        ch.exchange_declare("x.topic", "topic", durable=True, auto_delete=True)
        ch.exchange_declare("x.internal", "headers", durable=True, internal=True)
        with channel_closed(404, not_found("exchange", "x.transient")):
            conn.channel().exchange_declare("x.transient", passive=True)
        with channel_closed(406, inequivalent("exchange", "x.direct", "type")
                            + "received 'fanout' but current is 'direct'"):
            conn.channel().exchange_declare("x.direct", "fanout", durable=True)
        with channel_closed(406, inequivalent("exchange", "x.direct", "alternate-exchange"),
                            prefix=True):
            conn.channel().exchange_declare("x.direct", "direct", durable=True)
        with channel_closed(406, inequivalent("exchange", "x.topic", "auto_delete")
                            + "received 'false' but current is 'true'"):
            conn.channel().exchange_declare("x.topic", "topic", durable=True)
        with channel_closed(406, inequivalent("exchange", "x.internal", "internal")
                            + "received 'false' but current is 'true'"):
            conn.channel().exchange_declare("x.internal", "headers", durable=True)

        # behaviour: the alternate exchange, internal, auto-delete
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("x.direct", "nowhere", b"to-ae", PERSISTENT, mandatory=True)
        ch.basic_publish("x.topic", "a.b", b"to-t", PERSISTENT, mandatory=True)
        assert drain(ch, "ae.q") == [b"to-ae"]
        assert drain(ch, "t.q") == [b"to-t"]
        with channel_closed(403, "ACCESS_REFUSED - cannot publish to internal exchange "
                                 "'x.internal' in vhost '/'"):
            bad = conn.channel()
            bad.basic_publish("x.internal", "", b"no")
            bad.queue_declare("ae.q", passive=True)
        ch.queue_unbind("t.q", "x.topic", "a.#")  # the last binding: the exchange goes
        with channel_closed(404, not_found("exchange", "x.topic")):
            conn.channel().exchange_declare("x.topic", passive=True)


# ---- queues ----------------------------------------------------------------------------------
QUEUES = {
    "q.ttl": {"x-message-ttl": 300, "x-dead-letter-exchange": "dlx"},
    "q.maxlen": {"x-max-length": 2},
    "q.prio": {"x-max-priority": 5},
    "q.lazy": {"x-queue-mode": "lazy"},
    "q.longttl": {"x-message-ttl": 60_000},
}


def test_durable_queues_come_back_with_their_arguments(brokers) -> None:
    broker = brokers()
    with broker.connect() as conn:
        ch = conn.channel()
        fanout_pair(ch, queue="dead", durable=True)
        for name, args in QUEUES.items():
            ch.queue_declare(name, durable=True, arguments=args)
        ch.confirm_delivery()
        for n in range(1, 4):
            ch.basic_publish("", "q.maxlen", f"m{n}".encode(), PERSISTENT)
            ch.basic_publish("", "q.lazy", f"l{n}".encode(), PERSISTENT)
        ch.basic_publish("", "q.longttl", b"keep-me", PERSISTENT)
        ch.basic_publish("", "q.ttl", b"expire-me", PERSISTENT)
    wait_saved(broker.data_dir, exchanges=("dlx",), queues=("dead", *QUEUES), bindings=1)
    broker.restart()

    with broker.connect() as conn:
        ch = conn.channel()
        for name, args in QUEUES.items():
            ch.queue_declare(name, passive=True)
            ch.queue_declare(name, durable=True, arguments=args)  # equivalent
        for name in QUEUES:
            with channel_closed(406, "PRECONDITION_FAILED - inequivalent arg 'x-", prefix=True):
                conn.channel().queue_declare(name, durable=True)  # no arguments: inequivalent
        with channel_closed(406, inequivalent("queue", "q.lazy", "durable")
                            + "received 'false' but current is 'true'"):
            conn.channel().queue_declare("q.lazy", durable=False,
                                         arguments=QUEUES["q.lazy"])

        # x-message-ttl + x-dead-letter-exchange still work (what happens to the message
        # published before the restart is test_message_expired_across_restart_...)
        ch.queue_purge("q.ttl")
        # "expire-me" may already have expired during the restart and been dead-lettered.
        ch.queue_purge("dead")
        ch.basic_publish("", "q.ttl", b"expire-me-too", PERSISTENT)
        wait_for(lambda: count(conn, "dead") == 1, 3, "new message dead-lettered")
        method, props, body = ch.basic_get("dead", auto_ack=True)
        assert body == b"expire-me-too"
        death = props.headers["x-death"][0]
        assert (death["queue"], death["reason"]) == ("q.ttl", "expired")
        assert drain(ch, "q.longttl") == [b"keep-me"]

        # x-max-length 2: the two newest survived, and the limit still holds
        assert count(conn, "q.maxlen") == 2
        for n in range(4, 7):
            ch.basic_publish("", "q.maxlen", f"m{n}".encode(), PERSISTENT)
        assert drain(ch, "q.maxlen") == [b"m5", b"m6"]

        # lazy: everything there, in order
        assert drain(ch, "q.lazy") == [b"l1", b"l2", b"l3"]

        # x-max-priority: still a priority queue
        for prio in (1, 5, 3, 0, 5):
            ch.basic_publish("", "q.prio", f"p{prio}".encode(),
                             pika.BasicProperties(delivery_mode=2, priority=prio))
        assert drain(ch, "q.prio") == [b"p5", b"p5", b"p3", b"p1", b"p0"]


# aio-pika (pamqp) sends each integer in the smallest type that holds it
TYPED = {"q.short": ("x-max-length", 1000, "short"), "q.byte": ("x-message-ttl", 10, "byte"),
         "q.signedint": ("x-expires", 100_000, "signedint"),
         "q.long": ("x-max-length-bytes", 5_000_000_000, "long")}


async def test_queue_arguments_keep_their_wire_types_over_a_restart(brokers) -> None:
    """RabbitMQ names the type an argument was sent in (``of type 'short'``); a restart must
    not turn that into ``signedint`` (the durable definitions keep each argument's type)."""
    import aio_pika

    broker = brokers()
    conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{broker.port}/")
    async with conn:
        ch = await conn.channel()
        for name, (arg, value, _) in TYPED.items():
            await ch.declare_queue(name, durable=True, arguments={arg: value})
    wait_saved(broker.data_dir, queues=tuple(TYPED))
    for how in ("term", "kill"):
        broker.restart(how)
        with broker.connect() as pconn:
            for name, (arg, value, kind) in TYPED.items():
                with channel_closed(406, inequivalent("queue", name, arg) + "received none but "
                                    f"current is the value '{value}' of type '{kind}'"):
                    pconn.channel().queue_declare(name, durable=True)


def ttl_queue_and_dlq(ch, ttl_ms: int) -> None:  # type: ignore[no-untyped-def]
    fanout_pair(ch, queue="dead", durable=True)
    ch.queue_declare("q.ttl", durable=True,
                     arguments={"x-message-ttl": ttl_ms, "x-dead-letter-exchange": "dlx"})


def counts(conn: pika.BlockingConnection) -> tuple[int, int]:
    return count(conn, "q.ttl"), count(conn, "dead")


def check_dead_letter(conn: pika.BlockingConnection) -> None:
    method, props, body = conn.channel().basic_get("dead", auto_ack=True)
    assert body == b"expire-me"
    death = props.headers["x-death"][0]
    assert (death["queue"], death["reason"], death["count"]) == ("q.ttl", "expired", 1)


def test_message_expired_across_restart_is_dead_lettered_without_a_consumer(brokers) -> None:
    """A persistent message whose TTL runs out while the broker is down leaves the queue by
    itself at boot and is dead-lettered, as RabbitMQ does when it recovers a queue; nobody has
    to touch the queue first. The TTL (60 s) cannot run out before the stop; the broker comes
    back with its wall clock (in which deadlines are stored) an hour later."""
    broker = brokers()
    with broker.connect() as conn:
        ch = conn.channel()
        ttl_queue_and_dlq(ch, 60_000)
        ch.confirm_delivery()
        ch.basic_publish("", "q.ttl", b"expire-me", PERSISTENT)
        assert counts(conn) == (1, 0)
    wait_saved(broker.data_dir, exchanges=("dlx",), queues=("dead", "q.ttl"), bindings=1)
    broker.clock_offset = 3600.0
    broker.restart()
    with broker.connect() as conn:
        assert counts(conn) == (0, 1), "not dead-lettered once, at boot"
        check_dead_letter(conn)


def test_message_expired_before_a_clean_stop_is_not_dead_lettered_again(brokers) -> None:
    broker = brokers()
    with broker.connect() as conn:
        ch = conn.channel()
        ttl_queue_and_dlq(ch, 50)
        ch.confirm_delivery()
        ch.basic_publish("", "q.ttl", b"expire-me", PERSISTENT)
        wait_for(lambda: counts(conn) == (0, 1), 5, "expired and dead-lettered")
    wait_saved(broker.data_dir, exchanges=("dlx",), queues=("dead", "q.ttl"), bindings=1)
    broker.restart()
    with broker.connect() as conn:
        assert counts(conn) == (0, 1)
        check_dead_letter(conn)


class SlowService:
    """A node service whose stop waits (the stores are closed by then) until ``until``
    (time.monotonic(), the queues' clock) has passed."""

    def __init__(self, until: float) -> None:
        self.until = until

    async def start(self, node) -> None:  # type: ignore[no-untyped-def]
        pass

    async def stop(self) -> None:
        while time.monotonic() < self.until:
            await asyncio.sleep(0.02)


def test_message_due_during_the_stop_is_dead_lettered_once(tmp_path) -> None:
    """The TTL runs out while the node stops, after its stores closed: nothing may expire then
    (it was half saved: the dead letter kept, the source's ack lost, so it was dead-lettered
    again after the restart). It expires once, at the next boot."""
    data = tmp_path / "data"
    ttl = 1.0  # far longer than the stop takes until the stores are closed
    first = InProcessBroker(data)
    try:
        with first.connect() as conn:
            ch = conn.channel()
            ttl_queue_and_dlq(ch, int(ttl * 1000))
            ch.confirm_delivery()
            published = time.monotonic()
            ch.basic_publish("", "q.ttl", b"expire-me", PERSISTENT)
            assert counts(conn) == (1, 0)
        first.node.services.append(SlowService(published + ttl + 0.3))
    finally:
        first.stop()

    second = InProcessBroker(data)
    try:
        with second.connect() as conn:
            assert counts(conn) == (0, 1)
            check_dead_letter(conn)
    finally:
        second.stop()


# ---- bindings --------------------------------------------------------------------------------
def test_bindings_come_back(brokers) -> None:
    broker = brokers()
    with broker.connect() as conn:
        ch = conn.channel()
        for name, kind, durable in (("b.direct", "direct", True), ("b.topic", "topic", True),
                                    ("b.headers", "headers", True), ("b.src", "topic", True),
                                    ("b.nd", "fanout", False)):
            ch.exchange_declare(name, kind, durable=durable)
        for name in ("b.q1", "b.q2", "b.q3", "b.q4"):
            ch.queue_declare(name, durable=True)
        ch.queue_declare("b.tmp", durable=False)
        ch.queue_bind("b.q1", "b.direct", "k1")
        ch.queue_bind("b.q1", "b.direct", "k2")
        ch.queue_bind("b.q2", "b.topic", "a.*.c")
        ch.queue_bind("b.q3", "b.headers", "",
                      arguments={"x-match": "all", "color": "red", "size": 5})
        ch.queue_bind("b.q4", "b.headers", "",
                      arguments={"x-match": "any", "color": "blue", "shape": "round"})
        ch.exchange_bind("b.direct", "b.src", "k2")  # exchange to exchange
        ch.queue_bind("b.tmp", "b.direct", "k1")  # to a non-durable queue: goes with it
        ch.exchange_bind("b.nd", "b.src", "#")  # to a non-durable exchange: goes with it
    wait_saved(broker.data_dir, exchanges=("b.direct", "b.topic", "b.headers", "b.src"),
               queues=("b.q1", "b.q2", "b.q3", "b.q4"), bindings=6)
    broker.restart()

    with broker.connect() as conn:
        ch = conn.channel()
        ch.confirm_delivery()

        def routes(exchange: str, key: str, headers: dict | None = None) -> bool:
            props = pika.BasicProperties(delivery_mode=2, headers=headers)
            try:
                ch.basic_publish(exchange, key, b"x", props, mandatory=True)
            except UnroutableError:
                return False
            return True

        assert routes("b.direct", "k1") and routes("b.direct", "k2")
        assert not routes("b.direct", "k3")
        assert routes("b.topic", "a.b.c") and not routes("b.topic", "a.b.d")
        assert routes("b.headers", "", {"color": "red", "size": 5})
        assert not routes("b.headers", "", {"color": "red"})  # x-match all
        assert routes("b.headers", "", {"shape": "round"})  # x-match any
        assert routes("b.src", "k2")  # b.src -k2-> b.direct -k2-> b.q1
        assert not routes("b.src", "k1")  # only b.direct has k1, and b.src binds k2 only
        assert [count(conn, q) for q in ("b.q1", "b.q2", "b.q3", "b.q4")] == [3, 1, 1, 1]
        with channel_closed(404, not_found("queue", "b.tmp")):
            conn.channel().queue_declare("b.tmp", passive=True)
        with channel_closed(404, not_found("exchange", "b.nd")):
            conn.channel().exchange_declare("b.nd", passive=True)
        # unbinding with exactly the saved arguments removes the binding
        ch.queue_unbind("b.q3", "b.headers", "",
                        arguments={"x-match": "all", "color": "red", "size": 5})
        assert not routes("b.headers", "", {"color": "red", "size": 5})
        ch.exchange_unbind("b.direct", "b.src", "k2")
        assert not routes("b.src", "k2")


# ---- a stop right after declaring -----------------------------------------------------------
def test_topology_declared_just_before_a_clean_stop_survives(brokers) -> None:
    """declare-ok came back, then SIGTERM (a clean stop): everything declared is there after
    the restart. fsync is made slow (0.1 s, a slow disk) so that the asynchronous definitions
    save is surely still running, with more changes waiting, when the stop comes."""
    broker = brokers(slow_fsync=0.1)
    for round_ in range(2):
        names = [f"r{round_}-{i}" for i in range(20)]
        conn = broker.connect()
        ch = conn.channel()
        for name in names:
            ch.exchange_declare(name, "direct", durable=True)
            ch.queue_declare(name, durable=True)
            ch.queue_bind(name, name, "k")
        broker.terminate()  # right after the last bind-ok; the client is still connected
        abandon(conn)
        broker.start()
        with broker.connect() as conn:
            missing = []
            for name in names:
                ch = conn.channel()
                try:
                    ch.exchange_declare(name, passive=True)
                    ch.queue_declare(name, passive=True)
                    ch.confirm_delivery()
                    ch.basic_publish(name, "k", b"x", mandatory=True)
                    ch.close()
                except (ChannelClosedByBroker, UnroutableError) as exc:
                    missing.append((name, type(exc).__name__))
            assert not missing, f"round {round_}: lost after a clean stop: {missing}"


# ---- what must not survive -------------------------------------------------------------------
@pytest.mark.parametrize("how", ["term", "kill"])
def test_non_durable_things_do_not_come_back(brokers, how: str) -> None:
    broker = brokers()
    excl_conn = broker.connect()
    excl = excl_conn.channel()
    excl.confirm_delivery()
    excl.queue_declare("excl", durable=True, exclusive=True)
    excl.basic_publish("", "excl", b"e1", PERSISTENT)
    with broker.connect() as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("keep", durable=True)
        ch.queue_declare("gone", durable=False)
        ch.exchange_declare("tx", "direct", durable=False)
        ch.queue_bind("keep", "tx", "k")
        for n, props in enumerate((PERSISTENT, TRANSIENT, PERSISTENT, TRANSIENT,
                                   pika.BasicProperties()), 1):
            ch.basic_publish("", "keep", f"k{n}".encode(), props)
            ch.basic_publish("", "gone", f"g{n}".encode(), PERSISTENT)
        assert count(conn, "keep") == 5 and count(conn, "gone") == 5
    wait_saved(broker.data_dir, queues=("keep",))
    broker.restart(how)
    abandon(excl_conn)

    with broker.connect() as conn:
        ch = conn.channel()
        assert drain(ch, "keep") == [b"k1", b"k3"]  # transient messages are gone
        for queue in ("gone", "excl"):
            with channel_closed(404, not_found("queue", queue)):
                conn.channel().queue_declare(queue, passive=True)
        with channel_closed(404, not_found("exchange", "tx")):
            conn.channel().exchange_declare("tx", passive=True)
    on_disk = sorted(p.name for p in (broker.data_dir / "queues").iterdir())
    assert on_disk == [broker.queue_dir("keep").name]


# ---- priority queue --------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["term", "kill"])
def test_priority_queue_messages_come_back_in_priority_order(brokers, how: str) -> None:
    rng = random.Random(99)
    sent: list[tuple[int, int]] = []  # (number, priority)
    broker = brokers()
    with broker.connect() as conn:
        ch = conn.channel()
        ch.queue_declare("prio", durable=True, arguments={"x-max-priority": 9})
        ch.confirm_delivery()
        for n in range(1, 61):
            prio = rng.choice([None, 0, 1, 3, 5, 7, 9, 12])
            ch.basic_publish("", "prio", str(n).encode(),
                             pika.BasicProperties(delivery_mode=2, priority=prio))
            sent.append((n, min(prio or 0, 9)))
    wait_saved(broker.data_dir, queues=("prio",))
    broker.restart(how)

    with broker.connect() as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        assert count(conn, "prio") == 60
        for n, prio in ((61, 9), (62, 0), (63, 5)):  # new messages slot in after old ones
            ch.basic_publish("", "prio", str(n).encode(),
                             pika.BasicProperties(delivery_mode=2, priority=prio))
            sent.append((n, prio))
        got = []
        for _ in range(len(sent) + 1):
            method, props, body = ch.basic_get("prio", auto_ack=True)
            if method is None:
                break
            assert not method.redelivered
            got.append(int(body))
    expected = [n for n, _ in sorted(sent, key=lambda item: (-item[1], item[0]))]
    assert got == expected


# ---- a clean stop under load --------------------------------------------------------------
def test_sigterm_under_load_stops_cleanly_and_keeps_everything(brokers) -> None:
    """SIGTERM while a publisher (confirms) and an acking consumer are busy: the broker exits 0
    promptly, every confirmed message that was not acked is back, in order, and the ones
    delivered before the stop are flagged. fsync is made slow (0.2 s, a slow disk) so that a
    group-commit batch is surely in flight when the stop runs."""
    broker = brokers(slow_fsync=0.2)
    with broker.connect() as conn:
        conn.channel().queue_declare("busy", durable=True)
    wait_saved(broker.data_dir, queues=("busy",), timeout=5)
    consumer = start_consumer(broker.port, "busy", hold=lambda n: n % 10 == 3)
    publisher = start_publisher(broker.port, "busy")
    time.sleep(0.7)
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGTERM)
    code = broker.wait_exit(5)
    publisher.join(10)
    consumer.join(10)
    assert code == 0, f"exit code {code} on SIGTERM under load:\n{broker.log()[-3000:]}"
    pub, con = publisher.result, consumer.result
    assert pub.confirmed and con.held
    broker.start()
    with broker.connect() as conn:
        got = drain_all(conn, "busy")
    numbers = [n for n, _, _ in got]
    assert numbers == sorted(set(numbers))
    lost = sorted((pub.confirmed - con.acked) - set(numbers))
    assert not lost, f"{len(lost)} confirmed, unacked messages lost: {lost[:10]}"
    flags = {n: redelivered for n, redelivered, _ in got}
    unflagged = sorted(n for n in set(con.delivered) & set(numbers) if not flags[n])
    assert not unflagged, f"delivered before the stop but not flagged: {unflagged[:10]}"


# ---- vhosts and policies (in process) --------------------------------------------------------
def test_policy_comes_back(tmp_path) -> None:
    data = tmp_path / "data"
    first = InProcessBroker(data)
    try:
        first.call(lambda: first.server.vhosts["/"].set_policy(
            "limit", r"^pol\.", {"max-length": 1}, 3, "queues"))
        conn = first.connect()
        ch = conn.channel()
        ch.queue_declare("pol.a", durable=True)
        conn.close()
        wait_for(lambda: saved_definitions(data).get("policies") and any(
            q["name"] == "pol.a" for q in saved_definitions(data).get("queues", [])), 5,
            "definitions saved")
    finally:
        first.stop()

    second = InProcessBroker(data)
    try:
        policy = second.call(lambda: second.server.vhosts["/"].policies.get("limit"))
        assert policy == {"pattern": r"^pol\.", "definition": {"max-length": 1},
                          "priority": 3, "apply-to": "queues"}
        conn = second.connect()
        ch = conn.channel()
        ch.queue_declare("pol.b", durable=True)
        for queue in ("pol.a", "pol.b"):
            for n in range(3):
                ch.basic_publish("", queue, f"{queue}-{n}".encode(), PERSISTENT)
        assert drain(ch, "pol.a") == [b"pol.a-2"]  # the policy applies to the old queue
        assert drain(ch, "pol.b") == [b"pol.b-2"]  # and to new ones
        conn.close()
    finally:
        second.stop()


def test_vhost_added_at_runtime_comes_back_with_its_queues(tmp_path) -> None:
    data = tmp_path / "data"
    first = InProcessBroker(data)
    try:
        first.call(first.server.add_vhost, "v2")
        conn = first.connect("v2")
        ch = conn.channel()
        ch.confirm_delivery()
        ch.exchange_declare("v2.x", "direct", durable=True)
        ch.queue_declare("v2.q", durable=True)
        ch.queue_bind("v2.q", "v2.x", "k")
        ch.basic_publish("v2.x", "k", b"in-v2", PERSISTENT, mandatory=True)
        conn.close()
        # give an asynchronous definitions save time to land (not asserted: checked below)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not any(
                q["name"] == "v2.q" for q in saved_definitions(data).get("queues", [])):
            time.sleep(0.05)
    finally:
        first.stop()

    second = InProcessBroker(data)
    try:
        assert "v2" in second.call(lambda: list(second.server.vhosts)), \
            "vhost v2 did not survive the restart"
        conn = second.connect("v2")
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("v2.q", passive=True)
        assert drain(ch, "v2.q") == [b"in-v2"]
        ch.basic_publish("v2.x", "k", b"again", PERSISTENT, mandatory=True)
        assert drain(ch, "v2.q") == [b"again"]
        conn.close()
    finally:
        second.stop()


def test_vhost_description_and_tags_come_back(tmp_path) -> None:
    data = tmp_path / "data"
    first = InProcessBroker(data)
    try:
        first.call(first.server.add_vhost, "meta", "before", ["a"], "quorum")
        first.call(first.server.update_vhost_meta, "meta", "billing jobs", ["prod", "eu"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
                v.get("description") == "billing jobs"
                for v in saved_definitions(data).get("vhosts", [])):
            time.sleep(0.05)
    finally:
        first.stop()

    second = InProcessBroker(data)
    try:
        meta = second.call(lambda: dict(second.server.vhost_meta["meta"]))
        assert meta == {"description": "billing jobs", "tags": ["prod", "eu"],
                        "default_queue_type": "quorum"}
    finally:
        second.stop()


def test_topic_permissions_survive_a_restart(brokers, tmp_path) -> None:
    defs = tmp_path / "defs.json"
    defs.write_text(json.dumps({
        "users": [{"name": "tp", "password": "tp", "tags": "administrator"}],
        "vhosts": [{"name": "/"}],
        "permissions": [{"user": "tp", "vhost": "/", "configure": ".*", "write": ".*",
                         "read": ".*"}],
        "topic_permissions": [{"user": "tp", "vhost": "/", "exchange": "amq.topic",
                               "write": "^ok", "read": ".*"}]}))
    broker = brokers("--load-definitions", str(defs))
    deadline = time.monotonic() + 3
    while not saved_definitions(broker.data_dir).get("topic_permissions"):
        assert time.monotonic() < deadline, "topic permissions not saved"
        time.sleep(0.05)
    broker.terminate()
    broker = brokers()  # no definitions file this time: what was saved comes back
    params = pika.ConnectionParameters("127.0.0.1", broker.port,
                                       credentials=pika.PlainCredentials("tp", "tp"))
    with pika.BlockingConnection(params) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("amq.topic", "ok.1", b"allowed")
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            ch.basic_publish("amq.topic", "no.1", b"refused")
        assert info.value.reply_code == 403
