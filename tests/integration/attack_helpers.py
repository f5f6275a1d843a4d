"""Helpers for the memory-attack tests (not a test module): the broker's RSS, a well-behaved
client that keeps publishing with confirms and consuming with acks on its own connection while
an attack runs (and must lose nothing), and raw attackers that write without reading.

The brokers of these tests run in the test process (tests/conftest.py), so ``rss()`` is the
broker's resident memory plus the clients'; the clients here hold next to nothing, and the
ceilings the tests assert are growths measured from just before an attack.
"""

from __future__ import annotations

import gc
import socket
import threading
import time

import pika
from pamqp import body as pbody
from pamqp import commands as C
from pamqp import frame as pframe
from pamqp import header as pheader

MiB = 1024 * 1024


def rss() -> int:
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def publish_frame(channel: int, routing_key: str, exchange: str = "",
                  mandatory: bool = False) -> bytes:
    return pframe.marshal(C.Basic.Publish(exchange=exchange, routing_key=routing_key,
                                          mandatory=mandatory), channel)


def header_frame(channel: int, size: int) -> bytes:
    return pframe.marshal(pheader.ContentHeader(0, size, C.Basic.Properties()), channel)


def body_frame(channel: int, data: bytes) -> bytes:
    return pframe.marshal(pbody.ContentBody(data), channel)


def send_for(sock: socket.socket, data: bytes, seconds: float, limit: int | None = None) -> int:
    """Write ``data`` again and again for ``seconds`` (or ``limit`` bytes) without reading;
    stop early when the broker stops reading (the socket buffer stays full) or closes. Returns
    the bytes written."""
    sock.setblocking(False)
    sent = 0
    view = memoryview(data)
    pos = 0
    deadline = time.monotonic() + seconds
    stalled_since: float | None = None
    try:
        while time.monotonic() < deadline and (limit is None or sent < limit):
            try:
                n = sock.send(view[pos:])
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                time.sleep(0.01)
                continue
            except OSError:
                break
            stalled_since = None
            sent += n
            pos = (pos + n) % len(data)
    finally:
        sock.setblocking(True)
    return sent


class Bystander(threading.Thread):
    """A well-behaved client: on its own connection it publishes numbered messages with
    publisher confirms and consumes them with manual acks (prefetch 50), until ``finish``.
    ``finish`` drains what is left and checks that every confirmed message was consumed
    exactly once."""

    def __init__(self, port: int, queue: str = "bystander", body_size: int = 512) -> None:
        super().__init__(name="bystander", daemon=True)
        self.port = port
        self.queue = queue
        self.pad = b"b" * body_size
        self.confirmed = 0
        self.consumed: list[int] = []
        self.errors: list[BaseException] = []
        self._halt = threading.Event()
        self._ready = threading.Event()

    def __enter__(self) -> Bystander:
        self.start()
        assert self._ready.wait(10), "the well-behaved client could not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self.join(30)

    def run(self) -> None:
        try:
            params = pika.ConnectionParameters("127.0.0.1", self.port, heartbeat=0,
                                               blocked_connection_timeout=None)
            conn = pika.BlockingConnection(params)
            pub = conn.channel()
            pub.queue_declare(self.queue)
            pub.confirm_delivery()
            sub = conn.channel()
            sub.basic_qos(prefetch_count=50)

            def on_message(ch, method, _props, body):  # type: ignore[no-untyped-def]
                self.consumed.append(int.from_bytes(body[:8], "big"))
                ch.basic_ack(method.delivery_tag)

            sub.basic_consume(self.queue, on_message)
            self._ready.set()
            while not self._halt.is_set():
                pub.basic_publish("", self.queue, self.confirmed.to_bytes(8, "big") + self.pad)
                self.confirmed += 1
                conn.process_data_events(time_limit=0)
            deadline = time.monotonic() + 15
            while len(self.consumed) < self.confirmed and time.monotonic() < deadline:
                conn.process_data_events(time_limit=0.05)
            conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported by check()
            self.errors.append(exc)
            self._ready.set()

    def progress(self) -> tuple[int, int]:
        return self.confirmed, len(self.consumed)

    def assert_progressed(self, start: tuple[int, int], at_least: int = 20) -> None:
        """Messages kept being confirmed and consumed since ``start`` (a ``progress()``)."""
        confirmed, consumed = self.progress()
        assert confirmed - start[0] >= at_least and consumed - start[1] >= at_least, (
            f"the well-behaved client stalled: {confirmed - start[0]} confirmed and "
            f"{consumed - start[1]} consumed during the attack")

    def check(self) -> None:
        """After ``__exit__``: nothing lost or duplicated."""
        assert not self.errors, f"the well-behaved client failed: {self.errors!r}"
        assert self.confirmed > 0
        assert sorted(self.consumed) == list(range(self.confirmed)), (
            f"confirmed {self.confirmed}, consumed {len(self.consumed)} "
            f"(distinct {len(set(self.consumed))})")
