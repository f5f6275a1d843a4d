"""The ``delayed`` scenario: a delayed-message exchange holding a million messages.

Against a freshly spawned broker of ours (the delayed exchange is built in; a ``--url``
RabbitMQ needs the rabbitmq_delayed_message_exchange plugin, which is not installed here):
one publisher with confirms sends N (``--backlog-messages``, 1,000,000 by default)
persistent x ``--size`` messages with ``x-delay: 3600000`` (an hour: none is routed during
the run) to a durable ``x-delayed-message`` exchange bound to a queue. RSS of the broker's
process tree before and after, and the peak: held messages live on disk, so the growth should
stay flat (it is bounded by the store's in-RAM memtable, not by N). Also the data dir size,
and a check that the queue is still empty (nothing routed early).
"""

from __future__ import annotations

import time

from bench.amqp import AMQPError, AMQPUrl, Connection
from bench.backlog import dir_mb
from bench.brokerproc import SpawnedBroker, tree_rss_mb
from bench.common import Log, Metric, Options, TargetResult, fmt_rate, on_broker, run_workers
from bench.workers import Job

P = "delayed"
EXCHANGE = "bench.delayed"
QUEUE = "bench.delayed.q"

DELAYED_METRICS = (
    Metric(f"{P}.publish", "delayed publish, held for an hour (confirmed)", "msg/s"),
    Metric(f"{P}.rss_before", "delayed RSS before publish", "MB", False),
    Metric(f"{P}.rss_after", "delayed RSS with N messages held", "MB", False),
    Metric(f"{P}.rss_growth", "delayed RSS growth for N messages held", "MB", False),
    Metric(f"{P}.rss_peak_growth", "delayed RSS peak growth during publish", "MB", False),
    Metric(f"{P}.disk", "delayed data dir with N messages held", "MB", False),
    Metric(f"{P}.routed_early", "delayed messages routed before their time", "count", False),
)


def run_delayed(url: AMQPUrl | None, opts: Options, log: Log) -> TargetResult:
    n = opts.backlog_messages
    log(f"  running {P} ({n} x {opts.size} B held by an x-delayed-message exchange)...")
    return on_broker(url, opts, P, log,
                     lambda url, pid, broker: _run(url, pid, broker, opts, log))


def _control(url: AMQPUrl, setup: bool) -> int:
    from pamqp import commands

    with Connection(url, product="bench-control") as conn:
        conn.channel_open(1)
        if setup:
            conn.rpc(1, commands.Exchange.Declare(
                exchange=EXCHANGE, exchange_type="x-delayed-message", durable=True,
                arguments={"x-delayed-type": "direct"}), commands.Exchange.DeclareOk)
            conn.queue_declare(1, QUEUE, durable=True)
            conn.rpc(1, commands.Queue.Bind(queue=QUEUE, exchange=EXCHANGE, routing_key="k"),
                     commands.Queue.BindOk)
            return 0
        count = int(conn.queue_declare(1, QUEUE, passive=True).message_count or 0)
        conn.rpc(1, commands.Exchange.Delete(exchange=EXCHANGE), commands.Exchange.DeleteOk)
        conn.queue_delete(1, QUEUE)
        return count


def _run(url: AMQPUrl, pid: int | None, broker: SpawnedBroker | None, opts: Options,
         log: Log) -> TargetResult:
    n = opts.backlog_messages
    res = TargetResult()
    v = res.values
    try:
        _control(url, setup=True)
        time.sleep(1.0)
        rss0 = tree_rss_mb(pid) if pid is not None else None
        job = Job(url=url, queue="k", exchange=EXCHANGE, messages=n, size=opts.size,
                  batch=opts.batch, timeout=opts.timeout, persistent=True,
                  confirm_window=opts.confirm_window, headers={"x-delay": 3_600_000})
        got, peak = run_workers(pid, opts.timeout + n / 500.0, {"publisher": job})
        pub = got["publisher"]
        rss1 = tree_rss_mb(pid) if pid is not None else None
        v[f"{P}.rss_before"], v[f"{P}.rss_after"] = rss0, rss1
        if rss0 is not None and rss1 is not None:
            v[f"{P}.rss_growth"] = rss1 - rss0
            v[f"{P}.rss_peak_growth"] = max(peak or rss1, rss1) - rss0
        if broker is not None:
            v[f"{P}.disk"] = dir_mb(broker.data_dir)
        res.details[P] = {"publisher": pub}
        if "error" in pub:
            res.notes.append(f"{P}: publisher error: {pub['error']}")
            return res
        v[f"{P}.publish"] = pub["rate"]
        log(f"  {P}: publish {fmt_rate(pub['rate'])} msg/s, RSS {rss0} -> {rss1} MB "
            f"(peak {peak})")
        v[f"{P}.routed_early"] = float(_control(url, setup=False))
    except (OSError, AMQPError) as exc:
        res.notes.append(f"{P}: failed: {type(exc).__name__}: {exc}")
    return res
