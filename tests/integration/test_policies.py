"""Vhost policies against RabbitMQ 3.13 behaviour.

Policies are set in-process (``VirtualHost.set_policy`` on the broker's loop), as rabbitmqctl
set_policy would. Rules checked: a policy applies to matching existing and newly declared queues
or exchanges (per apply-to); only the highest-priority matching policy applies (definitions are
not merged); numeric limits take the minimum of policy and x-argument, while other keys (DLX,
overflow) take the x-argument; ha-* keys are accepted and ignored. The timing rules (policy
TTL and expires, priority without merging) are tested on a fake clock in tests/core.
"""

from __future__ import annotations

import time

import pika
import pytest
from pika.exceptions import NackError
from pika_helpers import drain, fanout_pair, get_within, publish_numbered


def set_policy(broker, name: str, pattern: str, definition: dict, priority: int = 0,
               apply_to: str = "all") -> None:  # type: ignore[no-untyped-def]
    broker.call(broker.server.vhosts["/"].set_policy, name, pattern, definition, priority,
                apply_to)


def clear_policy(broker, name: str) -> None:  # type: ignore[no-untyped-def]
    broker.call(broker.server.vhosts["/"].clear_policy, name)


# ---- message-ttl / expires --------------------------------------------------------------

def test_message_ttl_policy_on_existing_queue(broker, ch):
    ch.queue_declare("ttl.q")
    set_policy(broker, "ttl", r"^ttl\.", {"message-ttl": 50})
    ch.basic_publish("", "ttl.q", b"old")
    time.sleep(0.2)
    assert ch.basic_get("ttl.q") == (None, None, None)


# ---- max-length / overflow --------------------------------------------------------------

def test_max_length_policy_on_existing_and_new_queues(broker, ch):
    ch.queue_declare("lim.old")
    set_policy(broker, "lim", r"^lim\.", {"max-length": 2})
    ch.queue_declare("lim.new")
    for q in ("lim.old", "lim.new"):
        publish_numbered(ch, q, 5)
        assert drain(ch, q) == [b"m3", b"m4"], q


@pytest.mark.parametrize("arg, policy", [(3, 1), (1, 3)])
def test_max_length_is_the_minimum_of_policy_and_argument(broker, ch, arg, policy):
    set_policy(broker, "lim", "^q$", {"max-length": policy})
    ch.queue_declare("q", arguments={"x-max-length": arg})
    publish_numbered(ch, "q", 5)
    assert drain(ch, "q") == [b"m4"]


def test_max_length_bytes_policy(broker, ch):
    set_policy(broker, "lim", "^q$", {"max-length-bytes": 4})
    ch.queue_declare("q")
    publish_numbered(ch, "q", 3)  # 2 bytes each
    assert drain(ch, "q") == [b"m1", b"m2"]


def test_overflow_policy_reject_publish(broker, ch):
    set_policy(broker, "lim", "^q$", {"max-length": 1, "overflow": "reject-publish"})
    ch.queue_declare("q")
    ch.confirm_delivery()
    ch.basic_publish("", "q", b"kept")
    with pytest.raises(NackError):
        ch.basic_publish("", "q", b"refused")
    assert drain(ch, "q") == [b"kept"]


def test_overflow_argument_wins_over_policy(broker, ch):
    set_policy(broker, "lim", "^q$", {"max-length": 1, "overflow": "reject-publish"})
    ch.queue_declare("q", arguments={"x-overflow": "drop-head"})
    ch.confirm_delivery()
    ch.basic_publish("", "q", b"a")
    ch.basic_publish("", "q", b"b")  # drop-head: acked, a dropped
    assert drain(ch, "q") == [b"b"]


def test_clearing_a_policy_lifts_its_limit(broker, ch):
    set_policy(broker, "lim", "^q$", {"max-length": 1})
    ch.queue_declare("q")
    publish_numbered(ch, "q", 3)
    assert drain(ch, "q") == [b"m2"]
    clear_policy(broker, "lim")
    publish_numbered(ch, "q", 3)
    assert drain(ch, "q") == [b"m0", b"m1", b"m2"]


# ---- dead-lettering ---------------------------------------------------------------------

def _dlx(ch, name: str = "dlx", queue: str = "dlq") -> None:  # type: ignore[no-untyped-def]
    ch.exchange_declare(name, "direct")
    ch.queue_declare(queue)
    ch.queue_bind(queue, name, routing_key="dead")


