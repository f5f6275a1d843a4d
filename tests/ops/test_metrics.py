"""Prometheus /metrics: rabbitmq_prometheus names, values that follow real AMQP traffic."""

from __future__ import annotations

import urllib.request

from ops_helpers import connect
from prometheus_client.parser import text_string_to_metric_families


def scrape(port: int, path: str = "/metrics") -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())
                              if k != "protocol")
            out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return out


def test_metrics_follow_traffic(burrowmq_factory) -> None:  # type: ignore[no-untyped-def]
    handle = burrowmq_factory(prometheus_port=0)
    conn = connect(handle.url)
    ch = conn.channel()
    ch.queue_declare("m1")
    for i in range(5):
        ch.basic_publish("", "m1", str(i).encode())
    method, _props, _body = ch.basic_get("m1")
    ch.basic_ack(method.delivery_tag)
    ch.basic_get("m1")
    conn.process_data_events(0.1)
    m = scrape(handle.prometheus_port)
    assert m["rabbitmq_connections"] == 1 and m["rabbitmq_channels"] == 1
    assert m["rabbitmq_queues"] == 1
    assert m["rabbitmq_queue_messages_ready"] == 3
    assert m["rabbitmq_queue_messages_unacked"] == 1
    assert m["rabbitmq_global_messages_received_total"] == 5
    assert m["rabbitmq_global_messages_delivered_total"] == 2
    assert m["rabbitmq_global_messages_acknowledged_total"] == 1
    assert m["rabbitmq_process_resident_memory_bytes"] > 1_000_000
    assert m["rabbitmq_disk_space_available_bytes"] > 0
    identity = [k for k in m if k.startswith("rabbitmq_identity_info{")]
    assert len(identity) == 1 and "rabbitmq_node=rabbit@" in identity[0]
    conn.close()
    m = scrape(handle.prometheus_port)
    assert m["rabbitmq_connections"] == 0
    assert m["rabbitmq_global_messages_received_total"] == 5  # survives the connection
    # rabbitmq_prometheus: /metrics/per-object has the same names, one series per queue
    per_queue = scrape(handle.prometheus_port, "/metrics/per-object")
    assert per_queue["rabbitmq_queue_messages_ready{queue=m1,vhost=/}"] == 4
    assert per_queue["rabbitmq_queue_messages_unacked{queue=m1,vhost=/}"] == 0
    assert per_queue["rabbitmq_queue_messages{queue=m1,vhost=/}"] == 4
    assert per_queue["rabbitmq_queue_consumers{queue=m1,vhost=/}"] == 0
    assert "rabbitmq_queue_messages_ready" not in per_queue  # no unlabelled aggregate there
    assert per_queue["rabbitmq_connections"] == 0
    # /metrics/detailed: only the families asked for, with the rabbitmq_detailed_ prefix
    detailed = scrape(handle.prometheus_port, "/metrics/detailed?family=queue_coarse_metrics"
                                              "&family=queue_consumer_count")
    assert detailed["rabbitmq_detailed_queue_messages_ready{queue=m1,vhost=/}"] == 4
    assert detailed["rabbitmq_detailed_queue_messages{queue=m1,vhost=/}"] == 4
    assert detailed["rabbitmq_detailed_queue_consumers{queue=m1,vhost=/}"] == 0
    assert "rabbitmq_connections" not in detailed
    only_coarse = scrape(handle.prometheus_port, "/metrics/detailed?family=queue_coarse_metrics"
                                                 "&vhost=other")
    assert not [k for k in only_coarse if "queue=" in k]


def test_prometheus_off_by_default_in_embedding(burrowmq) -> None:  # type: ignore
    assert burrowmq.prometheus_port is None and burrowmq.management_port


def test_counters_used_by_rabbitmqs_grafana_dashboards(burrowmq_factory) -> None:  # type: ignore
    """RabbitMQ-Overview (Grafana 10991) graphs rate() of rabbitmq_channel_messages_*,
    rabbitmq_channel_get_*, and the connection churn: each a counter that only grows, with
    rabbitmq_prometheus's meaning (gets and deliveries split by ack mode)."""
    handle = burrowmq_factory(prometheus_port=0)
    for _ in range(2):
        conn = connect(handle.url)
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("g1")
        for i in range(3):
            ch.basic_publish("", "g1", str(i).encode())
        ch.basic_publish("", "nowhere", b"dropped")
        ch.basic_get("g1", auto_ack=True)
        method, _props, _body = ch.basic_get("g1")
        ch.basic_ack(method.delivery_tag)
        ch.queue_purge("g1")
        assert ch.basic_get("g1") == (None, None, None)
        conn.close()
    m = scrape(handle.prometheus_port)
    assert m["rabbitmq_connections"] == 0
    assert m["rabbitmq_connections_opened_total"] == 2  # not the connections open now
    assert m["rabbitmq_connections_closed_total"] == 2
    assert m["rabbitmq_channels_opened_total"] == 2 and m["rabbitmq_channels_closed_total"] == 2
    assert m["rabbitmq_channel_messages_published_total"] == 8
    assert m["rabbitmq_channel_messages_confirmed_total"] == 8
    assert m["rabbitmq_channel_messages_unroutable_dropped_total"] == 2
    assert m["rabbitmq_channel_messages_unroutable_returned_total"] == 0
    assert m["rabbitmq_channel_get_total"] == 2  # automatic acknowledgement
    assert m["rabbitmq_channel_get_ack_total"] == 2  # manual
    assert m["rabbitmq_channel_get_empty_total"] == 2
    assert m["rabbitmq_channel_messages_acked_total"] == 2
    assert m["rabbitmq_channel_messages_delivered_total"] == 0
    assert m["rabbitmq_channel_messages_delivered_ack_total"] == 0
    assert m["rabbitmq_global_messages_routed_total"] == 6
    assert m["rabbitmq_global_messages_delivered_total"] == 4
    assert m["rabbitmq_global_messages_delivered_get_auto_ack_total"] == 2
    assert m["rabbitmq_global_messages_delivered_get_manual_ack_total"] == 2
    assert m["rabbitmq_global_messages_get_empty_total"] == 2
