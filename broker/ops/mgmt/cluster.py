"""The management API in cluster mode: who answers a request, and the cluster's endpoints.

Routing (``route``, called by the auth middleware when the node is in cluster mode):
- ``GET /api/health/checks/leader`` is public and local: 200 on the leader (or a node serving
  alone), 503 elsewhere: what HAProxy checks to send clients straight to the leader.
- A request naming another node (``x-burrowmq-node``, sent by ``burrowctl -n``) is relayed to
  that node's management API.
- On a node that does not hold the state (a follower), everything but the node's own endpoints
  (``/api/burrowmq/*``, health checks) is forwarded to the leader, with a PROXY header naming
  the client; the leader authenticates it as if it came directly. The node's own endpoints are
  authenticated by the leader (``/api/whoami`` with the same credentials).
- Requests from the CLI (control socket) or from a peer acting for it are passed on signed
  with the cluster secret (``httpfwd.sign``), and accepted as the CLI's (administrator).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from broker.cluster import httpfwd
from broker.cluster.etcd import EtcdError
from broker.node.clustering import ClusterError, split_hostport

from .util import (
    CONTROL_KEY,
    TAGS_KEY,
    USER_KEY,
    ColumnsDone,
    authenticate,
    error,
    node_of,
    reply,
    require_admin,
)

if TYPE_CHECKING:
    from broker.core.queue import Queue
    from broker.node.clustering import ClusterMode
    from broker.node.node import Node

log = logging.getLogger("broker.management")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NODE_HEADER = "x-burrowmq-node"
HOPS_HEADER = "x-burrowmq-hops"
PUBLIC = frozenset({"/api/health/checks/leader"})
LOCAL_PREFIXES = ("/api/burrowmq/", "/api/health/checks/", "/api/healthchecks/")
AT_LEADER = frozenset({"/api/burrowmq/forget_cluster_node"})
PASSED_OFF = frozenset({NODE_HEADER, httpfwd.PEER_HEADER, "x-burrowmq-cookie"})

routes = web.RouteTableDef()
_whoami_cache: dict[str, tuple[float, str, set[str]]] = {}


def cluster_of(request: web.Request) -> ClusterMode:
    cluster = node_of(request).cluster
    if cluster is None:
        raise error(503, "unavailable", "this node runs as a single node (no etcd is "
                    "configured: cluster_formation.etcd.endpoints)")
    return cluster


async def route(request: web.Request, handler: Handler) -> web.StreamResponse:
    from ..localctl import CLI_USER, COOKIE_HEADER, cookie_matches

    cluster = cluster_of(request)
    if request.path in PUBLIC:
        return await handler(request)
    cookie = request.app.get(CONTROL_KEY)
    signed = request.headers.get(httpfwd.PEER_HEADER)
    cli = False
    if cookie is not None:
        if not cookie_matches(cookie, request.headers.get(COOKIE_HEADER)):
            raise error(401, "not_authorized", "the node's cookie did not match")
        cli = True
    elif signed is not None:
        secret = await _secret(cluster)
        if httpfwd.verify(secret, signed, request.method, request.path_qs) is None:
            raise error(401, "not_authorized", "bad or stale signature from a cluster peer")
        cli = True
    if cli:
        request[USER_KEY] = CLI_USER
        request[TAGS_KEY] = {"administrator"}
    target = request.headers.get(NODE_HEADER)
    if target and target != cluster.name:
        return await _relay(request, cluster, target, cli)
    local = request.path.startswith(LOCAL_PREFIXES) or \
        request.path == f"/api/nodes/{cluster.name}"
    if request.path in AT_LEADER and cluster.member is not None and \
            cluster.member.leader_member is not None:
        local = False  # the leader also takes the node out of its in-sync replicas
    if not (cluster.serving or local):
        if int(request.headers.get(HOPS_HEADER, "0")) >= 2:
            raise error(503, "unavailable", "no node here holds the state (leader changing)")
        address = await cluster.leader_address("http")
        if address is None:
            raise error(503, "unavailable", f"cluster {cluster.cluster} has no leader now")
        return await _forward(request, cluster, address, cli)
    if not cli:
        if cluster.serving:
            request[USER_KEY] = authenticate(request)
        else:
            user, tags = await _auth_by_leader(request, cluster)
            request[USER_KEY] = user
            request[TAGS_KEY] = tags
    return await handler(request)


async def _secret(cluster: ClusterMode) -> bytes:
    member = cluster.member
    if member is not None and member.secret is not None:
        return member.secret
    try:
        return await cluster.keys.secret()
    except EtcdError as exc:
        raise error(503, "unavailable", f"etcd cannot be reached: {exc}") from None


async def _relay(request: web.Request, cluster: ClusterMode, target: str,
                 cli: bool) -> web.StreamResponse:
    try:
        member = await cluster.keys.member(target)
    except EtcdError as exc:
        raise error(503, "unavailable", f"etcd cannot be reached: {exc}") from None
    if member is None or not member.http:
        raise error(503, "unavailable", f"unable to perform an operation on node '{target}': "
                    f"it is not a member of cluster {cluster.cluster}"
                    + (" with a management listener" if member is not None else ""))
    return await _forward(request, cluster, split_hostport(member.http), cli)


async def _forward(request: web.Request, cluster: ClusterMode, address: tuple[str, int],
                   cli: bool) -> web.StreamResponse:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in PASSED_OFF}
    headers[HOPS_HEADER] = str(int(request.headers.get(HOPS_HEADER, "0")) + 1)
    if cli:
        headers[httpfwd.PEER_HEADER] = httpfwd.sign(await _secret(cluster), cluster.name,
                                                    request.method, request.path_qs)
    transport = request.transport
    client = transport.get_extra_info("peername") if transport is not None else None
    local = transport.get_extra_info("sockname") if transport is not None else None
    try:
        status, answer_headers, body = await httpfwd.forward(
            address, request.method, request.path_qs, headers, await request.read(),
            client if isinstance(client, tuple) else None,
            local if isinstance(local, tuple) else None)
    except httpfwd.ForwardError as exc:
        raise error(503, "unavailable", f"could not reach {address[0]}:{address[1]}: "
                    f"{exc}") from None
    response = ColumnsDone(status=status, body=body)  # the node that answered applied them
    for name, value in answer_headers:
        response.headers.add(name, value)
    return response


async def _auth_by_leader(request: web.Request,
                          cluster: ClusterMode) -> tuple[str, set[str]]:
    """A follower has no users: the leader checks the credentials (cached a few seconds)."""
    header = request.headers.get("Authorization", "")
    cached = _whoami_cache.get(header)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1], cached[2]
    address = await cluster.leader_address("http", timeout=5.0)
    if address is None:
        raise error(503, "unavailable", f"cluster {cluster.cluster} has no leader to check "
                    "credentials now; the control socket (burrowctl on this machine) works")
    transport = request.transport
    client = transport.get_extra_info("peername") if transport is not None else None
    local = transport.get_extra_info("sockname") if transport is not None else None
    try:
        status, _, body = await httpfwd.forward(
            address, "GET", "/api/whoami", {"Authorization": header}, b"",
            client if isinstance(client, tuple) else None,
            local if isinstance(local, tuple) else None)
    except httpfwd.ForwardError as exc:
        raise error(503, "unavailable", f"could not reach the leader: {exc}") from None
    if status != 200:
        raise error(401, "not_authorized", "Not_Authorized")
    who = json.loads(body)
    tags = set(who.get("tags") or [])
    _whoami_cache[header] = (time.monotonic() + 5.0, who["name"], tags)
    return who["name"], tags


# ---- other members' own figures in /api/nodes -------------------------------------------
async def member_node_json(cluster: ClusterMode, name: str, http: str,
                           timeout: float = 2.0) -> dict[str, Any] | None:
    """``GET /api/nodes/<name>`` answered by that member itself (signed with the cluster
    secret, as ``-n`` relays are); None when it cannot answer in time: the caller shows what
    etcd knows instead."""
    from urllib.parse import quote

    target = f"/api/nodes/{quote(name, safe='')}"
    try:
        headers = {httpfwd.PEER_HEADER: httpfwd.sign(await _secret(cluster), cluster.name,
                                                     "GET", target)}
        status, _, body = await httpfwd.forward(split_hostport(http), "GET", target, headers,
                                                b"", timeout=timeout)
    except (httpfwd.ForwardError, web.HTTPException, ValueError):
        return None
    if status != 200:
        return None
    try:
        found = json.loads(body)
    except ValueError:
        return None
    return found if isinstance(found, dict) and found.get("name") == name else None


# ---- replicas in /api/queues --------------------------------------------------------------
async def replica_view(node: Node) -> dict[str, Any] | None:
    """Who holds copies (every member, every durable queue): leader, members, in-sync ones,
    running ones; None on a single node."""
    cluster = node.cluster
    if cluster is None or cluster.member is None or cluster.member.leadership is None:
        return None
    try:
        members = sorted(await cluster.keys.members())
        running = await cluster.keys.running()
    except EtcdError:
        return None
    isr = cluster.member.leadership.tracker.members
    return {"leader": cluster.name, "members": members,
            "in_sync": [n for n in members if n in isr],
            "running": [n for n in members if n in running]}


def with_replicas(item: dict[str, Any], queue: Queue, view: dict[str, Any] | None) -> \
        dict[str, Any]:
    """RabbitMQ 3.x's mirror fields for a durable queue (every one is replicated in cluster
    mode, whatever its policy says), a quorum queue's members; the UI shows "+N" from them."""
    if view is None or not queue.durable or queue.exclusive:
        return item
    leader = view["leader"]
    if item.get("type") in ("quorum", "stream"):
        item["leader"] = leader
        item["members"] = list(view["members"])
        item["online"] = list(view["running"])
    else:
        item["slave_nodes"] = [n for n in view["members"] if n != leader]
        item["synchronised_slave_nodes"] = [n for n in view["in_sync"] if n != leader]
        item["recoverable_slaves"] = list(item["slave_nodes"])
    return item