def test_dead_letter_policy_with_routing_key(broker, ch):
    _dlx(ch)
    ch.queue_declare("src")
    set_policy(broker, "dl", "^src$", {"dead-letter-exchange": "dlx",
                                       "dead-letter-routing-key": "dead"})
    ch.basic_publish("", "src", b"body", pika.BasicProperties(headers={"h": "v"}))
    method, _, _ = ch.basic_get("src")
    ch.basic_reject(method.delivery_tag, requeue=False)
    method, props, body = get_within(ch, "dlq")
    assert (method.exchange, method.routing_key, body) == ("dlx", "dead", b"body")
    (death,) = props.headers["x-death"]
    assert (death["reason"], death["queue"], death["exchange"], death["routing-keys"]) == \
        ("rejected", "src", "", ["src"])
    assert props.headers["h"] == "v"


def test_dead_letter_policy_with_ttl_policy_on_new_queue(broker, ch):
    fanout_pair(ch)
    set_policy(broker, "dl", "^src$", {"dead-letter-exchange": "dlx", "message-ttl": 50})
    ch.queue_declare("src")
    ch.basic_publish("", "src", b"body")
    method, props, body = get_within(ch, "dlq")
    assert (method.exchange, method.routing_key, body) == ("dlx", "src", b"body")
    assert props.headers["x-death"][0]["reason"] == "expired"


def test_dead_letter_exchange_argument_wins_over_policy(broker, ch):
    _dlx(ch, "dlx-arg", "dlq-arg")
    _dlx(ch, "dlx-pol", "dlq-pol")
    set_policy(broker, "dl", "^src$", {"dead-letter-exchange": "dlx-pol"})
    ch.queue_declare("src", arguments={"x-dead-letter-exchange": "dlx-arg",
                                       "x-dead-letter-routing-key": "dead"})
    ch.basic_publish("", "src", b"body")
    method, _, _ = ch.basic_get("src")
    ch.basic_reject(method.delivery_tag, requeue=False)
    assert get_within(ch, "dlq-arg")[2] == b"body"
    assert ch.basic_get("dlq-pol") == (None, None, None)


# ---- apply-to and priority --------------------------------------------------------------

def _ae_and_x(ch) -> None:  # type: ignore[no-untyped-def]
    """A fanout "ae" bound to queue "aeq", and a direct exchange "x" with no bindings."""
    fanout_pair(ch, "ae", "aeq")
    ch.exchange_declare("x", "direct")


def test_apply_to_exchanges_does_not_touch_queues(broker, ch):
    set_policy(broker, "ex-only", "^q$", {"max-length": 1}, 0, "exchanges")
    ch.queue_declare("q")
    publish_numbered(ch, "q", 3)
    assert drain(ch, "q") == [b"m0", b"m1", b"m2"]


def test_apply_to_queues_does_not_touch_exchanges(broker, ch):
    _ae_and_x(ch)
    set_policy(broker, "q-only", "^x$", {"alternate-exchange": "ae"}, 0, "queues")
    ch.basic_publish("x", "nowhere", b"lost")
    assert ch.basic_get("aeq") == (None, None, None)


def test_priority_order_is_by_number_not_by_definition_time(broker, ch):
    set_policy(broker, "high", "^q$", {"max-length": 3}, 10)
    set_policy(broker, "low", "^q", {"max-length": 1}, 1)
    ch.queue_declare("q")
    publish_numbered(ch, "q", 5)
    assert drain(ch, "q") == [b"m2", b"m3", b"m4"]


def test_alternate_exchange_via_policy(broker, ch):
    _ae_and_x(ch)
    set_policy(broker, "ae", "^x$", {"alternate-exchange": "ae"}, 0, "exchanges")
    ch.confirm_delivery()
    ch.basic_publish("x", "nowhere", b"rerouted", mandatory=True)  # no basic.return
    method, _, body = get_within(ch, "aeq")
    assert (method.exchange, method.routing_key, body) == ("x", "nowhere", b"rerouted")


def test_alternate_exchange_policy_on_exchange_declared_later(broker, ch):
    set_policy(broker, "ae", "^x$", {"alternate-exchange": "ae"}, 0, "exchanges")
    _ae_and_x(ch)
    ch.basic_publish("x", "nowhere", b"rerouted")
    assert get_within(ch, "aeq")[2] == b"rerouted"


# ---- ha-* -------------------------------------------------------------------------------

def test_ha_mode_is_accepted_and_ignored(broker, ch):
    set_policy(broker, "ha", "^ha", {"ha-mode": "all", "ha-sync-mode": "automatic",
                                     "max-length": 2})
    ok = ch.queue_declare("ha.q")
    assert ok.method.queue == "ha.q"
    publish_numbered(ch, "ha.q", 3)
    assert drain(ch, "ha.q") == [b"m1", b"m2"]  # the other keys of the policy still apply
    set_policy(broker, "ha-only", "^hx", {"ha-mode": "exactly", "ha-params": 2})
    ch.queue_declare("hx.q")
    publish_numbered(ch, "hx.q", 3)
    assert drain(ch, "hx.q") == [b"m0", b"m1", b"m2"]
