"""A Jepsen-style workload against a cluster: publishers with confirms and a consumer, each in a
thread with pika, reconnecting through any node when a connection dies; the history they record
goes to ``checker.check``.

- A publisher publishes ``<name>:<seq>`` persistent messages one at a time in confirm mode and
  records each attempt: ``confirmed``, ``nacked``, or ``unknown`` (the connection died first).
  After ``unknown`` or ``nacked`` it publishes the same seq again (attempt 2, 3 ...) on a new
  connection, as careful applications do.
- The consumer acks each delivery after recording it. A delivery made on a connection that later
  died counts as not acked (its ack may have been lost: a redelivery of it is legitimate).
- ``drain`` consumes what is left once the faults are over.

Every connection attempt goes to the next node in turn (``urls`` is called each time: nodes
restart on new ports), so clients reach the leader through followers as well.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pika
import pika.exceptions
from checker import CheckResult, Delivery, Publish, check

QUEUE = "jepsen"
ERRORS = (Exception,)  # pika raises many kinds (AMQPError, OSError, connector timeouts ...)


def connect(urls: Callable[[], list[str]], turn: itertools.count, timeout: float = 10.0,
            stop: threading.Event | None = None) -> pika.BlockingConnection:
    deadline = time.monotonic() + timeout
    while True:
        candidates = urls()
        url = candidates[next(turn) % len(candidates)]
        params = pika.URLParameters(url + "?connection_attempts=1&socket_timeout=3"
                                          "&blocked_connection_timeout=10&heartbeat=10")
        try:
            conn = pika.BlockingConnection(params)
            conn.channel().queue_declare(QUEUE, durable=True)  # as applications re-declare
            return conn
        except ERRORS:
            if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                raise
            time.sleep(0.1)


@dataclass
class History:
    publishes: list[Publish] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def published(self, p: Publish) -> None:
        with self.lock:
            self.publishes.append(p)

    def delivered(self, batch: list[Delivery]) -> None:
        with self.lock:
            self.deliveries.extend(batch)

    def check(self) -> CheckResult:
        with self.lock:
            return check(self.publishes, self.deliveries, allow_unflagged_redelivery=True)

    def confirmed(self, publisher: str | None = None) -> int:
        with self.lock:
            return sum(1 for p in self.publishes if p.outcome == "confirmed"
                       and (publisher is None or p.publisher == publisher))


class Workload:
    def __init__(self, urls: Callable[[], list[str]], publishers: int = 2,
                 consume: bool = True) -> None:
        self.urls = urls
        self.history = History()
        self.stop_event = threading.Event()
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._publisher, args=(f"p{i}",), daemon=True)
                        for i in range(publishers)]
        if consume:
            self.threads.append(threading.Thread(target=self._consumer, daemon=True))
        self._turn = itertools.count()

    def start(self) -> Workload:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a workload thread did not stop"

    def wait_confirmed(self, count: int, timeout: float = 30.0) -> None:
        """Until ``count`` more messages than now are confirmed."""
        target = self.history.confirmed() + count
        deadline = time.monotonic() + timeout
        while self.history.confirmed() < target:
            assert time.monotonic() < deadline, (
                f"only {self.history.confirmed()} of {target} confirmed in {timeout} s; "
                f"errors: {self.errors[-5:]}")
            time.sleep(0.05)

    # ---- threads -------------------------------------------------------------------------
    def _publisher(self, name: str) -> None:
        seq, attempt = 1, 1
        conn = None
        while not self.stop_event.is_set():
            publishing = False
            try:
                if conn is None or not conn.is_open:
                    conn = connect(self.urls, self._turn, 30.0, self.stop_event)
                    channel = conn.channel()
                    channel.confirm_delivery()
                body = f"{name}:{seq}".encode()
                publishing = True
                try:
                    channel.basic_publish("", QUEUE, body,
                                          pika.BasicProperties(delivery_mode=2,
                                                               message_id=f"{name}:{seq}"))
                except pika.exceptions.NackError:
                    self.history.published(Publish(name, seq, "nacked", attempt))
                    attempt += 1
                    continue
                self.history.published(Publish(name, seq, "confirmed", attempt))
                seq, attempt = seq + 1, 1
            except ERRORS as exc:
                if publishing:
                    self.history.published(Publish(name, seq, "unknown", attempt))
                    attempt += 1
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                with contextlib.suppress(Exception):
                    if conn is not None:
                        conn.close()
                conn = None
                time.sleep(0.05)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _consumer(self) -> None:
        while not self.stop_event.is_set():
            batch: list[Delivery] = []
            conn = None
            try:
                conn = connect(self.urls, self._turn, 30.0, self.stop_event)
                channel = conn.channel()
                channel.basic_qos(prefetch_count=50)
                for method, _props, body in channel.consume(QUEUE, inactivity_timeout=0.2):
                    if self.stop_event.is_set():
                        break
                    if method is None:
                        continue
                    publisher, _, seq = body.decode().partition(":")
                    batch.append(Delivery(publisher, int(seq), method.redelivered,
                                          acked=True, queue=QUEUE))
                    channel.basic_ack(method.delivery_tag)
                channel.cancel()
                conn.close()
                self.history.delivered(batch)
            except ERRORS as exc:
                self.errors.append(f"consumer: {type(exc).__name__}: {exc}")
                # acks of this connection may be lost: its deliveries may come again
                self.history.delivered([Delivery(d.publisher, d.seq, d.redelivered, False,
                                                 d.queue) for d in batch])
                with contextlib.suppress(Exception):
                    if conn is not None:
                        conn.close()
                time.sleep(0.1)

    def drain(self, timeout: float = 60.0, quiet: float = 2.0) -> None:
        """Consume what is left (after ``stop``) until the queue stays empty ``quiet`` s."""
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            batch: list[Delivery] = []
            conn = None
            try:
                conn = connect(self.urls, self._turn, 30.0)
                channel = conn.channel()
                channel.basic_qos(prefetch_count=200)
                for method, _props, body in channel.consume(QUEUE, inactivity_timeout=0.3):
                    if method is None:
                        if time.monotonic() - last > quiet:
                            break
                        continue
                    last = time.monotonic()
                    publisher, _, seq = body.decode().partition(":")
                    batch.append(Delivery(publisher, int(seq), method.redelivered, True,
                                          QUEUE))
                    channel.basic_ack(method.delivery_tag)
                channel.cancel()
                conn.close()
                self.history.delivered(batch)
                return
            except ERRORS as exc:
                self.errors.append(f"drain: {type(exc).__name__}: {exc}")
                self.history.delivered([Delivery(d.publisher, d.seq, d.redelivered, False,
                                                 d.queue) for d in batch])
                with contextlib.suppress(Exception):
                    if conn is not None:
                        conn.close()
                time.sleep(0.2)
        raise AssertionError(f"could not drain the queue: {self.errors[-5:]}")
