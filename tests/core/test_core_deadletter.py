"""Dead-lettering in the core: x-death entries and counts, x-first/last-death, the routing key,
cycles (dropped unless a rejection is part of them), quorum queues' delivery limit."""

from __future__ import annotations

import datetime

from core_fakes import FakeChannel, FakeScheduler, bodies, headers_of, message

from broker.core.queue import Queue
from broker.core.vhost import VirtualHost
from protocol import properties
from protocol.tables import Table


def first(q: Queue) -> Table:
    entry = q.store.peek()
    assert entry is not None, f"nothing in {q.name}"
    return headers_of(entry.message)


def deaths(q: Queue) -> list[dict[str, object]]:
    """x-death of the head message, without the times."""
    return [{k: v for k, v in d.items() if k != "time"} for d in first(q)["x-death"]]


def test_rejected_message_gets_one_death_and_first_last_headers(vhost: VirtualHost) -> None:
    vhost.bind(vhost.declare_exchange("dlx", "fanout"), vhost.declare_queue("dlq"), "", None)
    src = vhost.declare_queue("src", arguments={"x-dead-letter-exchange": "dlx"})
    src.publish(message(b"body", routing_key="src", headers={"h": "v"}))
    entry = src.get()
    assert entry is not None
    src.reject(entry)
    dlq = vhost.queue("dlq")
    assert deaths(dlq) == [{"count": 1, "reason": "rejected", "queue": "src", "exchange": "",
                            "routing-keys": ["src"]}]
    h = first(dlq)
    assert isinstance(h["x-death"][0]["time"], datetime.datetime)
    assert {k: v for k, v in h.items() if k != "x-death"} == {
        "h": "v", "x-first-death-exchange": "", "x-first-death-queue": "src",
        "x-first-death-reason": "rejected", "x-last-death-exchange": "",
        "x-last-death-queue": "src", "x-last-death-reason": "rejected"}
    assert [e.message.exchange for e in dlq.store] == ["dlx"]


def test_dead_letter_routing_key_replaces_the_original(vhost: VirtualHost,
                                                       clock: FakeScheduler) -> None:
    vhost.declare_queue("target")
    vhost.declare_queue("src", arguments={"x-message-ttl": 10, "x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": "target"})
    vhost.queue("src").publish(message(b"m", routing_key="src"))
    clock.advance(0.02)
    entry = vhost.queue("target").store.peek()
    assert entry is not None
    assert (entry.message.exchange, entry.message.routing_key) == ("", "target")
    assert deaths(vhost.queue("target"))[0]["routing-keys"] == ["src"]


def test_expired_message_records_and_drops_its_expiration(vhost: VirtualHost,
                                                          clock: FakeScheduler) -> None:
    vhost.declare_queue("dlq")
    src = vhost.declare_queue("src", arguments={"x-dead-letter-exchange": "",
                                                "x-dead-letter-routing-key": "dlq"})
    src.publish(message(b"m", routing_key="src", expiration="50", content_type="text/plain"))
    clock.advance(0.05)
    (entry,) = vhost.queue("dlq").store
    decoded = properties.decode(entry.message.properties)
    assert (decoded.expiration, decoded.content_type) == (None, "text/plain")
    assert deaths(vhost.queue("dlq"))[0]["original-expiration"] == "50"


def test_no_dead_letter_exchange_or_no_route_drops_the_message(vhost: VirtualHost,
                                                               clock: FakeScheduler) -> None:
    vhost.declare_queue("a", arguments={"x-message-ttl": 10})
    vhost.declare_queue("b", arguments={"x-message-ttl": 10, "x-dead-letter-exchange": "none"})
    vhost.declare_exchange("empty", "fanout")
    vhost.declare_queue("c", arguments={"x-message-ttl": 10, "x-dead-letter-exchange": "empty"})
    for name in "abc":
        vhost.queue(name).publish(message(b"m", routing_key=name))
    clock.advance(0.02)
    assert [vhost.queue(n).message_count for n in "abc"] == [0, 0, 0]


def test_repeated_death_in_the_same_queue_bumps_its_count(vhost: VirtualHost) -> None:
    """A rejection cycle is not dropped: the same (queue, reason) entry counts up."""
    q = vhost.declare_queue("q", arguments={"x-dead-letter-exchange": "",
                                            "x-dead-letter-routing-key": "q"})
    q.publish(message(b"m", routing_key="q"))
    for _ in range(3):
        entry = q.get()
        assert entry is not None
        q.reject(entry)
    assert deaths(q) == [{"count": 3, "reason": "rejected", "queue": "q", "exchange": "",
                          "routing-keys": ["q"]}]


