"""The ``stream`` scenario: a stream queue written by one confirming publisher, then read by
three consumers at once, each from ``first``.

Against a freshly spawned broker of ours (own data dir) or a ``--url`` broker (RabbitMQ serves
streams over AMQP 0-9-1 too):

1. publish: one publisher with confirms (window ``--confirm-window``) sends N x ``--size``
   messages (N = ``--backlog-messages``, 1,000,000 by default) into a fresh
   ``x-queue-type: stream`` queue; the rate counts confirmed messages;
2. RSS of the broker's process tree before and after (and peak during) the publish: a stream
   keeps nothing per message in RAM, so the growth should stay small (target <= 64 MB);
3. read: three manual-ack consumers (prefetch 1000), started
   together with ``x-stream-offset: first``, each read the whole stream; the rate of each
   (first -> last delivery), the slowest one and the RSS peak while they read. Reading does
   not consume: every consumer must get all N (``lost`` counts what one did not);
4. the same read by one consumer alone, then, for a side-by-side figure on the same broker
   in the same run, a classic (durable) queue filled with the same N by the same publisher
   and drained by one consumer with the same prefetch and acks.

Compare the read rates with the classic drain of step 4 (and with the ``manual-ack`` flood's
out rate): the target is reads at least as fast as a classic queue's consume.
"""

from __future__ import annotations

import dataclasses
import time

from bench.amqp import AMQPError, AMQPUrl, Connection
from bench.backlog import dir_mb
from bench.brokerproc import BrokerError
from bench.common import (
    Log,
    Metric,
    Options,
    QueueScenario,
    TargetResult,
    fmt_rate,
    on_broker,
    run_workers,
)

P = "stream"
READERS = 3

STREAM_METRICS = (
    Metric(f"{P}.publish", "stream publish, 1 publisher (confirmed)", "msg/s"),
    Metric(f"{P}.read_slowest", "stream read from first, slowest of 3 consumers", "msg/s"),
    *(Metric(f"{P}.read_{i}", f"stream read from first, consumer {i}", "msg/s")
      for i in range(1, READERS + 1)),
    Metric(f"{P}.read_alone", "stream read from first, 1 consumer alone", "msg/s"),
    Metric(f"{P}.classic_publish", "classic queue publish of the same N, 1 publisher "
           "(confirmed)", "msg/s"),
    Metric(f"{P}.classic_drain", "classic queue drain of the same N, 1 consumer", "msg/s"),
    Metric(f"{P}.rss_before", "stream RSS before publish", "MB", False),
    Metric(f"{P}.rss_after_publish", "stream RSS with N messages in the stream", "MB", False),
    Metric(f"{P}.rss_growth", "stream RSS growth for N messages (target <= 64)", "MB", False),
    Metric(f"{P}.rss_peak_read", "stream RSS peak while 3 consumers read", "MB", False),
    Metric(f"{P}.disk", "stream data dir after publish", "MB", False),
    Metric(f"{P}.lost", "stream messages a consumer missed", "count", False),
)


def run_stream(url: AMQPUrl | None, opts: Options, log: Log) -> TargetResult:
    """Run the scenario against a fresh spawned broker (``url`` None) or the broker at
    ``url``."""
    n = opts.backlog_messages
    log(f"  running {P} ({n} x {opts.size} B, 1 publisher with confirms, {READERS} readers)...")
    return on_broker(url, opts, P, log,
                     lambda url, pid, broker: _Stream(url, pid, broker, opts, log).run())


