"""Vhost policies and operator policies: which apply to a queue or exchange, and how they
combine with each other and with x-arguments.

A policy is {pattern, apply-to, priority, definition}. The applying policy is the matching one
with the highest priority (ties: the name that sorts last loses to the first, as RabbitMQ picks
deterministically). For numeric limits the stricter of argument and policy wins; for the rest an
x-argument overrides the policy. ha-* keys are accepted and ignored, as RabbitMQ 4.x does (in
cluster mode every durable queue is replicated anyway).

Operator policies (set by administrators, applying to queues only) are merged into the user
policy's definition as RabbitMQ merges them: for a key both set, the smaller number wins
(``overflow``: the operator's value); only ``OPERATOR_KEYS`` are allowed in them.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .jsondoc import JSONObject

log = logging.getLogger("broker.policies")

MIN_OF_BOTH = frozenset({"max-length", "max-length-bytes", "message-ttl", "expires",
                         "delivery-limit", "consumer-timeout"})
QUEUE_KEYS = frozenset({"message-ttl", "expires", "max-length", "max-length-bytes", "overflow",
                        "dead-letter-exchange", "dead-letter-routing-key", "queue-mode",
                        "delivery-limit", "single-active-consumer", "consumer-timeout",
                        "max-age", "stream-max-segment-size-bytes"})
EXCHANGE_KEYS = frozenset({"alternate-exchange"})
OPERATOR_KEYS = frozenset({"expires", "message-ttl", "max-length", "max-length-bytes",
                           "max-in-memory-length", "max-in-memory-bytes", "delivery-limit",
                           "queue-version", "overflow"})
OPERATOR_APPLY_TO = ("queues", "classic_queues", "quorum_queues", "streams")
IGNORED_KEYS = frozenset({"ha-mode", "ha-params", "ha-sync-mode", "ha-promote-on-shutdown",
                          "ha-promote-on-failure", "queue-master-locator"})


def _applies(apply_to: str, kind: str, queue_type: str) -> bool:
    if apply_to == "all":
        return True
    if kind == "exchange":
        return apply_to == "exchanges"
    return apply_to == "queues" or apply_to == f"{queue_type}_queues"


def effective(policies: dict[str, JSONObject], name: str, kind: str,
              queue_type: str = "classic") -> JSONObject:
    """The definition of the policy that applies to a queue/exchange called ``name``."""
    return choose(policies, name, kind, queue_type)[1]


def choose(policies: dict[str, JSONObject], name: str, kind: str,
           queue_type: str = "classic") -> tuple[str | None, JSONObject]:
    """(name, usable definition) of the policy that applies, or (None, {})."""
    best: tuple[int, str] | None = None
    chosen: JSONObject = {}
    for pname, policy in policies.items():
        if not _applies(policy.get("apply-to", "all"), kind, queue_type):
            continue
        try:
            if not re.search(policy.get("pattern", ""), name):
                continue
        except re.error:
            continue
        rank = (int(policy.get("priority", 0)), pname)
        if best is None or rank[0] > best[0]:
            best, chosen = rank, policy.get("definition") or {}
    allowed = EXCHANGE_KEYS if kind == "exchange" else QUEUE_KEYS
    return (best[1] if best else None), {k: v for k, v in chosen.items() if k in allowed}


def merge_operator(definition: JSONObject, operator: JSONObject) -> JSONObject:
    """A user policy's definition with an operator policy's merged in (RabbitMQ's rules)."""
    out = dict(definition)
    for key, value in operator.items():
        if key not in OPERATOR_KEYS:
            continue
        mine = out.get(key)
        if mine is None or key in ("overflow", "queue-version"):
            out[key] = value
        elif isinstance(mine, int) and isinstance(value, int):
            out[key] = min(mine, value)
    return out


def validate_operator(definition: JSONObject) -> str | None:
    """RabbitMQ's refusal text when an operator policy sets keys it may not, or None."""
    bad = [key for key in definition if key not in OPERATOR_KEYS]
    if not bad:
        return None
    listed = ",".join(f'<<"{key}">>' for key in bad)
    return f"Validation failed\n\n[{listed}] are not recognised policy settings\n"


def combine(key: str, argument: Any, policy_value: Any) -> Any:
    """Any: an x-argument or policy value of any JSON/AMQP type; readers check the type."""
    if argument is None:
        return policy_value
    if policy_value is None:
        return argument
    if key in MIN_OF_BOTH and isinstance(argument, int) and isinstance(policy_value, int):
        return min(argument, policy_value)
    return argument


def warn_ignored(name: str, definition: JSONObject) -> None:
    ignored = sorted(k for k in definition if k in IGNORED_KEYS)
    if ignored:
        log.warning("policy '%s': %s accepted and ignored (no per-queue mirroring here, as in "
                    "RabbitMQ 4.x; in cluster mode every durable queue is replicated to every "
                    "node whatever the policy says)", name, ", ".join(ignored))
