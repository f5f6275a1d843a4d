"""Node control for the CLI (rabbitmqctl stop_app / start_app / reset / stop), under
``/api/burrowmq/`` since RabbitMQ's own CLI does these over Erlang distribution, not HTTP.
Administrator only."""

from __future__ import annotations

import asyncio

from aiohttp import web

from . import fmt
from .util import error, no_content, node_of, require_admin

routes = web.RouteTableDef()


@routes.post("/api/burrowmq/stop_app")
async def stop_app(request: web.Request) -> web.Response:
    require_admin(request)
    await node_of(request).stop_app()
    return no_content()


@routes.post("/api/burrowmq/start_app")
async def start_app(request: web.Request) -> web.Response:
    require_admin(request)
    await node_of(request).start_app()
    return no_content()


@routes.post("/api/burrowmq/reset")
async def reset(request: web.Request) -> web.Response:
    require_admin(request)
    node = node_of(request)
    if node.running:
        raise error(400, "bad_request", f"Mnesia is still running on node {fmt.node_name()}. "
                    "Please stop the node with rabbitmqctl stop_app first.")
    node.reset()
    return no_content()


@routes.post("/api/burrowmq/stop")
async def stop(request: web.Request) -> web.Response:
    require_admin(request)
    node = node_of(request)
    asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(node.stop()))
    return no_content()
