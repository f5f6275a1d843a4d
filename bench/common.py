"""Types and helpers shared by the scenario modules.

``Options`` (benchmark parameters), ``Target``/``TargetResult`` (a broker to
measure and its figures), ``Runner`` (starts publisher/consumer worker
processes and gathers their result dicts) and ``RssSampler`` (background
thread recording the peak RSS of a process tree during a phase).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue as queue_mod
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.amqp import AMQPUrl
from bench.brokerproc import DEFAULT_CMD, BrokerError, SpawnedBroker, listener_pid, tree_rss_mb
from bench.workers import Job, run_worker

Log = Callable[[str], None]
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Metric:
    """One reported figure: key in the results, label for the table, unit, direction."""

    key: str
    label: str
    unit: str
    higher_is_better: bool = True


@dataclass(frozen=True)
class Options:
    """Benchmark parameters shared by all targets."""

    size: int = 1024
    batch: int = 500
    prefetch: int = 100
    confirm_window: int = 500
    cold_starts: int = 5
    timeout: float = 300.0
    ready_timeout: float = 30.0
    broker_cmd: str = DEFAULT_CMD
    backlog_messages: int = 1_000_000  # backlog-rss and lazy-backlog
    backlog_prefetch: int = 1000  # lazy-backlog drain
    rounds: int = 3  # flood scenarios: rounds per broker, alternating between brokers
    duration: float = 8.0  # seconds per round
    warmup: float = 2.0  # seconds at the start of a round left out of the rates
    backlog_kinds: tuple[str, ...] = ("durable", "transient", "priority")


@dataclass
class Target:
    """A broker to benchmark; ``url`` None means "spawn our own"."""

    name: str
    url: AMQPUrl | None = None


@dataclass
class TargetResult:
    values: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def merge(into: TargetResult, part: TargetResult) -> None:
    into.values.update(part.values)
    into.notes.extend(part.notes)
    into.details.update(part.details)


def fmt_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


BrokerRun = Callable[[AMQPUrl, "int | None", "SpawnedBroker | None"], TargetResult]


def on_broker(url: AMQPUrl | None, opts: Options, prefix: str, log: Log,
              run: BrokerRun) -> TargetResult:
    """``run(url, pid, broker)`` against the broker at ``url`` (``pid`` its process when it
    listens on this machine, else None; ``broker`` None) or, ``url`` None, a freshly spawned
    broker of ours on its own data dir, stopped afterwards."""
    if url is not None:
        pid = listener_pid(url.port) if url.host in LOOPBACK else None
        return run(url, pid, None)
    with SpawnedBroker(opts.broker_cmd) as broker:
        try:
            broker.start()
            broker.wait_ready(opts.ready_timeout)
        except (OSError, BrokerError) as exc:
            res = TargetResult()
            res.notes.append(f"{prefix}: broker start failed: {exc}")
            return res
        log(f"  {prefix}: fresh broker pid {broker.pid} on port {broker.port}, "
            f"data dir {broker.data_dir}")
        return run(broker.url, broker.pid, broker)


class QueueScenario:
    """State of one run of a scenario on its own queue; ``broker`` is None for a ``--url``
    target, ``pid`` None when the broker's process is not visible (no RSS then)."""

    prefix = ""  # the scenario's name, in front of its metric keys and notes

    def __init__(self, url: AMQPUrl, pid: int | None, broker: SpawnedBroker | None,
                 opts: Options, log: Log) -> None:
        self.url, self.pid, self.broker, self.opts, self.log = url, pid, broker, opts, log
        self.n = opts.backlog_messages
        self.queue = f"bench.{self.prefix}.{os.getpid()}.{time.monotonic_ns() % 1_000_000}"
        self.res = TargetResult()
        self.details: dict[str, Any] = {"messages": self.n, "queue": self.queue}
        self.res.details[self.prefix] = self.details
        # worker deadline: the socket timeout plus at least 500 msg/s for the whole backlog
        self.phase_timeout = opts.timeout + self.n / 500.0

    def rss(self) -> float | None:
        return tree_rss_mb(self.pid) if self.pid is not None else None

    def note(self, text: str) -> None:
        self.res.notes.append(f"{self.prefix}: {text}")
        self.log(f"  {self.prefix}: {text}")

    def job(self, messages: int, **extra: Any) -> Job:
        return Job(url=self.url, queue=self.queue, messages=messages, size=self.opts.size,
                   batch=self.opts.batch, timeout=self.opts.timeout, **extra)


