"""Strict input for the doors that take JSON (the management API, definitions files): typed
field readers that refuse a wrong type with one line, and RabbitMQ's policy-definition checks.

Invariants:
- A reader either returns a value of the promised type or raises ``InvalidInput``; nothing
  downstream sees a string where a bool was meant ("maybe" is not true).
- Texts follow RabbitMQ's where it has one (``not_boolean``, ``not_integer``, policy
  validation's ``<<"a">> is not a valid maximum length``); where RabbitMQ crashes with a 500 on
  the same input, the text says what was wrong and where.
"""

from __future__ import annotations

import json
import re
from typing import Any


class InvalidInput(ValueError):
    """Input of the wrong shape; ``reason`` is what the caller reports (a string, or a list
    for RabbitMQ's tuple-shaped reasons such as ``["not_boolean", "maybe"]``)."""

    def __init__(self, reason: Any) -> None:
        super().__init__(reason if isinstance(reason, str) else json.dumps(reason))
        self.reason = reason


def erlang_term(value: Any) -> str:
    """A JSON value as Erlang's ``~tp`` prints the term it decodes to."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "<<" + json.dumps(value, ensure_ascii=False) + ">>"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(erlang_term(v) for v in value) + "]"
    if isinstance(value, dict):
        return "#{" + ",".join(f"{erlang_term(k)} => {erlang_term(v)}"
                               for k, v in value.items()) + "}"
    return repr(value)


class Fields:
    """A JSON object's fields read with their types; ``where`` prefixes messages (e.g.
    ``queues[3]``)."""

    def __init__(self, data: Any, where: str = "") -> None:
        if not isinstance(data, dict):
            raise InvalidInput(f"{where or 'the body'} should be a JSON object, not "
                               f"{_kind(data)}")
        self.data = data
        self.where = where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def missing(self, *keys: str) -> None:
        """RabbitMQ's ``[{key_missing,a},{key_missing,b}]`` for required keys."""
        absent = [k for k in keys if self.data.get(k) is None]
        if absent:
            raise InvalidInput("[" + ",".join(f"{{key_missing,{k}}}" for k in absent) + "]")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key)
        if value is None:
            if default is None:
                raise InvalidInput(f"[{{key_missing,{key}}}]")
            return default
        if not isinstance(value, str):
            raise InvalidInput(f"{self._name(key)} should be a string but was "
                               f"{erlang_term(value)}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        """rabbit_mgmt_util:parse_bool: true / false, or the strings "true" / "false"."""
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if value == "true" or value == "false":
            return bool(value == "true")
        raise InvalidInput(["not_boolean", value])

    def integer(self, key: str, default: int | None,
                minimum: int | None = None) -> int | None:
        """rabbit_mgmt_util:parse_int: an integer, a float (truncated) or a numeric string."""
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            raise InvalidInput(["not_integer", value])
        if isinstance(value, float) and value == value and abs(value) != float("inf"):
            value = int(value)
        elif isinstance(value, str) and re.fullmatch(r"-?\d{1,19}", value.strip()):
            value = int(value)
        if not isinstance(value, int):
            raise InvalidInput(["not_integer", value])
        if minimum is not None and value < minimum:
            raise InvalidInput(f"{self._name(key)} should be at least {minimum} but was {value}")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise InvalidInput(f"{self._name(key)} should be a JSON object but was "
                               f"{erlang_term(value)}")
        return value

    def tags(self, key: str = "tags") -> list[str]:
        """A comma-separated string or a list of strings."""
        value = self.data.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        if isinstance(value, list) and all(isinstance(t, str) for t in value):
            return [t for t in value if t]
        raise InvalidInput(f"{self._name(key)} should be a string or a list of strings but "
                           f"was {erlang_term(value)}")

    def regex(self, key: str, default: str | None = None) -> str:
        source = self.text(key, default)
        try:
            re.compile(source)
        except (re.error, RecursionError, OverflowError) as exc:
            raise InvalidInput(["invalid_regexp", source, str(exc)]) from None
        return source

    def choice(self, key: str, default: str, allowed: tuple[str, ...], what: str) -> str:
        value = self.text(key, default)
        if value not in allowed:
            raise InvalidInput(f"{self._name(key)}: {erlang_term(value)} is not a valid {what} "
                               f"(one of {', '.join(allowed)})")
        return value


def items(data: dict[str, Any], key: str) -> list[Fields]:
    """A definitions section: a list of objects."""
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f"{key} should be a list but was {erlang_term(value)}")
    return [Fields(item, f"{key}[{n}]") for n, item in enumerate(value)]


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return f"{erlang_term(value)}"


# ---- policies ----------------------------------------------------------------------------
def _non_negative(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


POLICY_RULES: dict[str, tuple[Any, str]] = {
    "alternate-exchange": (lambda v: isinstance(v, str), "alternate exchange name"),
    "dead-letter-exchange": (lambda v: isinstance(v, str), "dead letter exchange name"),
    "dead-letter-routing-key": (lambda v: isinstance(v, str), "dead letter routing key"),
    "message-ttl": (_non_negative, "message TTL"),
    "expires": (lambda v: _non_negative(v) and v >= 1, "queue expiry"),
    "max-length": (_non_negative, "maximum length"),
    "max-length-bytes": (_non_negative, "maximum length in bytes"),
    "queue-mode": (lambda v: v in ("default", "lazy"), "queue-mode value"),
    "overflow": (lambda v: v in ("drop-head", "reject-publish", "reject-publish-dlx"),
                 "overflow value"),
    "delivery-limit": (_non_negative, "delivery limit"),
    "consumer-timeout": (_non_negative, "consumer timeout"),
    "single-active-consumer": (lambda v: isinstance(v, bool), "single-active-consumer value"),
}


def policy_problems(definition: dict[str, Any]) -> list[str]:
    """RabbitMQ's (rabbit_policies) complaints about a policy definition's values."""
    problems = []
    for key, value in definition.items():
        rule = POLICY_RULES.get(key)
        if rule is not None and not rule[0](value):
            problems.append(f"{erlang_term(value)} is not a valid {rule[1]}")
    return problems


def check_policy(fields: Fields) -> tuple[str, dict[str, Any], int, str]:
    """(pattern, definition, priority, apply-to) of a policy document, or InvalidInput with
    RabbitMQ's ``Validation failed`` text."""
    fields.missing("pattern", "definition")
    problems = []
    pattern = fields.data["pattern"]
    definition = fields.data["definition"]
    if not isinstance(pattern, str):
        problems.append(f"pattern should be a binary but was {erlang_term(pattern)}")
    else:
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError):
            problems.append(f"{erlang_term(pattern)} is not a valid regular expression")
    if not isinstance(definition, dict):
        problems.append(f"definition should be a JSON object but was "
                        f"{erlang_term(definition)}")
        definition = {}
    elif not definition:
        problems.append("no policy provided")
    else:
        problems += policy_problems(definition)
    priority = fields.data.get("priority", 0)
    if isinstance(priority, str) and re.fullmatch(r"-?\d{1,19}", priority):
        priority = int(priority)
    if not isinstance(priority, int) or isinstance(priority, bool):
        problems.append(f"priority should be a number, actually was {erlang_term(priority)}")
    apply_to = fields.data.get("apply-to", "all")
    if apply_to not in APPLY_TO:
        problems.append(f"{erlang_term(apply_to)} is not a valid apply-to value")
    if problems:
        raise InvalidInput("Validation failed\n\n" + "\n".join(problems) + "\n")
    return pattern, definition, priority, apply_to


APPLY_TO = ("all", "queues", "exchanges", "classic_queues", "quorum_queues", "streams")
