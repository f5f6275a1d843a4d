"""Flood scenarios: what each one declares and runs, and one timed round against one broker.

A round declares fresh queues (and a fanout exchange) over a control connection, starts every
consumer and the publisher as ``spawn`` processes (``bench.flood``), waits until all are
connected and subscribed, gives one go for all, samples the broker's CPU (``/proc/<pid>/stat``
of its process tree) and the machine's busy time when the measuring window opens and closes,
reads the broker's RSS at the end, then, once the workers have stopped, the backlog (messages
left in the round's queues), and deletes what it declared. Rounds of different brokers run
one after the other, never at the same time; before each, ``wait_quiet`` lets every broker
finish what the previous round left it (deleting a big queue, paging) so a round does not pay
for another broker's cleanup.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import queue as queue_mod
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pamqp import commands

from bench.amqp import AMQPError, AMQPUrl, Connection
from bench.brokerproc import machine_busy_seconds, tree_cpu_seconds, tree_rss_mb
from bench.common import Log, Options
from bench.flood import FloodJob, run_flood_worker

_serial = itertools.count(1)


@dataclass(frozen=True)
class FloodSpec:
    """One flood scenario (1 KB bodies unless --size); ``fanout`` = queues bound to a fanout."""

    name: str
    title: str
    durable: bool = False
    persistent: bool = False
    priority: bool = False
    confirms: bool = False
    consumers: int = 1
    no_ack: bool = False
    fanout: int = 0

    @property
    def headline(self) -> str:
        """Figure the ratio column compares: consumed msg/s, or confirmed/s with no consumer."""
        return "out" if self.consumers else "in"


FLOODS = (
    FloodSpec("no-ack", "transient, no-ack", no_ack=True),
    FloodSpec("manual-ack", "transient, manual ack, prefetch 100"),
    FloodSpec("priority", "priority (x-max-priority 10), manual ack", priority=True),
    FloodSpec("confirms-consumer", "durable, persistent, confirms (window 500) + consumer",
              durable=True, persistent=True, confirms=True),
    FloodSpec("confirms-only", "durable, persistent, confirms, no consumer",
              durable=True, persistent=True, confirms=True, consumers=0),
    FloodSpec("fanout", "fanout to 10 queues, 10 no-ack consumers",
              consumers=10, no_ack=True, fanout=10),
)
FLOOD_NAMES = tuple(s.name for s in FLOODS)


@dataclass
class BrokerRef:
    """A broker under test: name, URL and (when visible) the PID its process tree hangs from."""

    name: str
    url: AMQPUrl
    pid: int | None
    kind: str  # "ours", "rabbitmq" (spawned by the bench) or "url"
    handle: Any = None  # SpawnedBroker / SpawnedRabbit, for liveness and log tails


@dataclass
class RoundResult:
    """Figures of one round of one scenario against one broker (None = not measured)."""

    values: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    workers: dict[str, Any] = field(default_factory=dict)


# -- queue setup ---------------------------------------------------------------------------


def _declare(url: AMQPUrl, spec: FloodSpec, base: str) -> tuple[str, list[str]]:
    """Declare the round's queues (and fanout exchange); return (exchange, queue names)."""
    args = {"x-max-priority": 10} if spec.priority else None
    queues = [f"{base}.{i}" for i in range(spec.fanout)] if spec.fanout else [base]
    exchange = f"{base}.fanout" if spec.fanout else ""
    with Connection(url, product="bench-control") as conn:
        conn.channel_open(1)
        if exchange:
            conn.rpc(1, commands.Exchange.Declare(exchange=exchange, exchange_type="fanout"),
                     commands.Exchange.DeclareOk)
        for q in queues:
            conn.queue_declare(1, q, durable=spec.durable, arguments=args)
            if exchange:
                conn.rpc(1, commands.Queue.Bind(queue=q, exchange=exchange),
                         commands.Queue.BindOk)
    return exchange, queues


def _backlog_and_delete(url: AMQPUrl, exchange: str, queues: list[str],
                        timeout: float) -> int | None:
    """Messages left in ``queues``, then delete them (and the exchange)."""
    total: int | None = 0
    with Connection(url, timeout=timeout, product="bench-control") as conn:
        conn.channel_open(1)
        for q in queues:
            ok = conn.queue_declare(1, q, passive=True)
            total = (total or 0) + int(ok.message_count or 0)
        for q in queues:
            conn.queue_delete(1, q)
        if exchange:
            conn.rpc(1, commands.Exchange.Delete(exchange=exchange), commands.Exchange.DeleteOk)
    return total


def wait_quiet(brokers: list[BrokerRef], limit: float = 0.15, timeout: float = 30.0) -> float:
    """Wait until every visible broker uses < ``limit`` cores over 0.5 s; seconds waited."""
    t0 = time.monotonic()
    pids = [b.pid for b in brokers if b.pid is not None]
    while time.monotonic() - t0 < timeout:
        before = [tree_cpu_seconds(p) for p in pids]
        time.sleep(0.5)
        after = [tree_cpu_seconds(p) for p in pids]
        if all((b - a) / 0.5 < limit for a, b in zip(before, after, strict=True)):
            break
    return time.monotonic() - t0


