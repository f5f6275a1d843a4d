"""Node-level endpoints: overview, nodes, cluster-name, whoami, extensions, and the health
checks (aliveness-test, healthchecks/node, health/checks/*), each in RabbitMQ 3.13's shape.

A failing health check answers 503 with ``{"status": "failed", "reason": ...}`` plus the
check's own detail fields, as RabbitMQ's do.
"""

from __future__ import annotations

import os
import platform
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from broker.amqp.session import open_sessions
from broker.core.messages import new_message
from broker.core.naming import BURROWMQ_VERSION, RABBITMQ_VERSION
from broker.node import sysinfo

from . import fmt
from .sampler import REPORTED_POLICIES
from .util import (
    USER_KEY,
    details_of,
    error,
    node_of,
    reply,
    require_admin,
    server_of,
    tags_of,
    vhost_of,
    visible_vhosts,
)

if TYPE_CHECKING:
    from broker.core.server import Server
    from broker.node.node import Node

routes = web.RouteTableDef()
PYTHON = f"{platform.python_version()} ({platform.python_implementation()})"


def listeners(node: Node) -> list[dict]:
    name = fmt.node_name()
    cfg = node.config
    out = []
    if node.running:
        out.append(("amqp", cfg.host, node.port))
        if node.tls_port:
            out.append(("amqp/ssl", cfg.ssl_host or cfg.host, node.tls_port))
    if node.management_port:
        out.append(("http", cfg.management_host or cfg.host, node.management_port))
    if node.prometheus_port:
        out.append(("http/prometheus", cfg.prometheus_host or cfg.host, node.prometheus_port))
    return [{"node": name, "protocol": proto, "ip_address": host, "port": port,
             "socket_opts": {}} for proto, host, port in out]


def object_totals(server: Server, vhosts: list[str]) -> dict:
    vhs = [server.vhosts[v] for v in vhosts]
    sessions = [s for s in open_sessions(server)
                if s.vhost is not None and s.vhost.name in vhosts]
    return {"channels": sum(len(s.channels) for s in sessions), "connections": len(sessions),
            "consumers": sum(len(q.consumers) for v in vhs for q in v.queues.values()),
            "exchanges": sum(len(v.exchanges) for v in vhs),
            "queues": sum(len(v.queues) for v in vhs)}


def queue_totals(server: Server, vhosts: list[str], details: Any) -> dict:
    ready = sum(q.message_count for v in vhosts for q in server.vhosts[v].queues.values())
    unacked = sum(len(c.unacked) for s in open_sessions(server) for c in s.channels.values()
                  if s.vhost is not None and s.vhost.name in vhosts)
    return details.fill({}, "overview", None, "lengths",
                        {"messages": ready + unacked, "messages_ready": ready,
                         "messages_unacknowledged": unacked})


@routes.get("/api/overview")
async def overview(request: web.Request) -> web.Response:
    node, server = node_of(request), server_of(request)
    totals = server.totals()
    details = details_of(request)
    vhosts = visible_vhosts(request)
    body = {
        "management_version": RABBITMQ_VERSION, "rates_mode": "basic",
        "sample_retention_policies": REPORTED_POLICIES,
        "exchange_types": fmt.EXCHANGE_TYPES, "product_version": RABBITMQ_VERSION,
        "product_name": "RabbitMQ", "rabbitmq_version": RABBITMQ_VERSION,
        "cluster_name": fmt.cluster_name(server), "erlang_version": "26.2.5",
        "erlang_full_version": f"burrowmq {BURROWMQ_VERSION} on Python {PYTHON}",
        "burrowmq_version": BURROWMQ_VERSION, "python_version": PYTHON,
        "release_series_support_status": "supported", "disable_stats": False,
        "is_op_policy_updating_enabled": True, "enable_queue_totals": False,
        "message_stats": fmt.message_stats(totals, details, "overview", None),
        "churn_rates": churn_rates(server, totals, details),
        "queue_totals": queue_totals(server, vhosts, details),
        "object_totals": object_totals(server, vhosts),
        "statistics_db_event_queue": 0, "node": fmt.node_name(),
        "listeners": listeners(node),
        "contexts": [{"ssl_opts": [], "node": fmt.node_name(),
                      "description": "RabbitMQ Management", "path": "/",
                      "cowboy_opts": "[{sendfile,false}]",
                      "port": str(node.management_port or "")}],
    }
    return reply(body)


