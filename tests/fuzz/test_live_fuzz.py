"""Malformed input against a live broker while a well-behaved client keeps working.

A pika publisher (publisher confirms) and a pika consumer (manual acks) move numbered messages
through one queue for the whole test. Meanwhile N bad connections (LIVE_FUZZ_CONNECTIONS,
default 50; seeded, so CI always tries the same inputs) each send one malformed input: a bad
protocol header, junk during or after the handshake, truncated, oversize or badly ended frames,
mutated valid frames, methods on unopened channels or in the wrong state, huge and deeply nested
field tables, arguments of every type. Each must get RabbitMQ's answer (a connection.close with
a 5xx code, a silent TCP close, or a normal reply / a channel error for input that is merely
odd) and never hang. Afterwards: the broker is still serving, logged no internal error, every
confirmed message was consumed exactly once and in order, its sessions are gone and its RSS
grew by less than 30 MB.

A bad connection that gets no answer within QUIET seconds is waiting for the rest of a frame:
it then sends FILLER (frame_max + 9 bytes of 0x01), which completes any pending frame and is
itself an oversize frame, so the broker must answer with 501 (live_client.py).

The ``_soak`` twin (marked slow, run by ``make soak``) tries LIVE_FUZZ_SOAK_CONNECTIONS
(default 1000) connections with a random seed.

The inputs: live_scenarios.py; the fuzzers' findings as fixed live cases:
test_live_regressions.py.
"""

from __future__ import annotations

import concurrent.futures
import gc
import logging
import os
import threading
import time
from collections import Counter

import pika
import pytest
from fuzz_wire import env_int
from live_client import CLOSE_DEADLINE, Outcome, rss_bytes, run_bad_connection
from live_scenarios import make_plans

RSS_GROWTH_LIMIT = 30 * 1024 * 1024


# ---- the well-behaved client -------------------------------------------------------------

class GoodTraffic:
    """Publisher with confirms and consumer with manual acks on queue ``fuzz-good``."""

    def __init__(self, url: str) -> None:
        self.params = pika.URLParameters(url)
        self.confirmed: list[int] = []
        self.consumed: list[int] = []
        self.redelivered = 0
        self.errors: list[str] = []
        self.stop_publishing = threading.Event()
        self.stop_consuming = threading.Event()
        self.ready = threading.Event()
        self.threads = [threading.Thread(target=self._consume, name="good-consumer"),
                        threading.Thread(target=self._publish, name="good-publisher")]

    def start(self) -> None:
        self.threads[0].start()
        assert self.ready.wait(10), "consumer did not start"
        self.threads[1].start()

    def _publish(self) -> None:
        try:
            conn = pika.BlockingConnection(self.params)
            ch = conn.channel()
            ch.confirm_delivery()
            seq = 0
            while not self.stop_publishing.is_set():
                ch.basic_publish("", "fuzz-good", str(seq).encode(), mandatory=True)
                self.confirmed.append(seq)  # basic_publish returned: the broker acked it
                seq += 1
                if seq % 50 == 0:
                    time.sleep(0.005)
            conn.close()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(f"publisher: {exc!r}")

    def _consume(self) -> None:
        try:
            conn = pika.BlockingConnection(self.params)
            ch = conn.channel()
            ch.queue_declare("fuzz-good")
            ch.basic_qos(prefetch_count=100)

            def on_message(channel, method, _props, body):  # type: ignore[no-untyped-def]
                if method.redelivered:
                    self.redelivered += 1
                self.consumed.append(int(body))
                channel.basic_ack(method.delivery_tag)

            ch.basic_consume("fuzz-good", on_message)
            self.ready.set()
            while not self.stop_consuming.is_set():
                conn.process_data_events(time_limit=0.05)
            conn.close()
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"consumer: {exc!r}")
            self.ready.set()

    def finish(self, timeout: float = 30.0) -> None:
        self.stop_publishing.set()
        self.threads[1].join(timeout)
        deadline = time.monotonic() + timeout
        while len(self.consumed) < len(self.confirmed) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # anything beyond the confirmed ones would show up as a duplicate
        self.stop_consuming.set()
        self.threads[0].join(timeout)


# ---- the test ----------------------------------------------------------------------------

