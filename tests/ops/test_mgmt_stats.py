"""Message rates and chart samples in the management API (the sampler), with real pika
clients: counts land on the right queue, channel, connection, vhost and overview; ``rate`` is
per second over the last sample interval; ``samples`` appear, in RabbitMQ's shape, only when a
range is asked for. Sampler ticks are driven on the broker's loop, so nothing here waits on
the clock."""

from __future__ import annotations

import pytest
from ops_helpers import Api, connect


@pytest.fixture
def node(burrowmq):  # type: ignore[no-untyped-def]
    return burrowmq, Api(burrowmq.management_port)


def sampler_of(handle):  # type: ignore[no-untyped-def]
    """The management sampler of an in-process node (its HTTP service holds it)."""
    return next(s.sampler for s in handle.node.services if getattr(s, "sampler", None))


def tick(handle, at_ms: int) -> None:  # type: ignore[no-untyped-def]
    handle.call(lambda: sampler_of(handle).tick(at_ms))


def test_counts_and_rates_per_object(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    conn = connect(handle.url, client_properties={"connection_name": "stats"})
    ch = conn.channel()
    ch.queue_declare("st-q")
    t0 = 1_700_000_000_000
    tick(handle, t0)
    for i in range(10):
        ch.basic_publish("", "st-q", f"m{i}".encode())
    ch.basic_qos(prefetch_count=6)
    got = []
    for method, _props, _body in ch.consume("st-q", inactivity_timeout=2):
        assert method is not None
        got.append(method.delivery_tag)
        if len(got) == 6:
            break
    ch.cancel()  # acks after a cancel still count (the consumer is kept as departed)
    for tag in got[:4]:
        ch.basic_ack(tag)
    ch.basic_nack(got[4], requeue=True)
    method, _p, _b = ch.basic_get("st-q", auto_ack=False)
    ch.basic_ack(method.delivery_tag)
    ch.basic_get("st-q", auto_ack=True)
    tick(handle, t0 + 5000)

    q = api.get("/api/queues/%2F/st-q")
    ms = q["message_stats"]
    assert ms["publish"] == 10 and ms["publish_details"] == {"rate": 2.0}
    assert ms["deliver"] == 6 and ms["ack"] == 5 and ms["get"] == 1
    assert ms["get_no_ack"] == 1 and ms["redeliver"] >= 1
    assert ms["deliver_get"] == 8 and ms["deliver_get_details"]["rate"] == 1.6
    assert ms["ack_details"]["rate"] == 1.0
    assert "samples" not in ms["publish_details"]

    chans = api.get("/api/channels")
    assert [c["message_stats"]["publish"] for c in chans] == [10]
    assert chans[0]["message_stats"]["ack"] == 5
    conns = api.get("/api/connections")
    assert conns[0]["message_stats"]["deliver"] == 6
    assert conns[0]["recv_oct"] > 0 and conns[0]["recv_oct_details"]["rate"] > 0
    vhost = api.get("/api/vhosts/%2F")
    assert vhost["message_stats"]["publish"] == 10
    assert vhost["message_stats"]["publish_details"]["rate"] == 2.0
    overview = api.get("/api/overview")
    assert overview["message_stats"]["publish"] == 10
    assert overview["message_stats"]["publish_details"]["rate"] == 2.0
    assert overview["message_stats"]["confirm"] == 0
    conn.close()

    # A closed connection's counts stay in the vhost and overview totals.
    tick(handle, t0 + 10_000)
    assert api.get("/api/overview")["message_stats"]["publish"] == 10
    assert api.get("/api/vhosts/%2F")["message_stats"]["ack"] == 5


def test_samples_when_a_range_is_asked_for(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    conn = connect(handle.url)
    ch = conn.channel()
    ch.queue_declare("st-samples")
    t0 = 1_700_000_000_000  # a multiple of 5000 ms
    tick(handle, t0)
    for step in range(1, 5):
        for _ in range(step):
            ch.basic_publish("", "st-samples", b"x")
        ch.basic_get("st-samples", auto_ack=True) if step == 4 else None
        tick(handle, t0 + step * 5000)
    q = api.get("/api/queues/%2F/st-samples?msg_rates_age=20&msg_rates_incr=5"
                "&lengths_age=20&lengths_incr=5")
    publish = q["message_stats"]["publish_details"]
    # Newest first, at multiples of the increment; the values are the running counts.
    assert [s["sample"] for s in publish["samples"]][:5] == [10, 6, 3, 1, 0]
    stamps = [s["timestamp"] for s in publish["samples"]]
    assert all(a - b == 5000 for a, b in zip(stamps, stamps[1:], strict=False))
    assert all(ts % 5000 == 0 for ts in stamps)
    assert publish["rate"] == 0.8
    assert publish["avg_rate"] == pytest.approx((10 - 0) / 20)
    assert publish["avg"] == pytest.approx(sum([10, 6, 3, 1, 0]) / 5)
    messages = q["messages_details"]
    assert [s["sample"] for s in messages["samples"]][:5] == [9, 6, 3, 1, 0]
    assert "samples" not in q["message_stats"]["ack_details"] or \
        q["message_stats"]["ack_details"]["samples"][0]["sample"] == 0
    overview = api.get("/api/overview?lengths_age=20&lengths_incr=5&msg_rates_age=20"
                       "&msg_rates_incr=5")
    assert [s["sample"] for s in overview["queue_totals"]["messages_details"]["samples"]][
        :2] == [9, 6]
    assert overview["message_stats"]["publish_details"]["samples"][0]["sample"] == 10
    plain = api.get("/api/queues/%2F/st-samples")
    assert set(plain["messages_details"]) == {"rate"}
    conn.close()


def test_idle_objects_keep_no_rings(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    for i in range(20):
        assert api.put(f"/api/queues/%2F/idle-{i}", {"durable": False}) == 201
    for k in range(3):
        tick(handle, 1_700_000_000_000 + k * 5000)
    sampler = sampler_of(handle)
    idle = [s for q, s in sampler.series["queue"].items() if q.name.startswith("idle-")]
    assert len(idle) == 20 and all(s.rings is None for s in idle)
    q = api.get("/api/queues/%2F/idle-3?lengths_age=10&lengths_incr=5")
    assert [s["sample"] for s in q["messages_details"]["samples"]] == [0, 0, 0]


def test_sampler_runs_on_its_own(burrowmq_factory) -> None:  # type: ignore[no-untyped-def]
    handle = burrowmq_factory(collect_statistics_interval=50)
    api = Api(handle.management_port)
    import time

    deadline = time.monotonic() + 5
    while sampler_of(handle).ticks < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sampler_of(handle).ticks >= 3
    assert api.get("/api/overview")["message_stats"]["publish_details"]["rate"] == 0.0
