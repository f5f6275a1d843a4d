"""Dispatch in the core: priority queues' order, consumer priorities and credit, round-robin,
single active consumer, global prefetch and channel flow, the per-turn budget."""

from __future__ import annotations

import pytest
from core_fakes import FakeChannel, FakeScheduler, bodies, message

from broker.core import dispatch as dispatch_module
from broker.core import queue as queue_module
from broker.core.vhost import VirtualHost


def publish(vhost: VirtualHost, name: str, count: int) -> None:
    q = vhost.queue(name)
    for i in range(count):
        q.publish(message(f"m{i}".encode()))


# ---- priority queues --------------------------------------------------------------------

def test_priority_queue_serves_highest_first_fifo_within(vhost: VirtualHost) -> None:
    q = vhost.declare_queue("q", arguments={"x-max-priority": 5})
    for body, priority in ((b"a0", 0), (b"b3", 3), (b"c5", 5), (b"d3", 3), (b"e9", 9),
                           (b"f", None)):
        q.publish(message(body) if priority is None else message(body, priority=priority))
    # above the maximum counts as the maximum; no priority counts as 0
    assert bodies(q) == [b"c5", b"e9", b"b3", b"d3", b"a0", b"f"]
    assert [e.message.body for e in iter(q.get, None)] == \
        [b"c5", b"e9", b"b3", b"d3", b"a0", b"f"]


def test_a_requeued_low_priority_message_does_not_jump_a_high_one(vhost: VirtualHost) -> None:
    q = vhost.declare_queue("q", arguments={"x-max-priority": 10})
    q.publish(message(b"low1", priority=1))
    q.publish(message(b"low2", priority=1))
    low1 = q.get()
    assert low1 is not None
    q.publish(message(b"high", priority=9))
    q.requeue(low1)
    assert bodies(q) == [b"high", b"low1", b"low2"]


def test_prefetch_one_consumer_sees_priority_order(vhost: VirtualHost,
                                                   clock: FakeScheduler,
                                                   channel: FakeChannel) -> None:
    q = vhost.declare_queue("q", arguments={"x-max-priority": 10})
    channel.consume(q, "c", prefetch=1)
    q.publish(message(b"first", priority=1))  # delivered at once: the consumer had credit
    for body, priority in ((b"p1", 1), (b"p9", 9), (b"p5", 5)):
        q.publish(message(body, priority=priority))
    for _ in range(3):
        channel.settle()
        clock.run_soon()
    assert channel.bodies() == [b"first", b"p9", b"p5", b"p1"]


# ---- consumer priorities and round-robin ------------------------------------------------

def test_all_messages_go_to_the_higher_priority_consumer(vhost: VirtualHost,
                                                         clock: FakeScheduler) -> None:
    q = vhost.declare_queue("q")
    low, high = FakeChannel(), FakeChannel()
    low.consume(q, "low", no_ack=True, arguments={"x-priority": 1})
    high.consume(q, "high", no_ack=True, arguments={"x-priority": 10})
    publish(vhost, "q", 4)
    clock.run_soon()
    assert (len(high.bodies()), low.bodies()) == (4, [])


def test_lower_priority_consumer_gets_the_overflow_until_credit_returns(
        vhost: VirtualHost, clock: FakeScheduler) -> None:
    q = vhost.declare_queue("q")
    low, high = FakeChannel(), FakeChannel()
    low.consume(q, "low", prefetch=10, arguments={"x-priority": 1})
    high.consume(q, "high", prefetch=2, arguments={"x-priority": 10})
    publish(vhost, "q", 5)
    assert high.bodies() == [b"m0", b"m1"] and low.bodies() == [b"m2", b"m3", b"m4"]
    high.settle()
    clock.run_soon()
    q.publish(message(b"m5"))
    q.publish(message(b"m6"))
    assert high.bodies()[2:] == [b"m5", b"m6"] and len(low.bodies()) == 3


def test_equal_priorities_round_robin(vhost: VirtualHost, clock: FakeScheduler) -> None:
    q = vhost.declare_queue("q")
    a, b, c = FakeChannel(), FakeChannel(), FakeChannel()
    for ch, tag in ((a, "a"), (b, "b"), (c, "c")):
        ch.consume(q, tag, no_ack=True)
    publish(vhost, "q", 6)
    assert (a.bodies(), b.bodies(), c.bodies()) == (
        [b"m0", b"m3"], [b"m1", b"m4"], [b"m2", b"m5"])


