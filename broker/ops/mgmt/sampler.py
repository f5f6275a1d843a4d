"""The management sampler: message rates and chart samples, as RabbitMQ's management stats
database keeps them, from one timer.

Every ``collect_statistics_interval`` (5 s by default, as RabbitMQ) ``tick`` reads the counters
the broker already keeps (``broker.stats``: consumers, channels, queues, sessions; exchanges'
``publish_in`` / ``publish_out``) and the queue lengths, and appends one sample per object to
that object's ring buffers. Nothing is recorded per message; a tick costs
O(queues + exchanges + channels + sessions).

Ring buffers follow RabbitMQ's ``sample_retention_policies``: ``global`` (the overview and
vhosts) keeps a sample every 5 s for 605 s, every 60 s for an hour, every 10 min for 8 h and
every 30 min for a day; ``basic`` (queues, exchanges, connections, channels) every 5 s for
605 s and every 60 s for an hour. A coarse ring keeps the latest sample of each of its
buckets. A faster tick than 5 s (tests) makes the finest ring as fine as the tick.

Memory: an object whose counters never changed since it appeared holds no ring at all (its
samples are its constant values); a busy queue holds about 15 KB (183 samples x 10 int64).

API answers (``Details``): every count ``x`` gets ``x_details = {"rate": r}``, r per second over
the last tick; when the request asks for a range (``msg_rates_age`` / ``msg_rates_incr`` for
``message_stats``, ``lengths_age`` / ``lengths_incr`` for queue lengths, ``data_rates_age`` /
``data_rates_incr`` for bytes) it also gets ``avg``, ``avg_rate`` and ``samples`` (newest
first, ``{"sample": value, "timestamp": ms}`` at multiples of the increment), as RabbitMQ does.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
import weakref
from array import array
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from broker.amqp.session import open_sessions
from broker.core.stats import (
    MESSAGE_FIELDS,
    Counters,
    channel_totals,
    message_row,
    queue_message_row,
    unacked_by_queue,
)

if TYPE_CHECKING:
    from broker.core.server import Server

log = logging.getLogger("broker.management")

# (max age s, interval s) per level, RabbitMQ's defaults.
POLICIES: dict[str, tuple[tuple[int, int], ...]] = {
    "global": ((605, 5), (3660, 60), (29400, 600), (86400, 1800)),
    "basic": ((605, 5), (3600, 60)),
    "detailed": ((605, 5),),
}
REPORTED_POLICIES = {"global": [600, 3600, 28800, 86400], "basic": [600, 3600],
                     "detailed": [600]}
LENGTHS = ("messages_ready", "messages_unacknowledged")
DATA = ("recv_oct", "send_oct")
CHURN = ("connection_created", "connection_closed", "channel_created", "channel_closed")
FIELDS: dict[str, tuple[str, ...]] = {
    "overview": MESSAGE_FIELDS + LENGTHS + DATA + CHURN,
    "vhost": MESSAGE_FIELDS + LENGTHS + DATA,
    "connection": MESSAGE_FIELDS + DATA,
    "channel": MESSAGE_FIELDS,
    "queue": MESSAGE_FIELDS + LENGTHS,
    "exchange": ("publish_in", "publish_out"),
}
LENGTH_AT = len(MESSAGE_FIELDS)  # where lengths (then bytes) start in a vhost's row
POLICY_OF = {"overview": "global", "vhost": "global", "connection": "basic",
             "channel": "basic", "queue": "basic", "exchange": "basic"}


class Ring:
    """A circular buffer of (timestamp ms, row of int64) samples, one per ``step`` bucket."""

    __slots__ = ("step", "cap", "width", "ts", "vals", "size", "end")

    def __init__(self, step_ms: int, cap: int, width: int) -> None:
        self.step, self.cap, self.width = step_ms, cap, width
        self.ts = array("q", bytes(8 * cap))
        self.vals = array("q", bytes(8 * cap * width))
        self.size = 0
        self.end = 0  # next slot to write

    def push(self, ts: int, row: Sequence[int]) -> None:
        newest = (self.end - 1) % self.cap
        if self.size and ts // self.step == self.ts[newest] // self.step:
            slot = newest
        else:
            slot = self.end
            self.end = (self.end + 1) % self.cap
            self.size = min(self.size + 1, self.cap)
        self.ts[slot] = ts
        w = self.width
        self.vals[slot * w:(slot + 1) * w] = array("q", row)

    def slots(self) -> list[int]:
        """Slot numbers oldest first."""
        start = (self.end - self.size) % self.cap
        return [(start + k) % self.cap for k in range(self.size)]

    def value(self, slot: int, field: int) -> int:
        return self.vals[slot * self.width + field]


class Series:
    """One object's samples: no rings while its values never changed (``last`` stands for
    every moment since ``born``), rings per retention level from its first change on."""

    __slots__ = ("rings", "last", "last_ts", "born")

    def __init__(self, ts: int, row: tuple[int, ...]) -> None:
        self.rings: list[Ring] | None = None
        self.last, self.last_ts, self.born = row, ts, ts

    def record(self, ts: int, row: tuple[int, ...], levels: Sequence[tuple[int, int]]) -> None:
        if self.rings is None:
            if row == self.last:
                self.last_ts = ts
                return
            self.rings = [Ring(step, cap, len(row)) for step, cap in levels]
            for ring in self.rings:
                ring.push(self.last_ts, self.last)
        for ring in self.rings:
            ring.push(ts, row)
        self.last, self.last_ts = row, ts

    def rate(self, field: int) -> float:
        if self.rings is None or self.rings[0].size < 2:
            return 0.0
        ring = self.rings[0]
        a, b = (ring.end - 2) % ring.cap, (ring.end - 1) % ring.cap
        span = (ring.ts[b] - ring.ts[a]) / 1000.0
        return (ring.value(b, field) - ring.value(a, field)) / span if span > 0 else 0.0

    def samples(self, field: int, age_s: int, incr_s: int, now_ms: int,
                levels: Sequence[tuple[int, int]]) -> list[dict]:
        """``{"sample", "timestamp"}`` at multiples of ``incr_s`` back to ``age_s`` ago,
        newest first; only moments this object existed and the ring still covers."""
        incr = max(1, incr_s) * 1000
        newest = now_ms // incr * incr
        targets = [newest - k * incr for k in range(age_s * 1000 // incr + 1)]
        if self.rings is None:
            return [{"sample": self.last[field], "timestamp": t} for t in targets
                    if t >= self.born - incr]
        pick = len(levels) - 1
        for index, (step, cap) in enumerate(levels):
            if step * (cap - 1) >= age_s * 1000:
                pick = index
                break
        ring = self.rings[pick]
        slots = ring.slots()
        stamps = [ring.ts[s] for s in slots]
        whole = ring.size < ring.cap  # never wrapped: the first sample reaches back to born
        out = []
        for t in targets:
            k = bisect.bisect_right(stamps, t) - 1
            if k < 0:
                if not (whole and t >= self.born - incr):
                    continue
                k = 0
            out.append({"sample": ring.value(slots[k], field), "timestamp": t})
        return out


def levels_for(policy: str, tick_s: float) -> list[tuple[int, int]]:
    """(step ms, capacity) per level; the finest level follows a faster tick."""
    out = []
    for index, (age, interval) in enumerate(POLICIES[policy]):
        step = min(interval, tick_s) if index == 0 else interval
        step_ms = max(1, int(step * 1000))
        out.append((step_ms, int(age * 1000 // step_ms) + 1))
    return out


class Sampler:
    """Started by every management app that uses it (``start`` / ``stop`` are counted): the
    timer runs while at least one is up."""

    def __init__(self, node: Any, interval_s: float = 5.0) -> None:
        self.node = node  # read node.server at each tick: a reset may replace it
        self.interval = interval_s
        self.levels = {name: levels_for(name, interval_s) for name in POLICIES}
        self.series: dict[str, dict[Any, Series]] = {kind: {} for kind in FIELDS}
        self.index = {kind: {f: i for i, f in enumerate(fields)}
                      for kind, fields in FIELDS.items()}
        self._timer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._users = 0
        self.ticks = 0
        self.last_tick_ms = 0

    # ---- timer -------------------------------------------------------------------------
    @property
    def server(self) -> Server:
        server: Server = self.node.server
        return server

    def start(self) -> None:
        self._users += 1
        if self._users == 1:
            self._loop = asyncio.get_running_loop()
            self._tick_and_rearm()

    def stop(self) -> None:
        self._users = max(0, self._users - 1)
        if not self._users and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick_and_rearm(self) -> None:
        if not self._users:
            return
        try:
            self.tick()
        except Exception:  # noqa: BLE001 - a stats bug must not stop the timer
            log.exception("management sampler tick failed")
        loop = self._loop
        if loop is not None and not loop.is_closed():
            self._timer = loop.call_later(self.interval, self._tick_and_rearm)

    # ---- sampling ------------------------------------------------------------------------
    def tick(self, now_ms: int | None = None) -> None:
        ts = int(time.time() * 1000) if now_ms is None else now_ms
        server = self.server
        sessions = [s for s in open_sessions(server) if s.vhost is not None]
        # Per vhost: message counts, ready, unacked, bytes in, bytes out (FIELDS["vhost"]).
        vhost_rows: dict[str, list[int]] = {}
        for name, vhost in server.vhosts.items():
            base = vhost_rows[name] = [0] * len(FIELDS["vhost"])
            _add(base, 0, _message_row(vhost.retired))
            _add(base, LENGTH_AT + 2, (vhost.retired.recv_oct, vhost.retired.send_oct))
        self._sample_queues(ts, unacked_by_queue(sessions), vhost_rows)
        self._sample_exchanges(ts)
        live = self._sample_sessions(ts, sessions, vhost_rows)
        glevels = self.levels["global"]
        old_v = self.series["vhost"]
        self.series["vhost"] = {name: _record(old_v.get(name), ts, tuple(values), glevels)
                                for name, values in vhost_rows.items()}
        everything = Counters.total([server.retired, live])
        ready = sum(r[LENGTH_AT] for r in vhost_rows.values())
        pending = sum(r[LENGTH_AT + 1] for r in vhost_rows.values())
        closed = server.connections_closed
        overview = (*_message_row(everything), ready, pending, everything.recv_oct,
                    everything.send_oct, closed + len(sessions), closed,
                    everything.channels_opened, everything.channels_closed)
        self.series["overview"] = {None: _record(self.series["overview"].get(None), ts,
                                                 overview, glevels)}
        self.ticks += 1
        self.last_tick_ms = ts

    def _sample_queues(self, ts: int, unacked: Mapping[Any, int],
                       vhost_rows: dict[str, list[int]]) -> None:
        found: dict[Any, Series] = {}
        old = self.series["queue"]
        levels = self.levels["basic"]
        for name, vhost in self.server.vhosts.items():
            totals = vhost_rows[name]
            for queue in vhost.queues.values():
                lengths = (queue.message_count, unacked.get(queue, 0))
                values = (*queue_message_row(queue), *lengths)
                found[queue] = _record(old.get(queue), ts, values, levels)
                totals[LENGTH_AT] += lengths[0]
                totals[LENGTH_AT + 1] += lengths[1]
        self.series["queue"] = found

    def _sample_exchanges(self, ts: int) -> None:
        """Every exchange, idle ones included: an exchange's series must exist before its
        first publish for that first burst to show as a rate (an idle one holds no ring)."""
        found: dict[Any, Series] = {}
        old = self.series["exchange"]
        levels = self.levels["basic"]
        for vhost in self.server.vhosts.values():
            for ex in vhost.exchanges.values():
                found[ex] = _record(old.get(ex), ts, (ex.publish_in, ex.publish_out), levels)
        self.series["exchange"] = found

    def _sample_sessions(self, ts: int, sessions: Sequence[Any],
                         vhost_rows: dict[str, list[int]]) -> Counters:
        """Channels and connections; returns the live sessions' counters summed."""
        channels: dict[Any, Series] = {}
        conns: dict[Any, Series] = {}
        old_ch, old_conn = self.series["channel"], self.series["connection"]
        levels = self.levels["basic"]
        live = Counters()
        for session in sessions:
            total = Counters()
            total.add(session.stats)
            for channel in session.channels.values():
                counts = channel_totals(channel)
                total.add(counts)
                channels[channel] = _record(old_ch.get(channel), ts, _message_row(counts),
                                            levels)
            values = (*_message_row(total), total.recv_oct, total.send_oct)
            conns[session] = _record(old_conn.get(session), ts, values, levels)
            live.add(total)
            totals = vhost_rows.get(session.vhost.name)
            if totals is not None:
                _add(totals, 0, values[:LENGTH_AT])
                _add(totals, LENGTH_AT + 2, values[LENGTH_AT:])
        self.series["channel"], self.series["connection"] = channels, conns
        return live

    # ---- reading -------------------------------------------------------------------------
    def details(self, query: Mapping[str, str]) -> Details:
        return Details(self, query)