class _Stream(QueueScenario):
    prefix = P

    @property
    def classic(self) -> str:
        return self.queue + ".classic"

    def _control(self, declare: bool, classic: bool = False) -> None:
        with Connection(self.url, product="bench-control") as conn:
            conn.channel_open(1)
            name = self.classic if classic else self.queue
            if declare:
                conn.queue_declare(1, name, durable=True,
                                   arguments=None if classic else {"x-queue-type": "stream"})
            else:
                conn.queue_delete(1, name)

    def run(self) -> TargetResult:
        try:
            self._control(declare=True)
            if self._publish():
                self._read()
                self._read_alone()
            self._control(declare=False)
            self._control(declare=True, classic=True)
            self._classic()
        except (OSError, AMQPError, BrokerError) as exc:
            self.note(f"failed: {type(exc).__name__}: {exc}")
        finally:
            for classic in (False, True):
                try:
                    self._control(declare=False, classic=classic)
                except (OSError, AMQPError):
                    pass
        if self.pid is None:
            self.res.notes.append(f"{P}: RSS not measured (no visible local broker process)")
        return self.res

    def _publish(self) -> bool:
        time.sleep(1.0)
        rss0 = self.rss()
        job = self.job(self.n, confirm_window=self.opts.confirm_window)
        pub = run_workers(self.pid, self.phase_timeout, {"publisher": job})[0]["publisher"]
        rss1 = self.rss()
        v = self.res.values
        self.details["publisher"] = pub
        v[f"{P}.rss_before"], v[f"{P}.rss_after_publish"] = rss0, rss1
        if rss0 is not None and rss1 is not None:
            v[f"{P}.rss_growth"] = rss1 - rss0
        if self.broker is not None:
            v[f"{P}.disk"] = dir_mb(self.broker.data_dir)
        if "error" in pub:
            self.note(f"publisher error: {pub['error']}")
            return False
        v[f"{P}.publish"] = pub["rate"]
        self.log(f"  {P}: publish {fmt_rate(pub['rate'])} msg/s (confirm p50 "
                 f"{pub['latency_p50_ms']:.1f} ms), RSS {rss0} -> {rss1} MB")
        return True

    def _read(self) -> None:
        job = self.job(self.n, prefetch=self.opts.backlog_prefetch,
                       consume_arguments={"x-stream-offset": "first"})
        roles = [f"consumer-{i}" for i in range(1, READERS + 1)]
        got, peak = run_workers(self.pid, self.phase_timeout, dict.fromkeys(roles, job))
        results = [got[role] for role in roles]
        v = self.res.values
        v[f"{P}.rss_peak_read"] = peak
        rates = []
        lost = 0
        for i, (role, con) in enumerate(zip(roles, results, strict=True), start=1):
            self.details[role] = con
            if "error" in con:
                self.note(f"{role} error: {con['error']}")
                lost = max(lost, self.n - int(con.get("messages", 0)))
                continue
            v[f"{P}.read_{i}"] = con["rate"]
            rates.append(con["rate"])
            lost = max(lost, self.n - con["messages"])
        v[f"{P}.lost"] = float(lost)
        if len(rates) == READERS:
            v[f"{P}.read_slowest"] = min(rates)
        self.log(f"  {P}: read {', '.join(fmt_rate(r) for r in rates)} msg/s, RSS peak "
                 f"{peak} MB")

    def _read_alone(self) -> None:
        job = self.job(self.n, prefetch=self.opts.backlog_prefetch,
                       consume_arguments={"x-stream-offset": "first"})
        con = run_workers(self.pid, self.phase_timeout, {"consumer-alone": job})[0][
            "consumer-alone"]
        self.details["consumer-alone"] = con
        if "error" in con:
            self.note(f"consumer-alone error: {con['error']}")
            return
        self.res.values[f"{P}.read_alone"] = con["rate"]
        self.log(f"  {P}: read by 1 consumer alone {fmt_rate(con['rate'])} msg/s")

    def _classic(self) -> None:
        """The same N through a classic queue: one confirming publisher, then one consumer
        (the comparison the stream's read rates are meant to match)."""
        pub_job = dataclasses.replace(self.job(self.n, confirm_window=self.opts.confirm_window),
                                      queue=self.classic)
        pub = run_workers(self.pid, self.phase_timeout, {"classic-publisher": pub_job})[0][
            "classic-publisher"]
        self.details["classic-publisher"] = pub
        if "error" in pub:
            self.note(f"classic publisher error: {pub['error']}")
            return
        v = self.res.values
        v[f"{P}.classic_publish"] = pub["rate"]
        con_job = dataclasses.replace(self.job(self.n, prefetch=self.opts.backlog_prefetch),
                                      queue=self.classic)
        con = run_workers(self.pid, self.phase_timeout, {"classic-consumer": con_job})[0][
            "classic-consumer"]
        self.details["classic-consumer"] = con
        if "error" in con:
            self.note(f"classic consumer error: {con['error']}")
            return
        v[f"{P}.classic_drain"] = con["rate"]
        self.log(f"  {P}: classic queue: publish {fmt_rate(pub['rate'])} msg/s, drain by 1 "
                 f"consumer {fmt_rate(con['rate'])} msg/s")