def test_two_hops_newest_entry_first_and_last_death_moves(vhost: VirtualHost,
                                                          clock: FakeScheduler) -> None:
    vhost.declare_queue("final")
    vhost.declare_queue("hop", arguments={"x-message-ttl": 10, "x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": "final"})
    src = vhost.declare_queue("src", arguments={"x-dead-letter-exchange": "",
                                                "x-dead-letter-routing-key": "hop"})
    src.publish(message(b"m", routing_key="src"))
    entry = src.get()
    assert entry is not None
    src.reject(entry)
    clock.advance(0.02)
    final = vhost.queue("final")
    assert [(d["queue"], d["reason"]) for d in deaths(final)] == [
        ("hop", "expired"), ("src", "rejected")]
    h = first(final)
    assert (h["x-first-death-queue"], h["x-first-death-reason"]) == ("src", "rejected")
    assert (h["x-last-death-queue"], h["x-last-death-reason"]) == ("hop", "expired")
    # key order (RabbitMQ 3.10.8 probed): the first entry as written, a later one sorted
    assert [list(d) for d in first(final)["x-death"]] == [
        ["count", "exchange", "queue", "reason", "routing-keys", "time"],
        ["count", "reason", "queue", "time", "exchange", "routing-keys"]]


def test_an_expiry_cycle_is_dropped(vhost: VirtualHost, clock: FakeScheduler) -> None:
    """q -> (expired) -> q again with no rejection on the way: RabbitMQ drops it."""
    q = vhost.declare_queue("q", arguments={"x-message-ttl": 50, "x-dead-letter-exchange": ""})
    q.publish(message(b"loop", routing_key="q"))
    clock.advance(0.05)
    assert q.message_count == 0
    clock.advance(10)
    assert q.message_count == 0 and clock.pending_timers == []


def test_a_two_queue_expiry_cycle_is_dropped_on_the_way_back(vhost: VirtualHost,
                                                             clock: FakeScheduler) -> None:
    a = vhost.declare_queue("a", arguments={"x-message-ttl": 10, "x-dead-letter-exchange": "",
                                            "x-dead-letter-routing-key": "b"})
    b = vhost.declare_queue("b", arguments={"x-message-ttl": 10, "x-dead-letter-exchange": "",
                                            "x-dead-letter-routing-key": "a"})
    a.publish(message(b"m", routing_key="a"))
    clock.advance(0.01)
    assert (a.message_count, b.message_count) == (0, 1)
    clock.advance(0.01)
    assert (a.message_count, b.message_count) == (0, 0)


def test_a_cycle_with_a_rejection_in_it_goes_on(vhost: VirtualHost,
                                                clock: FakeScheduler) -> None:
    a = vhost.declare_queue("a", arguments={"x-dead-letter-exchange": "",
                                            "x-dead-letter-routing-key": "b"})
    b = vhost.declare_queue("b", arguments={"x-message-ttl": 10, "x-dead-letter-exchange": "",
                                            "x-dead-letter-routing-key": "a"})
    a.publish(message(b"m", routing_key="a"))
    entry = a.get()
    assert entry is not None
    a.reject(entry)
    clock.advance(0.01)  # expired in b, back to a: allowed, a rejection is in the loop
    assert (a.message_count, b.message_count) == (1, 0)
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths(a)] == [
        ("b", "expired", 1), ("a", "rejected", 1)]


def test_quorum_delivery_limit_dead_letters_after_the_limit(
        vhost: VirtualHost, channel: FakeChannel) -> None:
    vhost.declare_queue("dlq")
    q = vhost.declare_queue("src", durable=True, arguments={
        "x-queue-type": "quorum", "x-delivery-limit": 2, "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "dlq"})
    q.publish(message(b"m", routing_key="src"))
    counts = []
    for _ in range(3):
        entry = q.get()
        assert entry is not None
        counts.append(entry.delivery_count)
        q.requeue(entry)
    assert counts == [0, 1, 2]
    assert q.message_count == 0
    assert bodies(vhost.queue("dlq")) == [b"m"]
    assert deaths(vhost.queue("dlq"))[0]["reason"] == "delivery_limit"


def test_classic_queues_have_no_delivery_limit(vhost: VirtualHost) -> None:
    q = vhost.declare_queue("q")
    q.publish(message(b"m"))
    for _ in range(5):
        entry = q.get()
        assert entry is not None and entry.delivery_count == 0
        q.requeue(entry)
    assert bodies(q) == [b"m"]
