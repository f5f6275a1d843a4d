"""Where a requeued message goes back (RabbitMQ 3.10.8 probed, 3.13 documented alike).

A classic queue puts it back at its original position, whatever the reason. A quorum queue
without a delivery limit puts a message the client handed back itself (basic.nack,
basic.reject, basic.recover with requeue) at the back, behind messages published after it was
taken; a channel or connection going away returns its messages to their original position.
With an x-delivery-limit (argument or policy) every return keeps the original position.
Probed: m1..m4 ready, m1 and m2 taken, nack m1 then m2 -> m3 m4 m1 m2 (redelivered, and
x-delivery-count 1); nack m2 then m1 -> m3 m4 m2 m1; the same with x-delivery-limit 5, or a
channel close -> m1 m2 m3 m4.
"""

from __future__ import annotations

import pytest
from core_fakes import FakeChannel, FakeScheduler, bodies, message

from broker.core.queue import Queue
from broker.core.vhost import VirtualHost
from storage.message import Entry

QUORUM = {"x-queue-type": "quorum"}


def four_taking_two(vhost: VirtualHost, arguments: dict[str, object]) -> tuple[Queue, Entry,
                                                                                 Entry]:
    q = vhost.declare_queue("q", durable=True, arguments=arguments)
    for body in (b"m1", b"m2", b"m3", b"m4"):
        assert q.publish(message(body))
    m1, m2 = q.get(), q.get()
    assert m1 is not None and m2 is not None
    return q, m1, m2


def test_quorum_nack_puts_the_message_at_the_back(vhost: VirtualHost) -> None:
    q, m1, m2 = four_taking_two(vhost, QUORUM)
    q.requeue(m1, nacked=True)
    q.requeue(m2, nacked=True)
    assert bodies(q) == [b"m3", b"m4", b"m1", b"m2"]
    got = [q.get() for _ in range(4)]
    assert [(e.message.body, e.redelivered, e.delivery_count) for e in got if e] == [
        (b"m3", False, 0), (b"m4", False, 0), (b"m1", True, 1), (b"m2", True, 1)]


def test_quorum_returns_go_back_in_the_order_they_come(vhost: VirtualHost) -> None:
    q, m1, m2 = four_taking_two(vhost, QUORUM)
    q.requeue(m2, nacked=True)
    q.requeue(m1, nacked=True)
    assert bodies(q) == [b"m3", b"m4", b"m2", b"m1"]


def test_a_message_published_after_a_return_comes_after_it(vhost: VirtualHost) -> None:
    q, m1, m2 = four_taking_two(vhost, QUORUM)
    q.requeue(m1, nacked=True)
    q.publish(message(b"m5"))
    q.requeue(m2, nacked=True)
    assert bodies(q) == [b"m3", b"m4", b"m1", b"m5", b"m2"]
    assert q.published == 5  # a return is not a publish


def test_quorum_channel_close_keeps_the_original_position(vhost: VirtualHost) -> None:
    q, m1, m2 = four_taking_two(vhost, QUORUM)
    q.requeue(m1)
    q.requeue(m2)
    assert bodies(q) == [b"m1", b"m2", b"m3", b"m4"]
    head = q.get()
    assert head is not None and (head.redelivered, head.delivery_count) == (True, 1)


def test_quorum_with_a_delivery_limit_keeps_the_original_position(vhost: VirtualHost) -> None:
    q, m1, m2 = four_taking_two(vhost, {**QUORUM, "x-delivery-limit": 5})
    q.requeue(m1, nacked=True)
    q.requeue(m2, nacked=True)
    assert bodies(q) == [b"m1", b"m2", b"m3", b"m4"]


def test_a_delivery_limit_policy_keeps_the_original_position(vhost: VirtualHost) -> None:
    q, m1, m2 = four_taking_two(vhost, QUORUM)
    vhost.set_policy("limit", "^q$", {"delivery-limit": 5}, apply_to="queues")
    q.requeue(m1, nacked=True)
    vhost.clear_policy("limit")
    q.requeue(m2, nacked=True)
    assert bodies(q) == [b"m1", b"m3", b"m4", b"m2"]


@pytest.mark.parametrize("nacked", [True, False])
def test_classic_queues_always_keep_the_original_position(vhost: VirtualHost,
                                                          nacked: bool) -> None:
    q, m1, m2 = four_taking_two(vhost, {})
    q.requeue(m2, nacked)
    q.requeue(m1, nacked)
    assert bodies(q) == [b"m1", b"m2", b"m3", b"m4"]


def test_a_consumer_nacking_sees_the_rest_first(vhost: VirtualHost, clock: FakeScheduler,
                                                channel: FakeChannel) -> None:
    """prefetch 1: c1 nacked, then c2 and c3 come before c1 again (probed the same)."""
    q = vhost.declare_queue("q", durable=True, arguments=QUORUM)
    for body in (b"c1", b"c2", b"c3"):
        q.publish(message(body))
    channel.consume(q, "c", prefetch=1)
    clock.run_soon()
    channel.settle(requeue=True)
    clock.run_soon()
    for _ in range(3):
        channel.settle()
        clock.run_soon()
    assert channel.bodies() == [b"c1", b"c2", b"c3", b"c1"]
    assert channel.delivered[-1][1].redelivered


def test_a_returned_message_keeps_its_deduplication_key(vhost: VirtualHost) -> None:
    q = vhost.declare_queue("q", durable=True, arguments={**QUORUM,
                                                          "x-message-deduplication": True})
    q.publish(message(b"m1", headers={"x-deduplication-header": "k1"}))
    q.publish(message(b"m2"))
    m1 = q.get()
    assert m1 is not None
    q.requeue(m1, nacked=True)
    q.publish(message(b"dup", headers={"x-deduplication-header": "k1"}))
    assert bodies(q) == [b"m2", b"m1"]


def test_a_returned_message_keeps_its_ttl(vhost: VirtualHost, clock: FakeScheduler) -> None:
    q = vhost.declare_queue("q", durable=True, arguments={**QUORUM, "x-message-ttl": 1000})
    q.publish(message(b"m1"))
    q.publish(message(b"m2"))
    m1 = q.get()
    assert m1 is not None
    q.requeue(m1, nacked=True)
    clock.advance(0.5)
    q.publish(message(b"m3"))
    assert bodies(q) == [b"m2", b"m1", b"m3"]
    clock.advance(0.6)  # m1 and m2 are due; m1 is behind m2 and goes with it
    assert bodies(q) == [b"m3"]
