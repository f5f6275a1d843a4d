"""Message TTL (per queue, per message, policy), expiry at the head and its timer, x-expires:
the core driven by a fake clock (no sockets, no sleeps)."""

from __future__ import annotations

from core_fakes import FakeChannel, FakeScheduler, bodies, headers_of, message

from broker.core.server import Server
from broker.core.vhost import VirtualHost


def dead_letter_queue(vhost: VirtualHost, name: str = "dlq") -> None:
    """A fanout exchange ``dlx`` bound to a queue: where dead letters can be read."""
    vhost.bind(vhost.declare_exchange("dlx", "fanout"), vhost.declare_queue(name), "", None)


# ---- message TTL ------------------------------------------------------------------------

def test_queue_ttl_expires_the_message_when_due_not_before(vhost: VirtualHost,
                                                           clock: FakeScheduler) -> None:
    q = vhost.declare_queue("q", arguments={"x-message-ttl": 100})
    q.publish(message(b"old"))
    clock.advance(0.099)
    assert bodies(q) == [b"old"]
    clock.advance(0.002)
    assert q.message_count == 0


def test_an_expired_message_is_never_got(vhost: VirtualHost, clock: FakeScheduler) -> None:
    q = vhost.declare_queue("q", arguments={"x-message-ttl": 100})
    q.publish(message(b"old"))
    clock.time += 1  # the timer has not run yet: get() itself must not hand it out
    assert q.get() is None


def test_an_expired_message_is_not_delivered_to_a_late_consumer(
        vhost: VirtualHost, clock: FakeScheduler, channel: FakeChannel) -> None:
    q = vhost.declare_queue("q", arguments={"x-message-ttl": 50})
    q.publish(message(b"old"))
    clock.time += 1  # due, timer not yet run
    channel.consume(q, "c", no_ack=True)
    q.publish(message(b"fresh"))
    clock.run_soon()
    assert channel.bodies() == [b"fresh"]


def test_per_message_expiration(vhost: VirtualHost, clock: FakeScheduler) -> None:
    q = vhost.declare_queue("q")
    q.publish(message(b"short", expiration="50"))
    q.publish(message(b"forever"))
    clock.advance(0.05)
    assert bodies(q) == [b"forever"]


def test_the_lower_of_queue_ttl_and_expiration_applies(vhost: VirtualHost,
                                                       clock: FakeScheduler) -> None:
    long_queue = vhost.declare_queue("long", arguments={"x-message-ttl": 60000})
    long_queue.publish(message(b"short", expiration="50"))
    short_queue = vhost.declare_queue("short", arguments={"x-message-ttl": 50})
    short_queue.publish(message(b"long", expiration="60000"))
    clock.advance(0.05)
    assert (long_queue.message_count, short_queue.message_count) == (0, 0)


def test_expiration_zero_without_a_consumer_is_dropped_at_once(vhost: VirtualHost) -> None:
    dead_letter_queue(vhost)
    q = vhost.declare_queue("q", arguments={"x-dead-letter-exchange": "dlx"})
    q.publish(message(b"now", expiration="0"))
    assert q.message_count == 0
    assert bodies(vhost.queue("dlq")) == [b"now"]


# RabbitMQ 3.10.8, probed: a message with expiration "0" (or in a queue with x-message-ttl 0)
# goes to a consumer that can take it when it is published; otherwise it expires at once
# (dead-lettered, reason expired), and basic.get never sees it. Every test below sets
# clock.drift: the real clock moves between the publish and the delivery check.

def test_expiration_zero_goes_to_a_waiting_consumer(vhost: VirtualHost, clock: FakeScheduler,
                                                    channel: FakeChannel) -> None:
    clock.drift = 1e-6
    dead_letter_queue(vhost)
    q = vhost.declare_queue("q", arguments={"x-dead-letter-exchange": "dlx"})
    channel.consume(q, "auto", no_ack=True)
    q.publish(message(b"now", expiration="0"))
    assert channel.bodies() == [b"now"]
    assert bodies(vhost.queue("dlq")) == []


def test_queue_ttl_zero_goes_to_a_waiting_consumer(vhost: VirtualHost, clock: FakeScheduler,
                                                   channel: FakeChannel) -> None:
    clock.drift = 1e-6
    dead_letter_queue(vhost)
    q = vhost.declare_queue("q", arguments={"x-message-ttl": 0,
                                            "x-dead-letter-exchange": "dlx"})
    channel.consume(q, "manual", prefetch=10)
    q.publish(message(b"a"))
    q.publish(message(b"b"))
    assert channel.bodies() == [b"a", b"b"]
    assert bodies(vhost.queue("dlq")) == [] and q.message_count == 0


def test_expiration_zero_goes_to_the_consumer_that_has_credit(
        vhost: VirtualHost, clock: FakeScheduler) -> None:
    clock.drift = 1e-6
    dead_letter_queue(vhost)
    q = vhost.declare_queue("q", arguments={"x-dead-letter-exchange": "dlx"})
    full, free = FakeChannel(), FakeChannel()
    full.consume(q, "full", prefetch=1)
    q.publish(message(b"first"))
    free.consume(q, "free", no_ack=True)
    q.publish(message(b"now", expiration="0"))
    assert (full.bodies(), free.bodies()) == ([b"first"], [b"now"])
    assert bodies(vhost.queue("dlq")) == []


