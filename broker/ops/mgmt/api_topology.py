"""Exchanges, queues and bindings over HTTP: list, show, declare (PUT), delete, plus queue get /
purge and exchange publish, in RabbitMQ 3.13's shapes.

Declarations go through the VirtualHost, so its rules apply unchanged; an AMQP error it raises
becomes 400 ``bad_request`` with the error's text (RabbitMQ's management API does the same).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar  # Any: JSON values of request bodies

from aiohttp import web

from broker.core import publishing
from broker.core.exchanges import Exchange
from broker.core.messages import new_message
from broker.core.queue import Queue
from broker.core.stats import unacked_by_queue
from broker.core.validation import Fields
from broker.core.vhost import VirtualHost
from protocol import properties as props_codec
from protocol.errors import AMQPError
from storage.message import Entry

from . import cluster, fmt
from .util import (
    USER_KEY,
    bad_request,
    body_fields,
    details_of,
    error,
    list_reply,
    no_content,
    node_of,
    not_found,
    query_bool,
    reply,
    server_of,
    vhost_of,
    vhosts_in_scope,
)

P = ParamSpec("P")
T = TypeVar("T")
routes = web.RouteTableDef()
ACK_MODES = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true",
             "reject_requeue_false")


def _amqp(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    except AMQPError as err:
        raise bad_request(err.text) from None


# ---- exchanges ---------------------------------------------------------------------------
@routes.get("/api/exchanges")
@routes.get("/api/exchanges/{vhost}")
async def list_exchanges(request: web.Request) -> web.Response:
    details = details_of(request)
    return list_reply(request, [fmt.exchange(x, details) for v in vhosts_in_scope(request)
                                for x in v.exchanges.values()])


def _exchange(request: web.Request) -> Exchange:
    """The exchange named in the URL; ``amq.default`` is how the API names ``""``."""
    name = request.match_info["exchange"]
    ex = vhost_of(request).exchanges.get("" if name == "amq.default" else name)
    if ex is None:
        raise not_found()
    return ex


@routes.get("/api/exchanges/{vhost}/{exchange}")
async def show_exchange(request: web.Request) -> web.Response:
    # incoming / outgoing: per-channel and per-queue publish stats, which RabbitMQ fills only
    # with rates_mode=detailed; in basic mode (ours) they are present and empty.
    return reply({**fmt.exchange(_exchange(request), details_of(request)),
                  "incoming": [], "outgoing": []})


@routes.put("/api/exchanges/{vhost}/{exchange}")
async def declare_exchange(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    name = request.match_info["exchange"]
    body = await body_fields(request)
    existed = name in vhost.exchanges
    _amqp(vhost.declare_exchange, name, body.text("type", "direct"),
          durable=body.flag("durable", True), auto_delete=body.flag("auto_delete", False),
          internal=body.flag("internal", False), arguments=body.mapping("arguments"))
    return no_content() if existed else web.Response(status=201)


@routes.delete("/api/exchanges/{vhost}/{exchange}")
async def delete_exchange(request: web.Request) -> web.Response:
    ex = _exchange(request)
    _amqp(vhost_of(request).delete_exchange, ex.name, query_bool(request, "if-unused"))
    return no_content()


@routes.post("/api/exchanges/{vhost}/{exchange}/publish")
async def publish(request: web.Request) -> web.Response:
    """basic.publish over HTTP, through broker.core.publishing as AMQP's: the user's write
    permission, the exchange (404, internal 403), topic permission, max message size, the
    user_id and expiration properties, resource alarms, then routing (alternate exchanges,
    direct reply-to) and the queues' limits; counted as a publish. Errors are RabbitMQ's
    ``400 {"reason": "<code> <text>"}``."""
    vhost = vhost_of(request)
    name = request.match_info["exchange"]
    name = "" if name == "amq.default" else name
    body = await body_fields(request)
    body.missing("routing_key", "properties", "payload", "payload_encoding")
    routing_key = body.text("routing_key")
    props = encode_properties(Fields(body.mapping("properties"), "properties"))
    data = decode_payload(body.data["payload"], body.data["payload_encoding"])
    server, node = server_of(request), node_of(request)
    user = request[USER_KEY]
    try:
        publishing.check_size(len(data), node.config.max_message_size)
        publishing.require(server.auth, user, vhost.name, "write", "exchange", name)
        exchange = publishing.target_exchange(vhost, name)
        publishing.require_topic(server.auth, user, vhost.name, exchange, "write", routing_key)
        message = new_message(exchange.name, routing_key, props, data)
        publishing.check_properties(message, user)
    except AMQPError as err:
        raise bad_request(f"{err.code} {err.reply_text}") from None
    if node.alarms.active:
        # an AMQP publisher would be blocked (connection.blocked); HTTP cannot wait that long
        raise error(503, "service_unavailable", f"publishing is blocked: "
                    f"{node.alarms.reason}")
    queues = publishing.route(vhost, exchange, message, server.replies)
    if queues is not publishing.REPLIED:
        for queue in queues:
            queue.publish(message)
    server.retired.publish += 1
    if not queues:
        server.retired.return_unroutable += 1  # RabbitMQ publishes mandatory=true here
    vhost.retired.publish += 1
    return reply({"routed": bool(queues)})


def decode_payload(payload: Any, encoding: Any) -> bytes:
    if not isinstance(payload, str):
        raise bad_request("payload_not_string")
    if encoding == "string":
        return payload.encode()
    if encoding == "base64":
        try:
            return base64.b64decode(payload, validate=True)
        except ValueError:
            raise bad_request(["not_base64", payload]) from None
    raise bad_request(["unsupported_encoding", encoding])


PROPERTY_TYPES: dict[str, type | tuple[type, ...]] = {
    "content_type": str, "content_encoding": str, "headers": dict, "delivery_mode": int,
    "priority": int, "correlation_id": str, "reply_to": str, "expiration": str,
    "message_id": str, "timestamp": int, "type": str, "user_id": str, "app_id": str,
    "cluster_id": str}


def encode_properties(props: Fields) -> bytes:
    """The publish body's ``properties`` as AMQP property bytes; RabbitMQ's ``not_int`` for a
    numeric one that is not a number, 400 for any other wrong type or unknown name."""
    if not props.data:
        return props_codec.EMPTY
    import datetime

    mapping: dict[str, Any] = {}
    for key, value in props.data.items():
        kind = PROPERTY_TYPES.get(key)
        if kind is None:
            raise bad_request(f"unknown message property {key!r}")
        if kind is int:
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise bad_request(["not_int", key])
        elif not isinstance(value, kind):
            raise bad_request(f"properties.{key} should be a "
                              f"{'JSON object' if kind is dict else 'string'}")
        mapping["message_type" if key == "type" else key] = value
    if "timestamp" in mapping:
        try:
            mapping["timestamp"] = datetime.datetime.fromtimestamp(mapping["timestamp"],
                                                                   datetime.UTC)
        except (ValueError, OverflowError, OSError):
            raise bad_request(["not_int", "timestamp"]) from None
    for key in ("delivery_mode", "priority"):
        if key in mapping and not 0 <= mapping[key] <= 255:
            raise bad_request(["not_int", key])
    try:
        return props_codec.encode(props_codec.Properties(**mapping))
    except (TypeError, ValueError, OverflowError, struct.error) as exc:
        raise bad_request(f"invalid properties: {exc}") from None


# ---- queues ------------------------------------------------------------------------------
@routes.get("/api/queues")
@routes.get("/api/queues/{vhost}")
async def list_queues(request: web.Request) -> web.Response:
    server = server_of(request)
    unacked = unacked_by_queue(server.sessions)
    details = details_of(request)
    view = await cluster.replica_view(node_of(request))
    return list_reply(request, [cluster.with_replicas(fmt.queue(server, q, unacked, details), q,
                                                      view)
                                for v in vhosts_in_scope(request) for q in v.queues.values()])


def _queue(request: web.Request) -> Queue:
    queue = vhost_of(request).queues.get(request.match_info["queue"])
    if queue is None:
        raise not_found()
    return queue


@routes.get("/api/queues/{vhost}/{queue}")
async def show_queue(request: web.Request) -> web.Response:
    server = server_of(request)
    queue = _queue(request)
    body = cluster.with_replicas(
        fmt.queue(server, queue, unacked_by_queue(server.sessions), details_of(request)), queue,
        await cluster.replica_view(node_of(request)))
    body["consumer_details"] = [fmt.consumer(c) for c in queue.consumers]
    body["incoming"] = []
    body["deliveries"] = []
    return reply(body)


@routes.put("/api/queues/{vhost}/{queue}")
async def declare_queue(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    name = request.match_info["queue"]
    body = await body_fields(request)
    existed = name in vhost.queues
    _amqp(vhost.declare_queue, name, durable=body.flag("durable", True),
          auto_delete=body.flag("auto_delete", False), arguments=body.mapping("arguments"))
    return no_content() if existed else web.Response(status=201)


@routes.delete("/api/queues/{vhost}/{queue}")
async def delete_queue(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    queue = _queue(request)
    _amqp(vhost.check_delete, queue, query_bool(request, "if-unused"),
          query_bool(request, "if-empty"))
    vhost.remove_queue(queue)
    return no_content()


@routes.delete("/api/queues/{vhost}/{queue}/contents")
async def purge_queue(request: web.Request) -> web.Response:
    _amqp(_queue(request).purge)  # a stream refuses (400, RabbitMQ's text)
    return no_content()


@routes.post("/api/queues/{vhost}/{queue}/get")
async def get_messages(request: web.Request) -> web.Response:
    queue = _queue(request)
    body = await body_fields(request)
    body.missing("ackmode", "count", "encoding")
    count = body.integer("count", 1, minimum=1) or 1
    mode = body.choice("ackmode", "ack_requeue_true", ACK_MODES, "ackmode")
    encoding = body.choice("encoding", "auto", ("auto", "base64"), "encoding")
    truncate = body.integer("truncate", None, minimum=0)
    taken = []
    out = []
    for _ in range(count):
        entry = _amqp(queue.get)  # a stream refuses (400, RabbitMQ's text)
        if entry is None:
            break
        taken.append(entry)
        out.append(message_json(entry, queue.message_count, encoding, truncate))
    for entry in taken:
        if mode.endswith("requeue_true"):  # reject_: a basic.reject in RabbitMQ's plugin
            queue.requeue(entry, nacked=mode.startswith("reject"))
        elif mode.startswith("ack"):
            queue.ack(entry)
        else:
            queue.reject(entry)
    if taken:
        queue.wake()
    queue.stats.get += len(taken)
    for counters in (server_of(request).retired, vhost_of(request).retired):
        counters.get += len(taken)
        if mode.endswith("requeue_true"):
            counters.redeliver += len(taken)
    return reply(out)


def message_json(entry: Entry, remaining: int, encoding: str, truncate: int | None) -> dict:
    msg = entry.message
    payload, used = fmt.payload(msg.body, encoding, truncate)
    return {"payload_bytes": len(msg.body), "redelivered": entry.redelivered,
            "exchange": msg.exchange, "routing_key": msg.routing_key,
            "message_count": remaining, "properties": fmt.message_properties(msg.properties),
            "payload": payload, "payload_encoding": used}


# ---- bindings ----------------------------------------------------------------------------
def bindings_of_vhost(vhost: VirtualHost) -> list[dict]:
    implicit = [fmt.default_binding(q) for q in vhost.queues.values()]
    return implicit + [fmt.binding(vhost.name, b) for b in vhost.bindings_of()]


@routes.get("/api/bindings")
@routes.get("/api/bindings/{vhost}")
async def list_bindings(request: web.Request) -> web.Response:
    return list_reply(request, [b for v in vhosts_in_scope(request)
                                for b in bindings_of_vhost(v)])


@routes.get("/api/queues/{vhost}/{queue}/bindings")
async def queue_bindings(request: web.Request) -> web.Response:
    queue = _queue(request)
    items = [b for b in bindings_of_vhost(vhost_of(request))
             if b["destination_type"] == "queue" and b["destination"] == queue.name]
    return list_reply(request, items)


@routes.get("/api/exchanges/{vhost}/{exchange}/bindings/source")
async def source_bindings(request: web.Request) -> web.Response:
    ex = _exchange(request)
    items = [b for b in bindings_of_vhost(vhost_of(request)) if b["source"] == ex.name]
    return list_reply(request, items)


@routes.get("/api/exchanges/{vhost}/{exchange}/bindings/destination")
async def destination_bindings(request: web.Request) -> web.Response:
    ex = _exchange(request)
    items = [b for b in bindings_of_vhost(vhost_of(request))
             if b["destination_type"] == "exchange" and b["destination"] == ex.name]
    return list_reply(request, items)


def _ends(request: web.Request) -> tuple[VirtualHost, Exchange, Queue | Exchange, str]:
    vhost = vhost_of(request)
    kind = request.match_info["dtype"]
    if kind not in ("q", "e"):
        raise not_found()
    source = vhost.exchanges.get(request.match_info["source"])
    dest: Queue | Exchange | None = (vhost.queues if kind == "q" else vhost.exchanges).get(
        request.match_info["destination"])
    if source is None or dest is None:
        raise not_found()
    return vhost, source, dest, "queue" if kind == "q" else "exchange"


@routes.get("/api/bindings/{vhost}/e/{source}/{dtype}/{destination}")
async def pair_bindings(request: web.Request) -> web.Response:
    vhost, source, dest, dtype = _ends(request)
    items = [b for b in bindings_of_vhost(vhost) if b["source"] == source.name
             and b["destination"] == dest.name and b["destination_type"] == dtype]
    return list_reply(request, items)


@routes.post("/api/bindings/{vhost}/e/{source}/{dtype}/{destination}")
async def create_binding(request: web.Request) -> web.Response:
    vhost, source, dest, _ = _ends(request)
    if source.name == "":
        raise bad_request("operation not permitted on the default exchange")
    body = await body_fields(request)
    key, args = body.text("routing_key", ""), body.mapping("arguments")
    _amqp(publishing.require_topic, server_of(request).auth, request[USER_KEY], vhost.name,
          source, "read", key)
    _amqp(vhost.bind, source, dest, key, args)
    location = fmt.properties_key(key, args)
    return web.Response(status=201, headers={"Location": location})


@routes.get("/api/bindings/{vhost}/e/{source}/{dtype}/{destination}/{props}")
async def show_binding(request: web.Request) -> web.Response:
    return reply(_find_binding(request)[1])


@routes.delete("/api/bindings/{vhost}/e/{source}/{dtype}/{destination}/{props}")
async def delete_binding(request: web.Request) -> web.Response:
    vhost, found = _find_binding(request)
    source = vhost.exchanges[found["source"]]
    table: dict = vhost.queues if found["destination_type"] == "queue" else vhost.exchanges
    vhost.unbind(source, table[found["destination"]], found["routing_key"],
                 found["arguments"])
    return no_content()


def _find_binding(request: web.Request) -> tuple[VirtualHost, dict]:
    vhost, source, dest, dtype = _ends(request)
    props = request.match_info["props"]
    for b in bindings_of_vhost(vhost):
        if b["source"] == source.name and b["destination"] == dest.name and \
                b["destination_type"] == dtype and b["properties_key"] == props:
            return vhost, b
    raise not_found()
