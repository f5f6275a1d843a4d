"""Credit flow in the core (broker.core.credit): when a queue is behind, publishes spend credit
and deliveries earn it back; waiters are called back by deliveries, by the stall timer's grants
(slow consumers, an idle loop) or when the queue stops being behind. Fake clock, no sockets."""

from __future__ import annotations

import pytest
from core_fakes import FakeChannel, FakeScheduler, message

from broker.core import credit
from broker.core.credit import LoopLoad
from broker.core.queue import Queue
from broker.core.server import Server
from broker.core.vhost import VirtualHost


def fill(q: Queue, count: int) -> None:
    for i in range(count):
        q.publish(message(f"m{i}".encode()))


class Waiter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@pytest.fixture
def server(server_clock: tuple[Server, FakeScheduler]) -> Server:
    return server_clock[0]


def behind_queue(vhost: VirtualHost, channel: FakeChannel) -> Queue:
    """A queue whose one consumer holds its prefetch and a backlog past BEHIND_AT."""
    q = vhost.declare_queue("q")
    channel.consume(q, "c", prefetch=10)
    fill(q, credit.BEHIND_AT + 20)
    assert q.behind and len(channel.unacked) == 10
    return q


def test_no_consumer_no_credit_spent(vhost: VirtualHost) -> None:
    q = vhost.declare_queue("q")
    fill(q, 5 * credit.BEHIND_AT)
    assert not q.behind and q.credit == credit.CREDIT


def test_publishes_into_a_behind_queue_spend_credit(vhost: VirtualHost,
                                                      channel: FakeChannel) -> None:
    q = behind_queue(vhost, channel)
    spent = credit.CREDIT - q.credit
    assert spent == q.message_count - credit.BEHIND_AT  # one per message past the mark
    fill(q, q.credit)
    assert q.credit == 0


def test_deliveries_earn_credit_and_call_the_waiter_back(vhost: VirtualHost,
                                                          channel: FakeChannel,
                                                          clock: FakeScheduler) -> None:
    q = behind_queue(vhost, channel)
    fill(q, q.credit)
    waiter = Waiter()
    q.add_credit_waiter(waiter)
    acked = 0
    while waiter.calls == 0:
        channel.settle("c")  # acks the 10 unacked, the queue delivers 10 more
        clock.run_soon()
        acked += 10
        assert acked <= credit.RESUME_AT
    assert acked == credit.RESUME_AT and q.credit >= credit.RESUME_AT
    assert waiter.calls == 1


def test_the_queue_drained_to_the_mark_refills(vhost: VirtualHost,
                                               channel: FakeChannel) -> None:
    q = vhost.declare_queue("q")
    channel.consume(q, "c", prefetch=credit.BEHIND_AT + 1000)
    fill(q, 2 * credit.BEHIND_AT)  # the consumer takes BEHIND_AT + 1000 of them
    assert q.message_count < credit.BEHIND_AT and not q.behind
    assert q.credit == credit.CREDIT


@pytest.mark.parametrize("end", ["cancel", "delete", "purge"])
def test_a_queue_that_stops_being_behind_lets_waiters_go(vhost: VirtualHost,
                                                          channel: FakeChannel,
                                                          end: str) -> None:
    q = behind_queue(vhost, channel)
    fill(q, q.credit)
    waiter = Waiter()
    q.add_credit_waiter(waiter)
    if end == "cancel":
        q.remove_consumer(q.consumers[0])
    elif end == "delete":
        vhost.remove_queue(q)
    else:
        q.purge()
    assert waiter.calls == 1 and q.credit == credit.CREDIT


def test_slow_consumers_on_an_idle_loop_get_the_idle_grant(vhost: VirtualHost,
                                                           channel: FakeChannel,
                                                           clock: FakeScheduler) -> None:
    """A consumer that delivers nothing (a worker busy with its prefetch) does not hold the
    publisher back when the broker has time to spare: after SLOW_LOOKS looks, a grant."""
    q = behind_queue(vhost, channel)
    fill(q, q.credit)
    waiter = Waiter()
    q.add_credit_waiter(waiter)
    clock.advance(credit.STALL * (credit.SLOW_LOOKS - 1) + credit.STALL / 2)
    assert waiter.calls == 0
    clock.advance(credit.STALL)
    assert waiter.calls == 1 and q.credit == credit.IDLE_GRANT


def test_a_saturated_loop_grants_only_the_floor(vhost: VirtualHost, channel: FakeChannel,
                                                clock: FakeScheduler, server: Server,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "saturated", lambda: True)
    q = behind_queue(vhost, channel)
    fill(q, q.credit)
    waiter = Waiter()
    q.add_credit_waiter(waiter)
    clock.advance(credit.STALL * credit.SLOW_LOOKS + credit.STALL / 2)
    assert waiter.calls == 1 and q.credit == credit.FLOOR


def test_a_consumer_that_keeps_up_is_not_a_slow_one(vhost: VirtualHost, channel: FakeChannel,
                                                    clock: FakeScheduler) -> None:
    """Deliveries of at least SLOW per look: no grant, only the credit they earn."""
    q = vhost.declare_queue("q")
    channel.consume(q, "c", prefetch=credit.SLOW)
    fill(q, credit.BEHIND_AT + credit.SLOW + credit.CREDIT)
    waiter = Waiter()
    q.add_credit_waiter(waiter)
    for _ in range(3 * credit.SLOW_LOOKS):
        channel.settle("c")  # SLOW deliveries per look
        clock.advance(credit.STALL)
        assert q.credit <= credit.CREDIT
    assert q.credit != credit.IDLE_GRANT


def test_loop_load_is_the_busy_share_of_the_last_window() -> None:
    load = LoopLoad()
    assert not load.saturated(100.0)  # nothing measured yet
    load.busy += 0.0105
    assert load.saturated(100.011)
    load.busy += 0.005
    assert not load.saturated(100.022)
    load.busy += 0.005
    assert not load.saturated(100.025)  # a span shorter than the window keeps the last share
