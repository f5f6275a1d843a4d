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
from array import array
from collections import Counter
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

from pamqp import commands, frame

from bench.amqp import (
    ACK_FRAME,
    BASIC_ACK,
    BASIC_DELIVER,
    BASIC_NACK,
    FATAL_METHODS,
    FRAME_HEADER,
    METHOD_ID,
    RECV_SIZE,
    U32,
    U64,
    AMQPError,
    AMQPUrl,
    Connection,
    describe_close,
    encode_message,
)

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


def _fatal(data: bytes, off: int, size: int) -> AMQPError:
    _, _, value = frame.unmarshal(data[off : off + size + 8])
    return AMQPError(describe_close(value))


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
    send_ts = array("d", bytes(8 * (n + 1)))  # send time per sequence number (1-based)
    latencies: list[float] = []
    singles: set[int] = set()  # individually confirmed tags above the watermark
    watermark = resolved = nacked = sent = 0
    unpack_hdr, unpack_mid, unpack_tag = (
        FRAME_HEADER.unpack_from,
        METHOD_ID.unpack_from,
        U64.unpack_from,
    )
    data = conn.buf[conn.pos :]
    t0 = t_last = perf()
    while resolved < n:
        inflight = sent - resolved
        if sent < n and inflight < window:
            k = min(step, n - sent, window - inflight)
            ts = perf()
            sock.sendall(full if k == step else msg * k)
            send_ts[sent + 1 : sent + 1 + k] = array("d", [ts]) * k
            sent += k
            continue
        chunk = sock.recv(RECV_SIZE)
        if not chunk:
            raise AMQPError("connection closed by server")
        now = perf()
        data = data + chunk if data else chunk
        off, end = 0, len(data)
        while end - off >= 8:
            ftype, _ch, size = unpack_hdr(data, off)
            nxt = off + size + 8
            if nxt > end:
                break
            if ftype == 1:
                mid = unpack_mid(data, off + 7)[0]
                if mid == BASIC_ACK or mid == BASIC_NACK:
                    tag = unpack_tag(data, off + 11)[0]
                    multiple = data[off + 19] & 1
                    before = resolved
                    if multiple:
                        for t in range(watermark + 1, tag + 1):
                            if t in singles:
                                singles.discard(t)
                            else:
                                latencies.append(now - send_ts[t])
                                resolved += 1
                        watermark = max(watermark, tag)
                    elif tag > watermark and tag not in singles:
                        latencies.append(now - send_ts[tag])
                        resolved += 1
                        if tag == watermark + 1:
                            watermark = tag
                            while watermark + 1 in singles:
                                watermark += 1
                                singles.discard(watermark)
                        else:
                            singles.add(tag)
                    if mid == BASIC_NACK:
                        nacked += resolved - before
                    t_last = now
                elif mid in FATAL_METHODS:
                    raise _fatal(data, off, size)
            off = nxt
        data = data[off:]
    conn.buf, conn.pos = data, 0
    latencies.sort()
    return {
        "messages": n,
        "t_start": t0,
        "t_done": t_last,
        "rate": n / (t_last - t0),
        "nacked": nacked,
        "latency_p50_ms": percentile(latencies, 0.50) * 1000.0,
        "latency_p99_ms": percentile(latencies, 0.99) * 1000.0,
        "latency_max_ms": (latencies[-1] if latencies else 0.0) * 1000.0,
    }


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[idx]


# -- consumer --------------------------------------------------------------------------


def _priority_of(data: bytes, p: int) -> int:
    """Priority property of a content header whose payload starts at ``p`` (0 if absent)."""
    flags = (data[p + 12] << 8) | data[p + 13]
    p += 14
    if flags & 0x8000:  # content-type
        p += 1 + data[p]
    if flags & 0x4000:  # content-encoding
        p += 1 + data[p]
    if flags & 0x2000:  # headers table
        p += 4 + U32.unpack_from(data, p)[0]
    if flags & 0x1000:  # delivery-mode
        p += 1
    return data[p] if flags & 0x0800 else 0


def consume(conn: Connection, job: Job, ready: Event) -> dict[str, Any]:
    """Consume ``job.messages`` deliveries; ack each one individually unless no_ack."""
    if not job.no_ack:
        conn.basic_qos(CHANNEL, job.prefetch)
    conn.basic_consume(CHANNEL, job.queue, CONSUMER_TAG, job.no_ack, job.consume_arguments)
    ready.set()
    sock, n, ack, want_prio = conn.sock, job.messages, not job.no_ack, job.priorities
    unpack_hdr, unpack_mid, unpack_tag = (
        FRAME_HEADER.unpack_from,
        METHOD_ID.unpack_from,
        U64.unpack_from,
    )
    pack_ack = ACK_FRAME.pack
    prios = bytearray()
    count = count_first = 0
    t_first = t_last = 0.0
    acks_sent = body_bytes = expected_bytes = 0
    data = conn.buf[conn.pos :]
    now = perf()
    try:
        while True:
            off, end = 0, len(data)
            tags: list[int] = []
            while end - off >= 8:
                ftype, _ch, size = unpack_hdr(data, off)
                nxt = off + size + 8
                if nxt > end:
                    break
                if ftype == 1:
                    mid = unpack_mid(data, off + 7)[0]
                    if mid == BASIC_DELIVER:
                        count += 1
                        if ack:
                            p = off + 11
                            tags.append(unpack_tag(data, p + 1 + data[p])[0])
                    elif mid in FATAL_METHODS:
                        raise _fatal(data, off, size)
                elif ftype == 3:
                    body_bytes += size
                elif ftype == 2:
                    expected_bytes += unpack_tag(data, off + 11)[0]  # content body size
                    if want_prio:
                        prios.append(_priority_of(data, off + 7))
                off = nxt
            if tags:
                sock.sendall(b"".join([pack_ack(1, CHANNEL, 13, 60, 80, t, 0, 0xCE) for t in tags]))
                acks_sent += len(tags)
            if count and not t_first:
                t_first, count_first = now, count
            if count >= n and body_bytes >= expected_bytes:  # last body complete too
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
        return {"error": f"timeout after receiving {count}/{n} messages", "messages": count}
    span = t_last - t_first
    result: dict[str, Any] = {
        "messages": count,
        "acks_sent": acks_sent,
        "body_bytes": body_bytes,
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
