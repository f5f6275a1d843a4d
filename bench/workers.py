"""Publisher and consumer worker processes (one blocking socket each).

Publishers send pre-encoded publish/header/body frames in large ``sendall``
batches; the plain publisher ends with a synchronous queue.declare(passive) so
the measured time covers the broker having processed every publish, the
confirming publisher keeps a bounded window of outstanding confirms and records
per-message confirm latency. Consumers read 1 MiB chunks and walk the frames
with ``struct.unpack_from``, counting Basic.Deliver and (for manual ack)
answering each delivery with its own Basic.Ack, joined into one ``sendall`` per
received chunk. Each worker reports a result dict through a multiprocessing queue.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

from pamqp import commands

from bench.amqp import RECV_SIZE, AMQPError, AMQPUrl, Connection, encode_message
from bench.counting import Confirms, Deliveries, ack_frames, percentile

CHANNEL = 1
MAX_BATCH_BYTES = 4 << 20
CONSUMER_TAG = "bench"
perf = time.perf_counter


@dataclass(frozen=True)
class Job:
    """Picklable description of what one worker process must do."""

    url: AMQPUrl | str
    queue: str
    messages: int
    size: int = 1024
    batch: int = 500
    prefetch: int = 100
    no_ack: bool = False
    persistent: bool = False
    confirm_window: int = 0
    priorities: bool = False
    seed: int = 42
    timeout: float = 300.0
    consume_arguments: dict[str, Any] | None = None  # basic.consume arguments (streams)
    exchange: str = ""  # publish here (``queue`` is then the routing key)
    headers: dict[str, Any] | None = None  # message headers (x-delay)


def make_payload(size: int) -> bytes:
    """Deterministic, not trivially compressible body of ``size`` bytes."""
    rng = random.Random(size)
    return rng.randbytes(size)


def _properties(job: Job, priority: int | None = None) -> commands.Basic.Properties:
    return commands.Basic.Properties(
        delivery_mode=2 if job.persistent else None,
        priority=priority,
        headers=job.headers,
    )


# -- publishers ------------------------------------------------------------------------


def publish_plain(conn: Connection, job: Job) -> dict[str, Any]:
    """Publish ``job.messages`` messages in batches, then one synchronous round trip."""
    sock, n = conn.sock, job.messages
    payload = make_payload(job.size)
    batch = max(1, min(job.batch, MAX_BATCH_BYTES // max(1, job.size)))
    result: dict[str, Any] = {"messages": n}
    if job.priorities:
        rng = random.Random(job.seed)
        prios = [rng.randrange(10) for _ in range(n)]
        variants = [
            encode_message(CHANNEL, "", job.queue, payload, conn.frame_max, _properties(job, p))
            for p in range(10)
        ]
        result["histogram"] = dict(sorted(Counter(prios).items()))
        pick = variants.__getitem__
        t0 = perf()
        for start in range(0, n, batch):
            sock.sendall(b"".join(map(pick, prios[start : start + batch])))
    else:
        msg = encode_message(CHANNEL, "", job.queue, payload, conn.frame_max, _properties(job))
        full = msg * batch
        rounds, rest = divmod(n, batch)
        t0 = perf()
        for _ in range(rounds):
            sock.sendall(full)
        if rest:
            sock.sendall(msg * rest)
    t_sent = perf()
    ok = conn.queue_declare(CHANNEL, job.queue, passive=True)
    t_done = perf()
    result.update(
        t_start=t0,
        t_sent=t_sent,
        t_done=t_done,
        rate=n / (t_done - t0),
        queue_depth_at_end=ok.message_count,
    )
    return result


def publish_confirms(conn: Connection, job: Job) -> dict[str, Any]:
    """Publish with publisher confirms, at most ``confirm_window`` unconfirmed at a time."""
    conn.confirm_select(CHANNEL)
    sock, n = conn.sock, job.messages
    window = max(1, job.confirm_window)
    step = max(1, min(job.batch, window // 5, MAX_BATCH_BYTES // max(1, job.size)))
    payload = make_payload(job.size)
    msg = encode_message(CHANNEL, job.exchange, job.queue, payload, conn.frame_max,
                         _properties(job))
    full = msg * step
    conf = Confirms()
    sent = 0
    data = conn.buf[conn.pos :]
    t0 = t_last = perf()
    while conf.resolved < n:
        inflight = sent - conf.resolved
        if sent < n and inflight < window:
            k = min(step, n - sent, window - inflight)
            conf.sent(sent + 1, k, perf())
            sock.sendall(full if k == step else msg * k)
            sent += k
            continue
        chunk = sock.recv(RECV_SIZE)
        if not chunk:
            raise AMQPError("connection closed by server")
        now = perf()
        data = data + chunk if data else chunk
        before = conf.resolved
        data = data[conf.feed(data, now, True) :]
        if conf.resolved != before:
            t_last = now
    conn.buf, conn.pos = data, 0
    latencies = sorted(conf.latencies)
    return {
        "messages": n,
        "t_start": t0,
        "t_done": t_last,
        "rate": n / (t_last - t0),
        "nacked": conf.nacked,
        "latency_p50_ms": percentile(latencies, 0.50) * 1000.0,
        "latency_p99_ms": percentile(latencies, 0.99) * 1000.0,
        "latency_max_ms": (latencies[-1] if latencies else 0.0) * 1000.0,
    }


# -- consumer --------------------------------------------------------------------------


def consume(conn: Connection, job: Job, ready: Event) -> dict[str, Any]:
    """Consume ``job.messages`` deliveries; ack each one individually unless no_ack."""
    if not job.no_ack:
        conn.basic_qos(CHANNEL, job.prefetch)
    conn.basic_consume(CHANNEL, job.queue, CONSUMER_TAG, job.no_ack, job.consume_arguments)
    ready.set()
    sock, n, want_prio = conn.sock, job.messages, job.priorities
    got = Deliveries(not job.no_ack, headers=True, priorities=want_prio)
    count_first = 0
    t_first = t_last = 0.0
    acks_sent = 0
    data = conn.buf[conn.pos :]
    now = perf()
    try:
        while True:
            off, tags = got.feed(data)
            if tags:
                sock.sendall(ack_frames(CHANNEL, tags))
                acks_sent += len(tags)
            if got.count and not t_first:
                t_first, count_first = now, got.count
            if got.count >= n and got.body_bytes >= got.expected_bytes:  # last body complete
                t_last = now
                conn.buf, conn.pos = data[off:], 0
                break
            data = data[off:]
            chunk = sock.recv(RECV_SIZE)
            if not chunk:
                raise AMQPError("connection closed by server")
            now = perf()
            data = data + chunk if data else chunk
    except TimeoutError:
        return {"error": f"timeout after receiving {got.count}/{n} messages",
                "messages": got.count}
    count, prios = got.count, got.prios
    span = t_last - t_first
    result: dict[str, Any] = {
        "messages": count,
        "acks_sent": acks_sent,
        "body_bytes": got.body_bytes,
        "t_first": t_first,
        "t_last": t_last,
        "rate": (count - count_first) / span if span > 0 else 0.0,
    }
    if want_prio:
        result["histogram"] = dict(sorted(Counter(prios).items()))
        result["inversions"] = sum(1 for a, b in zip(prios, prios[1:], strict=False) if b > a)
    return result


# -- process entry point ---------------------------------------------------------------


def run_worker(role: str, job: Job, results: Queue[Any], ready: Event) -> None:
    """Process target: run ``role`` ("publisher" or "consumer") and report via ``results``."""
    cpu0, wall0 = time.process_time(), perf()
    try:
        conn = Connection(job.url, timeout=job.timeout, product=f"bench-{role}")
        conn.channel_open(CHANNEL)
        if role.startswith("consumer"):  # "consumer", or "consumer-2" when there are more
            result = consume(conn, job, ready)
        elif job.confirm_window > 0:
            result = publish_confirms(conn, job)
        else:
            result = publish_plain(conn, job)
        conn.close()
        # Client-side cost, to check the bench client is not the bottleneck.
        result["cpu_s"] = time.process_time() - cpu0
        result["wall_s"] = perf() - wall0
    except BaseException as exc:  # report every failure to the parent
        result = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        ready.set()
    results.put((role, result))
