"""Restart the broker (SIGTERM, or SIGKILL where noted, then start it again on the same data
directory) and check that every durable entity - exchange, queue, binding - comes back with all
its properties, checked by passive declare, by equivalence checks on redeclare and by
behaviour; and that nothing non-durable comes back.

Messages across a restart (TTL, priorities, a stop under load) are in
test_durability_restart_messages.py; vhosts, policies and permissions in
test_durability_restart_state.py.
"""

from __future__ import annotations

import pika
import pytest
from durability_clients import PERSISTENT, TRANSIENT, abandon, count
from durability_helpers import wait_for, wait_saved
from pika.exceptions import ChannelClosedByBroker, UnroutableError
from pika_helpers import channel_closed, drain, fanout_pair

pytestmark = pytest.mark.deadline(None)  # every wait here has its own bound


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
