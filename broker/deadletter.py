"""Dead-lettering: the x-death bookkeeping and re-publishing a message to its queue's DLX.

RabbitMQ's rules kept here: one x-death entry per (queue, reason), its count bumped when the
same pair repeats, newest entry first; ``x-first-death-*`` set once; a per-message
``expiration`` moves into ``original-expiration`` and is removed from the properties; a cycle
(the message would return to a queue it already died in) is dropped unless a ``rejected`` death
is part of it.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from protocol import properties

from .message import Message

if TYPE_CHECKING:
    from .queue import Queue
    from .vhost import VirtualHost


def dead_letter_target(queue: Queue) -> tuple[str, str | None] | None:
    dlx = queue.setting("dead-letter-exchange")
    if not isinstance(dlx, str):
        return None
    dlrk = queue.setting("dead-letter-routing-key")
    return dlx, dlrk if isinstance(dlrk, str) else None


def with_death(message: Message, queue: Queue, reason: str, now: datetime.datetime,
               routing_key: str) -> Message:
    props = properties.decode(message.properties)
    headers = dict(props.headers or {})
    deaths = [dict(d) for d in headers.get("x-death") or [] if isinstance(d, dict)]
    for i, death in enumerate(deaths):
        if death.get("queue") == queue.name and death.get("reason") == reason:
            death["count"] = int(death.get("count", 1)) + 1
            death["time"] = now
            deaths.insert(0, dict(sorted(deaths.pop(i).items())))
            break
    else:
        entry: dict = {"count": 1, "reason": reason, "queue": queue.name, "time": now,
                       "exchange": message.exchange, "routing-keys": [message.routing_key]}
        if props.expiration is not None:
            entry["original-expiration"] = props.expiration
        deaths.insert(0, entry)
    headers["x-death"] = deaths
    headers.setdefault("x-first-death-exchange", message.exchange)
    headers.setdefault("x-first-death-queue", queue.name)
    headers.setdefault("x-first-death-reason", reason)
    props.headers = headers
    props.expiration = None
    return Message(message.exchange, routing_key, properties.encode(props), message.body)


def is_cycle(message: Message, target_queues: set, reason: str) -> bool:
    """True when re-publishing would loop with no rejection in the loop."""
    if reason == "rejected":
        return False
    deaths = message.headers().get("x-death") or []
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
    dead = Message(dlx_name, routing_key, dead.properties, dead.body)
    for target_queue in queues:
        target_queue.publish(dead)