def churn_rates(server: Server, totals: Any, details: Any) -> dict:
    closed = server.connections_closed
    out = details.fill({}, "overview", None, "msg", {
        "channel_closed": totals.channels_closed, "channel_created": totals.channels_opened,
        "connection_closed": closed, "connection_created": closed + len(server.sessions)})
    return out | fmt.with_details({"queue_created": 0, "queue_declared": 0,
                                   "queue_deleted": 0})


def node_json(node: Node) -> dict:
    server = node.server
    cfg = node.config
    mem = sysinfo.rss_bytes()
    limit = sysinfo.memory_limit(cfg)
    free = sysinfo.disk_free(cfg.data_dir)
    free_limit = sysinfo.disk_free_limit(cfg)
    alarms = alarm_names(node)
    return {
        "name": fmt.node_name(), "type": "disc", "running": True,
        "mem_used": mem, "mem_used_details": fmt.rate(), "mem_limit": limit,
        "mem_alarm": "memory" in alarms, "disk_free": free, "disk_free_details": fmt.rate(),
        "disk_free_limit": free_limit, "disk_free_alarm": "disk" in alarms,
        "fd_used": sysinfo.fd_used(), "fd_used_details": fmt.rate(),
        "fd_total": sysinfo.fd_total(), "sockets_used": len(server.sessions),
        "sockets_used_details": fmt.rate(), "sockets_total": sysinfo.fd_total(),
        "proc_used": 1, "proc_total": 1048576, "run_queue": 0,
        "processors": os.cpu_count() or 1, "os_pid": str(os.getpid()),
        "uptime": int((time.time() - server.started_at) * 1000), "rates_mode": "basic",
        "being_drained": False, "partitions": [], "net_ticktime": 60,
        "enabled_plugins": enabled_plugins(node),
        "exchange_types": fmt.EXCHANGE_TYPES,
        "auth_mechanisms": [{"name": "PLAIN", "description": "SASL PLAIN authentication "
                             "mechanism", "enabled": True},
                            {"name": "AMQPLAIN", "description": "QPid AMQPLAIN mechanism",
                             "enabled": True}],
        "applications": [{"name": "rabbit", "description": "RabbitMQ",
                          "version": RABBITMQ_VERSION}],
        "config_files": [os.path.abspath(cfg.config_file)] if cfg.config_file else [],
        "log_files": ["<stdout>"], "db_dir": os.path.abspath(cfg.data_dir),
        "cluster_links": [], "contexts": [],
    }


def enabled_plugins(node: Node) -> list[str]:
    plugins = []
    if node.management_port:
        plugins.append("rabbitmq_management")
    if node.prometheus_port:
        plugins.append("rabbitmq_prometheus")
    return plugins


def alarm_names(node: Node) -> set[str]:
    """Resource alarms in effect (``broker.node.alarms.Alarms.active``: memory, disk)."""
    return set(node.alarms.active)


@routes.get("/api/nodes")
async def nodes(request: web.Request) -> web.Response:
    node = node_of(request)
    found = [node_json(node)]
    if node.cluster is not None:  # the other members, as far as etcd tells
        found += await other_members(node)
    return reply(found)


async def other_members(node: Node) -> list[dict]:
    """The other members: each running one's own ``/api/nodes/<name>`` (asked concurrently,
    a couple of seconds at most), else what etcd knows (name, cores, alarms) with zeros."""
    import asyncio

    from broker.cluster.etcd import EtcdError

    from .cluster import member_node_json

    cluster = node.cluster
    assert cluster is not None
    try:
        members = await cluster.keys.members()
        running = await cluster.keys.running()
    except EtcdError:
        return []
    names = [name for name in sorted(members) if name != fmt.node_name()]
    answers = await asyncio.gather(*[
        member_node_json(cluster, name, members[name].http)
        if name in running and members[name].http else asyncio.sleep(0, None)
        for name in names])
    others = []
    for name, answer in zip(names, answers, strict=True):
        if answer is not None:
            others.append(answer)
            continue
        member = members[name]
        alarms = running.get(name, {}).get("alarms", [])
        others.append({
            "name": name, "type": "disc", "running": name in running,
            "processors": member.extra.get("cpu_cores", 0), "mem_used": 0, "mem_limit": 0,
            "mem_alarm": "memory" in alarms, "disk_free": 0, "disk_free_limit": 0,
            "disk_free_alarm": "disk" in alarms, "fd_used": 0, "fd_total": 0,
            "sockets_used": 0, "sockets_total": 0, "proc_used": 0, "proc_total": 0,
            "uptime": 0, "rates_mode": "basic", "being_drained": False, "partitions": [],
            "enabled_plugins": [], "applications": [{"name": "rabbit", "description":
                                                      "RabbitMQ", "version": RABBITMQ_VERSION}],
            "cluster_links": [], "contexts": []})
    return others


