"""The ``backlog-rss`` scenario: how much a broker's RSS grows with a big backlog per queue kind.

For each kind (``durable``: a default, non-lazy durable classic queue with persistent
messages; ``transient``: a non-durable classic queue, transient messages; ``priority``:
``x-max-priority 10``, transient messages with random priorities 0-9) against a fresh broker
(a spawned one is started anew for each kind, so one kind's leftovers do not count against
the next; a ``--url`` broker gets the kinds one after the other on fresh queues):

1. declare the queue, wait 1 s, read the RSS of the broker's process tree (before);
2. one unthrottled raw publisher sends N x ``--size`` messages (``--backlog-messages``,
   default 1,000,000; pre-encoded frames in big ``sendall`` batches, no consumer);
3. poll ``queue.declare(passive)`` until the queue holds N (fill rate = N / time from the
   first publish to that answer), wait 2 s, read the RSS again (after); the peak during
   the fill is sampled every 0.2 s (and completed with VmHWM);
4. growth = after - before; the target is <= 64 MB for every kind.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from bench.amqp import AMQPError, Connection
from bench.brokerproc import BrokerError, tree_rss_mb
from bench.common import Log, Options, RssSampler, Runner
from bench.rounds import BrokerRef
from bench.workers import Job

KINDS: dict[str, dict[str, Any]] = {
    "durable": {"durable": True, "persistent": True, "args": None},
    "transient": {"durable": False, "persistent": False, "args": None},
    "priority": {"durable": False, "persistent": False, "args": {"x-max-priority": 10}},
}
TITLES = {
    "durable": "default durable classic, persistent",
    "transient": "transient classic",
    "priority": "priority (x-max-priority 10)",
}
TARGET_MB = 64.0
perf = time.perf_counter


def _depth(broker: BrokerRef, queue: str) -> int:
    with Connection(broker.url, product="bench-control") as conn:
        conn.channel_open(1)
        return int(conn.queue_declare(1, queue, passive=True).message_count or 0)


def _rss(broker: BrokerRef) -> float | None:
    try:
        return tree_rss_mb(broker.pid) if broker.pid is not None else None
    except OSError:
        return None


def fill_and_measure(broker: BrokerRef, kind: str, opts: Options, log: Log) -> dict[str, Any]:
    """Steps 1-4 above against a running broker; returns the figures (and an error if any)."""
    spec = KINDS[kind]
    n = opts.backlog_messages
    queue = f"bench.backlog-rss.{kind}.{int(time.monotonic() * 1000) % 10**9}"
    out: dict[str, Any] = {"messages": n}
    with Connection(broker.url, product="bench-control") as conn:
        conn.channel_open(1)
        conn.queue_declare(1, queue, durable=spec["durable"], arguments=spec["args"])
    time.sleep(1.0)
    out["rss_before"] = rss0 = _rss(broker)
    job = Job(url=broker.url, queue=queue, messages=n, size=opts.size, batch=opts.batch,
              persistent=spec["persistent"], priorities=kind == "priority",
              timeout=opts.timeout)
    runner = Runner(opts.timeout + n / 1000.0)
    depth = 0
    try:
        with RssSampler(broker.pid) as sampler:
            t0 = perf()
            runner.start("publisher", job)
            pub = runner.collect("publisher")
            if "error" in pub:
                out["error"] = f"publisher: {pub['error']}"
                return out
            deadline = perf() + opts.timeout
            while (depth := _depth(broker, queue)) < n and perf() < deadline:
                time.sleep(0.2)
            t_full = perf()
            time.sleep(2.0)
    finally:
        runner.close()
    out["depth"] = depth
    if depth != n:
        out["error"] = f"queue holds {depth} of {n} after {opts.timeout:.0f}s"
    out["fill_rate"] = n / (t_full - t0)
    out["rss_after"] = rss1 = _rss(broker)
    if rss0 is not None and rss1 is not None:
        out["growth"] = rss1 - rss0
        out["peak_growth"] = max(sampler.peak_mb or rss1, rss1) - rss0
    with contextlib.suppress(OSError, AMQPError), Connection(
        broker.url, timeout=opts.timeout, product="bench-control"
    ) as conn:
        conn.channel_open(1)
        conn.queue_delete(1, queue)
    log(f"  backlog-rss {kind} on {broker.name}: {depth:,} msgs, fill "
        f"{out['fill_rate']:,.0f} msg/s, RSS {_mb(rss0)} -> {_mb(rss1)} MB (growth "
        f"{_mb(out.get('growth'))}, peak growth {_mb(out.get('peak_growth'))})")
    return out


def run_backlog_rss(
    broker: BrokerRef, fresh: Callable[[], Any] | None, opts: Options, log: Log
) -> dict[str, dict[str, Any]]:
    """Every kind in ``opts.backlog_kinds``; ``fresh`` makes a new spawned broker per kind."""
    results: dict[str, dict[str, Any]] = {}
    for kind in opts.backlog_kinds:
        log(f"  backlog-rss {kind} on {broker.name} ({opts.backlog_messages:,} x "
            f"{opts.size} B)...")
        try:
            if fresh is None:
                results[kind] = fill_and_measure(broker, kind, opts, log)
                continue
            with fresh() as spawned:
                spawned.start()
                spawned.wait_ready(opts.ready_timeout)
                ref = BrokerRef(broker.name, spawned.url, spawned.pid, broker.kind, spawned)
                results[kind] = fill_and_measure(ref, kind, opts, log)
        except (OSError, AMQPError, BrokerError) as exc:
            results[kind] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"  backlog-rss {kind} on {broker.name} failed: {exc}")
    return results


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
