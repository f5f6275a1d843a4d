"""The RAM budget of one queue: how many ready messages (and body bytes) it keeps in memory.

Every classic queue keeps only a small window of ready messages as Python objects, whatever its
backlog (RabbitMQ 3.12+ keeps about 2k); the rest is on disk with no per-message object. A
priority queue has one store per priority level and they all draw from the same ``Window``, so
ten levels cost what one queue costs.

Two accounts, each bounded by ``max_n`` messages and ``max_b`` bytes:
- ``n``/``b``: the stores' read windows (the next messages to deliver, pushed or read ahead);
- ``rq_n``/``rq_b``: requeued messages kept as objects; past the bound, requeued messages that
  have a record in the log are kept as positions only (``requeue.PagedRequeues``).

Invariants:
- The counters are moved only by the stores sharing the window, by exactly what they add to or
  take from RAM, so they return to 0 when those stores are empty (or deleted).
- A bound may be exceeded by one message: a message larger than ``max_b`` still gets in when
  the account is empty, and ``peek`` may read one message ahead whatever the budget.
"""

from __future__ import annotations

#: mode -> (window messages, window bytes)
MODES = {"default": (2048, 4 * 1024 * 1024), "lazy": (0, 0)}


class Window:
    __slots__ = ("mode", "max_n", "max_b", "refill_below", "n", "b", "rq_n", "rq_b")

    def __init__(self, mode: str = "default", messages: int | None = None,
                 size: int | None = None) -> None:
        self.n = self.b = self.rq_n = self.rq_b = 0
        self.set_mode(mode, messages, size)

    def set_mode(self, mode: str, messages: int | None = None, size: int | None = None) -> None:
        """``default`` or ``lazy`` (``x-queue-mode``); ``messages``/``size`` override the mode's
        bounds. Messages already in RAM stay there."""
        if mode not in MODES:
            raise ValueError(f"unknown queue mode {mode!r}")
        self.mode = mode
        default_n, default_b = MODES[mode]
        self.max_n = default_n if messages is None else messages
        self.max_b = default_b if size is None else size
        # refill the read window from disk in batches of half a window: few refills, each short
        self.refill_below = self.max_n // 2

    def add(self, count: int, size: int) -> None:
        """``count`` messages of ``size`` bytes in all went to read windows (< 0: left)."""
        self.n += count
        self.b += size

    def has_room(self, size: int) -> bool:
        """Can one more message of ``size`` bytes go to a read window?"""
        n = self.n
        return n < self.max_n and (not n or self.b + size <= self.max_b)

    def requeue_room(self, size: int) -> bool:
        """Can one more requeued message of ``size`` bytes stay in RAM as an object?"""
        n = self.rq_n
        return n < self.max_n and (not n or self.rq_b + size <= self.max_b)

    def __repr__(self) -> str:
        return (f"Window({self.mode}, {self.n}/{self.max_n} msgs, {self.b}/{self.max_b} B, "
                f"requeued {self.rq_n} msgs {self.rq_b} B)")
