"""``status`` and ``cluster_status``: rabbitmqctl's section layout, built from /api/overview,
/api/nodes/<node> and /api/burrowmq/cluster; ``--formatter json`` prints one JSON object.

``cluster_status`` adds two sections to rabbitmqctl's: ``Leader`` (the node serving clients)
and ``In-sync`` (the nodes holding every confirmed message; a follower that lags is shown with
how far behind it is)."""

from __future__ import annotations

import argparse
import json

from .client import Client, q
from .output import Output

PURPOSES = {"amqp": "AMQP 0-9-1 and AMQP 1.0", "http": "HTTP API",
            "clustering": "inter-node replication (cluster mode)"}


def _gb(value: int) -> str:
    return f"{value / 1_000_000_000:.4f} gb"


def _listener_lines(overview: dict, with_node: bool) -> list[str]:
    purposes = {"amqp": "AMQP 0-9-1", "amqp/ssl": "AMQP 0-9-1 over TLS", "http": "HTTP API",
                "http/prometheus": "Prometheus exporter API over HTTP"}
    lines = []
    for item in overview["listeners"]:
        head = f"Node: {item['node']}, interface" if with_node else "Interface"
        lines.append(f"{head}: {item['ip_address']}, port: {item['port']}, protocol: "
                     f"{item['protocol']}, purpose: {purposes.get(item['protocol'], '')}")
    return lines


def status(client: Client, out: Output, args: argparse.Namespace) -> None:
    overview = client.get("/overview")
    node = client.get(f"/nodes/{q(client.node_name())}")
    if out.formatter == "json":
        out.line(json.dumps({
            "pid": int(node["os_pid"]), "rabbitmq_version": overview["rabbitmq_version"],
            "product_name": overview["product_name"],
            "product_version": overview["product_version"], "node_name": node["name"],
            "uptime": node["uptime"] // 1000, "data_directory": node.get("db_dir"),
            "enabled_plugins": node["enabled_plugins"], "alarms": [],
            "memory": {"total": {"rss": node["mem_used"]}},
            "vm_memory_high_watermark_limit": node["mem_limit"],
            "disk_free": node["disk_free"], "disk_free_limit": node["disk_free_limit"],
            "file_descriptors": {"total_used": node["fd_used"],
                                 "total_limit": node["fd_total"]},
            "totals": {"connection_count": overview["object_totals"]["connections"],
                       "queue_count": overview["object_totals"]["queues"],
                       "virtual_host_count": len(client.get("/vhosts"))},
            "listeners": overview["listeners"]}))
        return
    alarms = [n for n, on in (("memory", node["mem_alarm"]), ("disk", node["disk_free_alarm"]))
              if on]
    sections = [
        f"Status of node {node['name']} ...", "Runtime", "",
        f"OS PID: {node['os_pid']}", "OS: Linux",
        f"Uptime (seconds): {node['uptime'] // 1000}", "Is under maintenance?: false",
        f"RabbitMQ version: {overview['rabbitmq_version']}",
        f"RabbitMQ release series support status: "
        f"{overview['release_series_support_status']}",
        f"burrowmq version: {overview.get('burrowmq_version', '')}",
        f"Node name: {node['name']}", f"Python: {overview.get('python_version', '')}",
        "", "Plugins", "", "Enabled plugins:", "",
        *[f" * {p}" for p in node["enabled_plugins"]],
        "", "Data directory", "", f"Node data directory: {node.get('db_dir', '')}",
        "", "Config files", "", *[f" * {f}" for f in node["config_files"]],
        "", "Alarms", "", *(alarms or ["(none)"]),
        "", "Memory", "", f"Total memory used: {_gb(node['mem_used'])}",
        "Calculation strategy: rss",
        f"Memory high watermark setting: computed to: {_gb(node['mem_limit'])}",
        "", "File Descriptors", "", f"Total: {node['fd_used']}, limit: {node['fd_total']}",
        "", "Free Disk Space", "",
        f"Low free disk space watermark: {_gb(node['disk_free_limit'])}",
        f"Free disk space: {_gb(node['disk_free'])}",
        "", "Totals", "",
        f"Connection count: {overview['object_totals']['connections']}",
        f"Queue count: {overview['object_totals']['queues']}",
        f"Virtual host count: {len(client.get('/vhosts'))}",
        "", "Listeners", "", *_listener_lines(overview, False)]
    for line in sections:
        out.line(line)