def test_expiration_zero_expires_when_no_consumer_has_credit(
        vhost: VirtualHost, clock: FakeScheduler, channel: FakeChannel) -> None:
    clock.drift = 1e-6
    dead_letter_queue(vhost)
    q = vhost.declare_queue("q", arguments={"x-dead-letter-exchange": "dlx"})
    channel.consume(q, "c", prefetch=1)
    q.publish(message(b"first"))
    q.publish(message(b"now", expiration="0"))
    assert q.message_count == 0
    assert bodies(vhost.queue("dlq")) == [b"now"]
    channel.settle()  # credit comes back: nothing is left for it
    clock.advance(1)
    assert channel.bodies() == [b"first"]


def test_expiration_zero_is_never_got(vhost: VirtualHost, clock: FakeScheduler) -> None:
    clock.drift = 1e-6
    dead_letter_queue(vhost)
    q = vhost.declare_queue("q", arguments={"x-dead-letter-exchange": "dlx"})
    q.publish(message(b"now", expiration="0"))
    assert q.get() is None
    assert bodies(vhost.queue("dlq")) == [b"now"]


def test_expiration_zero_behind_a_backlog_expires_at_the_head(
        vhost: VirtualHost, clock: FakeScheduler, channel: FakeChannel) -> None:
    clock.drift = 1e-6
    dead_letter_queue(vhost)
    q = vhost.declare_queue("q", arguments={"x-dead-letter-exchange": "dlx"})
    for body, props in ((b"a", {}), (b"now", {"expiration": "0"}), (b"b", {})):
        q.publish(message(body, **props))
    assert q.message_count == 3  # counted until it reaches the head
    channel.consume(q, "late", no_ack=True)
    clock.run_soon()
    assert channel.bodies() == [b"a", b"b"]
    assert bodies(vhost.queue("dlq")) == [b"now"]


def test_expiration_zero_requeued_expires_even_with_a_consumer_waiting(
        vhost: VirtualHost, clock: FakeScheduler, channel: FakeChannel) -> None:
    """Only the publish hands a due message over; a requeue puts it back in the queue, where
    it is expired."""
    clock.drift = 1e-6
    dead_letter_queue(vhost)
    q = vhost.declare_queue("q", arguments={"x-dead-letter-exchange": "dlx"})
    channel.consume(q, "c", prefetch=10)
    q.publish(message(b"now", expiration="0"))
    assert channel.bodies() == [b"now"]
    channel.settle(requeue=True)
    clock.run_soon()
    assert channel.bodies() == [b"now"] and q.message_count == 0
    dead = vhost.queue("dlq").store.peek()
    assert dead is not None and dead.message.body == b"now"
    assert headers_of(dead.message)["x-death"][0]["reason"] == "expired"


def test_only_the_head_expires(vhost: VirtualHost, clock: FakeScheduler) -> None:
    """RabbitMQ's classic queues expire at the head: an expired message behind a live one
    stays (and is counted) until it reaches the head, and is never delivered."""
    dead_letter_queue(vhost)
    q = vhost.declare_queue("q", arguments={"x-dead-letter-exchange": "dlx"})
    q.publish(message(b"long", expiration="10000"))
    q.publish(message(b"short", expiration="100"))
    clock.advance(1)
    assert bodies(q) == [b"long", b"short"]
    entry = q.get()
    assert entry is not None and entry.message.body == b"long"
    assert q.get() is None
    assert bodies(vhost.queue("dlq")) == [b"short"]


def test_the_expiry_timer_is_re_armed_for_the_next_head(vhost: VirtualHost,
                                                        clock: FakeScheduler) -> None:
    q = vhost.declare_queue("q")
    q.publish(message(b"a", expiration="100"))
    q.publish(message(b"b", expiration="300"))
    q.publish(message(b"c", expiration="200"))
    assert len(clock.pending_timers) == 1  # one timer per queue, for its head
    clock.advance(0.1)
    assert bodies(q) == [b"b", b"c"]
    assert [round(t.when - clock.now(), 3) for t in clock.pending_timers] == [0.2]
    clock.advance(0.2)
    assert q.message_count == 0  # c was due first but waited behind b
    assert clock.pending_timers == []


def test_a_requeued_message_keeps_its_expiry(vhost: VirtualHost, clock: FakeScheduler,
                                             channel: FakeChannel) -> None:
    q = vhost.declare_queue("q", arguments={"x-message-ttl": 100})
    channel.consume(q, "c", prefetch=1)
    q.publish(message(b"m"))
    clock.advance(0.5)  # delivered, unacked: not expired while out
    assert channel.bodies() == [b"m"]
    q.remove_consumer(channel.unacked[0][0])
    channel.settle(requeue=True)
    assert q.message_count == 0  # back in the queue already past its TTL: expired