_SHARED: weakref.WeakKeyDictionary[Any, Sampler] = weakref.WeakKeyDictionary()


def shared_sampler(node: Any) -> Sampler:
    """The node's one sampler (created on first use)."""
    sampler = _SHARED.get(node)
    if sampler is None:
        sampler = _SHARED[node] = Sampler(node, node.config.collect_statistics_interval
                                          / 1000.0)
    return sampler


def _message_row(c: Counters) -> tuple[int, ...]:
    row: tuple[int, ...] = message_row(c)
    return row


def _add(row: list[int], at: int, values: Sequence[int]) -> None:
    for k, value in enumerate(values):
        row[at + k] += value


def _record(series: Series | None, ts: int, row: tuple[int, ...],
            levels: Sequence[tuple[int, int]]) -> Series:
    if series is None:
        return Series(ts, row)
    series.record(ts, row, levels)
    return series


RANGE_PARAMS = {"msg": ("msg_rates_age", "msg_rates_incr"),
                "lengths": ("lengths_age", "lengths_incr"),
                "data": ("data_rates_age", "data_rates_incr")}


class Details:
    """The ``*_details`` objects of one API answer, for the ranges its query asks for."""

    def __init__(self, sampler: Sampler | None, query: Mapping[str, str]) -> None:
        self.sampler = sampler
        # Samples are placed relative to the latest tick, so an answer is the same whenever
        # it is asked for between two ticks.
        self.now = sampler.last_tick_ms if sampler is not None and sampler.ticks \
            else int(time.time() * 1000)
        self.ranges: dict[str, tuple[int, int] | None] = {}
        for group, (age_key, incr_key) in RANGE_PARAMS.items():
            try:
                age = int(query[age_key])
                incr = int(query.get(incr_key) or max(1, age // 12))
            except (KeyError, ValueError):
                self.ranges[group] = None
                continue
            self.ranges[group] = (max(0, min(age, 86400)), max(1, incr)) \
                if age > 0 else None

    def fill(self, out: dict, kind: str, key: Any, group: str,
             values: Mapping[str, int]) -> dict:
        """Put ``name`` and ``name_details`` into ``out`` for each of ``values``."""
        sampler = self.sampler
        series = sampler.series[kind].get(key) if sampler is not None else None
        wanted = self.ranges.get(group)
        for name, value in values.items():
            out[name] = value
            out[f"{name}_details"] = self._detail(kind, series, name, wanted)
        return out

    def _detail(self, kind: str, series: Series | None, name: str,
                wanted: tuple[int, int] | None) -> dict:
        fields = _derived(name)
        if series is None or self.sampler is None:
            rate = 0.0
        else:
            index = self.sampler.index[kind]
            rate = sum(series.rate(index[f]) for f in fields if f in index)
        detail: dict = {"rate": round(rate, 1)}
        if wanted is None:
            return detail
        age, incr = wanted
        samples: list[dict] = []
        if series is not None and self.sampler is not None:
            index = self.sampler.index[kind]
            levels = self.sampler.levels[POLICY_OF[kind]]
            parts = [series.samples(index[f], age, incr, self.now, levels)
                     for f in fields if f in index]
            if parts:
                samples = [{"sample": sum(p[k]["sample"] for p in parts),
                            "timestamp": parts[0][k]["timestamp"]}
                           for k in range(min(len(p) for p in parts))]
        values = [s["sample"] for s in samples]
        detail["samples"] = samples
        detail["avg"] = sum(values) / len(values) if values else 0.0
        span = (samples[0]["timestamp"] - samples[-1]["timestamp"]) / 1000.0 \
            if len(samples) > 1 else 0.0
        detail["avg_rate"] = (values[0] - values[-1]) / span if span > 0 else 0.0
        return detail


def _derived(name: str) -> tuple[str, ...]:
    """The sampled fields a reported field is the sum of."""
    return {"messages": LENGTHS,
            "deliver_get": ("deliver", "deliver_no_ack", "get", "get_no_ack")}.get(name,
                                                                               (name,))
