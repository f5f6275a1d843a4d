"""Types and helpers shared by the scenario modules.

``Options`` (benchmark parameters), ``Target``/``TargetResult`` (a broker to
measure and its figures), ``Runner`` (starts publisher/consumer worker
processes and gathers their result dicts) and ``RssSampler`` (background
thread recording the peak RSS of a process tree during a phase).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue as queue_mod
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.amqp import AMQPUrl
from bench.brokerproc import DEFAULT_CMD, tree_rss_mb
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