class Runner:
    """Starts worker processes and gathers their (role, result) reports."""

    def __init__(self, timeout: float) -> None:
        self.ctx = mp.get_context("spawn")
        self.results: Any = self.ctx.Queue()
        self.timeout = timeout
        self.procs: dict[str, Any] = {}
        self.events: dict[str, Any] = {}  # keep Events alive until the child unpickled them
        self.got: dict[str, dict[str, Any]] = {}

    def start(self, role: str, job: Job) -> Any:
        ready = self.ctx.Event()
        proc = self.ctx.Process(
            target=run_worker, args=(role, job, self.results, ready), name=f"bench-{role}"
        )
        proc.start()
        self.procs[role] = proc
        self.events[role] = ready
        return ready

    def drain(self) -> None:
        while True:
            try:
                role, result = self.results.get_nowait()
            except queue_mod.Empty:
                return
            self.got[role] = result

    def collect(self, role: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout + 30.0
        proc = self.procs[role]
        while role not in self.got:
            try:
                got_role, result = self.results.get(timeout=0.5)
                self.got[got_role] = result
                continue
            except queue_mod.Empty:
                pass
            if proc.exitcode is not None and role not in self.got:
                self.drain()
                if role not in self.got:
                    self.got[role] = {"error": f"{role} died with exit code {proc.exitcode}"}
            elif time.monotonic() > deadline:
                self.got[role] = {"error": f"{role} gave no result within {self.timeout:.0f}s"}
        return self.got[role]

    def close(self, grace: float = 5.0) -> None:
        for proc in self.procs.values():
            proc.join(grace)
            if proc.is_alive():
                proc.terminate()
                proc.join(5.0)


def run_workers(pid: int | None, timeout: float,
                jobs: dict[str, Job]) -> tuple[dict[str, dict[str, Any]], float | None]:
    """Start one worker per role together and collect each one's result; also the peak RSS of
    ``pid``'s process tree meanwhile (None when ``pid`` is None). Interrupted: the workers
    are stopped at once."""
    runner = Runner(timeout)
    try:
        with RssSampler(pid) as sampler:
            for role, job in jobs.items():
                runner.start(role, job)
            results = {role: runner.collect(role) for role in jobs}
    except BaseException:
        runner.close(grace=0.0)
        raise
    finally:
        runner.close()
    return results, sampler.peak_mb


class RssSampler:
    """Peak RSS of ``pid``'s process tree during a ``with`` block.

    Samples the summed VmRSS every ``interval`` s; short spikes between samples are caught
    through VmHWM (the kernel's peak RSS since process start): when it grew during the
    block, the peak was reached inside it. With ``pid`` None (broker process not visible)
    it does nothing and ``peak_mb`` stays None.
    """

    def __init__(self, pid: int | None, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_mb: float | None = None
        self.hwm_start_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(OSError):
                self.peak_mb = max(self.peak_mb or 0.0, tree_rss_mb(self.pid))

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        if self.pid is not None:
            self.hwm_start_mb = tree_rss_mb(self.pid, "VmHWM")
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pid is not None:
            self._stop.set()
            self._thread.join()
            self._sample()  # one last sample at the end of the phase
            hwm = tree_rss_mb(self.pid, "VmHWM")
            if hwm > self.hwm_start_mb:
                self.peak_mb = max(self.peak_mb or 0.0, hwm)
