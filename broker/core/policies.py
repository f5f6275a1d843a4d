"""Vhost policies: which policy applies to a queue or exchange, and how it combines with
x-arguments.

A policy is {pattern, apply-to, priority, definition}. The applying policy is the matching one
with the highest priority (ties: the name that sorts last loses to the first, as RabbitMQ picks
deterministically). For numeric limits the stricter of argument and policy wins; for the rest an
x-argument overrides the policy. ha-* keys are accepted and ignored, as RabbitMQ 4.x does (in
cluster mode every durable queue is replicated anyway).
"""

from __future__ import annotations

import logging
import re
from typing import Any

log = logging.getLogger("broker.policies")

MIN_OF_BOTH = frozenset({"max-length", "max-length-bytes", "message-ttl", "expires",
                         "delivery-limit"})
QUEUE_KEYS = frozenset({"message-ttl", "expires", "max-length", "max-length-bytes", "overflow",
                        "dead-letter-exchange", "dead-letter-routing-key", "queue-mode",
                        "delivery-limit", "single-active-consumer"})
EXCHANGE_KEYS = frozenset({"alternate-exchange"})
IGNORED_KEYS = frozenset({"ha-mode", "ha-params", "ha-sync-mode", "ha-promote-on-shutdown",
                          "ha-promote-on-failure", "queue-master-locator"})


def _applies(apply_to: str, kind: str, queue_type: str) -> bool:
    if apply_to == "all":
        return True
    if kind == "exchange":
        return apply_to == "exchanges"
    return apply_to == "queues" or apply_to == f"{queue_type}_queues"


def effective(policies: dict[str, dict], name: str, kind: str,
              queue_type: str = "classic") -> dict:
    """The definition of the policy that applies to a queue/exchange called ``name``."""
    best: tuple[int, str] | None = None
    chosen: dict = {}
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
    return {k: v for k, v in chosen.items() if k in allowed}


def combine(key: str, argument: Any, policy_value: Any) -> Any:
    if argument is None:
        return policy_value
    if policy_value is None:
        return argument
    if key in MIN_OF_BOTH and isinstance(argument, int) and isinstance(policy_value, int):
        return min(argument, policy_value)
    return argument


def warn_ignored(name: str, definition: dict) -> None:
    ignored = sorted(k for k in definition if k in IGNORED_KEYS)
    if ignored:
        log.warning("policy '%s': %s accepted and ignored (no per-queue mirroring here, as in "
                    "RabbitMQ 4.x; in cluster mode every durable queue is replicated to every "
                    "node whatever the policy says)", name, ", ".join(ignored))
