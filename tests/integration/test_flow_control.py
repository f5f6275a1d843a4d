"""Flow control under a flood: an unthrottled raw publisher (what RabbitMQ PerfTest does without
a rate limit) and a manual-ack consumer on the same queue, against a broker process.

Not timed: the checks are counts (the consumer's share of what was published) and states seen
through the management API, burrowctl and Prometheus; every wait has a generous deadline.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pika
import pytest
from pamqp import commands as C
from pamqp import frame as pframe
from raw_client import RawClient, content_frames

from broker.ops.pytest_plugin import free_port, start_process

pytestmark = pytest.mark.deadline(120)

ACK = struct.Struct(">BHIHHQBB")
PREFETCH = 100
CONSUMED = 20_000  # the consumer's target; without flow control it gets ~1/200 of the flood


class Flooder(threading.Thread):
    """Writes pre-encoded publishes as fast as the socket takes them, never reads."""

    def __init__(self, port: int, queue: str) -> None:
        super().__init__(daemon=True)
        self.raw = RawClient.open(port, client_properties={"connection_name": "flooder"})
        message = content_frames(1, C.Basic.Publish(exchange="", routing_key=queue),
                                 b"x" * 1024)
        self.size = len(message)
        self.batch = message * 200
        self.sent = 0
        self.go = True

    @property
    def published(self) -> int:
        return self.sent // self.size

    def run(self) -> None:
        sock = self.raw.sock
        sock.settimeout(0.05)
        view, off = memoryview(self.batch), 0
        while self.go:
            try:
                n = sock.send(view[off:])
            except TimeoutError:  # not read: flow control (or a busy broker)
                continue
            except OSError:
                return
            self.sent += n
            off = (off + n) % len(self.batch)


class AckingConsumer(threading.Thread):
    """basic.consume with manual acks; every delivery acked on its own, one write per read."""

    def __init__(self, port: int, queue: str) -> None:
        super().__init__(daemon=True)
        self.raw = RawClient.open(port)
        self.raw.send(1, C.Basic.Qos(prefetch_count=PREFETCH))
        self.raw.expect(C.Basic.QosOk)
        self.raw.send(1, C.Basic.Consume(queue=queue, consumer_tag="fair"))
        self.raw.expect(C.Basic.ConsumeOk)
        self.received = 0
        self.go = True

    def run(self) -> None:
        sock, data = self.raw.sock, self.raw.buf
        sock.settimeout(0.05)
        while self.go:
            off, tags = 0, []
            while len(data) - off >= 7:
                ftype, _channel, size = struct.unpack_from(">BHI", data, off)
                if off + size + 8 > len(data):
                    break
                if ftype == 1 and data[off + 7:off + 11] == b"\x00\x3c\x00\x3c":  # deliver
                    at = off + 11
                    at += 1 + data[at]  # consumer tag
                    tags.append(struct.unpack_from(">Q", data, at)[0])
                off += size + 8
            data = data[off:]
            if tags:
                self.received += len(tags)
                sock.sendall(b"".join(ACK.pack(1, 1, 13, 60, 80, t, 0, 0xCE) for t in tags))
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            data += chunk


def api_get(port: int, path: str) -> object:
    import base64
    import json

    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def flooder_state(port: int) -> str | None:
    for conn in api_get(port, "/api/connections"):  # type: ignore[union-attr]
        if (conn.get("client_properties") or {}).get("connection_name") == "flooder":
            return conn["state"]
    return None


def flow_seconds(port: int) -> float:
    """The node's flow-time counter; waits for the endpoint (services start after AMQP)."""
    wait_until(lambda: _answers(port), "the Prometheus endpoint", timeout=15)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("rabbitmq_connections_flow_seconds_total "):
                return float(line.split()[1])
    raise AssertionError("no rabbitmq_connections_flow_seconds_total in /metrics")


def _answers(port: int, path: str = "/metrics") -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10):
            return True
    except urllib.error.HTTPError:
        return True  # it answers (401 without credentials)
    except OSError:
        return False