def _member_listeners(name: str, member: dict) -> list[dict]:
    found = []
    for field, protocol in (("amqp", "amqp"), ("http", "http"),
                            ("replication", "clustering")):
        address = member.get(field) or ""
        if address:
            host, _, port = address.rpartition(":")
            found.append({"node": name, "protocol": protocol, "ip_address": host.strip("[]"),
                          "port": int(port)})
    return found


def cluster_status(client: Client, out: Output, args: argparse.Namespace) -> None:
    overview = client.get("/overview")
    info = client.get("/burrowmq/cluster")
    me = client.node_name()
    single = info.get("role") == "single"
    members = sorted(info["members"])
    running = sorted(info["running"])
    leader, in_sync, lag = info.get("leader"), info.get("isr") or [], info.get("lag") or {}
    versions, cores, listeners = {}, {}, {}
    for name in members:
        member = info["members"][name] or {}
        if single:
            this = client.get(f"/nodes/{q(name)}")
            cores[name] = this["processors"]
            listeners[name] = overview["listeners"]
            versions[name] = {"rabbitmq_version": overview["rabbitmq_version"],
                              "burrowmq_version": overview.get("burrowmq_version"),
                              "python_version": overview.get("python_version")}
        else:
            cores[name] = member.get("cpu_cores", 0)
            listeners[name] = _member_listeners(name, member)
            versions[name] = {"rabbitmq_version": member.get("rabbitmq_version"),
                              "burrowmq_version": member.get("version"),
                              "python_version": member.get("python_version")}
    alarms = [{"node": name, "resource": resource}
              for name in running for resource in info["running"][name].get("alarms", [])]
    if out.formatter == "json":
        out.line(json.dumps({
            "cluster_name": overview["cluster_name"], "disk_nodes": members, "ram_nodes": [],
            "running_nodes": running, "leader": leader, "in_sync": in_sync,
            "replica_lag_bytes": lag, "versions": versions,
            "maintenance_status": {n: "not under maintenance" for n in members},
            "alarms": alarms, "partitions": {}, "listeners": listeners, "cpu_cores": cores,
            "feature_flags": []}))
        return

    def version_line(name: str) -> str:
        v = versions[name]
        return (f"{name}: RabbitMQ {v['rabbitmq_version']} (burrowmq "
                f"{v['burrowmq_version'] or ''}) on Python {v['python_version'] or ''}")

    def in_sync_line(name: str) -> str:
        behind = lag.get(name)
        return f"{name} (behind by {behind} bytes)" if behind else name

    alarm_lines = [f"{'Free disk space' if a['resource'] == 'disk' else 'Memory'} alarm on "
                   f"node {a['node']}" for a in alarms]
    purposes = {"amqp/ssl": "AMQP 0-9-1 and AMQP 1.0 over TLS",
                "http/prometheus": "Prometheus exporter API over HTTP", **PURPOSES}
    listener_lines = [f"Node: {item['node']}, interface: {item['ip_address']}, port: "
                      f"{item['port']}, protocol: {item['protocol']}, purpose: "
                      f"{purposes.get(item['protocol'], '')}"
                      for name in members for item in listeners[name]]
    for line in [
        f"Cluster status of node {me} ...", "Basics", "",
        f"Cluster name: {overview['cluster_name']}",
        f"Total CPU cores available cluster-wide: {sum(cores.values())}",
        "", "Disk Nodes", "", *members, "", "Running Nodes", "", *(running or ["(none)"]),
        "", "Leader", "", leader or "(none)",
        "", "In-sync", "", *([in_sync_line(n) for n in in_sync] or ["(none)"]),
        "", "Versions", "", *[version_line(n) for n in members],
        "", "CPU Cores", "", *[f"Node: {n}, available CPU cores: {cores[n]}" for n in members],
        "", "Maintenance status", "",
        *[f"Node: {n}, status: not under maintenance" for n in members],
        "", "Alarms", "", *(alarm_lines or ["(none)"]), "", "Network Partitions", "", "(none)",
        "", "Listeners", "", *listener_lines,
        "", "Feature flags", "", "(none)"]:
        out.line(line)
