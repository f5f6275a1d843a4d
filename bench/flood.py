"""Time-bounded PerfTest-style worker processes: unthrottled publishers, self-acking consumers.

Every worker connects, sets itself up (qos + consume, or confirm.select), reports ready and
waits for the orchestrator's go; the orchestrator then publishes one schedule for all of them
(``t_go`` in a shared double; the measuring window is ``[t_go + warmup, t_go + duration]``).
``time.monotonic`` is CLOCK_MONOTONIC, one clock for all processes on the machine, so every
worker measures the same window. Each worker counts at the first moment it sees the window
open and the first moment it sees it closed; the rate is the count difference over the time
difference it actually observed.

- ``publisher``: pre-encoded basic.publish frames, written with non-blocking ``send`` as fast as
  the socket takes them (no rate limit, no reads: what PerfTest does without ``--rate``); "in"
  counts whole messages handed to the kernel.
- ``confirms``: the same with confirm.select, at most ``confirm_window`` unconfirmed; "in"
  counts confirmed messages; confirm latency = hand-over of the batch -> its ack arrives.
- ``consumer``: reads whatever arrives, answers every delivery with its own basic.ack (one
  write per read), or counts only (no-ack).

Workers close their sockets abruptly at the end (the publisher's may be full): unacked
deliveries go back to the queue, which the orchestrator counts as backlog.
"""

from __future__ import annotations

import random
import select
import socket
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any

from pamqp import commands

from bench.amqp import (
    FATAL_METHODS,
    FRAME_HEADER,
    METHOD_ID,
    RECV_SIZE,
    AMQPError,
    AMQPUrl,
    Connection,
    encode_message,
)
from bench.counting import Confirms, Deliveries, ack_frames, fatal, percentile
from bench.workers import CHANNEL, make_payload

TICK = 0.05  # longest a worker goes without looking at the clock
# A no-ack consumer that got a small read waits this long before the next one, so a broker
# that writes each delivery on its own (RabbitMQ) is read in bigger chunks: without it the
# ten fanout consumers burn ~0.9 of the machine's 2 cores on wakeups and recv calls and
# starve the broker they measure. Manual-ack consumers never wait (their acks would lag).
COALESCE_BELOW = 32 * 1024
COALESCE_SLEEP = 0.0005
now = time.monotonic


@dataclass(frozen=True)
class FloodJob:
    """What one flood worker does; ``queue`` is the routing key (publisher) or source queue."""

    url: AMQPUrl | str
    role: str  # "publisher", "confirms" or "consumer"
    queue: str
    exchange: str = ""
    size: int = 1024
    batch: int = 500
    prefetch: int = 100
    no_ack: bool = False
    persistent: bool = False
    priorities: bool = False
    confirm_window: int = 500
    warmup: float = 2.0
    duration: float = 8.0
    timeout: float = 60.0
    seed: int = 42


class Window:
    """The measuring window and the (time, count) seen when it opened and closed."""

    def __init__(self, t_go: float, job: FloodJob) -> None:
        self.t_open = t_go + job.warmup
        self.t_end = t_go + job.duration
        self.t0: float | None = None
        self.c0 = 0
        self.t1 = 0.0
        self.c1 = 0

    def tick(self, t: float, count: int) -> bool:
        """Record edges; True once the window is over (``t``/``count``: now, total so far)."""
        if self.t0 is None and t >= self.t_open:
            self.t0, self.c0 = t, count
        if t >= self.t_end:
            if self.t0 is None:
                self.t0, self.c0 = t, count
            self.t1, self.c1 = t, count
            return True
        return False

    def result(self) -> dict[str, Any]:
        span = self.t1 - (self.t0 or self.t1)
        return {"window_s": span, "in_window": self.c1 - self.c0,
                "rate": (self.c1 - self.c0) / span if span > 0 else 0.0}


def _message(conn: Connection, job: FloodJob, priority: int | None = None) -> bytes:
    props = commands.Basic.Properties(delivery_mode=2 if job.persistent else None,
                                      priority=priority)
    return encode_message(CHANNEL, job.exchange, job.queue, make_payload(job.size),
                          conn.frame_max, props)


def _batches(conn: Connection, job: FloodJob) -> tuple[list[bytes], int]:
    """Pre-encoded batches to cycle through, and the length of one message."""
    if not job.priorities:
        msg = _message(conn, job)
        return [msg * job.batch], len(msg)
    variants = [_message(conn, job, p) for p in range(10)]
    assert len({len(v) for v in variants}) == 1  # equal sizes: bytes sent // size = messages
    rng = random.Random(job.seed)
    batches = [b"".join(variants[rng.randrange(10)] for _ in range(job.batch)) for _ in range(8)]
    return batches, len(variants[0])


