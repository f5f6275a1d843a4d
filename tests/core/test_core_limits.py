"""x-max-length and x-max-length-bytes with every x-overflow mode, and the policy forms."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from core_fakes import FakeChannel, FakeScheduler, bodies, headers_of, message

from broker.core.queue import Consumer
from broker.core.vhost import VirtualHost
from storage.message import Entry


@pytest.fixture
def dead(vhost: VirtualHost) -> Callable[[], list[bytes]]:
    """Dead letters routed by ``dlx`` (fanout) land in ``dlq``: a reader of their bodies."""
    vhost.bind(vhost.declare_exchange("dlx", "fanout"), vhost.declare_queue("dlq"), "", None)
    return lambda: bodies(vhost.queue("dlq"))


def publish(vhost: VirtualHost, queue: str, *payloads: bytes) -> list[bool]:
    q = vhost.queue(queue)
    return [q.publish(message(p)) for p in payloads]


@pytest.mark.parametrize("limit", [{"x-max-length": 2}, {"x-max-length-bytes": 4}])
def test_drop_head_drops_the_oldest_and_dead_letters_it(
        vhost: VirtualHost, dead: Callable[[], list[bytes]], limit: dict[str, int]) -> None:
    vhost.declare_queue("q", arguments={**limit, "x-dead-letter-exchange": "dlx"})
    assert publish(vhost, "q", b"m0", b"m1", b"m2") == [True, True, True]
    assert bodies(vhost.queue("q")) == [b"m1", b"m2"]
    assert dead() == [b"m0"]
    dead_letter = vhost.queue("dlq").store.peek()
    assert dead_letter is not None
    assert headers_of(dead_letter.message)["x-death"][0]["reason"] == "maxlen"


@pytest.mark.parametrize("limit", [{"x-max-length": 2}, {"x-max-length-bytes": 4}])
def test_reject_publish_refuses_the_new_message(vhost: VirtualHost, dead: Callable[[], list[bytes]],
                                                limit: dict[str, int]) -> None:
    vhost.declare_queue("q", arguments={**limit, "x-overflow": "reject-publish",
                                        "x-dead-letter-exchange": "dlx"})
    assert publish(vhost, "q", b"m0", b"m1", b"m2") == [True, True, False]
    assert bodies(vhost.queue("q")) == [b"m0", b"m1"]
    assert dead() == []  # reject-publish does not dead-letter


@pytest.mark.parametrize("limit", [{"x-max-length": 2}, {"x-max-length-bytes": 4}])
def test_reject_publish_dlx_refuses_and_dead_letters_the_new_message(
        vhost: VirtualHost, dead: Callable[[], list[bytes]], limit: dict[str, int]) -> None:
    vhost.declare_queue("q", arguments={**limit, "x-overflow": "reject-publish-dlx",
                                        "x-dead-letter-exchange": "dlx"})
    assert publish(vhost, "q", b"m0", b"m1", b"m2") == [True, True, False]
    assert bodies(vhost.queue("q")) == [b"m0", b"m1"]
    assert dead() == [b"m2"]


def test_max_length_bytes_counts_bodies_only(vhost: VirtualHost) -> None:
    vhost.declare_queue("q", arguments={"x-max-length-bytes": 5})
    vhost.queue("q").publish(message(b"12345", headers={"big": "x" * 1000}))
    vhost.queue("q").publish(message(b""))
    assert vhost.queue("q").message_count == 2


def test_one_message_bigger_than_max_length_bytes_is_dropped(vhost: VirtualHost) -> None:
    vhost.declare_queue("q", arguments={"x-max-length-bytes": 3})
    assert publish(vhost, "q", b"toolong") == [True]
    assert vhost.queue("q").message_count == 0


def test_unacked_messages_do_not_count_against_the_limit(vhost: VirtualHost,
                                                         channel: FakeChannel) -> None:
    q = vhost.declare_queue("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    channel.consume(q, "c", prefetch=2)
    assert publish(vhost, "q", b"m0", b"m1", b"m2", b"m3") == [True, True, True, False]
    assert channel.bodies() == [b"m0", b"m1"] and bodies(q) == [b"m2"]


def test_policy_limit_is_the_minimum_of_policy_and_argument(vhost: VirtualHost) -> None:
    vhost.set_policy("cap", "^q", {"max-length": 3})
    vhost.declare_queue("q1", arguments={"x-max-length": 1})
    vhost.declare_queue("q5", arguments={"x-max-length": 5})
    for name in ("q1", "q5"):
        publish(vhost, name, b"m0", b"m1", b"m2", b"m3", b"m4")
    assert bodies(vhost.queue("q1")) == [b"m4"]
    assert bodies(vhost.queue("q5")) == [b"m2", b"m3", b"m4"]


def test_overflow_argument_wins_over_policy(vhost: VirtualHost) -> None:
    vhost.set_policy("cap", "^q$", {"max-length": 1, "overflow": "drop-head"})
    vhost.declare_queue("q", arguments={"x-overflow": "reject-publish"})
    assert publish(vhost, "q", b"m0", b"m1") == [True, False]


def test_clearing_a_policy_lifts_its_limit(vhost: VirtualHost) -> None:
    vhost.set_policy("cap", "^q$", {"max-length": 1})
    vhost.declare_queue("q")
    publish(vhost, "q", b"m0", b"m1")
    vhost.clear_policy("cap")
    publish(vhost, "q", b"m2")
    assert bodies(vhost.queue("q")) == [b"m1", b"m2"]


# ---- requeue over the limit (RabbitMQ 3.10.8, probed with nack, reject, recover and channel
# close; classic queues) ---------------------------------------------------------------------

def take_two_then_fill(vhost: VirtualHost, channel: FakeChannel, arguments: dict[str, object]
                       ) -> list[tuple[Consumer, Entry]]:
    """q at its limit (m3, m4) while m1 and m2 are out with a consumer that is then cancelled
    (as a channel close does before it requeues)."""
    q = vhost.declare_queue("q", arguments={**arguments, "x-dead-letter-exchange": "dlx"})
    consumer = channel.consume(q, "c", prefetch=2)
    assert publish(vhost, "q", b"m1", b"m2", b"m3", b"m4") == [True] * 4
    assert channel.bodies() == [b"m1", b"m2"] and bodies(q) == [b"m3", b"m4"]
    q.remove_consumer(consumer)
    return list(channel.unacked)


@pytest.mark.parametrize("limit", [{"x-max-length": 2}, {"x-max-length-bytes": 4}])
def test_requeue_over_a_drop_head_limit_drops_the_head(
        vhost: VirtualHost, dead: Callable[[], list[bytes]], channel: FakeChannel,
        limit: dict[str, int]) -> None:
    take_two_then_fill(vhost, channel, limit)
    channel.settle(requeue=True)  # nack multiple / channel close: in delivery order
    q = vhost.queue("q")
    assert bodies(q) == [b"m3", b"m4"]
    assert dead() == [b"m1", b"m2"]
    dead_letter = vhost.queue("dlq").store.peek()
    assert dead_letter is not None
    assert headers_of(dead_letter.message)["x-death"][0]["reason"] == "maxlen"
    assert publish(vhost, "q", b"m5") == [True]
    assert bodies(q) == [b"m4", b"m5"] and dead() == [b"m1", b"m2", b"m3"]


def test_each_requeue_drops_the_head_at_once(vhost: VirtualHost, dead: Callable[[], list[bytes]],
                                             channel: FakeChannel) -> None:
    """basic.reject of m2 then of m1: each requeue puts the queue over and drops its head."""
    out = take_two_then_fill(vhost, channel, {"x-max-length": 2})
    q = vhost.queue("q")
    for _consumer, entry in reversed(out):
        q.requeue(entry)
    assert bodies(q) == [b"m3", b"m4"]
    assert dead() == [b"m2", b"m1"]


@pytest.mark.parametrize("overflow", ["reject-publish", "reject-publish-dlx"])
@pytest.mark.parametrize("limit", [{"x-max-length": 2}, {"x-max-length-bytes": 4}])
def test_requeue_may_leave_a_reject_publish_queue_over_its_limit(
        vhost: VirtualHost, dead: Callable[[], list[bytes]], channel: FakeChannel,
        limit: dict[str, int], overflow: str) -> None:
    take_two_then_fill(vhost, channel, {**limit, "x-overflow": overflow})
    channel.settle(requeue=True)
    q = vhost.queue("q")
    assert bodies(q) == [b"m1", b"m2", b"m3", b"m4"]
    assert [e.redelivered for e in q.store] == [True, True, False, False]
    assert dead() == []
    assert publish(vhost, "q", b"m5") == [False]  # refused while over the limit
    assert dead() == ([b"m5"] if overflow == "reject-publish-dlx" else [])


def test_requeue_drops_the_requeued_head_before_a_consumer_with_credit_gets_it(
        vhost: VirtualHost, dead: Callable[[], list[bytes]], channel: FakeChannel,
        clock: FakeScheduler) -> None:
    q = vhost.declare_queue("q", arguments={"x-max-length": 1, "x-dead-letter-exchange": "dlx"})
    channel.consume(q, "c", prefetch=1)
    assert publish(vhost, "q", b"m1", b"m2") == [True, True]
    channel.settle(requeue=True)
    clock.run_soon()
    assert dead() == [b"m1"]
    assert channel.bodies() == [b"m1", b"m2"]  # m1 once, then m2 (not a redelivery)
    assert channel.delivered[1][1].redelivered is False


# ---- a waiting consumer is served before the limit applies -----------------------------------

@pytest.mark.parametrize("limit", [{"x-max-length": 0}, {"x-max-length-bytes": 2}])
def test_drop_head_delivers_to_a_waiting_consumer_whatever_the_limit(
        vhost: VirtualHost, dead: Callable[[], list[bytes]], channel: FakeChannel,
        limit: dict[str, int]) -> None:
    q = vhost.declare_queue("q", arguments={**limit, "x-dead-letter-exchange": "dlx"})
    channel.consume(q, "c", no_ack=True)
    assert publish(vhost, "q", b"bigger") == [True]
    assert channel.bodies() == [b"bigger"] and dead() == []


@pytest.mark.parametrize("overflow", ["reject-publish", "reject-publish-dlx"])
def test_reject_publish_refuses_even_with_a_waiting_consumer(
        vhost: VirtualHost, dead: Callable[[], list[bytes]], channel: FakeChannel,
        overflow: str) -> None:
    q = vhost.declare_queue("q", arguments={"x-max-length": 0, "x-overflow": overflow,
                                            "x-dead-letter-exchange": "dlx"})
    channel.consume(q, "c", no_ack=True)
    assert publish(vhost, "q", b"m") == [False]
    assert channel.bodies() == []
    assert dead() == ([b"m"] if overflow == "reject-publish-dlx" else [])
