"""A Jepsen-style checker of a publish/consume history recorded by test clients.

A message is identified by (publisher, seq): ``seq`` grows in the order that publisher
published. Clients record every publish attempt with its outcome (``confirmed``, ``nacked`` or
``unknown`` when the connection died first; a republish of the same message is attempt 2, 3..)
and every delivery, in the order each queue's consumer got them.

Checks:
- **lost**: a confirmed message that was never consumed (confirmed must be a subset of consumed);
- **phantom**: a consumed message that was never published;
- **reordered**: per queue and publisher, the first deliveries of its messages must come in
  publish order (later deliveries and gaps are fine: unconfirmed messages may be lost);
- **unexplained duplicates**: a message delivered again must be a redelivery (``redelivered``
  flag; with ``allow_unflagged_redelivery``, also when its previous delivery was never acked) or
  come from an unconfirmed republish (an attempt made after an attempt that was not confirmed).
  Each republish explains one fresh delivery at most.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

OUTCOMES = ("confirmed", "nacked", "unknown")
MessageId = tuple[str, int]


@dataclass(frozen=True)
class Publish:
    publisher: str
    seq: int
    outcome: str = "confirmed"
    attempt: int = 1

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}")

    @property
    def id(self) -> MessageId:
        return self.publisher, self.seq


@dataclass(frozen=True)
class Delivery:
    publisher: str
    seq: int
    redelivered: bool = False
    acked: bool = True  # the consumer acked it (an ack may still be lost in a failover)
    queue: str = ""

    @property
    def id(self) -> MessageId:
        return self.publisher, self.seq


@dataclass
class CheckResult:
    published: int = 0
    confirmed: int = 0
    consumed: int = 0
    duplicates: int = 0
    lost: list[MessageId] = field(default_factory=list)
    phantom: list[MessageId] = field(default_factory=list)
    reordered: list[tuple[str, str, int, int]] = field(default_factory=list)
    unexplained: list[MessageId] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.phantom or self.reordered or self.unexplained)

    def summary(self) -> str:
        head = (f"published {self.published}, confirmed {self.confirmed}, consumed "
                f"{self.consumed}, duplicates {self.duplicates}: ")
        if self.ok:
            return head + "ok"
        parts = []
        for name in ("lost", "phantom", "reordered", "unexplained"):
            found = getattr(self, name)
            if found:
                parts.append(f"{len(found)} {name} (first: {found[:5]})")
        return head + "; ".join(parts)


def check(publishes: Iterable[Publish], deliveries: Iterable[Delivery],
          allow_unflagged_redelivery: bool = False) -> CheckResult:
    attempts: dict[MessageId, list[Publish]] = defaultdict(list)
    for p in publishes:
        attempts[p.id].append(p)
    result = CheckResult(published=len(attempts))
    confirmed = {mid for mid, tries in attempts.items()
                 if any(t.outcome == "confirmed" for t in tries)}
    result.confirmed = len(confirmed)

    seen: dict[MessageId, list[Delivery]] = defaultdict(list)
    last_first: dict[tuple[str, str], int] = {}
    for d in deliveries:
        mid = d.id
        previous = seen[mid]
        if mid not in attempts and not previous:
            result.phantom.append(mid)
        if not previous:
            stream = (d.queue, d.publisher)
            before = last_first.get(stream)
            if before is not None and d.seq < before:
                result.reordered.append((d.queue, d.publisher, before, d.seq))
            last_first[stream] = max(d.seq, before if before is not None else d.seq)
        previous.append(d)
    result.consumed = len(seen)
    result.lost = sorted(confirmed - seen.keys())

    for mid, got in seen.items():
        if len(got) < 2:
            continue
        result.duplicates += len(got) - 1
        tries = sorted(attempts.get(mid, []), key=lambda t: t.attempt)
        # every publish may give one fresh delivery: the first, and each republish made
        # after an attempt that was not confirmed
        budget = 1 + sum(1 for a, b in zip(tries, tries[1:], strict=False)
                         if a.outcome != "confirmed")
        for index, d in enumerate(got):
            if d.redelivered and index > 0:
                continue
            if allow_unflagged_redelivery and index > 0 and not got[index - 1].acked:
                continue
            budget -= 1
            if budget < 0:
                result.unexplained.append(mid)
                break
    result.lost.sort()
    return result
