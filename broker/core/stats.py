"""Message and byte counters, kept as plain integer attributes so the hot path pays one
increment per event.

Each session owns a ``Counters``; the server keeps ``retired`` (the sum of every closed
session's counters), so a global total is ``retired`` plus the live sessions, computed when
someone asks (management API, Prometheus scrape), never per message.
"""

from __future__ import annotations

from collections.abc import Iterable

FIELDS = ("publish", "deliver", "deliver_no_ack", "get", "redeliver", "ack", "confirm",
          "return_unroutable", "drop_unroutable", "recv_oct", "recv_cnt", "send_oct",
          "send_cnt", "channels_opened", "channels_closed")


class Counters:
    __slots__ = FIELDS

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