def test_a_backlog_is_shared_round_robin_when_consumers_arrive(
        vhost: VirtualHost, clock: FakeScheduler) -> None:
    q = vhost.declare_queue("q")
    publish(vhost, "q", 4)
    a, b = FakeChannel(), FakeChannel()
    a.consume(q, "a", prefetch=1)
    b.consume(q, "b", prefetch=1)
    clock.run_soon()
    assert (a.bodies(), b.bodies()) == ([b"m0"], [b"m1"])
    b.settle()
    a.settle()
    clock.run_soon()
    assert sorted(a.bodies() + b.bodies()) == [b"m0", b"m1", b"m2", b"m3"]


def test_no_credit_no_delivery(vhost: VirtualHost, clock: FakeScheduler) -> None:
    """Channel flow off, then the channel's global prefetch: each stops deliveries."""
    q = vhost.declare_queue("q")
    ch = FakeChannel(can_deliver=False)
    ch.consume(q, "c")
    publish(vhost, "q", 3)
    clock.run_soon()
    assert ch.bodies() == []
    ch.can_deliver, ch.global_prefetch = True, 2
    q.wake()
    clock.run_soon()
    assert ch.bodies() == [b"m0", b"m1"] and q.message_count == 1


def test_dispatch_yields_after_its_budget(vhost: VirtualHost, clock: FakeScheduler,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """At most BUDGET deliveries per call; the rest on the next loop turn."""
    monkeypatch.setattr(dispatch_module, "BUDGET", 3)  # the delivery loop's
    monkeypatch.setattr(queue_module, "BUDGET", 3)  # Consumer.room's
    q = vhost.declare_queue("q")
    publish(vhost, "q", 7)
    ch = FakeChannel()
    ch.consume(q, "c", no_ack=True)
    clock.soon.pop()()  # the first turn only
    assert len(ch.bodies()) == 3 and len(clock.soon) == 1
    clock.run_soon()
    assert len(ch.bodies()) == 7


def test_a_batch_stops_at_the_connections_byte_room(vhost: VirtualHost,
                                                    clock: FakeScheduler) -> None:
    """One consumer's batch ends with the message that fills the connection's byte room
    (bounds on unacked bodies and output waiting), one message past it at most."""
    q = vhost.declare_queue("q")
    for _ in range(10):
        q.publish(message(b"x" * 100))
    ch = FakeChannel(room_bytes=250)
    ch.consume(q, "c")
    clock.run_soon()
    assert len(ch.bodies()) == 3 and q.message_count == 7
    ch.room_bytes = 0  # already full: still one, as a single delivery would be
    q.wake()
    clock.run_soon()
    assert len(ch.bodies()) == 4


# ---- single active consumer -------------------------------------------------------------

def test_single_active_consumer_takes_everything_and_hands_over_on_cancel(
        vhost: VirtualHost, clock: FakeScheduler) -> None:
    q = vhost.declare_queue("q", arguments={"x-single-active-consumer": True})
    first, second = FakeChannel(), FakeChannel()
    one = first.consume(q, "one", prefetch=2)
    second.consume(q, "two", prefetch=2)
    publish(vhost, "q", 4)
    clock.run_soon()
    assert (first.bodies(), second.bodies()) == ([b"m0", b"m1"], [])
    q.remove_consumer(one)
    first.settle(requeue=True)  # its unacked messages go back first
    clock.run_soon()
    assert second.bodies() == [b"m0", b"m1"]


def test_exclusive_consumer_is_found(vhost: VirtualHost, channel: FakeChannel) -> None:
    q = vhost.declare_queue("q")
    channel.consume(q, "shared")
    assert q.exclusive_consumer() is None
    excl = channel.consume(q, "excl", exclusive=True)
    assert q.exclusive_consumer() is excl


def test_auto_delete_queue_goes_with_its_last_consumer(vhost: VirtualHost,
                                                       channel: FakeChannel) -> None:
    q = vhost.declare_queue("q", auto_delete=True)
    a = channel.consume(q, "a")
    b = channel.consume(q, "b")
    q.remove_consumer(a)
    assert "q" in vhost.queues
    q.remove_consumer(b)
    assert "q" not in vhost.queues


def test_deleting_a_queue_cancels_its_consumers(vhost: VirtualHost,
                                                channel: FakeChannel) -> None:
    q = vhost.declare_queue("q")
    channel.consume(q, "c1")
    channel.consume(q, "c2")
    vhost.remove_queue(q)
    assert channel.cancelled == ["c1", "c2"] and q.consumers == []
