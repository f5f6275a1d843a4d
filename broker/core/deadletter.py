"""Dead-lettering: the x-death bookkeeping and re-publishing a message to its queue's DLX.

RabbitMQ's rules kept here: one x-death entry per (queue, reason), its count bumped when the
same pair repeats, newest entry first; ``x-first-death-*`` set once and ``x-last-death-*``
(3.13) set on every death; a per-message
``expiration`` moves into ``original-expiration`` and is removed from the properties; a cycle
(the message would return to a queue it already died in) is dropped unless a ``rejected`` death
is part of it.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Collection
from typing import TYPE_CHECKING

from protocol import properties, tables
from storage.message import Message

from .messages import new_message

if TYPE_CHECKING:
    from .queue import Queue
    from .vhost import VirtualHost


def dead_letter_target(queue: Queue) -> tuple[str, str | None] | None:
    dlx = queue.setting("dead-letter-exchange")
    if not isinstance(dlx, str):
        return None
    dlrk = queue.setting("dead-letter-routing-key")
    return dlx, dlrk if isinstance(dlrk, str) else None


def _death_entry(items: list[tuple[str, bytes]], queue: str, reason: str) -> bool:
    fields = dict(items)
    return tables.read_str(fields.get("queue", b"")) == queue and \
        tables.read_str(fields.get("reason", b"")) == reason


def _bumped(items: list[tuple[str, bytes]], now: datetime.datetime) -> list[tuple[str, bytes]]:
    """A repeated death: count + 1, new time, keys sorted as RabbitMQ re-encodes them."""
    fields = dict(items)
    count = tables.read_long(fields.get("count", b"")) or 1
    fields["count"] = tables.long_value(count + 1)
    fields["time"] = tables.time_value(now)
    return sorted(fields.items())


def with_death(message: Message, queue: Queue, reason: str, now: datetime.datetime,
               routing_key: str) -> Message:
    """The message as it leaves ``queue``: x-death updated, expiration moved into it.

    Works on the raw property bytes so every other header keeps its wire type and order.
    """
    try:
        fields = properties.split(message.properties) \
            if message.properties[:2] != b"\x00\x00" else {}
        headers = tables.split_table(properties.headers_body(fields))
    except (ValueError, IndexError, struct.error):
        fields, headers = {}, []  # unreadable properties: dead-letter with ours only
    old = dict(headers)
    try:
        deaths = [tables.split_table(tables.inner(v))
                  for v in tables.split_array(tables.inner(old["x-death"]))] \
            if old.get("x-death", b"")[:1] == b"A" else []
    except (ValueError, IndexError, struct.error):
        deaths = []
    for i, death in enumerate(deaths):
        if _death_entry(death, queue.name, reason):
            deaths.insert(0, _bumped(deaths.pop(i), now))
            break
    else:
        entry = [("count", tables.long_value(1)), ("reason", tables.str_value(reason)),
                 ("queue", tables.str_value(queue.name)), ("time", tables.time_value(now)),
                 ("exchange", tables.str_value(message.exchange)),
                 ("routing-keys", tables.array_value([tables.str_value(message.routing_key)]))]
        expiration = fields.pop(properties.EXPIRATION, None)
        if expiration is not None:
            entry.append(("original-expiration",
                          tables.str_value(expiration[1:].decode("utf-8", "replace"))))
        # RabbitMQ 3.10.8 re-encodes the x-death of a message that already has one: the new
        # entry comes out with sorted keys too (probed: a second hop's entry).
        deaths.insert(0, sorted(entry) if deaths else entry)
    fields.pop(properties.EXPIRATION, None)
    added = {"x-death": tables.array_value([tables.table_value(d) for d in deaths])}
    for key, value in (("x-first-death-exchange", message.exchange),
                       ("x-first-death-queue", queue.name),
                       ("x-first-death-reason", reason)):
        if key not in old:
            added[key] = tables.str_value(value)
    for key, value in (("x-last-death-exchange", message.exchange),
                       ("x-last-death-queue", queue.name),
                       ("x-last-death-reason", reason)):
        added[key] = tables.str_value(value)  # 3.13: always the newest death
    items = [(k, added.pop(k, v)) for k, v in headers]
    items.extend(added.items())
    properties.set_headers_body(fields, tables.join_table(items))
    return new_message(message.exchange, routing_key, properties.join(fields), message.body)


def is_cycle(message: Message, target_queues: Collection[Queue], reason: str) -> bool:
    """True when re-publishing would loop with no rejection in the loop."""
    if reason == "rejected":
        return False
    deaths = properties.headers(message.properties).get("x-death") or []
    names = {q.name for q in target_queues}
    hit = [d for d in deaths if isinstance(d, dict) and d.get("queue") in names]
    return bool(hit) and all(d.get("reason") != "rejected" for d in deaths)


def dead_letter(vhost: VirtualHost, queue: Queue, message: Message, reason: str) -> None:
    target = dead_letter_target(queue)
    if target is None:
        return
    dlx_name, dlrk = target
    exchange = vhost.exchanges.get(dlx_name)
    if exchange is None:
        return
    routing_key = dlrk if dlrk is not None else message.routing_key
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    dead = with_death(message, queue, reason, now, routing_key)
    queues = vhost.route(exchange, routing_key, dead.properties)
    if not queues or is_cycle(dead, set(queues), reason):
        return
    dead = new_message(dlx_name, routing_key, dead.properties, dead.body)
    for target_queue in queues:
        target_queue.publish(dead)