def test_message_ttl_policy_on_new_and_existing_queues(vhost: VirtualHost,
                                                       clock: FakeScheduler) -> None:
    existing = vhost.declare_queue("ttl.old")
    vhost.set_policy("ttl", r"^ttl\.", {"message-ttl": 50})
    new = vhost.declare_queue("ttl.new")
    other = vhost.declare_queue("other")
    for q in (existing, new, other):
        q.publish(message(b"m"))
    clock.advance(0.05)
    assert (existing.message_count, new.message_count, other.message_count) == (0, 0, 1)


def test_message_ttl_policy_and_argument_take_the_lower(vhost: VirtualHost,
                                                        clock: FakeScheduler) -> None:
    vhost.set_policy("ttl", "^q", {"message-ttl": 60000})
    q = vhost.declare_queue("q", arguments={"x-message-ttl": 50})
    q2 = vhost.declare_queue("q2")
    vhost.set_policy("short", "^q2$", {"message-ttl": 50}, priority=5)
    q2.arguments["x-message-ttl"] = 60000
    q2.refresh_settings()
    q.publish(message(b"m"))
    q2.publish(message(b"m"))
    clock.advance(0.05)
    assert (q.message_count, q2.message_count) == (0, 0)


def test_higher_priority_policy_wins_and_is_not_merged(vhost: VirtualHost,
                                                       clock: FakeScheduler) -> None:
    vhost.set_policy("low", "^q", {"message-ttl": 50, "max-length": 1}, 1)
    vhost.set_policy("high", "^q$", {"max-length": 3}, 10)
    q = vhost.declare_queue("q")
    for i in range(5):
        q.publish(message(f"m{i}".encode()))
    clock.advance(10)
    assert bodies(q) == [b"m2", b"m3", b"m4"]  # max-length 3, and no TTL from "low"


# ---- x-expires --------------------------------------------------------------------------

def test_x_expires_removes_an_unused_queue(vhost: VirtualHost, clock: FakeScheduler) -> None:
    vhost.declare_queue("q", arguments={"x-expires": 200})
    clock.advance(0.199)
    assert "q" in vhost.queues
    clock.advance(0.002)
    assert "q" not in vhost.queues


def test_x_expires_spares_a_queue_with_a_consumer_and_counts_from_the_cancel(
        vhost: VirtualHost, clock: FakeScheduler, channel: FakeChannel) -> None:
    q = vhost.declare_queue("q", arguments={"x-expires": 200})
    consumer = channel.consume(q, "c")
    clock.advance(1)
    assert vhost.queues.get("q") is q
    clock.advance(0.5)
    q.remove_consumer(consumer)
    clock.advance(0.199)
    assert vhost.queues.get("q") is q
    clock.advance(0.002)
    assert "q" not in vhost.queues and q.deleted


def test_x_expires_countdown_restarts_when_the_queue_is_used(vhost: VirtualHost,
                                                             clock: FakeScheduler) -> None:
    q = vhost.declare_queue("q", arguments={"x-expires": 200})
    for _ in range(5):
        clock.advance(0.15)
        q.get()  # basic.get counts as use
    assert vhost.queues.get("q") is q
    clock.advance(0.2)
    assert "q" not in vhost.queues


def test_expires_policy_removes_matching_unused_queues(vhost: VirtualHost,
                                                       clock: FakeScheduler) -> None:
    vhost.declare_queue("exp.q")
    vhost.declare_queue("keep")
    vhost.set_policy("exp", r"^exp\.", {"expires": 200})
    clock.advance(0.2)
    assert sorted(vhost.queues) == ["keep"]


def test_a_deleted_queue_leaves_no_timer_behind(vhost: VirtualHost,
                                                clock: FakeScheduler) -> None:
    q = vhost.declare_queue("q", arguments={"x-expires": 1000, "x-message-ttl": 1000})
    q.publish(message(b"m"))
    vhost.remove_queue(q)
    assert clock.pending_timers == []


# ---- shutdown -----------------------------------------------------------------------------

def test_frozen_queues_change_no_more_by_themselves(server_clock: tuple[Server, FakeScheduler]
                                                    ) -> None:
    """Node.stop freezes the queues before it closes their stores: from then on no message
    expires and no queue expires, whatever is armed or arrives (the next boot does it)."""
    server, clock = server_clock
    vhost = server.vhosts["/"]
    dead_letter_queue(vhost)
    q = vhost.declare_queue("q", arguments={"x-message-ttl": 100, "x-expires": 200,
                                            "x-dead-letter-exchange": "dlx"})
    q.publish(message(b"armed"))
    server.freeze_queues()
    assert clock.pending_timers == []
    q.publish(message(b"late"))
    vhost.declare_queue("idle", arguments={"x-expires": 100})
    clock.advance(10)
    assert bodies(q) == [b"armed", b"late"]
    assert bodies(vhost.queue("dlq")) == [] and "idle" in vhost.queues
