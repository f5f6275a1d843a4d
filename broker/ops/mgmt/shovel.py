"""Moving messages between queues, the way RabbitMQ's UI asks for it: a one-shot dynamic
shovel (``PUT /api/parameters/shovel/{vhost}/{name}``) from one local queue to another with
``src-delete-after: queue-length``.

Only that case exists here: both ends on this node and vhost (``amqp://`` or
``amqp:///<vhost>`` URIs), source and destination given as queues. The move is done before the
request is answered, on the event loop, in slices of ``SLICE`` messages with a loop turn between
two (a million messages would otherwise stall every client for seconds): as many messages as
the source held when asked are taken from its head
(expired ones are dropped on the way, as a consumer would see) and published to the
destination through the default exchange, keeping their properties and body; the shovel has
then finished and deleted itself, so it is not listed afterwards. A destination that refuses a
message (``x-overflow: reject-publish``) stops the move and the message goes back to the
source.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

from aiohttp import web

from broker.core.messages import new_message

from .util import bad_request, body_json, not_found, reply, require_admin, vhost_of

routes = web.RouteTableDef()
SLICE = 5000  # messages moved per loop turn (about 50 ms of work)


def _local_vhost(uri: Any, default: str) -> str:
    if not isinstance(uri, str) or not uri.startswith("amqp://"):
        raise bad_request("only local shovels (amqp:// URIs to this node) are supported")
    parsed = urllib.parse.urlparse(uri)
    if parsed.hostname not in (None, "", "localhost", "127.0.0.1"):
        raise bad_request("only local shovels (amqp:// URIs to this node) are supported")
    path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
    return urllib.parse.unquote(path) if parsed.path else default


@routes.put("/api/parameters/shovel/{vhost}/{name}")
async def put_shovel(request: web.Request) -> web.Response:
    require_admin(request)
    vhost = vhost_of(request)
    value = (await body_json(request)).get("value")
    if not isinstance(value, dict):
        raise bad_request("[{key_missing,value}]")
    for side in ("src", "dest"):
        if _local_vhost(value.get(f"{side}-uri"), vhost.name) != vhost.name:
            raise bad_request("source and destination must be in this virtual host")
    if value.get("src-delete-after", "never") != "queue-length":
        raise bad_request("only src-delete-after \"queue-length\" (a one-shot move) is "
                          "supported")
    source = vhost.queues.get(str(value.get("src-queue", "")))
    dest = vhost.queues.get(str(value.get("dest-queue", "")))
    if source is None:
        raise bad_request(f"no queue '{value.get('src-queue')}' in vhost '{vhost.name}'")
    if dest is None:
        raise bad_request(f"no queue '{value.get('dest-queue')}' in vhost '{vhost.name}'")
    if dest is source:
        raise bad_request("source and destination queues are the same")
    if source.queue_type == "stream":  # a stream is read by offset; nothing leaves it
        raise bad_request(f"cannot move messages out of stream '{source.name}'")
    remaining = source.message_count
    while remaining > 0 and not (source.deleted or dest.deleted):
        step = min(remaining, SLICE)
        moved = move(source, dest, step)
        remaining -= moved
        if moved < step:
            break  # the source ran dry or the destination refused
        await asyncio.sleep(0)  # let the other clients in between two slices
    return web.Response(status=201)


def move(source: Any, dest: Any, count: int) -> int:
    """Move up to ``count`` ready messages from the head of ``source`` to ``dest``."""
    moved = 0
    for _ in range(count):
        entry = source.get()
        if entry is None:
            break
        old = entry.message
        message = new_message("", dest.name, old.properties, old.body)
        if not dest.publish(message):
            source.requeue(entry)
            break
        source.ack(entry)
        moved += 1
    source.wake()
    return moved


@routes.get("/api/parameters/shovel")
@routes.get("/api/parameters/shovel/{vhost}")
@routes.get("/api/shovels")
@routes.get("/api/shovels/{vhost}")
async def list_shovels(request: web.Request) -> web.Response:
    if "vhost" in request.match_info:
        vhost_of(request)
    return reply([])


@routes.delete("/api/parameters/shovel/{vhost}/{name}")
async def delete_shovel(request: web.Request) -> web.Response:
    """One-shot moves finish at once: there is never a shovel left to delete."""
    require_admin(request)
    vhost_of(request)
    raise not_found()
