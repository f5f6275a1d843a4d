"""``status`` and ``cluster_status``: rabbitmqctl's section layout for a one-node cluster,
built from /api/overview and /api/nodes; ``--formatter json`` prints one JSON object."""

from __future__ import annotations

import argparse
import json

from .client import Client
from .output import Output


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


def _versions(overview: dict) -> str:
    """One line that agrees with ``status``: what clients see, what actually runs."""
    return (f"RabbitMQ {overview['rabbitmq_version']} (burrowmq "
            f"{overview.get('burrowmq_version', '')}) on Python "
            f"{overview.get('python_version', '')}")


def status(client: Client, out: Output, args: argparse.Namespace) -> None:
    overview = client.get("/overview")
    node = client.get("/nodes")[0]
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


def cluster_status(client: Client, out: Output, args: argparse.Namespace) -> None:
    overview = client.get("/overview")
    node = client.get("/nodes")[0]
    name, version = node["name"], overview["rabbitmq_version"]
    if out.formatter == "json":
        out.line(json.dumps({
            "cluster_name": overview["cluster_name"], "disk_nodes": [name], "ram_nodes": [],
            "running_nodes": [name], "versions": {name: {
                "rabbitmq_version": version,
                "burrowmq_version": overview.get("burrowmq_version"),
                "python_version": overview.get("python_version")}},
            "maintenance_status": {name: "not under maintenance"}, "alarms": [],
            "partitions": {}, "listeners": {name: overview["listeners"]},
            "cpu_cores": {name: node["processors"]}, "feature_flags": []}))
        return
    for line in [
        f"Cluster status of node {name} ...", "Basics", "",
        f"Cluster name: {overview['cluster_name']}",
        f"Total CPU cores available cluster-wide: {node['processors']}",
        "", "Disk Nodes", "", name, "", "Running Nodes", "", name,
        "", "Versions", "", f"{name}: {_versions(overview)}",
        "", "CPU Cores", "", f"Node: {name}, available CPU cores: {node['processors']}",
        "", "Maintenance status", "", f"Node: {name}, status: not under maintenance",
        "", "Alarms", "", "(none)", "", "Network Partitions", "", "(none)",
        "", "Listeners", "", *_listener_lines(overview, True),
        "", "Feature flags", "", "(none)"]:
        out.line(line)
