"""Prometheus exposition on /metrics with rabbitmq_prometheus's metric names.

Built with prometheus_client's custom-collector API: every scrape reads the broker's state and
counters (``Server.totals``) once; nothing is recorded on the message path beyond the integer
counters the sessions already keep. Gauges are aggregated per node, as rabbitmq_prometheus does
by default. As there, ``/metrics/per-object`` has the queue gauges under the same names, one
series per queue (labels ``vhost``, ``queue``) instead of the node's sum, and
``/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count[&vhost=v]`` only
the families asked for, named ``rabbitmq_detailed_queue_*``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any  # Any: a Queue (core) in the gauge table

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from broker.amqp.session import open_sessions
from broker.core.naming import RABBITMQ_VERSION, cluster_name, node_name
from broker.node import sysinfo

if TYPE_CHECKING:
    from broker.node.node import Node

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GLOBAL_COUNTERS = (
    ("messages_received", "Total number of messages received from publishers", ("publish",)),
    ("messages_received_confirm", "Total number of messages received from publishers "
     "expecting confirmations", ("confirm",)),
    ("messages_routed", "Total number of messages routed to queues or streams",
     ("publish", "-drop_unroutable", "-return_unroutable")),
    ("messages_unroutable_dropped", "Total number of messages published as non-mandatory "
     "into an exchange and dropped as unroutable", ("drop_unroutable",)),
    ("messages_unroutable_returned", "Total number of messages published as mandatory into "
     "an exchange and returned to the publisher as unroutable", ("return_unroutable",)),
    ("messages_confirmed", "Total number of messages confirmed to publishers", ("confirm",)),
    ("messages_delivered", "Total number of messages delivered to consumers",
     ("deliver", "deliver_no_ack", "get", "get_no_ack")),
    ("messages_delivered_consume_manual_ack", "Total number of messages delivered to "
     "consumers using basic.consume with manual acknowledgment", ("deliver",)),
    ("messages_delivered_consume_auto_ack", "Total number of messages delivered to "
     "consumers using basic.consume with automatic acknowledgment", ("deliver_no_ack",)),
    ("messages_delivered_get_manual_ack", "Total number of messages delivered to consumers "
     "using basic.get with manual acknowledgment", ("get",)),
    ("messages_delivered_get_auto_ack", "Total number of messages delivered to consumers "
     "using basic.get with automatic acknowledgment", ("get_no_ack",)),
    ("messages_get_empty", "Total number of times basic.get operations fetched no message",
     ("get_empty",)),
    ("messages_redelivered", "Total number of messages redelivered to consumers",
     ("redeliver",)),
    ("messages_acknowledged", "Total number of messages acknowledged by consumers",
     ("ack",)),
)
# rabbitmq_prometheus's aggregated channel metrics, which RabbitMQ's Grafana dashboards graph
# (RabbitMQ sums its live channels; these are node totals, so they never go down).
CHANNEL_COUNTERS = (
    ("channel_messages_published", "Total number of messages published into an exchange on "
     "a channel", "publish"),
    ("channel_messages_confirmed", "Total number of messages published into an exchange and "
     "confirmed on the channel", "confirm"),
    ("channel_messages_unroutable_returned", "Total number of messages published as mandatory "
     "into an exchange and returned to the publisher as unroutable", "return_unroutable"),
    ("channel_messages_unroutable_dropped", "Total number of messages published as "
     "non-mandatory into an exchange and dropped as unroutable", "drop_unroutable"),
    ("channel_get_ack", "Total number of messages fetched with basic.get in manual "
     "acknowledgement mode", "get"),
    ("channel_get", "Total number of messages fetched with basic.get in automatic "
     "acknowledgement mode", "get_no_ack"),
    ("channel_messages_delivered_ack", "Total number of messages delivered to consumers in "
     "manual acknowledgement mode", "deliver"),
    ("channel_messages_delivered", "Total number of messages delivered to consumers in "
     "automatic acknowledgement mode", "deliver_no_ack"),
    ("channel_messages_redelivered", "Total number of messages redelivered to consumers",
     "redeliver"),
    ("channel_messages_acked", "Total number of messages acknowledged by consumers", "ack"),
    ("channel_get_empty", "Total number of times basic.get operations fetched no message",
     "get_empty"),
)


# The per-queue gauges: (name, help, value of (queue, its unacked count)).
QUEUE_GAUGES: tuple[tuple[str, str, Callable[[Any, int], float]], ...] = (
    ("queue_messages_ready", "Messages ready to be delivered to consumers",
     lambda q, _u: q.message_count),
    ("queue_messages_unacked", "Messages delivered to consumers but not yet acknowledged",
     lambda _q, u: u),
    ("queue_messages", "Sum of ready and unacknowledged messages",
     lambda q, u: q.message_count + u),
    ("queue_consumers", "Consumers on a queue", lambda q, _u: len(q.consumers)),
)
DETAILED_FAMILIES = {"queue_coarse_metrics": ("queue_messages_ready", "queue_messages_unacked",
                                              "queue_messages"),
                     "queue_consumer_count": ("queue_consumers",)}


class BrokerCollector:
    def __init__(self, node: Node, per_object: bool = False,
                 detailed: tuple[list[str], str | None] | None = None) -> None:
        """``detailed``: (families, vhost or None) for /metrics/detailed."""
        self.node = node
        self.server = node.server
        self.per_object = per_object
        self.detailed = detailed

    def collect(self) -> Iterator[Metric]:
        server = self.server
        queues = [q for v in server.vhosts.values() for q in v.queues.values()]
        sessions = [s for s in open_sessions(server) if s.vhost is not None]
        unacked: dict[int, int] = {}
        for s in sessions:
            for ch in s.channels.values():
                for _e, q, _c in ch.unacked.values():
                    unacked[id(q)] = unacked.get(id(q), 0) + 1
        if self.detailed is not None:
            yield from self._identity()
            families, vhost = self.detailed
            wanted = {g for f in families for g in DETAILED_FAMILIES.get(f, ())}
            chosen = [q for q in queues if vhost is None or q.vhost == vhost]
            yield from self._per_queue(chosen, unacked, "detailed_", wanted)
            return
        yield from self._process()
        yield from self._identity()
        yield _gauge("connections", "Connections currently open", len(sessions))
        yield _gauge("channels", "Channels currently open",
                     sum(len(s.channels) for s in sessions))
        yield _gauge("consumers", "Consumers currently connected",
                     sum(len(q.consumers) for q in queues))
        yield _gauge("queues", "Queues available", len(queues))
        if self.per_object:
            yield from self._per_queue(queues, unacked, "", {g[0] for g in QUEUE_GAUGES})
        else:
            for name, doc, value in QUEUE_GAUGES:
                yield _gauge(name, doc, sum(value(q, unacked.get(id(q), 0)) for q in queues))
        totals = server.totals()
        yield _counter("connections_opened", "Total number of connections opened",
                       server.connections_closed + len(server.sessions))
        yield _counter("connections_closed", "Total number of connections closed or terminated",
                       server.connections_closed)
        yield _counter("channels_opened", "Total number of channels opened",
                       totals.channels_opened)
        yield _counter("channels_closed", "Total number of channels closed",
                       totals.channels_closed)
        yield _counter("connections_flow_seconds",
                       "Total time connections spent in flow (credit flow control: not read "
                       "until the queues they publish to catch up)",
                       server.load.flow_seconds_retired + sum(s.flow_time() for s in sessions))
        yield _gauge("connections_flow", "Connections currently in flow",
                     sum(1 for s in sessions if s.state == "flow"))
        for name, doc, fields in GLOBAL_COUNTERS:
            value = sum(-getattr(totals, f[1:]) if f[0] == "-" else getattr(totals, f)
                        for f in fields)
            yield _counter(f"global_{name}", doc, value, protocol="amqp091")
        for name, doc, field in CHANNEL_COUNTERS:
            yield _counter(name, doc, getattr(totals, field))

    def _process(self) -> Iterator[Metric]:
        cfg = self.node.config
        yield _gauge("process_resident_memory_bytes", "Memory used in bytes",
                     sysinfo.rss_bytes())
        yield _gauge("resident_memory_limit_bytes", "Memory high watermark in bytes",
                     sysinfo.memory_limit(cfg))
        yield _gauge("disk_space_available_bytes", "Disk space available in bytes",
                     sysinfo.disk_free(cfg.data_dir))
        yield _gauge("disk_space_available_limit_bytes", "Free disk space low watermark in "
                     "bytes", sysinfo.disk_free_limit(cfg))
        yield _gauge("process_open_fds", "Open file descriptors", sysinfo.fd_used())
        yield _gauge("process_max_fds", "Open file descriptors limit", sysinfo.fd_total())
        yield _gauge("erlang_uptime_seconds", "Node uptime",
                     time.time() - self.server.started_at)
        alarms = self.node.alarms.active
        yield _gauge("alarms_memory_used_watermark", "is 1 if VM memory watermark alarm is in "
                     "effect", int("memory" in alarms))
        yield _gauge("alarms_free_disk_space_watermark", "is 1 if free disk space watermark "
                     "alarm is in effect", int("disk" in alarms))

    def _identity(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("rabbitmq_build_info", "RabbitMQ & Erlang/OTP version info",
                                 labels=["rabbitmq_version", "prometheus_plugin_version",
                                         "erlang_version"])
        info.add_metric([RABBITMQ_VERSION, RABBITMQ_VERSION, "26.2.5"], 1)
        yield info
        ident = GaugeMetricFamily("rabbitmq_identity_info", "RabbitMQ node & cluster identity "
                                  "info", labels=["rabbitmq_node", "rabbitmq_cluster",
                                                  "rabbitmq_cluster_permanent_id"])
        ident.add_metric([node_name(), cluster_name(self.server),
                          f"rabbitmq-cluster-id-{cluster_name(self.server)}"], 1)
        yield ident

    def _per_queue(self, queues: list, unacked: dict[int, int], prefix: str,
                   wanted: set[str]) -> Iterator[Metric]:
        for name, doc, value in QUEUE_GAUGES:
            if name not in wanted:
                continue
            family = GaugeMetricFamily(f"rabbitmq_{prefix}{name}", doc,
                                       labels=["vhost", "queue"])
            for q in queues:
                family.add_metric([q.vhost, q.name], value(q, unacked.get(id(q), 0)))
            yield family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"rabbitmq_{name}", doc, value=value)


def _counter(name: str, doc: str, value: float,
             protocol: str | None = None) -> CounterMetricFamily:
    if protocol is None:
        return CounterMetricFamily(f"rabbitmq_{name}", doc, value=value)
    metric = CounterMetricFamily(f"rabbitmq_{name}", doc, labels=["protocol"])
    metric.add_metric([protocol], value)
    return metric


def render(node: Node, per_object: bool = False,
           detailed: tuple[list[str], str | None] | None = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(node, per_object, detailed))
    return generate_latest(registry)
