"""Message and byte counters, kept as plain integer attributes so the hot path pays one
increment per event, on the object that already has the event in hand.

Where each count lives (nothing is counted twice on the message path):
- a consumer counts its deliveries and acks (``Consumer.delivered`` / ``acked``); whether they
  are ``deliver`` or ``deliver_no_ack`` follows from ``Consumer.no_ack``;
- a channel counts publishes, gets (and acks of got messages), returns and drops in
  ``Channel.stats``; its confirms are ``Confirms.seq``;
- a queue counts what reaches it without a consumer (gets, requeues) in ``Queue.stats``; its
  publishes are its sequence number (``Queue.published``);
- a session counts bytes and frames, and receives its closed channels' totals; the server
  (``Server.retired``) and the vhost (``VirtualHost.retired``) receive closed sessions' totals.

Totals are summed when someone asks (management API, sampler, Prometheus scrape), never per
message. Invariant: a consumer that went away (basic.cancel, channel closed, queue deleted)
while it still had unacked deliveries stays in its channel's and queue's ``departed`` list
until those are settled, then is folded into their counters (``retire_consumer``), so acks
that arrive after a cancel are still counted once.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter
from typing import Any

FIELDS = ("publish", "deliver", "deliver_no_ack", "get", "get_no_ack", "get_empty",
          "redeliver", "ack", "confirm", "return_unroutable", "drop_unroutable", "recv_oct",
          "recv_cnt", "send_oct", "send_cnt", "channels_opened", "channels_closed")
MESSAGE_FIELDS = FIELDS[:11]
message_row = attrgetter(*MESSAGE_FIELDS)  # Counters -> tuple in MESSAGE_FIELDS order


class Counters:
    __slots__ = FIELDS
    # FIELDS, declared for the type checker (set in __init__)
    publish: int
    deliver: int
    deliver_no_ack: int
    get: int
    get_no_ack: int
    get_empty: int
    redeliver: int
    ack: int
    confirm: int
    return_unroutable: int
    drop_unroutable: int
    recv_oct: int
    recv_cnt: int
    send_oct: int
    send_cnt: int
    channels_opened: int
    channels_closed: int

    def __init__(self) -> None:
        for name in FIELDS:
            setattr(self, name, 0)

    def add(self, other: Counters) -> None:
        for name in FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in FIELDS}

    @classmethod
    def total(cls, parts: Iterable[Counters]) -> Counters:
        out = cls()
        for part in parts:
            out.add(part)
        return out


# ---- consumers -------------------------------------------------------------------------
def add_consumer(out: Counters, consumer: Any) -> None:
    if consumer.no_ack:
        out.deliver_no_ack += consumer.delivered
    else:
        out.deliver += consumer.delivered
    out.ack += consumer.acked


def retire_consumer(owner: Any, consumer: Any) -> None:
    """``owner`` (a channel or a queue) lost ``consumer``: fold its counts into the owner's
    ``stats`` now if nothing it delivered is still unacked, else keep it in ``departed``."""
    prune_departed(owner)
    if consumer.unacked:
        owner.departed.append(consumer)
    else:
        add_consumer(owner.stats, consumer)


def prune_departed(owner: Any) -> None:
    departed = owner.departed
    if not departed:
        return
    keep = []
    for consumer in departed:
        if consumer.unacked:
            keep.append(consumer)
        else:
            add_consumer(owner.stats, consumer)
    owner.departed = keep


# ---- totals ----------------------------------------------------------------------------
def channel_totals(channel: Any) -> Counters:
    prune_departed(channel)
    out = Counters()
    out.add(channel.stats)
    for consumer in channel.consumers.values():
        add_consumer(out, consumer)
    for consumer in channel.departed:
        add_consumer(out, consumer)
    if channel.confirms is not None:
        out.confirm += channel.confirms.seq
    return out


def session_totals(session: Any) -> Counters:
    out = Counters()
    out.add(session.stats)
    for channel in session.channels.values():
        out.add(channel_totals(channel))
    return out


def queue_totals(queue: Any) -> Counters:
    out = Counters()
    for name, value in zip(MESSAGE_FIELDS, queue_message_row(queue), strict=True):
        setattr(out, name, value)
    return out


def queue_message_row(queue: Any) -> tuple[int, ...]:
    """A queue's message counts in MESSAGE_FIELDS order, without building Counters: the
    sampler reads every queue each tick, so this is the path that has to be cheap."""
    prune_departed(queue)
    (publish, deliver, deliver_no_ack, get, get_no_ack, get_empty, redeliver, ack, confirm,
     returned, dropped) = message_row(queue.stats)
    for group in (queue.consumers, queue.departed):
        for consumer in group:
            if consumer.no_ack:
                deliver_no_ack += consumer.delivered
            else:
                deliver += consumer.delivered
            ack += consumer.acked
    return (publish + queue.published, deliver, deliver_no_ack, get, get_no_ack, get_empty,
            redeliver, ack, confirm, returned, dropped)


def unacked_by_queue(sessions: Iterable[Any]) -> dict[Any, int]:
    """Delivered-but-unacked messages per queue object. A channel whose unacked deliveries
    all belong to its live consumers is counted from the consumers' own ``unacked`` (cheap);
    only a channel that also holds got or cancelled consumers' messages is scanned."""
    counts: dict[Any, int] = {}
    for session in sessions:
        for channel in session.channels.values():
            unacked = channel.unacked
            if not unacked:
                continue
            consumers = channel.consumers.values()
            if sum(c.unacked for c in consumers) == len(unacked):
                for consumer in consumers:
                    if consumer.unacked and consumer.queue is not None:
                        counts[consumer.queue] = counts.get(consumer.queue, 0) + \
                            consumer.unacked
                continue
            for _entry, queue, _consumer in unacked.values():
                counts[queue] = counts.get(queue, 0) + 1
    return counts
