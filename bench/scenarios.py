"""Run orchestration: start the brokers, alternate flood rounds between them, run the rest.

Brokers under test, in table order: ours (spawned on a free port with a temporary data dir;
or the ``--url`` brokers instead), a RabbitMQ of the bench's own (``--rabbitmq``), and any
``--compare-url`` brokers. All stay up for the whole run. Flood scenarios run round by round,
alternating between the brokers (scenario 1: round 1 on each broker, round 2 on each...), so
every broker sees the same background load from the other helpers on the machine; a figure
is the median over the rounds. Then ``backlog-rss`` (a fresh spawned broker per queue kind)
and the extra scenarios (``idle-rss``: RSS of each broker right after its start; ``cold-start``
and ``lazy-backlog``: ours only unless given URLs, see ``bench.backlog``; ``stream`` and
``delayed``: on a fresh broker of ours and on each other broker, see ``bench.stream`` and
``bench.delayed``); last ``cluster``: three of our nodes on an etcd of the bench's own against
ours alone (``bench.cluster``).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.amqp import AMQPUrl
from bench.backlog import run_lazy_backlog
from bench.backlogrss import run_backlog_rss
from bench.brokerproc import BrokerError, SpawnedBroker, cold_start_times, listener_pid, tree_rss_mb
from bench.cluster import ClusterResult, run_cluster
from bench.common import LOOPBACK, Log, Options, TargetResult, merge
from bench.delayed import run_delayed
from bench.rabbit import SpawnedRabbit
from bench.rounds import FLOOD_NAMES, FLOODS, BrokerRef, RoundResult, run_round, wait_quiet
from bench.stream import run_stream

EXTRAS = ("idle-rss", "cold-start", "lazy-backlog", "stream", "delayed")
ALL_SCENARIOS = (*FLOOD_NAMES, "backlog-rss", *EXTRAS, "cluster")
DEFAULT_SCENARIOS = (*FLOOD_NAMES, "backlog-rss", "idle-rss", "cluster")
FIGURES = ("in", "out", "backlog", "cpu", "machine", "clients", "rss", "p50", "p99")


@dataclass
class Plan:
    """Which brokers to measure, besides the options every scenario shares."""

    urls: list[str] = field(default_factory=list)  # instead of spawning ours
    compare_urls: list[str] = field(default_factory=list)
    rabbitmq: bool = False  # start a RabbitMQ of our own
    rabbitmq_server: str = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    with_asyncio: bool = False  # also ours on asyncio's loop instead of uvloop


@dataclass
class RunResult:
    """Everything one run measured, per broker name."""

    brokers: list[BrokerRef] = field(default_factory=list)
    rounds: dict[str, dict[str, list[RoundResult]]] = field(default_factory=dict)
    backlog: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    extras: dict[str, TargetResult] = field(default_factory=dict)
    cluster: ClusterResult | None = None  # the cluster scenario (bench.cluster)
    notes: list[str] = field(default_factory=list)

    def median(self, scenario: str, broker: str, figure: str) -> float | None:
        vals = [r.values.get(figure) for r in self.rounds.get(scenario, {}).get(broker, [])]
        present = [v for v in vals if v is not None]
        return statistics.median(present) if present else None

    def failed(self) -> bool:
        words = ("error", "failed", "died")
        notes = [*self.notes, *(n for t in self.extras.values() for n in t.notes)]
        return any(w in n for n in notes for w in words)


def _url_ref(raw: str, taken: set[str]) -> BrokerRef:
    url = AMQPUrl.parse(raw)
    name, suffix = f"{url.host}:{url.port}", 2
    while name in taken:
        name, suffix = f"{url.host}:{url.port}#{suffix}", suffix + 1
    pid = listener_pid(url.port) if url.host in LOOPBACK else None
    return BrokerRef(name, url, pid, "url")


def _start_brokers(plan: Plan, opts: Options, stack: contextlib.ExitStack, log: Log,
                   out: RunResult) -> None:
    taken: set[str] = set()
    if not plan.urls:
        ours = stack.enter_context(SpawnedBroker(opts.broker_cmd))
        ours.start()
        ready = ours.wait_ready(opts.ready_timeout)
        log(f"[ours] pid {ours.pid} on port {ours.port}, ready in {ready:.2f}s")
        out.brokers.append(BrokerRef("ours", ours.url, ours.pid, "ours", ours))
        taken.add("ours")
    if plan.with_asyncio:
        variant = stack.enter_context(SpawnedBroker(asyncio_cmd(opts.broker_cmd)))
        variant.start()
        variant.wait_ready(opts.ready_timeout)
        log(f"[ours-asyncio] pid {variant.pid} on port {variant.port}")
        out.brokers.append(BrokerRef("ours-asyncio", variant.url, variant.pid, "ours-asyncio",
                                     variant))
    for raw in plan.urls:
        out.brokers.append(ref := _url_ref(raw, taken))
        taken.add(ref.name)
    if plan.rabbitmq:
        rabbit = stack.enter_context(SpawnedRabbit(plan.rabbitmq_server))
        rabbit.start()
        ready = rabbit.wait_ready(max(opts.ready_timeout, 60.0))
        log(f"[rabbitmq] pid {rabbit.pid} on port {rabbit.port} (node {rabbit.nodename}, "
            f"epmd pid {rabbit.epmd.pid if rabbit.epmd else '?'}), ready in {ready:.2f}s")
        out.brokers.append(BrokerRef("rabbitmq", rabbit.url, rabbit.pid, "rabbitmq", rabbit))
        taken.add("rabbitmq")
    for raw in plan.compare_urls:
        out.brokers.append(ref := _url_ref(raw, taken))
        taken.add(ref.name)


def asyncio_cmd(cmd: str) -> str:
    """Our broker command run through ``bench/asyncio_broker.py`` (asyncio's loop)."""
    shim = Path(__file__).with_name("asyncio_broker.py")
    return cmd.replace("{python} -m broker", f"{{python}} {shim}")


def _alive(broker: BrokerRef) -> bool:
    proc = getattr(broker.handle, "proc", None)
    return proc is None or proc.poll() is None


def _idle_rss(brokers: list[BrokerRef], out: RunResult) -> None:
    time.sleep(1.0)
    for b in brokers:
        res = out.extras.setdefault(b.name, TargetResult())
        try:
            res.values["idle-rss.mb"] = tree_rss_mb(b.pid) if b.pid is not None else None
        except OSError:
            res.values["idle-rss.mb"] = None
        if b.kind == "url":
            res.notes.append(f"idle-rss: RSS of already-running pid {b.pid} before the run")


def _floods(scenarios: list[str], opts: Options, log: Log, out: RunResult) -> None:
    for spec in (s for s in FLOODS if s.name in scenarios):
        per = out.rounds.setdefault(spec.name, {b.name: [] for b in out.brokers})
        for rnd in range(1, opts.rounds + 1):
            for broker in out.brokers:
                if not _alive(broker):
                    continue
                waited = wait_quiet(out.brokers)
                try:
                    res = run_round(broker, spec, opts, log)
                except (OSError, BrokerError, TimeoutError) as exc:
                    res = RoundResult(notes=[f"round failed: {type(exc).__name__}: {exc}"])
                if not _alive(broker):
                    tail = broker.handle.log_tail() if broker.handle else ""
                    res.notes.append(f"broker died during the round; log tail:\n{tail}")
                per[broker.name].append(res)
                out.notes.extend(f"{spec.name} round {rnd} on {broker.name}: {n}"
                                 for n in res.notes)
                log(_round_line(spec.name, rnd, broker.name, res, waited))


def _round_line(scenario: str, rnd: int, broker: str, res: RoundResult, waited: float) -> str:
    v = res.values

    def k(key: str) -> str:
        x = v.get(key)
        return "n/a" if x is None else f"{x / 1000:.1f}k"

    def f(key: str, fmt: str) -> str:
        x = v.get(key)
        return "n/a" if x is None else format(x, fmt)

    lat = f" confirms p50/p99 {f('p50', '.1f')}/{f('p99', '.1f')} ms" if "p50" in v else ""
    return (f"  {scenario} #{rnd} {broker}: in {k('in')} out {k('out')} backlog "
            f"{f('backlog', ',.0f')} cpu {f('cpu', '.2f')} machine {f('machine', '.2f')} "
            f"clients {f('clients', '.2f')} "
            f"rss {f('rss', '.0f')} MB{lat} (quiet after {waited:.1f}s)"
            + ("".join(f"\n    ! {n}" for n in res.notes)))


def _fresh(plan: Plan, opts: Options, kind: str) -> Callable[[], Any] | None:
    """A new spawned broker like ``kind`` (None for a --url broker, which is reused)."""
    if kind == "ours":
        return lambda: SpawnedBroker(opts.broker_cmd)
    if kind == "ours-asyncio":
        return lambda: SpawnedBroker(asyncio_cmd(opts.broker_cmd))
    if kind == "rabbitmq":
        return lambda: SpawnedRabbit(plan.rabbitmq_server)
    return None


def _backlog_rss(plan: Plan, opts: Options, log: Log, out: RunResult) -> None:
    for broker in out.brokers:
        fresh = _fresh(plan, opts, broker.kind)
        out.backlog[broker.name] = got = run_backlog_rss(broker, fresh, opts, log)
        out.notes.extend(f"backlog-rss {kind} on {broker.name}: {r['error']}"
                         for kind, r in got.items() if "error" in r)


def _extras(scenarios: list[str], opts: Options, log: Log, out: RunResult) -> None:
    for broker in out.brokers:
        res = out.extras.setdefault(broker.name, TargetResult())
        if "cold-start" in scenarios and broker.kind == "ours":
            log(f"  cold start x{opts.cold_starts}...")
            try:
                times = cold_start_times(opts.broker_cmd, opts.cold_starts, opts.ready_timeout)
                res.values["cold-start.median"] = statistics.median(times)
                res.details["cold-start"] = {"runs_s": times}
            except (OSError, BrokerError) as exc:
                res.notes.append(f"cold-start: failed: {exc}")
        if "lazy-backlog" in scenarios:
            merge(res, run_lazy_backlog(None if broker.kind == "ours" else broker.url,
                                        opts, log))
        if "stream" in scenarios:  # a broker of its own for ours; RabbitMQ streams too
            merge(res, run_stream(None if broker.kind == "ours" else broker.url, opts, log))
        if "delayed" in scenarios:
            if broker.kind in ("ours", "url"):  # RabbitMQ here lacks the delayed plugin
                merge(res, run_delayed(None if broker.kind == "ours" else broker.url,
                                       opts, log))
            else:
                res.notes.append("delayed: not measured (rabbitmq_delayed_message_exchange "
                                 "is not installed)")


def run_all(plan: Plan, scenarios: list[str], opts: Options, log: Log) -> RunResult:
    """Start the brokers, run ``scenarios`` against all of them, stop what was started."""
    out = RunResult()
    with contextlib.ExitStack() as stack:
        _start_brokers(plan, opts, stack, log, out)
        if "idle-rss" in scenarios:
            _idle_rss(out.brokers, out)
        _floods(scenarios, opts, log, out)
        if "backlog-rss" in scenarios:
            _backlog_rss(plan, opts, log, out)
        _extras(scenarios, opts, log, out)
        if "cluster" in scenarios:
            single = next((b for b in out.brokers if b.kind == "ours"), None)
            out.cluster = run_cluster(single, opts, log)
            out.notes.extend(out.cluster.notes)
    return out
