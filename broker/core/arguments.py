"""x-argument validation and redeclare equivalence, worded exactly as RabbitMQ words them.

Each known queue argument has a validator that raises PreconditionFailed with RabbitMQ's
Erlang-term suffix. Equivalence compares only the known arguments, ignoring integer width and
treating an absent x-queue-type as ``classic``. Unknown arguments are accepted and not compared.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Callable
from typing import Any

from protocol.errors import PreconditionFailed
from protocol.tables import Table


def type_name(value: object) -> str:
    """RabbitMQ's name of the field type a value came in (``TypedInt`` / ``TypedFloat`` from
    the wire keep theirs; other values are named by what pika would send for them)."""
    tagged = getattr(value, "amqp_type", None)
    if isinstance(tagged, str):
        return tagged
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "longstr"
    if isinstance(value, bytes | bytearray):
        return "binary"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, datetime.datetime):
        return "timestamp"
    if isinstance(value, decimal.Decimal):
        return "decimal"
    if value is None:
        return "void"
    return type(value).__name__


def show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "undefined"
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return str(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(value: object) -> str | None:
    if not _is_int(value):
        return f'"expected integer, got {type_name(value)}"'
    return None


def _non_negative(value: Any) -> str | None:  # Any: _integer checks it is an int first
    return _integer(value) or (f"{{value_negative,{value}}}" if value < 0 else None)


def _positive(value: object) -> str | None:
    problem = _non_negative(value)
    if problem:
        return problem
    return f"{{value_zero,{value}}}" if value == 0 else None


def _priority(value: Any) -> str | None:  # Any: _non_negative checks it is an int first
    problem = _non_negative(value)
    if problem:
        return problem
    return f"{{max_value_exceeded,{value}}}" if value > 255 else None


def _queue_type(value: object) -> str | None:
    if not isinstance(value, str):
        return f"{{unacceptable_type,{type_name(value)}}}"
    if value not in ("classic", "quorum", "stream"):
        return f"\"unsupported queue type '{value}'\""
    return None


def _overflow(value: object) -> str | None:
    if value not in ("drop-head", "reject-publish", "reject-publish-dlx"):
        return "invalid_overflow"
    return None


def _queue_mode(value: object) -> str | None:
    if not isinstance(value, str):
        return f"{{unacceptable_type,{type_name(value)}}}"
    if value not in ("default", "lazy"):
        return f"\"unsupported queue mode '{value}'\""
    return None


def _boolean(value: object) -> str | None:
    return None if isinstance(value, bool) else f"{{unacceptable_type,{type_name(value)}}}"


def _string(value: object) -> str | None:
    return None if isinstance(value, str) else f"{{unacceptable_type,{type_name(value)}}}"


def _max_age(value: object) -> str | None:
    if not isinstance(value, str):
        return f"{{unacceptable_type,{type_name(value)}}}"
    unit = value[-1:]
    if not unit or unit not in "YMDhms" or not value[:-1].isdigit() or int(value[:-1]) <= 0:
        return "invalid_max_age"
    return None


MAX_SEGMENT_SIZE = 3_000_000_000  # RabbitMQ's ceiling for x-stream-max-segment-size-bytes


def _segment_size(value: object) -> str | None:
    return _non_negative(value)


QUEUE_ARGS: dict[str, Callable[[object], str | None]] = {
    "x-expires": _positive,
    "x-message-ttl": _non_negative,
    "x-dead-letter-exchange": _string,
    "x-dead-letter-routing-key": _string,
    "x-max-length": _non_negative,
    "x-max-length-bytes": _non_negative,
    "x-max-priority": _priority,
    "x-overflow": _overflow,
    "x-queue-mode": _queue_mode,
    "x-queue-type": _queue_type,
    "x-single-active-consumer": _boolean,
    "x-delivery-limit": _non_negative,
    "x-queue-master-locator": _string,
    "x-queue-leader-locator": _string,
    "x-max-age": _max_age,
    "x-stream-max-segment-size-bytes": _segment_size,
    "x-stream-filter-size-bytes": _integer,
    "x-initial-cluster-size": _positive,
    "x-consumer-timeout": _non_negative,
    "x-message-deduplication": _boolean,
}

_TYPED_ERRORS = ("x-dead-letter-exchange", "x-dead-letter-routing-key")


def validate_queue_args(queue: str, vhost: str, args: Table) -> None:
    for key, check in QUEUE_ARGS.items():
        if key not in args:
            continue
        value = args[key]
        problem = check(value)
        if problem is None:
            continue
        if key in _TYPED_ERRORS:
            raise PreconditionFailed(f"invalid type '{type_name(value)}' for arg '{key}' in "
                                     f"queue '{queue}' in vhost '{vhost}'")
        raise PreconditionFailed(
            f"invalid arg '{key}' for queue '{queue}' in vhost '{vhost}': {problem}")
    size = args.get("x-stream-max-segment-size-bytes")
    if isinstance(size, int) and size > MAX_SEGMENT_SIZE:
        raise PreconditionFailed("Exceeded max value for x-stream-max-segment-size-bytes")
    filter_size = args.get("x-stream-filter-size-bytes")
    if isinstance(filter_size, int) and not 16 <= filter_size <= 255:
        raise PreconditionFailed("Invalid value for  x-stream-filter-size-bytes")
    if "x-dead-letter-routing-key" in args and "x-dead-letter-exchange" not in args:
        raise PreconditionFailed(f"invalid arg 'x-dead-letter-routing-key' for queue '{queue}' "
                                 f"in vhost '{vhost}': routing_key_but_no_dlx_defined")


def validate_consumer_args(queue: str, vhost: str, args: Table) -> None:
    if "x-priority" in args:
        problem = _integer(args["x-priority"])
        if problem:
            raise PreconditionFailed(
                f"invalid arg 'x-priority' for queue '{queue}' in vhost '{vhost}': {problem}")


def _normalised(key: str, args: Table) -> object:
    value = args.get(key)
    if key == "x-queue-type" and value == "classic":
        return None
    return value


def _same(a: object, b: object) -> bool:
    if _is_int(a) and _is_int(b):
        return bool(a == b)
    return type(a) is type(b) and a == b


def check_equivalent(kind: str, name: str, vhost: str, current: Table, received: Table,
                     keys: tuple[str, ...]) -> None:
    for key in keys:
        old, new = _normalised(key, current), _normalised(key, received)
        if old is None and new is None:
            continue
        if old is not None and new is not None and _same(old, new):
            continue
        prefix = f"inequivalent arg '{key}' for {kind} '{name}' in vhost '{vhost}': "
        if old is None:
            detail = f"received the value '{show(new)}' of type '{type_name(new)}' but current " \
                     "is none"
        elif new is None:
            detail = f"received none but current is the value '{show(old)}' of type " \
                     f"'{type_name(old)}'"
        else:
            detail = f"received '{show(new)}' but current is '{show(old)}'"
        raise PreconditionFailed(prefix + detail)


def check_flag(kind: str, name: str, vhost: str, flag: str, current: bool,
               received: bool) -> None:
    if current != received:
        raise PreconditionFailed(
            f"inequivalent arg '{flag}' for {kind} '{name}' in vhost '{vhost}': received "
            f"'{show(received)}' but current is '{show(current)}'")


QUEUE_EQUIVALENCE_KEYS = tuple(k for k in QUEUE_ARGS if k not in (
    "x-queue-master-locator", "x-queue-leader-locator", "x-stream-filter-size-bytes",
    "x-initial-cluster-size", "x-consumer-timeout", "x-message-deduplication"))
EXCHANGE_EQUIVALENCE_KEYS = ("alternate-exchange",)