def live_fuzz(broker, caplog, n: int, seed: int, workers: int = 12) -> dict:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING)
    plans = make_plans(seed, n)
    good = GoodTraffic(broker.url)
    good.start()
    outcomes: list[Outcome] = []
    failures: list[str] = []
    try:
        time.sleep(0.5)
        gc.collect()
        rss_before = rss_bytes()
        sessions_before = broker.call(lambda: len(broker.server.sessions))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = {pool.submit(run_bad_connection, broker.port, p): p for p in plans}
            for fut in concurrent.futures.as_completed(futures):
                plan = futures[fut]
                try:
                    out = fut.result()
                except Exception as exc:  # noqa: BLE001 - collected, reported below
                    failures.append(f"{plan.scenario}: {type(exc).__name__}: {exc}")
                    continue
                outcomes.append(out)
                if not out.ok(plan.allowed):
                    failures.append(
                        f"{plan.scenario}: got {out.kind} {out.detail!r} (replies "
                        f"{out.replies}), expected one of {sorted(plan.allowed)}")
    finally:
        good.finish()
    # the bad sessions go away (some wait out a close timer)
    deadline = time.monotonic() + CLOSE_DEADLINE
    while time.monotonic() < deadline:
        if broker.call(lambda: len(broker.server.sessions)) <= sessions_before - 2:
            break
        time.sleep(0.2)
    sessions_after = broker.call(lambda: len(broker.server.sessions))
    gc.collect()
    rss_after = rss_bytes()

    # the broker still serves
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    ch = conn.channel()
    ch.queue_declare("after-fuzz")
    ch.basic_publish("", "after-fuzz", b"still here")
    method, _props, body = ch.basic_get("after-fuzz", auto_ack=True)
    assert body == b"still here"
    conn.close()
    assert broker.thread.is_alive()

    # no session object outlives its connection
    from broker.amqp.session import Session
    deadline = time.monotonic() + CLOSE_DEADLINE
    while True:
        gc.collect()
        alive = sum(1 for o in gc.get_objects() if type(o) is Session)
        if alive == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    internal = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    kinds = Counter(o.kind for o in outcomes)
    report = {
        "inputs_tried": len(plans),
        "seed": seed,
        "outcomes": dict(sorted(kinds.items())),
        "channel_closes": dict(Counter(c for o in outcomes for c in o.channel_codes)),
        "slowest_s": round(max((o.elapsed for o in outcomes), default=0.0), 2),
        "confirmed": len(good.confirmed),
        "consumed": len(good.consumed),
        "redelivered": good.redelivered,
        "rss_before_mb": round(rss_before / 2**20, 1),
        "rss_after_mb": round(rss_after / 2**20, 1),
        "sessions_before": sessions_before,
        "sessions_after": sessions_after,
        "session_objects_alive": alive,
    }
    print("live fuzz:", report)

    assert not failures, "\n".join(sorted(failures)[:40])
    assert not internal, f"{len(internal)} errors logged by the broker, first: {internal[:5]}"
    assert not good.errors, good.errors
    assert good.confirmed, "the good publisher got no confirm at all"
    assert good.consumed[:len(good.confirmed)] == good.confirmed, (
        "confirmed messages lost, duplicated or out of order: "
        f"{len(good.confirmed)} confirmed, {len(good.consumed)} consumed")
    assert len(good.consumed) == len(set(good.consumed)), "duplicates consumed"
    assert sessions_after <= sessions_before - 2, (sessions_before, sessions_after)
    assert alive == 0, f"{alive} Session objects still alive after every connection closed"
    assert rss_after - rss_before < RSS_GROWTH_LIMIT, report
    return report


def test_live_fuzz(broker, caplog, record_property) -> None:  # type: ignore[no-untyped-def]
    report = live_fuzz(broker, caplog, env_int("LIVE_FUZZ_CONNECTIONS", 50),
                       env_int("LIVE_FUZZ_SEED", 9091))
    for key, value in report.items():
        record_property(key, value)


@pytest.mark.slow
def test_live_fuzz_soak(broker, caplog, record_property) -> None:  # type: ignore[no-untyped-def]
    seed = env_int("LIVE_FUZZ_SEED", int.from_bytes(os.urandom(4), "big"))
    report = live_fuzz(broker, caplog, env_int("LIVE_FUZZ_SOAK_CONNECTIONS", 1000), seed)
    for key, value in report.items():
        record_property(key, value)
