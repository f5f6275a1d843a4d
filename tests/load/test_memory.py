"""Flat memory under a backlog, for every queue kind (marked slow: ``make soak``, not CI).

For each kind (transient classic, durable classic with persistent messages, lazy, priority
transient and durable with x-max-priority 10 and priorities spread over 0-9), a broker
subprocess (its own data dir, ephemeral port) gets MEMORY_MESSAGES (default 1,000,000) x 1 KB
from a raw-socket publisher with confirms (window 5000), no consumer. Its VmRSS may grow by at
most 64 MB over the fill, at the end and at the peak (sampled every 0.2 s); then a manual-ack
consumer (prefetch 1000) drains the queue: every message arrives (in order for the classic
kinds) and the RSS bound still holds. RabbitMQ 3.12+ keeps ~2k messages of a classic queue in
RAM; ours keeps one window (2048 messages / 4 MiB) per queue, all levels of a priority queue
included, and per-message bookkeeping of paged-out messages is on disk.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pamqp import commands as C
from pamqp import frame as pframe
from pamqp import header as pheader

pytestmark = pytest.mark.slow

MB = 2**20
LIMIT = 64 * MB
REPO = Path(__file__).resolve().parents[2]
_head = struct.Struct(">BHI")
_method = struct.Struct(">HH")
_ack = struct.Struct(">QB")

KINDS: dict[str, dict[str, Any]] = {
    "transient": {"durable": False, "args": {}},
    "durable": {"durable": True, "args": {}},
    "lazy": {"durable": True, "args": {"x-queue-mode": "lazy"}},
    "priority": {"durable": False, "args": {"x-max-priority": 10}},
    "priority-durable": {"durable": True, "args": {"x-max-priority": 10}},
}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Raw:
    """A blocking AMQP client on channel 1: pamqp for the handshake, struct for the hot path."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.buf = b""
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect(C.Connection.Start)
        self.send(0, C.Connection.StartOk(client_properties={"product": "memory-test"},
                                          mechanism="PLAIN", response="\0guest\0guest",
                                          locale="en_US"))
        tune = self.expect(C.Connection.Tune)
        self.send(0, C.Connection.TuneOk(tune.channel_max, 131072, 0))
        self.send(0, C.Connection.Open("/"))
        self.expect(C.Connection.OpenOk)
        self.send(1, C.Channel.Open())
        self.expect(C.Channel.OpenOk)

    def send(self, channel: int, method: Any) -> None:
        self.sock.sendall(pframe.marshal(method, channel))

    def frame(self) -> tuple[int, bytes]:
        """The next frame: (type, payload)."""
        while True:
            if len(self.buf) >= 7:
                ftype, _, size = _head.unpack_from(self.buf)
                if len(self.buf) >= size + 8:
                    payload = self.buf[7:7 + size]
                    self.buf = self.buf[size + 8:]
                    return ftype, payload
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("broker closed the connection")
            self.buf += chunk

    def expect(self, kind: type) -> Any:
        while True:
            ftype, payload = self.frame()
            if ftype != 1:
                continue
            _, _, method = pframe.unmarshal(_head.pack(1, 0, len(payload)) + payload + b"\xce")
            if isinstance(method, C.Connection.Close | C.Channel.Close):
                raise AssertionError(f"broker closed: {method.reply_code} {method.reply_text}")
            if isinstance(method, kind):
                return method

    def message_count(self, queue: str) -> int:
        self.send(1, C.Queue.Declare(queue=queue, passive=True))
        return self.expect(C.Queue.DeclareOk).message_count

    def publish_all(self, queue: str, n: int, priorities: bool, persistent: bool) -> None:
        """n messages ``%08d`` + filler (1 KB) with confirms, at most 5000 unconfirmed."""
        self.send(1, C.Confirm.Select())
        self.expect(C.Confirm.SelectOk)
        method = pframe.marshal(C.Basic.Publish(exchange="", routing_key=queue), 1)
        headers = [pframe.marshal(pheader.ContentHeader(0, 1024, C.Basic.Properties(
            delivery_mode=2 if persistent else 1, priority=p if priorities else None)), 1)
            for p in range(10)]
        filler = os.urandom(1016)
        confirmed = sent = 0
        while sent < n:
            batch = []
            for i in range(sent, min(sent + 200, n)):
                body = b"%08d" % i + filler
                batch += (method, headers[i % 10], _head.pack(3, 1, 1024), body, b"\xce")
            self.sock.sendall(b"".join(batch))
            sent = min(sent + 200, n)
            while sent - confirmed > 5000 or (sent == n and confirmed < n):
                confirmed = max(confirmed, self._confirm())

    def _confirm(self) -> int:
        while True:
            ftype, payload = self.frame()
            if ftype != 1:
                continue
            ids = _method.unpack_from(payload)
            if ids == (60, 80):
                return _ack.unpack_from(payload, 4)[0]
            _, _, method = pframe.unmarshal(_head.pack(1, 0, len(payload)) + payload + b"\xce")
            raise AssertionError(f"unexpected while waiting for confirms: {method!r}")

    def drain(self, queue: str, n: int, ordered: bool) -> int:
        """Consume n messages with manual acks (prefetch 1000, acked every 500); check their
        order when ``ordered``; return how many arrived in order (all of them, or n)."""
        self.send(1, C.Basic.Qos(prefetch_count=1000))
        self.expect(C.Basic.QosOk)
        self.send(1, C.Basic.Consume(queue=queue, consumer_tag="drain"))
        self.expect(C.Basic.ConsumeOk)
        got = bodies = in_order = 0
        while bodies < n:  # one body frame per message (1 KB < frame_max)
            ftype, payload = self.frame()
            if ftype == 1 and _method.unpack_from(payload) == (60, 60):
                got += 1
                if got % 500 == 0 or got == n:
                    self.send(1, C.Basic.Ack(got, True))
            elif ftype == 3:
                bodies += 1
                if int(payload[:8]) == in_order:
                    in_order += 1
        return in_order if ordered else bodies

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("kind", list(KINDS))
def test_backlog_rss_stays_flat(kind: str, tmp_path: Path, record_property) -> None:  # type: ignore[no-untyped-def]
    n = env_int("MEMORY_MESSAGES", 1_000_000)
    spec = KINDS[kind]
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = open(tmp_path / "broker.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(tmp_path / "data"), "--management-port", "0",
         "--prometheus-port", "0", "--disk-free-limit", "0"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            try:
                peak[0] = max(peak[0], rss(proc.pid))
            except OSError:
                return

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client = Raw(port)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / "broker.log").read_text()
                time.sleep(0.05)
        client.send(1, C.Queue.Declare(queue="q", durable=spec["durable"],
                                       arguments=spec["args"]))
        client.expect(C.Queue.DeclareOk)
        time.sleep(1.0)
        before = peak[0] = rss(proc.pid)
        threading.Thread(target=sample, daemon=True).start()
        priorities = "x-max-priority" in spec["args"]
        started = time.monotonic()
        client.publish_all("q", n, priorities, spec["durable"])
        fill_s = time.monotonic() - started
        assert client.message_count("q") == n
        after_fill = rss(proc.pid)
        fill_peak = peak[0]
        started = time.monotonic()
        arrived = client.drain("q", n, ordered=not priorities)
        drain_s = time.monotonic() - started
        after_drain = rss(proc.pid)
        client.close()
        figures = {"fill_msg_s": round(n / fill_s), "drain_msg_s": round(n / drain_s),
                   "rss_before_mb": before // MB,
                   "growth_after_fill_mb": (after_fill - before) // MB,
                   "peak_growth_mb": (fill_peak - before) // MB,
                   "growth_after_drain_mb": (after_drain - before) // MB}
        for key, value in figures.items():
            record_property(key, value)
        print(f"\n{kind}: {figures}")
        assert arrived == n, f"{n - arrived} messages missing or out of order"
        assert after_fill - before <= LIMIT, figures
        assert fill_peak - before <= LIMIT, figures
        assert after_drain - before <= LIMIT, figures
    finally:
        stop.set()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()
