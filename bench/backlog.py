"""The ``lazy-backlog`` scenario: a large persistent backlog in a lazy durable queue.

Against a freshly spawned broker of ours (own data dir, not the one shared by
the other scenarios) or a ``--url`` broker:

1. fill: one confirming publisher (window ``--confirm-window``) sends N x 1 KiB
   ``delivery_mode=2`` messages into a durable ``x-queue-mode=lazy`` queue with
   no consumer; the rate counts confirmed (= safely stored) messages;
2. RSS of the broker's process tree before and after the fill (and the peak
   during it, sampled every 0.2 s); the growth should stay small (<= 64 MB);
3. restart (spawned broker only): SIGTERM and wait, spawn again on the same
   data dir and port, and time spawn -> a passive ``queue.declare`` answering
   ``message_count == N`` (polled every 5 ms); then the same with SIGKILL;
4. drain: one manual-ack consumer (prefetch ``--prefetch``, default 1000 here)
   takes all N; drain rate and RSS afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from bench.amqp import AMQPError, AMQPUrl, Connection
from bench.brokerproc import POLL_INTERVAL, BrokerError, SpawnedBroker
from bench.common import (
    Log,
    Metric,
    Options,
    QueueScenario,
    RssSampler,
    TargetResult,
    fmt_rate,
    on_broker,
    run_workers,
)
from bench.workers import Job

P = "lazy-backlog"
STOP_GRACE = 120.0  # seconds a SIGTERMed broker may take to exit before it is SIGKILLed
perf = time.perf_counter

BACKLOG_METRICS = (
    Metric(f"{P}.fill", "lazy backlog fill (confirmed)", "msg/s"),
    Metric(f"{P}.rss_before", "lazy backlog RSS before fill", "MB", False),
    Metric(f"{P}.rss_after_fill", "lazy backlog RSS after fill", "MB", False),
    Metric(f"{P}.rss_growth", "lazy backlog RSS growth (target <= 64)", "MB", False),
    Metric(f"{P}.rss_peak_growth", "lazy backlog RSS peak growth during fill", "MB", False),
    Metric(f"{P}.disk_after_fill", "lazy backlog data dir after fill", "MB", False),
    Metric(f"{P}.stop_term", "lazy backlog SIGTERM -> exit", "s", False),
    Metric(f"{P}.restart_term", "lazy backlog restart->serving N, SIGTERM (<= 5)", "s", False),
    Metric(f"{P}.restart_kill", "lazy backlog restart->serving N, SIGKILL (<= 5)", "s", False),
    Metric(f"{P}.rss_recovery_peak", "lazy backlog RSS peak during recovery", "MB", False),
    Metric(f"{P}.rss_after_restart", "lazy backlog RSS after restart (N queued)", "MB", False),
    Metric(f"{P}.drain", "lazy backlog drain (out)", "msg/s"),
    Metric(f"{P}.rss_after_drain", "lazy backlog RSS after drain", "MB", False),
    Metric(f"{P}.disk_after_drain", "lazy backlog data dir after drain", "MB", False),
    Metric(f"{P}.lost", "lazy backlog messages missing", "count", False),
)


def run_lazy_backlog(url: AMQPUrl | None, opts: Options, log: Log) -> TargetResult:
    """Run the scenario against a fresh spawned broker (``url`` None) or the broker at ``url``."""
    n = opts.backlog_messages
    log(f"  running {P} ({n} x {opts.size} B, confirm window {opts.confirm_window})...")
    return on_broker(url, opts, P, log,
                     lambda url, pid, broker: _Backlog(url, pid, broker, opts, log).run())


def wait_for_depth(
    broker: SpawnedBroker, queue: str, expected: int, timeout: float
) -> dict[str, Any]:
    """Poll (new connection until one works, then passive declares) until ``expected`` msgs.

    Times are seconds since ``broker.t_spawn``: first connection.open-ok, and the first
    passive ``queue.declare`` answering ``message_count == expected`` (None on timeout).
    """
    t0 = broker.t_spawn
    deadline = t0 + timeout
    out: dict[str, Any] = {"open_ok_s": None, "serving_s": None, "last_count": None,
                           "last_error": None, "polls": 0}
    conn: Connection | None = None
    try:
        while True:
            assert broker.proc is not None
            if broker.proc.poll() is not None:
                raise BrokerError(f"broker exited with code {broker.proc.returncode} during "
                                  f"recovery; log tail:\n{broker.log_tail()}")
            if perf() > deadline:
                return out
            out["polls"] += 1
            try:
                if conn is None:
                    conn = Connection(broker.url, timeout=5.0, product="bench-probe")
                    if out["open_ok_s"] is None:
                        out["open_ok_s"] = perf() - t0
                    conn.channel_open(1)
                count = conn.queue_declare(1, queue, passive=True).message_count
                out["last_count"] = count
                if count == expected:
                    out["serving_s"] = perf() - t0
                    return out
            except (OSError, AMQPError) as exc:  # refused, 404 while recovering, ...
                out["last_error"] = f"{type(exc).__name__}: {exc}"
                if conn is not None:
                    conn.close(timeout=1.0)
                    conn = None
            time.sleep(POLL_INTERVAL)
    finally:
        if conn is not None:
            conn.close(timeout=1.0)


class _Backlog(QueueScenario):
    """State of one lazy-backlog run; ``broker`` is None for a ``--url`` target."""

    prefix = P

    # -- helpers ---------------------------------------------------------------------

    def disk(self, key: str) -> None:
        """Record the size of the spawned broker's data dir (files only) as ``key``."""
        if self.broker is not None:
            self.res.values[f"{P}.{key}"] = dir_mb(self.broker.data_dir)

    def _disk_text(self, key: str) -> str:
        value = self.res.values.get(f"{P}.{key}")
        return "" if value is None else f", data dir {value:.1f} MB"

    def depth(self) -> int:
        with Connection(self.url, product="bench-control") as conn:
            conn.channel_open(1)
            return int(conn.queue_declare(1, self.queue, passive=True).message_count or 0)

    def _declare(self) -> None:
        with Connection(self.url, product="bench-control") as conn:
            conn.channel_open(1)
            conn.queue_declare(1, self.queue, durable=True, arguments={"x-queue-mode": "lazy"})

    def _delete(self) -> None:
        try:
            with Connection(self.url, product="bench-control") as conn:
                conn.channel_open(1)
                conn.queue_delete(1, self.queue)
        except (OSError, AMQPError):
            pass

    def _run_worker(self, role: str, job: Job) -> dict[str, Any]:
        results, peak = run_workers(self.pid, self.phase_timeout, {role: job})
        result = results[role]
        result["rss_peak_mb"] = peak
        return result

    # -- phases ----------------------------------------------------------------------

    def run(self) -> TargetResult:
        try:
            self._declare()
            if self._fill():
                if self.broker is not None:
                    self._restart(signal.SIGTERM, "term")
                    self._restart(signal.SIGKILL, "kill")
                else:
                    self.res.notes.append(f"{P}: restart not measured for a --url broker")
                self._drain()
        except (OSError, AMQPError, BrokerError) as exc:
            self.note(f"failed: {type(exc).__name__}: {exc}")
        finally:
            if self.broker is None or self.broker.proc is None or self.broker.proc.poll() is None:
                self._delete()
        if self.pid is None:
            self.res.notes.append(f"{P}: RSS not measured (no visible local broker process)")
        return self.res

    def _fill(self) -> bool:
        time.sleep(1.0)  # let the broker settle after the declare before the baseline
        rss0 = self.rss()
        job = self.job(self.n, persistent=True, confirm_window=self.opts.confirm_window)
        pub = self._run_worker("publisher", job)
        rss1 = self.rss()
        self.details["publisher"] = pub
        v = self.res.values
        v[f"{P}.rss_before"], v[f"{P}.rss_after_fill"] = rss0, rss1
        if rss0 is not None and rss1 is not None:
            v[f"{P}.rss_growth"] = rss1 - rss0
            v[f"{P}.rss_peak_growth"] = max(pub["rss_peak_mb"] or rss1, rss1) - rss0
        if "error" in pub:
            v[f"{P}.fill"] = None
            self.note(f"publisher error: {pub['error']}")
            return False
        v[f"{P}.fill"] = pub["rate"]
        if pub.get("nacked"):
            self.note(f"{pub['nacked']} publishes were nacked")
        depth = self.depth()
        self.details["depth_after_fill"] = depth
        self.disk("disk_after_fill")
        if depth != self.n:
            self.note(f"queue holds {depth} messages after the fill, expected {self.n}")
        growth = v.get(f"{P}.rss_growth")
        self.log(
            f"  {P}: fill {fmt_rate(pub['rate'])} msg/s (confirm p50 "
            f"{pub['latency_p50_ms']:.1f} ms, p99 {pub['latency_p99_ms']:.1f} ms), depth "
            f"{depth}, RSS {_mb(rss0)} -> {_mb(rss1)} MB (growth {_mb(growth)}, "
            f"peak {_mb(pub.get('rss_peak_mb'))}){self._disk_text('disk_after_fill')}"
        )
        return True

    def _restart(self, sig: signal.Signals, label: str) -> None:
        broker = self.broker
        assert broker is not None
        expected = int(self.details.get("depth_after_fill", self.n))
        stop_s, forced = broker.terminate(sig, STOP_GRACE)
        code = broker.proc.returncode if broker.proc is not None else None
        if label == "term":
            self.res.values[f"{P}.stop_term"] = stop_s
            if forced:
                self.note(f"broker still running {STOP_GRACE:.0f}s after SIGTERM; SIGKILLed")
        broker.start()
        self.pid = broker.pid
        with RssSampler(broker.pid) as sampler:
            timing = wait_for_depth(broker, self.queue, expected, self.opts.timeout)
        rss = self.rss()
        timing.update(signal=sig.name, stop_s=stop_s, exit_code=code, forced_kill=forced,
                      rss_recovery_peak_mb=sampler.peak_mb, rss_after_mb=rss)
        self.details[f"restart_{label}"] = timing
        self.res.values[f"{P}.restart_{label}"] = timing["serving_s"]
        if label == "term":
            self.res.values[f"{P}.rss_recovery_peak"] = sampler.peak_mb
            self.res.values[f"{P}.rss_after_restart"] = rss
        if timing["serving_s"] is None:
            self.note(
                f"after {sig.name} the queue did not report {expected} messages within "
                f"{self.opts.timeout:.0f}s (last count {timing['last_count']}, last error "
                f"{timing['last_error']})"
            )
            return
        open_ok = timing["open_ok_s"]
        self.log(
            f"  {P}: {sig.name}: exit after {stop_s:.3f}s (code {code}), respawn -> open-ok "
            f"{open_ok:.3f}s -> {expected} msgs {timing['serving_s']:.3f}s; RSS {_mb(rss)} MB "
            f"(recovery peak {_mb(sampler.peak_mb)})"
        )

    def _drain(self) -> None:
        depth = self.depth()
        if depth == 0:
            self.note("queue empty before the drain")
            self.res.values[f"{P}.lost"] = float(self.n)
            return
        job = self.job(depth, prefetch=self.opts.backlog_prefetch)
        con = self._run_worker("consumer", job)
        self.details["consumer"] = con
        v = self.res.values
        if "error" in con:
            v[f"{P}.drain"] = None
            self.note(f"consumer error: {con['error']}")
            return
        v[f"{P}.drain"] = con["rate"]
        v[f"{P}.lost"] = float(self.n - con["messages"])
        if con["body_bytes"] != con["messages"] * self.opts.size:
            self.note(f"got {con['body_bytes']} body bytes for {con['messages']} deliveries")
        left = self.depth()  # the consumer's acks precede its connection.close
        self.details["depth_after_drain"] = left
        if left:
            self.note(f"{left} messages still queued after the drain")
        v[f"{P}.rss_after_drain"] = rss = self.rss()
        self.disk("disk_after_drain")
        self.log(
            f"  {P}: drain {fmt_rate(con['rate'])} msg/s (prefetch "
            f"{self.opts.backlog_prefetch}), {con['messages']} delivered, RSS {_mb(rss)} MB"
            f"{self._disk_text('disk_after_drain')}"
        )


def dir_mb(path: Path) -> float:
    """Total size of the regular files under ``path``, in MiB."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total / (1 << 20)


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