def _check_closed(conn: Connection) -> None:
    """Raise if the server sent channel/connection.close (read without blocking)."""
    try:
        data = conn.sock.recv(RECV_SIZE, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        return
    off = 0
    while len(data) - off >= 8:
        ftype, _ch, size = FRAME_HEADER.unpack_from(data, off)
        if off + size + 8 > len(data):
            return
        if ftype == 1 and METHOD_ID.unpack_from(data, off + 7)[0] in FATAL_METHODS:
            raise fatal(data, off, size)
        off += size + 8


def flood_publish(conn: Connection, job: FloodJob, t_go: float) -> dict[str, Any]:
    """Write pre-encoded publishes as fast as the socket takes them until the window ends."""
    batches, msg_len = _batches(conn, job)
    sock = conn.sock
    sock.settimeout(TICK)
    win = Window(t_go, job)
    sent = which = off = 0
    view = memoryview(batches[0])
    while not win.tick(now(), sent // msg_len):
        try:
            k = sock.send(view[off:])
        except TimeoutError:  # broker not reading (flow control or busy): look at the clock
            continue
        sent += k
        off += k
        if off == len(view):
            which = (which + 1) % len(batches)
            view, off = memoryview(batches[which]), 0
    _check_closed(conn)
    out = win.result()
    out["messages"] = sent // msg_len
    return out


def flood_confirms(conn: Connection, job: FloodJob, t_go: float) -> dict[str, Any]:
    """Publish with confirms (at most ``confirm_window`` unconfirmed) until the window ends."""
    sock = conn.sock
    sock.setblocking(False)
    msg = _message(conn, job)
    window = max(1, job.confirm_window)
    step = max(1, min(job.batch, window // 5))
    full = msg * step
    win = Window(t_go, job)
    conf = Confirms()
    data = conn.buf[conn.pos :]
    next_tag = 1
    pending = memoryview(b"")
    while True:
        t = now()
        if win.tick(t, conf.resolved):
            break
        inflight = next_tag - 1 - conf.resolved
        if not pending and inflight < window:
            k = min(step, window - inflight)
            pending = memoryview(full if k == step else msg * k)
            conf.sent(next_tag, k, t)
            next_tag += k
        wlist = [sock] if pending else []
        readable, writable, _ = select.select([sock], wlist, [], TICK)
        if writable:
            try:
                pending = pending[sock.send(pending):]
            except BlockingIOError:
                pass
        if not readable:
            continue
        try:
            chunk = sock.recv(RECV_SIZE)
        except BlockingIOError:
            continue
        if not chunk:
            raise AMQPError("connection closed by server")
        t = now()
        record = win.t0 is not None  # latencies of confirms that arrive inside the window
        data = data + chunk if data else chunk
        data = data[conf.feed(data, t, record) :]
    lat = sorted(conf.latencies)
    out = win.result()
    out.update(
        messages=conf.resolved,
        published=next_tag - 1,
        nacked=conf.nacked,
        latency_p50_ms=percentile(lat, 0.50) * 1000.0,
        latency_p99_ms=percentile(lat, 0.99) * 1000.0,
        latency_max_ms=(lat[-1] if lat else 0.0) * 1000.0,
    )
    return out


def _send_all(sock: socket.socket, data: bytes) -> None:
    """sendall for a socket with a timeout: never gives up half-way through a frame."""
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view):]
        except TimeoutError:
            continue


def flood_consume(conn: Connection, job: FloodJob, t_go: float) -> dict[str, Any]:
    """Count deliveries (and ack each one on its own unless no-ack) until the window ends."""
    sock, ack = conn.sock, not job.no_ack
    coalesce = job.no_ack and COALESCE_SLEEP > 0
    sock.settimeout(TICK)
    got = Deliveries(ack)
    win = Window(t_go, job)
    acks = 0
    data = conn.buf[conn.pos :]
    while True:
        off, tags = got.feed(data)
        if tags:
            _send_all(sock, ack_frames(CHANNEL, tags))
            acks += len(tags)
        data = data[off:]
        if win.tick(now(), got.count):
            break
        try:
            chunk = sock.recv(RECV_SIZE)
        except TimeoutError:
            continue
        if not chunk:
            raise AMQPError("connection closed by server")
        data = data + chunk if data else chunk
        if coalesce and len(chunk) < COALESCE_BELOW:
            time.sleep(COALESCE_SLEEP)
    out = win.result()
    out.update(messages=got.count, acks_sent=acks, body_bytes=got.body_bytes)
    return out


def _setup(conn: Connection, job: FloodJob) -> None:
    conn.channel_open(CHANNEL)
    if job.role == "consumer":
        if not job.no_ack:
            conn.basic_qos(CHANNEL, job.prefetch)
        conn.basic_consume(CHANNEL, job.queue, "bench", job.no_ack)
    elif job.role == "confirms":
        conn.confirm_select(CHANNEL)


RUN = {"publisher": flood_publish, "confirms": flood_confirms, "consumer": flood_consume}


def run_flood_worker(
    name: str, job: FloodJob, results: Queue[Any], ready: Event, go: Event,
    t_go: Synchronized[float],
) -> None:
    """Process target: connect, set up, wait for go, run ``job.role``, report via ``results``."""
    conn: Connection | None = None
    try:
        conn = Connection(job.url, timeout=job.timeout, product=f"bench-{name}")
        _setup(conn, job)
        ready.set()
        if not go.wait(job.timeout):
            raise TimeoutError("no go from the orchestrator")
        cpu0 = time.process_time()
        result = RUN[job.role](conn, job, float(t_go.value))
        result["cpu_s"] = time.process_time() - cpu0  # is the client the bottleneck?
    except BaseException as exc:  # report every failure to the parent
        result = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        ready.set()
        if conn is not None:
            conn.sock.close()
    results.put((name, result))