def wait_until(predicate, what: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def flood_broker(tmp_path_factory):  # type: ignore[no-untyped-def]
    prometheus = free_port()
    handle = start_process(tmp_path_factory.mktemp("flood") / "data",
                           "--prometheus-port", str(prometheus))
    handle.prometheus = prometheus  # type: ignore[attr-defined]
    # The HTTP services start after the AMQP listener.
    wait_until(lambda: _answers(handle.management_port, "/api/overview"), "the management API",
               timeout=15)
    yield handle
    handle.stop()


def test_manual_ack_consumer_gets_a_fair_share_of_a_flood(flood_broker) -> None:  # type: ignore
    port, mgmt = flood_broker.port, flood_broker.management_port
    setup = pika.BlockingConnection(pika.URLParameters(flood_broker.url))
    setup.channel().queue_declare("flood")
    assert flow_seconds(flood_broker.prometheus) == 0
    consumer = AckingConsumer(port, "flood")
    flooder = Flooder(port, "flood")
    consumer.start()
    flooder.start()
    try:
        # The flooding connection is throttled: the management API shows it in flow...
        wait_until(lambda: flooder_state(mgmt) == "flow", "the flooder in state flow")
        # ... and so does burrowctl list_connections (rabbitmqctl's command and columns).
        out = subprocess.run([sys.executable, "-m", "broker.ops.ctl", "--port", str(mgmt),
                              "list_connections", "-s", "user", "state"],
                             capture_output=True, text=True, timeout=30).stdout
        assert "guest\tflow" in out.splitlines(), out
        wait_until(lambda: consumer.received >= CONSUMED, f"{CONSUMED} deliveries",
                   timeout=90)
        published, received = flooder.published, consumer.received
    finally:
        flooder.go = False
        flooder.join(5)
    # The consumer got a fair share: without flow control the flood took the whole loop
    # and the consumer got about 1 message for every 200 published.
    assert received >= published / 5, (received, published)
    ready = setup.channel().queue_declare("flood", passive=True).method.message_count
    assert ready < published / 2, (ready, published)
    # Once the flood stops, the queue drains and the connection leaves flow (RabbitMQ shows
    # "flow" for a second after the last throttling, so do we).
    wait_until(lambda: flooder_state(mgmt) == "running", "the flooder back to running")
    assert flow_seconds(flood_broker.prometheus) > 0
    consumer.go = False
    consumer.join(5)
    flooder.raw.close()
    consumer.raw.close()
    setup.close()


def test_flood_into_a_queue_without_consumers_is_not_throttled(flood_broker) -> None:  # type: ignore
    """No consumer, nothing to be fair to: the publisher is never put in flow (RabbitMQ takes
    such a flood as fast as its queue process can, and so do we)."""
    mgmt = flood_broker.management_port
    setup = pika.BlockingConnection(pika.URLParameters(flood_broker.url))
    setup.channel().queue_declare("sink")
    flooder = Flooder(flood_broker.port, "sink")
    flooder.start()
    try:
        wait_until(lambda: flooder.published >= 20_000, "20,000 messages published")
        assert flooder_state(mgmt) == "running"
    finally:
        flooder.go = False
        flooder.join(5)
    assert flow_seconds(flood_broker.prometheus) == 0
    flooder.raw.close()
    setup.close()


def test_publishing_and_consuming_on_one_connection_does_not_deadlock(broker) -> None:  # type: ignore
    """A connection whose own acks sit behind its publishes in the socket: flow control must
    not wait for acks it does not read (the stall timer lets it go on)."""
    raw = RawClient.open(broker.port)
    raw.send(1, C.Basic.Qos(prefetch_count=10))
    raw.expect(C.Basic.QosOk)
    raw.send(1, C.Queue.Declare(queue="self"))
    raw.expect(C.Queue.DeclareOk)
    raw.send(1, C.Basic.Consume(queue="self", consumer_tag="me"))
    raw.expect(C.Basic.ConsumeOk)
    publish = content_frames(1, C.Basic.Publish(exchange="", routing_key="self"), b"y" * 100)
    total = 5000
    sender = threading.Thread(target=raw.sock.sendall, args=(publish * total,), daemon=True)
    sender.start()
    got = 0
    while got < total:
        _channel, frame = raw.recv("a delivery")
        if isinstance(frame, C.Basic.Deliver):
            got += 1
            raw.send_raw(pframe.marshal(C.Basic.Ack(frame.delivery_tag), 1))
    sender.join(10)
    assert got == total
    raw.close()


def _states(broker) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Connection name (client-provided, else the peer) -> state, read on the broker's loop."""
    from broker.amqp.session import open_sessions
    from broker.ops.mgmt.fmt import connection_state

    def read() -> dict[str, str]:
        return {(s.machine.client_properties or {}).get("connection_name") or s.peer:
                connection_state(s) for s in open_sessions(broker.server)}
    return broker.call(read)  # type: ignore[no-any-return]


def test_an_alarm_blocks_a_flooder_in_flow_and_it_resumes_after(broker_factory) -> None:
    """The memory alarm and flow control side by side: a flooder held for credit is blocked
    by the alarm (nothing it sent is routed while it lasts), the consumer keeps draining, and
    once the alarm clears the flood goes on and meets flow control again."""
    import dataclasses

    def set_watermark(absolute: int) -> None:
        def change() -> None:
            node = broker.node
            node.config = dataclasses.replace(node.config,
                                              vm_memory_high_watermark_absolute=absolute,
                                              vm_memory_high_watermark_relative=None)
        broker.call(change)

    huge = 10**15
    broker = broker_factory(vm_memory_high_watermark_absolute=huge,
                            vm_memory_high_watermark_relative=None)
    setup = pika.BlockingConnection(pika.URLParameters(broker.url))
    setup.channel().queue_declare("alarmed")
    consumer = AckingConsumer(broker.port, "alarmed")
    flooder = Flooder(broker.port, "alarmed")
    consumer.start()
    flooder.start()
    queue = broker.server.vhosts["/"].queues["alarmed"]
    try:
        wait_until(lambda: _states(broker).get("flooder") == "flow", "the flooder in flow")
        set_watermark(1)
        wait_until(lambda: _states(broker).get("flooder") == "blocked", "the flooder blocked")
        # blocked: what it sends is not routed, while the consumer drains what is there
        routed = broker.call(lambda: queue.published)
        wait_until(lambda: broker.call(lambda: queue.message_count) == 0, "the queue drained")
        assert broker.call(lambda: queue.published) == routed
        set_watermark(huge)
        wait_until(lambda: broker.call(lambda: queue.published) > routed + 10_000,
                   "the flood going on after the alarm")
        wait_until(lambda: _states(broker).get("flooder") == "flow", "the flooder in flow again")
    finally:
        set_watermark(huge)
        flooder.go = consumer.go = False
        flooder.join(5)
        consumer.join(5)
        flooder.raw.close()
        consumer.raw.close()
        setup.close()


def test_two_flooders_share_a_queue_fairly(flood_broker) -> None:  # type: ignore[no-untyped-def]
    """Credit is shared among the publishers that wait for it (RabbitMQ gives each sender its
    own credit): two flooders into one queue both get a fair part of what the consumer takes."""
    port = flood_broker.port
    setup = pika.BlockingConnection(pika.URLParameters(flood_broker.url))
    setup.channel().queue_declare("shared")
    consumer = AckingConsumer(port, "shared")
    flooders = [Flooder(port, "shared"), Flooder(port, "shared")]
    consumer.start()
    for flooder in flooders:
        flooder.start()
    try:
        wait_until(lambda: consumer.received >= CONSUMED, f"{CONSUMED} deliveries", timeout=90)
        counts = sorted(f.published for f in flooders)
    finally:
        for flooder in flooders:
            flooder.go = False
            flooder.join(5)
        consumer.go = False
        consumer.join(5)
    # what each has in its socket buffers when measured (~4 MB, ~4,000 messages) aside, the
    # two are within a factor of 3 of each other
    assert counts[0] * 3 + 5_000 >= counts[1], counts
    for flooder in flooders:
        flooder.raw.close()
    consumer.raw.close()
    setup.close()
