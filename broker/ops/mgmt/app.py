"""The management aiohttp application: routes, basic-auth middleware, static web UI.

Every ``/api/*`` request is authenticated (HTTP basic, RabbitMQ's 401 bodies) before a handler
runs; the UI's static files are public (the page asks for credentials itself). Input of the
wrong shape (``validation.InvalidInput``, raised by the typed field readers) is a 400
``bad_request`` with RabbitMQ's reason; a request that needs a queue store while the node
stops (``StoreClosed``) gets 503 ``service_unavailable``; other unexpected exceptions become
500 ``internal_server_error`` with the exception's text and are logged (the fuzz tests hold
that none is reachable). Every route also answers with a trailing slash, as RabbitMQ's do.

The same application serves the CLI's local control channel (``broker.ops.control_socket``), built
with ``cookie=``: there a request is authorised by the node's cookie only, and acts as the
internal administrator ``rmq-cli``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from broker.core.validation import InvalidInput
from storage.store import StoreClosed

from . import api_admin, api_node, api_topology, cluster, conns, control, limits, shovel
from .sampler import shared_sampler
from .util import (
    CONTROL_KEY,
    NODE_KEY,
    SAMPLER_KEY,
    SERVER_KEY,
    USER_KEY,
    authenticate,
    bad_request,
    error,
    pick_columns,
)

if TYPE_CHECKING:
    from broker.node.node import Node

log = logging.getLogger("broker.management")
WWW = Path(__file__).parent / "www"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def api_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    if request.app[NODE_KEY].cluster is not None:  # who answers: this node, leader, another
        return await _guarded(request, lambda r: cluster.route(r, handler))
    cookie = request.app.get(CONTROL_KEY)
    if request.path in cluster.PUBLIC:
        pass
    elif cookie is None:
        request[USER_KEY] = authenticate(request)
    else:
        from ..localctl import CLI_USER, COOKIE_HEADER, cookie_matches

        if not cookie_matches(cookie, request.headers.get(COOKIE_HEADER)):
            raise error(401, "not_authorized", "the node's cookie did not match")
        request[USER_KEY] = CLI_USER
    return await _guarded(request, handler)


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return pick_columns(request, await handler(request))
    except web.HTTPException:
        raise
    except InvalidInput as exc:
        raise bad_request(exc.reason) from None
    except StoreClosed as exc:
        raise error(503, "service_unavailable", str(exc)) from None
    except Exception as exc:
        log.exception("management API %s %s failed", request.method, request.path)
        raise error(500, "internal_server_error", str(exc)) from None


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WWW / "index.html")


def build_app(node: Node, cookie: str | None = None) -> web.Application:
    app = web.Application(middlewares=[api_auth], client_max_size=64 * 1024 * 1024)
    app[NODE_KEY] = node
    app[SERVER_KEY] = node.server
    if cookie is not None:
        app[CONTROL_KEY] = cookie
    # One sampler per node, shared by the HTTP app and the CLI's control-socket app.
    sampler = shared_sampler(node)
    app[SAMPLER_KEY] = sampler

    async def start_sampler(app: web.Application) -> None:
        sampler.start()

    async def stop_sampler(app: web.Application) -> None:
        sampler.stop()

    app.on_startup.append(start_sampler)
    app.on_cleanup.append(stop_sampler)
    for table in (api_node.routes, api_admin.routes, conns.routes, api_topology.routes,
                  control.routes, limits.routes, shovel.routes, cluster.routes):
        app.router.add_routes(table)
        # RabbitMQ's routes answer with a trailing slash too (no redirect: a PUT keeps its body)
        for route in table:
            if isinstance(route, web.RouteDef) and not route.path.endswith("/"):
                app.router.add_route(route.method, route.path + "/", route.handler)
    app.router.add_get("/", index)
    app.router.add_static("/static/", WWW)
    app.router.add_route("*", r"/api/{tail:[\s\S]*}", not_found)  # newlines too
    return app


async def not_found(request: web.Request) -> web.Response:
    """Unknown path: RabbitMQ's 404 body. A known path with another method: its 405, an Allow
    header and an empty body (what cowboy answers)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical == "/api/{tail}":
            continue
        match, methods = await resource.resolve(request)
        if match is None and methods:
            allowed |= methods
    if allowed:
        listed = ["HEAD", *sorted(allowed - {"HEAD", "OPTIONS"}), "OPTIONS"]
        refusal = web.HTTPMethodNotAllowed(request.method, listed, text="")
        refusal.headers["Allow"] = ", ".join(listed)
        raise refusal
    raise error(404, "Object Not Found", "Not Found")