@routes.get("/api/nodes/{node}")
async def node(request: web.Request) -> web.Response:
    if request.match_info["node"] != fmt.node_name():
        raise error(404, "Object Not Found", "Not Found")
    return reply(node_json(node_of(request)))


@routes.get("/api/cluster-name")
async def cluster_name(request: web.Request) -> web.Response:
    return reply({"name": fmt.cluster_name(server_of(request))})


@routes.put("/api/cluster-name")
async def set_cluster_name(request: web.Request) -> web.Response:
    from dataclasses import replace

    from .util import body_json, no_content

    require_admin(request)
    name = (await body_json(request)).get("name")
    if not isinstance(name, str) or not name:
        raise error(400, "bad_request", "name is required")
    node = node_of(request)
    node.config = replace(node.config, cluster_name=name)
    return no_content()


@routes.get("/api/whoami")
async def whoami(request: web.Request) -> web.Response:
    return reply({"name": request[USER_KEY], "tags": sorted(tags_of(request)),
                  "is_internal_user": True})


@routes.get("/api/extensions")
async def extensions(request: web.Request) -> web.Response:
    return reply([])


# ---- health checks -----------------------------------------------------------------------
def failed(reason: str, **details: object) -> web.Response:
    return reply({"status": "failed", "reason": reason, **details}, status=503)


@routes.get("/api/aliveness-test/{vhost}")
async def aliveness(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    queue = vhost.declare_queue("aliveness-test")
    queue.publish(new_message("", "aliveness-test", b"\x00\x00", b"test_message"))
    entry = queue.get()
    if entry is None:
        return failed("aliveness-test queue is empty")
    queue.ack(entry)
    return reply({"status": "ok"})


@routes.get("/api/healthchecks/node")
@routes.get("/api/healthchecks/node/{node}")
async def healthcheck_node(request: web.Request) -> web.Response:
    if not node_of(request).running:
        return reply({"status": "failed", "reason": "rabbit app is not running"})
    return reply({"status": "ok"})


@routes.get("/api/health/checks/alarms")
@routes.get("/api/health/checks/local-alarms")
async def alarms(request: web.Request) -> web.Response:
    names = sorted(alarm_names(node_of(request)))
    if names:
        found = [{"node": fmt.node_name(), "resource": n} for n in names]
        local = request.path.endswith("local-alarms")
        reason = "There are alarms in effect on the node" if local else \
            "There are alarms in effect in the cluster"
        return failed(reason, alarms=found)
    return reply({"status": "ok"})


@routes.get("/api/health/checks/port-listener/{port}")
async def port_listener(request: web.Request) -> web.Response:
    try:
        port = int(request.match_info["port"])
    except ValueError:
        raise error(400, "bad_request", "Invalid port") from None
    ports = [item["port"] for item in listeners(node_of(request))]
    if port not in ports:
        return failed("No active listener", missing=port, ports=ports)
    return reply({"status": "ok", "port": port})


@routes.get("/api/health/checks/protocol-listener/{protocol}")
async def protocol_listener(request: web.Request) -> web.Response:
    wanted = request.match_info["protocol"].lower()
    wanted = {"amqp091": "amqp", "amqp0.9.1": "amqp", "amqp0-9-1": "amqp",
              "https": "http", "management": "http", "prometheus": "http/prometheus"}.get(
        wanted, wanted)
    protocols = [item["protocol"] for item in listeners(node_of(request))]
    if wanted not in protocols:
        return failed("No active listener", missing=wanted, protocols=protocols)
    return reply({"status": "ok", "protocol": wanted})


@routes.get("/api/health/checks/virtual-hosts")
async def virtual_hosts(request: web.Request) -> web.Response:
    return reply({"status": "ok"})


@routes.get("/api/health/checks/node-is-quorum-critical")
@routes.get("/api/health/checks/node-is-mirror-sync-critical")
@routes.get("/api/health/checks/certificate-expiration/{within}/{unit}")
async def trivially_ok(request: web.Request) -> web.Response:
    return reply({"status": "ok"})


@routes.get("/api/health/checks/ready-to-serve-clients")
async def ready_to_serve(request: web.Request) -> web.Response:
    node = node_of(request)
    if not node.running:
        return failed("node is not running")
    if alarm_names(node):
        return failed("There are alarms in effect on the node")
    return reply({"status": "ok"})
