"""Exchange message rates in the management API (``message_stats.publish_in`` / ``publish_out``),
with real pika clients, against what RabbitMQ 3.10.8 answered to the same publishes: an exchange
counts what clients publish to it (in) and the queue deliveries that produced (out, one per
queue); exchanges reached by exchange-to-exchange bindings, alternate exchanges and
dead-lettering count nothing; ``message_stats`` is absent until the first publish and
``publish_out`` absent while nothing was routed. Sampler ticks are driven on the broker's loop
with fake timestamps, so nothing here waits on the clock."""

from __future__ import annotations

import pytest
from ops_helpers import Api, connect


@pytest.fixture
def node(burrowmq):  # type: ignore[no-untyped-def]
    return burrowmq, Api(burrowmq.management_port)


def tick(handle, at_ms: int) -> None:  # type: ignore[no-untyped-def]
    sampler = next(s.sampler for s in handle.node.services if getattr(s, "sampler", None))
    handle.call(lambda: sampler.tick(at_ms))


def stats(api: Api, name: str, query: str = "") -> dict | None:
    stats: dict | None = api.get(f"/api/exchanges/%2F/{name}{query}").get("message_stats")
    return stats


def test_publish_in_and_out_as_rabbitmq_counts_them(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    conn = connect(handle.url)
    ch = conn.channel()
    for name, kind, args in (("xs-fan", "fanout", None), ("xs-idle", "direct", None),
                             ("xs-src", "direct", None), ("xs-dst", "fanout", None),
                             ("xs-ae", "fanout", None), ("xs-unr", "direct", None),
                             ("xs-withae", "direct", {"alternate-exchange": "xs-ae"}),
                             ("xs-dlx", "fanout", None)):
        ch.exchange_declare(name, kind, arguments=args)
    for q in ("xs-q1", "xs-q2", "xs-q3", "xs-aeq", "xs-dlq"):
        ch.queue_declare(q)
    ch.queue_declare("xs-dead", arguments={"x-dead-letter-exchange": "xs-dlx"})
    ch.queue_bind("xs-q1", "xs-fan")
    ch.queue_bind("xs-q2", "xs-fan")
    ch.exchange_bind("xs-dst", "xs-src", "k")
    ch.queue_bind("xs-q3", "xs-dst")
    ch.queue_bind("xs-aeq", "xs-ae")
    ch.queue_bind("xs-dlq", "xs-dlx")
    t0 = 1_700_000_000_000
    tick(handle, t0)
    for _ in range(3):
        ch.basic_publish("xs-fan", "", b"x")
    ch.basic_publish("xs-src", "k", b"x")
    ch.basic_publish("xs-withae", "nope", b"x")
    ch.basic_publish("xs-unr", "nope", b"x")
    ch.basic_publish("xs-unr", "nope", b"x")
    ch.basic_publish("", "xs-dead", b"x")
    method, _props, _body = ch.basic_get("xs-dead")
    assert method is not None
    ch.basic_reject(method.delivery_tag, requeue=False)  # dead-lettered through xs-dlx
    assert ch.queue_declare("xs-dlq", passive=True).method.message_count == 1
    tick(handle, t0 + 5000)

    fan = stats(api, "xs-fan")
    assert fan == {"publish_in": 3, "publish_in_details": {"rate": 0.6},
                   "publish_out": 6, "publish_out_details": {"rate": 1.2}}
    src = stats(api, "xs-src")
    assert src is not None and (src["publish_in"], src["publish_out"]) == (1, 1)
    withae = stats(api, "xs-withae")
    assert withae is not None and (withae["publish_in"], withae["publish_out"]) == (1, 1)
    default = stats(api, "amq.default")
    assert default is not None and (default["publish_in"], default["publish_out"]) == (1, 1)
    # All unroutable: counted in, and no publish_out at all.
    assert stats(api, "xs-unr") == {"publish_in": 2, "publish_in_details": {"rate": 0.4}}
    # Never published to by a client: no message_stats, in the list as on the page.
    for quiet in ("xs-idle", "xs-dst", "xs-ae", "xs-dlx", "amq.direct"):
        assert stats(api, quiet) is None, quiet
    listed = {x["name"]: x for x in api.get("/api/exchanges/%2F")}
    assert "message_stats" not in listed["xs-idle"]
    assert listed["xs-fan"]["message_stats"]["publish_out"] == 6
    page = api.get("/api/exchanges/%2F/xs-fan")
    assert page["incoming"] == [] and page["outgoing"] == []  # RabbitMQ's basic rates mode

    # The counts outlive the connection that published them.
    conn.close()
    tick(handle, t0 + 10_000)
    fan = stats(api, "xs-fan")
    assert fan is not None and fan["publish_in"] == 3
    assert fan["publish_in_details"] == {"rate": 0.0}


def test_samples_and_http_publish(node) -> None:  # type: ignore[no-untyped-def]
    handle, api = node
    conn = connect(handle.url)
    ch = conn.channel()
    ch.exchange_declare("xs-topic", "topic")
    ch.queue_declare("xs-t1")
    ch.queue_bind("xs-t1", "xs-topic", "a.*")
    t0 = 1_700_000_000_000
    tick(handle, t0)
    for step in range(1, 4):
        for _ in range(step):
            ch.basic_publish("xs-topic", "a.b", b"x")
        tick(handle, t0 + step * 5000)
    got = stats(api, "xs-topic", "?msg_rates_age=15&msg_rates_incr=5")
    assert got is not None
    assert [s["sample"] for s in got["publish_in_details"]["samples"]] == [6, 3, 1, 0]
    assert [s["sample"] for s in got["publish_out_details"]["samples"]] == [6, 3, 1, 0]
    assert got["publish_in_details"]["rate"] == 0.6
    assert got["publish_in_details"]["avg_rate"] == pytest.approx(6 / 15)

    # The management API's publish goes through the same path, and counts the same way.
    assert api.post("/api/exchanges/%2F/xs-topic/publish",
                    {"properties": {}, "routing_key": "a.c", "payload": "x",
                     "payload_encoding": "string"}) == (200, {"routed": True})
    assert api.post("/api/exchanges/%2F/xs-topic/publish",
                    {"properties": {}, "routing_key": "z", "payload": "x",
                     "payload_encoding": "string"}) == (200, {"routed": False})
    got = stats(api, "xs-topic")
    assert got is not None and (got["publish_in"], got["publish_out"]) == (8, 7)
    conn.close()