# -- one round -----------------------------------------------------------------------------


def _jobs(spec: FloodSpec, url: AMQPUrl, exchange: str, queues: list[str],
          opts: Options) -> dict[str, FloodJob]:
    base = FloodJob(url=url, role="consumer", queue=queues[0], size=opts.size,
                    batch=opts.batch, warmup=opts.warmup, duration=opts.duration,
                    timeout=opts.timeout, prefetch=opts.prefetch, no_ack=spec.no_ack,
                    confirm_window=opts.confirm_window)
    jobs = {f"consumer{i}": replace(base, queue=queues[i % len(queues)])
            for i in range(spec.consumers)}
    jobs["publisher"] = replace(
        base, role="confirms" if spec.confirms else "publisher",
        queue="" if exchange else queues[0], exchange=exchange,
        persistent=spec.persistent, priorities=spec.priority)
    return jobs


def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _cpu(pid: int | None) -> float | None:
    try:
        return tree_cpu_seconds(pid) if pid is not None else None
    except OSError:
        return None


def run_round(broker: BrokerRef, spec: FloodSpec, opts: Options, log: Log,
              on_window: Callable[[float], None] | None = None) -> RoundResult:
    """One timed round of ``spec`` against ``broker``.

    ``on_window(seconds)`` is called when the measuring window opens (e.g. to start a
    profiler on the broker for the window's length).
    """
    res = RoundResult()
    base = f"bench.{spec.name}.{os.getpid()}.{next(_serial)}"
    exchange, queues = _declare(broker.url, spec, base)
    ctx = mp.get_context("spawn")
    results: Any = ctx.Queue()
    go, t_go = ctx.Event(), ctx.Value("d", 0.0)
    procs, readies = {}, {}
    try:
        for name, job in _jobs(spec, broker.url, exchange, queues, opts).items():
            readies[name] = ready = ctx.Event()
            proc = ctx.Process(target=run_flood_worker, name=f"bench-{name}",
                               args=(name, job, results, ready, go, t_go))
            proc.start()
            procs[name] = proc
        deadline = time.monotonic() + opts.ready_timeout
        for name, ready in readies.items():
            while not ready.wait(0.2) and procs[name].is_alive():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready after {opts.ready_timeout:.0f}s")
        t_go.value = start = time.monotonic() + 0.05
        go.set()
        _sleep_until(start + opts.warmup)
        if on_window is not None:
            on_window(opts.duration - opts.warmup)
        t_a, cpu_a, busy_a = time.monotonic(), _cpu(broker.pid), machine_busy_seconds()
        _sleep_until(start + opts.duration)
        t_b, cpu_b, busy_b = time.monotonic(), _cpu(broker.pid), machine_busy_seconds()
        span = t_b - t_a
        v = res.values
        v["cpu"] = (cpu_b - cpu_a) / span if cpu_a is not None and cpu_b is not None else None
        v["machine"] = (busy_b - busy_a) / span
        try:
            v["rss"] = tree_rss_mb(broker.pid) if broker.pid is not None else None
        except OSError:
            v["rss"] = None
        got = _collect(procs, results, opts.timeout + 30.0)
    except BaseException:
        for proc in procs.values():
            proc.terminate()
        raise
    finally:
        for proc in procs.values():
            proc.join(10.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(5.0)
    try:
        res.values["backlog"] = _backlog_and_delete(broker.url, exchange, queues, opts.timeout)
    except (OSError, AMQPError) as exc:
        res.values["backlog"] = None
        res.notes.append(f"backlog/delete failed: {type(exc).__name__}: {exc}")
    _figures(spec, got, res, opts.duration)
    return res


def _collect(procs: dict[str, Any], results: Any, timeout: float) -> dict[str, dict[str, Any]]:
    got: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(got) < len(procs) and time.monotonic() < deadline:
        try:
            name, result = results.get(timeout=0.5)
            got[name] = result
        except queue_mod.Empty:
            for name, proc in procs.items():
                if name not in got and proc.exitcode is not None:
                    got[name] = {"error": f"{name} died with exit code {proc.exitcode}"}
    for name in procs:
        got.setdefault(name, {"error": f"{name} gave no result within {timeout:.0f}s"})
    return got


def _figures(spec: FloodSpec, got: dict[str, dict[str, Any]], res: RoundResult,
             duration: float) -> None:
    res.workers = got
    for name, r in got.items():
        if "error" in r:
            res.notes.append(f"{name} error: {r['error']}")
    pub = got["publisher"]
    cons = [r for n, r in got.items() if n.startswith("consumer")]
    v = res.values
    v["in"] = pub.get("rate") if "error" not in pub else None
    if spec.consumers:
        ok = all("error" not in r for r in cons)
        v["out"] = sum(r["rate"] for r in cons) if ok else None
    cpu = [r["cpu_s"] for r in got.values() if "cpu_s" in r]
    v["clients"] = sum(cpu) / duration if cpu and duration > 0 else None  # bench's own load
    if spec.confirms and "error" not in pub:
        v["p50"], v["p99"] = pub["latency_p50_ms"], pub["latency_p99_ms"]
        if pub.get("nacked"):
            res.notes.append(f"{pub['nacked']} publishes were nacked")
