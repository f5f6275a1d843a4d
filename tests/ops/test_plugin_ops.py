"""Streams and the delayed exchange as operators see them: the management API's stream fields
(type, size on disk, segments, first / last / committed offset, members, readers) and
messages_delayed per exchange, and the same through burrowctl list_queues / list_exchanges."""

from __future__ import annotations

import subprocess
import sys

import pika
from ops_helpers import Api, connect


def ctl(handle, *args: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    proc = subprocess.run([sys.executable, "-m", "broker.ops.ctl", "--port",
                           str(handle.management_port), "-q", *args],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return [line.split("\t") for line in proc.stdout.splitlines()]


def test_stream_in_the_api_and_burrowctl(burrowmq) -> None:  # type: ignore[no-untyped-def]
    conn = connect(burrowmq.url)
    ch = conn.channel()
    ch.queue_declare("ops.s", durable=True, arguments={
        "x-queue-type": "stream", "x-stream-max-segment-size-bytes": 3000,
        "x-max-length-bytes": 9000})
    ch.queue_declare("ops.c")
    ch.confirm_delivery()
    for _ in range(100):
        ch.basic_publish("", "ops.s", b"x" * 100)
    ch.basic_qos(prefetch_count=5)
    got: list = []
    ch.basic_consume("ops.s", lambda *a: got.append(a), arguments={"x-stream-offset": "first"})
    while len(got) < 5:  # all in the callback: pika nacks what it still buffers on close,
        conn.process_data_events(0.05)  # and a nack on a stream closes the connection (540)
    api = Api(burrowmq.management_port)
    q = api.get("/api/queues/%2F/ops.s")
    assert q["type"] == "stream" and q["durable"] is True
    assert q["segments"] >= 2 and 0 < q["message_bytes"] <= 9000 + 3000
    assert q["last_offset"] == q["committed_offset"] == 99
    assert 0 < q["first_offset"] < 99
    assert q["messages_ready"] == 100 - q["first_offset"]
    assert q["members"] == q["online"] and q["readers"] == {q["node"]: 1}
    classic = api.get("/api/queues/%2F/ops.c")
    assert classic["type"] == "classic" and "segments" not in classic
    rows = ctl(burrowmq, "list_queues", "name", "type", "segments", "first_offset",
               "last_offset", "message_bytes")
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name["ops.s"][1:] == ["stream", str(q["segments"]), str(q["first_offset"]), "99",
                                    str(q["message_bytes"])]
    assert by_name["ops.c"][1:] == ["classic", "", "", "", "0"]
    conn.close()


def test_delayed_count_in_the_api_and_burrowctl(burrowmq) -> None:  # type: ignore[no-untyped-def]
    conn = connect(burrowmq.url)
    ch = conn.channel()
    ch.exchange_declare("ops.dx", "x-delayed-message", arguments={"x-delayed-type": "topic"})
    ch.confirm_delivery()
    for _ in range(3):
        ch.basic_publish("ops.dx", "k", b"x", pika.BasicProperties(headers={"x-delay": 60_000}))
    api = Api(burrowmq.management_port)
    ex = api.get("/api/exchanges/%2F/ops.dx")
    assert ex["type"] == "x-delayed-message" and ex["messages_delayed"] == 3
    rows = ctl(burrowmq, "list_exchanges", "name", "type", "messages_delayed")
    assert ["ops.dx", "x-delayed-message", "3"] in rows
    assert ["amq.direct", "direct", ""] in rows
    conn.close()


def test_get_and_purge_of_a_stream_over_http_are_refused(burrowmq) -> None:  # type: ignore[no-untyped-def]
    conn = connect(burrowmq.url)
    conn.channel().queue_declare("ops.s2", durable=True, arguments={"x-queue-type": "stream"})
    conn.close()
    api = Api(burrowmq.management_port)
    status, body = api.request("POST", "/api/queues/%2F/ops.s2/get",
                               {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"})
    assert status == 400 and "basic.get not supported by stream queues" in body["reason"]
    status, body = api.request("DELETE", "/api/queues/%2F/ops.s2/contents")
    assert status == 400 and "queue.purge not supported by stream queues" in body["reason"]