# ---- endpoints -----------------------------------------------------------------------------
@routes.get("/api/health/checks/leader")
async def leader_check(request: web.Request) -> web.Response:
    node = node_of(request)
    cluster = node.cluster
    if cluster is None:  # a single node leads itself
        if node.running:
            return reply({"status": "ok", "leader": cluster_node_name()})
        return reply({"status": "failed", "reason": "rabbit app is not running"}, 503)
    if cluster.serving:
        return reply({"status": "ok", "leader": cluster.name, "role": cluster.role})
    member = cluster.member
    leader = member.leader_member.node if member is not None and member.leader_member else None
    return reply({"status": "failed", "reason": f"{cluster.name} is not the leader",
                  "role": cluster.role, "leader": leader}, 503)


def cluster_node_name() -> str:
    from broker.core.naming import node_name

    return node_name()


@routes.get("/api/burrowmq/node")
async def this_node(request: web.Request) -> web.Response:
    """Who answers: the node's name and role (``burrowctl`` asks it for the node's name)."""
    node = node_of(request)
    cluster = node.cluster
    return reply({"name": cluster_node_name(), "running": node.running,
                  "role": cluster.role if cluster is not None else "single"})


@routes.get("/api/burrowmq/cluster")
async def cluster_status(request: web.Request) -> web.Response:
    node = node_of(request)
    if node.cluster is None or node.cluster.left:
        name = cluster_node_name()
        from . import fmt

        alarms = sorted(node.alarms.active)
        return reply({"cluster_name": fmt.cluster_name(node.server), "node": name,
                      "role": "single", "members": {name: {"node": name}},
                      "running": {name: {"alarms": alarms}} if node.running else {},
                      "leader": name, "isr": [name], "lag": {}, "epoch": None})
    try:
        return reply(await node.cluster.status())
    except ClusterError as exc:
        raise error(exc.status, "unavailable", str(exc)) from None


async def cluster_command(request: web.Request, action: str, other: str = "") -> None:
    """``join_cluster`` / ``forget_cluster_node`` / ``reset`` on a node in cluster mode."""
    require_admin(request)
    cluster = cluster_of(request)
    try:
        if action == "join":
            await cluster.join(other)
        elif action == "forget":
            await cluster.forget(other)
        else:
            await cluster.reset()
    except ClusterError as exc:
        kind = {404: "Object Not Found", 503: "unavailable"}.get(exc.status, "bad_request")
        raise error(exc.status, kind, str(exc)) from None
