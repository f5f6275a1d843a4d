"""Connections, channels and consumers over HTTP (RabbitMQ 3.13 shapes).

A connection is named ``<peer> -> <local>`` as in RabbitMQ; DELETE closes it with
``320 CONNECTION_FORCED`` and the ``X-Reason`` header's text (default
``Closed via management plugin``). Non-monitoring users see only their own connections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from broker.amqp.session import open_sessions

from . import fmt
from .util import (
    USER_KEY,
    details_of,
    error,
    is_monitor,
    list_reply,
    no_content,
    not_found,
    reply,
    server_of,
    tags_of,
    vhost_of,
    vhosts_in_scope,
)

if TYPE_CHECKING:
    from broker.amqp.session import Session

routes = web.RouteTableDef()


def sessions(request: web.Request, vhost: str | None = None) -> list[Session]:
    server = server_of(request)
    mine = not is_monitor(request)
    return sorted((s for s in open_sessions(server) if s.vhost is not None
                   and (vhost is None or s.vhost.name == vhost)
                   and (not mine or s.user == request[USER_KEY])),
                  key=lambda s: s.connected_at)


@routes.get("/api/connections")
async def list_connections(request: web.Request) -> web.Response:
    details = details_of(request)
    return list_reply(request, [fmt.connection(s, details) for s in sessions(request)])


@routes.get("/api/vhosts/{vhost}/connections")
async def vhost_connections(request: web.Request) -> web.Response:
    vhost = vhost_of(request).name
    details = details_of(request)
    return list_reply(request, [fmt.connection(s, details) for s in sessions(request, vhost)])


def find_session(request: web.Request) -> Session:
    name = request.match_info["connection"]
    for session in sessions(request):
        if session.name == name or session.pid == name:
            return session
    raise not_found()


@routes.get("/api/connections/{connection}")
async def show_connection(request: web.Request) -> web.Response:
    return reply(fmt.connection(find_session(request), details_of(request)))


@routes.delete("/api/connections/{connection}")
async def close_connection(request: web.Request) -> web.Response:
    session = find_session(request)
    if "administrator" not in tags_of(request) and session.user != request[USER_KEY]:
        raise error(401, "not_authorised", "User not authorised to access object")
    session.force_close(request.headers.get("X-Reason") or "Closed via management plugin")
    return no_content()


@routes.get("/api/connections/{connection}/channels")
async def connection_channels(request: web.Request) -> web.Response:
    session = find_session(request)
    details = details_of(request)
    return list_reply(request, [fmt.channel(c, details) for c in session.channels.values()])


@routes.get("/api/channels")
async def list_channels(request: web.Request) -> web.Response:
    details = details_of(request)
    return list_reply(request, [fmt.channel(c, details) for s in sessions(request)
                                for c in s.channels.values()])


@routes.get("/api/vhosts/{vhost}/channels")
async def vhost_channels(request: web.Request) -> web.Response:
    vhost = vhost_of(request).name
    details = details_of(request)
    return list_reply(request, [fmt.channel(c, details) for s in sessions(request, vhost)
                                for c in s.channels.values()])


@routes.get("/api/channels/{channel}")
async def show_channel(request: web.Request) -> web.Response:
    wanted = request.match_info["channel"]
    for session in sessions(request):
        for channel in session.channels.values():
            if fmt.channel_name(session, channel.number) == wanted:
                body = fmt.channel(channel, details_of(request))
                # the direct reply-to consumer has no queue and, as in RabbitMQ, no details
                body["consumer_details"] = [fmt.consumer(c) for c in channel.consumers.values()
                                            if c.queue is not None]
                return reply(body)
    raise not_found()


@routes.get("/api/consumers")
@routes.get("/api/consumers/{vhost}")
async def list_consumers(request: web.Request) -> web.Response:
    return list_reply(request, [fmt.consumer(c) for v in vhosts_in_scope(request)
                                for q in v.queues.values() for c in q.consumers])
