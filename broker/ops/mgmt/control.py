"""Node control for the CLI (rabbitmqctl stop_app / start_app / reset / stop, environment,
authenticate_user, join_cluster / forget_cluster_node / force_boot), under ``/api/burrowmq/`` since
RabbitMQ's own CLI does these over Erlang distribution, not HTTP. Administrator only.

This node runs standalone: the cluster commands answer so, in RabbitMQ's words where it has
them (``The node selected is not in the cluster.``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from aiohttp import web

from broker.cluster import files
from broker.node.node import StartAborted

from . import cluster, fmt
from .util import body_json, error, no_content, node_of, reply, require_admin, server_of

SECRET_FIELDS = ("default_pass",)
log = logging.getLogger("broker.management")

routes = web.RouteTableDef()


@routes.post("/api/burrowmq/stop_app")
async def stop_app(request: web.Request) -> web.Response:
    require_admin(request)
    await node_of(request).stop_app()
    return no_content()


@routes.post("/api/burrowmq/start_app")
async def start_app(request: web.Request) -> web.Response:
    require_admin(request)
    try:
        await node_of(request).start_app()
    except StartAborted:
        raise error(503, "service_unavailable",
                    f"node {fmt.node_name()} is stopping") from None
    return no_content()


@routes.post("/api/burrowmq/reset")
async def reset(request: web.Request) -> web.Response:
    require_admin(request)
    node = node_of(request)
    if node.running:
        raise error(400, "bad_request", f"Mnesia is still running on node {fmt.node_name()}. "
                    "Please stop the node with rabbitmqctl stop_app first.")
    if node.cluster is not None:
        await cluster.cluster_command(request, "reset")
    else:
        node.reset()
    return no_content()


@routes.post("/api/burrowmq/force_boot")
async def force_boot(request: web.Request) -> web.Response:
    """``rabbitmqctl force_boot``: the app must be stopped; at its next start (start_app) a
    cluster node may lead with its own copy (``broker.cluster.member``)."""
    require_admin(request)
    node = node_of(request)
    if node.running:
        raise error(400, "bad_request", "this command requires the 'rabbit' app to be stopped "
                    "on the target node. Stop it with 'burrowctl stop_app'.")
    if node.cluster is None:
        log.info("force_boot has no effect on a single node")
        return no_content()
    await asyncio.get_running_loop().run_in_executor(None, files.request_force_boot,
                                                     node.cluster.root)
    log.warning("force_boot: at its next start %s may lead cluster %s with its own data, "
                "whatever the in-sync replicas held", fmt.node_name(), node.cluster.cluster)
    return no_content()


@routes.post("/api/burrowmq/stop")
async def stop(request: web.Request) -> web.Response:
    require_admin(request)
    node = node_of(request)
    asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(node.stop()))
    return no_content()


@routes.get("/api/burrowmq/environment")
async def environment(request: web.Request) -> web.Response:
    """The node's effective settings (``rabbitmqctl environment``), secrets masked."""
    require_admin(request)
    values = dataclasses.asdict(node_of(request).config)
    values.pop("origins", None)
    for key in SECRET_FIELDS:
        values[key] = "********"
    return reply(values)


@routes.post("/api/burrowmq/authenticate")
async def authenticate_user(request: web.Request) -> web.Response:
    require_admin(request)
    body = await body_json(request)
    user, password = str(body.get("username", "")), str(body.get("password", ""))
    if not server_of(request).auth.authenticate(user, password):
        return reply({"status": "failed", "reason": f"user '{user}' - invalid credentials"})
    return reply({"status": "ok"})


@routes.post("/api/burrowmq/join_cluster")
async def join_cluster(request: web.Request) -> web.Response:
    require_admin(request)
    other = str((await body_json(request)).get("node", ""))
    if node_of(request).cluster is not None:
        await cluster.cluster_command(request, "join", other)
        return no_content()
    raise error(503, "unavailable", f"cannot join {other}: {fmt.node_name()} runs as a "
                "single node (no etcd is configured: set cluster_formation.etcd.endpoints.1 "
                "or --etcd to the cluster's etcd, the same on every node)")


@routes.post("/api/burrowmq/forget_cluster_node")
async def forget_cluster_node(request: web.Request) -> web.Response:
    require_admin(request)
    other = str((await body_json(request)).get("node", ""))
    if node_of(request).cluster is not None:
        await cluster.cluster_command(request, "forget", other)
        return no_content()
    if other == fmt.node_name():
        raise error(400, "bad_request", f"cannot remove {other}: it is the only node of the "
                    "cluster")
    raise error(404, "Object Not Found", "The node selected is not in the cluster.")
