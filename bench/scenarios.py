"""Scenario orchestration: run each benchmark scenario against one target broker.

A target is either our broker, spawned fresh (``url is None``), or an already
running broker given by URL. Throughput scenarios declare a fresh queue over a
control connection, start the consumer and publisher as separate ``spawn``
multiprocessing processes (consumer first, publisher once the consumer is
subscribed; for ``priority`` the queue is filled first and drained afterwards
so the delivery order can be checked), collect their result dicts and turn
them into named figures (see ``METRICS``).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import replace

from bench.amqp import AMQPError, AMQPUrl, Connection
from bench.backlog import BACKLOG_METRICS, run_lazy_backlog
from bench.brokerproc import (
    DEFAULT_CMD,
    SpawnedBroker,
    cold_start_times,
    listener_pid,
    tree_rss_mb,
)
from bench.common import (
    LOOPBACK,
    Log,
    Metric,
    Options,
    Runner,
    Target,
    TargetResult,
    fmt_rate,
    merge,
)
from bench.delayed import DELAYED_METRICS, run_delayed
from bench.stream import STREAM_METRICS, run_stream
from bench.workers import Job

__all__ = ["ALL_SCENARIOS", "DEFAULT_CMD", "DEFAULT_SCENARIOS", "METRICS", "Metric", "Options",
           "Target", "TargetResult", "run_target", "run_throughput"]

THROUGHPUT = ("no-ack", "manual-ack", "persistent-confirms", "priority")
DEFAULT_SCENARIOS = ("no-ack", "manual-ack", "cold-start", "idle-rss")
ALL_SCENARIOS = (*DEFAULT_SCENARIOS, "persistent-confirms", "priority", "lazy-backlog",
                 "stream", "delayed")


METRICS = (
    Metric("no-ack.in", "no-ack publish (in)", "msg/s"),
    Metric("no-ack.out", "no-ack consume (out)", "msg/s"),
    Metric("manual-ack.in", "manual-ack publish (in)", "msg/s"),
    Metric("manual-ack.out", "manual-ack consume (out)", "msg/s"),
    Metric("persistent-confirms.in", "persistent+confirms confirmed", "msg/s"),
    Metric("persistent-confirms.out", "persistent+confirms consume (out)", "msg/s"),
    Metric("persistent-confirms.p50", "confirm latency p50", "ms", False),
    Metric("persistent-confirms.p99", "confirm latency p99", "ms", False),
    Metric("priority.in", "priority publish (in)", "msg/s"),
    Metric("priority.out", "priority drain (out)", "msg/s"),
    Metric("priority.inversions", "priority order inversions", "count", False),
    Metric("priority.lost", "priority messages missing", "count", False),
    Metric("cold-start.median", "cold start to open-ok (median)", "s", False),
    Metric("idle-rss.mb", "idle RSS", "MB", False),
    *BACKLOG_METRICS,
    *STREAM_METRICS,
    *DELAYED_METRICS,
)


# -- throughput scenarios ----------------------------------------------------------------


def _jobs(kind: str, url: AMQPUrl, queue: str, opts: Options) -> tuple[Job, Job]:
    pub = Job(
        url=url,
        queue=queue,
        messages=opts.messages,
        size=opts.size,
        batch=opts.batch,
        prefetch=opts.prefetch,
        timeout=opts.timeout,
    )
    if kind == "no-ack":
        return pub, replace(pub, no_ack=True)
    if kind == "manual-ack":
        return pub, pub
    if kind == "persistent-confirms":
        pub = replace(pub, persistent=True, confirm_window=opts.confirm_window)
        return pub, pub
    if kind == "priority":
        pub = replace(pub, priorities=True)
        return pub, pub
    raise ValueError(f"unknown throughput scenario {kind!r}")


def _prepare_queue(url: AMQPUrl, kind: str, queue: str) -> None:
    with Connection(url, product="bench-control") as conn:
        conn.channel_open(1)
        channel = 1
        try:
            conn.queue_delete(1, queue)
        except AMQPError:  # the error closed channel 1
            channel = 2
            conn.channel_open(channel)
        conn.queue_declare(
            channel,
            queue,
            durable=kind == "persistent-confirms",
            arguments={"x-max-priority": 10} if kind == "priority" else None,
        )


def _delete_queue(url: AMQPUrl, queue: str) -> None:
    try:
        with Connection(url, product="bench-control") as conn:
            conn.channel_open(1)
            conn.queue_delete(1, queue)
    except (OSError, AMQPError):
        pass


def run_throughput(kind: str, url: AMQPUrl, opts: Options, log: Log) -> TargetResult:
    """Run one throughput scenario against ``url`` and return its figures."""
    out = TargetResult()
    queue = f"bench.{kind}.{os.getpid()}.{time.monotonic_ns() % 1_000_000}"
    pub_job, con_job = _jobs(kind, url, queue, opts)
    _prepare_queue(url, kind, queue)
    runner = Runner(opts.timeout)
    try:
        if kind == "priority":  # fill first, then drain: order must be non-increasing
            runner.start("publisher", pub_job)
            pub = runner.collect("publisher")
            if "error" in pub:
                con = {"error": "skipped (publisher failed)"}
            else:
                runner.start("consumer", con_job)
                con = runner.collect("consumer")
        else:
            ready = runner.start("consumer", con_job)
            ready.wait(opts.ready_timeout)
            runner.drain()
            if "consumer" in runner.got:
                con, pub = runner.got["consumer"], {"error": "skipped (consumer failed)"}
            else:
                runner.start("publisher", pub_job)
                pub = runner.collect("publisher")
                con = runner.collect("consumer")
    except BaseException:  # interrupted (SIGTERM/^C): stop the workers right away
        runner.close(grace=0.0)
        raise
    finally:
        runner.close()
        _delete_queue(url, queue)
    out.details[kind] = {"publisher": pub, "consumer": con}
    for role, res in (("publisher", pub), ("consumer", con)):
        if "error" in res:
            out.notes.append(f"{kind}: {role} error: {res['error']}")
    if "body_bytes" in con and con["body_bytes"] != con["messages"] * opts.size:
        out.notes.append(
            f"{kind}: consumer error: got {con['body_bytes']} body bytes for "
            f"{con['messages']} deliveries of {opts.size} B"
        )
    out.values[f"{kind}.in"] = pub.get("rate") if "error" not in pub else None
    out.values[f"{kind}.out"] = con.get("rate") if "error" not in con else None
    if kind == "persistent-confirms" and "error" not in pub:
        out.values[f"{kind}.p50"] = pub["latency_p50_ms"]
        out.values[f"{kind}.p99"] = pub["latency_p99_ms"]
        if pub.get("nacked"):
            out.notes.append(f"{kind}: {pub['nacked']} publishes were nacked")
    if kind == "priority" and "error" not in pub and "error" not in con:
        out.values[f"{kind}.inversions"] = float(con["inversions"])
        out.values[f"{kind}.lost"] = float(opts.messages - con["messages"])
        if con["histogram"] != pub["histogram"]:
            out.notes.append(f"{kind}: per-priority counts differ from what was published")
    if "t_start" in pub and "t_last" in con and kind != "priority":
        e2e = con["t_last"] - pub["t_start"]
        out.details[kind]["end_to_end_rate"] = opts.messages / e2e if e2e > 0 else None
    cpu = ", ".join(
        f"{role} {res['cpu_s']:.1f}/{res['wall_s']:.1f}s"
        for role, res in (("publisher", pub), ("consumer", con))
        if "cpu_s" in res
    )
    log(
        f"  {kind}: in {fmt_rate(out.values.get(f'{kind}.in'))} msg/s, "
        f"out {fmt_rate(out.values.get(f'{kind}.out'))} msg/s (client cpu/wall: {cpu})"
    )
    return out


# -- per-target driver ---------------------------------------------------------------------


def _run_throughputs(
    url: AMQPUrl, scenarios: list[str], opts: Options, log: Log, res: TargetResult
) -> None:
    for kind in (s for s in scenarios if s in THROUGHPUT):
        log(f"  running {kind} ({opts.messages} x {opts.size} B)...")
        try:
            merge(res, run_throughput(kind, url, opts, log))
        except (OSError, AMQPError) as exc:
            res.notes.append(f"{kind}: failed: {type(exc).__name__}: {exc}")
            log(f"  {kind} failed: {exc}")


def run_target(target: Target, scenarios: list[str], opts: Options, log: Log) -> TargetResult:
    """Run the selected scenarios against one target."""
    res = TargetResult()
    log(f"[{target.name}] {target.url or 'spawned: ' + opts.broker_cmd}")
    if target.url is not None:
        _run_url_target(target.url, scenarios, opts, log, res)
    else:
        _run_spawned_target(scenarios, opts, log, res)
    if "lazy-backlog" in scenarios:  # its own fresh broker (spawned) or queue (url)
        merge(res, run_lazy_backlog(target.url, opts, log))
    if "stream" in scenarios:  # likewise
        merge(res, run_stream(target.url, opts, log))
    if "delayed" in scenarios:  # likewise
        merge(res, run_delayed(target.url, opts, log))
    return res


def _run_url_target(
    url: AMQPUrl, scenarios: list[str], opts: Options, log: Log, res: TargetResult
) -> None:
    if "cold-start" in scenarios:
        res.values["cold-start.median"] = None
        res.notes.append("cold-start: not measured for an already-running (--url) broker")
    if "idle-rss" in scenarios:
        pid = listener_pid(url.port) if url.host in LOOPBACK else None
        if pid is None:
            res.values["idle-rss.mb"] = None
            res.notes.append("idle-rss: no visible local listener process for the URL")
        else:
            res.values["idle-rss.mb"] = tree_rss_mb(pid)
            res.notes.append(
                f"idle-rss: RSS of already-running pid {pid} (listener of port "
                f"{url.port}) before the run, not a fresh start"
            )
    _run_throughputs(url, scenarios, opts, log, res)


def _run_spawned_target(
    scenarios: list[str], opts: Options, log: Log, res: TargetResult
) -> None:
    if "cold-start" in scenarios:
        log(f"  cold start x{opts.cold_starts}...")
        try:
            times = cold_start_times(opts.broker_cmd, opts.cold_starts, opts.ready_timeout)
            res.values["cold-start.median"] = statistics.median(times)
            res.details["cold-start"] = {"runs_s": times}
            log(f"  cold start: {', '.join(f'{t:.3f}' for t in times)} s")
        except Exception as exc:
            res.values["cold-start.median"] = None
            res.notes.append(f"cold-start: failed: {exc}")
            log(f"  cold start failed: {exc}")
    if not any(s == "idle-rss" or s in THROUGHPUT for s in scenarios):
        return
    with SpawnedBroker(opts.broker_cmd) as broker:
        try:
            broker.start()
            ready_s = broker.wait_ready(opts.ready_timeout)  # one connection opened+closed
        except Exception as exc:
            res.notes.append(f"broker start failed: {exc}")
            log(f"  broker start failed: {exc}")
            return
        log(f"  broker pid {broker.pid} on port {broker.port}, ready in {ready_s:.3f}s")
        if "idle-rss" in scenarios:
            time.sleep(1.0)
            res.values["idle-rss.mb"] = tree_rss_mb(broker.pid)
        _run_throughputs(broker.url, scenarios, opts, log, res)
        if broker.proc is not None and broker.proc.poll() is None:
            res.details["rss_after_run_mb"] = tree_rss_mb(broker.pid)
        else:
            res.notes.append(f"broker died during the run; log tail:\n{broker.log_tail()}")
