"""Core unit tests: where message counts live (consumers, queues, departed consumers folded
once their deliveries are settled), operator policies merged into a queue's effective
policy, and the vhost's queue limit."""

from __future__ import annotations

import pytest
from core_fakes import FakeChannel, message

from broker.core import policies
from broker.core.queue import Consumer
from broker.core.stats import Counters, prune_departed, queue_message_row, queue_totals
from broker.core.vhost import VirtualHost
from protocol.errors import PreconditionFailed
from storage.message import Entry


class CountingChannel(FakeChannel):
    """Counts on the consumer as broker.amqp.channel does: one increment per delivery, one
    per ack."""

    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        consumer.delivered += 1
        super().deliver(consumer, entry)

    def ack_all(self, tag: str) -> None:
        for consumer, _entry in self.unacked:
            if consumer.tag == tag:
                consumer.acked += 1
        self.settle(tag)


def test_counts_follow_consumers_into_the_queue(vhost: VirtualHost, clock) -> None:  # type: ignore
    queue = vhost.declare_queue("q")
    channel = CountingChannel()
    manual = channel.consume(queue, "manual", prefetch=3)
    for i in range(5):
        queue.publish(message(str(i).encode()))
    clock.run_soon()
    totals = queue_totals(queue)
    assert (totals.publish, totals.deliver, totals.ack) == (5, 3, 0)

    # Cancelled with 3 unacked: kept as departed, its later acks still count, once.
    queue.remove_consumer(manual)
    assert queue.departed == [manual]
    channel.ack_all("manual")
    assert queue_totals(queue).ack == 3
    prune_departed(queue)
    assert queue.departed == [] and queue.stats.deliver == 3 and queue.stats.ack == 3
    assert queue_totals(queue).ack == 3

    auto = channel.consume(queue, "auto", no_ack=True)
    clock.run_soon()
    row = dict(zip(("publish", "deliver", "deliver_no_ack"), queue_message_row(queue),
                   strict=False))
    assert row == {"publish": 5, "deliver": 3, "deliver_no_ack": 2}
    queue.remove_consumer(auto)  # nothing unacked: folded at once
    assert queue.departed == [] and queue.stats.deliver_no_ack == 2


def test_requeues_count_as_redeliveries(vhost: VirtualHost) -> None:
    queue = vhost.declare_queue("q")
    queue.publish(message())
    entry = queue.get()
    assert entry is not None
    queue.requeue(entry)
    assert queue_totals(queue).redeliver == 1


def test_counters_add_and_total() -> None:
    a, b = Counters(), Counters()
    a.publish, b.publish, b.get_empty = 2, 3, 1
    total = Counters.total([a, b])
    assert (total.publish, total.get_empty, total.ack) == (5, 1, 0)


def test_operator_policy_merges_as_rabbitmq(vhost: VirtualHost) -> None:
    queue = vhost.declare_queue("jobs.1")
    vhost.set_policy("user", "^jobs", {"max-length": 100, "overflow": "drop-head",
                                       "dead-letter-exchange": "dlx"}, 0, "queues")
    vhost.set_operator_policy("op", "^jobs", {"max-length": 10, "overflow": "reject-publish",
                                              "message-ttl": 5000})
    assert (queue.policy_name, queue.operator_policy_name) == ("user", "op")
    assert queue.policy == {"max-length": 10, "overflow": "reject-publish",
                            "dead-letter-exchange": "dlx", "message-ttl": 5000}
    assert queue.max_length == 10 and queue.message_ttl == 5000
    vhost.clear_operator_policy("op")
    assert queue.operator_policy_name is None and queue.max_length == 100


def test_operator_policy_keys_are_checked() -> None:
    assert policies.validate_operator({"max-length": 1, "expires": 5}) is None
    assert policies.validate_operator({"dead-letter-exchange": "x"}) == (
        'Validation failed\n\n[<<"dead-letter-exchange">>] are not recognised policy '
        'settings\n')
    assert policies.merge_operator({"max-length": 5}, {"max-length": 9}) == {"max-length": 5}


def test_queue_limit_of_a_vhost(vhost: VirtualHost) -> None:
    vhost.limits["max-queues"] = 1
    vhost.declare_queue("one")
    vhost.declare_queue("one")  # the same queue again is not a new one
    with pytest.raises(PreconditionFailed) as refused:
        vhost.declare_queue("two")
    assert refused.value.reply_text == ("PRECONDITION_FAILED - cannot declare queue 'two': "
                                        "queue limit in vhost '/' (1) is reached")
    vhost.limits["max-queues"] = -1
    vhost.declare_queue("two")
